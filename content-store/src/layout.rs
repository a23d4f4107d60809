//! The on-disk layout, as containerd's local store:
//!
//! ```text
//! <root>/blobs/<algorithm>/<hex>        committed blobs, mode 0444
//! <root>/ingest/<sha256(ref)>/ref       the ingest's ref
//! <root>/ingest/<sha256(ref)>/data      bytes written so far
//! <root>/ingest/<sha256(ref)>/startedat start time, ns since the epoch
//! <root>/ingest/<sha256(ref)>/total     expected size, if known
//! <root>/ingest/<sha256(ref)>/expected  expected digest, if known
//! <root>/labels/<algorithm>/<hex>       labels of a blob, JSON (crated)
//! ```
//!
//! Files that must survive a crash are written to a temporary name, synced,
//! renamed, and their directory synced.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crated_core::content::Labels;
use crated_core::digest::Digest;
use crated_core::{Error, Result};
use sha2::{Digest as _, Sha256};

use crate::io_error;

pub(crate) struct Layout {
    pub(crate) root: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LabelsFile {
    labels: Labels,
    updated_at: SystemTime,
}

/// Syncs a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, e))
}

/// Writes `data` to `path` atomically and durably.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
    file.write_all(data)
        .map_err(|e| io_error("write", &tmp, e))?;
    file.sync_all().map_err(|e| io_error("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("rename into", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

impl Layout {
    pub(crate) fn create(root: &Path) -> Result<Self> {
        for dir in [
            root.join("blobs/sha256"),
            root.join("ingest"),
            root.join("labels/sha256"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_error("create content directory", &dir, e))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        crate::blob_path(&self.root, digest)
    }

    fn labels_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("labels")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The ingest directory of `ref`: named by the ref's hash so any ref is a
    /// safe file name.
    pub(crate) fn ingest(&self, r#ref: &str) -> PathBuf {
        let hash = Sha256::digest(r#ref.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.root.join("ingest").join(hex)
    }

    pub(crate) fn ingests(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Every committed blob's digest.
    pub(crate) fn blobs(&self) -> Result<Vec<Digest>> {
        let blobs = self.root.join("blobs");
        let mut out = Vec::new();
        let algorithms = std::fs::read_dir(&blobs).map_err(|e| io_error("list", &blobs, e))?;
        for algorithm in algorithms {
            let algorithm = algorithm.map_err(|e| io_error("list", &blobs, e))?;
            let dir = algorithm.path();
            let Some(alg) = algorithm.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for entry in std::fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))? {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                let Some(hex) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                // Stray files (editors, partial copies) are not blobs.
                if let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) {
                    out.push(digest);
                }
            }
        }
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(out)
    }

    pub(crate) fn read_labels(&self, digest: &Digest) -> Result<(Labels, Option<SystemTime>)> {
        let path = self.labels_path(digest);
        match std::fs::read(&path) {
            Ok(raw) => {
                let file: LabelsFile = serde_json::from_slice(&raw).map_err(|e| {
                    Error::unknown(format!(
                        "labels of {digest} in {} are unreadable: {e}",
                        path.display()
                    ))
                })?;
                Ok((file.labels, Some(file.updated_at)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Labels::new(), None)),
            Err(e) => Err(io_error("read labels", &path, e)),
        }
    }

    pub(crate) fn write_labels(&self, digest: &Digest, labels: &Labels) -> Result<()> {
        let path = self.labels_path(digest);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        }
        let file = LabelsFile {
            labels: labels.clone(),
            updated_at: SystemTime::now(),
        };
        let raw = serde_json::to_vec(&file)
            .map_err(|e| Error::unknown(format!("encode labels of {digest}: {e}")))?;
        write_atomic(&path, &raw)
    }

    pub(crate) fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob(digest);
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("content {digest} not found"))
            } else {
                io_error("remove blob", &path, e)
            }
        })?;
        let labels = self.labels_path(digest);
        match std::fs::remove_file(&labels) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("remove labels", &labels, e))
            }
            _ => {}
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}
