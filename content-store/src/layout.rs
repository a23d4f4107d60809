//! Where the store keeps things on disk, and the file primitives that make
//! them durable.
//!
//! ```text
//! <root>/blobs/<algorithm>/<hex>          committed blobs, mode 0444; mtime = commit time
//! <root>/ingest/<sha256(ref)>/ref         the ingest's ref, verbatim
//! <root>/ingest/<sha256(ref)>/data        the bytes written so far
//! <root>/ingest/<sha256(ref)>/startedat   RFC 3339 time the ingest started
//! <root>/ingest/<sha256(ref)>/updatedat   RFC 3339 time of the last write, as of the last close
//! <root>/ingest/<sha256(ref)>/total       expected size in decimal, absent if unknown
//! <root>/ingest/<sha256(ref)>/expected    digest the writer named, absent if none (ours)
//! <root>/labels/<algorithm>/<hex>.json    a blob's labels, a JSON object; mtime = updated_at
//! ```
//!
//! `blobs/` and `ingest/` are containerd's `content/local` layout, so either
//! daemon can resume the other's ingests and read its blobs. `labels/` is
//! ours: containerd keeps labels only in its metadata database; so is an
//! ingest's `expected`, which containerd keeps there too and ignores here.

use std::fs::{File, FileTimes};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crated_core::content::Labels;
use crated_core::digest::Digest;
use sha2::{Digest as _, Sha256};

use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The algorithm the store hashes with; blobs of other algorithms can be
/// read, listed and deleted, but not written.
pub(crate) const ALGORITHM: &str = "sha256";

/// Every algorithm a blob directory may be named after.
const ALGORITHMS: [&str; 3] = ["sha256", "sha384", "sha512"];

/// The paths of one store.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
}

impl Layout {
    /// Creates the directories a store needs under `root`.
    pub(crate) fn create(root: &Path) -> Result<Self> {
        let layout = Self {
            root: root.to_owned(),
        };
        for dir in [
            layout.root.join("blobs").join(ALGORITHM),
            layout.ingests(),
            layout.root.join("labels").join(ALGORITHM),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        Ok(layout)
    }

    /// The committed blob of `digest`.
    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The labels file of `digest`.
    pub(crate) fn labels(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("labels")
            .join(digest.algorithm())
            .join(format!("{}.json", digest.hex()))
    }

    /// The directory holding every ingest.
    pub(crate) fn ingests(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// The directory of the ingest of `ref`: named by the sha256 of the ref,
    /// as containerd does, so any ref makes a fixed-length, safe name.
    pub(crate) fn ingest(&self, r#ref: &str) -> PathBuf {
        self.ingests().join(hex(&Sha256::digest(r#ref.as_bytes())))
    }

    /// Every committed blob, sorted by digest. Entries that are not blobs
    /// (a stray temporary file, an unknown algorithm) are skipped.
    pub(crate) fn blobs(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for algorithm in ALGORITHMS {
            let dir = self.root.join("blobs").join(algorithm);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Ok(digest) = Digest::parse(&format!("{algorithm}:{name}")) {
                    out.push(digest);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The labels of `digest` and when they were last set; no file means no
    /// labels, never set.
    pub(crate) fn read_labels(&self, digest: &Digest) -> Result<Option<(Labels, SystemTime)>> {
        let path = self.labels(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open labels", &path, e)),
        };
        let updated_at = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| Error::io("stat labels", &path, e))?;
        let labels = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|source| {
            Error::LabelsUnreadable {
                digest: digest.clone(),
                path: path.clone(),
                source,
            }
        })?;
        Ok(Some((labels, updated_at)))
    }

    /// Replaces the labels of `digest`, stamped `now`, atomically and
    /// durably.
    pub(crate) fn write_labels(
        &self,
        digest: &Digest,
        labels: &Labels,
        now: SystemTime,
    ) -> Result<()> {
        let raw = serde_json::to_vec(labels).map_err(|source| Error::LabelsUnencodable {
            digest: digest.clone(),
            source,
        })?;
        write_durably(&self.labels(digest), &raw, Some(now))
    }

    /// Removes the labels file of `digest`, if any.
    pub(crate) fn remove_labels(&self, digest: &Digest) -> Result<()> {
        let path = self.labels(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove labels", &path, e)),
            _ => Ok(()),
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Syncs a directory, making the creations, renames and removals in it
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Replaces `path` with `data` so that a reader sees the old or the new
/// content, never a mix: written to a temporary file beside it, then renamed.
/// Nothing is synced: for files whose loss in a crash is harmless.
pub(crate) fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))
}

/// Like [`write_replace`], but durable when it returns: the file is synced
/// before the rename and its directory after. `mtime`, if given, is set on
/// the file first, so it carries a time exactly.
pub(crate) fn write_durably(path: &Path, data: &[u8], mtime: Option<SystemTime>) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        if let Some(mtime) = mtime {
            file.set_times(FileTimes::new().set_accessed(mtime).set_modified(mtime))?;
        }
        file.sync_all()
    })();
    result.map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// The temporary sibling of `path`. One name per target is enough: the
/// store serialises writers of any one file (ingest files under the ref's
/// lock, labels under the labels lock).
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
