//! OCI descriptors and protobuf `Any` values, as stored in records.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::{Error, Result};

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// containerd's check of an image target: a media type and a size.
    pub fn validate_target(&self) -> Result<()> {
        if self.size == 0 {
            return Err(Error::invalid_argument(
                "Target.Size must be greater than zero",
            ));
        }
        if self.media_type.is_empty() {
            return Err(Error::invalid_argument("Target.MediaType must be set"));
        }
        Ok(())
    }
}

/// An encoded protobuf message with its type (`google.protobuf.Any`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Any {
    /// The type URL, e.g. `types.containerd.io/opencontainers/runtime-spec/1/Spec`.
    pub type_url: String,
    /// The encoded value.
    pub value: Vec<u8>,
}
