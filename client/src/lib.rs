#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod cio;
pub mod diff;
pub mod export;
mod gate;
pub mod images;
pub mod import;
pub mod install;
pub mod leases;
pub mod oci;
pub mod pull;
pub mod push;
pub mod spec;

use std::time::UNIX_EPOCH;

use crated_api::proxy::content::ContentProxy;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::content::{ContentStore, Info};
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::platforms::Matcher;
use crated_core::snapshots::{Labels, Snapshotter, TARGET_LABEL};
use crated_core::{Error, Namespace, Result};
use tonic::transport::Channel;

/// The label the unpacker puts on a layer blob: its diff id, once verified.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// `message` as a request in namespace `ns`, under `lease` if given.
pub(crate) fn request<T>(
    ns: &Namespace,
    lease: Option<&str>,
    message: T,
) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    crated_api::metadata::set_grpc_namespace(&mut request, ns);
    if let Some(lease) = lease {
        crated_api::metadata::set_grpc_lease(&mut request, lease)?;
    }
    Ok(request)
}

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
    store: &ContentProxy,
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

/// A walked node as a descriptor; InvalidArgument for a negative size.
fn node_descriptor(node: &Node) -> Result<Descriptor> {
    Ok(Descriptor {
        media_type: node.media_type.clone(),
        digest: node.digest.clone(),
        size: u64::try_from(node.size)
            .map_err(|_| Error::invalid_argument(format!("{} has a negative size", node.digest)))?,
        annotations: Default::default(),
    })
}

/// Unpacks the image whose target is `target` into `snapshotter`, as
/// containerd's `image.Unpack`: under a temporary lease, each layer for
/// `matcher` not yet there is prepared on its parent chain, applied by the
/// daemon's diff service (which must reproduce the config's diff id) and
/// committed as its chain id; verified layers get
/// `containerd.io/uncompressed`, and the config
/// `containerd.io/gc.ref.snapshot.<snapshotter>` = the top chain id, so the
/// image keeps its snapshots. Returns that chain id.
pub async fn unpack(
    channel: &Channel,
    ns: &Namespace,
    target: &Node,
    snapshotter: &str,
    matcher: &Matcher,
) -> Result<Digest> {
    let lease = leases::Temporary::create(channel, ns).await?;
    let gate = gate::LayerGate::open();
    let result = unpack_leased(channel, ns, target, snapshotter, matcher, lease.id(), &gate).await;
    lease.release().await;
    result
}

/// [`unpack`] under `lease`, applying each layer once `gate` says it is
/// in the content store (a pull unpacks while it still fetches).
pub(crate) async fn unpack_leased(
    channel: &Channel,
    ns: &Namespace,
    target: &Node,
    snapshotter: &str,
    matcher: &Matcher,
    lease: &str,
    gate: &gate::LayerGate,
) -> Result<Digest> {
    let store = ContentProxy::new(channel.clone()).with_lease(lease);
    let sn = SnapshotsProxy::new(channel.clone(), snapshotter, ns.clone()).with_lease(lease);
    let manifest = walk::manifest(&store, ns, target, matcher).await?;
    let diff_ids = walk::rootfs(&store, ns, &manifest.config).await?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::invalid_argument(format!(
            "mismatched image rootfs and manifest layers: {} diff ids, {} layers",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let mut chain: Vec<Digest> = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let parent = Digest::chain_id(&chain);
        chain.push(diff_id.clone());
        let chain_id = Digest::chain_id(&chain).unwrap_or_else(|| diff_id.clone());
        match sn.stat(chain_id.as_str()).await {
            Ok(_) => continue,
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.context(format!("failed to stat snapshot {chain_id}"))),
        }
        let parent = parent.map(|p| p.to_string()).unwrap_or_default();
        gate.wait(&layer.digest).await?;
        match apply_layer(channel, ns, &sn, layer, diff_id, &chain_id, &parent, lease).await {
            Ok(()) => {
                let info = Info {
                    digest: layer.digest.clone(),
                    size: 0,
                    created_at: UNIX_EPOCH,
                    updated_at: UNIX_EPOCH,
                    labels: [(UNCOMPRESSED_LABEL.to_owned(), diff_id.to_string())].into(),
                };
                let path = format!("labels.{UNCOMPRESSED_LABEL}");
                store.update(ns, info, &[path]).await?;
            }
            // Another unpack committed it meanwhile.
            Err(err) if err.is_already_exists() => {}
            Err(err) => return Err(err),
        }
    }
    let top = Digest::chain_id(&chain)
        .ok_or_else(|| Error::invalid_argument(format!("image {} has no layers", target.digest)))?;
    let label = format!("containerd.io/gc.ref.snapshot.{snapshotter}");
    let info = Info {
        digest: manifest.config.digest.clone(),
        size: 0,
        created_at: UNIX_EPOCH,
        updated_at: UNIX_EPOCH,
        labels: [(label.clone(), top.to_string())].into(),
    };
    store.update(ns, info, &[format!("labels.{label}")]).await?;
    Ok(top)
}

/// Prepares `extract-<unique> <chain id>` on `parent`, applies the layer
/// onto it and commits it as `chain_id`; removes the extraction snapshot
/// if anything fails.
#[allow(clippy::too_many_arguments)]
async fn apply_layer(
    channel: &Channel,
    ns: &Namespace,
    sn: &SnapshotsProxy,
    layer: &Node,
    diff_id: &Digest,
    chain_id: &Digest,
    parent: &str,
    lease: &str,
) -> Result<()> {
    // Labelled with the snapshot it becomes: if another unpack committed
    // that meanwhile, the prepare says so and this layer is done.
    let labels: Labels = [(TARGET_LABEL.to_owned(), chain_id.to_string())].into();
    let mut attempts = 0;
    let (key, mounts) = loop {
        attempts += 1;
        let key = format!(
            "extract-{} {chain_id}",
            crated_core::identifiers::unique_part()
        );
        match sn.prepare(&key, parent, labels.clone()).await {
            Ok(mounts) => break (key, mounts),
            Err(err) if err.is_already_exists() => {
                if attempts >= 5 || sn.stat(chain_id.as_str()).await.is_ok() {
                    return Err(err);
                }
                // Only the random key was taken: try another.
                continue;
            }
            Err(err) => {
                return Err(err.context(format!("failed to prepare extraction snapshot {key:?}")))
            }
        }
    };
    let applied = async {
        let applied = diff::apply(channel, ns, lease, &node_descriptor(layer)?, mounts)
            .await
            .map_err(|e| e.context(format!("failed to extract layer {diff_id}")))?;
        if applied.digest != *diff_id {
            return Err(Error::failed_precondition(format!(
                "wrong diff id calculated on extraction {:?}",
                applied.digest.to_string()
            )));
        }
        sn.commit(chain_id.as_str(), &key, Labels::new())
            .await
            .map_err(|e| e.context(format!("failed to commit snapshot {key}")))
    }
    .await;
    if let Err(err) = &applied {
        if !err.is_already_exists() {
            tracing::warn!(key, error = %err, "unpack of a layer failed");
        }
        if let Err(rerr) = sn.remove(&key).await {
            if !rerr.is_not_found() {
                tracing::warn!(key, error = %rerr, "remove extraction snapshot");
            }
        }
    }
    applied
}
