use serde_json::json;

use super::*;

fn node(media_type: &str) -> Node {
    Node {
        media_type: media_type.to_owned(),
        digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
        size: 1,
        platform: None,
    }
}

#[test]
fn a_manifest_posing_as_an_index_is_refused() {
    let index = node(media_types::OCI_INDEX);
    let manifest = json!({"config": {}, "layers": []});
    let err = check_kind(&index, &manifest).unwrap_err();
    assert!(err.message().contains("expected index but found manifest"));
    let docker = node(media_types::DOCKER_MANIFEST);
    let err = check_kind(&docker, &json!({"manifests": []})).unwrap_err();
    assert!(err.message().contains("expected manifest but found index"));
    let err = check_kind(&docker, &json!({"fsLayers": []})).unwrap_err();
    assert!(err.message().contains("schema 1"));
    check_kind(&docker, &json!({"config": {}, "layers": []})).unwrap();
}

#[test]
fn descriptors_keep_platform_and_reject_missing_fields() {
    let parent = node(media_types::OCI_INDEX);
    let digest = format!("sha256:{}", "b".repeat(64));
    let child = parse_node(
        &parent,
        &json!({
            "mediaType": media_types::OCI_MANIFEST,
            "digest": digest,
            "size": 7,
            "platform": {"os": "linux", "architecture": "arm", "variant": "v7",
                         "os.features": ["f"]},
        }),
    )
    .unwrap();
    assert_eq!(child.size, 7);
    let platform = child.platform.unwrap();
    assert_eq!(format(&platform), "linux/arm/v7");
    assert_eq!(platform.os_features, ["f"]);

    let err = parse_node(&parent, &json!({"digest": digest})).unwrap_err();
    assert!(err.message().contains("no integer size"), "{err}");
    let err = parse_node(&parent, &json!({"digest": "sha256:zz", "size": 1})).unwrap_err();
    assert!(err.message().contains("invalid digest"), "{err}");
}

#[test]
fn platform_column_is_sorted_and_distinct() {
    let p = |os: &str, arch: &str| Platform::new(os, arch);
    let column = platforms_column(&[
        p("linux", "arm64"),
        p("linux", "amd64"),
        p("linux", "arm64"),
    ]);
    assert_eq!(column, "linux/amd64,linux/arm64");
    assert_eq!(platforms_column(&[]), "-");
}

#[test]
fn layers_are_told_from_other_blobs() {
    for layer in [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar+encrypted",
    ] {
        assert!(media_types::is_layer(layer), "{layer}");
    }
    for other in [
        media_types::OCI_CONFIG,
        media_types::DOCKER_MANIFEST,
        "text/plain",
    ] {
        assert!(!media_types::is_layer(other), "{other}");
    }
}
