//! The OCI documents the client writes (indexes, Docker manifests), with
//! fields in the order containerd's Go structs marshal them, so the same
//! content gets the same digest whichever client wrote it.

use std::collections::BTreeMap;

use crated_core::descriptor::Descriptor;
use crated_core::platforms::Platform;
use serde::{Deserialize, Serialize};

/// An OCI descriptor (`ocispec.Descriptor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciDescriptor {
    /// Media type.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
}

/// An OCI platform (`ocispec.Platform`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    /// OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl From<&Platform> for OciPlatform {
    fn from(p: &Platform) -> Self {
        Self {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            os_version: p.os_version.clone(),
            os_features: p.os_features.clone(),
            variant: p.variant.clone(),
        }
    }
}

impl OciDescriptor {
    /// `desc` as an index entry, with `platform` if given.
    pub fn new(desc: &Descriptor, platform: Option<OciPlatform>) -> Self {
        Self {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: desc.size,
            annotations: desc.annotations.clone(),
            platform,
        }
    }

    /// This host's platform, as containerd's client tags checkpoint parts.
    pub fn host_platform() -> OciPlatform {
        let p = crated_core::platforms::default_platform();
        OciPlatform {
            architecture: p.architecture,
            os: p.os,
            os_version: String::new(),
            os_features: Vec::new(),
            variant: String::new(),
        }
    }

    /// Back to a core descriptor (the platform is dropped).
    pub fn descriptor(&self) -> crated_core::Result<Descriptor> {
        Ok(Descriptor {
            media_type: self.media_type.clone(),
            digest: crated_core::digest::Digest::parse(&self.digest)?,
            size: self.size,
            annotations: self.annotations.clone(),
        })
    }
}

/// An OCI index (`ocispec.Index`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type (containerd leaves it out).
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<OciDescriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl OciIndex {
    /// An index of `manifests`.
    pub fn new(manifests: Vec<OciDescriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: String::new(),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// Its JSON, as Go's `json.Marshal`.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serialising strings, numbers and maps of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A Docker image manifest (schema 2), as containerd's importer makes one
/// for each image of a `docker save` archive.
#[derive(Debug, Clone, Serialize)]
pub struct DockerManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The Docker manifest media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The image config.
    pub config: OciDescriptor,
    /// The layers, bottom first.
    pub layers: Vec<OciDescriptor>,
}

/// An entry of Docker's `manifest.json` (`docker save`, and the one an
/// export adds for `docker load`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerSaveEntry {
    /// The config's path in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// The image's names (`busybox:latest`).
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layers' paths, bottom first.
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}
