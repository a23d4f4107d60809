//! Checkpoint and restore of containers, as containerd's Go client does it
//! (`Container.Checkpoint`, `Task.Checkpoint`, `Client.Restore`,
//! `WithTaskCheckpoint`): the daemon has criu dump the task; the client
//! gathers the dump, the spec, the runtime options, the image and the
//! read-write layer into one OCI index, recorded as an image that can be
//! pushed, pulled on another host and restored there.
//!
//! ```no_run
//! # async fn f(client: crated_client::Client) -> crated_core::Result<()> {
//! use crated_client::checkpoint::{checkpoint, restore, CheckpointOptions, RestoreOptions};
//! let options = CheckpointOptions { task: true, image: true, rw: true, ..Default::default() };
//! checkpoint(&client, "web", "registry.local/ckpt/web:1", &options).await?;
//! // … push it, pull it elsewhere, then:
//! let options = RestoreOptions { live: true, rw: true, ..Default::default() };
//! restore(&client, "web", "registry.local/ckpt/web:1", &options).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use std::time::SystemTime;

use crated_api::containerd::runc::v1::CheckpointOptions as CriuOptions;
use crated_api::convert::{any_from_pb, any_to_pb};
use crated_core::checkpoint::{annotations, *};
use crated_core::containers::{Container, Runtime};
use crated_core::content::write_blob;
use crated_core::descriptor::{Any, Descriptor};
use crated_core::digest::Digest;
use crated_core::images::walk::{self, media_types, Node};
use crated_core::platforms::default_matcher;
use crated_core::snapshots::Labels;
use crated_core::tasks::{CheckpointTask, CreateTask, Status, Stdio};
use crated_core::Result;
use prost::Message as _;

use crate::leases::Temporary;
use crate::oci::{OciDescriptor, OciIndex};
use crate::{Client, Error};

/// The type URL of runc's checkpoint options in an `Any`.
const CRIU_OPTIONS_URL: &str = "containerd.runc.v1.CheckpointOptions";
/// The OCI media type of a gzip layer: the read-write layer's.
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What goes into a checkpoint (`ctr containers checkpoint` and
/// `ctr tasks checkpoint` flags).
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// The task's processes, dumped by criu (`--task`).
    pub task: bool,
    /// The container's image (`--image`).
    pub image: bool,
    /// The container's read-write layer, as a diff (`--rw`).
    pub rw: bool,
    /// Stop the task once dumped (`--exit`); it keeps running otherwise.
    pub exit: bool,
    /// Leave criu's images in this directory instead of the content store
    /// (`--image-path`): no checkpoint image is recorded.
    pub image_path: Option<String>,
    /// criu's work directory, kept (`--work-path`).
    pub work_path: Option<String>,
    /// Labels of the checkpoint's image record.
    pub labels: BTreeMap<String, String>,
    /// `image` and `rw` only when the container has an image and a
    /// snapshot (containerd's `Task.Checkpoint`), instead of failing.
    pub when_present: bool,
}

/// How to restore (`ctr containers restore` flags).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore the processes from criu's dump (`--live`); else a new task
    /// starts from the spec.
    pub live: bool,
    /// Apply the checkpoint's read-write layer (`--rw`).
    pub rw: bool,
    /// The task's stdio (empty: none).
    pub stdin: String,
    /// See `stdin`.
    pub stdout: String,
    /// See `stdin`.
    pub stderr: String,
}

/// The status of `id`'s task, or None when it has none.
pub(crate) async fn task_status(client: &Client, id: &str) -> Result<Option<Status>> {
    match client
        .services()
        .tasks
        .get(client.namespace(), id, "")
        .await
    {
        Ok(process) => Ok(Some(process.status)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn set_paused(client: &Client, id: &str, paused: bool) -> Result<()> {
    let tasks = &client.services().tasks;
    if paused {
        tasks.pause(client.namespace(), id).await
    } else {
        tasks.resume(client.namespace(), id).await
    }
}

/// A descriptor as an index entry, for this host's platform.
fn entry(desc: &Descriptor, with_platform: bool) -> OciDescriptor {
    OciDescriptor::new(desc, with_platform.then(OciDescriptor::host_platform))
}

/// Checkpoints container `id` as the image `name`: its task paused
/// meanwhile (and resumed after, unless it exits), containerd's layout.
/// Returns the index written, or None when criu's images were left in
/// `options.image_path`.
pub async fn checkpoint(
    client: &Client,
    id: &str,
    name: &str,
    options: &CheckpointOptions,
) -> Result<Option<Descriptor>> {
    let status = task_status(client, id).await?;
    if options.task && status.is_none() {
        return Err(Error::NoTaskToCheckpoint { id: id.to_owned() }.into());
    }
    let lease = Temporary::create(client).await?;
    let result = while_paused(
        client,
        id,
        name,
        status,
        options.exit,
        checkpoint_leased(client, id, name, options, lease.id()),
    )
    .await;
    lease.release().await;
    result
}

/// runc's checkpoint options as a task checkpoint carries them: file
/// locks dumped; the task stopped once dumped when `exit`; criu's images
/// left in `image_path` (not the content store) and its work files in
/// `work_path` when they are set.
pub(crate) fn criu_options(exit: bool, image_path: String, work_path: String) -> Any {
    let criu = CriuOptions {
        exit,
        file_locks: true,
        image_path,
        work_path,
        ..Default::default()
    };
    Any {
        type_url: CRIU_OPTIONS_URL.to_owned(),
        value: criu.encode_to_vec(),
    }
}

/// The layer of what container `record`'s active snapshot changed over
/// its parent, as `media_type`, stored under `lease` (ingest ref
/// `<ref_prefix>-<snapshot key>`).
pub(crate) async fn rw_layer(
    client: &Client,
    lease: &str,
    record: &Container,
    media_type: &str,
    ref_prefix: &str,
) -> Result<Descriptor> {
    crate::diff::snapshot_layer(
        client,
        lease,
        &record.snapshotter,
        &record.snapshot_key,
        crate::diff::CompareOptions {
            media_type: media_type.to_owned(),
            r#ref: format!("{ref_prefix}-{}", record.snapshot_key),
            labels: Labels::new(),
        },
    )
    .await
}

/// Runs `work` with `id`'s task paused when its `status` is running, and
/// resumes it after. A task that `exited` with its dump cannot be resumed;
/// any other that stays paused is an error naming the checkpoint `name`,
/// for the caller to know.
pub(crate) async fn while_paused<T>(
    client: &Client,
    id: &str,
    name: &str,
    status: Option<Status>,
    exited: bool,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let paused_by_us = status == Some(Status::Running);
    if paused_by_us {
        set_paused(client, id, true).await?;
    }
    let result = work.await;
    if paused_by_us {
        let resumed = set_paused(client, id, false).await;
        if let (Err(e), false, Ok(_)) = (resumed, exited, &result) {
            return Err(Error::NotResumed {
                name: name.to_owned(),
                id: id.to_owned(),
                source: Box::new(e),
            }
            .into());
        }
    }
    result
}

async fn checkpoint_leased(
    client: &Client,
    id: &str,
    name: &str,
    options: &CheckpointOptions,
    lease: &str,
) -> Result<Option<Descriptor>> {
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
    let store = &*client.services().content;
    let runtime = record.runtime.clone();
    let mut manifests: Vec<OciDescriptor> = Vec::new();
    let mut index_annotations = BTreeMap::new();
    index_annotations.insert(annotations::RUNTIME_NAME.to_owned(), runtime.name.clone());
    index_annotations.insert(
        annotations::SNAPSHOTTER_NAME.to_owned(),
        record.snapshotter.clone(),
    );
    if !record.image.is_empty() {
        index_annotations.insert(annotations::IMAGE_NAME.to_owned(), record.image.clone());
    }

    if options.task {
        let any = criu_options(
            options.exit,
            options.image_path.clone().unwrap_or_default(),
            options.work_path.clone().unwrap_or_default(),
        );
        let request = CheckpointTask {
            options: Some(any.clone()),
            lease: Some(lease.to_owned()),
        };
        let descriptors = client.services().tasks.checkpoint(ns, id, request).await?;
        if options.image_path.is_some() {
            return Ok(None);
        }
        for d in descriptors {
            manifests.push(entry(&d, true));
        }
        let desc = write_blob(
            store,
            ns,
            Some(lease),
            MEDIA_TYPE_OPTIONS,
            &format!("{id}-checkpoint-options"),
            any_to_pb(any).encode_to_vec().as_slice(),
        )
        .await?;
        manifests.push(entry(&desc, true));
    }
    if let Some(options) = &runtime.options {
        let desc = write_blob(
            store,
            ns,
            Some(lease),
            MEDIA_TYPE_RUNTIME_OPTIONS,
            &format!("{id}-runtime-options"),
            any_to_pb(options.clone()).encode_to_vec().as_slice(),
        )
        .await?;
        manifests.push(entry(&desc, true));
    }
    let image = options.image && !(options.when_present && record.image.is_empty());
    let rw = options.rw && !(options.when_present && record.snapshot_key.is_empty());
    if image {
        if record.image.is_empty() {
            return Err(Error::NoImageToInclude { id: id.to_owned() }.into());
        }
        let target = crate::images::target(client, &record.image).await?;
        manifests.push(entry(&target, false));
    }
    if rw {
        if record.snapshot_key.is_empty() {
            return Err(Error::NoSnapshotToInclude { id: id.to_owned() }.into());
        }
        let rw = rw_layer(client, lease, &record, LAYER_GZIP, "checkpoint-rw").await?;
        manifests.push(entry(&rw, true));
    }

    let gc: BTreeMap<String, String> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                format!("containerd.io/gc.ref.content.{i}"),
                m.digest.clone(),
            )
        })
        .collect();
    let mut index = OciIndex::new(manifests);
    index.annotations = index_annotations;
    let data = index.to_vec();
    let desc = write_blob(
        store,
        ns,
        Some(lease),
        media_types::OCI_INDEX,
        &format!("{id}index"),
        data.as_slice(),
    )
    .await?;
    crate::add_labels(store, ns, &desc.digest, gc).await?;
    // As containerd's: a checkpoint never replaces an image of that name.
    crate::images::create(client, name, &desc, &options.labels).await?;
    Ok(Some(desc))
}

fn find<'a>(entries: &'a [Descriptor], media_type: &str) -> Option<&'a Descriptor> {
    entries.iter().find(|d| d.media_type == media_type)
}

/// The entries and annotations of the checkpoint image `name`.
async fn read_index(
    client: &Client,
    name: &str,
) -> Result<(Vec<Descriptor>, BTreeMap<String, String>)> {
    let target = crate::images::target(client, name).await?;
    let store = &*client.services().content;
    let data = walk::read_blob(store, client.namespace(), &target.digest)
        .await
        .map_err(|e| Error::Checkpoint {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
    let index: OciIndex = serde_json::from_slice(&data).map_err(|source| Error::NotAnIndex {
        name: name.to_owned(),
        source,
    })?;
    let entries = index
        .manifests
        .iter()
        .map(OciDescriptor::descriptor)
        .collect::<Result<Vec<_>>>()?;
    Ok((entries, index.annotations))
}

/// containerd's `WithTaskCheckpoint`: the criu dump of the checkpoint
/// image `name`, for a task's Create.
pub async fn task_dump(client: &Client, name: &str) -> Result<Descriptor> {
    let (entries, _) = read_index(client, name).await?;
    let dump = find(&entries, MEDIA_TYPE_CRIU)
        .cloned()
        .ok_or_else(|| Error::NoTaskDump {
            name: name.to_owned(),
        })?;
    Ok(dump)
}

/// Restores container `id` from the checkpoint image `name` (which must be
/// in the store: pull or fetch it first), as `ctr containers restore`: the
/// container record from the checkpoint's spec and runtime, a snapshot on
/// its image (which must be unpacked here), the read-write layer applied
/// with `rw`, then its task, created from criu's dump with `live`, and
/// started. Returns the task's pid.
pub async fn restore(
    client: &Client,
    id: &str,
    name: &str,
    options: &RestoreOptions,
) -> Result<u32> {
    let lease = Temporary::create(client).await?;
    let result = restore_leased(client, id, name, options, lease.id()).await;
    lease.release().await;
    result
}

async fn restore_leased(
    client: &Client,
    id: &str,
    name: &str,
    options: &RestoreOptions,
    lease: &str,
) -> Result<u32> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let (entries, annotations) = read_index(client, name).await?;
    let note = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    let (image, snapshotter, runtime) = (
        note(annotations::IMAGE_NAME),
        note(annotations::SNAPSHOTTER_NAME),
        note(annotations::RUNTIME_NAME),
    );
    for (value, what) in [(&image, "image name"), (&runtime, "runtime")] {
        if value.is_empty() {
            return Err(Error::CheckpointAnnotation {
                name: name.to_owned(),
                what,
            }
            .into());
        }
    }
    let read_any = |desc: &Descriptor, part: &'static str| {
        let digest = desc.digest.clone();
        async move {
            let data = walk::read_blob(store, ns, &digest).await?;
            let any = prost_types::Any::decode(data.as_slice()).map_err(|source| {
                Error::CheckpointPart {
                    name: name.to_owned(),
                    part,
                    digest,
                    source,
                }
            })?;
            Ok::<_, crated_core::Error>(any_from_pb(any))
        }
    };
    let spec_desc = find(&entries, MEDIA_TYPE_CONFIG).ok_or_else(|| Error::NoContainerSpec {
        name: name.to_owned(),
    })?;
    let spec = read_any(spec_desc, "spec").await?;
    let runtime_options = match find(&entries, MEDIA_TYPE_RUNTIME_OPTIONS) {
        Some(d) => Some(read_any(d, "runtime options").await?),
        None => None,
    };
    let criu = if options.live {
        Some(
            find(&entries, MEDIA_TYPE_CRIU)
                .cloned()
                .ok_or_else(|| Error::NoTaskDump {
                    name: name.to_owned(),
                })?,
        )
    } else {
        None
    };

    // The snapshot on the image's layers (WithRestoreImage).
    let image_target =
        crate::images::target(client, &image)
            .await
            .map_err(|e| Error::CheckpointImage {
                image: image.clone(),
                source: Box::new(e),
            })?;
    let manifest =
        walk::manifest(store, ns, &Node::from(&image_target), &default_matcher()).await?;
    let diff_ids = walk::rootfs(store, ns, &manifest.config).await?;
    let parent = Digest::chain_id(&diff_ids)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let sn = client.snapshotter(&snapshotter, Some(lease))?;
    let mounts =
        sn.prepare(id, &parent, Labels::new())
            .await
            .map_err(|e| Error::RestoreSnapshot {
                key: id.to_owned(),
                image: image.clone(),
                source: Box::new(e),
            })?;
    let created = async {
        if options.rw {
            let rw = find(&entries, LAYER_GZIP).ok_or_else(|| Error::NoRwLayer {
                name: name.to_owned(),
            })?;
            let options = crated_core::diff::ApplyOptions::default();
            client
                .services()
                .diff
                .apply(ns, rw, &mounts, options)
                .await?;
        }
        let now = SystemTime::now();
        let record = Container {
            id: id.to_owned(),
            labels: BTreeMap::new(),
            image: image.clone(),
            runtime: Runtime {
                name: runtime.clone(),
                options: runtime_options.clone(),
            },
            spec: Some(spec.clone()),
            snapshotter: snapshotter.clone(),
            snapshot_key: id.to_owned(),
            created_at: now,
            updated_at: now,
            extensions: BTreeMap::new(),
            sandbox: String::new(),
        };
        client.services().containers.create(ns, record).await?;
        Ok(())
    }
    .await;
    if let Err(e) = created {
        let _ = sn.remove(id).await;
        return Err(e);
    }

    let started = start_restored(client, id, mounts, options, criu).await;
    if started.is_err() {
        // Nothing of a failed restore stays: task, container, snapshot.
        let _ = client.services().tasks.delete(ns, id).await;
        let _ = client.services().containers.delete(ns, id).await;
        let _ = sn.remove(id).await;
    }
    started
}

/// The restored container's task, created (from `criu` if given) and
/// started; its pid.
async fn start_restored(
    client: &Client,
    id: &str,
    mounts: Vec<crated_core::mount::Mount>,
    options: &RestoreOptions,
    criu: Option<Descriptor>,
) -> Result<u32> {
    let tasks = &client.services().tasks;
    let task = CreateTask {
        container_id: id.to_owned(),
        rootfs: mounts,
        stdio: Stdio {
            stdin: options.stdin.clone(),
            stdout: options.stdout.clone(),
            stderr: options.stderr.clone(),
        },
        terminal: false,
        checkpoint: criu,
        options: None,
        runtime_path: String::new(),
    };
    tasks.create(client.namespace(), task).await?;
    tasks.start(client.namespace(), id, "").await
}
