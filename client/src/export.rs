//! `ctr images export`: images as an OCI image layout archive, as
//! containerd's `archive.Export` writes it: `oci-layout`, `index.json`
//! (each image's target, annotated with its name), `blobs/<alg>/<hex>` for
//! every blob of the platforms asked for, and Docker's `manifest.json` so
//! `docker load` takes it too. Entries are sorted by name; a blob is
//! written once, checked against its digest as it is copied.
//!
//! (The `ocidir` crate works on directories through cap-std; an export is
//! a stream from the daemon's content store into one tar, so the layout
//! is written here with the `tar` crate.)

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use crated_core::content::ContentStore;
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, media_types, Node};
use crated_core::platforms::Matcher;
use crated_core::reference::parse_normalized_named;
use crated_core::{Namespace, Result};
use crated_differ::BlobReader;

use crate::oci::{DockerSaveEntry, OciDescriptor, OciIndex};
use crate::{Client, Error};

/// The image name annotation containerd puts on index entries.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI reference name annotation (the tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What [`export`] writes.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The platforms of an index to export (ctr: the host's, strictly).
    pub matcher: Matcher,
    /// Every platform of an index (all must be in the store).
    pub all_platforms: bool,
    /// No Docker `manifest.json`.
    pub skip_docker_manifest: bool,
    /// Leave out non-distributable layers (their descriptors stay).
    pub skip_non_distributable: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            matcher: crated_core::platforms::default_matcher(),
            all_platforms: false,
            skip_docker_manifest: false,
            skip_non_distributable: false,
        }
    }
}

/// containerd's `ociReferenceName`: the object of a reference (its tag,
/// or `@digest`), the name itself when it has none.
pub fn oci_reference_name(name: &str) -> String {
    let path = name.split_once('/').map(|(_, p)| p).unwrap_or(name);
    match path.find([':', '@']) {
        Some(i) if path.as_bytes()[i] == b':' => path[i + 1..].to_owned(),
        Some(i) => path[i..].to_owned(),
        None => name.to_owned(),
    }
}

/// What goes at one path of the archive.
enum Source {
    Dir,
    Bytes(Vec<u8>),
    Blob(Descriptor),
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

fn non_distributable(media_type: &str) -> bool {
    media_type.contains(".nondistributable.") || media_type.contains(".foreign.")
}

/// Every blob under `root` (itself included), depth first.
async fn tree(store: &dyn ContentStore, ns: &Namespace, root: &Node) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    let mut seen = HashSet::new();
    while let Some(node) = stack.pop() {
        if !seen.insert(node.digest.clone()) {
            continue;
        }
        if media_types::is_index(&node.media_type) || media_types::is_manifest(&node.media_type) {
            let children = walk::children(store, ns, &node).await?;
            stack.extend(children.into_iter().rev());
        }
        out.push(node);
    }
    Ok(out)
}

/// Writes `images` (names in the image store) to `out` as an OCI layout
/// archive.
pub async fn export(
    client: &Client,
    images: &[String],
    out: Box<dyn Write + Send>,
    options: &ExportOptions,
) -> Result<()> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let mut records: BTreeMap<String, Source> = BTreeMap::new();
    let mut index_entries = Vec::new();
    // Docker's manifest.json: manifest digest → (descriptor, names).
    let mut docker: BTreeMap<Digest, (Descriptor, Vec<String>)> = BTreeMap::new();
    let add_blob = |records: &mut BTreeMap<String, Source>, node: &Node| -> Result<()> {
        if options.skip_non_distributable && non_distributable(&node.media_type) {
            return Ok(());
        }
        records.insert(
            blob_path(&node.digest),
            Source::Blob(crate::node_descriptor(node)?),
        );
        Ok(())
    };
    for name in images {
        let mut target = crate::images::target(client, name).await?;
        target
            .annotations
            .insert(ANNOTATION_IMAGE_NAME.to_owned(), name.clone());
        target
            .annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), oci_reference_name(name));
        index_entries.push(OciDescriptor::new(&target, None));
        let root = Node::from(&target);
        if media_types::is_manifest(&target.media_type) {
            for node in tree(store, ns, &root).await? {
                add_blob(&mut records, &node)?;
            }
            docker
                .entry(target.digest.clone())
                .or_insert_with(|| (target.clone(), Vec::new()))
                .1
                .push(name.clone());
        } else if media_types::is_index(&target.media_type) {
            add_blob(&mut records, &root)?;
            let mut wanted = Vec::new();
            for child in walk::children(store, ns, &root).await? {
                let fits = child
                    .platform
                    .as_ref()
                    .is_none_or(|p| options.matcher.matches(p));
                if !fits && !options.all_platforms {
                    continue;
                }
                for node in tree(store, ns, &child).await? {
                    add_blob(&mut records, &node)?;
                }
                if fits && media_types::is_manifest(&child.media_type) {
                    wanted.push(child);
                }
            }
            if !options.skip_docker_manifest {
                walk::best_first(&mut wanted, &options.matcher);
                let Some(best) = wanted.first() else {
                    return Err(Error::NoManifestForPlatform {
                        image: name.clone(),
                    }
                    .into());
                };
                let best_desc = crate::node_descriptor(best)?;
                docker
                    .entry(best.digest.clone())
                    .or_insert_with(|| (best_desc, Vec::new()))
                    .1
                    .push(name.clone());
            }
        } else {
            return Err(Error::NotExportable {
                image: name.clone(),
                media_type: target.media_type,
            }
            .into());
        }
    }
    records.insert(
        "oci-layout".to_owned(),
        Source::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    );
    records.insert(
        "index.json".to_owned(),
        Source::Bytes(OciIndex::new(index_entries).to_vec()),
    );
    if !options.skip_docker_manifest && !docker.is_empty() {
        let mut entries = Vec::new();
        for (manifest, names) in docker.values() {
            let data = walk::read_blob(store, ns, &manifest.digest).await?;
            let parsed = walk::parse_children(&Node::from(manifest), &data)?;
            let (config, layers) =
                parsed
                    .split_first()
                    .ok_or_else(|| Error::ManifestWithoutConfig {
                        digest: manifest.digest.clone(),
                    })?;
            let mut tags = Vec::new();
            for name in names {
                let reference = parse_normalized_named(name)?;
                let reference = if reference.tag().is_none() && reference.digest().is_none() {
                    reference.with_tag("latest")?
                } else {
                    reference
                };
                tags.push(reference.familiar_string());
            }
            entries.push(DockerSaveEntry {
                config: blob_path(&config.digest),
                repo_tags: Some(tags),
                layers: layers.iter().map(|l| blob_path(&l.digest)).collect(),
            });
        }
        let data = serde_json::to_vec(&entries).map_err(|source| Error::Encode {
            what: "manifest.json",
            source,
        })?;
        records.insert("manifest.json".to_owned(), Source::Bytes(data));
    }
    let algorithms: HashSet<String> = records
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blobs/")?
                .split_once('/')
                .map(|(a, _)| a.to_owned())
        })
        .collect();
    if !algorithms.is_empty() {
        records.insert("blobs/".to_owned(), Source::Dir);
        for alg in algorithms {
            records.insert(format!("blobs/{alg}/"), Source::Dir);
        }
    }

    // Blobs are opened here; the tar is written on a blocking thread.
    let mut opened = Vec::new();
    for (path, source) in records {
        let reader = match &source {
            Source::Blob(desc) => Some(store.reader_at(ns, &desc.digest).await.map_err(|e| {
                Error::BlobNotInStore {
                    digest: desc.digest.clone(),
                    source: Box::new(e),
                }
            })?),
            _ => None,
        };
        opened.push((path, source, reader));
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || write_tar(out, opened, runtime))
        .await
        .map_err(|source| Error::Blocking {
            what: "export".to_owned(),
            source,
        })?
}

type Opened = Vec<(
    String,
    Source,
    Option<Box<dyn crated_core::content::ReaderAt>>,
)>;

fn write_tar(
    out: Box<dyn Write + Send>,
    records: Opened,
    runtime: tokio::runtime::Handle,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    for (path, source, reader) in records {
        let write_error = |source| Error::WriteEntry {
            entry: path.clone(),
            source,
        };
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match source {
            Source::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())
                    .map_err(write_error)?;
            }
            Source::Bytes(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if path == "oci-layout" { 0o444 } else { 0o644 });
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, &path, data.as_slice())
                    .map_err(write_error)?;
            }
            Source::Blob(desc) => {
                let Some(reader) = reader else { continue };
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o444);
                header.set_size(desc.size);
                let mut verified = Verified {
                    inner: BlobReader::new(runtime.clone(), &*reader).take(desc.size),
                    hasher: crated_core::digest::Sha256::new(),
                    read: 0,
                };
                tar.append_data(&mut header, &path, &mut verified)
                    .map_err(write_error)?;
                if verified.read != desc.size || verified.hasher.finish() != desc.digest {
                    return Err(Error::BlobDigestMismatch {
                        digest: desc.digest,
                    }
                    .into());
                }
            }
        }
    }
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|source| Error::FinishArchive { source })?;
    Ok(())
}

/// Hashes what it reads.
struct Verified<R> {
    inner: R,
    hasher: crated_core::digest::Sha256,
    read: u64,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}
