//! Walking an image's tree of blobs in a content store — index → manifests
//! → config and layers — as containerd's `images.Children`, `Platforms` and
//! `Image.Size` do. `ctr images ls` sizes and platforms come from here; pull
//! and `images check` walk the same tree.
//!
//! ```no_run
//! # async fn f(store: &dyn crated_core::content::ContentStore,
//! #            ns: &crated_core::Namespace,
//! #            image: &crated_core::images::Image) {
//! use crated_core::images::walk::{size, Node};
//! use crated_core::platforms::default_matcher;
//!
//! let (bytes, complete) = size(store, ns, &Node::from(&image.target), &default_matcher()).await;
//! if let Err(err) = complete {
//!     eprintln!("size of {} is partial ({bytes} bytes): {err}", image.name);
//! }
//! # }
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::content::ContentStore;
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::platforms::{format, normalize, Matcher, Platform};
use crate::{Error, Namespace, Result};

/// OCI and Docker media types of the image tree.
pub mod media_types {
    /// An OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// A Docker image manifest (schema 2).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// A Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    /// Whether `media_type` is an index (OCI or Docker).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    /// Whether `media_type` is a manifest (OCI or Docker).
    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }

    /// Whether `media_type` is an image config (OCI or Docker).
    pub fn is_config(media_type: &str) -> bool {
        media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
    }

    /// Whether `media_type` is a layer (OCI, or Docker's with any `+`
    /// suffix), as containerd's `IsLayerType`.
    pub fn is_layer(media_type: &str) -> bool {
        if media_type.starts_with("application/vnd.oci.image.layer.") {
            return true;
        }
        let base = media_type.split('+').next().unwrap_or_default();
        matches!(
            base,
            "application/vnd.docker.image.rootfs.diff.tar"
                | "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.diff.tar.zstd"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        )
    }
}

/// Index and manifest blobs are read whole; a larger one is refused rather
/// than read into memory (real manifests are a few KiB).
const MAX_DOCUMENT: u64 = 16 << 20;

/// A node of the tree: a descriptor as it appears in an index or manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Media type of the blob.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size as written in the parent; negative sizes are kept so the
    /// walk can reject them as containerd does.
    pub size: i64,
    /// The platform an index gives a manifest.
    pub platform: Option<Platform>,
}

impl From<&Descriptor> for Node {
    fn from(desc: &Descriptor) -> Self {
        Self {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            platform: None,
        }
    }
}

/// Reads a whole blob (index, manifest or config).
pub async fn read_blob(
    store: &dyn ContentStore,
    ns: &Namespace,
    digest: &Digest,
) -> Result<Vec<u8>> {
    let reader = store.reader_at(ns, digest).await?;
    let size = reader.size();
    if size > MAX_DOCUMENT {
        return Err(Error::invalid_argument(format!(
            "{digest}: {size} bytes is too large for an image document (limit {MAX_DOCUMENT})"
        )));
    }
    // Bounded by MAX_DOCUMENT above, so it fits in usize.
    let mut data = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < data.len() {
        let n = reader.read_at(filled as u64, &mut data[filled..]).await?;
        if n == 0 {
            return Err(Error::unknown(format!(
                "{digest}: ended at {filled} of {size} bytes"
            )));
        }
        filled += n;
    }
    Ok(data)
}

fn parse_json(node: &Node, data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|err| {
        Error::invalid_argument(format!(
            "{} ({}) is not valid JSON: {err}",
            node.digest, node.media_type
        ))
    })
}

/// containerd's `validateMediaType`: a document must not be the other kind
/// than its descriptor says, and schema 1 is not supported.
fn check_kind(node: &Node, doc: &Value) -> Result<()> {
    let has = |field: &str| doc.get(field).is_some_and(|v| !v.is_null());
    let wrong = |why: &str| {
        Err(Error::invalid_argument(format!(
            "children: invalid desc {}: media-type: {why}",
            node.digest
        )))
    };
    if has("fsLayers") {
        return wrong("schema 1 not supported");
    }
    if media_types::is_index(&node.media_type) && (has("config") || has("layers")) {
        return wrong("expected index but found manifest");
    }
    if media_types::is_manifest(&node.media_type) && has("manifests") {
        return wrong("expected manifest but found index");
    }
    Ok(())
}

fn parse_platform(value: &Value) -> Platform {
    let text = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Platform {
        os: text("os"),
        architecture: text("architecture"),
        variant: text("variant"),
        os_version: text("os.version"),
        os_features: value
            .get("os.features")
            .and_then(Value::as_array)
            .map(|features| {
                features
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn parse_node(parent: &Node, value: &Value) -> Result<Node> {
    let bad = |why: String| {
        Error::invalid_argument(format!(
            "{} ({}): invalid descriptor: {why}",
            parent.digest, parent.media_type
        ))
    };
    let digest = value
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no digest".into()))?;
    Ok(Node {
        media_type: value
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        digest: Digest::parse(digest).map_err(|e| bad(e.message().to_owned()))?,
        size: value
            .get("size")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("{digest} has no integer size")))?,
        platform: value.get("platform").map(parse_platform),
    })
}

/// The children of `node`: an index's manifests, a manifest's config then
/// layers; nothing for any other type.
pub async fn children(store: &dyn ContentStore, ns: &Namespace, node: &Node) -> Result<Vec<Node>> {
    if !media_types::is_index(&node.media_type) && !media_types::is_manifest(&node.media_type) {
        return Ok(Vec::new());
    }
    parse_children(node, &read_blob(store, ns, &node.digest).await?)
}

/// [`children`] of a document already read: `data` is `node`'s content.
pub fn parse_children(node: &Node, data: &[u8]) -> Result<Vec<Node>> {
    let fields: &[&str] = if media_types::is_index(&node.media_type) {
        &["manifests"]
    } else if media_types::is_manifest(&node.media_type) {
        &["config", "layers"]
    } else {
        return Ok(Vec::new());
    };
    let doc = parse_json(node, data)?;
    check_kind(node, &doc)?;
    let mut out = Vec::new();
    for field in fields {
        match doc.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    out.push(parse_node(node, item)?);
                }
            }
            Some(item) => out.push(parse_node(node, item)?),
        }
    }
    Ok(out)
}

/// The platforms of an image, as containerd's `images.Platforms`: the
/// platforms an index gives its manifests, or the normalised OS and
/// architecture of the configs of manifests that have none. Unsorted, with
/// duplicates.
pub async fn platforms(
    store: &dyn ContentStore,
    ns: &Namespace,
    target: &Node,
) -> Result<Vec<Platform>> {
    let mut found = Vec::new();
    let mut stack = vec![target.clone()];
    while let Some(node) = stack.pop() {
        if let Some(platform) = &node.platform {
            found.push(platform.clone());
            continue;
        }
        if media_types::is_config(&node.media_type) {
            let config = parse_json(&node, &read_blob(store, ns, &node.digest).await?)?;
            found.push(normalize(parse_platform(&config)));
            continue;
        }
        push_children(&mut stack, children(store, ns, &node).await?);
    }
    Ok(found)
}

/// The `PLATFORMS` column of `ctr images ls`: distinct formatted platforms,
/// sorted, joined by commas; `-` if there are none.
pub fn platforms_column(platforms: &[Platform]) -> String {
    let mut names: Vec<String> = platforms.iter().map(format).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

/// The size of an image for `matcher`, as containerd's `Image.Size`: the
/// target, the best-matching manifest of each index, and that manifest's
/// config and layers. The error says why the walk stopped early; the size
/// is then what was counted until then, as containerd reports it.
pub async fn size(
    store: &dyn ContentStore,
    ns: &Namespace,
    target: &Node,
    matcher: &Matcher,
) -> (u64, Result<()>) {
    let mut total = 0u64;
    let mut stack = vec![target.clone()];
    while let Some(node) = stack.pop() {
        let Ok(size) = u64::try_from(node.size) else {
            let err = Error::invalid_argument(format!(
                "invalid size {} in {} ({})",
                node.size, node.digest, node.media_type
            ));
            return (total, Err(err));
        };
        total = total.saturating_add(size);
        let mut next = match children(store, ns, &node).await {
            Ok(next) => next,
            Err(err) => return (total, Err(err)),
        };
        if media_types::is_index(&node.media_type) {
            best_first(&mut next, matcher);
            if next.is_empty() {
                let err = Error::not_found("no match for platform in manifest: not found");
                return (total, Err(err));
            }
            next.truncate(1);
        }
        push_children(&mut stack, next);
    }
    (total, Ok(()))
}

/// An image manifest: its config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's own digest.
    pub digest: Digest,
    /// The image config.
    pub config: Node,
    /// The layers, bottom first.
    pub layers: Vec<Node>,
    /// The annotations of each layer's descriptor, in `layers`' order
    /// (an eStargz layer's `containerd.io/snapshot/stargz/toc.digest`,
    /// which an unpack hands its snapshotter).
    pub layer_annotations: Vec<BTreeMap<String, String>>,
}

/// A descriptor's `annotations`, keeping the string values (a non-string
/// value is not an annotation the OCI spec allows; it is left out).
fn string_map_of_annotations(descriptor: &Value) -> BTreeMap<String, String> {
    match descriptor.get("annotations") {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn manifest_of(node: &Node, doc: &Value) -> Result<Manifest> {
    let config = doc
        .get("config")
        .ok_or_else(|| Error::invalid_argument(format!("manifest {} has no config", node.digest)))
        .and_then(|c| parse_node(node, c))?;
    let items = match doc.get("layers") {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    let layers = items
        .iter()
        .map(|item| parse_node(node, item))
        .collect::<Result<_>>()?;
    let layer_annotations = items.iter().map(string_map_of_annotations).collect();
    Ok(Manifest {
        digest: node.digest.clone(),
        config,
        layers,
        layer_annotations,
    })
}

/// The manifest of an image for `matcher`, as containerd's
/// `images.Manifest`: an index yields its best match (manifests without a
/// platform last); a manifest found through an index whose descriptor has
/// no platform must have a matching config. NotFound when nothing matches
/// or the target is missing.
pub async fn manifest(
    store: &dyn ContentStore,
    ns: &Namespace,
    target: &Node,
    matcher: &Matcher,
) -> Result<Manifest> {
    let mut stack = vec![target.clone()];
    let mut was_index = false;
    while let Some(node) = stack.pop() {
        if media_types::is_manifest(&node.media_type) {
            let doc = parse_json(&node, &read_blob(store, ns, &node.digest).await?)?;
            check_kind(&node, &doc)?;
            let manifest = manifest_of(&node, &doc)?;
            if node.digest != target.digest {
                let fits = match &node.platform {
                    Some(platform) => matcher.matches(platform),
                    None => {
                        let config = manifest.config.clone();
                        let doc =
                            parse_json(&config, &read_blob(store, ns, &config.digest).await?)?;
                        matcher.matches(&normalize(parse_platform(&doc)))
                    }
                };
                if !fits {
                    continue;
                }
            }
            return Ok(manifest);
        }
        if media_types::is_index(&node.media_type) {
            was_index = true;
            let mut next = children(store, ns, &node).await?;
            // Only manifests (and indexes) are candidates: a checkpoint's
            // index also holds its dump and spec.
            next.retain(|c| {
                media_types::is_manifest(&c.media_type) || media_types::is_index(&c.media_type)
            });
            best_first(&mut next, matcher);
            next.truncate(1);
            push_children(&mut stack, next);
            continue;
        }
        return Err(Error::not_found(format!(
            "unexpected media type {} for {}: not found",
            node.media_type, node.digest
        )));
    }
    Err(Error::not_found(if was_index {
        format!(
            "no match for platform in manifest {}: not found",
            target.digest
        )
    } else {
        format!("manifest {}: not found", target.digest)
    }))
}

/// What `ctr images check` reports of an image, as containerd's
/// `images.Check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether the manifest could be read (else only the target is known).
    pub available: bool,
    /// Config and layers (or just the target when unavailable).
    pub required: Vec<Node>,
    /// Those of `required` in the store.
    pub present: Vec<Node>,
    /// Those of `required` missing.
    pub missing: Vec<Node>,
}

/// Which blobs of an image for `matcher` the store holds.
pub async fn check(
    store: &dyn ContentStore,
    ns: &Namespace,
    target: &Node,
    matcher: &Matcher,
) -> Result<Check> {
    let manifest = match manifest(store, ns, target, matcher).await {
        Ok(m) => m,
        Err(err) if err.is_not_found() => {
            return Ok(Check {
                available: false,
                required: vec![target.clone()],
                present: Vec::new(),
                missing: vec![target.clone()],
            })
        }
        Err(err) => return Err(err.context(format!("failed to check image {}", target.digest))),
    };
    let required: Vec<Node> = std::iter::once(manifest.config)
        .chain(manifest.layers)
        .collect();
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for node in &required {
        match store.info(ns, &node.digest).await {
            Ok(_) => present.push(node.clone()),
            Err(err) if err.is_not_found() => missing.push(node.clone()),
            Err(err) => return Err(err.context(format!("failed to check image {}", node.digest))),
        }
    }
    Ok(Check {
        available: true,
        required,
        present,
        missing,
    })
}

/// The diff ids of an image's layers, bottom first, from its config.
pub async fn rootfs(
    store: &dyn ContentStore,
    ns: &Namespace,
    config: &Node,
) -> Result<Vec<Digest>> {
    let doc = parse_json(config, &read_blob(store, ns, &config.digest).await?)?;
    let ids = doc
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ids.iter()
        .map(|id| {
            id.as_str()
                .ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "config {}: diff id is not a string",
                        config.digest
                    ))
                })
                .and_then(Digest::parse)
        })
        .collect()
}

/// Keeps an index's manifests that fit `matcher`, best first; stable, so
/// among equals the index's order decides, and manifests without a
/// platform go last (containerd's `FilterPlatforms` + `LimitManifests`).
pub fn best_first(manifests: &mut Vec<Node>, matcher: &Matcher) {
    manifests.retain(|n| n.platform.as_ref().is_none_or(|p| matcher.matches(p)));
    manifests.sort_by(|a, b| match (&a.platform, &b.platform) {
        (Some(a), Some(b)) => matcher.compare(a, b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// Depth first in document order, as containerd's `images.Walk`.
fn push_children(stack: &mut Vec<Node>, children: Vec<Node>) {
    stack.extend(children.into_iter().rev());
}

#[cfg(test)]
mod tests;
