//! Checkpoint images in the content store, as containerd's tasks service
//! writes and reads them: criu's image directory as one tar blob
//! (`application/vnd.containerd.container.criu.checkpoint.criu.tar`), and
//! the container's spec beside it. A task is restored from the tar,
//! extracted with the same root-bound extraction as image layers (a
//! checkpoint may come from a registry).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::content::{ContentStore, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::{Namespace, Result};
use crated_differ::{archive, BlobReader, Whiteouts};

use crate::error::Error;

pub use crated_core::checkpoint::*;

/// A scratch directory for one checkpoint, removed with what is in it
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh directory under `parent` (created if missing). Both are
    /// root's alone: a dump holds the task's memory.
    pub fn new(parent: &Path) -> crate::error::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let private = |path: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| Error::io("create", path, e))
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

/// Writes the checkpoint image directory `dir` into `store` as a tar blob,
/// streamed into the ingest as it is made (criu's images are as large as
/// the task's memory: no copy on disk).
pub async fn write_image(
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: Option<&str>,
    dir: &Path,
) -> Result<Descriptor> {
    let mut writer = store
        .writer(
            ns,
            WriterOptions {
                r#ref: format!(
                    "checkpoint-{}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                ),
                total: 0,
                expected: None,
                lease: lease.map(str::to_owned),
            },
        )
        .await?;
    let source_dir = dir.to_owned();
    crated_differ::stream_into(&mut *writer, move |mut out| {
        crated_differ::compare::write_tree(&source_dir, &mut out)?;
        out.flush().map_err(|source| Error::WriteCheckpoint {
            dir: source_dir,
            source,
        })?;
        Ok(())
    })
    .await?;
    let digest = writer.digest().await?;
    let size = writer.status().await?.offset;
    match writer
        .commit(size, Some(digest.clone()), Default::default())
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    Ok(Descriptor {
        media_type: MEDIA_TYPE_CRIU.to_owned(),
        digest,
        size,
        annotations: Default::default(),
    })
}

/// Extracts the checkpoint tar `desc` from `store` into `dir`.
pub async fn extract(
    store: Arc<dyn ContentStore>,
    ns: &Namespace,
    desc: &Descriptor,
    dir: &Path,
) -> Result<()> {
    if desc.media_type != MEDIA_TYPE_CRIU {
        return Err(Error::UnsupportedCheckpoint {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
        }
        .into());
    }
    let reader = store
        .reader_at(ns, &desc.digest)
        .await
        .map_err(|e| Error::CheckpointContent {
            digest: desc.digest.clone(),
            source: Box::new(e),
        })?;
    let runtime = tokio::runtime::Handle::current();
    let dir = dir.to_owned();
    let digest = desc.digest.clone();
    let extracted = tokio::task::spawn_blocking(move || {
        let mut rest = archive::apply(BlobReader::new(runtime, &*reader), &dir, Whiteouts::Delete)
            .map_err(|source| Error::ExtractCheckpoint {
                digest: digest.clone(),
                dir,
                source,
            })?;
        // The archive's end padding: read so a short blob is noticed.
        std::io::copy(&mut rest, &mut std::io::sink())
            .map_err(|source| Error::ReadCheckpoint { digest, source })?;
        Ok::<_, Error>(())
    })
    .await
    .map_err(|source| Error::ExtractTask {
        digest: desc.digest.clone(),
        source,
    })?;
    Ok(extracted?)
}
