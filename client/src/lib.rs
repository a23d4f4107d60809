#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod checkpoint_archive;
pub mod cio;
mod client;
pub mod containers;
pub mod diff;
pub mod error;
pub mod export;
mod gate;
pub mod images;
pub mod import;
pub mod install;
pub mod leases;
pub mod oci;
pub mod pull;
pub mod push;
pub mod snapshotters;
pub mod spec;
pub mod task;
mod unpack;

use std::time::UNIX_EPOCH;

use crated_core::content::{ContentStore, Info};
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::Node;
use crated_core::snapshots::Labels;
use crated_core::{Namespace, Result};

pub use client::{Client, Services};
pub use containers::{Container, ImageRootfs, NewContainer, NewTask, Rootfs};
pub use error::Error;
pub use task::{Process, Task};
pub use unpack::unpack;

/// The label the unpacker puts on a layer blob: its diff id, once verified.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// The garbage collector's references from a parent to its children, as
/// containerd's `images.ChildGCLabels`: an index's entries `m.<i>`, a
/// manifest's config `config` and layers `l.<i>`.
fn child_gc_labels<'a>(is_index: bool, children: impl IntoIterator<Item = &'a Node>) -> Labels {
    children
        .into_iter()
        .enumerate()
        .map(|(i, child)| {
            let key = match (is_index, i) {
                (true, i) => format!("containerd.io/gc.ref.content.m.{i}"),
                (false, 0) => "containerd.io/gc.ref.content.config".to_owned(),
                (false, i) => format!("containerd.io/gc.ref.content.l.{}", i - 1),
            };
            (key, child.digest.to_string())
        })
        .collect()
}

/// Sets `labels` on the stored blob `digest` (other labels stay).
async fn add_labels(
    store: &dyn ContentStore,
    ns: &Namespace,
    digest: &Digest,
    labels: Labels,
) -> Result<()> {
    let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
    let info = Info {
        digest: digest.clone(),
        size: 0,
        created_at: UNIX_EPOCH,
        updated_at: UNIX_EPOCH,
        labels,
    };
    store.update(ns, info, &paths).await.map(|_| ())
}

/// [`add_labels`] unless the blob carries every one of `labels` already
/// (`stored`: its record, when the caller has it): a blob's record is
/// written, durably, only for a change (a pull or unpack of what is there
/// writes nothing).
async fn add_missing_labels(
    store: &dyn ContentStore,
    ns: &Namespace,
    digest: &Digest,
    labels: Labels,
    stored: Option<&Info>,
) -> Result<()> {
    let fetched;
    let stored = match stored {
        Some(info) => info,
        None => {
            fetched = store.info(ns, digest).await?;
            &fetched
        }
    };
    if carries_all(&stored.labels, &labels) {
        return Ok(());
    }
    add_labels(store, ns, digest, labels).await
}

/// Whether `have` holds every one of `wanted`, with the same value (a
/// record that need not be written again).
fn carries_all(have: &Labels, wanted: &Labels) -> bool {
    wanted
        .iter()
        .all(|(key, value)| have.get(key) == Some(value))
}

/// A walked node as a descriptor; InvalidArgument for a negative size.
fn node_descriptor(node: &Node) -> Result<Descriptor> {
    Ok(Descriptor {
        media_type: node.media_type.clone(),
        digest: node.digest.clone(),
        size: u64::try_from(node.size).map_err(|_| Error::NegativeSize {
            digest: node.digest.clone(),
            size: node.size,
        })?,
        annotations: Default::default(),
    })
}

/// A descriptor as a walked node; InvalidArgument (naming `reference`)
/// for a size a node cannot hold.
pub fn descriptor_node(reference: &str, desc: &Descriptor) -> Result<Node> {
    Ok(Node {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: i64::try_from(desc.size).map_err(|_| Error::SizeOutOfRange {
            reference: reference.to_owned(),
            digest: desc.digest.clone(),
            size: desc.size,
        })?,
        platform: None,
    })
}

/// What an in-process caller (the CRI plugin, a tonic handler) spawns must
/// be `Send`: checked at compile time for the client's long operations.
#[cfg(test)]
#[allow(dead_code, clippy::unwrap_used)]
mod send {
    use std::sync::Arc;

    use super::*;

    fn is_send<T: Send>(_: T) {}

    fn client_futures_are_send(
        client: Client,
        resolver: crated_distribution::Resolver,
        container: Container,
        task: Task,
        node: Node,
    ) {
        let pushed_with = resolver.clone();
        let c = client.clone();
        is_send(async move {
            let options = pull::PullOptions::default();
            pull::pull(&c, &resolver, "x", &options, Arc::new(pull::NoProgress)).await
        });
        let c = client.clone();
        is_send(async move {
            unpack(
                &c,
                &node,
                "overlayfs",
                &crated_core::platforms::default_matcher(),
            )
            .await
        });
        let c = client.clone();
        is_send(async move { c.image_rootfs("x", "overlayfs").await });
        let (c, r) = (client.clone(), pushed_with);
        is_send(async move {
            let target = images::target(&c, "x").await?;
            let options = push::PushOptions::default();
            push::push(&c, &r, "x", &target, &options, Arc::new(pull::NoProgress)).await
        });
        let c = client.clone();
        is_send(async move {
            let spec = spec::default_unix(c.namespace(), "x").unwrap();
            c.create_container("x", NewContainer::new(spec)).await
        });
        is_send(async move {
            let task = container
                .new_task(Default::default(), false, NewTask::default())
                .await?;
            task.start().await?;
            task.wait().await?;
            task.delete().await
        });
        is_send(async move {
            let process = Default::default();
            let exec = task.exec("e", &process, Default::default()).await?;
            exec.start().await?;
            exec.wait().await
        });
    }
}
