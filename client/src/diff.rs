//! Layers made from a snapshot (containerd's `rootfs.CreateDiff`).

use crated_core::descriptor::Descriptor;
use crated_core::snapshots::Labels;
use crated_core::Result;

use crate::Client;

/// What [`snapshot_layer`] makes.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Media type of the layer (gzip when empty).
    pub media_type: String,
    /// The content ingest ref (the daemon picks one when empty).
    pub r#ref: String,
    /// Labels of the layer blob.
    pub labels: Labels,
}

/// containerd's `rootfs.CreateDiff`: the layer of what the active
/// snapshot `key` changed over its parent, stored under `lease`.
pub async fn snapshot_layer(
    client: &Client,
    lease: &str,
    snapshotter: &str,
    key: &str,
    options: CompareOptions,
) -> Result<Descriptor> {
    let sn = client.snapshotter(snapshotter, Some(lease))?;
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
    let options = crated_core::diff::CompareOptions {
        media_type: options.media_type,
        reference: options.r#ref,
        labels: options.labels,
        lease: Some(lease.to_owned()),
        source_date_epoch: None,
    };
    let made = client
        .services()
        .diff
        .compare(client.namespace(), &lower, &upper, options)
        .await;
    if !info.parent.is_empty() {
        let _ = sn.remove(&view).await;
    }
    made
}
