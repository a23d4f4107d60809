//! Conversions between wire types and `crated-core` types.
//!
//! Only types with a `core` counterpart live here; a service adapter that
//! maps a record to its response message keeps that mapping next to itself.

use crated_core::platforms::Platform;

use crate::containerd::types;

impl From<Platform> for types::Platform {
    fn from(p: Platform) -> Self {
        // The 1.6/1.7 wire platform has no os.version or os.features.
        Self {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
        }
    }
}

impl From<types::Platform> for Platform {
    fn from(p: types::Platform) -> Self {
        Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
            os_version: String::new(),
            os_features: Vec::new(),
        }
    }
}

/// A protobuf timestamp as a `SystemTime`; out-of-range values saturate.
pub fn to_system_time(ts: &prost_types::Timestamp) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    let nanos = u32::try_from(ts.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    match u64::try_from(ts.seconds) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
        Err(_) => UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH),
    }
}

/// A `SystemTime` as a protobuf timestamp.
pub fn to_timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_round_trip() {
        let core = crated_core::platforms::parse("linux/arm/v7").unwrap();
        let wire: types::Platform = core.clone().into();
        assert_eq!(
            (
                wire.os.as_str(),
                wire.architecture.as_str(),
                wire.variant.as_str()
            ),
            ("linux", "arm", "v7")
        );
        assert_eq!(Platform::from(wire), core);
    }

    #[test]
    fn timestamps_round_trip() {
        let now = std::time::SystemTime::now();
        assert_eq!(to_system_time(&to_timestamp(now)), now);
    }
}
