//! `[plugins."io.containerd.grpc.v1.cri"]`, with containerd 1.6/1.7's keys
//! and defaults, so an existing containerd `config.toml` works unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The CRI plugin's section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The image of pod sandboxes' pause container. Empty: crated's own
    /// pause binary, so pods start without a registry.
    pub sandbox_image: String,
    /// Containers never get a lower OOM score adjustment than the daemon's
    /// own (for a daemon without CAP_SYS_RESOURCE).
    pub restrict_oom_score_adj: bool,
    /// Longest container log line before it is split (negative: never).
    pub max_container_log_line_size: i64,
    /// Pods may bind ports below 1024 without capabilities
    /// (`net.ipv4.ip_unprivileged_port_start=0`).
    pub enable_unprivileged_ports: bool,
    /// Pods may open ICMP echo sockets (`net.ipv4.ping_group_range`).
    pub enable_unprivileged_icmp: bool,
    /// No CRI on TCP (crated serves CRI on the unix socket only).
    pub disable_tcp_service: bool,
    /// Where the streaming server (exec, attach, port-forward) listens.
    pub stream_server_address: String,
    /// Its port; "0" picks a free one.
    pub stream_server_port: String,
    /// How long a streaming connection may be idle (Go duration).
    pub stream_idle_timeout: String,
    /// Serve streaming over TLS: with `x509_key_pair_streaming`'s
    /// certificate, or a self-signed one made at start-up.
    pub enable_tls_streaming: bool,
    /// The streaming server's certificate and key (PEM files).
    pub x509_key_pair_streaming: X509KeyPair,
    /// Parallel layer downloads of an image pull.
    pub max_concurrent_downloads: u32,
    /// A pull that makes no progress for this long is cancelled (Go
    /// duration; "0" never).
    pub image_pull_progress_timeout: String,
    /// Use the systemd cgroup driver (reported by RuntimeConfig).
    pub systemd_cgroup: bool,
    /// Image-defined volumes are not made (the container writes into its
    /// own layer there).
    pub ignore_image_defined_volumes: bool,
    /// Devices a container asks for are owned by its run_as_user and
    /// run_as_group instead of keeping the host's owner.
    pub device_ownership_from_security_context: bool,
    /// Seconds between measurements of the containers' writable layers
    /// (their disk usage, which container stats and ImageFsInfo report).
    pub stats_collect_period: i64,
    /// Inject the CDI devices a container asks for (the CRI's
    /// `CDI_devices`, `cdi.k8s.io/…` annotations). On by default, as in
    /// containerd 2.x (1.7 had it off and ignored such requests).
    pub enable_cdi: bool,
    /// Where CDI spec files are read, lowest precedence first.
    pub cdi_spec_dirs: Vec<String>,
    /// Runtimes and snapshotter.
    pub containerd: ContainerdConfig,
    /// Pod networking.
    pub cni: CniConfig,
    /// Registries.
    pub registry: RegistryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sandbox_image: "registry.k8s.io/pause:3.6".into(),
            restrict_oom_score_adj: false,
            max_container_log_line_size: 16 * 1024,
            enable_unprivileged_ports: false,
            enable_unprivileged_icmp: false,
            disable_tcp_service: true,
            stream_server_address: "127.0.0.1".into(),
            stream_server_port: "0".into(),
            stream_idle_timeout: "4h0m0s".into(),
            enable_tls_streaming: false,
            x509_key_pair_streaming: X509KeyPair::default(),
            max_concurrent_downloads: 3,
            image_pull_progress_timeout: "5m0s".into(),
            systemd_cgroup: false,
            ignore_image_defined_volumes: false,
            device_ownership_from_security_context: false,
            stats_collect_period: 10,
            enable_cdi: true,
            cdi_spec_dirs: vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            containerd: ContainerdConfig::default(),
            cni: CniConfig::default(),
            registry: RegistryConfig::default(),
        }
    }
}

/// `[…cri.x509_key_pair_streaming]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct X509KeyPair {
    /// The certificate (chain), PEM.
    pub tls_cert_file: String,
    /// Its private key, PEM.
    pub tls_key_file: String,
}

/// `[…cri.containerd]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerdConfig {
    /// The snapshotter of pods' and containers' root filesystems.
    pub snapshotter: String,
    /// The runtime of a pod that names no runtime handler.
    pub default_runtime_name: String,
    /// Runtimes by handler name.
    pub runtimes: BTreeMap<String, RuntimeConfig>,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        Self {
            snapshotter: "overlayfs".into(),
            default_runtime_name: "runc".into(),
            runtimes: [("runc".to_owned(), RuntimeConfig::default())].into(),
        }
    }
}

/// `[…cri.containerd.runtimes.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// The runtime v2 name (`io.containerd.runc.v2`).
    pub runtime_type: String,
    /// runc options.
    pub options: RuncOptions,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            runtime_type: "io.containerd.runc.v2".into(),
            options: RuncOptions::default(),
        }
    }
}

/// `[…runtimes.<name>.options]`: the runc options crated passes to the
/// shim (containerd's `runc.v1.Options` field names).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RuncOptions {
    /// The runc binary (empty: `runc` on the shim's PATH).
    #[serde(rename = "BinaryName")]
    pub binary_name: String,
    /// runc's state root (empty: runc's default).
    #[serde(rename = "Root")]
    pub root: String,
    /// Use the systemd cgroup driver.
    #[serde(rename = "SystemdCgroup")]
    pub systemd_cgroup: bool,
}

/// `[…cri.cni]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CniConfig {
    /// Where the CNI plugin binaries are.
    pub bin_dir: String,
    /// Where the network configurations are.
    pub conf_dir: String,
    /// How many configurations to load (crated uses the first).
    pub max_conf_num: u32,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            bin_dir: "/opt/cni/bin".into(),
            conf_dir: "/etc/cni/net.d".into(),
            max_conf_num: 1,
        }
    }
}

/// `[…cri.registry]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Directory of `<host>/hosts.toml` files (containerd's certs.d).
    pub config_path: String,
}

impl Config {
    /// `stream_idle_timeout`: how long a streaming connection may carry
    /// nothing before it is closed; `None` when zero (never).
    pub fn stream_idle_timeout(&self) -> crated_core::Result<Option<Duration>> {
        let d = crated_core::duration::parse(&self.stream_idle_timeout)
            .map_err(|e| e.context("stream_idle_timeout"))?;
        Ok(Some(d).filter(|d| !d.is_zero()))
    }

    /// `stats_collect_period`, which must be positive.
    pub fn stats_collect_period(&self) -> crated_core::Result<Duration> {
        u64::try_from(self.stats_collect_period)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                crated_core::Error::invalid_argument(format!(
                    "stats_collect_period: {} is not a positive number of seconds",
                    self.stats_collect_period
                ))
            })
    }

    /// `image_pull_progress_timeout`, parsed; `None` for never.
    pub fn pull_progress_timeout(&self) -> crated_core::Result<Option<Duration>> {
        let d = crated_core::duration::parse(&self.image_pull_progress_timeout)
            .map_err(|e| e.context("image_pull_progress_timeout"))?;
        Ok(Some(d).filter(|d| !d.is_zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containerd_section_reads_unchanged() {
        let text = r#"
sandbox_image = "registry.k8s.io/pause:3.9"
restrict_oom_score_adj = true
[containerd]
snapshotter = "native"
default_runtime_name = "runc"
[containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[containerd.runtimes.runc.options]
SystemdCgroup = true
BinaryName = "/usr/bin/crun"
[cni]
bin_dir = "/usr/lib/cni"
conf_dir = "/etc/cni/net.d"
[registry]
config_path = "/etc/containerd/certs.d"
"#;
        let config: Config = toml::from_str(text).unwrap();
        assert_eq!(config.sandbox_image, "registry.k8s.io/pause:3.9");
        assert!(config.restrict_oom_score_adj);
        assert_eq!(config.containerd.snapshotter, "native");
        let runc = &config.containerd.runtimes["runc"];
        assert!(runc.options.systemd_cgroup);
        assert_eq!(runc.options.binary_name, "/usr/bin/crun");
        assert_eq!(config.cni.bin_dir, "/usr/lib/cni");
        assert_eq!(config.max_container_log_line_size, 16 * 1024);
        assert_eq!(
            config.pull_progress_timeout().unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            config.stats_collect_period().unwrap(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_stats_collect_period_that_is_not_positive_is_refused() {
        for bad in ["0", "-5"] {
            let config: Config = toml::from_str(&format!("stats_collect_period = {bad}")).unwrap();
            let err = config.stats_collect_period().unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("stats_collect_period: {bad} is not")),
                "{err}"
            );
        }
        let config: Config = toml::from_str("stats_collect_period = 3").unwrap();
        assert_eq!(
            config.stats_collect_period().unwrap(),
            Duration::from_secs(3)
        );
    }
}
