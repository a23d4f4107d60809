//! Content: blobs addressed by digest, written through resumable ingests.
//!
//! The traits mirror containerd's `content` package. Blobs are shared by all
//! namespaces; what a namespace may see of them is the metadata layer's
//! business, so every call names the [`Namespace`] it acts for and a store
//! that is not namespaced (the local one) ignores it.
//!
//! An ingest is identified by a *ref* chosen by the client (ctr uses the
//! image reference and layer digest). At most one [`Writer`] is open per
//! ref; a second gets Unavailable. A writer that is closed or dropped
//! without commit leaves its data in place, and a new writer for the same
//! ref resumes at [`Status::offset`], even after a daemon restart.

#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::{Namespace, Result};

/// Label set of a blob.
pub type Labels = BTreeMap<String, String>;

/// What is known about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was committed (to this namespace, for a namespaced store).
    pub created_at: SystemTime,
    /// When its labels last changed.
    pub updated_at: SystemTime,
    /// Its labels (gc references, distribution sources, …).
    pub labels: Labels,
}

/// The state of an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The ingest's ref.
    pub r#ref: String,
    /// Bytes written so far; a resumed write continues here.
    pub offset: u64,
    /// Expected total size, 0 when unknown.
    pub total: u64,
    /// Expected digest, if the writer was told.
    pub expected: Option<Digest>,
    /// When the ingest started.
    pub started_at: SystemTime,
    /// When it was last written.
    pub updated_at: SystemTime,
}

/// How to open a writer.
#[derive(Debug, Clone, Default)]
pub struct WriterOptions {
    /// The ingest ref; must not be empty.
    pub r#ref: String,
    /// Expected total size, 0 when unknown.
    pub total: u64,
    /// Expected digest; if that blob is already committed the writer is
    /// refused with AlreadyExists, so the client skips the transfer. A
    /// namespaced store may instead open the writer complete (offset =
    /// total = the blob's size) for a blob it shares from another
    /// namespace: committing it without writing records it.
    pub expected: Option<Digest>,
    /// The lease that holds the ingest and then the committed blob against
    /// garbage collection (containerd's `containerd-lease` header). Stores
    /// without a collector ignore it; the metadata layer refuses a lease
    /// that does not exist with NotFound.
    pub lease: Option<String>,
}

/// Random access to a committed blob.
#[async_trait::async_trait]
pub trait ReaderAt: Send + Sync {
    /// The blob's size.
    fn size(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end.
    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

/// An open ingest.
#[async_trait::async_trait]
pub trait Writer: Send + Sync {
    /// Appends `data` at the current offset. A remote writer may return
    /// once the data is sent, with a few writes in flight; a write the
    /// store refuses then fails the next call. `digest`, `status`, `commit`
    /// and `close` wait for every write before them.
    async fn write(&mut self, data: &[u8]) -> Result<()>;

    /// The digest of everything written so far. Async because a remote
    /// writer keeps writes in flight and waits for their replies first.
    async fn digest(&self) -> Result<Digest>;

    /// The ingest's status.
    async fn status(&self) -> Result<Status>;

    /// Discards everything past `size`; stores may support only 0.
    async fn truncate(&mut self, size: u64) -> Result<()>;

    /// Verifies and commits the blob: `size` (0 = do not check) and
    /// `expected` must match what was written, else FailedPrecondition and
    /// nothing is committed. A blob that already exists is AlreadyExists.
    /// The data is durable before this returns.
    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()>;

    /// Closes the writer, keeping the ingest for a later resume.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// A content store: blobs, their info and labels, and ingests.
#[async_trait::async_trait]
pub trait ContentStore: Send + Sync {
    /// Info of a committed blob; NotFound if absent.
    async fn info(&self, ns: &Namespace, digest: &Digest) -> Result<Info>;

    /// Updates labels (`labels` or `labels.<key>` field paths; none = all).
    async fn update(&self, ns: &Namespace, info: Info, fieldpaths: &[String]) -> Result<Info>;

    /// Every blob matching any of `filters` (fields `digest`, `size`,
    /// `labels.<key>`); no filters = all.
    async fn walk(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Info>>;

    /// The digest of every blob, without its info: what a collection
    /// needs. A store that can list them without reading each blob's
    /// labels should; the default walks.
    async fn digests(&self, ns: &Namespace) -> Result<Vec<Digest>> {
        Ok(self
            .walk(ns, &[])
            .await?
            .into_iter()
            .map(|info| info.digest)
            .collect())
    }

    /// Deletes a blob; NotFound if absent.
    async fn delete(&self, ns: &Namespace, digest: &Digest) -> Result<()>;

    /// Opens a committed blob for reading.
    async fn reader_at(&self, ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>>;

    /// The status of the ingest `ref`; NotFound if there is none.
    async fn status(&self, ns: &Namespace, r#ref: &str) -> Result<Status>;

    /// Every ingest matching any of `filters` (field `ref`).
    async fn list_statuses(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Status>>;

    /// Removes the ingest `ref` and its data; NotFound if there is none.
    async fn abort(&self, ns: &Namespace, r#ref: &str) -> Result<()>;

    /// Opens (or resumes) the ingest named in `options`.
    async fn writer(&self, ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>>;
}

/// Writes `data` into `store` as one blob of `media_type` under `lease`.
pub async fn write_blob(
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: Option<&str>,
    media_type: &str,
    r#ref: &str,
    mut data: impl std::io::Read,
) -> Result<crate::descriptor::Descriptor> {
    let mut writer = store
        .writer(
            ns,
            WriterOptions {
                r#ref: r#ref.to_owned(),
                total: 0,
                expected: None,
                lease: lease.map(str::to_owned),
            },
        )
        .await?;
    // A ref left by an earlier failed attempt starts over.
    writer.truncate(0).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = data
            .read(&mut buf)
            .map_err(|e| crate::Error::io(format_args!("read {ref}", ref = r#ref), e))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
        size += n as u64;
    }
    let digest = writer.digest().await?;
    match writer
        .commit(size, Some(digest.clone()), Default::default())
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    Ok(crate::descriptor::Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size,
        annotations: Default::default(),
    })
}
