//! Pod networking: a network namespace per pod, set up and torn down by
//! the node's CNI configuration (the first in `conf_dir`, or in the
//! `cni_conf_dir` of the pod's runtime), as containerd's CRI does. The
//! configuration is read when a pod needs it, so a CNI config written
//! after the daemon started (as a network add-on does) is picked up
//! without a restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crated_core::{Error, Result};

use crate::cni::{
    pod_ips, BandwidthLimits, Cni, DnsCapability, PodNetwork, PortMapping, Protocol, DEFAULT_IFNAME,
};
use crate::config::CniConfig;
use crate::netns::NetNs;
use crate::runtime::v1 as pb;

/// What a pod's network came to.
#[derive(Debug, Clone, Default)]
pub struct PodNetworkState {
    /// Its network namespace (`None`: the node's).
    pub netns: Option<PathBuf>,
}

impl PodNetworkState {
    /// A pod on the node's network.
    pub fn host() -> Self {
        Self::default()
    }
}

/// Where CNI configurations are read from, and how many.
#[derive(Debug, Clone)]
struct Confs {
    dir: PathBuf,
    max: usize,
}

impl Confs {
    fn new(dir: &str, max: u32) -> Self {
        Self {
            dir: PathBuf::from(dir),
            max: usize::try_from(max).unwrap_or(1).max(1),
        }
    }
}

/// The CRI's pod networking.
pub struct Network {
    /// The node's (`cni.conf_dir`).
    confs: Confs,
    /// Those of runtimes with a `cni_conf_dir` of their own, by name.
    runtime_confs: HashMap<String, Confs>,
    bin_dirs: Vec<PathBuf>,
    /// libcni's result cache, kept across daemon restarts so DEL gets the
    /// result ADD gave.
    cache_dir: PathBuf,
    /// Where pods' network namespaces are bind-mounted.
    netns_dir: PathBuf,
    /// Which address of a dual-stack pod comes first.
    ip_pref: crate::config::IpPreference,
}

impl Network {
    /// Networking with `config` (and the runtimes' own `cni_conf_dir`s);
    /// results cached under `cache_dir`, namespaces under `netns_dir`.
    pub fn new(
        config: &CniConfig,
        runtimes: &std::collections::BTreeMap<String, crate::config::RuntimeConfig>,
        ip_pref: crate::config::IpPreference,
        cache_dir: PathBuf,
        netns_dir: PathBuf,
    ) -> Self {
        Self {
            confs: Confs::new(&config.conf_dir, config.max_conf_num),
            runtime_confs: runtimes
                .iter()
                .filter(|(_, r)| !r.cni_conf_dir.is_empty())
                .map(|(name, r)| {
                    (
                        name.clone(),
                        Confs::new(&r.cni_conf_dir, r.cni_max_conf_num),
                    )
                })
                .collect(),
            // containerd 1.7 takes a list here; a colon-separated value
            // reads the same in both.
            bin_dirs: config
                .bin_dir
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
            cache_dir,
            netns_dir,
            ip_pref,
        }
    }

    /// Where the pods of `runtime` (a runtime's name) get their network.
    fn confs(&self, runtime: &str) -> &Confs {
        self.runtime_confs.get(runtime).unwrap_or(&self.confs)
    }

    /// The CNI configuration of `runtime`'s pods, with the loopback
    /// network first.
    fn load(&self, runtime: &str) -> Result<Cni> {
        self.load_from(self.confs(runtime))
    }

    /// The CNI configuration in `confs`, with the loopback network first.
    fn load_from(&self, confs: &Confs) -> Result<Cni> {
        let cni = Cni::load(&confs.dir, &self.bin_dirs, &self.cache_dir, confs.max)?.ok_or_else(
            || {
                Error::failed_precondition(format!(
                    "cni config not initialized: no network config found in {}",
                    confs.dir.display()
                ))
            },
        )?;
        Ok(cni.with_loopback())
    }

    /// Ok when pods of every runtime can be networked (RuntimeStatus'
    /// NetworkReady), as containerd 1.7 asks each of its networks.
    pub async fn status(&self) -> Result<()> {
        self.load_from(&self.confs)?;
        for (name, confs) in &self.runtime_confs {
            self.load_from(confs)
                .map_err(|e| e.context(format!("network of runtime {name:?}")))?;
        }
        Ok(())
    }

    /// `cni.conf_template` rendered for the pod CIDRs `cidrs` into
    /// `conf_dir`, unless a configuration is there already (an add-on's,
    /// or one rendered before: the first CIDR the kubelet gives stays, as
    /// in containerd). Whether it wrote one.
    pub async fn render_template(&self, template: &Path, cidrs: &[String]) -> Result<bool> {
        if self.load_from(&self.confs).is_ok() {
            tracing::info!(
                template = %template.display(),
                "CNI config present: not rendering the template"
            );
            return Ok(false);
        }
        let text = tokio::fs::read_to_string(template).await.map_err(|e| {
            Error::io(
                format!("read the CNI config template {}", template.display()),
                e,
            )
        })?;
        let rendered = crate::cni::template::render(template, &text, cidrs)?;
        let dir = self.confs.dir.clone();
        crated_core::blocking::off_worker(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
            let file = dir.join(crate::cni::template::RENDERED_FILE);
            crated_core::fs::write_durably(&file, rendered.as_bytes(), 0o644)?;
            tracing::info!(file = %file.display(), "CNI config rendered from the template");
            Ok(true)
        })
    }

    /// A new network namespace for a pod of `runtime`, once its CNI
    /// config is known to be there (so a node without one fails before
    /// making anything).
    pub async fn create_netns(
        &self,
        runtime: &str,
        userns: Option<crate::userns::PodUserns>,
    ) -> Result<NetNs> {
        self.load(runtime)?;
        NetNs::create_async(self.netns_dir.clone(), userns).await
    }

    /// Runs the CNI ADDs of pod `id` of `runtime` in `netns`; its IPs, the primary
    /// (IPv4 where it has one) first. On failure the ADDs are undone; the
    /// namespace is the caller's.
    pub async fn add(
        &self,
        (runtime, id): (&str, &str),
        config: &pb::PodSandboxConfig,
        netns: &Path,
        pod_cidr: &str,
    ) -> Result<Vec<String>> {
        let cni = self.load(runtime)?;
        let pod = pod_network(id, config, Some(netns.to_owned()), pod_cidr)?;
        let results = cni
            .setup(&pod)
            .await
            .map_err(|e| e.context(format!("set up network of pod sandbox {id:?}")))?;
        Ok(pod_ips(&results, DEFAULT_IFNAME, self.ip_pref)
            .iter()
            .map(IpAddr::to_string)
            .collect())
    }

    /// What the networks of pod `id` gave it, as containerd's verbose
    /// sandbox info shows it (`cniResult`); none for a pod without CNI
    /// results (host network, or torn down).
    pub fn cni_result(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let results = crate::cni::cached_results(&self.cache_dir, id)?;
        Ok((!results.is_empty()).then(|| crate::cni::go_cni_json(&results)))
    }

    /// Tears down the network of pod `id` of `runtime` and removes its
    /// namespace. Idempotent:
    /// a pod already torn down (or whose namespace is gone, as after a
    /// node reboot) tears down cleanly.
    pub async fn teardown(
        &self,
        (runtime, id): (&str, &str),
        config: &pb::PodSandboxConfig,
        netns: &Path,
    ) -> Result<()> {
        let ns = NetNs::from_path(netns.to_owned());
        // Plugins get no namespace once it is gone; DEL must still free
        // what ADD allocated (IPs, port mappings).
        let netns_path = match ns.is_closed() {
            Ok(false) => Some(netns.to_owned()),
            Ok(true) => None,
            Err(e) => {
                tracing::warn!(id, netns = %netns.display(), error = %e, "inspect pod network namespace");
                None
            }
        };
        match self.load(runtime) {
            Ok(cni) => {
                let pod = pod_network(id, config, netns_path, "")?;
                cni.teardown(&pod)
                    .await
                    .map_err(|e| e.context(format!("tear down network of pod sandbox {id:?}")))?;
            }
            // Without a config there is nothing to run DEL with; the
            // namespace still goes, as containerd's.
            Err(e) => {
                tracing::warn!(id, error = %e, "no CNI config to tear down pod network with")
            }
        }
        ns.remove_async()
            .await
            .map_err(|e| e.context(format!("remove network namespace of pod sandbox {id:?}")))
    }
}

/// What CNI is told about pod `id`.
fn pod_network(
    id: &str,
    config: &pb::PodSandboxConfig,
    netns_path: Option<PathBuf>,
    pod_cidr: &str,
) -> Result<PodNetwork> {
    let metadata = config.metadata.clone().unwrap_or_default();
    let port_mappings = config
        .port_mappings
        .iter()
        .filter_map(|m| port_mapping(id, m).transpose())
        .collect::<Result<Vec<_>>>()?;
    let dns = config.dns_config.as_ref().map(|dns| DnsCapability {
        servers: dns.servers.clone(),
        searches: dns.searches.clone(),
        options: dns.options.clone(),
    });
    Ok(PodNetwork {
        id: id.to_owned(),
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        netns_path,
        port_mappings,
        bandwidth: bandwidth(&config.annotations)?,
        dns,
        ip_ranges: pod_cidr
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        annotations: config.annotations.clone(),
    })
}

/// One CRI port mapping for CNI's portmap; `None` for mappings without a
/// host port, which containerd skips too (the kubelet sends them for
/// containerPort-only declarations).
fn port_mapping(id: &str, m: &pb::PortMapping) -> Result<Option<PortMapping>> {
    if m.host_port <= 0 {
        return Ok(None);
    }
    let port = |what: &str, value: i32| {
        u16::try_from(value).map_err(|_| {
            Error::invalid_argument(format!(
                "pod sandbox {id:?}: {what} {value} is not a port number"
            ))
        })
    };
    let protocol = match pb::Protocol::try_from(m.protocol) {
        Ok(pb::Protocol::Tcp) => Protocol::Tcp,
        Ok(pb::Protocol::Udp) => Protocol::Udp,
        Ok(pb::Protocol::Sctp) => Protocol::Sctp,
        Err(_) => {
            return Err(Error::invalid_argument(format!(
                "pod sandbox {id:?}: unknown port mapping protocol {}",
                m.protocol
            )))
        }
    };
    let host_ip = if m.host_ip.is_empty() {
        None
    } else {
        Some(m.host_ip.parse::<IpAddr>().map_err(|e| {
            Error::invalid_argument(format!(
                "pod sandbox {id:?}: port mapping host IP {:?}: {e}",
                m.host_ip
            ))
        })?)
    };
    Ok(Some(PortMapping {
        host_port: port("host port", m.host_port)?,
        container_port: port("container port", m.container_port)?,
        protocol,
        host_ip,
    }))
}

/// The pod's traffic shaping from the kubelet's bandwidth annotations
/// (`kubernetes.io/ingress-bandwidth`, `…/egress-bandwidth`: quantities
/// in bits per second such as `10M`), for CNI's bandwidth capability.
fn bandwidth(annotations: &HashMap<String, String>) -> Result<Option<BandwidthLimits>> {
    let rate = |key: &str| -> Result<Option<u64>> {
        annotations
            .get(key)
            .map(|q| {
                parse_quantity(q).ok_or_else(|| {
                    Error::invalid_argument(format!("annotation {key}: {q:?} is not a quantity"))
                })
            })
            .transpose()
    };
    let ingress = rate("kubernetes.io/ingress-bandwidth")?;
    let egress = rate("kubernetes.io/egress-bandwidth")?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    // The burst the kubelet's own shaper used: unlimited in practice.
    const BURST: u64 = u32::MAX as u64;
    Ok(Some(BandwidthLimits {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: if ingress.is_some() { BURST } else { 0 },
        egress_rate: egress.unwrap_or(0),
        egress_burst: if egress.is_some() { BURST } else { 0 },
    }))
}

/// A Kubernetes quantity (`100`, `10k`, `10M`, `1G`, `1Ki`, `5Mi`, …) as
/// an integer.
fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let digits = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let bits = value * multiplier;
    (bits.is_finite() && bits >= 0.0 && bits < u64::MAX as f64).then_some(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1.5k"), Some(1500));
        assert_eq!(parse_quantity("2Mi"), Some(2 * 1024 * 1024));
        assert_eq!(parse_quantity("10X"), None);
        assert_eq!(parse_quantity("M"), None);
    }

    #[test]
    fn port_mappings_without_host_port_are_skipped() {
        let m = pb::PortMapping {
            container_port: 80,
            ..Default::default()
        };
        assert_eq!(port_mapping("p", &m).expect("mapping"), None);
        let m = pb::PortMapping {
            protocol: pb::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        };
        assert_eq!(
            port_mapping("p", &m).expect("mapping"),
            Some(PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: Some(IpAddr::from([127, 0, 0, 1])),
            })
        );
        let bad = pb::PortMapping {
            host_port: 70000,
            container_port: 80,
            ..Default::default()
        };
        let e = port_mapping("p", &bad).expect_err("out of range");
        assert!(e.to_string().contains("70000"), "{e}");
    }

    #[test]
    fn bandwidth_annotations() {
        let mut a = HashMap::new();
        assert!(bandwidth(&a).expect("none").is_none());
        a.insert(
            "kubernetes.io/ingress-bandwidth".to_owned(),
            "1M".to_owned(),
        );
        let b = bandwidth(&a).expect("limits").expect("some");
        assert_eq!(b.ingress_rate, 1_000_000);
        assert_eq!(b.egress_rate, 0);
        a.insert(
            "kubernetes.io/egress-bandwidth".to_owned(),
            "fast".to_owned(),
        );
        assert!(bandwidth(&a).is_err());
    }
}
