//! `Stats`: the container's cgroup figures as containerd's shim returns
//! them, `io.containerd.cgroups.v1.Metrics` on a cgroup v1 host (cgroupfs
//! paths from the spec's `cgroupsPath`), `v2.Metrics` on a unified one.

use std::path::{Path, PathBuf};

use crated_api::cgroups::{v1, v2};
use crated_core::{Error, Result};
use prost::Message as _;

const ROOT: &str = "/sys/fs/cgroup";

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A number, with `max` (no limit) as `u64::MAX`.
fn number(path: &Path) -> u64 {
    match read(path).as_deref() {
        Some("max") => u64::MAX,
        Some(v) => v.parse().unwrap_or(0),
        None => 0,
    }
}

/// `key value` lines.
fn keyed(path: &Path, key: &str) -> u64 {
    read(path)
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The container's metrics as an Any, or NotImplemented for a cgroup path
/// we cannot place (the systemd driver's `slice:prefix:name`).
pub fn collect(cgroups_path: &str) -> Result<prost_types::Any> {
    if cgroups_path.is_empty() || cgroups_path.contains(':') {
        return Err(Error::not_implemented(format!(
            "stats for cgroup path {cgroups_path:?} are not built yet in this shim"
        )));
    }
    let rel = cgroups_path.trim_start_matches('/');
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        let dir = PathBuf::from(ROOT).join(rel);
        let m = v2::Metrics {
            pids: Some(v2::PidsStat {
                current: number(&dir.join("pids.current")),
                limit: number(&dir.join("pids.max")),
            }),
            cpu: Some(v2::CpuStat {
                usage_usec: keyed(&dir.join("cpu.stat"), "usage_usec"),
                user_usec: keyed(&dir.join("cpu.stat"), "user_usec"),
                system_usec: keyed(&dir.join("cpu.stat"), "system_usec"),
                nr_periods: keyed(&dir.join("cpu.stat"), "nr_periods"),
                nr_throttled: keyed(&dir.join("cpu.stat"), "nr_throttled"),
                throttled_usec: keyed(&dir.join("cpu.stat"), "throttled_usec"),
            }),
            memory: Some(v2::MemoryStat {
                usage: number(&dir.join("memory.current")),
                usage_limit: number(&dir.join("memory.max")),
                swap_usage: number(&dir.join("memory.swap.current")),
                swap_limit: number(&dir.join("memory.swap.max")),
                ..Default::default()
            }),
            ..Default::default()
        };
        return Ok(prost_types::Any {
            type_url: "io.containerd.cgroups.v2.Metrics".to_owned(),
            value: m.encode_to_vec(),
        });
    }
    let at =
        |controller: &str, file: &str| PathBuf::from(ROOT).join(controller).join(rel).join(file);
    if !PathBuf::from(ROOT).join("memory").join(rel).exists() {
        return Err(Error::not_found(format!(
            "cgroup {cgroups_path:?} not found"
        )));
    }
    let per_cpu: Vec<u64> = read(&at("cpuacct", "cpuacct.usage_percpu"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // cpuacct.stat counts USER_HZ ticks; containerd reports nanoseconds.
    let tick = 1_000_000_000 / 100;
    let m = v1::Metrics {
        pids: Some(v1::PidsStat {
            current: number(&at("pids", "pids.current")),
            limit: match read(&at("pids", "pids.max")).as_deref() {
                Some("max") | None => 0,
                Some(v) => v.parse().unwrap_or(0),
            },
        }),
        cpu: Some(v1::CpuStat {
            usage: Some(v1::CpuUsage {
                total: number(&at("cpuacct", "cpuacct.usage")),
                kernel: keyed(&at("cpuacct", "cpuacct.stat"), "system") * tick,
                user: keyed(&at("cpuacct", "cpuacct.stat"), "user") * tick,
                per_cpu,
            }),
            throttling: None,
        }),
        memory: Some(v1::MemoryStat {
            total_cache: keyed(&at("memory", "memory.stat"), "total_cache"),
            usage: Some(v1::MemoryEntry {
                limit: number(&at("memory", "memory.limit_in_bytes")),
                usage: number(&at("memory", "memory.usage_in_bytes")),
                max: number(&at("memory", "memory.max_usage_in_bytes")),
                failcnt: number(&at("memory", "memory.failcnt")),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(prost_types::Any {
        type_url: "io.containerd.cgroups.v1.Metrics".to_owned(),
        value: m.encode_to_vec(),
    })
}
