//! A CNI runtime (the CNI spec's side that containerd's go-cni and libcni
//! play): network configuration lists loaded from a directory, plugins run
//! for ADD, CHECK and DEL with the pod's capability arguments, results
//! chained from plugin to plugin and cached so DEL gets what ADD gave,
//! also after a daemon restart.

mod cache;
mod config;
mod result;
pub mod template;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crated_core::child::Failure;
use crated_core::Result;
use serde_json::{json, Map, Value};

pub use config::NetworkList;
pub use result::{go_cni_json, pod_ips, Interface, IpConfig, NetResult};

/// What the networks of pod `id` gave it, from the result cache under
/// `cache_dir` (so also for a pod set up before a daemon restart):
/// loopback first, then by interface name (`eth0`, `net1`, …), the order
/// they were attached in.
pub fn cached_results(cache_dir: &Path, id: &str) -> Result<Vec<NetResult>> {
    let mut results: Vec<NetResult> = cache::results_of(cache_dir, id)?
        .into_iter()
        .filter_map(|(network, ifname, raw)| NetResult::parse(&network, &ifname, raw).ok())
        .collect();
    results.sort_by(|a, b| {
        (a.ifname != "lo", a.ifname.len(), &a.ifname).cmp(&(
            b.ifname != "lo",
            b.ifname.len(),
            &b.ifname,
        ))
    });
    Ok(results)
}

use crate::error::Error;

/// The interface name of a pod's (first) network.
pub const DEFAULT_IFNAME: &str = "eth0";

/// How long one plugin may take for one command.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A port mapping protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One host port mapped into the pod (the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The node's port.
    pub host_port: u16,
    /// The pod's port.
    pub container_port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// The node address it is bound to; all when `None`.
    pub host_ip: Option<IpAddr>,
}

/// Traffic shaping in bits per second (the `bandwidth` capability).
#[derive(Debug, Clone, Default)]
pub struct BandwidthLimits {
    /// Into the pod.
    pub ingress_rate: u64,
    /// Its burst.
    pub ingress_burst: u64,
    /// Out of the pod.
    pub egress_rate: u64,
    /// Its burst.
    pub egress_burst: u64,
}

/// The pod's DNS settings (the `dns` capability).
#[derive(Debug, Clone, Default)]
pub struct DnsCapability {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// What the plugins are told about one pod.
#[derive(Debug, Clone, Default)]
pub struct PodNetwork {
    /// The sandbox id (`CNI_CONTAINERID`).
    pub id: String,
    /// The pod's name.
    pub name: String,
    /// Its Kubernetes namespace.
    pub namespace: String,
    /// Its uid.
    pub uid: String,
    /// Its network namespace; `None` once it is gone (DEL still runs).
    pub netns_path: Option<PathBuf>,
    /// Host ports.
    pub port_mappings: Vec<PortMapping>,
    /// Traffic shaping.
    pub bandwidth: Option<BandwidthLimits>,
    /// DNS.
    pub dns: Option<DnsCapability>,
    /// Subnets to allocate from (the pod CIDR), for `ipRanges`.
    pub ip_ranges: Vec<String>,
    /// The pod's annotations.
    pub annotations: HashMap<String, String>,
}

impl PodNetwork {
    /// `CNI_ARGS`, as the kubelet's and containerd's CRI pass them.
    fn cni_args(&self) -> Vec<(String, String)> {
        vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), self.namespace.clone()),
            ("K8S_POD_NAME".into(), self.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), self.id.clone()),
            ("K8S_POD_UID".into(), self.uid.clone()),
        ]
    }

    /// The runtime's side of every capability it can fill.
    fn capability_args(&self) -> Map<String, Value> {
        let mut caps = Map::new();
        if !self.port_mappings.is_empty() {
            let mappings: Vec<Value> = self
                .port_mappings
                .iter()
                .map(|m| {
                    let mut v = json!({
                        "hostPort": m.host_port,
                        "containerPort": m.container_port,
                        "protocol": m.protocol.name(),
                    });
                    if let Some(ip) = m.host_ip {
                        v["hostIP"] = json!(ip.to_string());
                    }
                    v
                })
                .collect();
            caps.insert("portMappings".into(), json!(mappings));
        }
        if let Some(b) = &self.bandwidth {
            caps.insert(
                "bandwidth".into(),
                json!({
                    "ingressRate": b.ingress_rate,
                    "ingressBurst": b.ingress_burst,
                    "egressRate": b.egress_rate,
                    "egressBurst": b.egress_burst,
                }),
            );
        }
        if let Some(d) = &self.dns {
            caps.insert(
                "dns".into(),
                json!({"servers": d.servers, "searches": d.searches, "options": d.options}),
            );
        }
        if !self.ip_ranges.is_empty() {
            let ranges: Vec<Value> = self
                .ip_ranges
                .iter()
                .map(|subnet| json!([{ "subnet": subnet }]))
                .collect();
            caps.insert("ipRanges".into(), json!(ranges));
        }
        caps.insert(
            "io.kubernetes.cri.pod-annotations".into(),
            json!(self.annotations),
        );
        caps
    }
}

/// One network attached to pods, as which interface.
#[derive(Debug, Clone)]
struct Attachment {
    list: NetworkList,
    ifname: String,
}

/// The node's CNI networks.
#[derive(Debug, Clone)]
pub struct Cni {
    networks: Vec<Attachment>,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
}

/// The CNI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Add,
    Check,
    Del,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

impl Cni {
    /// Loads the first `max_conf_num` (at least one) network
    /// configurations in `conf_dir`, in file-name order among `*.conf`,
    /// `*.conflist` and `*.json`; `None` when there is none (or no
    /// directory). Plugins are looked for in `bin_dirs`, results cached in
    /// `cache_dir`.
    pub fn load(
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
        max_conf_num: usize,
    ) -> Result<Option<Cni>> {
        let lists = config::load_dir(conf_dir, max_conf_num.max(1))?;
        if lists.is_empty() {
            return Ok(None);
        }
        let networks = lists
            .into_iter()
            .enumerate()
            .map(|(i, list)| Attachment {
                list,
                ifname: format!("eth{i}"),
            })
            .collect();
        Ok(Some(Cni {
            networks,
            bin_dirs: bin_dirs.to_vec(),
            cache_dir: cache_dir.to_owned(),
        }))
    }

    /// Adds the loopback network, attached first as `lo`, as containerd's
    /// CRI does: a pod's `lo` is up before its own network is set up.
    pub fn with_loopback(mut self) -> Self {
        self.networks.insert(
            0,
            Attachment {
                list: NetworkList::loopback(),
                ifname: "lo".into(),
            },
        );
        self
    }

    /// The name of the node's (first non-loopback) network.
    pub fn name(&self) -> &str {
        self.networks
            .iter()
            .find(|n| n.ifname != "lo")
            .map_or("", |n| n.list.name.as_str())
    }

    /// ADD on every network in turn; on failure, DEL of what was added
    /// and the error.
    pub async fn setup(&self, pod: &PodNetwork) -> Result<Vec<NetResult>> {
        let mut results = Vec::new();
        for (done, network) in self.networks.iter().enumerate() {
            match self.add(network, pod).await {
                Ok(result) => results.push(result),
                Err(e) => {
                    for undo in self.networks[..=done].iter().rev() {
                        if let Err(del) = self.del(undo, pod).await {
                            tracing::warn!(id = pod.id, network = undo.list.name, error = %del, "undo CNI ADD");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(results)
    }

    /// CHECK on every network whose version has it (0.4.0 and later).
    pub async fn check(&self, pod: &PodNetwork) -> Result<()> {
        for network in &self.networks {
            if !network.list.supports_check() {
                continue;
            }
            let prev = self.cached_result(network, pod)?;
            for plugin in &network.list.plugins {
                self.exec(Command::Check, network, plugin, pod, prev.as_ref())
                    .await?;
            }
        }
        Ok(())
    }

    /// DEL on every network, last first. Idempotent: a pod torn down
    /// already, one whose namespace is gone, or one set up by an earlier
    /// daemon (the cache keeps ADD's result) tears down cleanly.
    pub async fn teardown(&self, pod: &PodNetwork) -> Result<()> {
        for network in self.networks.iter().rev() {
            self.del(network, pod).await?;
        }
        Ok(())
    }

    async fn add(&self, network: &Attachment, pod: &PodNetwork) -> Result<NetResult> {
        let mut prev: Option<Value> = None;
        for plugin in &network.list.plugins {
            let out = self
                .exec(Command::Add, network, plugin, pod, prev.as_ref())
                .await?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| Error::CniResult {
                plugin: config::plugin_type(plugin).to_owned(),
                command: "ADD",
                message: format!("{e}: {}", String::from_utf8_lossy(&out)),
            })?;
            prev = Some(result);
        }
        let raw = prev.unwrap_or_else(|| json!({"cniVersion": network.list.cni_version}));
        let result =
            NetResult::parse(&network.list.name, &network.ifname, raw).map_err(|message| {
                Error::CniResult {
                    plugin: network.list.name.clone(),
                    command: "ADD",
                    message,
                }
            })?;
        cache::write(
            &self.cache_dir,
            &cache::Entry {
                container_id: pod.id.clone(),
                network_name: network.list.name.clone(),
                ifname: network.ifname.clone(),
                config: network.list.bytes.clone(),
                cni_args: pod.cni_args(),
                capability_args: Value::Object(pod.capability_args()),
                result: result.raw.clone(),
            },
        )?;
        Ok(result)
    }

    async fn del(&self, network: &Attachment, pod: &PodNetwork) -> Result<()> {
        let prev = self.cached_result(network, pod)?;
        // Every plugin gets its DEL even when one before it failed, so one
        // broken plugin does not strand what the others hold (addresses,
        // host ports); the first failure is the answer, and the cache entry
        // stays for the retry.
        let mut first_error = None;
        for plugin in network.list.plugins.iter().rev() {
            if let Err(e) = self
                .exec(Command::Del, network, plugin, pod, prev.as_ref())
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => cache::remove(
                &self.cache_dir,
                &network.list.name,
                &pod.id,
                &network.ifname,
            ),
        }
    }

    /// What ADD gave for `pod` on `network`, from the cache.
    fn cached_result(&self, network: &Attachment, pod: &PodNetwork) -> Result<Option<Value>> {
        let cached = cache::read(
            &self.cache_dir,
            &network.list.name,
            &pod.id,
            &network.ifname,
        )?;
        Ok(cached.map(|c| c.result))
    }

    fn find_plugin(&self, kind: &str) -> Result<PathBuf> {
        // A type is a file name, never a path.
        if !kind.contains('/') && !kind.is_empty() && kind != "." && kind != ".." {
            for dir in &self.bin_dirs {
                let path = dir.join(kind);
                if path.is_file() {
                    return Ok(path);
                }
            }
        }
        Err(Error::CniPluginNotFound {
            plugin: kind.to_owned(),
            dirs: self.bin_dirs.clone(),
        }
        .into())
    }

    /// Runs one plugin of `network` for `command`; its stdout.
    async fn exec(
        &self,
        command: Command,
        network: &Attachment,
        plugin: &Map<String, Value>,
        pod: &PodNetwork,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>> {
        let kind = config::plugin_type(plugin).to_owned();
        let binary = self.find_plugin(&kind)?;
        let stdin = network
            .list
            .plugin_config(plugin, prev, &pod.capability_args());
        let stdin = serde_json::to_vec(&stdin).map_err(|e| Error::CniResult {
            plugin: kind.clone(),
            command: command.name(),
            message: format!("encode its config: {e}"),
        })?;
        let args = pod
            .cni_args()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let cni_path = std::env::join_paths(&self.bin_dirs).map_err(|e| Error::CniExec {
            plugin: kind.clone(),
            command: command.name(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let exec_error = |source| Error::CniExec {
            plugin: kind.clone(),
            command: command.name(),
            source,
        };
        let mut cmd = std::process::Command::new(&binary);
        cmd.env("CNI_COMMAND", command.name())
            .env("CNI_CONTAINERID", &pod.id)
            .env(
                "CNI_NETNS",
                pod.netns_path.as_deref().unwrap_or(Path::new("")),
            )
            .env("CNI_IFNAME", &network.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", cni_path);
        let output = match crated_core::child::output(&mut cmd, Some(&stdin), PLUGIN_TIMEOUT).await
        {
            Ok(output) => output,
            Err(Failure::Io(e)) => return Err(exec_error(e).into()),
            Err(Failure::TimedOut) => {
                return Err(Error::CniTimeout {
                    plugin: kind.clone(),
                    command: command.name(),
                    seconds: PLUGIN_TIMEOUT.as_secs(),
                }
                .into())
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        // The spec's error: {"code", "msg", "details"} on stdout.
        let reported: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        let msg = reported
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "{}; {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            });
        Err(Error::CniPlugin {
            plugin: kind,
            command: command.name(),
            code: reported.get("code").and_then(Value::as_u64).unwrap_or(0),
            msg,
            details: reported
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
        .into())
    }
}
