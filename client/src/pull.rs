//! Pull: resolve a reference, fetch the image's manifests, configs and
//! layers into the content store under a lease (layers in parallel,
//! resuming partial downloads), label them for the collector, record the
//! image, and unpack it — containerd's `client.Pull` with `WithPullUnpack`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crated_core::content::{ContentStore, Info, Labels, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, media_types, Node};
use crated_core::platforms::Matcher;
use crated_core::reference::parse_normalized_named;
use crated_core::{Namespace, Result};
use crated_distribution::{Fetcher, Resolver};
use futures::StreamExt;

use crate::gate::{Demand, LayerGate};
use crate::unpack::Unpacking;
use crate::{descriptor_node, leases, node_descriptor, Client, Error};

/// What happens to one blob of a pull, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Known, not started.
    Waiting,
    /// Bytes arriving: `offset` of `total`.
    Downloading,
    /// Fetched and committed.
    Done,
    /// Already in the content store.
    Exists,
    /// Not fetched: an unpacked layer whose snapshot was there already, or
    /// that the snapshotter mounts from the registry itself.
    Skipped,
}

/// Receives progress of a pull. `key` is containerd's ingest ref
/// (`layer-sha256:…`), or the reference while it resolves.
pub trait Progress: Send + Sync {
    /// The reference resolved to `target`.
    fn resolved(&self, reference: &str, target: &Descriptor);
    /// A blob changed state or advanced.
    fn blob(&self, key: &str, state: BlobState, offset: u64, total: u64);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn resolved(&self, _: &str, _: &Descriptor) {}
    fn blob(&self, _: &str, _: BlobState, _: u64, _: u64) {}
}

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    /// The platforms to fetch and unpack (the host's by default).
    pub matcher: Matcher,
    /// Fetch every manifest of an index, not only the best match.
    pub all_platforms: bool,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Unpack into this snapshotter; `None` fetches only.
    pub snapshotter: Option<String>,
    /// Labels of the image record.
    pub labels: BTreeMap<String, String>,
    /// Leave an image record that already points at the target with these
    /// labels as it is (no update written or published), as the CRI does
    /// for every name of an image pulled again; otherwise it is updated,
    /// as containerd's client does.
    pub keep_unchanged_record: bool,
    /// With a snapshotter: manifests do not hold their layers, so the
    /// collector removes the layer blobs once unpacked (containerd's CRI
    /// `discard_unpacked_layers`); the snapshots stay.
    pub discard_unpacked_layers: bool,
    /// With a snapshotter: each layer's prepare carries the labels a
    /// remote snapshotter finds the layer in the registry by
    /// ([`crate::snapshotters`]), as containerd's CRI does unless
    /// `disable_snapshot_annotations`.
    pub snapshot_annotations: bool,
    /// With a snapshotter: fetch every layer, as ctr's `images pull` does
    /// (it fetches the whole image, then unpacks). Off, a layer is fetched
    /// only when the unpack has to apply it, as containerd client's
    /// `Pull` with `WithPullUnpack`, which the CRI uses: a layer whose
    /// snapshot is there (its blob discarded after an earlier unpack, say)
    /// or that a remote snapshotter mounts from the registry is never
    /// downloaded.
    pub fetch_all_layers: bool,
    /// With a snapshotter: each unpacked layer is flushed to disk before
    /// its snapshot is committed (containerd's CRI
    /// `image_pull_with_sync_fs`).
    pub sync_fs: bool,
    /// Record the image under the reference as resolved. Off, no record
    /// is written: the caller names the image itself (the transfer
    /// service, whose destination says the names), inside the lease it
    /// pulled in ([`pull_in_lease`]).
    pub record: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            matcher: crated_core::platforms::default_matcher(),
            all_platforms: false,
            max_concurrent_downloads: 3,
            snapshotter: Some("overlayfs".to_owned()),
            labels: BTreeMap::new(),
            keep_unchanged_record: false,
            discard_unpacked_layers: false,
            snapshot_annotations: false,
            fetch_all_layers: false,
            sync_fs: false,
            record: true,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image record's name: the reference as given.
    pub name: String,
    /// Its target.
    pub target: Descriptor,
    /// The chain id of the unpacked rootfs, if unpacked.
    pub chain_id: Option<Digest>,
}

/// How many indexes deep a pull follows. Real images nest one or two (an
/// index of platforms, sometimes inside an index of variants); a registry
/// serving a chain of thousands is hostile, each level a fetch.
pub const MAX_INDEX_DEPTH: usize = 8;

/// containerd's ingest ref for a blob: `<kind>-<digest>`, so a pull by
/// containerd's client and ours resume each other's downloads.
pub fn ingest_ref(node: &Node) -> String {
    let kind = if media_types::is_index(&node.media_type) {
        "index"
    } else if media_types::is_manifest(&node.media_type) {
        "manifest"
    } else if media_types::is_config(&node.media_type) {
        "config"
    } else if node.media_type.contains("layer") {
        "layer"
    } else {
        "unknown"
    };
    format!("{kind}-{}", node.digest)
}

/// Pulls `reference` into the client's namespace.
pub async fn pull(
    client: &Client,
    resolver: &Resolver,
    reference: &str,
    options: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let lease = leases::Temporary::create(client).await?;
    let result = pull_in_lease(client, resolver, reference, options, progress, lease.id()).await;
    lease.release().await;
    result
}

/// [`pull`] holding what it fetches and unpacks in the caller's `lease`
/// instead of one of its own.
pub async fn pull_in_lease(
    client: &Client,
    resolver: &Resolver,
    reference: &str,
    options: &PullOptions,
    progress: Arc<dyn Progress>,
    lease: &str,
) -> Result<Pulled> {
    let (name, target) = resolver.resolve(reference).await?;
    progress.resolved(&name, &target);
    let parsed = parse_normalized_named(&name)?;
    let source_label = (
        format!("containerd.io/distribution.source.{}", parsed.domain()),
        parsed.path().to_owned(),
    );
    let fetcher = resolver.fetcher(&name)?;
    let ns = client.namespace();
    let job = Job {
        store: &*client.services().content,
        ns,
        fetcher: &fetcher,
        lease,
        progress: progress.as_ref(),
        source_label,
    };

    // Manifests and indexes first, one by one (they are small and say
    // what else to fetch), then every config and layer in parallel.
    let root = descriptor_node(&name, &target)?;
    // Each entry with how many indexes lead to it.
    let mut stack = vec![(root.clone(), 0usize)];
    let mut blobs: Vec<Node> = Vec::new();
    let mut seen = HashSet::new();
    while let Some((node, depth)) = stack.pop() {
        if !seen.insert(node.digest.clone()) {
            continue;
        }
        let is_index = media_types::is_index(&node.media_type);
        if is_index && depth >= MAX_INDEX_DEPTH {
            return Err(Error::IndexTooDeep {
                reference: name,
                digest: node.digest,
                limit: MAX_INDEX_DEPTH,
            }
            .into());
        }
        if !is_index && !media_types::is_manifest(&node.media_type) {
            return Err(Error::UnpullableMediaType {
                reference: name,
                digest: node.digest,
                media_type: node.media_type,
            }
            .into());
        }
        let data = job.small(&node).await?;
        let children = walk::parse_children(&node, &data)?;
        let labels;
        if is_index {
            // An index may hold blobs that are not manifests (a
            // checkpoint's criu dump, spec and options): fetched as they
            // are, with the manifests of this platform. An image index
            // (manifests only) yields its best match.
            let (mut manifests, leaves): (Vec<Node>, Vec<Node>) =
                children.into_iter().partition(|c| {
                    media_types::is_index(&c.media_type) || media_types::is_manifest(&c.media_type)
                });
            if !options.all_platforms {
                if leaves.is_empty() {
                    walk::best_first(&mut manifests, &options.matcher);
                    manifests.truncate(1);
                } else {
                    manifests.retain(|m| {
                        m.platform
                            .as_ref()
                            .is_none_or(|p| options.matcher.matches(p))
                    });
                }
            }
            if manifests.is_empty() && leaves.is_empty() {
                return Err(Error::NoPlatformMatch {
                    reference: name,
                    digest: node.digest,
                }
                .into());
            }
            labels = crate::child_gc_labels(true, manifests.iter().chain(&leaves));
            stack.extend(manifests.into_iter().rev().map(|m| (m, depth + 1)));
            for leaf in leaves {
                if seen.insert(leaf.digest.clone()) {
                    progress.blob(
                        &ingest_ref(&leaf),
                        BlobState::Waiting,
                        0,
                        leaf.size.max(0) as u64,
                    );
                    blobs.push(leaf);
                }
            }
        } else {
            labels = if options.discard_unpacked_layers && options.snapshotter.is_some() {
                crate::child_gc_labels(
                    false,
                    children
                        .iter()
                        .filter(|c| !media_types::is_layer(&c.media_type)),
                )
            } else {
                crate::child_gc_labels(false, &children)
            };
            for child in children {
                if seen.insert(child.digest.clone()) {
                    progress.blob(
                        &ingest_ref(&child),
                        BlobState::Waiting,
                        0,
                        child.size.max(0) as u64,
                    );
                    blobs.push(child);
                }
            }
        }
        job.label(&node, labels).await?;
    }

    // Configs first (small; an unpack reads them for the diff ids), then
    // layers in parallel while the unpack applies each one as soon as it
    // and its parent are there. Unless all are wanted, the unpacked
    // manifest's layers wait until the unpack asks for them.
    let (configs, layers): (Vec<Node>, Vec<Node>) = blobs
        .into_iter()
        .partition(|node| media_types::is_config(&node.media_type));
    for node in &configs {
        job.fetch(node, Labels::new()).await?;
    }
    let unpacked = match &options.snapshotter {
        Some(snapshotter) => {
            let manifest = walk::manifest(job.store, ns, &root, &options.matcher).await?;
            Some((snapshotter, manifest))
        }
        None => None,
    };
    let deferred: HashSet<&Digest> = unpacked
        .iter()
        .filter(|_| !options.fetch_all_layers)
        .flat_map(|(_, m)| &m.layers)
        .map(|l| &l.digest)
        .collect();
    let (now, later): (Vec<Node>, Vec<Node>) = layers
        .into_iter()
        .partition(|node| !deferred.contains(&node.digest));
    let (asker, asked) = futures::channel::mpsc::unbounded::<Node>();
    // Without an unpack nothing will ask: the sender goes, and with it
    // the stream of asked-for layers ends.
    let demand = match unpacked {
        Some(_) => Demand::new(asker),
        None => {
            drop(asker);
            Demand::none()
        }
    };
    let gate = LayerGate::closed();
    let job = &job;
    let fetch_layers = async {
        let mut wanted = HashSet::new();
        let mut fetches = futures::stream::iter(now)
            .chain(asked)
            .filter(move |node| futures::future::ready(wanted.insert(node.digest.clone())))
            .map(|node| async move { job.fetch(&node, Labels::new()).await.map(|()| node) })
            .buffer_unordered(options.max_concurrent_downloads.max(1));
        let mut fetched = HashSet::new();
        while let Some(result) = fetches.next().await {
            match result {
                Ok(node) => {
                    gate.ready(&node.digest);
                    fetched.insert(node.digest);
                }
                Err(err) => {
                    gate.fail(&err);
                    return Err(err);
                }
            }
        }
        drop(fetches);
        for node in later.iter().filter(|n| !fetched.contains(&n.digest)) {
            let size = node.size.max(0) as u64;
            progress.blob(&ingest_ref(node), BlobState::Skipped, 0, size);
        }
        // Recorded once the unpack is done (it stops asking for layers
        // then) and everything it asked for is there, as containerd's pull.
        if !options.record {
            Ok(())
        } else if options.keep_unchanged_record {
            crate::images::put_if_changed(client, &name, &target, &options.labels).await
        } else {
            crate::images::put(client, &name, &target, &options.labels).await
        }
    };
    let unpack = async {
        match &unpacked {
            Some((snapshotter, manifest)) => {
                let how = Unpacking {
                    snapshotter,
                    lease,
                    reference: options.snapshot_annotations.then_some(name.as_str()),
                    apply: crated_core::diff::ApplyOptions {
                        sync_fs: options.sync_fs,
                    },
                };
                crate::unpack::unpack_leased(client, &root, manifest, &how, &gate, demand)
                    .await
                    .map(Some)
            }
            None => Ok(None),
        }
    };
    let ((), chain_id) = futures::future::try_join(fetch_layers, unpack).await?;
    Ok(Pulled {
        name,
        target,
        chain_id,
    })
}

/// The distribution source label's repositories (`sources`, comma
/// separated) with `repo` added: sorted, each once, as containerd keeps
/// them (a push mounts a blob from any of them).
fn with_source(sources: Option<&str>, repo: &str) -> String {
    let mut repos: Vec<&str> = sources
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .chain([repo])
        .collect();
    repos.sort_unstable();
    repos.dedup();
    repos.join(",")
}

struct Job<'a> {
    store: &'a dyn ContentStore,
    ns: &'a Namespace,
    fetcher: &'a Fetcher,
    lease: &'a str,
    progress: &'a dyn Progress,
    source_label: (String, String),
}

impl Job<'_> {
    /// A manifest or index: from the store if there, else fetched and
    /// stored.
    async fn small(&self, node: &Node) -> Result<Vec<u8>> {
        self.fetch(node, Labels::new()).await?;
        walk::read_blob(self.store, self.ns, &node.digest).await
    }

    /// Adds `labels` (and the distribution source) to a stored blob.
    async fn label(&self, node: &Node, labels: Labels) -> Result<()> {
        let stored = self.store.info(self.ns, &node.digest).await?;
        self.label_stored(node, labels, &stored).await
    }

    /// [`Job::label`] of a blob whose record is `stored`. A blob that has
    /// them all already (a pull of an image that is there) is left as it
    /// is: one durable write fewer per blob.
    async fn label_stored(&self, node: &Node, mut labels: Labels, stored: &Info) -> Result<()> {
        let (key, repo) = &self.source_label;
        let sources = with_source(stored.labels.get(key).map(String::as_str), repo);
        // A blob shared by so many repositories that the list outgrows a
        // label keeps the list it has (as containerd's pull).
        if crated_core::labels::validate(key, &sources).is_ok() {
            labels.insert(key.clone(), sources);
        }
        crate::add_missing_labels(self.store, self.ns, &node.digest, labels, Some(stored)).await
    }

    /// Fetches a blob into the store unless it is there, resuming a
    /// partial ingest of the same ref; the store verifies size and digest
    /// on commit.
    async fn fetch(&self, node: &Node, labels: Labels) -> Result<()> {
        let key = ingest_ref(node);
        let desc = node_descriptor(node)?;
        let total = desc.size;
        match self.store.info(self.ns, &desc.digest).await {
            Ok(stored) => {
                self.progress.blob(&key, BlobState::Exists, total, total);
                return self.label_stored(node, labels, &stored).await;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let mut attempts = 0;
        let mut writer = loop {
            let opened = self
                .store
                .writer(
                    self.ns,
                    WriterOptions {
                        r#ref: key.clone(),
                        total,
                        expected: Some(desc.digest.clone()),
                        lease: Some(self.lease.to_owned()),
                    },
                )
                .await;
            match opened {
                Ok(w) => break w,
                Err(e) if e.is_already_exists() => {
                    self.progress.blob(&key, BlobState::Exists, total, total);
                    return self.label(node, labels).await;
                }
                // Another pull is fetching it: wait for that one.
                Err(e) if e.kind() == crated_core::Kind::Unavailable && attempts < 10 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
                }
                Err(e) => {
                    return Err(Error::OpenWriter {
                        key,
                        source: Box::new(e),
                    }
                    .into())
                }
            }
        };
        let mut offset = writer.status().await?.offset;
        if offset > total {
            writer.truncate(0).await?;
            offset = 0;
        }
        self.progress
            .blob(&key, BlobState::Downloading, offset, total);
        if offset < total {
            let mut body = self.fetcher.fetch(&desc, offset).await?;
            while let Some(chunk) = body.chunk().await? {
                if offset + chunk.len() as u64 > total {
                    // Keep the bad bytes out: the ingest is dropped.
                    drop(writer);
                    let _ = self.store.abort(self.ns, &key).await;
                    return Err(Error::LongerThanDescriptor {
                        digest: desc.digest.clone(),
                        size: total,
                    }
                    .into());
                }
                writer.write(&chunk).await?;
                offset += chunk.len() as u64;
                self.progress
                    .blob(&key, BlobState::Downloading, offset, total);
            }
        }
        let mut labels = labels;
        labels.insert(self.source_label.0.clone(), self.source_label.1.clone());
        match writer
            .commit(total, Some(desc.digest.clone()), labels.clone())
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => self.label(node, labels).await?,
            Err(e) => {
                // A digest or size mismatch would fail every resume of
                // this ingest: start the next pull from scratch.
                if e.kind() == crated_core::Kind::FailedPrecondition {
                    let _ = self.store.abort(self.ns, &key).await;
                }
                return Err(Error::CommitBlob {
                    key,
                    source: Box::new(e),
                }
                .into());
            }
        }
        self.progress.blob(&key, BlobState::Done, total, total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::with_source;

    #[test]
    fn distribution_sources_gather_sorted_and_once() {
        assert_eq!(with_source(None, "library/busybox"), "library/busybox");
        assert_eq!(with_source(Some(""), "a/b"), "a/b");
        assert_eq!(
            with_source(Some("library/busybox"), "team/busybox"),
            "library/busybox,team/busybox"
        );
        assert_eq!(
            with_source(Some("library/busybox,team/busybox"), "library/busybox"),
            "library/busybox,team/busybox"
        );
        assert_eq!(with_source(Some("z,a"), "m"), "a,m,z");
    }
}
