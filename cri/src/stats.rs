//! `ContainerStats` and `ListContainerStats`: a running container's CPU
//! and memory from its cgroup (the runc shim's metrics) and its writable
//! layer's disk use.

use std::sync::Arc;

use crated_api::cgroups::{v1, v2};
use crated_core::{Error, Result};
use prost::Message as _;

use crate::container::{nanos, CriContainer};
use crate::runtime::v1 as pb;
use crate::Cri;

fn value(v: u64) -> Option<pb::UInt64Value> {
    Some(pb::UInt64Value { value: v })
}

/// CPU and memory figures out of a cgroup metrics message.
struct Figures {
    cpu_total_ns: u64,
    usage: u64,
    working_set: u64,
    available: u64,
    rss: u64,
    page_faults: u64,
    major_page_faults: u64,
    swap_usage: Option<u64>,
    swap_available: Option<u64>,
}

/// What the kernel reports as the memory that cannot be reclaimed:
/// usage less the inactive file cache (kubelet's working set).
pub(crate) fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

fn figures(data: &crated_core::descriptor::Any) -> Result<Figures> {
    let bad = |e: prost::DecodeError| Error::unknown(format!("decode {}: {e}", data.type_url));
    if data.type_url.ends_with("cgroups.v1.Metrics") {
        let m = v1::Metrics::decode(data.value.as_slice()).map_err(bad)?;
        let cpu = m.cpu.and_then(|c| c.usage).map(|u| u.total).unwrap_or(0);
        let memory = m.memory.unwrap_or_default();
        let usage = memory.usage.as_ref().map(|u| u.usage).unwrap_or(0);
        let limit = memory.usage.as_ref().map(|u| u.limit).unwrap_or(0);
        let ws = working_set(usage, memory.total_inactive_file);
        let swap = memory.swap.as_ref();
        return Ok(Figures {
            cpu_total_ns: cpu,
            usage,
            working_set: ws,
            available: limit.saturating_sub(ws),
            rss: memory.total_rss,
            page_faults: memory.total_pg_fault,
            major_page_faults: memory.total_pg_maj_fault,
            swap_usage: swap.map(|s| s.usage.saturating_sub(usage)),
            swap_available: swap.map(|s| s.limit.saturating_sub(s.usage)),
        });
    }
    if data.type_url.ends_with("cgroups.v2.Metrics") {
        let m = v2::Metrics::decode(data.value.as_slice()).map_err(bad)?;
        let cpu = m
            .cpu
            .map(|c| c.usage_usec.saturating_mul(1000))
            .unwrap_or(0);
        let memory = m.memory.unwrap_or_default();
        let ws = working_set(memory.usage, memory.inactive_file);
        return Ok(Figures {
            cpu_total_ns: cpu,
            usage: memory.usage,
            working_set: ws,
            available: memory.usage_limit.saturating_sub(ws),
            rss: memory.anon,
            page_faults: memory.pgfault,
            major_page_faults: memory.pgmajfault,
            swap_usage: Some(memory.swap_usage),
            swap_available: Some(memory.swap_limit.saturating_sub(memory.swap_usage)),
        });
    }
    Err(Error::not_implemented(format!(
        "container metrics of type {:?} are not understood",
        data.type_url
    )))
}

impl Cri {
    /// The stats of one container: attributes always; CPU and memory
    /// while its task runs; its writable layer's usage.
    pub(crate) async fn stats_of(
        &self,
        container: &Arc<CriContainer>,
    ) -> Result<pb::ContainerStats> {
        let mut stats = pb::ContainerStats {
            attributes: Some(container.attributes()),
            ..Default::default()
        };
        if let Some(task) = self.load_task(&container.id).await? {
            match task.metrics().await {
                Ok(metric) => {
                    let timestamp = nanos(metric.timestamp);
                    if let Some(data) = &metric.data {
                        let f = figures(data)?;
                        let nano_cores = {
                            let mut last = container
                                .cpu_sample
                                .lock()
                                .unwrap_or_else(|p| p.into_inner());
                            let rate = last.and_then(|(t, total)| {
                                let elapsed =
                                    u64::try_from(timestamp - t).ok().filter(|e| *e > 0)?;
                                let used = f.cpu_total_ns.checked_sub(total)?;
                                Some(
                                    (u128::from(used) * 1_000_000_000 / u128::from(elapsed)) as u64,
                                )
                            });
                            *last = Some((timestamp, f.cpu_total_ns));
                            rate
                        };
                        stats.cpu = Some(pb::CpuUsage {
                            timestamp,
                            usage_core_nano_seconds: value(f.cpu_total_ns),
                            usage_nano_cores: nano_cores.and_then(value),
                            psi: None,
                        });
                        stats.memory = Some(pb::MemoryUsage {
                            timestamp,
                            working_set_bytes: value(f.working_set),
                            available_bytes: value(f.available),
                            usage_bytes: value(f.usage),
                            rss_bytes: value(f.rss),
                            page_faults: value(f.page_faults),
                            major_page_faults: value(f.major_page_faults),
                            psi: None,
                        });
                        if let (Some(usage), Some(available)) = (f.swap_usage, f.swap_available) {
                            stats.swap = Some(pb::SwapUsage {
                                timestamp,
                                swap_available_bytes: value(available),
                                swap_usage_bytes: value(usage),
                            });
                        }
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        stats.writable_layer = self.writable_layer(container).await.ok();
        Ok(stats)
    }

    /// The container's writable layer (its active snapshot, keyed by its
    /// id, in its pod's snapshotter) as last measured.
    pub(crate) async fn writable_layer(
        &self,
        container: &CriContainer,
    ) -> Result<pb::FilesystemUsage> {
        let snapshotter = &self.snapshotter_of_pod(&container.metadata.sandbox_id);
        let sn = self.client.snapshotter(snapshotter, None)?;
        let measured = self
            .layer_usage
            .of(snapshotter)
            .active(sn.as_ref(), &container.id)
            .await?;
        let mountpoint = self.snapshotter_root(snapshotter).await.unwrap_or_default();
        Ok(crate::filesystem_usage(mountpoint, measured))
    }

    /// `ContainerStats`.
    pub(crate) async fn container_stats(&self, id: &str) -> Result<pb::ContainerStats> {
        let container = self.containers.get(id)?;
        self.stats_of(&container).await
    }

    /// `ListContainerStats`: every container the filter selects; one whose
    /// stats cannot be read is left out (it is going away).
    pub(crate) async fn list_container_stats(
        &self,
        filter: Option<pb::ContainerStatsFilter>,
    ) -> Result<Vec<pb::ContainerStats>> {
        let mut out = Vec::new();
        for c in self.containers.all() {
            if let Some(f) = &filter {
                let keep = (f.id.is_empty() || c.id.starts_with(&f.id))
                    && (f.pod_sandbox_id.is_empty()
                        || c.metadata.sandbox_id.starts_with(&f.pod_sandbox_id))
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| c.config.labels.get(k) == Some(v));
                if !keep {
                    continue;
                }
            }
            match self.stats_of(&c).await {
                Ok(s) => out.push(s),
                Err(e) => tracing::debug!(id = c.id, error = %e, "container stats"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_either_cgroup_version() {
        let m = v1::Metrics {
            memory: Some(v1::MemoryStat {
                usage: Some(v1::MemoryEntry {
                    limit: 1000,
                    usage: 600,
                    ..Default::default()
                }),
                total_inactive_file: 100,
                total_rss: 300,
                ..Default::default()
            }),
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage {
                    total: 42,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let any = crated_core::descriptor::Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value: m.encode_to_vec(),
        };
        let f = figures(&any).unwrap();
        assert_eq!(
            (f.cpu_total_ns, f.usage, f.working_set, f.available, f.rss),
            (42, 600, 500, 500, 300)
        );
        let m = v2::Metrics {
            cpu: Some(v2::CpuStat {
                usage_usec: 5,
                ..Default::default()
            }),
            memory: Some(v2::MemoryStat {
                usage: 50,
                inactive_file: 10,
                usage_limit: 100,
                ..Default::default()
            }),
            ..Default::default()
        };
        let any = crated_core::descriptor::Any {
            type_url: "io.containerd.cgroups.v2.Metrics".into(),
            value: m.encode_to_vec(),
        };
        let f = figures(&any).unwrap();
        assert_eq!((f.cpu_total_ns, f.working_set, f.available), (5000, 40, 60));
        let odd = crated_core::descriptor::Any {
            type_url: "x".into(),
            value: vec![],
        };
        assert!(figures(&odd).is_err());
    }
}
