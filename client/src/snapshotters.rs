//! The labels that tell a remote snapshotter (stargz, nydus, SOCI) where an
//! image's layers live, as containerd's `pkg/snapshotters`. An unpack asked
//! for them passes them with each layer's prepare; a snapshotter that can
//! mount the layer straight from its registry commits the layer's snapshot
//! itself and answers AlreadyExists, and the layer is never downloaded.
//!
//! The names carry `cri.` because the CRI introduced them; remote
//! snapshotters read them whoever pulls.

use crated_core::images::walk::{media_types, Manifest};
use crated_core::snapshots::{inherited_labels, Labels};

/// The reference the image was pulled by.
pub const TARGET_REF_LABEL: &str = "containerd.io/snapshot/cri.image-ref";
/// The digest of the manifest the layer belongs to.
pub const TARGET_MANIFEST_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.manifest-digest";
/// The layer's digest.
pub const TARGET_LAYER_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.layer-digest";
/// The digests of this layer and the layers above it, comma separated, as
/// many as fit one label: a snapshotter may start fetching them at once.
pub const TARGET_IMAGE_LAYERS_LABEL: &str = "containerd.io/snapshot/cri.image-layers";

/// The labels a prepare of layer `index` of `manifest` carries: those of
/// the layer's descriptor a snapshotter inherits (an eStargz layer's
/// `containerd.io/snapshot/stargz/toc.digest`), and with `reference` the
/// image's location as well.
pub fn layer_labels(manifest: &Manifest, index: usize, reference: Option<&str>) -> Labels {
    let mut labels = manifest
        .layer_annotations
        .get(index)
        .map(inherited_labels)
        .unwrap_or_default();
    let (Some(reference), Some(layer)) = (reference, manifest.layers.get(index)) else {
        return labels;
    };
    if !media_types::is_layer(&layer.media_type) {
        return labels;
    }
    labels.insert(TARGET_REF_LABEL.to_owned(), reference.to_owned());
    labels.insert(
        TARGET_LAYER_DIGEST_LABEL.to_owned(),
        layer.digest.to_string(),
    );
    labels.insert(
        TARGET_MANIFEST_DIGEST_LABEL.to_owned(),
        manifest.digest.to_string(),
    );
    let mut layers = String::new();
    for above in manifest.layers[index..]
        .iter()
        .filter(|l| media_types::is_layer(&l.media_type))
    {
        let separator = if layers.is_empty() { "" } else { "," };
        let longer = format!("{layers}{separator}{}", above.digest);
        // The list stops where it would outgrow a label; a snapshotter
        // missing some only prefetches less.
        if crated_core::labels::validate(TARGET_IMAGE_LAYERS_LABEL, &longer).is_err() {
            break;
        }
        layers = longer;
    }
    labels.insert(TARGET_IMAGE_LAYERS_LABEL.to_owned(), layers);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::digest::Digest;
    use crated_core::images::walk::Node;

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    fn node(media_type: &str, n: u32) -> Node {
        Node {
            media_type: media_type.to_owned(),
            digest: Digest::sha256(&n.to_le_bytes()),
            size: 1,
            platform: None,
        }
    }

    fn manifest(layers: usize) -> Manifest {
        let layers: Vec<Node> = (0..layers as u32).map(|n| node(LAYER, n)).collect();
        Manifest {
            digest: Digest::sha256(b"manifest"),
            config: node("application/vnd.oci.image.config.v1+json", 999),
            layer_annotations: vec![Default::default(); layers.len()],
            layers,
        }
    }

    #[test]
    fn each_layer_names_itself_its_image_and_the_layers_above_it() {
        let m = manifest(3);
        let labels = layer_labels(&m, 1, Some("registry.example/app:1"));
        assert_eq!(labels[TARGET_REF_LABEL], "registry.example/app:1");
        assert_eq!(
            labels[TARGET_LAYER_DIGEST_LABEL],
            m.layers[1].digest.as_str()
        );
        assert_eq!(labels[TARGET_MANIFEST_DIGEST_LABEL], m.digest.as_str());
        assert_eq!(
            labels[TARGET_IMAGE_LAYERS_LABEL],
            format!("{},{}", m.layers[1].digest, m.layers[2].digest)
        );
        assert_eq!(labels.len(), 4);
    }

    #[test]
    fn without_a_reference_only_the_inherited_annotations_pass() {
        let mut m = manifest(1);
        m.layer_annotations[0] = [
            ("containerd.io/snapshot/stargz/toc.digest", "sha256:toc"),
            ("io.containers.estargz.uncompressed-size", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let labels = layer_labels(&m, 0, None);
        assert_eq!(
            labels.keys().collect::<Vec<_>>(),
            ["containerd.io/snapshot/stargz/toc.digest"]
        );
        let with = layer_labels(&m, 0, Some("r/i:t"));
        assert_eq!(
            with["containerd.io/snapshot/stargz/toc.digest"],
            "sha256:toc"
        );
        assert_eq!(with.len(), 5);
    }

    #[test]
    fn the_layer_list_stops_before_it_outgrows_a_label() {
        let m = manifest(100);
        let labels = layer_labels(&m, 0, Some("r/i:t"));
        let listed = &labels[TARGET_IMAGE_LAYERS_LABEL];
        assert!(crated_core::labels::validate(TARGET_IMAGE_LAYERS_LABEL, listed).is_ok());
        let count = listed.split(',').count();
        assert!(count > 10 && count < 100, "{count} digests listed");
        // Whole digests only, bottom first.
        assert!(listed.starts_with(m.layers[0].digest.as_str()));
        assert!(listed
            .split(',')
            .zip(&m.layers)
            .all(|(d, l)| d == l.digest.as_str()));
    }
}
