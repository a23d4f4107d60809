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
    /// A fresh directory under `parent` (created if missing). Both are
    /// root's alone: a dump holds the task's memory.
    pub fn new(parent: &Path) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let private = |path: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| Error::unknown(format!("create {}: {e}", path.display())))
        };
        private(parent)?;
        let path = parent.join(crated_core::identifiers::unique_part());
        private(&path)?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        let remove = move || {
            let _ = std::fs::remove_dir_all(&path);
        };
        // A dump can be gigabytes: not removed on an async worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// A file removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the checkpoint image directory `dir` into `store` as a tar blob.
/// The tar is spooled to a file beside `dir` (criu's images are as large
/// as the task's memory), on a blocking thread that removes it when done,
/// even if the caller has gone.
pub async fn write_image(
    store: Arc<dyn ContentStore>,
    ns: &Namespace,
    lease: Option<&str>,
    dir: &Path,
) -> Result<Descriptor> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let spool = Spool(dir.with_extension("tar"));
    let source = dir.to_owned();
    let r#ref = format!(
        "checkpoint-{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    let (ns, lease) = (ns.clone(), lease.map(str::to_owned));
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<Descriptor> {
        let target = &spool.0;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| Error::unknown(format!("create {}: {e}", target.display())))?;
        crated_differ::compare::write_tree(&source, &mut file)?;
        file.rewind()
            .map_err(|e| Error::unknown(format!("rewind {}: {e}", target.display())))?;
        runtime.block_on(crated_core::content::write_blob(
            &*store,
            &ns,
            lease.as_deref(),
            MEDIA_TYPE_CRIU,
            &r#ref,
            std::io::BufReader::new(file),
        ))
    })
    .await
    .map_err(|e| Error::unknown(format!("tar checkpoint: {e}")))?
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
