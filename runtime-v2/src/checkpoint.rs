//! Checkpoint images in the content store, as containerd's tasks service
//! writes and reads them: criu's image directory as one tar blob
//! (`application/vnd.containerd.container.criu.checkpoint.criu.tar`), and
//! the container's spec beside it. A task is restored from the tar,
//! extracted with the same root-bound extraction as image layers (a
//! checkpoint may come from a registry).

use std::io::Seek as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::content::ContentStore;
use crated_core::descriptor::Descriptor;
use crated_core::{Error, Namespace, Result};
use crated_differ::{archive, BlobReader, Whiteouts};

pub use crated_core::checkpoint::*;

/// A scratch directory for one checkpoint, removed with what is in it
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh directory under `parent` (created if missing).
    pub fn new(parent: &Path) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::unknown(format!("create {}: {e}", parent.display())))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path = parent.join(format!(
            "{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path)
            .map_err(|e| Error::unknown(format!("create {}: {e}", path.display())))?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the checkpoint image directory `dir` into `store` as a tar blob.
/// The tar is spooled to a file beside `dir` (criu's images are as large
/// as the task's memory).
pub async fn write_image(
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: Option<&str>,
    dir: &Path,
) -> Result<Descriptor> {
    let spool = dir.with_extension("tar");
    let (source, target) = (dir.to_owned(), spool.clone());
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| Error::unknown(format!("create {}: {e}", target.display())))?;
        crated_differ::compare::write_tree(&source, &mut file)?;
        file.rewind()
            .map_err(|e| Error::unknown(format!("rewind {}: {e}", target.display())))?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::unknown(format!("tar checkpoint: {e}")));
    let result = match file {
        Ok(Ok(file)) => {
            let r#ref = format!(
                "checkpoint-{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            );
            crated_core::content::write_blob(
                store,
                ns,
                lease,
                MEDIA_TYPE_CRIU,
                &r#ref,
                std::io::BufReader::new(file),
            )
            .await
        }
        Ok(Err(e)) | Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&spool);
    result
}

/// Extracts the checkpoint tar `desc` from `store` into `dir`.
pub async fn extract(
    store: Arc<dyn ContentStore>,
    ns: &Namespace,
    desc: &Descriptor,
    dir: &Path,
) -> Result<()> {
    if desc.media_type != MEDIA_TYPE_CRIU {
        return Err(Error::invalid_argument(format!(
            "unsupported checkpoint type {:?}: expected {MEDIA_TYPE_CRIU}",
            desc.media_type
        )));
    }
    let reader = store
        .reader_at(ns, &desc.digest)
        .await
        .map_err(|e| e.context(format!("checkpoint {}", desc.digest)))?;
    let runtime = tokio::runtime::Handle::current();
    let dir = dir.to_owned();
    let digest = desc.digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut rest = archive::apply(BlobReader::new(runtime, &*reader), &dir, Whiteouts::Delete)?;
        // The archive's end padding: read so a short blob is noticed.
        std::io::copy(&mut rest, &mut std::io::sink())
            .map_err(|e| Error::invalid_argument(format!("read checkpoint {digest}: {e}")))?;
        Ok(())
    })
    .await
    .map_err(|e| Error::unknown(format!("extract checkpoint: {e}")))?
}
