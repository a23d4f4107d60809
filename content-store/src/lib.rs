#![doc = include_str!("../README.md")]

mod ingest;
mod layout;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crated_core::content::{ContentStore, Info, Labels, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::filters::{self, Adaptor};
use crated_core::{labels, Error, Namespace, Result};

use layout::Layout;

/// The local content store.
///
/// Blobs are not namespaced here: the namespace argument of every call is
/// ignored (the metadata layer keeps each namespace's view).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> crated_core::Result<()> {
/// use crated_core::content::{ContentStore, WriterOptions};
/// use crated_core::Namespace;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = crated_content_store::LocalStore::open(dir.path())?;
/// let ns = Namespace::new("default")?;
/// let mut writer = store.writer(&ns, WriterOptions { r#ref: "hello".into(), ..Default::default() }).await?;
/// writer.write(b"hello").await?;
/// let digest = writer.digest();
/// writer.commit(5, Some(digest.clone()), Default::default()).await?;
/// assert_eq!(store.info(&ns, &digest).await?.size, 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalStore {
    layout: Arc<Layout>,
    /// Refs with an open writer in this process.
    active: Arc<Mutex<HashSet<String>>>,
}

pub(crate) fn io_error(what: impl std::fmt::Display, path: &Path, err: std::io::Error) -> Error {
    let message = format!("{what} {}: {err}", path.display());
    match err.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(message),
        _ => Error::unknown(message),
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::unknown(format!("content store worker failed: {e}")))?
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

/// Holds a ref's writer slot; dropping it frees the ref for another writer.
pub(crate) struct RefLock {
    active: Arc<Mutex<HashSet<String>>>,
    r#ref: String,
}

impl Drop for RefLock {
    fn drop(&mut self) {
        // A poisoned set only means a panic elsewhere; the set is still sound.
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.remove(&self.r#ref);
    }
}

impl LocalStore {
    /// Opens (creating) the store rooted at `root`, e.g.
    /// `/var/lib/crated/io.containerd.content.v1.content`.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::create(root)?;
        Ok(Self {
            layout: Arc::new(layout),
            active: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    fn lock(&self, r#ref: &str) -> Result<RefLock> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if !active.insert(r#ref.to_owned()) {
            return Err(Error::unavailable(format!(
                "ref {ref:?} is locked: another writer is active"
            )));
        }
        Ok(RefLock {
            active: Arc::clone(&self.active),
            r#ref: r#ref.to_owned(),
        })
    }

    fn info_blocking(layout: &Layout, digest: &Digest) -> Result<Info> {
        let path = layout.blob(digest);
        let meta = std::fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("content {digest} not found"))
            } else {
                io_error("stat blob", &path, e)
            }
        })?;
        let created = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let (labels, updated) = layout.read_labels(digest)?;
        Ok(Info {
            digest: digest.clone(),
            size: meta.len(),
            created_at: created,
            updated_at: updated.unwrap_or(created),
            labels,
        })
    }
}

fn validate_ref(r#ref: &str) -> Result<()> {
    if r#ref.is_empty() {
        return Err(Error::invalid_argument("ingest ref must not be empty"));
    }
    Ok(())
}

#[async_trait::async_trait]
impl ContentStore for LocalStore {
    async fn info(&self, _ns: &Namespace, digest: &Digest) -> Result<Info> {
        let (layout, digest) = (Arc::clone(&self.layout), digest.clone());
        blocking(move || Self::info_blocking(&layout, &digest)).await
    }

    async fn update(&self, _ns: &Namespace, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let layout = Arc::clone(&self.layout);
        let fieldpaths = fieldpaths.to_vec();
        blocking(move || {
            let current = Self::info_blocking(&layout, &info.digest)?;
            let mut labels = current.labels;
            if fieldpaths.is_empty() || fieldpaths.iter().any(|p| p == "labels") {
                labels = Labels::new();
                for (k, v) in info.labels.iter().filter(|(_, v)| !v.is_empty()) {
                    labels.insert(k.clone(), v.clone());
                }
            }
            for path in fieldpaths.iter().filter(|p| *p != "labels") {
                let key = path
                    .strip_prefix("labels.")
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        Error::invalid_argument(format!(
                            "cannot update {path:?} field on content info {}",
                            info.digest
                        ))
                    })?;
                match info.labels.get(key).filter(|v| !v.is_empty()) {
                    Some(v) => labels.insert(key.to_owned(), v.clone()),
                    None => labels.remove(key),
                };
            }
            labels::validate_all(&labels)?;
            layout.write_labels(&info.digest, &labels)?;
            Self::info_blocking(&layout, &info.digest)
        })
        .await
    }

    async fn walk(&self, _ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Info>> {
        let filter = filters::parse_all(filter_strings)?;
        let layout = Arc::clone(&self.layout);
        blocking(move || {
            let mut out = Vec::new();
            for digest in layout.blobs()? {
                match Self::info_blocking(&layout, &digest) {
                    Ok(info) if filter.matches(&InfoFields(&info)) => out.push(info),
                    Ok(_) => {}
                    // Deleted while walking.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, _ns: &Namespace, digest: &Digest) -> Result<()> {
        let (layout, digest) = (Arc::clone(&self.layout), digest.clone());
        blocking(move || layout.delete_blob(&digest)).await
    }

    async fn reader_at(&self, _ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        let path = self.layout.blob(digest);
        let digest = digest.clone();
        let file = blocking(move || {
            std::fs::File::open(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::not_found(format!("content {digest} not found"))
                } else {
                    io_error("open blob", &path, e)
                }
            })
        })
        .await?;
        let size = file
            .metadata()
            .map_err(|e| Error::unknown(format!("stat open blob: {e}")))?
            .len();
        Ok(Box::new(FileReader {
            file: Arc::new(file),
            size,
        }))
    }

    async fn status(&self, _ns: &Namespace, r#ref: &str) -> Result<Status> {
        validate_ref(r#ref)?;
        let (layout, r#ref) = (Arc::clone(&self.layout), r#ref.to_owned());
        blocking(move || ingest::status(&layout, &r#ref)).await
    }

    async fn list_statuses(
        &self,
        _ns: &Namespace,
        filter_strings: &[String],
    ) -> Result<Vec<Status>> {
        let filter = filters::parse_all(filter_strings)?;
        let layout = Arc::clone(&self.layout);
        blocking(move || {
            Ok(ingest::list(&layout)?
                .into_iter()
                .filter(|s| filter.matches(&StatusFields(s)))
                .collect())
        })
        .await
    }

    async fn abort(&self, _ns: &Namespace, r#ref: &str) -> Result<()> {
        validate_ref(r#ref)?;
        let (layout, r#ref) = (Arc::clone(&self.layout), r#ref.to_owned());
        blocking(move || ingest::remove(&layout, &r#ref)).await
    }

    async fn writer(&self, _ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        validate_ref(&options.r#ref)?;
        if let Some(expected) = &options.expected {
            if self.layout.blob(expected).exists() {
                return Err(Error::already_exists(format!(
                    "content {expected} already exists"
                )));
            }
        }
        let lock = self.lock(&options.r#ref)?;
        let layout = Arc::clone(&self.layout);
        let writer = blocking(move || ingest::LocalWriter::open(layout, options, lock)).await?;
        Ok(Box::new(writer))
    }
}

struct FileReader {
    file: Arc<std::fs::File>,
    size: u64,
}

#[async_trait::async_trait]
impl ReaderAt for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
        let file = Arc::clone(&self.file);
        let data = blocking(move || {
            let mut data = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut data[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::unknown(format!("read blob at {offset}: {e}"))),
                }
            }
            data.truncate(filled);
            Ok(data)
        })
        .await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

/// Where a store keeps its files, for tests and tools.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        (Arc::new(store), Box::new(dir))
    }

    crated_core::content_store_testsuite!(store);

    fn ns() -> Namespace {
        Namespace::new("default").unwrap()
    }

    #[tokio::test]
    async fn ingest_resumes_after_reopen_and_layout_matches_containerd() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalStore::open(dir.path()).unwrap();
            let mut w = store
                .writer(
                    &ns(),
                    WriterOptions {
                        r#ref: "r".into(),
                        total: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            w.write(b"hello").await.unwrap();
            // Dropped without close, as a killed daemon would.
        }
        let store = LocalStore::open(dir.path()).unwrap();
        let status = store.status(&ns(), "r").await.unwrap();
        assert_eq!((status.offset, status.total), (5, 10));
        let mut w = store
            .writer(
                &ns(),
                WriterOptions {
                    r#ref: "r".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        w.write(b"world").await.unwrap();
        let digest = w.digest();
        w.commit(10, None, Labels::new()).await.unwrap();
        let blob = blob_path(dir.path(), &digest);
        assert_eq!(std::fs::read(&blob).unwrap(), b"helloworld");
        assert_eq!(
            std::fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0,
            "nothing left in ingest/"
        );
    }
}
