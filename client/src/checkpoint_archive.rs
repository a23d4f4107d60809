//! A running container checkpointed into one tar archive, in the layout
//! Kubernetes' forensic container checkpointing uses (CRI
//! `CheckpointContainer`, `crictl checkpoint --export`) and that
//! `checkpointctl`, CRI-O and Podman read:
//!
//! | entry | what it holds |
//! | --- | --- |
//! | `checkpoint/` | criu's images of the container's processes |
//! | `config.dump` | JSON: id, name, image, runtime, creation and checkpoint times |
//! | `spec.dump` | the container's OCI runtime spec |
//! | `rootfs-diff.tar` | what the container changed in its root filesystem, an uncompressed layer with OCI whiteouts (absent when it has no snapshot) |
//! | `dump.log`, `stats-dump` | criu's log and statistics of the dump |
//!
//! The container keeps running: its task is paused while criu dumps it and
//! its writable layer is diffed, so both show the same instant, then
//! resumed.
//!
//! ```no_run
//! # async fn f(client: crated_client::Client) -> crated_core::Result<()> {
//! use crated_client::checkpoint_archive::{checkpoint_archive, ArchiveInfo};
//! let info = ArchiveInfo { name: "web".into(), ..Default::default() };
//! let scratch = tempfile::tempdir().expect("scratch");
//! checkpoint_archive(&client, "web", "/var/lib/kubelet/checkpoints/web.tar".as_ref(), scratch.path(), &info).await?;
//! # Ok(()) }
//! ```

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crated_core::containers::Container;
use crated_core::content::ReaderAt;
use crated_core::diff::MEDIA_TYPE_LAYER_TAR;
use crated_core::tasks::CheckpointTask;
use crated_core::Result;
use crated_differ::BlobReader;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::checkpoint::{criu_options, rw_layer, task_status, while_paused};
use crate::leases::Temporary;
use crate::{Client, Error};

/// The directory of criu's images in the archive.
pub const CHECKPOINT_DIRECTORY: &str = "checkpoint";
/// The container's description in the archive.
pub const CONFIG_DUMP: &str = "config.dump";
/// The container's OCI spec in the archive.
pub const SPEC_DUMP: &str = "spec.dump";
/// The container's changes to its root filesystem in the archive.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// criu's log of the dump in the archive.
pub const DUMP_LOG: &str = "dump.log";
/// criu's statistics of the dump in the archive (`checkpointctl inspect
/// --stats` shows them).
pub const STATS_DUMP: &str = "stats-dump";

/// What `config.dump` says of the container beyond what its record holds:
/// how its orchestrator names it and its image.
#[derive(Debug, Clone, Default)]
pub struct ArchiveInfo {
    /// The container's name (the CRI's metadata name).
    pub name: String,
    /// The image as the user asked for it (`rootfsImage`).
    pub image: String,
    /// The image's name in the store (`rootfsImageName`).
    pub image_name: String,
    /// The image's id (`rootfsImageRef`).
    pub image_ref: String,
}

/// `config.dump`, with the field names checkpointctl reads.
#[derive(Serialize)]
struct ConfigDump<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "rootfsImage", skip_serializing_if = "str::is_empty")]
    rootfs_image: &'a str,
    #[serde(rename = "rootfsImageRef", skip_serializing_if = "str::is_empty")]
    rootfs_image_ref: &'a str,
    #[serde(rename = "rootfsImageName", skip_serializing_if = "str::is_empty")]
    rootfs_image_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    runtime: &'a str,
    #[serde(rename = "createdTime")]
    created_time: String,
    #[serde(rename = "checkpointedTime")]
    checkpointed_time: String,
    restored: bool,
}

fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The archive's path, checked before anything is paused: absolute, with
/// a file name, in a directory that exists.
fn check_destination(archive: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    let bad = |reason: &str| Error::ArchiveDestination {
        path: archive.to_owned(),
        reason: reason.to_owned(),
    };
    if !archive.is_absolute() {
        return Err(bad("it is not an absolute path").into());
    }
    let name = archive
        .file_name()
        .ok_or_else(|| bad("it names no file"))?
        .to_owned();
    let dir = archive
        .parent()
        .ok_or_else(|| bad("it has no directory"))?
        .to_owned();
    if !dir.is_dir() {
        return Err(bad("its directory does not exist").into());
    }
    if archive.is_dir() {
        return Err(bad("it is a directory").into());
    }
    Ok((dir, name))
}

/// Checkpoints the running container `id` into the tar archive `archive`
/// (replaced whole, never left half-written), with criu working in
/// `scratch` (a directory the caller removes after). The task must be
/// running or paused; it runs on afterwards as it was.
pub async fn checkpoint_archive(
    client: &Client,
    id: &str,
    archive: &Path,
    scratch: &Path,
    info: &ArchiveInfo,
) -> Result<()> {
    let (dir, file_name) = check_destination(archive)?;
    let ns = client.namespace();
    let record = client
        .services()
        .containers
        .get(ns, id)
        .await
        .map_err(|e| Error::Container {
            id: id.to_owned(),
            source: Box::new(e),
        })?;
    let spec = record
        .spec
        .as_ref()
        .ok_or_else(|| Error::ContainerHasNoSpec { id: id.to_owned() })?
        .value
        .clone();
    let status = task_status(client, id).await?;
    if status.is_none() {
        return Err(Error::NoTaskToCheckpoint { id: id.to_owned() }.into());
    }
    let images = scratch.join(CHECKPOINT_DIRECTORY);
    let work = scratch.join("work");
    let config = serde_json::to_vec_pretty(&ConfigDump {
        id,
        name: &info.name,
        rootfs_image: &info.image,
        rootfs_image_ref: &info.image_ref,
        rootfs_image_name: &info.image_name,
        runtime: &record.runtime.name,
        created_time: rfc3339(record.created_at),
        checkpointed_time: rfc3339(SystemTime::now()),
        restored: false,
    })
    .map_err(|source| Error::Encode {
        what: CONFIG_DUMP,
        source,
    })?;

    let lease = Temporary::create(client).await?;
    // The lease goes whatever happens: it only keeps the diff while it is
    // copied into the archive.
    let written = async {
        let rw = while_paused(
            client,
            id,
            archive.to_string_lossy().as_ref(),
            status,
            false,
            dump(client, &record, &images, &work, lease.id()),
        )
        .await?;
        let rw = match rw {
            Some(desc) => Some((
                desc.size,
                client
                    .services()
                    .content
                    .reader_at(ns, &desc.digest)
                    .await?,
            )),
            None => None,
        };
        let parts = Parts {
            config,
            spec,
            images,
            work,
            rw,
        };
        let runtime = tokio::runtime::Handle::current();
        let target = archive.to_owned();
        tokio::task::spawn_blocking(move || {
            write_archive(&dir, &file_name, &target, parts, runtime)
        })
        .await
        .map_err(|source| Error::Blocking {
            what: format!("checkpoint archive {}", archive.display()),
            source,
        })?
    }
    .await;
    lease.release().await;
    written
}

/// criu's dump into `images` (the task left running) and the writable
/// layer's diff, stored under `lease`; the diff's descriptor when the
/// container has a snapshot.
async fn dump(
    client: &Client,
    record: &Container,
    images: &Path,
    work: &Path,
    lease: &str,
) -> Result<Option<crated_core::descriptor::Descriptor>> {
    let request = CheckpointTask {
        options: Some(criu_options(
            false,
            images.display().to_string(),
            work.display().to_string(),
        )),
        lease: Some(lease.to_owned()),
    };
    client
        .services()
        .tasks
        .checkpoint(client.namespace(), &record.id, request)
        .await?;
    if record.snapshot_key.is_empty() {
        return Ok(None);
    }
    let layer = rw_layer(
        client,
        lease,
        record,
        MEDIA_TYPE_LAYER_TAR,
        "checkpoint-archive-rw",
    )
    .await?;
    Ok(Some(layer))
}

/// What goes into the archive.
struct Parts {
    config: Vec<u8>,
    spec: Vec<u8>,
    images: PathBuf,
    /// criu's work directory: its log and statistics.
    work: PathBuf,
    rw: Option<(u64, Box<dyn ReaderAt>)>,
}

/// Writes the archive beside `target` under a temporary name, syncs it
/// and renames it into place; removes the temporary file on a failure.
fn write_archive(
    dir: &Path,
    file_name: &std::ffi::OsStr,
    target: &Path,
    parts: Parts,
    runtime: tokio::runtime::Handle,
) -> Result<()> {
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", crated_core::identifiers::unique_part()));
    let temp = dir.join(temp_name);
    let result = write_entries(&temp, parts, runtime).and_then(|()| {
        std::fs::rename(&temp, target).map_err(|e| Error::io("rename into place", target, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync", dir, e))?;
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(Into::into)
}

fn write_entries(
    temp: &Path,
    parts: Parts,
    runtime: tokio::runtime::Handle,
) -> std::result::Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|e| Error::io("create", temp, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    // criu writes regular files only; a link in its directory is not
    // followed out of it.
    tar.follow_symlinks(false);
    let entry_error = |entry: &str| {
        let entry = entry.to_owned();
        move |source| Error::WriteEntry { entry, source }
    };
    let header = |size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o600);
        header.set_mtime(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        header.set_size(size);
        header
    };
    tar.append_data(
        &mut header(parts.config.len() as u64),
        CONFIG_DUMP,
        parts.config.as_slice(),
    )
    .map_err(entry_error(CONFIG_DUMP))?;
    tar.append_data(
        &mut header(parts.spec.len() as u64),
        SPEC_DUMP,
        parts.spec.as_slice(),
    )
    .map_err(entry_error(SPEC_DUMP))?;
    tar.append_dir_all(CHECKPOINT_DIRECTORY, &parts.images)
        .map_err(entry_error(CHECKPOINT_DIRECTORY))?;
    if let Some((size, reader)) = &parts.rw {
        let mut data = BlobReader::new(runtime, &**reader);
        tar.append_data(&mut header(*size), ROOTFS_DIFF, (&mut data).take(*size))
            .map_err(entry_error(ROOTFS_DIFF))?;
    }
    // These only help; a dump without them is still whole.
    for name in [DUMP_LOG, STATS_DUMP] {
        if let Ok(data) = std::fs::read(parts.work.join(name)) {
            tar.append_data(&mut header(data.len() as u64), name, data.as_slice())
                .map_err(entry_error(name))?;
        }
    }
    let file = tar
        .into_inner()
        .and_then(|out| {
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
        })
        .map_err(|source| Error::FinishArchive { source })?;
    file.sync_all().map_err(|e| Error::io("sync", temp, e))
}
