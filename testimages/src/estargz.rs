//! eStargz images: layers a remote snapshotter (stargz) mounts from the
//! registry, fetching files as they are read, instead of having them
//! downloaded and unpacked. `stargz-tool convert` (built by `cargo xtask
//! deps` on the stargz snapshotter's own library) makes each layer.

use std::path::Path;

use anyhow::{Context as _, Result};
use crated_core::digest::Digest;
use serde_json::json;

use crate::image::{assemble, busybox_layer, Blob, Image, Layer, LayerBuilder, OCI_LAYER_GZIP};

/// The annotation of an eStargz layer's descriptor naming its table of
/// contents, which the stargz snapshotter verifies the layer by.
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";

/// The file the top layer of [`estargz_busybox`] adds, and its content.
pub const ESTARGZ_MARKER: (&str, &str) = ("lazy/marker", "read through the remote snapshotter\n");

/// busybox, then a layer with [`ESTARGZ_MARKER`], both converted to eStargz
/// by `tool` (`stargz-tool`), their descriptors annotated with their TOC
/// digests.
pub fn estargz_busybox(tool: &Path) -> Result<Image> {
    let marker = LayerBuilder::new()
        .dir("lazy")?
        .file(ESTARGZ_MARKER.0, ESTARGZ_MARKER.1.as_bytes())?
        .finish()?;
    let layers = [busybox_layer()?, marker]
        .iter()
        .map(|tar| convert(tool, tar))
        .collect::<Result<_>>()?;
    let config = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]});
    assemble("linux", crate::host_arch(), layers, config)
}

/// `tar` as an eStargz layer.
fn convert(tool: &Path, tar: &[u8]) -> Result<Layer> {
    let dir = crate::registry::TempDir::new("crated-estargz")?;
    let (input, output) = (dir.path().join("layer.tar"), dir.path().join("layer.esgz"));
    std::fs::write(&input, tar)?;
    let out = std::process::Command::new(tool)
        .arg("convert")
        .args([&input, &output])
        .output()
        .with_context(|| format!("run {}", tool.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} convert: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("stargz-tool convert's JSON")?;
    let field = |name: &str| {
        said[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("stargz-tool convert said no {name}: {said}"))
    };
    let blob = Blob::new(OCI_LAYER_GZIP, std::fs::read(&output)?);
    anyhow::ensure!(
        blob.digest.as_str() == field("digest")?,
        "stargz-tool's digest differs from its blob's"
    );
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        TOC_DIGEST_ANNOTATION.to_owned(),
        field("toc_digest")?.into(),
    );
    Ok(Layer {
        blob,
        diff_id: Digest::parse(&field("diff_id")?)?,
        annotations,
    })
}
