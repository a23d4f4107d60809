//! Conversions between wire types and `crated-core` types.
//!
//! Types several services and the runtime share (mounts, descriptors,
//! `Any`, timestamps, processes) live here; a service adapter that maps a
//! record only it serves keeps that mapping next to itself.

use std::time::SystemTime;

use crated_core::descriptor::{Any, Descriptor};
use crated_core::digest::Digest;
use crated_core::mount::Mount;
use crated_core::platforms::Platform;
use crated_core::tasks::{Exit, Process, ProcessInfo, Status, Stdio};
use crated_core::Result;

use crate::containerd::types;
use crate::containerd::v1::types as task_types;

/// An `Any` as its wire message.
pub fn any_to_pb(any: Any) -> prost_types::Any {
    prost_types::Any {
        type_url: any.type_url,
        value: any.value,
    }
}

/// A wire `Any` as the core type.
pub fn any_from_pb(any: prost_types::Any) -> Any {
    Any {
        type_url: any.type_url,
        value: any.value,
    }
}

/// An optional wire `Any`; one with neither a type nor a value is none
/// (Go clients send an empty message for "no options").
pub fn optional_any(any: Option<prost_types::Any>) -> Option<Any> {
    any.filter(|a| !a.type_url.is_empty() || !a.value.is_empty())
        .map(any_from_pb)
}

/// A mount as its wire message.
pub fn mount_to_pb(m: Mount) -> types::Mount {
    types::Mount {
        r#type: m.r#type,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

/// A wire mount as the core type.
pub fn mount_from_pb(m: types::Mount) -> Mount {
    Mount {
        r#type: m.r#type,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

/// A descriptor as its wire message.
pub fn descriptor_to_pb(d: Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type,
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        annotations: d.annotations.into_iter().collect(),
    }
}

/// A wire descriptor as the core type; the digest must parse and the size
/// must not be negative.
pub fn descriptor_from_pb(d: types::Descriptor) -> Result<Descriptor> {
    Ok(Descriptor {
        digest: Digest::parse(&d.digest).map_err(|e| e.context("Target.Digest"))?,
        size: u64::try_from(d.size).map_err(|_| crate::error::Error::Negative {
            field: "Target.Size".into(),
            value: d.size,
        })?,
        media_type: d.media_type,
        annotations: d.annotations.into_iter().collect(),
    })
}

/// A process status as its wire value.
pub fn status_to_pb(status: Status) -> task_types::Status {
    match status {
        Status::Unknown => task_types::Status::Unknown,
        Status::Created => task_types::Status::Created,
        Status::Running => task_types::Status::Running,
        Status::Stopped => task_types::Status::Stopped,
        Status::Paused => task_types::Status::Paused,
        Status::Pausing => task_types::Status::Pausing,
    }
}

/// A wire status as the core type; values this version does not know are
/// unknown.
pub fn status_from_pb(status: i32) -> Status {
    match task_types::Status::try_from(status) {
        Ok(task_types::Status::Created) => Status::Created,
        Ok(task_types::Status::Running) => Status::Running,
        Ok(task_types::Status::Stopped) => Status::Stopped,
        Ok(task_types::Status::Paused) => Status::Paused,
        Ok(task_types::Status::Pausing) => Status::Pausing,
        _ => Status::Unknown,
    }
}

/// A process as its wire message.
pub fn process_to_pb(p: Process) -> task_types::Process {
    task_types::Process {
        container_id: p.container_id,
        id: p.id,
        pid: p.pid,
        status: status_to_pb(p.status) as i32,
        stdin: p.stdio.stdin,
        stdout: p.stdio.stdout,
        stderr: p.stdio.stderr,
        terminal: p.terminal,
        exit_status: p.exit_status,
        exited_at: p.exited_at.map(to_timestamp),
    }
}

/// A wire process as the core type.
pub fn process_from_pb(p: task_types::Process) -> Process {
    Process {
        container_id: p.container_id,
        id: p.id,
        pid: p.pid,
        status: status_from_pb(p.status),
        stdio: Stdio {
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
        },
        terminal: p.terminal,
        exit_status: p.exit_status,
        exited_at: p.exited_at.as_ref().map(to_system_time),
    }
}

/// A process's pid and details as their wire message.
pub fn process_info_to_pb(p: ProcessInfo) -> task_types::ProcessInfo {
    task_types::ProcessInfo {
        pid: p.pid,
        info: p.info.map(any_to_pb),
    }
}

/// A wire process info as the core type.
pub fn process_info_from_pb(p: task_types::ProcessInfo) -> ProcessInfo {
    ProcessInfo {
        pid: p.pid,
        info: p.info.map(any_from_pb),
    }
}

/// An exit from its wire parts.
pub fn exit_from_pb(pid: u32, exit_status: u32, exited_at: Option<prost_types::Timestamp>) -> Exit {
    Exit {
        pid,
        exit_status,
        exited_at: exited_at.as_ref().map(to_system_time),
    }
}

/// The wire timestamp of an optional time.
pub fn optional_timestamp(time: Option<SystemTime>) -> Option<prost_types::Timestamp> {
    time.map(to_timestamp)
}

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
