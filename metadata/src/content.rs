//! Namespaced content: each namespace's view of a shared blob store.
//!
//! Blobs live once in the backend store (`crated-content-store`); what a
//! namespace sees is its own records under `obj\0<ns>\0blobs\0<digest>`,
//! carrying the labels and times of that namespace. A blob is visible in a
//! namespace only once written or committed there. With the `shared`
//! policy, a writer that names an expected digest the backend already holds
//! gets the record straight away and AlreadyExists, so the client skips the
//! transfer; a blob committed again from another namespace is stored once.
//!
//! Ingest refs are prefixed with the namespace in the backend, so two
//! namespaces never resume each other's writes.
//!
//! Until the garbage collector lands, deleting a namespace's record deletes
//! the backend blob as soon as no namespace has a record of it.

use std::sync::Arc;
use std::time::SystemTime;

use crated_core::content::{ContentStore, Info, Labels, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::filters::{self, Adaptor};
use crated_core::{labels, Error, Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode};
use crate::{keys, Db};

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
    Error::not_found(format!(
        "content {digest} not found in namespace {ns:?}",
        ns = ns.as_str()
    ))
}

fn backend_ref(ns: &Namespace, r#ref: &str) -> String {
    format!("{}/{}", ns.as_str(), r#ref)
}

fn validate_ref(r#ref: &str) -> Result<()> {
    if r#ref.is_empty() {
        return Err(Error::invalid_argument("ingest ref must not be empty"));
    }
    Ok(())
}

struct InfoFields<'a>(&'a Info);

impl Adaptor for InfoFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["digest"] => Some(self.0.digest.to_string()),
            ["size"] => Some(self.0.size.to_string()),
            ["labels", key] => self.0.labels.get(*key).cloned(),
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
        self.db
            .read(|tx| tx.get(&record_key(ns, digest)))?
            .map(|raw| decode(&format!("content {digest}"), &raw))
            .transpose()
    }

    /// Adds `digest` to `ns`, held by `lease` if given; AlreadyExists if it
    /// is there.
    fn create_record(
        &self,
        ns: &Namespace,
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
            return Err(Error::already_exists(format!(
                "content {digest} already exists"
            )));
        }
        Ok(())
    }

    /// Whether any namespace still records `digest`.
    fn referenced(&self, digest: &Digest) -> Result<bool> {
        let namespaces = self.db.read(|tx| tx.scan(&keys::namespaces()))?;
        let prefix_len = keys::namespaces().len();
        for (key, _) in namespaces {
            let ns = String::from_utf8_lossy(&key[prefix_len..]).into_owned();
            let record = keys::object(&ns, KIND, &[digest.as_str()]);
            if self.db.read(|tx| tx.get(&record))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
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
                return Err(Error::invalid_argument(format!(
                    "cannot update {path:?} field on content info {digest}"
                )));
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
        let _guard = self.lifecycle.lock().await;
        self.db.write(|tx| {
            let key = record_key(ns, digest);
            if tx.get(&key)?.is_none() {
                return Err(not_found(ns, digest));
            }
            tx.delete(key);
            tx.mark_dirty();
            Ok(())
        })?;
        if !self.referenced(digest)? {
            match self.backend.delete(ns, digest).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(%digest, error = %e, "delete unreferenced blob"),
            }
        }
        Ok(())
    }

    async fn reader_at(&self, ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        if self.record(ns, digest)?.is_none() {
            return Err(not_found(ns, digest));
        }
        self.backend.reader_at(ns, digest).await
    }

    async fn status(&self, ns: &Namespace, r#ref: &str) -> Result<Status> {
        validate_ref(r#ref)?;
        let mut status = self
            .backend
            .status(ns, &backend_ref(ns, r#ref))
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    Error::not_found(format!(
                        "ingest {ref:?} not found in namespace {:?}",
                        ns.as_str()
                    ))
                } else {
                    e
                }
            })?;
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
            .map_err(|e| {
                if e.is_not_found() {
                    Error::not_found(format!(
                        "ingest {ref:?} not found in namespace {:?}",
                        ns.as_str()
                    ))
                } else {
                    e
                }
            })
    }

    async fn writer(&self, ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        validate_ref(&options.r#ref)?;
        if let Some(expected) = &options.expected {
            if self.record(ns, expected)?.is_some() {
                // The caller's lease holds it from now on, as containerd's.
                if let Some(lease) = &options.lease {
                    self.db.write(|tx| {
                        crate::leases::hold(tx, ns, lease, "content", expected.as_str())
                    })?;
                }
                return Err(Error::already_exists(format!(
                    "content {expected} already exists"
                )));
            }
            if self.policy == SharingPolicy::Shared {
                if let Ok(info) = self.backend.info(ns, expected).await {
                    if options.total == 0 || options.total == info.size {
                        let _guard = self.lifecycle.lock().await;
                        // The blob may have been deleted meanwhile; only
                        // claim it if it is still there.
                        if self.backend.info(ns, expected).await.is_ok() {
                            self.create_record(
                                ns,
                                expected,
                                info.size,
                                Labels::new(),
                                options.lease.as_deref(),
                            )?;
                            return Err(Error::already_exists(format!(
                                "content {expected} already exists"
                            )));
                        }
                    }
                }
            }
        }
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
        let inner = self
            .backend
            .writer(
                ns,
                WriterOptions {
                    r#ref: backend_ref(ns, &options.r#ref),
                    // The backend keeps no leases; this layer holds them.
                    lease: None,
                    ..options
                },
            )
            .await
            .map_err(|e| match e.kind() {
                // The backend names its namespaced ref; the client knows its own.
                crated_core::Kind::Unavailable => Error::unavailable(format!(
                    "ref {own_ref:?} is locked: another writer is active"
                )),
                _ => e,
            })?;
        Ok(Box::new(NamespacedWriter {
            inner,
            ns: ns.clone(),
            r#ref: own_ref,
            lease,
            view: NamespacedContent {
                db: self.db.clone(),
                backend: Arc::clone(&self.backend),
                policy: self.policy,
                lifecycle: Arc::clone(&self.lifecycle),
            },
        }))
    }
}

struct NamespacedWriter {
    inner: Box<dyn Writer>,
    ns: Namespace,
    r#ref: String,
    lease: Option<String>,
    view: NamespacedContent,
}

#[async_trait::async_trait]
impl Writer for NamespacedWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.inner.write(data).await
    }

    async fn digest(&self) -> Result<Digest> {
        self.inner.digest().await
    }

    async fn status(&self) -> Result<Status> {
        let mut status = self.inner.status().await?;
        status.r#ref = self.r#ref.clone();
        Ok(status)
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        self.inner.truncate(size).await
    }

    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        labels::validate_all(&labels)?;
        let digest = self.inner.digest().await?;
        let written = self.inner.status().await?.offset;
        let this = *self;
        let _guard = this.view.lifecycle.lock().await;
        match this.inner.commit(size, expected, labels.clone()).await {
            Ok(()) => {}
            // The bytes are already stored (by this or another namespace):
            // they are shared, and this namespace gets its record.
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        this.view
            .create_record(&this.ns, &digest, written, labels, this.lease.as_deref())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
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
}
