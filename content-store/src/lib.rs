#![doc = include_str!("../README.md")]

mod error;
mod ingest;
mod layout;
mod locks;
pub mod plugin;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crated_core::content::{ContentStore, Info, Labels, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::error::KindError as _;
use crated_core::filters::{self, Adaptor};
use crated_core::labels::LabelUpdate;
use crated_core::{Kind, Namespace, Result};

pub use error::Error;
use layout::Layout;
use locks::RefLocks;
use writer::LocalWriter;

/// How long a writer for a locked ref waits for the holder by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The local content store: blobs in files under one directory.
///
/// Blobs are not namespaced here: the namespace argument of every call is
/// ignored, and the metadata layer keeps each namespace's view. Cloning is
/// cheap and clones share everything, including the ref locks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> crated_core::Result<()> {
/// use crated_core::content::{ContentStore, WriterOptions};
/// use crated_core::Namespace;
///
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let store = crated_content_store::LocalStore::open(dir.path())?;
/// let ns = Namespace::new("default")?;
/// let options = WriterOptions { r#ref: "hello".into(), ..Default::default() };
/// let mut writer = store.writer(&ns, options).await?;
/// writer.write(b"hello").await?;
/// let digest = writer.digest().await?;
/// writer.commit(5, Some(digest.clone()), Default::default()).await?;
/// assert_eq!(store.info(&ns, &digest).await?.size, 5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
    lock_wait: Duration,
}

#[derive(Debug)]
struct Inner {
    layout: Arc<Layout>,
    locks: Arc<RefLocks>,
    /// Serialises read-modify-write of labels files, and their removal.
    labels: Mutex<()>,
}

impl LocalStore {
    /// Opens the store rooted at `root` (the daemon passes
    /// `<root>/io.containerd.content.v1.content`), creating its directories
    /// if needed. Ingests left by an earlier run stay, ready to resume.
    pub fn open(root: &Path) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                layout: Arc::new(Layout::create(root)?),
                locks: RefLocks::for_root(root),
                labels: Mutex::new(()),
            }),
            lock_wait: DEFAULT_LOCK_WAIT,
        })
    }

    /// This store with another wait for a locked ref (default
    /// [`DEFAULT_LOCK_WAIT`]; zero refuses at once).
    #[must_use]
    pub fn with_lock_wait(self, wait: Duration) -> Self {
        Self {
            lock_wait: wait,
            ..self
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Where the blob of `digest` lives once committed (whether or not it
    /// is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.blob(digest)
    }

    fn layout(&self) -> Arc<Layout> {
        Arc::clone(&self.inner.layout)
    }

    /// Runs `f` with the labels lock on a blocking thread.
    async fn with_labels_lock<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Layout) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let _guard = inner.labels_lock();
            f(&inner.layout)
        })
        .await
    }
}

impl Inner {
    fn labels_lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data of its own, so poison means nothing.
        self.labels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| Error::Task { source })?
}

fn not_found(digest: &Digest) -> Error {
    Error::NotFound {
        digest: digest.clone(),
    }
}

fn validate_ref(r#ref: &str) -> Result<(), Error> {
    if r#ref.is_empty() {
        return Err(Error::EmptyRef);
    }
    Ok(())
}

/// Info of the blob of `digest`; NotFound if absent. Blocking.
fn info(layout: &Layout, digest: &Digest) -> Result<Info, Error> {
    let path = layout.blob(digest);
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => not_found(digest),
        _ => Error::io("stat blob", &path, e),
    })?;
    if !meta.is_file() {
        return Err(not_found(digest));
    }
    let created_at = meta
        .modified()
        .map_err(|e| Error::io("stat blob", &path, e))?;
    let (labels, updated_at) = layout
        .read_labels(digest)?
        .unwrap_or_else(|| (Labels::new(), created_at));
    Ok(Info {
        digest: digest.clone(),
        size: meta.len(),
        created_at,
        updated_at,
        labels,
    })
}

/// The fields `walk` filters on: `digest`, `size` and `labels.<key>`.
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

/// The field `list_statuses` filters on: `ref`.
struct StatusFields<'a>(&'a Status);

impl Adaptor for StatusFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["ref"] => Some(self.0.r#ref.clone()),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl ContentStore for LocalStore {
    async fn info(&self, _ns: &Namespace, digest: &Digest) -> Result<Info> {
        let (layout, digest) = (self.layout(), digest.clone());
        blocking(move || Ok(info(&layout, &digest)?)).await
    }

    async fn update(&self, _ns: &Namespace, new: Info, fieldpaths: &[String]) -> Result<Info> {
        let update = LabelUpdate::parse(fieldpaths, format_args!("content info {}", new.digest))?;
        self.with_labels_lock(move |layout| {
            let current = info(layout, &new.digest)?;
            let labels = update.apply(current.labels, &new.labels)?;
            let now = SystemTime::now();
            layout.write_labels(&new.digest, &labels, now)?;
            Ok(Info {
                labels,
                updated_at: now,
                ..current
            })
        })
        .await
    }

    async fn walk(&self, _ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Info>> {
        let filter = filters::parse_all(filter_strings)?;
        let layout = self.layout();
        blocking(move || {
            let mut out = Vec::new();
            for digest in layout.blobs()? {
                match info(&layout, &digest) {
                    Ok(info) if filter.matches(&InfoFields(&info)) => out.push(info),
                    Ok(_) => {}
                    // Deleted while walking, or not a blob file.
                    Err(e) if e.kind() == Kind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn digests(&self, _ns: &Namespace) -> Result<Vec<Digest>> {
        // The blob files' names: no label file read, no stat.
        let layout = self.layout();
        blocking(move || Ok(layout.blobs()?)).await
    }

    async fn delete(&self, _ns: &Namespace, digest: &Digest) -> Result<()> {
        let digest = digest.clone();
        self.with_labels_lock(move |layout| {
            let path = layout.blob(&digest);
            if !path.is_file() {
                return Err(not_found(&digest).into());
            }
            // Labels first: a crash in between leaves a blob without labels,
            // never labels that a later commit of the digest would inherit.
            layout.remove_labels(&digest)?;
            // No directory sync: a delete undone by a crash is harmless, the
            // blob is whole and garbage collection removes it again.
            std::fs::remove_file(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => not_found(&digest).into(),
                _ => Error::io("remove blob", &path, e).into(),
            })
        })
        .await
    }

    async fn reader_at(&self, _ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        let path = self.inner.layout.blob(digest);
        let digest = digest.clone();
        let reader = blocking(move || Ok(reader::FileReader::open(&path, &digest)?)).await?;
        Ok(Box::new(reader))
    }

    async fn status(&self, _ns: &Namespace, r#ref: &str) -> Result<Status> {
        validate_ref(r#ref)?;
        let (dir, r#ref) = (self.inner.layout.ingest(r#ref), r#ref.to_owned());
        blocking(move || Ok(ingest::status(&dir, &r#ref)?)).await
    }

    async fn list_statuses(
        &self,
        _ns: &Namespace,
        filter_strings: &[String],
    ) -> Result<Vec<Status>> {
        let filter = filters::parse_all(filter_strings)?;
        let root = self.inner.layout.ingests();
        blocking(move || {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(&root).map_err(|e| Error::io("list", &root, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list", &root, e))?;
                // An ingest committed or aborted while listing is skipped.
                match ingest::read_status(&entry.path()) {
                    Ok(Some(status)) if filter.matches(&StatusFields(&status)) => out.push(status),
                    Ok(_) => {}
                    Err(e) if e.kind() == Kind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            out.sort_by(|a, b| a.r#ref.cmp(&b.r#ref));
            Ok(out)
        })
        .await
    }

    /// Removes the ingest, even while a writer has it open (as containerd
    /// does): that writer's commit then fails with NotFound.
    async fn abort(&self, _ns: &Namespace, r#ref: &str) -> Result<()> {
        validate_ref(r#ref)?;
        let (dir, r#ref) = (self.inner.layout.ingest(r#ref), r#ref.to_owned());
        blocking(move || {
            ingest::status(&dir, &r#ref)?;
            Ok(ingest::remove_dir(&dir)?)
        })
        .await
    }

    async fn writer(&self, _ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        validate_ref(&options.r#ref)?;
        if let Some(expected) = &options.expected {
            writer::check_algorithm(expected)?;
            // Checked before locking, so a client told to skip the transfer
            // is told at once even if the ref is busy.
            let path = self.inner.layout.blob(expected);
            if blocking(move || Ok(path.is_file())).await? {
                return Err(Error::AlreadyExists {
                    digest: expected.clone(),
                }
                .into());
            }
        }
        let lock = self
            .inner
            .locks
            .acquire(&options.r#ref, self.lock_wait)
            .await?;
        let layout = self.layout();
        let writer = blocking(move || Ok(LocalWriter::open(layout, options, lock)?)).await?;
        Ok(Box::new(writer))
    }
}

#[cfg(test)]
mod tests;
