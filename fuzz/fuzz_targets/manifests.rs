//! Manifest and index JSON as a registry serves it: its children are read
//! or the document is refused, never a panic.
#![no_main]

use crated_core::digest::Digest;
use crated_core::images::walk::{parse_children, Node};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for media_type in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        let node = Node {
            media_type: media_type.to_owned(),
            digest: Digest::sha256(data),
            size: data.len() as i64,
            platform: None,
        };
        if let Ok(children) = parse_children(&node, data) {
            for child in children {
                let _ = child.digest.to_string();
            }
        }
    }
});
