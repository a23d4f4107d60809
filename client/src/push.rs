//! Push: an image's blobs from the content store to a registry — configs
//! and layers first (in parallel; skipped where the registry has them,
//! mounted from another repository of the same registry where their
//! distribution source label says so), then manifests by digest, children
//! before the indexes that list them, then the root under the tag.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use crated_core::content::ContentStore;
use crated_core::descriptor::Descriptor;
use crated_core::images::walk::{self, media_types, Node};
use crated_core::platforms::Matcher;
use crated_core::{Namespace, Result};
use crated_distribution::{Pushed, Pusher, Resolver};
use futures::StreamExt;

use crate::pull::{ingest_ref, BlobState, Progress};
use crate::{descriptor_node, node_descriptor, Client, Error};

/// How to push.
#[derive(Clone)]
pub struct PushOptions {
    /// Which manifests of an index to push; all by default, as
    /// containerd's ctr.
    pub matcher: Option<Matcher>,
    /// Blobs uploaded at once.
    pub max_concurrent_uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            matcher: None,
            max_concurrent_uploads: 3,
        }
    }
}

/// Pushes the image whose root is `target` to `reference`.
pub async fn push(
    client: &Client,
    resolver: &Resolver,
    reference: &str,
    target: &Descriptor,
    options: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let pusher = resolver.pusher(reference)?;
    let root = descriptor_node(reference, target)?;
    // Depth first: every manifest after its children, blobs collected.
    let mut manifests: Vec<Node> = Vec::new();
    let mut blobs: Vec<Node> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        let is_manifest =
            media_types::is_index(&node.media_type) || media_types::is_manifest(&node.media_type);
        if !is_manifest {
            if seen.insert(node.digest.clone()) {
                blobs.push(node);
            }
            continue;
        }
        if expanded {
            manifests.push(node);
            continue;
        }
        if !seen.insert(node.digest.clone()) {
            continue;
        }
        let mut children = walk::children(store, ns, &node)
            .await
            .map_err(|e| Error::Push {
                reference: reference.to_owned(),
                source: Box::new(e),
            })?;
        if media_types::is_index(&node.media_type) {
            if let Some(matcher) = &options.matcher {
                walk::best_first(&mut children, matcher);
            }
        }
        stack.push((node, true));
        for child in children.into_iter().rev() {
            stack.push((child, false));
        }
    }
    for node in &blobs {
        progress.blob(
            &ingest_ref(node),
            BlobState::Waiting,
            0,
            node.size.max(0) as u64,
        );
    }
    // Owned nodes: a closure over borrowed ones makes the whole push a
    // future that is not `Send` for every lifetime, which a spawned or
    // served (tonic) caller needs.
    let (pusher_ref, progress_ref) = (&pusher, progress.as_ref());
    let mut uploads = futures::stream::iter(blobs)
        .map(move |node| async move { push_blob(store, ns, pusher_ref, &node, progress_ref).await })
        .buffer_unordered(options.max_concurrent_uploads.max(1));
    while let Some(result) = uploads.next().await {
        result?;
    }
    drop(uploads);
    for node in &manifests {
        let data = walk::read_blob(store, ns, &node.digest).await?;
        let desc = node_descriptor(node)?;
        let key = ingest_ref(node);
        progress.blob(&key, BlobState::Downloading, 0, desc.size);
        pusher
            .push_manifest(&desc, Bytes::from(data), node.digest == root.digest)
            .await?;
        progress.blob(&key, BlobState::Done, desc.size, desc.size);
    }
    Ok(())
}

async fn push_blob(
    store: &dyn ContentStore,
    ns: &Namespace,
    pusher: &Pusher,
    node: &Node,
    progress: &dyn Progress,
) -> Result<()> {
    let desc = node_descriptor(node)?;
    let key = ingest_ref(node);
    let info = store
        .info(ns, &desc.digest)
        .await
        .map_err(|e| Error::PushBlob {
            key: key.clone(),
            source: Box::new(e),
        })?;
    // A blob pulled from another repository of this registry is mounted.
    let label = format!("containerd.io/distribution.source.{}", pusher.domain());
    let mount_from = info
        .labels
        .get(&label)
        .and_then(|repos| repos.split(',').find(|r| *r != pusher.repository()));
    let reader: Arc<dyn crated_core::content::ReaderAt> =
        Arc::from(store.reader_at(ns, &desc.digest).await?);
    progress.blob(&key, BlobState::Downloading, 0, desc.size);
    let pushed = pusher.push_blob(&desc, reader, mount_from).await?;
    let state = match pushed {
        Pushed::Exists | Pushed::Mounted => BlobState::Exists,
        Pushed::Uploaded => BlobState::Done,
    };
    progress.blob(&key, state, desc.size, desc.size);
    Ok(())
}
