//! `[plugins."io.containerd.grpc.v1.cri"]`, with containerd 1.6/1.7's keys
//! and defaults, so an existing containerd `config.toml` works unchanged.

use crated_core::deprecation::Warning;
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
    /// How long ExecSync waits for the output to end once its process
    /// exited (containerd 1.7; Go duration, "0s" for ever): a process it
    /// left in the background holds the output open. containerd's
    /// default waits for ever; crated's gives up after 5 s.
    pub drain_exec_sync_io_timeout: String,
    /// Each layer a pull unpacks is flushed to disk (`syncfs`) before its
    /// snapshot is committed, so a power cut cannot leave an image with
    /// empty files (containerd 1.7's key; off by default as there, since a
    /// flush writes out everything dirty on that filesystem).
    pub image_pull_with_sync_fs: bool,
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
    /// Pods and containers get no cgroup (a daemon that may not manage
    /// them): no cgroup path, no resources.
    pub disable_cgroup: bool,
    /// Never apply AppArmor profiles. crated applies none in any case (a
    /// profile asked for is refused, RuntimeDefault ignored).
    pub disable_apparmor: bool,
    /// The masked and read-only paths of the security context are not
    /// applied; the default spec's stay (Kubernetes 1.11 and older).
    pub disable_proc_mount: bool,
    /// The seccomp profile of a container that asks for none, in the
    /// legacy form (`runtime/default`, `unconfined`, `localhost/<path>`);
    /// empty: unconfined.
    pub unset_seccomp_profile: String,
    /// Huge page limits asked for without a hugetlb controller are
    /// skipped with a warning (else refused).
    pub tolerate_missing_hugetlb_controller: bool,
    /// Huge page limits are never applied. containerd's own default is
    /// true (it ignores them unless told otherwise); crated's is false.
    pub disable_hugetlb_controller: bool,
    /// SELinux labelling: not supported by crated (a warning at start-up
    /// when set).
    pub enable_selinux: bool,
    /// The SELinux category range (with `enable_selinux`).
    pub selinux_category_range: i64,
    /// Where pod network namespaces are mounted: crated always mounts
    /// them under its state directory (a warning when set to false).
    pub netns_mounts_under_state_dir: bool,
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
            drain_exec_sync_io_timeout: "5s".into(),
            systemd_cgroup: false,
            ignore_image_defined_volumes: false,
            device_ownership_from_security_context: false,
            stats_collect_period: 10,
            image_pull_with_sync_fs: false,
            disable_cgroup: false,
            disable_apparmor: false,
            disable_proc_mount: false,
            unset_seccomp_profile: String::new(),
            tolerate_missing_hugetlb_controller: true,
            disable_hugetlb_controller: false,
            enable_selinux: false,
            selinux_category_range: 1024,
            netns_mounts_under_state_dir: true,
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
    /// Deprecated in containerd 1.6 for the runtimes' `NoPivotRoot`:
    /// every runtime creates its containers with `--no-pivot`.
    pub no_pivot: bool,
    /// Layer blobs are left to the collector once unpacked (the snapshots
    /// hold the files): less disk, but an image cannot be unpacked again
    /// elsewhere or exported without pulling it again.
    pub discard_unpacked_layers: bool,
    /// Off, a pull's prepare of each layer carries the image's reference
    /// and the layer's and manifest's digests (`containerd.io/snapshot/
    /// cri.*`), which a remote snapshotter (stargz, nydus) needs to mount
    /// layers from the registry instead of having them fetched (lazy
    /// pulling). On by default, as containerd's.
    pub disable_snapshot_annotations: bool,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        Self {
            snapshotter: "overlayfs".into(),
            default_runtime_name: "runc".into(),
            runtimes: [("runc".to_owned(), RuntimeConfig::default())].into(),
            no_pivot: false,
            discard_unpacked_layers: false,
            disable_snapshot_annotations: true,
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
    /// The shim binary of this runtime's pods, when not the one
    /// `runtime_type` names on the PATH (containerd's `runtime_path`).
    pub runtime_path: String,
    /// A privileged container does not get the host's devices (for
    /// runtimes whose containers are VMs or sandboxes).
    pub privileged_without_host_devices: bool,
    /// With `privileged_without_host_devices`: it may still use any
    /// device (cgroup access to all).
    pub privileged_without_host_devices_all_devices_allowed: bool,
    /// Pod annotations (shell patterns of keys) copied into the OCI spec
    /// of the pod's sandbox and containers.
    pub pod_annotations: Vec<String>,
    /// Container annotations (shell patterns of keys) copied into the
    /// container's OCI spec.
    pub container_annotations: Vec<String>,
    /// An OCI spec (JSON file) that containers and sandboxes of this
    /// runtime start from instead of the default one.
    pub base_runtime_spec: String,
    /// The snapshotter of this runtime's pods (containerd 1.7); empty:
    /// `containerd.snapshotter`.
    pub snapshotter: String,
    /// The CNI configurations of this runtime's pods (containerd 1.7),
    /// for runtimes whose pods need another network (VMs, say); empty:
    /// `cni.conf_dir`.
    pub cni_conf_dir: String,
    /// How many of `cni_conf_dir`'s configurations to load (0: one).
    pub cni_max_conf_num: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            runtime_type: "io.containerd.runc.v2".into(),
            options: RuncOptions::default(),
            runtime_path: String::new(),
            privileged_without_host_devices: false,
            privileged_without_host_devices_all_devices_allowed: false,
            pod_annotations: Vec::new(),
            container_annotations: Vec::new(),
            base_runtime_spec: String::new(),
            snapshotter: String::new(),
            cni_conf_dir: String::new(),
            cni_max_conf_num: 0,
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
    /// `runc create --no-pivot` (roots on a ramdisk).
    #[serde(rename = "NoPivotRoot")]
    pub no_pivot_root: bool,
    /// `runc create --no-new-keyring`.
    #[serde(rename = "NoNewKeyring")]
    pub no_new_keyring: bool,
    /// A cgroup (which must exist) to run each pod's shim in.
    #[serde(rename = "ShimCgroup")]
    pub shim_cgroup: String,
    /// The host uid owning containers' stdio pipes (0: root; a pod with
    /// its own user namespace gets its root's whatever this says).
    #[serde(rename = "IoUid")]
    pub io_uid: u32,
    /// The host gid owning containers' stdio pipes.
    #[serde(rename = "IoGid")]
    pub io_gid: u32,
    /// The criu binary runc checkpoints with (empty: `criu` on PATH).
    #[serde(rename = "CriuPath")]
    pub criu_path: String,
    /// criu's work directory (empty: one in the bundle).
    #[serde(rename = "CriuWorkPath")]
    pub criu_work_path: String,
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
    /// A Go text/template file of a CNI configuration, rendered into
    /// `conf_dir` for the pod CIDR the kubelet gives when `conf_dir` has
    /// none (empty: wait for a network add-on to write one).
    pub conf_template: String,
    /// Which of a dual-stack pod's addresses is its IP (containerd 1.7):
    /// `ipv4` (empty: the same), `ipv6`, or `cni` (the order the CNI
    /// result gives).
    pub ip_pref: String,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            bin_dir: "/opt/cni/bin".into(),
            conf_dir: "/etc/cni/net.d".into(),
            max_conf_num: 1,
            conf_template: String::new(),
            ip_pref: String::new(),
        }
    }
}

/// [`CniConfig::ip_pref`], parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPreference {
    /// IPv4 addresses first.
    Ipv4,
    /// IPv6 addresses first.
    Ipv6,
    /// As the CNI result lists them.
    Cni,
}

impl CniConfig {
    /// `ip_pref`; an unknown value falls back to ipv4 with a warning, as
    /// in containerd.
    pub fn ip_preference(&self) -> IpPreference {
        match self.ip_pref.as_str() {
            "" | "ipv4" => IpPreference::Ipv4,
            "ipv6" => IpPreference::Ipv6,
            "cni" => IpPreference::Cni,
            other => {
                tracing::warn!(
                    ip_pref = other,
                    "cni.ip_pref is not ipv4, ipv6 or cni: ipv4"
                );
                IpPreference::Ipv4
            }
        }
    }
}

/// `[…cri.registry]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Directory of `<host>/hosts.toml` files (containerd's certs.d).
    pub config_path: String,
    /// Deprecated in containerd 1.6, still common: a domain (or `*`) to
    /// the endpoints pulled from first. Not with `config_path`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Per registry host: credentials used when a pull brings none, and
    /// (deprecated, not with `config_path`) TLS.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, RegistryHostConfig>,
    /// Deprecated form of `configs.<host>.auth`, keyed by URL or host.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub auths: BTreeMap<String, RegistryAuth>,
    /// Headers sent with every registry request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
}

/// `[…registry.mirrors.<domain>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mirror {
    /// Endpoint URLs (`[scheme://]host[:port][/path]`), tried in order.
    pub endpoint: Vec<String>,
}

/// `[…registry.configs.<host>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryHostConfig {
    /// Credentials for the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
    /// TLS to the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,
}

/// Registry credentials in the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base64 `user:password`.
    pub auth: String,
    /// A token in place of a password.
    pub identitytoken: String,
}

/// `[…registry.configs.<host>.tls]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryTls {
    /// Do not verify the server's certificate.
    pub insecure_skip_verify: bool,
    /// A CA certificate (PEM) to trust besides the system's.
    pub ca_file: String,
    /// A client certificate (PEM), with `key_file`.
    pub cert_file: String,
    /// The client certificate's key (PEM).
    pub key_file: String,
}

impl RegistryConfig {
    /// containerd's checks: the deprecated mirrors and TLS settings do not
    /// mix with `config_path`, a client certificate comes with its key,
    /// an `auths` key is a URL or a host, mirror endpoints are URLs.
    pub fn validate(&self) -> crated_core::Result<()> {
        let invalid = |m: String| crated_core::Error::invalid_argument(format!("registry: {m}"));
        let with_path = !self.config_path.is_empty();
        if with_path && !self.mirrors.is_empty() {
            return Err(invalid(
                "`mirrors` cannot be set when `config_path` is provided".into(),
            ));
        }
        for (host, config) in &self.configs {
            let Some(tls) = &config.tls else { continue };
            if with_path {
                return Err(invalid(format!(
                    "`configs.{host:?}.tls` cannot be set when `config_path` is provided: put it \
                     in {host}'s hosts.toml"
                )));
            }
            if tls.cert_file.is_empty() != tls.key_file.is_empty() {
                return Err(invalid(format!(
                    "`configs.{host:?}.tls` needs both cert_file and key_file, or neither"
                )));
            }
        }
        for url in self.auths.keys() {
            if auth_host(url).is_empty() {
                return Err(invalid(format!("`auths` key {url:?} names no host")));
            }
        }
        for (host, auth) in self.auths_by_host() {
            auth.check()
                .map_err(|m| invalid(format!("the credentials for {host:?}: {m}")))?;
        }
        self.configured_hosts()?;
        Ok(())
    }

    /// The endpoints `mirrors` and `configs.*.tls` give, when set and no
    /// `config_path` is.
    pub fn configured_hosts(
        &self,
    ) -> crated_core::Result<Option<crated_distribution::mirrors::ConfiguredHosts>> {
        let tls: BTreeMap<String, crated_distribution::TlsOptions> = self
            .configs
            .iter()
            .filter_map(|(host, c)| c.tls.as_ref().map(|t| (host, t)))
            .map(|(host, t)| {
                let client = (!t.cert_file.is_empty()).then(|| {
                    (
                        std::path::PathBuf::from(&t.cert_file),
                        Some(std::path::PathBuf::from(&t.key_file)),
                    )
                });
                let tls = crated_distribution::TlsOptions {
                    skip_verify: t.insecure_skip_verify,
                    ca: [&t.ca_file]
                        .into_iter()
                        .filter(|f| !f.is_empty())
                        .map(std::path::PathBuf::from)
                        .collect(),
                    client,
                };
                (host.clone(), tls)
            })
            .collect();
        if !self.config_path.is_empty() || (self.mirrors.is_empty() && tls.is_empty()) {
            return Ok(None);
        }
        let mirrors = self
            .mirrors
            .iter()
            .map(|(domain, m)| (domain.clone(), m.endpoint.clone()))
            .collect();
        Ok(Some(crated_distribution::mirrors::ConfiguredHosts::new(
            mirrors, tls,
        )?))
    }

    /// The credentials configured per registry host: `configs.<host>.auth`,
    /// with the deprecated `auths` over them (containerd copies `auths`
    /// into `configs` at start-up, replacing what is there).
    pub fn auths_by_host(&self) -> BTreeMap<String, RegistryAuth> {
        let mut out: BTreeMap<String, RegistryAuth> = self
            .configs
            .iter()
            .filter_map(|(host, c)| c.auth.clone().map(|a| (host.clone(), a)))
            .collect();
        for (url, auth) in &self.auths {
            out.insert(auth_host(url).to_owned(), auth.clone());
        }
        out
    }

    /// The hosts directory for `domain`: `config_path` may list several,
    /// colon-separated, and the first that has a directory for the domain
    /// (or a `_default`) serves it, as containerd reads them; `None`
    /// without `config_path`.
    pub fn hosts_dir(&self, domain: &str) -> crated_core::Result<Option<std::path::PathBuf>> {
        let roots: Vec<&str> = self
            .config_path
            .split(':')
            .filter(|r| !r.is_empty())
            .collect();
        for root in &roots {
            if crated_distribution::hosts::host_dir(std::path::Path::new(root), domain)?.is_some() {
                return Ok(Some(root.into()));
            }
        }
        Ok(roots.first().map(Into::into))
    }

    /// `headers` as name-value pairs.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.clone(), v.clone())))
            .collect()
    }
}

/// The host of an `auths` key: a URL's authority, or (as containerd
/// keeps it) the key itself when it has no scheme.
fn auth_host(key: &str) -> &str {
    match key.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
        None => key,
    }
}

impl RegistryAuth {
    /// Whether these credentials can be used: `auth` must be base64 of
    /// `user:password` when it is what they come down to.
    fn check(&self) -> std::result::Result<(), String> {
        if !self.username.is_empty() || !self.identitytoken.is_empty() || self.auth.is_empty() {
            return Ok(());
        }
        let decoded = crated_core::base64::decode(&self.auth)
            .ok_or_else(|| "`auth` is not base64".to_owned())?;
        match String::from_utf8(decoded) {
            Ok(text) if text.contains(':') => Ok(()),
            _ => Err("`auth` is not base64 of user:password".to_owned()),
        }
    }
}

impl Config {
    /// The deprecated settings this configuration uses, as containerd 1.7
    /// reports them (`ctr deprecations list`).
    pub fn deprecations(&self) -> Vec<Warning> {
        let mut used = Vec::new();
        if self.systemd_cgroup {
            used.push(Warning::CriSystemdCgroupV1);
        }
        if !self.registry.mirrors.is_empty() {
            used.push(Warning::CriRegistryMirrors);
        }
        if !self.registry.auths.is_empty() {
            used.push(Warning::CriRegistryAuths);
        }
        if !self.registry.configs.is_empty() {
            used.push(Warning::CriRegistryConfigs);
        }
        let runtimes = self.containerd.runtimes.values();
        if runtimes
            .into_iter()
            .any(|r| !r.options.criu_path.is_empty())
        {
            used.push(Warning::CriCriuPath);
        }
        used
    }

    /// The huge page policy of [`crate::spec_opts::linux_resources`].
    pub fn hugetlb(&self) -> crate::spec_opts::Hugetlb {
        crate::spec_opts::Hugetlb {
            tolerate_missing: self.tolerate_missing_hugetlb_controller,
            disabled: self.disable_hugetlb_controller,
        }
    }

    /// Warnings for settings crated reads but cannot honour here, and for
    /// one that refuses what containerd would ignore.
    pub fn warn_unsupported(&self) {
        if !self.enable_cdi {
            tracing::warn!(
                "enable_cdi is off: a container asking for CDI devices (CDI_devices) is refused"
            );
        }
        if self.enable_selinux {
            tracing::warn!("enable_selinux: crated does not label containers for SELinux; ignored");
        }
        if !self.netns_mounts_under_state_dir {
            tracing::warn!(
                "netns_mounts_under_state_dir = false: crated mounts pod network namespaces \
                 under its state directory all the same"
            );
        }
    }

    /// `stream_idle_timeout`: how long a streaming connection may carry
    /// nothing before it is closed; `None` when zero (never).
    pub fn stream_idle_timeout(&self) -> crated_core::Result<Option<Duration>> {
        let d = crated_core::duration::parse(&self.stream_idle_timeout)
            .map_err(|e| e.context("stream_idle_timeout"))?;
        Ok(Some(d).filter(|d| !d.is_zero()))
    }

    /// `drain_exec_sync_io_timeout`, parsed; `None` when zero (for ever).
    pub fn exec_sync_drain(&self) -> crated_core::Result<Option<Duration>> {
        let d = crated_core::duration::parse(&self.drain_exec_sync_io_timeout)
            .map_err(|e| e.context("drain_exec_sync_io_timeout"))?;
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
    fn ip_pref_is_one_of_three_else_ipv4() {
        let cni = |pref: &str| CniConfig {
            ip_pref: pref.into(),
            ..CniConfig::default()
        };
        assert_eq!(cni("").ip_preference(), IpPreference::Ipv4);
        assert_eq!(cni("ipv6").ip_preference(), IpPreference::Ipv6);
        assert_eq!(cni("cni").ip_preference(), IpPreference::Cni);
        assert_eq!(cni("ipv5").ip_preference(), IpPreference::Ipv4);
    }

    #[test]
    fn config_path_may_list_several_roots() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::create_dir(second.path().join("r.example")).unwrap();
        let r = RegistryConfig {
            config_path: format!("{}:{}", first.path().display(), second.path().display()),
            ..RegistryConfig::default()
        };
        assert_eq!(
            r.hosts_dir("r.example").unwrap().as_deref(),
            Some(second.path())
        );
        // Found nowhere: the first root (its defaults).
        assert_eq!(
            r.hosts_dir("other.example").unwrap().as_deref(),
            Some(first.path())
        );
        // A `_default` in the first root comes before the second's host.
        std::fs::create_dir(first.path().join("_default")).unwrap();
        assert_eq!(
            r.hosts_dir("r.example").unwrap().as_deref(),
            Some(first.path())
        );
        assert_eq!(
            RegistryConfig::default().hosts_dir("r.example").unwrap(),
            None
        );
    }

    fn registry(text: &str) -> RegistryConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn deprecated_settings_in_use_are_named_as_containerd_names_them() {
        let config: Config = toml::from_str(
            r#"
            systemd_cgroup = true
            [registry.auths."old.example"]
            username = "u"
            [containerd.runtimes.runc.options]
            CriuPath = "/opt/criu"
            "#,
        )
        .unwrap();
        let ids: Vec<&str> = config.deprecations().into_iter().map(Warning::id).collect();
        assert_eq!(
            ids,
            [
                "io.containerd.deprecation/cri-systemd-cgroup-v1",
                "io.containerd.deprecation/cri-registry-auths",
                "io.containerd.deprecation/cri-criu-path",
            ]
        );
        assert!(Config::default().deprecations().is_empty());
    }

    #[test]
    fn deprecated_registry_settings_are_read_and_checked() {
        let r = registry(
            r#"
            headers = { X-Node = ["a", "b"] }
            [mirrors."docker.io"]
            endpoint = ["https://mirror.example", "localhost:5000"]
            [configs."mirror.example".auth]
            username = "u"
            password = "p"
            [configs."mirror.example".tls]
            ca_file = "/etc/ca.pem"
            [auths."https://old.example/v1/"]
            auth = "dTpw"
            "#,
        );
        r.validate().unwrap();
        let hosts = r
            .configured_hosts()
            .unwrap()
            .unwrap()
            .configure("docker.io");
        let urls: Vec<String> = hosts.iter().map(|h| h.url("")).collect();
        assert_eq!(
            urls,
            [
                "https://mirror.example/v2/",
                "http://localhost:5000/v2/",
                "https://registry-1.docker.io/v2/"
            ]
        );
        assert_eq!(hosts[0].ca, [std::path::PathBuf::from("/etc/ca.pem")]);
        let auths = r.auths_by_host();
        assert_eq!(auths["mirror.example"].username, "u");
        assert_eq!(auths["old.example"].auth, "dTpw");
        // `auths` win over `configs`, as containerd merges them.
        let both = registry(
            "[configs.\"r.example\".auth]\nusername = \"new\"\n[auths.\"https://r.example\"]\nusername = \"old\"",
        );
        assert_eq!(both.auths_by_host()["r.example"].username, "old");
        assert_eq!(r.header_pairs().len(), 2);

        // Nothing deprecated set: the default hosts, through hosts.toml.
        assert!(registry("").configured_hosts().unwrap().is_none());
        for (text, says) in [
            (
                "config_path = \"/etc/containerd/certs.d\"\n[mirrors.\"docker.io\"]\nendpoint = [\"https://m\"]",
                "`mirrors` cannot be set when `config_path`",
            ),
            (
                "config_path = \"/d\"\n[configs.\"r.example\".tls]\ninsecure_skip_verify = true",
                "cannot be set when `config_path`",
            ),
            (
                "[configs.\"r.example\".tls]\ncert_file = \"/c.pem\"",
                "needs both cert_file and key_file",
            ),
            (
                "[mirrors.\"docker.io\"]\nendpoint = [\"ftp://m\"]",
                "not http or https",
            ),
            (
                "[configs.\"r.example\".auth]\nauth = \"!!!\"",
                "the credentials for \"r.example\": `auth` is not base64",
            ),
            (
                "[configs.\"r.example\".auth]\nauth = \"bm9jb2xvbg==\"",
                "not base64 of user:password",
            ),
        ] {
            let err = registry(text).validate().unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

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
        assert_eq!(
            config.exec_sync_drain().unwrap(),
            Some(Duration::from_secs(5))
        );
    }

    /// containerd 1.7's `drain_exec_sync_io_timeout`: a Go duration, zero
    /// for ever, anything else refused by name.
    #[test]
    fn the_exec_sync_drain_is_a_duration() {
        let with = |value: &str| Config {
            drain_exec_sync_io_timeout: value.into(),
            ..Config::default()
        };
        assert_eq!(with("0s").exec_sync_drain().unwrap(), None);
        assert_eq!(
            with("1m30s").exec_sync_drain().unwrap(),
            Some(Duration::from_secs(90))
        );
        let err = with("soon").exec_sync_drain().unwrap_err();
        assert!(
            err.to_string().contains("drain_exec_sync_io_timeout"),
            "{err}"
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
