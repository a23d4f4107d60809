//! critest's images: every reference critest pulls is built, each config
//! says what the specs check (users, commands), and they reach a loopback
//! registry under their upstream paths; the compiled stand-ins work.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

fn config_of(image: &crated_testimages::Image) -> serde_json::Value {
    let config = image
        .blobs
        .iter()
        .find(|b| b.media_type.contains("config"))
        .unwrap();
    serde_json::from_slice(&config.data).unwrap()
}

#[test]
fn every_image_critest_pulls_is_built_as_the_specs_expect() {
    let images = crated_testimages::critest_images().unwrap();
    let names: BTreeSet<&str> = images.iter().map(|i| i.name).collect();
    assert_eq!(names.len(), images.len(), "one entry per reference");
    for wanted in [
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        "registry.k8s.io/e2e-test-images/nginx:1.14-2",
        "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
        "registry.k8s.io/e2e-test-images/nonewprivs:1.3",
        "registry.k8s.io/pause:3.9",
        "k8s.gcr.io/pause:3.9",
        "gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
        "gcr.io/k8s-staging-cri-tools/test-image-tags:3",
    ] {
        assert!(names.contains(wanted), "{wanted} missing");
    }
    let by_name = |n: &str| &images.iter().find(|i| i.name == n).unwrap().image;
    let user = |n: &str| config_of(by_name(n))["config"]["User"].clone();
    let staging = "gcr.io/k8s-staging-cri-tools/";
    assert_eq!(
        user(&format!("{staging}test-image-user-uid:latest")),
        "1002"
    );
    assert_eq!(
        user(&format!("{staging}test-image-user-username-group:latest")),
        "www-data:1004"
    );
    assert_eq!(
        user(&format!("{staging}test-image-predefined-group:latest")),
        "1000"
    );
    // Tags of one image share it; distinct test images differ.
    let digest = |n: &str| by_name(n).root.digest.clone();
    assert_eq!(
        digest(&format!("{staging}test-image-tags:1")),
        digest(&format!("{staging}test-image-tags:3"))
    );
    assert_ne!(
        digest(&format!("{staging}test-image-1:latest")),
        digest(&format!("{staging}test-image-2:latest"))
    );
    assert_eq!(
        digest("registry.k8s.io/pause:3.9"),
        digest("k8s.gcr.io/pause:3.9")
    );
}

#[test]
fn mirror_hosts_send_every_registry_to_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    crated_testimages::write_mirror_hosts(dir.path(), "127.0.0.1:5999").unwrap();
    for registry in crated_testimages::MIRRORED_REGISTRIES {
        let text = std::fs::read_to_string(dir.path().join(registry).join("hosts.toml")).unwrap();
        assert!(
            text.contains("server = \"http://127.0.0.1:5999\""),
            "{text}"
        );
        assert!(!text.contains(registry), "{text}");
    }
}

#[tokio::test]
async fn the_images_reach_a_loopback_registry_under_their_upstream_paths() {
    let registry = tokio::task::spawn_blocking(|| crated_testimages::Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    crated_testimages::push_critest_images(&registry)
        .await
        .unwrap();
    let catalog = {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&registry.host).unwrap();
        write!(
            stream,
            "GET /v2/_catalog?n=100 HTTP/1.0\r\nHost: {}\r\n\r\n",
            registry.host
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    for repo in [
        "e2e-test-images/busybox",
        "e2e-test-images/nginx",
        "k8s-staging-cri-tools/test-image-tags",
        "pause",
    ] {
        assert!(
            catalog.contains(&format!("\"{repo}\"")),
            "{repo} not in {catalog}"
        );
    }
}
