//! Unpacking an image's layers into a snapshotter, as containerd's
//! `image.Unpack`.

use std::time::UNIX_EPOCH;

use crated_core::content::Info;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::platforms::Matcher;
use crated_core::snapshots::{Labels, Snapshotter, TARGET_LABEL};
use crated_core::Result;

use crate::{gate, leases, node_descriptor, Client, Error, UNCOMPRESSED_LABEL};

/// Unpacks the image whose target is `target` into `snapshotter`, as
/// containerd's `image.Unpack`: under a temporary lease, each layer for
/// `matcher` not yet there is prepared on its parent chain, applied by the
/// daemon's diff service (which must reproduce the config's diff id) and
/// committed as its chain id; verified layers get
/// `containerd.io/uncompressed`, and the config
/// `containerd.io/gc.ref.snapshot.<snapshotter>` = the top chain id, so the
/// image keeps its snapshots. Returns that chain id.
pub async fn unpack(
    client: &Client,
    target: &Node,
    snapshotter: &str,
    matcher: &Matcher,
) -> Result<Digest> {
    let lease = leases::Temporary::create(client).await?;
    let gate = gate::LayerGate::open();
    let result = unpack_leased(client, target, snapshotter, matcher, lease.id(), &gate).await;
    lease.release().await;
    result
}

/// [`unpack`] under `lease`, applying each layer once `gate` says it is
/// in the content store (a pull unpacks while it still fetches).
pub(crate) async fn unpack_leased(
    client: &Client,
    target: &Node,
    snapshotter: &str,
    matcher: &Matcher,
    lease: &str,
    gate: &gate::LayerGate,
) -> Result<Digest> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let sn = client.snapshotter(snapshotter, Some(lease))?;
    let manifest = walk::manifest(store, ns, target, matcher).await?;
    let diff_ids = walk::rootfs(store, ns, &manifest.config).await?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::LayerCountMismatch {
            digest: target.digest.clone(),
            diff_ids: diff_ids.len(),
            layers: manifest.layers.len(),
        }
        .into());
    }
    let mut chain: Vec<Digest> = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let parent = Digest::chain_id(&chain);
        chain.push(diff_id.clone());
        let chain_id = Digest::chain_id(&chain).unwrap_or_else(|| diff_id.clone());
        match sn.stat(chain_id.as_str()).await {
            Ok(_) => continue,
            Err(err) if err.is_not_found() => {}
            Err(err) => {
                return Err(Error::Snapshot {
                    op: "stat",
                    key: chain_id.to_string(),
                    source: Box::new(err),
                }
                .into())
            }
        }
        let parent = parent.map(|p| p.to_string()).unwrap_or_default();
        gate.wait(&layer.digest).await?;
        match apply_layer(client, &*sn, layer, diff_id, &chain_id, &parent).await {
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
    let top = Digest::chain_id(&chain).ok_or_else(|| Error::TargetHasNoLayers {
        digest: target.digest.clone(),
    })?;
    let label = format!("containerd.io/gc.ref.snapshot.{snapshotter}");
    crate::add_missing_labels(
        store,
        ns,
        &manifest.config.digest,
        [(label, top.to_string())].into(),
        None,
    )
    .await?;
    Ok(top)
}

/// Prepares `extract-<unique> <chain id>` on `parent`, applies the layer
/// onto it and commits it as `chain_id`; removes the extraction snapshot
/// if anything fails.
async fn apply_layer(
    client: &Client,
    sn: &dyn Snapshotter,
    layer: &Node,
    diff_id: &Digest,
    chain_id: &Digest,
    parent: &str,
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
                return Err(Error::Snapshot {
                    op: "prepare extraction",
                    key,
                    source: Box::new(err),
                }
                .into())
            }
        }
    };
    let applied: Result<()> = async {
        let applied = client
            .services()
            .diff
            .apply(client.namespace(), &node_descriptor(layer)?, &mounts)
            .await
            .map_err(|e| Error::ExtractLayer {
                layer: layer.digest.clone(),
                diff_id: diff_id.clone(),
                source: Box::new(e),
            })?;
        if applied.digest != *diff_id {
            return Err(Error::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                digest: applied.digest,
            }
            .into());
        }
        sn.commit(chain_id.as_str(), &key, Labels::new())
            .await
            .map_err(|e| Error::Snapshot {
                op: "commit",
                key: key.clone(),
                source: Box::new(e),
            })?;
        Ok(())
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
