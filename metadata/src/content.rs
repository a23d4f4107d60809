//! Namespaced content: each namespace's view of a shared blob store.
//!
//! Blobs live once in the backend store (`crated-content-store`); what a
//! namespace sees is its own records under `obj\0<ns>\0blobs\0<digest>`,
//! carrying the labels and times of that namespace. A blob is visible in a
//! namespace only once written or committed there. With the `shared`
//! policy, a writer that names an expected digest the backend already holds
//! (for another namespace) starts complete, at offset = total = its size:
//! the client sends no bytes and its commit records the blob in its own
//! namespace. Bytes written to such a writer start a real ingest from a
//! copy of the blob, which then commits as a new blob. With `isolated`, the
//! bytes must be written again. A blob is stored once either way.
//!
//! Ingest refs are prefixed with the namespace in the backend, so two
//! namespaces never resume each other's writes.
//!
//! Deleting a namespace's record leaves the blob to the garbage collector,
//! as containerd's: the delete marks the database dirty, which schedules a
//! collection, and it removes blobs no namespace records.

use std::sync::Arc;
use std::time::SystemTime;

use crated_core::content::{ContentStore, Info, Labels, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::filters::{self, Adaptor};
use crated_core::{labels, Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode};
use crate::{keys, Db, Error};

/// Object kind of content records.
pub(crate) const KIND: &str = "blobs";

/// Whether a blob committed in one namespace may be claimed by another
/// without a transfer (containerd's `content_sharing_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharingPolicy {
    /// A writer naming an existing digest gets it without a transfer.
    Shared,
    /// Every namespace must write the bytes itself (they are still stored
    /// once).
    Isolated,
}

#[derive(Serialize, Deserialize)]
struct Record {
    size: u64,
    created_at: SystemTime,
    updated_at: SystemTime,
    #[serde(default)]
    labels: Labels,
}

fn record_key(ns: &Namespace, digest: &Digest) -> Vec<u8> {
    keys::object(ns.as_str(), KIND, &[digest.as_str()])
}

fn to_info(digest: Digest, record: Record) -> Info {
    Info {
        digest,
        size: record.size,
        created_at: record.created_at,
        updated_at: record.updated_at,
        labels: record.labels,
    }
}

fn not_found(ns: &Namespace, digest: &Digest) -> Error {
    Error::ContentNotFound {
        namespace: ns.to_string(),
        digest: digest.clone(),
    }
}

/// The backend's NotFound for the ingest of `ref` as this namespace names
/// it; its other errors as they are.
fn ingest_error(
    ns: &Namespace,
    r#ref: &str,
) -> impl FnOnce(crated_core::Error) -> crated_core::Error {
    let (namespace, r#ref) = (ns.to_string(), r#ref.to_owned());
    move |source| {
        if source.is_not_found() {
            Error::IngestNotFound {
                namespace,
                r#ref,
                source: Box::new(source),
            }
            .into()
        } else {
            source
        }
    }
}

fn backend_ref(ns: &Namespace, r#ref: &str) -> String {
    format!("{}/{}", ns.as_str(), r#ref)
}

fn validate_ref(r#ref: &str) -> Result<(), Error> {
    if r#ref.is_empty() {
        return Err(Error::EmptyRef);
    }
    Ok(())
}

struct InfoFields<'a>(&'a Info);

impl Adaptor for InfoFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["digest"] => Some(self.0.digest.to_string()),
            ["size"] => Some(self.0.size.to_string()),
            ["labels", key @ ..] => filters::map_value(&self.0.labels, key),
            _ => None,
        }
    }
}

struct StatusFields<'a>(&'a Status);

impl Adaptor for StatusFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["ref"] => Some(self.0.r#ref.clone()),
            _ => None,
        }
    }
}

/// The namespaced content store the daemon serves.
#[derive(Clone)]
pub struct NamespacedContent {
    db: Db,
    pub(crate) backend: Arc<dyn ContentStore>,
    policy: SharingPolicy,
    // Serialises record creation and blob deletes (the last-record-gone
    // delete and the collector's sweep), so a commit in one namespace never
    // races a delete in another.
    pub(crate) lifecycle: Arc<tokio::sync::Mutex<()>>,
}

impl NamespacedContent {
    /// Namespaced views over `backend`, recorded in `db`.
    pub fn new(db: Db, backend: Arc<dyn ContentStore>, policy: SharingPolicy) -> Self {
        Self {
            db,
            backend,
            policy,
            lifecycle: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn record(&self, ns: &Namespace, digest: &Digest) -> Result<Option<Record>> {
        Ok(self
            .db
            .read(|tx| tx.get(&record_key(ns, digest)))?
            .map(|raw| decode(&format!("content {digest}"), &raw))
            .transpose()?)
    }

    /// Adds `digest` to `ns` as the commit of ingest `ref`; AlreadyExists
    /// if it is there. A `lease` of the ingest holds the blob instead of
    /// the ingest from then on, as containerd's commit leaves it.
    fn create_record(
        &self,
        (ns, r#ref): (&Namespace, &str),
        digest: &Digest,
        size: u64,
        labels: Labels,
        lease: Option<&str>,
    ) -> Result<()> {
        labels::validate_all(&labels)?;
        let existed = self.db.write(|tx| {
            let key = record_key(ns, digest);
            let exists = tx.get(&key)?.is_some();
            tx.ensure_namespace(ns)?;
            // An existing blob is held by this lease too (containerd's
            // `addContentLease` on AlreadyExists): the lease it was first
            // written under may end first.
            if let Some(lease) = lease {
                crate::leases::hold(tx, ns, lease, "content", digest.as_str())?;
                crate::leases::release(tx, ns, lease, "ingests", r#ref)?;
            }
            if exists {
                return Ok(true);
            }
            let now = SystemTime::now();
            let record = Record {
                size,
                created_at: now,
                updated_at: now,
                labels,
            };
            tx.put(key, encode(&format!("content {digest}"), &record)?);
            Ok(false)
        })?;
        if existed {
            return Err(Error::ContentExists {
                digest: digest.clone(),
            }
            .into());
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ContentStore for NamespacedContent {
    async fn info(&self, ns: &Namespace, digest: &Digest) -> Result<Info> {
        let record = self
            .record(ns, digest)?
            .ok_or_else(|| not_found(ns, digest))?;
        Ok(to_info(digest.clone(), record))
    }

    async fn update(&self, ns: &Namespace, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let digest = info.digest.clone();
        let mut changes: Vec<(&str, Option<&String>)> = Vec::new();
        let mut replace_all = fieldpaths.is_empty();
        for path in fieldpaths {
            if path == "labels" {
                replace_all = true;
            } else if let Some(key) = path.strip_prefix("labels.").filter(|k| !k.is_empty()) {
                let value = info.labels.get(key).filter(|v| !v.is_empty());
                if let Some(v) = value {
                    labels::validate(key, v)?;
                }
                changes.push((key, value));
            } else {
                return Err(Error::ContentField {
                    digest,
                    path: path.clone(),
                }
                .into());
            }
        }
        if replace_all {
            labels::validate_all(&info.labels)?;
        }
        self.db.write(|tx| {
            let key = record_key(ns, &digest);
            let raw = tx.get(&key)?.ok_or_else(|| not_found(ns, &digest))?;
            let mut record: Record = decode(&format!("content {digest}"), &raw)?;
            if replace_all {
                record.labels = info
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            for (key, value) in &changes {
                match value {
                    Some(v) => record.labels.insert((*key).to_owned(), (*v).clone()),
                    None => record.labels.remove(*key),
                };
            }
            record.updated_at = SystemTime::now();
            tx.put(key, encode(&format!("content {digest}"), &record)?);
            Ok(to_info(digest.clone(), record))
        })
    }

    async fn walk(&self, ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Info>> {
        let filter = filters::parse_all(filter_strings)?;
        let prefix = keys::objects_of(ns.as_str(), KIND);
        let mut out = Vec::new();
        for (key, raw) in self.db.read(|tx| tx.scan(&prefix))? {
            let text = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let digest = Digest::parse(&text)?;
            let info = to_info(digest, decode(&format!("content {text}"), &raw)?);
            if filter.matches(&InfoFields(&info)) {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn delete(&self, ns: &Namespace, digest: &Digest) -> Result<()> {
        // The record only (see the module docs): no backend call, so no
        // race with a commit of the same digest, and no lifecycle lock.
        self.db.write(|tx| {
            let key = record_key(ns, digest);
            if tx.get(&key)?.is_none() {
                return Err(not_found(ns, digest).into());
            }
            tx.delete(key);
            tx.mark_dirty();
            Ok(())
        })
    }

    async fn reader_at(&self, ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        if self.record(ns, digest)?.is_none() {
            return Err(not_found(ns, digest).into());
        }
        self.backend.reader_at(ns, digest).await
    }

    async fn status(&self, ns: &Namespace, r#ref: &str) -> Result<Status> {
        validate_ref(r#ref)?;
        let mut status = self
            .backend
            .status(ns, &backend_ref(ns, r#ref))
            .await
            .map_err(ingest_error(ns, r#ref))?;
        status.r#ref = r#ref.to_owned();
        Ok(status)
    }

    async fn list_statuses(
        &self,
        ns: &Namespace,
        filter_strings: &[String],
    ) -> Result<Vec<Status>> {
        let filter = filters::parse_all(filter_strings)?;
        let prefix = backend_ref(ns, "");
        let mut out = Vec::new();
        for mut status in self.backend.list_statuses(ns, &[]).await? {
            let Some(own) = status.r#ref.strip_prefix(&prefix) else {
                continue;
            };
            status.r#ref = own.to_owned();
            if filter.matches(&StatusFields(&status)) {
                out.push(status);
            }
        }
        Ok(out)
    }

    async fn abort(&self, ns: &Namespace, r#ref: &str) -> Result<()> {
        validate_ref(r#ref)?;
        self.backend
            .abort(ns, &backend_ref(ns, r#ref))
            .await
            .map_err(ingest_error(ns, r#ref))
    }

    async fn writer(&self, ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        validate_ref(&options.r#ref)?;
        if let Some(expected) = &options.expected {
            // The caller's lease holds it from now on, as containerd's. The
            // look and the hold are one transaction: a collection between
            // the two (it deletes in a write of its own) would leave the
            // caller told "exists" about a blob about to go.
            let exists = match &options.lease {
                Some(lease) => self.db.write(|tx| {
                    if tx.get(&record_key(ns, expected))?.is_none() {
                        return Ok(false);
                    }
                    crate::leases::hold(tx, ns, lease, "content", expected.as_str())?;
                    // Nothing will be ingested under this ref now (a
                    // writer that held it and found the blob has let go).
                    crate::leases::release(tx, ns, lease, "ingests", &options.r#ref)?;
                    Ok(true)
                })?,
                None => self.record(ns, expected)?.is_some(),
            };
            if exists {
                return Err(Error::ContentExists {
                    digest: expected.clone(),
                }
                .into());
            }
        }
        let shared = match &options.expected {
            Some(expected) if self.policy == SharingPolicy::Shared => {
                match self.backend.info(ns, expected).await {
                    // A size that differs is the caller's to sort out at
                    // commit: it writes as if nothing were shared.
                    Ok(info) if options.total == 0 || options.total == info.size => {
                        Some(Ingest::Shared {
                            digest: expected.clone(),
                            size: info.size,
                            started: SystemTime::now(),
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let own_ref = options.r#ref.clone();
        let lease = options.lease.clone();
        if let Some(lease) = &lease {
            // Held from the start, as containerd does, so a collection
            // during the upload keeps what it expects.
            self.db.write(|tx| {
                tx.ensure_namespace(ns)?;
                crate::leases::hold(tx, ns, lease, "ingests", &own_ref)
            })?;
        }
        let expected = options.expected.clone();
        let ingest = match shared {
            Some(shared) => shared,
            None => Ingest::Backend(self.backend_writer(ns, &own_ref, options).await?),
        };
        Ok(Box::new(NamespacedWriter {
            ingest,
            expected,
            ns: ns.clone(),
            r#ref: own_ref,
            lease,
            view: self.clone(),
        }))
    }
}

impl NamespacedContent {
    /// The backend's writer for `ref` of `ns`, under the namespaced ref.
    async fn backend_writer(
        &self,
        ns: &Namespace,
        own_ref: &str,
        options: WriterOptions,
    ) -> Result<Box<dyn Writer>> {
        self.backend
            .writer(
                ns,
                WriterOptions {
                    r#ref: backend_ref(ns, own_ref),
                    total: options.total,
                    // Whether this namespace has the blob was checked above;
                    // the backend would refuse one stored for another
                    // namespace, which this one must write (or copy) itself.
                    expected: None,
                    // The backend keeps no leases; this layer holds them.
                    lease: None,
                },
            )
            .await
            .map_err(|source| match source.kind() {
                // The backend names its namespaced ref; the client knows its own.
                crated_core::Kind::Unavailable => Error::RefLocked {
                    r#ref: own_ref.to_owned(),
                    source: Box::new(source),
                }
                .into(),
                _ => source,
            })
    }
}

/// Where a namespaced writer's bytes are.
enum Ingest {
    /// In an ingest of the backend.
    Backend(Box<dyn Writer>),
    /// Nowhere yet: the writer stands for a blob the backend holds for
    /// another namespace, complete until the caller writes or truncates.
    Shared {
        digest: Digest,
        size: u64,
        started: SystemTime,
    },
}

struct NamespacedWriter {
    ingest: Ingest,
    /// The digest the caller expects, which the backend is not told.
    expected: Option<Digest>,
    ns: Namespace,
    r#ref: String,
    lease: Option<String>,
    view: NamespacedContent,
}

/// Bytes copied per read when a shared blob becomes an ingest.
const COPY_CHUNK: usize = 1 << 20;

impl NamespacedWriter {
    /// The backend ingest, made first if the writer stands for a shared
    /// blob: it starts with the blob's first `keep` bytes (all of them
    /// when `keep` is None), so what is written next follows them.
    async fn unshared(&mut self, keep: Option<u64>) -> Result<&mut Box<dyn Writer>> {
        if let Ingest::Shared { digest, size, .. } = &self.ingest {
            let (digest, size) = (digest.clone(), *size);
            let keep = keep.unwrap_or(size);
            if keep > size {
                return Err(Error::TruncateShared {
                    r#ref: self.r#ref.clone(),
                    size: keep,
                    digest,
                    shared_size: size,
                }
                .into());
            }
            let options = WriterOptions {
                r#ref: self.r#ref.clone(),
                total: keep,
                expected: None,
                lease: None,
            };
            let mut writer = self
                .view
                .backend_writer(&self.ns, &self.r#ref, options)
                .await?;
            // A ref resumed from an earlier, unshared write starts over.
            writer.truncate(0).await?;
            if keep > 0 {
                let reader = self.view.backend.reader_at(&self.ns, &digest).await?;
                let mut buf = vec![0u8; COPY_CHUNK];
                let mut at = 0u64;
                while at < keep {
                    let want = usize::try_from(keep - at)
                        .unwrap_or(COPY_CHUNK)
                        .min(COPY_CHUNK);
                    let n = reader.read_at(at, &mut buf[..want]).await?;
                    if n == 0 {
                        return Err(Error::SharedContentShort {
                            digest,
                            at,
                            size,
                            r#ref: self.r#ref.clone(),
                        }
                        .into());
                    }
                    writer.write(&buf[..n]).await?;
                    at += n as u64;
                }
            }
            self.ingest = Ingest::Backend(writer);
        }
        match &mut self.ingest {
            Ingest::Backend(writer) => Ok(writer),
            Ingest::Shared { .. } => Err(Error::StillShared {
                r#ref: self.r#ref.clone(),
            }
            .into()),
        }
    }

    /// Records the shared blob in this namespace: nothing was written, so
    /// `size` and `expected` must be the blob's own.
    async fn commit_shared(
        &self,
        (digest, shared_size): (&Digest, u64),
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        if size != 0 && size != shared_size {
            return Err(Error::UnexpectedSize {
                r#ref: self.r#ref.clone(),
                written: shared_size,
                expected: size,
            }
            .into());
        }
        if let Some(expected) = expected.filter(|e| e != digest) {
            return Err(Error::UnexpectedDigest {
                r#ref: self.r#ref.clone(),
                digest: digest.clone(),
                expected,
            }
            .into());
        }
        let _guard = self.view.lifecycle.lock().await;
        // Deleted from every namespace (and collected) since the writer
        // opened: there is nothing left to share.
        if let Err(source) = self.view.backend.info(&self.ns, digest).await {
            return Err(if source.is_not_found() {
                Error::SharedContentRemoved {
                    namespace: self.ns.to_string(),
                    r#ref: self.r#ref.clone(),
                    digest: digest.clone(),
                    source: Box::new(source),
                }
                .into()
            } else {
                source
            });
        }
        self.view.create_record(
            (&self.ns, &self.r#ref),
            digest,
            shared_size,
            labels,
            self.lease.as_deref(),
        )
    }
}

#[async_trait::async_trait]
impl Writer for NamespacedWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.unshared(None).await?.write(data).await
    }

    async fn digest(&self) -> Result<Digest> {
        match &self.ingest {
            Ingest::Backend(writer) => writer.digest().await,
            Ingest::Shared { digest, .. } => Ok(digest.clone()),
        }
    }

    async fn status(&self) -> Result<Status> {
        match &self.ingest {
            Ingest::Backend(writer) => {
                let mut status = writer.status().await?;
                status.r#ref = self.r#ref.clone();
                status.expected = status.expected.or_else(|| self.expected.clone());
                Ok(status)
            }
            Ingest::Shared {
                digest,
                size,
                started,
            } => Ok(Status {
                r#ref: self.r#ref.clone(),
                offset: *size,
                total: *size,
                expected: Some(digest.clone()),
                started_at: *started,
                updated_at: *started,
            }),
        }
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        match &mut self.ingest {
            Ingest::Backend(writer) => writer.truncate(size).await,
            Ingest::Shared { .. } => self.unshared(Some(size)).await.map(|_| ()),
        }
    }

    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        labels::validate_all(&labels)?;
        let this = *self;
        let inner = match this.ingest {
            Ingest::Backend(inner) => inner,
            Ingest::Shared {
                ref digest,
                size: shared_size,
                ..
            } => {
                return this
                    .commit_shared((digest, shared_size), size, expected, labels)
                    .await
            }
        };
        let digest = inner.digest().await?;
        let written = inner.status().await?.offset;
        let _guard = this.view.lifecycle.lock().await;
        match inner.commit(size, expected, labels.clone()).await {
            Ok(()) => {}
            // The bytes are already stored (by this or another namespace):
            // they are shared, and this namespace gets its record.
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        this.view.create_record(
            (&this.ns, &this.r#ref),
            &digest,
            written,
            labels,
            this.lease.as_deref(),
        )
    }

    async fn close(self: Box<Self>) -> Result<()> {
        match self.ingest {
            Ingest::Backend(inner) => inner.close().await,
            Ingest::Shared { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = crated_content_store::LocalStore::open(&dir.path().join("content")).unwrap();
        let db = Db::open(dir.path()).unwrap();
        let view = NamespacedContent::new(db, Arc::new(backend), SharingPolicy::Shared);
        (Arc::new(view), Box::new(dir))
    }

    crated_core::content_store_testsuite!(store);

    struct Shared {
        _dir: tempfile::TempDir,
        db: Db,
        backend: crated_content_store::LocalStore,
        content: NamespacedContent,
    }

    fn with_policy(policy: SharingPolicy) -> Shared {
        let dir = tempfile::tempdir().unwrap();
        let backend = crated_content_store::LocalStore::open(&dir.path().join("content")).unwrap();
        let db = Db::open(dir.path()).unwrap();
        let content = NamespacedContent::new(db.clone(), Arc::new(backend.clone()), policy);
        Shared {
            _dir: dir,
            db,
            backend,
            content,
        }
    }

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    fn options(r#ref: &str, total: u64, expected: &Digest) -> WriterOptions {
        WriterOptions {
            r#ref: r#ref.into(),
            total,
            expected: Some(expected.clone()),
            lease: None,
        }
    }

    /// `data` written and committed in `ns`; its digest.
    async fn put(content: &NamespacedContent, ns: &Namespace, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let mut w = content
            .writer(ns, options("put", data.len() as u64, &digest))
            .await
            .unwrap();
        w.write(data).await.unwrap();
        w.commit(data.len() as u64, Some(digest.clone()), Labels::new())
            .await
            .unwrap();
        digest
    }

    async fn read_all(content: &NamespacedContent, ns: &Namespace, digest: &Digest) -> Vec<u8> {
        let reader = content.reader_at(ns, digest).await.unwrap();
        let mut buf = vec![0u8; reader.size() as usize];
        let n = reader.read_at(0, &mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn shared_content_is_complete_at_open_and_commits_without_bytes() {
        let s = with_policy(SharingPolicy::Shared);
        let data = b"committed in a".to_vec();
        let size = data.len() as u64;
        let digest = put(&s.content, &ns("a"), &data).await;

        let w = s
            .content
            .writer(&ns("b"), options("claim", size, &digest))
            .await
            .unwrap();
        let status = w.status().await.unwrap();
        assert_eq!((status.offset, status.total), (size, size));
        assert_eq!(status.expected.as_ref(), Some(&digest));
        assert_eq!(status.r#ref, "claim");
        assert_eq!(w.digest().await.unwrap(), digest);
        // Visible in b only once committed there.
        assert!(s
            .content
            .info(&ns("b"), &digest)
            .await
            .unwrap_err()
            .is_not_found());
        let labels: Labels = [("k".to_owned(), "v".to_owned())].into();
        w.commit(size, Some(digest.clone()), labels.clone())
            .await
            .unwrap();
        let info = s.content.info(&ns("b"), &digest).await.unwrap();
        assert_eq!((info.size, &info.labels), (size, &labels));
        assert_eq!(read_all(&s.content, &ns("b"), &digest).await, data);
        assert_eq!(s.backend.walk(&ns("b"), &[]).await.unwrap().len(), 1);
        assert!(s
            .content
            .list_statuses(&ns("b"), &[])
            .await
            .unwrap()
            .is_empty());

        // Unknown total: the blob's own size.
        let w = s
            .content
            .writer(&ns("c"), options("claim", 0, &digest))
            .await
            .unwrap();
        assert_eq!(w.status().await.unwrap().offset, size);
        let err = w.commit(size + 1, None, Labels::new()).await.unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition, "{err}");
        let w = s
            .content
            .writer(&ns("c"), options("claim", 0, &digest))
            .await
            .unwrap();
        let other = Digest::sha256(b"other");
        let err = w.commit(0, Some(other), Labels::new()).await.unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition, "{err}");
        assert!(s
            .content
            .info(&ns("c"), &digest)
            .await
            .unwrap_err()
            .is_not_found());

        // Committed in b now: a writer there is refused, as before.
        let err = s
            .content
            .writer(&ns("b"), options("again", size, &digest))
            .await
            .err()
            .unwrap();
        assert!(err.is_already_exists(), "{err}");
    }

    #[tokio::test]
    async fn bytes_written_to_shared_content_commit_a_new_blob() {
        let s = with_policy(SharingPolicy::Shared);
        let data = b"first part".to_vec();
        let size = data.len() as u64;
        let digest = put(&s.content, &ns("a"), &data).await;

        let mut w = s
            .content
            .writer(&ns("b"), options("grow", size, &digest))
            .await
            .unwrap();
        w.write(b", then more").await.unwrap();
        let whole = b"first part, then more".to_vec();
        assert_eq!(w.status().await.unwrap().offset, whole.len() as u64);
        let grown = Digest::sha256(&whole);
        assert_eq!(w.digest().await.unwrap(), grown);
        w.commit(0, None, Labels::new()).await.unwrap();
        assert_eq!(read_all(&s.content, &ns("b"), &grown).await, whole);
        // The shared blob itself was only copied, not claimed.
        assert!(s
            .content
            .info(&ns("b"), &digest)
            .await
            .unwrap_err()
            .is_not_found());

        // Truncated, it is an ordinary ingest from that point.
        let mut w = s
            .content
            .writer(&ns("c"), options("cut", size, &digest))
            .await
            .unwrap();
        w.truncate(5).await.unwrap();
        assert_eq!(w.status().await.unwrap().offset, 5);
        w.write(b"!").await.unwrap();
        w.commit(6, Some(Digest::sha256(b"first!")), Labels::new())
            .await
            .unwrap();
        assert_eq!(
            read_all(&s.content, &ns("c"), &Digest::sha256(b"first!")).await,
            b"first!"
        );
        assert!(s
            .content
            .list_statuses(&ns("c"), &[])
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn isolated_content_is_written_again_and_stored_once() {
        let s = with_policy(SharingPolicy::Isolated);
        let data = b"isolated bytes".to_vec();
        let size = data.len() as u64;
        let digest = put(&s.content, &ns("a"), &data).await;

        let mut w = s
            .content
            .writer(&ns("b"), options("own", size, &digest))
            .await
            .unwrap();
        assert_eq!(w.status().await.unwrap().offset, 0);
        assert!(s
            .content
            .info(&ns("b"), &digest)
            .await
            .unwrap_err()
            .is_not_found());
        w.write(&data).await.unwrap();
        w.commit(size, Some(digest.clone()), Labels::new())
            .await
            .unwrap();
        assert_eq!(read_all(&s.content, &ns("b"), &digest).await, data);
        assert_eq!(s.backend.walk(&ns("b"), &[]).await.unwrap().len(), 1);
    }

    /// What lease `id` of `ns` holds, as `type id` lines.
    async fn held(db: &Db, ns: &Namespace, id: &str) -> Vec<String> {
        crated_core::leases::LeaseStore::list_resources(db, ns, id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {}", r.r#type, r.id))
            .collect()
    }

    #[tokio::test]
    async fn a_committed_ingest_leaves_only_its_content_in_the_lease() {
        use crated_core::leases::LeaseStore as _;
        let s = with_policy(SharingPolicy::Shared);
        let (a, b) = (ns("a"), ns("b"));
        let data = b"leased bytes";
        let digest = Digest::sha256(data);
        for n in [&a, &b] {
            s.db.create(n, "l", Default::default()).await.unwrap();
        }
        let leased = |total: u64| WriterOptions {
            r#ref: "ingest-1".into(),
            total,
            expected: Some(digest.clone()),
            lease: Some("l".into()),
        };

        let mut w = s.content.writer(&a, leased(0)).await.unwrap();
        w.write(data).await.unwrap();
        assert_eq!(held(&s.db, &a, "l").await, ["ingests ingest-1"]);
        // A failed commit keeps the ingest, and so its lease.
        let err = w
            .commit(1, Some(digest.clone()), Labels::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition, "{err}");
        assert_eq!(held(&s.db, &a, "l").await, ["ingests ingest-1"]);
        let mut w = s.content.writer(&a, leased(0)).await.unwrap();
        w.truncate(0).await.unwrap();
        w.write(data).await.unwrap();
        w.commit(0, Some(digest.clone()), Labels::new())
            .await
            .unwrap();
        assert_eq!(
            held(&s.db, &a, "l").await,
            [format!("content {digest}")],
            "the ingest is gone from the lease"
        );

        // The same in b, where the blob is shared without a transfer.
        let w = s.content.writer(&b, leased(0)).await.unwrap();
        assert_eq!(held(&s.db, &b, "l").await, ["ingests ingest-1"]);
        w.commit(0, Some(digest.clone()), Labels::new())
            .await
            .unwrap();
        assert_eq!(held(&s.db, &b, "l").await, [format!("content {digest}")]);
    }
}
