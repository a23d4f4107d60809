//! The daemon's diff service: layers applied onto mounts, and layers made
//! from two mounts (containerd's `rootfs.CreateDiff` for a snapshot).

use crated_api::containerd::services::diff::v1 as pb;
use crated_api::from_grpc;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_api::services::images::{descriptor_from_pb, descriptor_to_pb};
use crated_api::services::snapshots::mount_to_pb;
use crated_core::descriptor::Descriptor;
use crated_core::mount::Mount;
use crated_core::snapshots::{Labels, Snapshotter as _};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

/// Applies the layer `layer` onto `mounts`; returns the descriptor of
/// what was applied (its diff id, uncompressed).
pub async fn apply(
    channel: &Channel,
    ns: &Namespace,
    lease: &str,
    layer: &Descriptor,
    mounts: Vec<Mount>,
) -> Result<Descriptor> {
    let request = crate::request(
        ns,
        Some(lease),
        pb::ApplyRequest {
            diff: Some(descriptor_to_pb(layer.clone())),
            mounts: mounts.into_iter().map(mount_to_pb).collect(),
            payloads: Default::default(),
        },
    )?;
    let response = pb::diff_client::DiffClient::new(channel.clone())
        .apply(request)
        .await
        .map_err(from_grpc)?;
    descriptor_from_pb(response.into_inner().applied.unwrap_or_default())
}

/// What [`compare`] makes.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Media type of the layer (gzip when empty).
    pub media_type: String,
    /// The content ingest ref (the daemon picks one when empty).
    pub r#ref: String,
    /// Labels of the layer blob.
    pub labels: Labels,
}

/// The layer of what changed from `lower` to `upper`, stored in the
/// daemon's content store under `lease`.
pub async fn compare(
    channel: &Channel,
    ns: &Namespace,
    lease: &str,
    lower: Vec<Mount>,
    upper: Vec<Mount>,
    options: CompareOptions,
) -> Result<Descriptor> {
    let request = crate::request(
        ns,
        Some(lease),
        pb::DiffRequest {
            left: lower.into_iter().map(mount_to_pb).collect(),
            right: upper.into_iter().map(mount_to_pb).collect(),
            media_type: options.media_type,
            r#ref: options.r#ref,
            labels: options.labels.into_iter().collect(),
        },
    )?;
    let response = pb::diff_client::DiffClient::new(channel.clone())
        .diff(request)
        .await
        .map_err(from_grpc)?;
    descriptor_from_pb(response.into_inner().diff.unwrap_or_default())
}

/// containerd's `rootfs.CreateDiff`: the layer of what the active
/// snapshot `key` changed over its parent.
pub async fn snapshot_layer(
    channel: &Channel,
    ns: &Namespace,
    lease: &str,
    snapshotter: &str,
    key: &str,
    options: CompareOptions,
) -> Result<Descriptor> {
    let sn = SnapshotsProxy::new(channel.clone(), snapshotter, ns.clone()).with_lease(lease);
    let info = sn.stat(key).await?;
    let upper = sn.mounts(key).await?;
    let view = format!(
        "{}-parent-view-{}",
        info.parent,
        crated_core::identifiers::unique_part()
    );
    let lower = if info.parent.is_empty() {
        Vec::new()
    } else {
        sn.view(&view, &info.parent, Labels::new()).await?
    };
    let made = compare(channel, ns, lease, lower, upper, options).await;
    if !info.parent.is_empty() {
        let _ = sn.remove(&view).await;
    }
    made
}
