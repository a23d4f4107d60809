//! Unpacking an image's layers into a snapshotter, as containerd's
//! `image.Unpack`.

use std::time::UNIX_EPOCH;

use crated_core::content::Info;
use crated_core::diff::ApplyOptions;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Manifest, Node};
use crated_core::platforms::Matcher;
use crated_core::snapshots::{Labels, Snapshotter, TARGET_LABEL};
use crated_core::Result;

use crate::gate::{self, Demand};
use crate::{leases, node_descriptor, snapshotters, Client, Error, UNCOMPRESSED_LABEL};

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
    let result = async {
        let store = &*client.services().content;
        let manifest = walk::manifest(store, client.namespace(), target, matcher).await?;
        let how = Unpacking {
            snapshotter,
            lease: lease.id(),
            reference: None,
            apply: ApplyOptions::default(),
        };
        let gate = gate::LayerGate::open();
        unpack_leased(client, target, &manifest, &how, &gate, Demand::none()).await
    }
    .await;
    lease.release().await;
    result
}

/// Where and how an unpack puts its snapshots.
pub(crate) struct Unpacking<'a> {
    /// The snapshotter.
    pub snapshotter: &'a str,
    /// The lease the snapshots are made under.
    pub lease: &'a str,
    /// The reference the image was pulled by, when each prepare is to
    /// carry the labels remote snapshotters read
    /// ([`crate::snapshotters`]).
    pub reference: Option<&'a str>,
    /// How each layer is applied.
    pub apply: ApplyOptions,
}

/// [`unpack`] of `manifest` (the image `target`'s for the platform), as
/// `how` says, applying each layer once `gate` says it is in the content
/// store; a pull unpacks while it still fetches, and fetches the layers
/// only once `demand` asks for them.
pub(crate) async fn unpack_leased(
    client: &Client,
    target: &Node,
    manifest: &Manifest,
    how: &Unpacking<'_>,
    gate: &gate::LayerGate,
    mut demand: Demand,
) -> Result<Digest> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let sn = client.snapshotter(how.snapshotter, Some(how.lease))?;
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
    for (index, (layer, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
        let parent = Digest::chain_id(&chain);
        chain.push(diff_id.clone());
        let chain_id = Digest::chain_id(&chain).unwrap_or_else(|| diff_id.clone());
        if exists(&*sn, &chain_id).await? {
            continue;
        }
        let parent = parent.map(|p| p.to_string()).unwrap_or_default();
        let mut labels = snapshotters::layer_labels(manifest, index, how.reference);
        // Labelled with the snapshot it becomes: if another unpack (or a
        // remote snapshotter) committed that meanwhile, the prepare says
        // so and this layer is done.
        labels.insert(TARGET_LABEL.to_owned(), chain_id.to_string());
        let Some((key, mounts)) = prepare(&*sn, &chain_id, &parent, &labels).await? else {
            continue;
        };
        demand.ask(&manifest.layers[index..]);
        let applied = match gate.wait(&layer.digest).await {
            Ok(()) => apply_layer(client, layer, diff_id, &mounts, how.apply).await,
            Err(err) => Err(err),
        };
        let committed = match applied {
            // As containerd's, the committed snapshot keeps the labels it
            // was prepared with.
            Ok(()) => sn
                .commit(chain_id.as_str(), &key, labels)
                .await
                .map_err(|e| {
                    Error::Snapshot {
                        op: "commit",
                        key: key.clone(),
                        source: Box::new(e),
                    }
                    .into()
                }),
            Err(err) => Err(err),
        };
        match committed {
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
            Err(err) => {
                remove_extraction(&*sn, &key, &err).await;
                // Another unpack committed it meanwhile.
                if !err.is_already_exists() {
                    return Err(err);
                }
            }
        }
    }
    let top = Digest::chain_id(&chain).ok_or_else(|| Error::TargetHasNoLayers {
        digest: target.digest.clone(),
    })?;
    let label = format!("containerd.io/gc.ref.snapshot.{}", how.snapshotter);
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

/// Whether the snapshot `chain_id` is there.
async fn exists(sn: &dyn Snapshotter, chain_id: &Digest) -> Result<bool> {
    match sn.stat(chain_id.as_str()).await {
        Ok(_) => Ok(true),
        Err(err) if err.is_not_found() => Ok(false),
        Err(err) => Err(Error::Snapshot {
            op: "stat",
            key: chain_id.to_string(),
            source: Box::new(err),
        }
        .into()),
    }
}

/// Prepares `extract-<unique> <chain id>` on `parent` with `labels`;
/// `None` when the snapshot `chain_id` turns out to be there (another
/// unpack committed it, or a remote snapshotter mounted the layer from its
/// registry).
async fn prepare(
    sn: &dyn Snapshotter,
    chain_id: &Digest,
    parent: &str,
    labels: &Labels,
) -> Result<Option<(String, Vec<crated_core::mount::Mount>)>> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let key = format!(
            "extract-{} {chain_id}",
            crated_core::identifiers::unique_part()
        );
        match sn.prepare(&key, parent, labels.clone()).await {
            Ok(mounts) => return Ok(Some((key, mounts))),
            Err(err) if err.is_already_exists() => {
                if exists(sn, chain_id).await? {
                    return Ok(None);
                }
                if attempts >= 5 {
                    return Err(err);
                }
                // Only the random key was taken: try another.
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
    }
}

/// Removes the extraction snapshot `key` after `err`.
async fn remove_extraction(sn: &dyn Snapshotter, key: &str, err: &crated_core::Error) {
    if !err.is_already_exists() {
        tracing::warn!(key, error = %err, "unpack of a layer failed");
    }
    if let Err(rerr) = sn.remove(key).await {
        if !rerr.is_not_found() {
            tracing::warn!(key, error = %rerr, "remove extraction snapshot");
        }
    }
}

/// Applies `layer` onto the extraction snapshot's `mounts` with the
/// daemon's diff service, which must reproduce `diff_id`.
async fn apply_layer(
    client: &Client,
    layer: &Node,
    diff_id: &Digest,
    mounts: &[crated_core::mount::Mount],
    options: ApplyOptions,
) -> Result<()> {
    let applied = client
        .services()
        .diff
        .apply(
            client.namespace(),
            &node_descriptor(layer)?,
            mounts,
            options,
        )
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
    Ok(())
}
