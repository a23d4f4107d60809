//! `PodSandboxStats` and `ListPodSandboxStats`: a pod's CPU, memory and
//! process count as the sum of its containers' (the pause container
//! included), its network counters from its namespace's `/proc/<pid>/net/dev`,
//! and each container's own stats.
//!
//! containerd reads the pod-level cgroup instead; summing the containers
//! gives the same figures for pods whose cgroups hold only their
//! containers (which is what the kubelet makes) and also works for pods
//! run without a cgroup parent, as critest and crictl run them.

use std::sync::Arc;

use crated_core::Result;

use crate::container::now_nanos;
use crate::runtime::v1 as pb;
use crate::sandbox::{Sandbox, SandboxState};
use crate::Cri;

fn value(v: u64) -> Option<pb::UInt64Value> {
    Some(pb::UInt64Value { value: v })
}

/// The interfaces of a `/proc/<pid>/net/dev` table, each with its
/// counters: two header lines, then "  name: rx_bytes rx_packets rx_errs
/// rx_drop … (8 receive columns) tx_bytes tx_packets tx_errs tx_drop …".
/// A line too short to hold the transmit counters is skipped.
pub(crate) fn net_dev(table: &str) -> Vec<(&str, Vec<u64>)> {
    table
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap_or(0))
                .collect();
            (n.len() >= 12).then(|| (name.trim(), n))
        })
        .collect()
}

/// The counters of each interface out of a `/proc/<pid>/net/dev` table.
fn interfaces(table: &str) -> Vec<pb::NetworkInterfaceUsage> {
    net_dev(table)
        .into_iter()
        .map(|(name, n)| pb::NetworkInterfaceUsage {
            name: name.to_owned(),
            rx_bytes: value(n[0]),
            rx_errors: value(n[2]),
            tx_bytes: value(n[8]),
            tx_errors: value(n[10]),
        })
        .collect()
}

/// Adds `b` to `a` for every figure both have.
fn add(a: &mut Option<pb::UInt64Value>, b: &Option<pb::UInt64Value>) {
    if let Some(b) = b {
        let sum = a.as_ref().map_or(0, |a| a.value).saturating_add(b.value);
        *a = value(sum);
    }
}

impl Cri {
    /// The stats of `sandbox`; `None` figures while it is not ready.
    async fn sandbox_stats_of(&self, sandbox: &Arc<Sandbox>) -> Result<pb::PodSandboxStats> {
        let timestamp = now_nanos();
        let mut linux = pb::LinuxPodSandboxStats::default();
        let mut cpu = pb::CpuUsage {
            timestamp,
            ..Default::default()
        };
        let mut memory = pb::MemoryUsage {
            timestamp,
            ..Default::default()
        };
        let mut processes = 0u64;
        let mut measured = false;
        let mut measured_ids = Vec::new();
        for container in self.containers_of(&sandbox.id) {
            let stats = match self.stats_of(&container).await {
                Ok(stats) => stats,
                // Going away as we look: left out, as ListContainerStats does.
                Err(e) => {
                    tracing::debug!(id = container.id, error = %e, "container stats");
                    continue;
                }
            };
            if let Some(c) = &stats.cpu {
                add(&mut cpu.usage_core_nano_seconds, &c.usage_core_nano_seconds);
                add(&mut cpu.usage_nano_cores, &c.usage_nano_cores);
                measured = true;
            }
            if let Some(m) = &stats.memory {
                add(&mut memory.working_set_bytes, &m.working_set_bytes);
                add(&mut memory.usage_bytes, &m.usage_bytes);
                add(&mut memory.rss_bytes, &m.rss_bytes);
                add(&mut memory.page_faults, &m.page_faults);
                add(&mut memory.major_page_faults, &m.major_page_faults);
            }
            measured_ids.push(container.id.clone());
            linux.containers.push(stats);
        }
        if sandbox.state() == SandboxState::Ready {
            if let Some(task) = self.load_task(&sandbox.id).await? {
                // Every process of the pod: the pause process and each
                // container's.
                processes += 1;
                for id in &measured_ids {
                    if let Ok(Some(task)) = self.load_task(id).await {
                        processes += task.pids().await.map_or(0, |p| p.len() as u64);
                    }
                }
                linux.process = Some(pb::ProcessUsage {
                    timestamp,
                    process_count: value(processes),
                });
                if sandbox.metadata.netns.is_some() {
                    let path = format!("/proc/{}/net/dev", task.pid());
                    if let Ok(table) = tokio::fs::read_to_string(&path).await {
                        let interfaces: Vec<_> = interfaces(&table)
                            .into_iter()
                            .filter(|i| i.name != "lo")
                            .collect();
                        linux.network = Some(pb::NetworkUsage {
                            timestamp,
                            default_interface: interfaces
                                .iter()
                                .find(|i| i.name == crate::cni::DEFAULT_IFNAME)
                                .cloned(),
                            interfaces,
                        });
                    }
                }
            }
        }
        if measured {
            linux.cpu = Some(cpu);
            linux.memory = Some(memory);
        }
        Ok(pb::PodSandboxStats {
            attributes: Some(pb::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: sandbox.config.metadata.clone(),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(linux),
            windows: None,
        })
    }

    /// `PodSandboxStats`.
    pub(crate) async fn pod_sandbox_stats(&self, id: &str) -> Result<pb::PodSandboxStats> {
        let sandbox = self.sandboxes.get(id)?;
        self.sandbox_stats_of(&sandbox).await
    }

    /// `ListPodSandboxStats`: every sandbox the filter selects (id prefix,
    /// labels).
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        filter: Option<pb::PodSandboxStatsFilter>,
    ) -> Result<Vec<pb::PodSandboxStats>> {
        let mut out = Vec::new();
        for sandbox in self.sandboxes.all() {
            if let Some(f) = &filter {
                let keep = (f.id.is_empty() || sandbox.id.starts_with(&f.id))
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| sandbox.config.labels.get(k) == Some(v));
                if !keep {
                    continue;
                }
            }
            match self.sandbox_stats_of(&sandbox).await {
                Ok(s) => out.push(s),
                Err(e) => tracing::debug!(id = sandbox.id, error = %e, "pod sandbox stats"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_is_read() {
        let table = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
eth0:    5000      40    2    0    0     0          0         0     7000      50    3    0    0     0       0          0\n";
        let i = interfaces(table);
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].name, "eth0");
        assert_eq!(i[1].rx_bytes, value(5000));
        assert_eq!(i[1].rx_errors, value(2));
        assert_eq!(i[1].tx_bytes, value(7000));
        assert_eq!(i[1].tx_errors, value(3));
    }
}
