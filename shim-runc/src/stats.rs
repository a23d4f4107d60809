//! `Stats`: the container's cgroup figures as containerd's shim returns
//! them, `io.containerd.cgroups.v1.Metrics` on a cgroup v1 host,
//! `v2.Metrics` on a unified one, from the cgroup its init runs in
//! (`cgroup`), whichever driver placed it.
//!
//! Every sub-message containerd's shim fills is filled here too, zero when
//! the host lacks its files: clients dereference them without checking (a
//! Docker engine's stats collector crashes on an absent CPU throttling).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crated_api::cgroups::{v1, v2};
use prost::Message as _;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::CGROUP_ROOT as ROOT;

/// Where the kernel lists the huge page sizes it supports.
const HUGEPAGES: &str = "/sys/kernel/mm/hugepages";

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

/// The `key value` lines of a file (`memory.stat`, `cpu.stat`, …).
fn keyed_all(path: &Path) -> HashMap<String, u64> {
    read(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let (key, value) = l.split_once(' ')?;
                    Some((key.to_owned(), value.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The metrics of the container in `cgroup` (its spec's `cgroups_path`
/// names it in errors) as an Any; NotFound when the cgroup is not known
/// or gone.
pub fn collect(cgroup: &Cgroup, cgroups_path: &str) -> Result<prost_types::Any> {
    let root = Path::new(ROOT);
    let gone = || Error::CgroupNotFound {
        cgroups_path: cgroup.describe(),
    };
    // Memory's directory stands for all: runc makes them together.
    let Some(memory) = cgroup.dir(root, "memory") else {
        return Err(Error::CgroupUnknown {
            cgroups_path: cgroups_path.to_owned(),
        });
    };
    if !memory.exists() {
        return Err(gone());
    }
    if let Cgroup::Unified(_) = cgroup {
        return Ok(prost_types::Any {
            type_url: "io.containerd.cgroups.v2.Metrics".to_owned(),
            value: unified(&memory).encode_to_vec(),
        });
    }
    let at = |controller: &str, file: &str| {
        cgroup
            .dir(root, controller)
            .unwrap_or_else(|| memory.clone())
            .join(file)
    };
    Ok(prost_types::Any {
        type_url: "io.containerd.cgroups.v1.Metrics".to_owned(),
        value: legacy(&at).encode_to_vec(),
    })
}

/// cgroup v1: `at(controller, file)` is the container's file of a
/// controller.
fn legacy(at: &dyn Fn(&str, &str) -> PathBuf) -> v1::Metrics {
    let per_cpu: Vec<u64> = read(&at("cpuacct", "cpuacct.usage_percpu"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // cpuacct.stat counts USER_HZ ticks; containerd reports nanoseconds.
    let tick = 1_000_000_000 / 100;
    let cpuacct = keyed_all(&at("cpuacct", "cpuacct.stat"));
    let throttling = keyed_all(&at("cpu", "cpu.stat"));
    let stat = keyed_all(&at("memory", "memory.stat"));
    let s = |key: &str| stat.get(key).copied().unwrap_or(0);
    // `memory.<module>.*` files; a module the kernel lacks (swap
    // accounting off, no kmem) reads as zero.
    let entry = |module: &str| {
        let file = |name: &str| at("memory", &format!("memory.{module}{name}"));
        Some(v1::MemoryEntry {
            limit: number(&file("limit_in_bytes")),
            usage: number(&file("usage_in_bytes")),
            max: number(&file("max_usage_in_bytes")),
            failcnt: number(&file("failcnt")),
        })
    };
    let oom = keyed_all(&at("memory", "memory.oom_control"));
    let o = |key: &str| oom.get(key).copied().unwrap_or(0);
    v1::Metrics {
        hugetlb: legacy_hugetlb(at),
        pids: Some(v1::PidsStat {
            current: number(&at("pids", "pids.current")),
            // containerd reports no limit as 0 on v1.
            limit: match read(&at("pids", "pids.max")).as_deref() {
                Some("max") | None => 0,
                Some(v) => v.parse().unwrap_or(0),
            },
        }),
        cpu: Some(v1::CpuStat {
            usage: Some(v1::CpuUsage {
                total: number(&at("cpuacct", "cpuacct.usage")),
                kernel: cpuacct.get("system").copied().unwrap_or(0) * tick,
                user: cpuacct.get("user").copied().unwrap_or(0) * tick,
                per_cpu,
            }),
            throttling: Some(v1::Throttle {
                periods: throttling.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: throttling.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: throttling.get("throttled_time").copied().unwrap_or(0),
            }),
        }),
        memory: Some(v1::MemoryStat {
            cache: s("cache"),
            rss: s("rss"),
            rss_huge: s("rss_huge"),
            mapped_file: s("mapped_file"),
            dirty: s("dirty"),
            writeback: s("writeback"),
            pg_pg_in: s("pgpgin"),
            pg_pg_out: s("pgpgout"),
            pg_fault: s("pgfault"),
            pg_maj_fault: s("pgmajfault"),
            inactive_anon: s("inactive_anon"),
            active_anon: s("active_anon"),
            inactive_file: s("inactive_file"),
            active_file: s("active_file"),
            unevictable: s("unevictable"),
            hierarchical_memory_limit: s("hierarchical_memory_limit"),
            hierarchical_swap_limit: s("hierarchical_memsw_limit"),
            total_cache: s("total_cache"),
            total_rss: s("total_rss"),
            total_rss_huge: s("total_rss_huge"),
            total_mapped_file: s("total_mapped_file"),
            total_dirty: s("total_dirty"),
            total_writeback: s("total_writeback"),
            total_pg_pg_in: s("total_pgpgin"),
            total_pg_pg_out: s("total_pgpgout"),
            total_pg_fault: s("total_pgfault"),
            total_pg_maj_fault: s("total_pgmajfault"),
            total_inactive_anon: s("total_inactive_anon"),
            total_active_anon: s("total_active_anon"),
            total_inactive_file: s("total_inactive_file"),
            total_active_file: s("total_active_file"),
            total_unevictable: s("total_unevictable"),
            usage: entry(""),
            swap: entry("memsw."),
            kernel: entry("kmem."),
            kernel_tcp: entry("kmem.tcp."),
        }),
        blkio: Some(blkio(at)),
        memory_oom_control: Some(v1::MemoryOomControl {
            oom_kill_disable: o("oom_kill_disable"),
            under_oom: o("under_oom"),
            oom_kill: o("oom_kill"),
        }),
        ..Default::default()
    }
}

/// The host's huge page sizes as containerd names them (`2MB`, `1GB`),
/// from `hugepages-<n>kB`.
fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(HUGEPAGES) else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(size_name(kb * 1024))
        })
        .collect();
    sizes.sort();
    sizes
}

/// `bytes` in the largest binary unit that leaves at least 1, as
/// containerd's (docker's `units.CustomSize`) page size names.
fn size_name(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size}{}", UNITS[unit])
}

/// One entry per huge page size of the host (zero where the hugetlb
/// controller is not mounted), as containerd's shim.
fn legacy_hugetlb(at: &dyn Fn(&str, &str) -> PathBuf) -> Vec<v1::HugetlbStat> {
    hugepage_sizes()
        .into_iter()
        .map(|size| {
            let file = |name: &str| at("hugetlb", &format!("hugetlb.{size}.{name}"));
            v1::HugetlbStat {
                usage: number(&file("usage_in_bytes")),
                max: number(&file("max_usage_in_bytes")),
                failcnt: number(&file("failcnt")),
                pagesize: size,
            }
        })
        .collect()
}

/// Block devices by `(major, minor)`, named `/dev/<name>` from
/// `/proc/partitions`.
fn devices() -> HashMap<(u64, u64), String> {
    let Some(text) = read(Path::new("/proc/partitions")) else {
        return HashMap::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (major, minor, name) = (fields.first()?, fields.get(1)?, fields.get(3)?);
            Some((
                (major.parse().ok()?, minor.parse().ok()?),
                format!("/dev/{name}"),
            ))
        })
        .collect()
}

/// The entries of a `blkio.<name>` file: `major:minor [op] value` lines
/// and a `Total` line, which is left out.
fn blkio_entries(path: &Path, devices: &HashMap<(u64, u64), String>) -> Vec<v1::BlkIoEntry> {
    let Some(text) = read(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
            let (major, minor, op, value) = match fields.as_slice() {
                [major, minor, value] => (major, minor, "", value),
                [major, minor, op, value] => (major, minor, *op, value),
                _ => return None,
            };
            let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
            Some(v1::BlkIoEntry {
                op: op.to_owned(),
                device: devices.get(&(major, minor)).cloned().unwrap_or_default(),
                major,
                minor,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Block I/O as containerd reads it: the CFQ scheduler's recursive files
/// where the kernel has them and they count anything, else the throttle
/// files (kept by every kernel whatever the scheduler).
fn blkio(at: &dyn Fn(&str, &str) -> PathBuf) -> v1::BlkIoStat {
    let devices = devices();
    let entries = |name: &str| blkio_entries(&at("blkio", &format!("blkio.{name}")), &devices);
    if at("blkio", "blkio.io_serviced_recursive").exists() {
        let stat = v1::BlkIoStat {
            io_service_bytes_recursive: entries("io_service_bytes_recursive"),
            io_serviced_recursive: entries("io_serviced_recursive"),
            io_queued_recursive: entries("io_queued_recursive"),
            io_service_time_recursive: entries("io_service_time_recursive"),
            io_wait_time_recursive: entries("io_wait_time_recursive"),
            io_merged_recursive: entries("io_merged_recursive"),
            io_time_recursive: entries("time_recursive"),
            sectors_recursive: entries("sectors_recursive"),
        };
        if stat != v1::BlkIoStat::default() {
            return stat;
        }
    }
    v1::BlkIoStat {
        io_service_bytes_recursive: entries("throttle.io_service_bytes"),
        io_serviced_recursive: entries("throttle.io_serviced"),
        ..Default::default()
    }
}

/// cgroup v2: `dir` is the container's cgroup.
fn unified(dir: &Path) -> v2::Metrics {
    let cpu = keyed_all(&dir.join("cpu.stat"));
    let c = |key: &str| cpu.get(key).copied().unwrap_or(0);
    let memory = keyed_all(&dir.join("memory.stat"));
    let m = |key: &str| memory.get(key).copied().unwrap_or(0);
    let events_file = dir.join("memory.events");
    let events = keyed_all(&events_file);
    let e = |key: &str| events.get(key).copied().unwrap_or(0);
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: number(&dir.join("pids.current")),
            limit: number(&dir.join("pids.max")),
        }),
        cpu: Some(v2::CpuStat {
            usage_usec: c("usage_usec"),
            user_usec: c("user_usec"),
            system_usec: c("system_usec"),
            nr_periods: c("nr_periods"),
            nr_throttled: c("nr_throttled"),
            throttled_usec: c("throttled_usec"),
        }),
        memory: Some(v2::MemoryStat {
            anon: m("anon"),
            file: m("file"),
            kernel_stack: m("kernel_stack"),
            slab: m("slab"),
            sock: m("sock"),
            shmem: m("shmem"),
            file_mapped: m("file_mapped"),
            file_dirty: m("file_dirty"),
            file_writeback: m("file_writeback"),
            anon_thp: m("anon_thp"),
            inactive_anon: m("inactive_anon"),
            active_anon: m("active_anon"),
            inactive_file: m("inactive_file"),
            active_file: m("active_file"),
            unevictable: m("unevictable"),
            slab_reclaimable: m("slab_reclaimable"),
            slab_unreclaimable: m("slab_unreclaimable"),
            pgfault: m("pgfault"),
            pgmajfault: m("pgmajfault"),
            workingset_refault: m("workingset_refault"),
            workingset_activate: m("workingset_activate"),
            workingset_nodereclaim: m("workingset_nodereclaim"),
            pgrefill: m("pgrefill"),
            pgscan: m("pgscan"),
            pgsteal: m("pgsteal"),
            pgactivate: m("pgactivate"),
            pgdeactivate: m("pgdeactivate"),
            pglazyfree: m("pglazyfree"),
            pglazyfreed: m("pglazyfreed"),
            thp_fault_alloc: m("thp_fault_alloc"),
            thp_collapse_alloc: m("thp_collapse_alloc"),
            usage: number(&dir.join("memory.current")),
            usage_limit: number(&dir.join("memory.max")),
            swap_usage: number(&dir.join("memory.swap.current")),
            swap_limit: number(&dir.join("memory.swap.max")),
        }),
        rdma: Some(v2::RdmaStat {
            current: rdma(&dir.join("rdma.current")),
            limit: rdma(&dir.join("rdma.max")),
        }),
        io: Some(v2::IoStat {
            usage: io(&dir.join("io.stat")),
        }),
        hugetlb: unified_hugetlb(dir),
        // containerd sends memory events only where the file exists.
        memory_events: events_file.exists().then(|| v2::MemoryEvents {
            low: e("low"),
            high: e("high"),
            max: e("max"),
            oom: e("oom"),
            oom_kill: e("oom_kill"),
        }),
    }
}

/// `io.stat`: `major:minor rbytes=… wbytes=… rios=… wios=…` lines.
fn io(path: &Path) -> Vec<v2::IoEntry> {
    let Some(text) = read(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut entry = v2::IoEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let Ok(value) = value.parse() else { continue };
                match key {
                    "rbytes" => entry.rbytes = value,
                    "wbytes" => entry.wbytes = value,
                    "rios" => entry.rios = value,
                    "wios" => entry.wios = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

/// `rdma.current` / `rdma.max`: `<device> hca_handle=<n> hca_object=<n>`.
fn rdma(path: &Path) -> Vec<v2::RdmaEntry> {
    let Some(text) = read(path) else {
        return Vec::new();
    };
    let count = |field: &str| match field.split_once('=').map(|(_, v)| v) {
        Some("max") => u32::MAX,
        Some(v) => v.parse().unwrap_or(0),
        None => 0,
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, a, b] = fields.as_slice() else {
                return None;
            };
            let mut entry = v2::RdmaEntry {
                device: (*device).to_owned(),
                ..Default::default()
            };
            for field in [a, b] {
                if field.starts_with("hca_handle=") {
                    entry.hca_handles = count(field);
                } else if field.starts_with("hca_object=") {
                    entry.hca_objects = count(field);
                }
            }
            Some(entry)
        })
        .collect()
}

/// `hugetlb.<size>.current` and `.max` of each page size.
fn unified_hugetlb(dir: &Path) -> Vec<v2::HugeTlbStat> {
    hugepage_sizes()
        .into_iter()
        .map(|size| v2::HugeTlbStat {
            current: number(&dir.join(format!("hugetlb.{size}.current"))),
            max: number(&dir.join(format!("hugetlb.{size}.max"))),
            pagesize: size,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_named_as_containerd_names_them() {
        assert_eq!(size_name(64 << 10), "64KB");
        assert_eq!(size_name(2 << 20), "2MB");
        assert_eq!(size_name(32 << 20), "32MB");
        assert_eq!(size_name(1 << 30), "1GB");
        assert_eq!(size_name(16 << 30), "16GB");
    }

    #[test]
    fn every_sub_message_is_there_when_no_file_is() {
        let empty = tempfile::tempdir().unwrap();
        let root = empty.path().to_owned();
        let at = move |controller: &str, file: &str| root.join(controller).join(file);
        let m = legacy(&at);
        let cpu = m.cpu.unwrap();
        assert!(cpu.usage.is_some() && cpu.throttling.is_some());
        let memory = m.memory.unwrap();
        assert!(memory.usage.is_some() && memory.swap.is_some());
        assert!(memory.kernel.is_some() && memory.kernel_tcp.is_some());
        assert!(m.blkio.is_some() && m.pids.is_some() && m.memory_oom_control.is_some());
        assert_eq!(m.hugetlb.len(), hugepage_sizes().len());
        let m = unified(empty.path());
        assert!(m.cpu.is_some() && m.memory.is_some() && m.pids.is_some() && m.io.is_some());
        assert!(m.memory_events.is_none());
    }

    #[test]
    fn blkio_lines_are_parsed_without_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blkio.throttle.io_serviced");
        std::fs::write(&file, "8:0 Read 12\n8:0 Write 3\n8:0 Total 15\nTotal 15\n").unwrap();
        let devices: HashMap<_, _> = [((8, 0), "/dev/sda".to_owned())].into();
        let entries = blkio_entries(&file, &devices);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].op, "Read");
        assert_eq!(entries[0].value, 12);
        assert_eq!(entries[0].device, "/dev/sda");
    }
}
