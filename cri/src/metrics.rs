//! `ListMetricDescriptors`, `ListPodSandboxMetrics` and
//! `StreamPodSandboxMetrics`: the cAdvisor-style metrics the kubelet
//! serves on `/metrics/cadvisor` when it takes them from the runtime (its
//! `PodAndContainerStatsFromCRI` gate). Each metric's label values match
//! its descriptor's keys one for one (the kubelet builds its Prometheus
//! descriptions from them and drops a metric whose values do not fit):
//! `container`, `id`, `image`, `name`, `namespace`, `pod` as cAdvisor
//! names them, then the metric's own (`interface`).
//!
//! Per container, from its cgroup (the shim's metrics, cgroup v1 or v2):
//! CPU time (total, user, system; seconds, whole), CFS periods and
//! throttling, memory usage, working set, RSS, cache, mapped files, swap,
//! failures to stay under the limit and the highest usage (v1), its
//! processes; from its record: its start time, CPU and memory limits;
//! its writable layer's size. Per pod, from its network namespace: bytes,
//! packets, drops and errors received and sent, per interface.

use std::sync::Arc;

use crated_api::cgroups::{v1, v2};
use crated_core::{Error, Result};
use prost::Message as _;

use crate::container::{now_nanos, CriContainer};
use crate::runtime::v1 as pb;
use crate::sandbox::{Sandbox, SandboxState};
use crate::Cri;

/// The labels of every metric, in this order.
const LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];

/// A metric crated reports: its name, help, type and labels past
/// [`LABELS`].
struct Def {
    name: &'static str,
    help: &'static str,
    counter: bool,
    extra: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str) -> Def {
    Def {
        name,
        help,
        counter: true,
        extra: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Def {
    Def {
        name,
        help,
        counter: false,
        extra: &[],
    }
}

const fn network(name: &'static str, help: &'static str) -> Def {
    Def {
        name,
        help,
        counter: true,
        extra: &["interface"],
    }
}

const DEFS: &[Def] = &[
    counter(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
    ),
    counter(
        "container_cpu_user_seconds_total",
        "Cumulative user CPU time consumed in seconds.",
    ),
    counter(
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
    ),
    counter(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
    ),
    counter(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
    ),
    counter(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
    ),
    gauge(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
    ),
    gauge(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
    ),
    gauge("container_memory_rss", "Size of RSS in bytes."),
    gauge(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
    ),
    gauge(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
    ),
    gauge("container_memory_swap", "Container swap usage in bytes."),
    counter(
        "container_memory_failcnt",
        "Number of memory usage hits limits (cgroup v1).",
    ),
    gauge(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes (cgroup v1).",
    ),
    gauge(
        "container_processes",
        "Number of processes and threads running inside the container.",
    ),
    gauge(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
    ),
    gauge(
        "container_last_seen",
        "Last time the container was seen by the runtime, in seconds since the epoch.",
    ),
    gauge("container_spec_cpu_period", "CPU period of the container."),
    gauge("container_spec_cpu_quota", "CPU quota of the container."),
    gauge("container_spec_cpu_shares", "CPU share of the container."),
    gauge(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
    ),
    gauge(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
    ),
    gauge(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container's writable layer.",
    ),
    network(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
    ),
    network(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
    ),
    network(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
    ),
    network(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
    ),
    network(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
    ),
    network(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
    ),
    network(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
    ),
    network(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
    ),
];

/// `ListMetricDescriptors`: every metric [`Cri::pod_sandbox_metrics`]
/// may report.
pub(crate) fn descriptors() -> Vec<pb::MetricDescriptor> {
    DEFS.iter()
        .map(|d| pb::MetricDescriptor {
            name: d.name.to_owned(),
            help: d.help.to_owned(),
            label_keys: LABELS
                .iter()
                .chain(d.extra)
                .map(|k| (*k).to_owned())
                .collect(),
        })
        .collect()
}

/// Metrics of one subject (a container, or a pod's network) at one time.
struct Collector<'a> {
    labels: &'a [String],
    timestamp: i64,
    out: Vec<pb::Metric>,
}

impl Collector<'_> {
    fn push(&mut self, name: &str, value: u64, extra: &[&str]) {
        let Some(def) = DEFS.iter().find(|d| d.name == name) else {
            return;
        };
        debug_assert_eq!(def.extra.len(), extra.len(), "{name}");
        self.out.push(pb::Metric {
            name: name.to_owned(),
            timestamp: self.timestamp,
            metric_type: if def.counter {
                pb::MetricType::Counter
            } else {
                pb::MetricType::Gauge
            } as i32,
            label_values: self
                .labels
                .iter()
                .cloned()
                .chain(extra.iter().map(|e| (*e).to_owned()))
                .collect(),
            value: Some(pb::UInt64Value { value }),
        });
    }

    /// The cgroup figures of `data` (cgroup v1 or v2 metrics).
    fn cgroup(&mut self, data: &crated_core::descriptor::Any) -> Result<()> {
        let bad = |e: prost::DecodeError| Error::unknown(format!("decode {}: {e}", data.type_url));
        const NS: u64 = 1_000_000_000;
        const US: u64 = 1_000_000;
        if data.type_url.ends_with("cgroups.v1.Metrics") {
            let m = v1::Metrics::decode(data.value.as_slice()).map_err(bad)?;
            if let Some(cpu) = m.cpu {
                let usage = cpu.usage.unwrap_or_default();
                self.push("container_cpu_usage_seconds_total", usage.total / NS, &[]);
                self.push("container_cpu_user_seconds_total", usage.user / NS, &[]);
                self.push("container_cpu_system_seconds_total", usage.kernel / NS, &[]);
                let t = cpu.throttling.unwrap_or_default();
                self.push("container_cpu_cfs_periods_total", t.periods, &[]);
                self.push(
                    "container_cpu_cfs_throttled_periods_total",
                    t.throttled_periods,
                    &[],
                );
                self.push(
                    "container_cpu_cfs_throttled_seconds_total",
                    t.throttled_time / NS,
                    &[],
                );
            }
            if let Some(memory) = m.memory {
                let usage = memory.usage.unwrap_or_default();
                self.push("container_memory_usage_bytes", usage.usage, &[]);
                self.push(
                    "container_memory_working_set_bytes",
                    crate::stats::working_set(usage.usage, memory.total_inactive_file),
                    &[],
                );
                self.push("container_memory_rss", memory.total_rss, &[]);
                self.push("container_memory_cache", memory.total_cache, &[]);
                self.push(
                    "container_memory_mapped_file",
                    memory.total_mapped_file,
                    &[],
                );
                if let Some(swap) = memory.swap {
                    // memsw counts memory and swap together.
                    self.push(
                        "container_memory_swap",
                        swap.usage.saturating_sub(usage.usage),
                        &[],
                    );
                }
                self.push("container_memory_failcnt", usage.failcnt, &[]);
                self.push("container_memory_max_usage_bytes", usage.max, &[]);
            }
            if let Some(pids) = m.pids {
                self.push("container_processes", pids.current, &[]);
            }
            return Ok(());
        }
        if data.type_url.ends_with("cgroups.v2.Metrics") {
            let m = v2::Metrics::decode(data.value.as_slice()).map_err(bad)?;
            if let Some(cpu) = m.cpu {
                self.push(
                    "container_cpu_usage_seconds_total",
                    cpu.usage_usec / US,
                    &[],
                );
                self.push("container_cpu_user_seconds_total", cpu.user_usec / US, &[]);
                self.push(
                    "container_cpu_system_seconds_total",
                    cpu.system_usec / US,
                    &[],
                );
                self.push("container_cpu_cfs_periods_total", cpu.nr_periods, &[]);
                self.push(
                    "container_cpu_cfs_throttled_periods_total",
                    cpu.nr_throttled,
                    &[],
                );
                self.push(
                    "container_cpu_cfs_throttled_seconds_total",
                    cpu.throttled_usec / US,
                    &[],
                );
            }
            if let Some(memory) = m.memory {
                self.push("container_memory_usage_bytes", memory.usage, &[]);
                self.push(
                    "container_memory_working_set_bytes",
                    crate::stats::working_set(memory.usage, memory.inactive_file),
                    &[],
                );
                self.push("container_memory_rss", memory.anon, &[]);
                self.push("container_memory_cache", memory.file, &[]);
                self.push("container_memory_mapped_file", memory.file_mapped, &[]);
                self.push("container_memory_swap", memory.swap_usage, &[]);
            }
            if let Some(pids) = m.pids {
                self.push("container_processes", pids.current, &[]);
            }
            return Ok(());
        }
        Err(Error::not_implemented(format!(
            "container metrics of type {:?} are not understood",
            data.type_url
        )))
    }

    /// The counters of each interface of a `/proc/net/dev` table but `lo`.
    fn net_dev(&mut self, table: &str) {
        // Receive: bytes packets errs drop …; transmit (from the 9th
        // column): bytes packets errs drop ….
        const COLUMNS: &[(usize, &str)] = &[
            (0, "container_network_receive_bytes_total"),
            (1, "container_network_receive_packets_total"),
            (2, "container_network_receive_errors_total"),
            (3, "container_network_receive_packets_dropped_total"),
            (8, "container_network_transmit_bytes_total"),
            (9, "container_network_transmit_packets_total"),
            (10, "container_network_transmit_errors_total"),
            (11, "container_network_transmit_packets_dropped_total"),
        ];
        for (name, values) in crate::sandbox_stats::net_dev(table) {
            if name == "lo" {
                continue;
            }
            for (column, metric) in COLUMNS {
                self.push(metric, values[*column], &[name]);
            }
        }
    }
}

impl Cri {
    /// The metrics of every ready pod and its containers. A pod or
    /// container going away as it is read is left out.
    pub(crate) async fn pod_sandbox_metrics(&self) -> Vec<pb::PodSandboxMetrics> {
        let images = match self.images.snapshot().await {
            Ok(images) => images,
            Err(e) => {
                tracing::warn!(error = %e, "list images for pod metrics");
                crate::images::Snapshot::default()
            }
        };
        let mut out = Vec::new();
        for sandbox in self.sandboxes.all() {
            if sandbox.state() != SandboxState::Ready {
                continue;
            }
            let mut pod = pb::PodSandboxMetrics {
                pod_sandbox_id: sandbox.id.clone(),
                metrics: self.network_metrics(&sandbox).await,
                container_metrics: Vec::new(),
            };
            for container in self.containers_of(&sandbox.id) {
                match self.container_metrics(&sandbox, &container, &images).await {
                    Ok(metrics) => pod.container_metrics.push(metrics),
                    Err(e) => tracing::debug!(id = container.id, error = %e, "container metrics"),
                }
            }
            out.push(pod);
        }
        out
    }

    /// The labels of a container's metrics (or, with `None`, of the pod's
    /// own), in [`LABELS`] order.
    fn metric_labels(sandbox: &Sandbox, container: Option<(&CriContainer, String)>) -> Vec<String> {
        let meta = sandbox.config.metadata.clone().unwrap_or_default();
        let (container_name, id, image, name) = match container {
            Some((c, image)) => (
                c.config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                c.id.clone(),
                image,
                c.metadata.name.clone(),
            ),
            // cAdvisor reports a pod's network on its pause container.
            None => (
                "POD".to_owned(),
                sandbox.id.clone(),
                String::new(),
                sandbox.metadata.name.clone(),
            ),
        };
        vec![container_name, id, image, name, meta.namespace, meta.name]
    }

    /// The pod's network counters, read in its network namespace.
    async fn network_metrics(&self, sandbox: &Arc<Sandbox>) -> Vec<pb::Metric> {
        if sandbox.metadata.netns.is_none() {
            return Vec::new();
        }
        let Ok(Some(task)) = self.load_task(&sandbox.id).await else {
            return Vec::new();
        };
        let path = format!("/proc/{}/net/dev", task.pid());
        let Ok(table) = tokio::fs::read_to_string(&path).await else {
            return Vec::new();
        };
        let labels = Self::metric_labels(sandbox, None);
        let mut collector = Collector {
            labels: &labels,
            timestamp: now_nanos(),
            out: Vec::new(),
        };
        collector.net_dev(&table);
        collector.out
    }

    async fn container_metrics(
        &self,
        sandbox: &Sandbox,
        container: &Arc<CriContainer>,
        images: &crate::images::Snapshot,
    ) -> Result<pb::ContainerMetrics> {
        let image = images
            .get(&container.metadata.image_ref)
            .and_then(|i| i.repo_tags.first().cloned())
            .unwrap_or_else(|| container.metadata.image_ref.clone());
        let labels = Self::metric_labels(sandbox, Some((container, image)));
        let mut collector = Collector {
            labels: &labels,
            timestamp: now_nanos(),
            out: Vec::new(),
        };
        if let Some(task) = self.load_task(&container.id).await? {
            match task.metrics().await {
                Ok(metric) => {
                    collector.timestamp = crate::container::nanos(metric.timestamp);
                    if let Some(data) = &metric.data {
                        collector.cgroup(data)?;
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let status = container.status();
        if status.started_at > 0 {
            collector.push(
                "container_start_time_seconds",
                (status.started_at / 1_000_000_000) as u64,
                &[],
            );
        }
        collector.push(
            "container_last_seen",
            (now_nanos() / 1_000_000_000) as u64,
            &[],
        );
        if let Some(linux) = status.resources() {
            let positive = |v: i64| u64::try_from(v).ok().filter(|v| *v > 0);
            for (name, value) in [
                ("container_spec_cpu_period", positive(linux.cpu_period)),
                ("container_spec_cpu_quota", positive(linux.cpu_quota)),
                ("container_spec_cpu_shares", positive(linux.cpu_shares)),
                (
                    "container_spec_memory_limit_bytes",
                    positive(linux.memory_limit_in_bytes),
                ),
                (
                    "container_spec_memory_swap_limit_bytes",
                    positive(linux.memory_swap_limit_in_bytes),
                ),
            ] {
                if let Some(value) = value {
                    collector.push(name, value, &[]);
                }
            }
        }
        if let Ok(layer) = self.writable_layer(container).await {
            if let Some(used) = layer.used_bytes {
                collector.push("container_fs_usage_bytes", used.value, &[]);
            }
        }
        Ok(pb::ContainerMetrics {
            container_id: container.id.clone(),
            metrics: collector.out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_descriptor_whose_keys_fit_its_values() {
        let labels: Vec<String> = LABELS.iter().map(|l| l.to_string()).collect();
        let mut c = Collector {
            labels: &labels,
            timestamp: 1,
            out: Vec::new(),
        };
        let v1 = v1::Metrics {
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage {
                    total: 3_500_000_000,
                    kernel: 1_000_000_000,
                    user: 2_500_000_000,
                    per_cpu: vec![],
                }),
                throttling: Some(v1::Throttle {
                    periods: 10,
                    throttled_periods: 2,
                    throttled_time: 4_000_000_000,
                }),
            }),
            memory: Some(v1::MemoryStat {
                total_inactive_file: 100,
                total_rss: 300,
                usage: Some(v1::MemoryEntry {
                    usage: 1000,
                    max: 2000,
                    failcnt: 1,
                    limit: 4096,
                }),
                ..Default::default()
            }),
            pids: Some(v1::PidsStat {
                current: 3,
                limit: 0,
            }),
            ..Default::default()
        };
        c.cgroup(&crated_core::descriptor::Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value: v1.encode_to_vec(),
        })
        .unwrap();
        c.net_dev(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:  100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  \
             eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n",
        );
        let descriptors = descriptors();
        let value = |name: &str, extra: &[&str]| {
            c.out
                .iter()
                .find(|m| {
                    m.name == name
                        && m.label_values
                            .ends_with(&extra.iter().map(|e| e.to_string()).collect::<Vec<_>>())
                })
                .and_then(|m| m.value.as_ref())
                .map(|v| v.value)
        };
        assert_eq!(value("container_cpu_usage_seconds_total", &[]), Some(3));
        assert_eq!(value("container_cpu_user_seconds_total", &[]), Some(2));
        assert_eq!(
            value("container_cpu_cfs_throttled_seconds_total", &[]),
            Some(4)
        );
        assert_eq!(value("container_memory_working_set_bytes", &[]), Some(900));
        assert_eq!(value("container_memory_max_usage_bytes", &[]), Some(2000));
        assert_eq!(value("container_processes", &[]), Some(3));
        assert_eq!(
            value("container_network_receive_packets_dropped_total", &["eth0"]),
            Some(2)
        );
        assert_eq!(
            value("container_network_transmit_errors_total", &["eth0"]),
            Some(3)
        );
        assert!(!c
            .out
            .iter()
            .any(|m| m.label_values.last().is_some_and(|l| l == "lo")));
        for metric in &c.out {
            let d = descriptors
                .iter()
                .find(|d| d.name == metric.name)
                .unwrap_or_else(|| panic!("no descriptor for {}", metric.name));
            assert_eq!(
                d.label_keys.len(),
                metric.label_values.len(),
                "{}",
                metric.name
            );
        }
        let mut names: Vec<&str> = DEFS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFS.len(), "names are unique");
    }
}
