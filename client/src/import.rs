//! `ctr images import`: OCI image layout archives and `docker save`
//! archives into the content store and the image store, as containerd's
//! `archive.ImportIndex` and `Client.Import`: every file of the archive is
//! stored as a blob (a blob named by its digest must hash to it), then the
//! archive's index — `index.json`, or one made from Docker's
//! `manifest.json` — names the images; children are labelled for the
//! garbage collector, for the platforms asked for.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crated_core::content::{write_blob, ContentStore, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, media_types, Node};
use crated_core::platforms::Matcher;
use crated_core::reference::parse_docker_ref;
use crated_core::{Namespace, Result};
use serde_json::Value;

use crate::export::{oci_reference_name, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::leases::Temporary;
use crate::oci::{DockerManifest, DockerSaveEntry, OciDescriptor, OciIndex, OciPlatform};
use crate::{Client, Error};

const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// JSON documents of an archive are read whole, up to this size.
const JSON_LIMIT: u64 = 20 << 20;

/// How images are named and which platforms are kept: `ctr images
/// import`'s flags.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Names come as `<base>:<ref>` for bare refs, and only names under
    /// the base are imported (`--base-name`); without it, bare refs become
    /// `import-<date>:<ref>`.
    pub base_name: Option<String>,
    /// Also name each manifest `<base>@<digest>` (`--digests`).
    pub digests: bool,
    /// …except those the archive names (`--skip-digest-for-named`).
    pub skip_digest_for_named: bool,
    /// Keep the archive's index as an image of this name (`--index-name`).
    pub index_name: Option<String>,
    /// Keep every platform (`--all-platforms`).
    pub all_platforms: bool,
    /// The platforms kept otherwise.
    pub matcher: Matcher,
    /// Gzip the uncompressed layers of a `docker save` archive
    /// (`--compress-blobs`); each compressed blob is labelled with its
    /// uncompressed digest.
    pub compress_blobs: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            base_name: None,
            digests: false,
            skip_digest_for_named: false,
            index_name: None,
            all_platforms: false,
            matcher: crated_core::platforms::default_matcher(),
            compress_blobs: false,
        }
    }
}

/// An image the import created or updated.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Its name.
    pub name: String,
    /// Its target.
    pub target: Descriptor,
}

/// What the archive held, once its files are blobs.
#[derive(Default)]
struct Archive {
    layout_version: Option<String>,
    docker_manifests: Option<Vec<DockerSaveEntry>>,
    /// Path in the archive → blob.
    blobs: HashMap<String, (Digest, u64)>,
    /// Symlink path → the path it points at.
    symlinks: Vec<(String, String)>,
}

/// `path.Clean` of a relative archive path.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn read_json<T: serde::de::DeserializeOwned>(
    entry: impl Read,
    name: &'static str,
) -> Result<T, Error> {
    serde_json::from_reader(entry.take(JSON_LIMIT)).map_err(|source| Error::ArchiveJson {
        entry: name,
        source,
    })
}

/// Reads the archive, storing every regular file as a blob.
fn read_archive(
    input: Box<dyn Read + Send>,
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: &str,
    runtime: &tokio::runtime::Handle,
) -> Result<Archive> {
    let bad = |source| Error::ReadArchive { source };
    let mut archive = Archive::default();
    let mut tar = tar::Archive::new(input);
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = clean(&raw);
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name_bytes() {
                let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = clean(&format!("{dir}/{target}"));
                archive.symlinks.push((name, resolved));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        match name.as_str() {
            "oci-layout" => {
                let layout: Value = read_json(entry, "oci-layout")?;
                archive.layout_version = Some(
                    layout["imageLayoutVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            "manifest.json" => {
                archive.docker_manifests = Some(read_json(entry, "manifest.json")?);
            }
            _ => {
                // PAX may carry the real size of a large blob.
                let size = entry.size();
                let desc = runtime
                    .block_on(write_blob(
                        store,
                        ns,
                        Some(lease),
                        "",
                        &format!("tar-{name}"),
                        entry,
                    ))
                    .map_err(|e| Error::Ingest {
                        entry: raw.clone(),
                        source: Box::new(e),
                    })?;
                if desc.size != size {
                    return Err(Error::EntryTruncated {
                        entry: raw,
                        read: desc.size,
                        size,
                    }
                    .into());
                }
                // A blob named by its digest must be that blob.
                if let Some(rest) = name.strip_prefix("blobs/") {
                    if let Some((alg, hex)) = rest.split_once('/') {
                        if format!("{alg}:{hex}") != desc.digest.to_string() {
                            return Err(Error::BlobNameMismatch {
                                entry: raw,
                                digest: desc.digest,
                            }
                            .into());
                        }
                    }
                }
                archive.blobs.insert(name, (desc.digest, size));
            }
        }
    }
    Ok(archive)
}

async fn put_json(
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: &str,
    media_type: &str,
    data: Vec<u8>,
) -> Result<Descriptor> {
    let digest = Digest::sha256(&data);
    write_blob(
        store,
        ns,
        Some(lease),
        media_type,
        &format!("manifest-{digest}"),
        data.as_slice(),
    )
    .await
}

/// The index of a `docker save` archive: a Docker manifest per entry of
/// its `manifest.json`, named by its repo tags.
/// The layer `digest` gzipped into a new blob labelled with its
/// uncompressed digest (containerd's `compressBlob`). Read, compressed and
/// written chunk by chunk on a blocking thread.
async fn compress_layer(
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: &str,
    digest: &Digest,
) -> Result<(Digest, u64)> {
    let reader = store.reader_at(ns, digest).await?;
    let mut writer = store
        .writer(
            ns,
            WriterOptions {
                r#ref: format!("compress-blob-{}-{}", digest.algorithm(), digest.hex()),
                total: 0,
                expected: None,
                lease: Some(lease.to_owned()),
            },
        )
        .await?;
    writer.truncate(0).await?;
    let runtime = tokio::runtime::Handle::current();
    let layer = digest.clone();
    crated_differ::stream_into(&mut *writer, move |out| {
        let mut plain = crated_differ::BlobReader::new(runtime, &*reader);
        let mut gzip = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut plain, &mut gzip)
            .and_then(|_| gzip.finish())
            .and_then(|mut out| std::io::Write::flush(&mut out))
            .map_err(|source| {
                Error::CompressLayer {
                    digest: layer,
                    source,
                }
                .into()
            })
    })
    .await?;
    let compressed = writer.digest().await?;
    let size = writer.status().await?.offset;
    let labels = [(crate::UNCOMPRESSED_LABEL.to_owned(), digest.to_string())].into();
    match writer.commit(size, Some(compressed.clone()), labels).await {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    Ok((compressed, size))
}

async fn docker_index(
    archive: &Archive,
    manifests: &[DockerSaveEntry],
    store: &dyn ContentStore,
    ns: &Namespace,
    lease: &str,
    compress: bool,
) -> Result<Descriptor> {
    let mut blobs = archive.blobs.clone();
    for (name, target) in &archive.symlinks {
        let blob = blobs
            .get(target)
            .cloned()
            .ok_or_else(|| Error::SymlinkWithoutTarget {
                link: name.clone(),
                target: target.clone(),
            })?;
        blobs.insert(name.clone(), blob);
    }
    let find = |path: &str, what: &'static str| {
        blobs
            .get(&clean(path))
            .cloned()
            .ok_or_else(|| Error::NotInArchive {
                what,
                path: path.to_owned(),
            })
    };
    let mut entries = Vec::new();
    for m in manifests {
        let (config_digest, config_size) = find(&m.config, "image config")?;
        let mut layers = Vec::new();
        for path in &m.layers {
            let (digest, size) = find(path, "layer")?;
            // Compressed or not, as its first bytes say.
            let reader = store.reader_at(ns, &digest).await?;
            let mut head = [0u8; 4];
            let n = reader.read_at(0, &mut head).await?;
            let media_type = match &head[..n] {
                [0x1f, 0x8b, ..] => DOCKER_LAYER_GZIP,
                // Docker's layer media types have no zstd (containerd
                // refuses these too).
                [0x28, 0xb5, 0x2f, 0xfd] => {
                    return Err(Error::ZstdDockerLayer { path: path.clone() }.into())
                }
                _ => DOCKER_LAYER,
            };
            let (media_type, digest, size) = if media_type == DOCKER_LAYER && compress {
                let (gz, gz_size) = compress_layer(store, ns, lease, &digest).await?;
                (DOCKER_LAYER_GZIP, gz, gz_size)
            } else {
                (media_type, digest, size)
            };
            layers.push(OciDescriptor {
                media_type: media_type.to_owned(),
                digest: digest.to_string(),
                size,
                annotations: BTreeMap::new(),
                platform: None,
            });
        }
        let manifest = DockerManifest {
            schema_version: 2,
            media_type: media_types::DOCKER_MANIFEST.to_owned(),
            config: OciDescriptor {
                media_type: media_types::DOCKER_CONFIG.to_owned(),
                digest: config_digest.to_string(),
                size: config_size,
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers,
        };
        let data = serde_json::to_vec(&manifest).map_err(|source| Error::Encode {
            what: "docker manifest",
            source,
        })?;
        let desc = put_json(store, ns, lease, media_types::DOCKER_MANIFEST, data).await?;
        let config: Value = serde_json::from_slice(
            &walk::read_blob(store, ns, &config_digest).await?,
        )
        .map_err(|source| Error::ArchiveImageConfig {
            path: m.config.clone(),
            source,
        })?;
        let text = |key: &str| config[key].as_str().unwrap_or_default().to_owned();
        let platform = OciPlatform {
            architecture: text("architecture"),
            os: text("os"),
            os_version: text("os.version"),
            os_features: Vec::new(),
            variant: text("variant"),
        };
        let base = OciDescriptor::new(&desc, Some(platform));
        match &m.repo_tags {
            Some(tags) if !tags.is_empty() => {
                for tag in tags {
                    let normalized = parse_docker_ref(tag)
                        .map_err(|e| Error::RepoTag {
                            tag: tag.clone(),
                            source: Box::new(e),
                        })?
                        .to_string();
                    let mut entry = base.clone();
                    entry.annotations = [
                        (
                            ANNOTATION_REF_NAME.to_owned(),
                            oci_reference_name(&normalized),
                        ),
                        (ANNOTATION_IMAGE_NAME.to_owned(), normalized),
                    ]
                    .into();
                    entries.push(entry);
                }
            }
            _ => entries.push(base),
        }
    }
    let index = OciIndex::new(entries).to_vec();
    put_json(store, ns, lease, media_types::OCI_INDEX, index).await
}

/// containerd's ref translators: a bare ref gets the base name as its
/// repository; with a chosen base, other names are dropped.
fn translate(reference: &str, base: &str, filter: bool) -> String {
    if reference.contains(['/', ':', '@']) {
        let under_base = reference
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':', '@']));
        if filter && !under_base {
            return String::new();
        }
        return reference.to_owned();
    }
    format!("{base}:{reference}")
}

/// Imports the archive read from `input`; returns the images named.
pub async fn import(
    client: &Client,
    input: Box<dyn Read + Send>,
    options: &ImportOptions,
) -> Result<Vec<Imported>> {
    let lease = Temporary::create(client).await?;
    let result = import_leased(client, input, options, lease.id()).await;
    lease.release().await;
    result
}

async fn import_leased(
    client: &Client,
    input: Box<dyn Read + Send>,
    options: &ImportOptions,
    lease: &str,
) -> Result<Vec<Imported>> {
    let ns = client.namespace();
    let store = &*client.services().content;
    let (reader_store, reader_ns, reader_lease) = (
        client.services().content.clone(),
        ns.clone(),
        lease.to_owned(),
    );
    let runtime = tokio::runtime::Handle::current();
    let archive = tokio::task::spawn_blocking(move || {
        read_archive(input, &*reader_store, &reader_ns, &reader_lease, &runtime)
    })
    .await
    .map_err(|source| Error::Blocking {
        what: "import".to_owned(),
        source,
    })??;

    let index = match (&archive.layout_version, &archive.docker_manifests) {
        (Some(version), _) => {
            if version != "1.0.0" {
                return Err(Error::UnsupportedOciVersion {
                    version: version.clone(),
                }
                .into());
            }
            let (digest, size) = archive
                .blobs
                .get("index.json")
                .cloned()
                .ok_or(Error::MissingIndex)?;
            Descriptor {
                media_type: media_types::OCI_INDEX.to_owned(),
                digest,
                size,
                annotations: Default::default(),
            }
        }
        (None, Some(manifests)) => {
            docker_index(
                &archive,
                manifests,
                store,
                ns,
                lease,
                options.compress_blobs,
            )
            .await?
        }
        (None, None) => return Err(Error::UnrecognizedArchive.into()),
    };

    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default();
    let (base, filter) = match &options.base_name {
        Some(base) => (base.clone(), true),
        None => (format!("import-{date}"), false),
    };
    let mut images: Vec<Imported> = Vec::new();
    if let Some(name) = &options.index_name {
        images.push(Imported {
            name: name.clone(),
            target: index.clone(),
        });
    }
    let data = walk::read_blob(store, ns, &index.digest).await?;
    let doc: OciIndex = serde_json::from_slice(&data).map_err(|source| Error::ArchiveIndex {
        digest: index.digest.clone(),
        source,
    })?;
    for m in &doc.manifests {
        let desc = m.descriptor()?;
        let annotation = |key: &str| m.annotations.get(key).cloned().unwrap_or_default();
        let mut name = annotation(ANNOTATION_IMAGE_NAME);
        if name.is_empty() {
            let reference = annotation(ANNOTATION_REF_NAME);
            if !reference.is_empty() {
                name = translate(&reference, &base, filter);
            }
        }
        if !name.is_empty() {
            images.push(Imported {
                name: name.clone(),
                target: desc.clone(),
            });
        }
        // A digest name too, unless told to skip the ones already named.
        let named = !name.is_empty();
        if options.digests && (!named || !options.skip_digest_for_named) {
            images.push(Imported {
                name: format!("{base}@{}", desc.digest),
                target: desc,
            });
        }
    }

    // The garbage collector's references, from the index down, for the
    // platforms kept.
    let mut stack = vec![Node::from(&index)];
    let mut seen = std::collections::HashSet::new();
    let mut kept_any = false;
    while let Some(node) = stack.pop() {
        if !seen.insert(node.digest.clone()) {
            continue;
        }
        let is_index = media_types::is_index(&node.media_type);
        if !is_index && !media_types::is_manifest(&node.media_type) {
            continue;
        }
        let mut children = walk::children(store, ns, &node).await?;
        if is_index && !options.all_platforms {
            children.retain(|c| {
                c.platform
                    .as_ref()
                    .is_none_or(|p| options.matcher.matches(p))
            });
        }
        let labels = crate::child_gc_labels(is_index, &children);
        if node.digest == index.digest {
            kept_any = !children.is_empty();
        }
        if !labels.is_empty() {
            crate::add_labels(store, ns, &node.digest, labels).await?;
        }
        stack.extend(children.into_iter().rev());
    }
    if !kept_any {
        return Err(Error::NoImageForPlatform.into());
    }
    for image in &images {
        crate::images::put(client, &image.name, &image.target, &BTreeMap::new()).await?;
    }
    Ok(images)
}
