//! Images as blobs: layers built entry by entry, configs, manifests and
//! indexes with their digests.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use crated_core::digest::Digest;
use serde_json::json;

pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob with its media type and digest.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type.
    pub media_type: String,
    /// Content.
    pub data: Bytes,
    /// sha256 of `data`.
    pub digest: Digest,
}

impl Blob {
    pub(crate) fn new(media_type: &str, data: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: Digest::sha256(&data),
            data: data.into(),
        }
    }

    /// The OCI descriptor JSON of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.data.len()})
    }
}

/// An image (or index) as the blobs it is made of.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest or index a reference points at.
    pub root: Blob,
    /// Every other blob: child manifests, configs, layers.
    pub blobs: Vec<Blob>,
    /// The uncompressed digests of the layers of the (host) manifest.
    pub diff_ids: Vec<Digest>,
}

/// Builds a tar layer entry by entry, including names tar's own setters
/// refuse (for hostile layers).
pub struct LayerBuilder(tar::Builder<Vec<u8>>);

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &[u8], mode: u32) -> Result<tar::Header> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        let field = &mut h.as_old_mut().name;
        anyhow::ensure!(
            name.len() <= field.len(),
            "tar name too long: {}",
            String::from_utf8_lossy(name)
        );
        field[..name.len()].copy_from_slice(name);
        Ok(h)
    }

    fn append(mut self, mut h: tar::Header, data: &[u8]) -> Result<Self> {
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data)?;
        Ok(self)
    }

    /// A directory.
    pub fn dir(self, name: &str) -> Result<Self> {
        self.append(
            Self::header(tar::EntryType::Directory, name.as_bytes(), 0o755)?,
            b"",
        )
    }

    /// A regular file, mode 0644.
    pub fn file(self, name: &str, data: &[u8]) -> Result<Self> {
        self.file_mode(name.as_bytes(), data, 0o644)
    }

    /// A regular file with any name bytes and mode.
    pub fn file_mode(self, name: &[u8], data: &[u8], mode: u32) -> Result<Self> {
        self.append(Self::header(tar::EntryType::Regular, name, mode)?, data)
    }

    /// A symlink or hard link (`kind`) named `name` to `target`.
    pub fn link(self, kind: tar::EntryType, name: &str, target: &[u8]) -> Result<Self> {
        let mut h = Self::header(kind, name.as_bytes(), 0o777)?;
        let field = &mut h.as_old_mut().linkname;
        anyhow::ensure!(target.len() <= field.len(), "link target too long");
        field[..target.len()].copy_from_slice(target);
        self.append(h, b"")
    }

    /// A symlink.
    pub fn symlink(self, name: &str, target: &str) -> Result<Self> {
        self.link(tar::EntryType::Symlink, name, target.as_bytes())
    }

    /// A large file written from a reader (synthetic images).
    pub fn big_file(mut self, name: &str, size: u64, data: impl std::io::Read) -> Result<Self> {
        let mut h = Self::header(tar::EntryType::Regular, name.as_bytes(), 0o644)?;
        h.set_size(size);
        h.set_cksum();
        self.0.append(&h, data)?;
        Ok(self)
    }

    /// The tar bytes.
    pub fn finish(self) -> Result<Vec<u8>> {
        Ok(self.0.into_inner()?)
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// A single-platform image of `layers` (uncompressed tars, gzipped here).
pub fn image(os: &str, arch: &str, layers: Vec<Vec<u8>>) -> Result<Image> {
    let config = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]});
    image_with_config(os, arch, layers, config)
}

/// [`image`] with `config` as the image config's `config` object.
pub fn image_with_config(
    os: &str,
    arch: &str,
    layers: Vec<Vec<u8>>,
    config: serde_json::Value,
) -> Result<Image> {
    let layers = layers
        .iter()
        .map(|tar| {
            Ok(Layer {
                blob: Blob::new(OCI_LAYER_GZIP, gzip(tar)?),
                diff_id: Digest::sha256(tar),
                annotations: serde_json::Map::new(),
            })
        })
        .collect::<Result<_>>()?;
    assemble(os, arch, layers, config)
}

/// A layer blob as a manifest lists it.
pub(crate) struct Layer {
    pub blob: Blob,
    /// The digest of its uncompressed tar.
    pub diff_id: Digest,
    /// Its descriptor's annotations.
    pub annotations: serde_json::Map<String, serde_json::Value>,
}

/// The image of `layers` (bottom first) with `config` as the image
/// config's `config` object.
pub(crate) fn assemble(
    os: &str,
    arch: &str,
    layers: Vec<Layer>,
    config: serde_json::Value,
) -> Result<Image> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": arch,
            "os": os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        }))?,
    );
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let mut d = l.blob.descriptor();
            if !l.annotations.is_empty() {
                d["annotations"] = serde_json::Value::Object(l.annotations.clone());
            }
            d
        })
        .collect();
    let manifest = Blob::new(
        OCI_MANIFEST,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": descriptors,
        }))?,
    );
    let mut blobs: Vec<Blob> = layers.into_iter().map(|l| l.blob).collect();
    blobs.push(config);
    Ok(Image {
        root: manifest,
        blobs,
        diff_ids,
    })
}

/// Debian's `busybox-static` FROM scratch: `/bin/busybox` and a symlink to
/// it for every applet (`busybox --list-full`), for the host platform.
pub fn busybox() -> Result<Image> {
    image("linux", crate::host_arch(), vec![busybox_layer()?])
}

/// A pod sandbox ("pause") image made of busybox: its entrypoint sleeps
/// until killed, as the pause container holds a pod's namespaces; user
/// 65535 as the real pause image.
pub fn pause() -> Result<Image> {
    let config = json!({
        "Entrypoint": ["/bin/sleep", "2147483647"],
        "User": "65535:65535",
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    image_with_config("linux", crate::host_arch(), vec![busybox_layer()?], config)
}

pub(crate) fn busybox_layer() -> Result<Vec<u8>> {
    busybox_layer_with("root:x:0:0:root:/root:/bin/sh\n", "")
}

/// The busybox layer with `passwd` as `/etc/passwd` and, unless empty,
/// `group` as `/etc/group`.
pub(crate) fn busybox_layer_with(passwd: &str, group: &str) -> Result<Vec<u8>> {
    let path = Path::new("/bin/busybox");
    let binary =
        std::fs::read(path).context("reading /bin/busybox (apt-get install busybox-static)")?;
    let list = std::process::Command::new(path)
        .arg("--list-full")
        .output()
        .context("running busybox --list-full")?;
    let mut layer = LayerBuilder::new();
    for dir in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp"] {
        layer = layer.dir(dir)?;
    }
    layer = layer.file_mode(b"bin/busybox", &binary, 0o755)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        layer = layer.symlink(applet, &target)?;
    }
    layer = layer.file("etc/passwd", passwd.as_bytes())?;
    if !group.is_empty() {
        layer = layer.file("etc/group", group.as_bytes())?;
    }
    layer.finish()
}

/// What [`whiteouts`] unpacks to: path, then `dir`, `file:<content>`
/// or `link:<target>`; sorted by path.
pub const EXPECTED_WHITEOUT_TREE: &[(&str, &str)] = &[
    ("a", "dir"),
    ("a/keep", "file:keep"),
    ("b", "dir"),
    ("b/z", "file:z"),
    ("c", "dir"),
    ("c/again", "file:again"),
    ("d", "dir"),
    ("d/hard", "file:new"),
    ("d/new", "file:new"),
    ("l1", "link:a/keep"),
];

/// Three layers: files, then whiteouts of a file, of a whole directory
/// and an opaque directory, then a directory re-created after its
/// whiteout; a hard link along the way.
pub fn whiteouts() -> Result<Image> {
    let l1 = LayerBuilder::new()
        .dir("a")?
        .file("a/keep", b"keep")?
        .file("a/gone", b"gone")?
        .dir("b")?
        .file("b/x", b"x")?
        .dir("b/sub")?
        .file("b/sub/y", b"y")?
        .dir("c")?
        .file("c/old", b"old")?
        .symlink("l1", "a/keep")?
        .finish()?;
    let l2 = LayerBuilder::new()
        .file("a/.wh.gone", b"")?
        .dir("b")?
        .file("b/.wh..wh..opq", b"")?
        .file("b/z", b"z")?
        .file(".wh.c", b"")?
        .dir("d")?
        .file("d/new", b"new")?
        // In the layer of its target, as docker and containerd write
        // them: a link to a lower layer's file cannot be made in an
        // overlay upper dir (containerd fails it the same way).
        .link(tar::EntryType::Link, "d/hard", b"d/new")?
        .finish()?;
    let l3 = LayerBuilder::new()
        .dir("c")?
        .file("c/again", b"again")?
        .finish()?;
    image("linux", crate::host_arch(), vec![l1, l2, l3])
}

/// An OCI index: busybox for the host, and a one-file image for
/// `linux/s390x` (never the host here).
pub fn multi_platform() -> Result<Image> {
    let host = busybox()?;
    let other = image(
        "linux",
        "s390x",
        vec![LayerBuilder::new()
            .file("etc/platform", b"s390x\n")?
            .finish()?],
    )?;
    let entry = |img: &Image, arch: &str| {
        let mut d = img.root.descriptor();
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    };
    let index = Blob::new(
        OCI_INDEX,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry(&host, crate::host_arch()), entry(&other, "s390x")],
        }))?,
    );
    let mut blobs = vec![host.root.clone(), other.root.clone()];
    blobs.extend(host.blobs.iter().cloned());
    blobs.extend(other.blobs.iter().cloned());
    Ok(Image {
        root: index,
        blobs,
        diff_ids: host.diff_ids,
    })
}

/// `image` wrapped in `depth` levels of indexes, each naming the one
/// inside it (blobs ordered innermost first, as a registry wants them
/// pushed).
pub fn nested_index(image: Image, depth: usize) -> Result<Image> {
    let mut blobs = image.blobs;
    let mut inner = image.root;
    for _ in 0..depth {
        let mut entry = inner.descriptor();
        entry["platform"] = json!({"os": "linux", "architecture": crate::host_arch()});
        let index = Blob::new(
            OCI_INDEX,
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [entry],
            }))?,
        );
        blobs.push(inner);
        inner = index;
    }
    Ok(Image {
        root: inner,
        blobs,
        diff_ids: image.diff_ids,
    })
}

/// Layers that try to escape the root they are applied to, each as a
/// one-layer image, named; `marker` is a path outside (an absolute path
/// that must not appear) used by the absolute-symlink cases.
pub fn hostile(marker: &Path) -> Result<Vec<(&'static str, Image)>> {
    let marker = marker.display().to_string();
    let marker_dir = Path::new(&marker)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".to_owned());
    let marker_name = Path::new(&marker)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Deep enough to leave any snapshot directory, short enough for a
    // plain tar header's 100 bytes.
    let climb = format!("{}{}", "../".repeat(16), marker.trim_start_matches('/'));
    let layers: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "dot-dot name",
            LayerBuilder::new()
                .file_mode(climb.as_bytes(), b"x", 0o644)?
                .finish()?,
        ),
        (
            "dot-dot inside a name",
            LayerBuilder::new()
                .file_mode(format!("a/../{climb}").as_bytes(), b"x", 0o644)?
                .finish()?,
        ),
        (
            "absolute symlink written through",
            LayerBuilder::new()
                .symlink("evil", &marker_dir)?
                .file(&format!("evil/{marker_name}"), b"x")?
                .finish()?,
        ),
        (
            "relative symlink climbing out",
            LayerBuilder::new()
                .symlink(
                    "up",
                    &format!("{}{}", "../".repeat(16), marker_dir.trim_start_matches('/')),
                )?
                .file(&format!("up/{marker_name}"), b"x")?
                .finish()?,
        ),
        (
            "hard link to outside",
            LayerBuilder::new()
                .link(
                    tar::EntryType::Link,
                    "hl",
                    b"../../../../../../../../etc/passwd",
                )?
                .finish()?,
        ),
        (
            "whiteout through a symlink",
            LayerBuilder::new()
                .symlink("w", &marker_dir)?
                .file(&format!("w/.wh.{marker_name}"), b"")?
                .finish()?,
        ),
    ];
    layers
        .into_iter()
        .map(|(name, tar)| Ok((name, image("linux", crate::host_arch(), vec![tar])?)))
        .collect()
}

/// `image` as `docker save` (before Docker 25) writes it: the config as
/// `<hex>.json`, each layer uncompressed as `<id>/layer.tar` (with its
/// `VERSION` and `json`), `manifest.json` naming `tags`, `repositories`.
/// A second name for the same image, `alias`, gets its own manifest entry
/// whose layers are symlinks to the first's, as `docker save` links layers
/// it writes twice.
pub fn docker_save(image: &Image, tags: &[&str], alias: &str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let manifest: serde_json::Value = serde_json::from_slice(&image.root.data)?;
    let find = |digest: &str| {
        image
            .blobs
            .iter()
            .find(|b| b.digest.to_string() == digest)
            .with_context(|| format!("blob {digest} not in the image"))
    };
    let config = find(manifest["config"]["digest"].as_str().unwrap_or_default())?;
    let mut out = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut h, path, data)?;
        Ok(())
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let config_name = format!("{}.json", config.digest.hex());
    files.push((config_name.clone(), config.data.to_vec()));
    let mut layer_paths = Vec::new();
    let mut alias_paths = Vec::new();
    let mut links = Vec::new();
    for (i, layer) in manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let blob = find(layer["digest"].as_str().unwrap_or_default())?;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&blob.data[..]).read_to_end(&mut plain)?;
        let id = Digest::sha256(format!("layer-{i}-{}", blob.digest).as_bytes());
        let id = id.hex().to_owned();
        files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
        files.push((
            format!("{id}/json"),
            format!("{{\"id\":\"{id}\"}}").into_bytes(),
        ));
        files.push((format!("{id}/layer.tar"), plain));
        layer_paths.push(format!("{id}/layer.tar"));
        let alias_id = Digest::sha256(format!("alias-{id}").as_bytes())
            .hex()
            .to_owned();
        links.push((
            format!("{alias_id}/layer.tar"),
            format!("../{id}/layer.tar"),
        ));
        alias_paths.push(format!("{alias_id}/layer.tar"));
    }
    let entries = json!([
        {"Config": config_name, "RepoTags": tags, "Layers": layer_paths},
        {"Config": config_name, "RepoTags": [alias], "Layers": alias_paths},
    ]);
    files.push(("manifest.json".to_owned(), serde_json::to_vec(&entries)?));
    files.push(("repositories".to_owned(), b"{}".to_vec()));
    for (path, data) in &files {
        add(path, data)?;
    }
    for (path, target) in &links {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        out.append_link(&mut h, path, target)?;
    }
    Ok(out.into_inner()?)
}

/// Debian's runc FROM scratch, as `/bin/runc` alone: the binary image
/// `ctr install` puts into the opt directory.
pub fn runc() -> Result<Image> {
    let binary =
        std::fs::read("/usr/sbin/runc").context("reading /usr/sbin/runc (apt-get install runc)")?;
    let layer = LayerBuilder::new()
        .dir("bin")?
        .file_mode(b"bin/runc", &binary, 0o755)?
        .finish()?;
    image("linux", crate::host_arch(), vec![layer])
}

/// A binary image whose layers try to make `ctr install` write outside its
/// directory: `..` names, a `bin` replaced by a symlink to the directory of
/// `marker` with a file written "through" it, a hard link to /etc/passwd.
/// What it may install is `bin/<marker's name>`, in the install directory.
pub fn hostile_install(marker: &Path) -> Result<Image> {
    let marker_dir = marker
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".to_owned());
    let marker_name = marker
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let climb = format!(
        "{}{}",
        "../".repeat(12),
        marker.display().to_string().trim_start_matches('/')
    );
    let first = LayerBuilder::new()
        .dir("bin")?
        .file_mode(b"bin/ok", b"#!/bin/sh\n", 0o755)?
        .file_mode(climb.as_bytes(), b"x", 0o755)?
        .file_mode(format!("bin/{climb}").as_bytes(), b"x", 0o755)?
        .finish()?;
    let second = LayerBuilder::new()
        .symlink("bin", &marker_dir)?
        .file_mode(format!("bin/{marker_name}").as_bytes(), b"x", 0o755)?
        .link(
            tar::EntryType::Link,
            "bin/passwd",
            b"../../../../../../../../etc/passwd",
        )?
        .finish()?;
    image("linux", crate::host_arch(), vec![first, second])
}

/// The synthetic image of `cargo xtask bench pull`: `big` MiB of
/// incompressible data in four files, a layer of `small` small files,
/// and a layer deleting some of both.
pub fn synthetic(big_mib: u64, small: usize) -> Result<Image> {
    let mut big = LayerBuilder::new().dir("data")?;
    let per_file = big_mib * (1 << 20) / 4;
    for i in 0..4u64 {
        big = big.big_file(
            &format!("data/blob{i}"),
            per_file,
            Xorshift::new(i + 1).take_reader(per_file),
        )?;
    }
    let mut many = LayerBuilder::new().dir("small")?;
    for i in 0..small {
        if i % 1000 == 0 {
            many = many.dir(&format!("small/{}", i / 1000))?;
        }
        many = many.file(
            &format!("small/{}/f{i}", i / 1000),
            format!("file {i}\n").as_bytes(),
        )?;
    }
    let wh = LayerBuilder::new()
        .file("data/.wh.blob3", b"")?
        .file("small/.wh.0", b"")?
        .finish()?;
    image(
        "linux",
        crate::host_arch(),
        vec![big.finish()?, many.finish()?, wh],
    )
}

/// A fast deterministic byte stream that gzip cannot shrink.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn take_reader(self, len: u64) -> impl std::io::Read {
        std::io::Read::take(self, len)
    }
}

impl std::io::Read for Xorshift {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(buf.len())
    }
}
