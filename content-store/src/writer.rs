//! The writer of an ingest: streamed, hashed once, resumable, committed
//! durably.
//!
//! File work runs on tokio's blocking threads. The open file, the hash state
//! and the ref's lock travel together as an [`Ingest`] into each blocking
//! operation and back, so no lock is held across an await, and a writer
//! whose operation was abandoned (its future dropped) keeps the ref locked
//! until that operation has finished touching the files.

use std::fs::{File, FileTimes, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crated_core::content::{Labels, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::error::KindError as _;
use crated_core::{labels, Kind, Result};
use sha2::{Digest as _, Sha256};

use crate::ingest;
use crate::layout::{hex, sync_dir, Layout, ALGORITHM};
use crate::locks::RefLock;
use crate::Error;

/// Size of the reads that re-hash an ingest being resumed.
const REHASH_BUFFER: usize = 1 << 20;

/// A write buffer grown past this by a huge write is not kept for the next.
const MAX_KEPT_BUFFER: usize = 4 << 20;

/// What a blocking operation on an ingest needs, moved in and out whole.
struct Ingest {
    dir: PathBuf,
    /// The data file, written at explicit offsets (never through a cursor),
    /// so a failed write cannot shift later ones.
    file: File,
    /// Hash of `file[..offset]`.
    hasher: Sha256,
    offset: u64,
    /// The bytes of the current write, reused from one write to the next.
    buf: Vec<u8>,
    /// Dropped last, when nothing touches the files any more.
    _lock: RefLock,
}

impl Ingest {
    /// Appends `buf` at `offset`, then hashes it.
    fn append(&mut self) -> Result<Digest, Error> {
        if let Err(e) = self.file.write_all_at(&self.buf, self.offset) {
            // Drop a partial write so the file keeps matching the hash; if
            // that fails too, the next write overwrites it anyway and commit
            // checks the file's length.
            let _ = self.file.set_len(self.offset);
            return Err(Error::io("write", self.dir.join("data"), e));
        }
        self.hasher.update(&self.buf);
        self.offset += self.buf.len() as u64;
        if self.buf.capacity() > MAX_KEPT_BUFFER {
            self.buf = Vec::new();
        }
        Ok(digest_of(&self.hasher))
    }

    /// Discards everything past `size`, re-hashing what stays.
    fn truncate(&mut self, size: u64) -> Result<Digest, Error> {
        let data = self.dir.join("data");
        self.file
            .set_len(size)
            .map_err(|e| Error::io("truncate", &data, e))?;
        let (hasher, hashed) = hash_prefix(&self.file, size, &data)?;
        if hashed != size {
            return Err(Error::TruncatedShort {
                path: data,
                left: hashed,
                size,
            });
        }
        (self.hasher, self.offset) = (hasher, size);
        Ok(digest_of(&self.hasher))
    }
}

/// An open ingest of the local store.
pub(crate) struct LocalWriter {
    layout: Arc<Layout>,
    r#ref: String,
    /// `None` while an operation runs on a blocking thread, and for good if
    /// that operation was abandoned or panicked.
    ingest: Option<Ingest>,
    digest: Digest,
    offset: u64,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
}

impl LocalWriter {
    /// Opens the ingest of `options.ref`, resuming it if it exists (its data
    /// is re-hashed, so the digest covers every byte), else creating it.
    /// Blocking.
    pub(crate) fn open(
        layout: Arc<Layout>,
        options: WriterOptions,
        lock: RefLock,
    ) -> Result<Self, Error> {
        let WriterOptions {
            r#ref,
            total,
            mut expected,
            // Leases are the metadata layer's; blobs here are kept or
            // removed by whoever owns the store.
            lease: _,
        } = options;
        let dir = layout.ingest(&r#ref);
        let existing = match ingest::read_status(&dir)? {
            Some(status) if status.r#ref != r#ref => {
                tracing::warn!(ingest = %r#ref, found = %status.r#ref, path = %dir.display(),
                    "ingest directory holds another ref; starting over");
                None
            }
            // Told a different size: the ingest is of other content.
            Some(status) if total > 0 && status.total > 0 && total != status.total => {
                tracing::info!(
                    ingest = %r#ref,
                    total,
                    was = status.total,
                    "ingest total changed; starting over"
                );
                None
            }
            other => other,
        };
        let now = SystemTime::now();
        let (file, hasher, offset, total, started_at, updated_at) = match existing {
            Some(status) => {
                let path = dir.join("data");
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io("open", &path, e))?;
                let (hasher, offset) = hash_prefix(&file, u64::MAX, &path)?;
                match &expected {
                    Some(named) if status.expected.as_ref() != Some(named) => {
                        ingest::write_expected(&dir, named)?;
                    }
                    Some(_) => {}
                    None => expected = status.expected.clone(),
                }
                if status.total == 0 && total > 0 {
                    crate::layout::write_replace(&dir.join("total"), total.to_string().as_bytes())?;
                }
                let total = if status.total > 0 {
                    status.total
                } else {
                    total
                };
                (
                    file,
                    hasher,
                    offset,
                    total,
                    status.started_at,
                    status.updated_at,
                )
            }
            None => {
                let file = ingest::create(&dir, &r#ref, total, expected.as_ref(), now)?;
                (file, Sha256::new(), 0, total, now, now)
            }
        };
        Ok(Self {
            layout,
            digest: digest_of(&hasher),
            ingest: Some(Ingest {
                dir,
                file,
                hasher,
                offset,
                buf: Vec::new(),
                _lock: lock,
            }),
            r#ref,
            offset,
            total,
            expected,
            started_at,
            updated_at,
        })
    }

    /// Runs `op` on the ingest on a blocking thread.
    async fn run<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Ingest) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut ingest = self.take()?;
        let (ingest, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut ingest);
            (ingest, result)
        })
        .await
        .map_err(|source| Error::IngestTask {
            op: "file operation on",
            r#ref: self.r#ref.clone(),
            source,
        })?;
        self.ingest = Some(ingest);
        result
    }

    fn take(&mut self) -> Result<Ingest, Error> {
        self.ingest.take().ok_or_else(|| Error::WriterUnusable {
            r#ref: self.r#ref.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Writer for LocalWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let ingest = self.ingest.as_mut();
        match ingest {
            Some(ingest) => {
                ingest.buf.clear();
                ingest.buf.extend_from_slice(data);
            }
            None => return Ok(self.take().map(drop)?),
        }
        self.digest = self.run(Ingest::append).await?;
        self.offset += data.len() as u64;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    async fn digest(&self) -> Result<Digest> {
        Ok(self.digest.clone())
    }

    async fn status(&self) -> Result<Status> {
        Ok(Status {
            r#ref: self.r#ref.clone(),
            offset: self.offset,
            total: self.total,
            expected: self.expected.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size > self.offset {
            return Err(Error::TruncateBeyondEnd {
                r#ref: self.r#ref.clone(),
                size,
                offset: self.offset,
            }
            .into());
        }
        self.digest = self.run(move |ingest| ingest.truncate(size)).await?;
        self.offset = size;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        labels::validate_all(&labels)?;
        if let Some(expected) = &expected {
            check_algorithm(expected)?;
        }
        let ingest = self.take()?;
        let layout = Arc::clone(&self.layout);
        let r#ref = self.r#ref.clone();
        tokio::task::spawn_blocking(move || {
            commit(&layout, ingest, &r#ref, size, expected.as_ref(), &labels)
        })
        .await
        .map_err(|source| Error::IngestTask {
            op: "commit of",
            r#ref: self.r#ref.clone(),
            source,
        })??;
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let Some(ingest) = self.ingest.take() else {
            return Ok(());
        };
        let updated_at = self.updated_at;
        let r#ref = self.r#ref.clone();
        tokio::task::spawn_blocking(move || {
            let data = ingest.dir.join("data");
            ingest
                .file
                .sync_data()
                .map_err(|e| Error::io("sync", &data, e))?;
            match ingest::write_updated_at(&ingest.dir, updated_at) {
                // Aborted while open: nothing left to record.
                Err(e) if e.kind() == Kind::NotFound => Ok(()),
                other => other,
            }
        })
        .await
        .map_err(|source| Error::IngestTask {
            op: "close of",
            r#ref,
            source,
        })??;
        Ok(())
    }
}

/// Refuses digests the store cannot produce: it hashes with sha256 only.
pub(crate) fn check_algorithm(digest: &Digest) -> Result<(), Error> {
    if digest.algorithm() == ALGORITHM {
        return Ok(());
    }
    Err(Error::UnsupportedAlgorithm {
        digest: digest.clone(),
        supported: ALGORITHM,
    })
}

/// Verifies the ingest and moves its data into `blobs/`. Blocking.
///
/// Order matters for crash safety: the data is stamped, made read-only and
/// synced before the rename, and the blob directory synced after it, so a
/// blob that can be seen is complete and stays after a crash. A failed
/// check keeps the ingest for the client to inspect, resume or abort; a
/// blob that already exists makes the ingest pointless, so it goes.
fn commit(
    layout: &Layout,
    ingest: Ingest,
    r#ref: &str,
    size: u64,
    expected: Option<&Digest>,
    labels: &Labels,
) -> Result<(), Error> {
    let data = ingest.dir.join("data");
    let on_disk = ingest
        .file
        .metadata()
        .map_err(|e| Error::io("stat", &data, e))?
        .len();
    if on_disk != ingest.offset {
        return Err(Error::IngestChanged {
            r#ref: r#ref.to_owned(),
            on_disk,
            written: ingest.offset,
        });
    }
    if size > 0 && size != ingest.offset {
        return Err(Error::UnexpectedSize {
            r#ref: r#ref.to_owned(),
            written: ingest.offset,
            expected: size,
        });
    }
    let digest = digest_of(&ingest.hasher);
    if let Some(expected) = expected {
        if *expected != digest {
            return Err(Error::UnexpectedDigest {
                r#ref: r#ref.to_owned(),
                digest,
                expected: expected.clone(),
            });
        }
    }
    let target = layout.blob(&digest);
    if target.exists() {
        return Err(already_exists(ingest, &digest));
    }

    // The commit time is the blob's mtime, which `info` reports as created.
    let now = SystemTime::now();
    let finish = |file: &File| {
        file.set_times(FileTimes::new().set_accessed(now).set_modified(now))?;
        file.set_permissions(Permissions::from_mode(0o444))?;
        file.sync_all()
    };
    if let Err(e) = finish(&ingest.file) {
        restore_mode(&ingest.file);
        return Err(Error::io("sync", &data, e));
    }
    match rename_noreplace(&data, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(already_exists(ingest, &digest));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::AbortedDuringCommit {
                r#ref: r#ref.to_owned(),
                source: e,
            });
        }
        Err(e) => {
            restore_mode(&ingest.file);
            return Err(Error::io("commit blob to", &target, e));
        }
    }
    let blob_dir = target.parent().unwrap_or(&layout.root);
    sync_dir(blob_dir)?;

    // The blob is committed: from here on failures are reported but undo
    // nothing.
    if let Err(e) = ingest::remove_dir(&ingest.dir) {
        tracing::warn!(ingest = %r#ref, %digest, error = %e, "committed, but the ingest directory stays");
    }
    drop(ingest);
    // A commit sets the blob's labels, clearing any left by a blob of the
    // same digest deleted earlier.
    let labelled = if labels.is_empty() {
        layout.remove_labels(&digest)
    } else {
        layout.write_labels(&digest, labels, now)
    };
    labelled.map_err(|e| Error::LabelsNotSet {
        digest,
        source: Box::new(e),
    })
}

/// AlreadyExists for `digest`, removing the now pointless ingest first (and
/// only then releasing its ref).
fn already_exists(ingest: Ingest, digest: &Digest) -> Error {
    if let Err(e) = ingest::remove_dir(&ingest.dir) {
        tracing::warn!(%digest, error = %e, "remove the ingest of an existing blob");
    }
    drop(ingest);
    Error::AlreadyExists {
        digest: digest.clone(),
    }
}

/// Puts back the mode a failed commit took away, so the ingest stays
/// writable for a resume.
fn restore_mode(file: &File) {
    let _ = file.set_permissions(Permissions::from_mode(0o644));
}

/// Renames `from` to `to` unless `to` exists (then AlreadyExists), in one
/// step where the kernel and file system can: a concurrent commit of the
/// same digest then loses cleanly instead of replacing the blob.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{renameat2, RenameFlags};
        match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            // Not supported here: fall back to check-then-rename.
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if to.exists() {
        return Err(ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// Hashes `file` from the start, up to `limit` bytes or its end; returns
/// the hash state and the number of bytes hashed.
fn hash_prefix(file: &File, limit: u64, path: &Path) -> Result<(Sha256, u64), Error> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; REHASH_BUFFER];
    let mut offset = 0u64;
    while offset < limit {
        let want = usize::try_from(limit - offset).map_or(buf.len(), |n| n.min(buf.len()));
        let n = match file.read_at(&mut buf[..want], offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("re-hash", path, e)),
        };
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok((hasher, offset))
}

/// The digest of what `hasher` has seen so far.
fn digest_of(hasher: &Sha256) -> Digest {
    let hex = hex(&hasher.clone().finalize());
    Digest::parse(&format!("{ALGORITHM}:{hex}"))
        .expect("64 lower-case hex digits make a valid sha256 digest")
}
