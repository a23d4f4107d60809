//! `config.toml`, version 2, with containerd's layout.
//!
//! Plugin sections stay raw TOML here: each plugin decodes its own section
//! into its own type during init, so a bad setting fails that plugin (shown
//! as `error` by `ctr plugins ls`) instead of the whole daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crated/config.toml";
/// Default persistent root.
pub const DEFAULT_ROOT: &str = "/var/lib/crated";
/// Default runtime state directory.
pub const DEFAULT_STATE: &str = "/run/crated";
/// Default gRPC socket.
pub const DEFAULT_ADDRESS: &str = "/run/crated/crated.sock";
/// Default largest gRPC message, as containerd's.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The daemon configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Config schema version; only 2 is accepted.
    pub version: i64,
    /// Persistent data root.
    pub root: PathBuf,
    /// Runtime state root (tmpfs).
    pub state: PathBuf,
    /// Temporary directory for mounts and scratch files; empty = system default.
    pub temp: String,
    /// Directory of Go-style plugins in containerd; crated has none (ignored).
    pub plugin_dir: String,
    /// Plugins, as `type.id`, not to load at all.
    pub disabled_plugins: Vec<String>,
    /// Plugins, as `type.id`, without which the daemon must not start.
    pub required_plugins: Vec<String>,
    /// OOM score adjustment of the daemon process (-1000..=1000).
    pub oom_score: i32,
    /// Further config files to merge; not supported yet.
    pub imports: Vec<String>,
    /// The gRPC server.
    pub grpc: GrpcConfig,
    /// The ttrpc server.
    pub ttrpc: TtrpcConfig,
    /// Logging and the debug socket.
    pub debug: DebugConfig,
    /// The metrics endpoint.
    pub metrics: MetricsConfig,
    /// The cgroup of the daemon.
    pub cgroup: CgroupConfig,
    /// Per-plugin sections, keyed `type.id`.
    pub plugins: BTreeMap<String, toml::Table>,
    /// External plugins served over gRPC.
    pub proxy_plugins: BTreeMap<String, ProxyPlugin>,
    /// Named timeouts (Go duration strings), as containerd's `[timeouts]`.
    pub timeouts: BTreeMap<String, String>,
    /// Keys (outside plugin sections, which their plugins check) this
    /// version does not know, as dotted paths; reported as warnings at
    /// start.
    #[serde(skip)]
    pub unknown: Vec<String>,
}

/// `[grpc]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// Unix socket path.
    pub address: PathBuf,
    /// TCP address; not served by crated (a warning is logged if set).
    pub tcp_address: String,
    /// Owner uid of the socket.
    pub uid: u32,
    /// Owner gid of the socket; members of this group may use the daemon.
    pub gid: u32,
    /// Largest message accepted.
    pub max_recv_message_size: usize,
    /// Largest message sent.
    pub max_send_message_size: usize,
}

/// `[ttrpc]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TtrpcConfig {
    /// Unix socket path; empty = `<grpc.address>.ttrpc`.
    pub address: PathBuf,
    /// Owner uid of the socket.
    pub uid: u32,
    /// Owner gid of the socket.
    pub gid: u32,
}

/// `[debug]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DebugConfig {
    /// Debug socket (pprof in containerd); not served by crated yet.
    pub address: String,
    /// Owner uid of the debug socket.
    pub uid: u32,
    /// Owner gid of the debug socket.
    pub gid: u32,
    /// Log level: trace, debug, info, warn, error; empty = info.
    pub level: String,
    /// Log format: text or json; empty = text.
    pub format: String,
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MetricsConfig {
    /// Prometheus endpoint; not served by crated yet.
    pub address: String,
    /// Whether to record gRPC histograms.
    pub grpc_histogram: bool,
}

/// `[cgroup]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CgroupConfig {
    /// cgroup path of the daemon.
    pub path: String,
}

/// One `[proxy_plugins.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyPlugin {
    /// `snapshot` or `content`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix socket of the external plugin.
    pub address: String,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS.into(),
            tcp_address: String::new(),
            uid: 0,
            gid: 0,
            max_recv_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 2,
            root: DEFAULT_ROOT.into(),
            state: DEFAULT_STATE.into(),
            temp: String::new(),
            plugin_dir: String::new(),
            disabled_plugins: Vec::new(),
            required_plugins: Vec::new(),
            oom_score: 0,
            imports: Vec::new(),
            grpc: GrpcConfig::default(),
            ttrpc: TtrpcConfig::default(),
            debug: DebugConfig::default(),
            metrics: MetricsConfig::default(),
            cgroup: CgroupConfig::default(),
            plugins: BTreeMap::new(),
            proxy_plugins: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            unknown: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a config file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> anyhow::Result<Self> {
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::new(text);
        let mut config: Config =
            serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()))
                .with_context(|| format!("failed to load config {}", origin.display()))?;
        config.unknown = unknown;
        if config.version != 2 {
            bail!(
                "config {}: version {} is not supported: crated reads version = 2 (containerd 1.5+ format)",
                origin.display(),
                config.version
            );
        }
        if !config.imports.is_empty() {
            bail!(
                "config {}: imports are not implemented yet; merge {:?} into one file",
                origin.display(),
                config.imports
            );
        }
        if !(-1000..=1000).contains(&config.oom_score) {
            bail!(
                "config {}: oom_score {} is outside -1000..=1000",
                origin.display(),
                config.oom_score
            );
        }
        for (what, path) in [
            ("root", &config.root),
            ("state", &config.state),
            ("grpc.address", &config.grpc.address),
        ] {
            if !path.is_absolute() {
                bail!(
                    "config {}: {what} {} must be an absolute path",
                    origin.display(),
                    path.display()
                );
            }
        }
        Ok(config)
    }

    /// Loads the config: `explicit` must exist; without it the default path
    /// is read when present, else the defaults apply.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Ok(Self::default())
            }
            Err(e) => Err(e).with_context(|| format!("failed to read config {}", path.display())),
        }
    }

    /// `[timeouts]`, parsed: each value a Go duration (`"5s"`).
    pub fn timeouts(&self) -> anyhow::Result<BTreeMap<String, std::time::Duration>> {
        self.timeouts
            .iter()
            .map(|(key, value)| {
                crated_core::duration::parse(value)
                    .map(|d| (key.clone(), d))
                    .map_err(|e| anyhow::anyhow!("timeout {key:?} = {value:?}: {e}"))
            })
            .collect()
    }

    /// The ttrpc socket: `[ttrpc] address`, else `<grpc.address>.ttrpc`.
    pub fn ttrpc_address(&self) -> PathBuf {
        if self.ttrpc.address.as_os_str().is_empty() {
            let mut path = self.grpc.address.clone().into_os_string();
            path.push(".ttrpc");
            path.into()
        } else {
            self.ttrpc.address.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        let back = Config::parse(&text, Path::new("x")).unwrap();
        assert_eq!(back.grpc.address, PathBuf::from(DEFAULT_ADDRESS));
        assert_eq!(
            back.ttrpc_address(),
            PathBuf::from("/run/crated/crated.sock.ttrpc")
        );
    }

    #[test]
    fn version_one_is_refused_with_reason() {
        let err = Config::parse("version = 1\n", Path::new("/etc/x.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("version 1 is not supported"),
            "{err:#}"
        );
    }

    #[test]
    fn plugin_sections_are_kept_raw() {
        let text = "version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\npath = 5\n";
        let config = Config::parse(text, Path::new("x")).unwrap();
        assert_eq!(
            config.plugins["io.containerd.internal.v1.opt"]["path"].as_integer(),
            Some(5)
        );
    }

    #[test]
    fn unknown_keys_are_collected() {
        let text =
            "version = 2\nfrobnicate = true\n[grpc]\nadress = \"/x\"\n[plugins.\"a.b\"]\nc = 1\n";
        let config = Config::parse(text, Path::new("x")).unwrap();
        assert_eq!(config.unknown, ["frobnicate", "grpc.adress"]);
    }

    #[test]
    fn timeouts_are_go_durations() {
        let text = "version = 2\n[timeouts]\n\"io.containerd.timeout.shim.load\" = \"1m5s\"\n";
        let config = Config::parse(text, Path::new("x")).unwrap();
        assert_eq!(
            config.timeouts().unwrap()["io.containerd.timeout.shim.load"],
            std::time::Duration::from_secs(65)
        );
        let text = "version = 2\n[timeouts]\n\"io.containerd.timeout.shim.load\" = \"soon\"\n";
        let err = Config::parse(text, Path::new("x"))
            .unwrap()
            .timeouts()
            .unwrap_err();
        assert!(
            err.to_string().contains("io.containerd.timeout.shim.load"),
            "{err}"
        );
    }

    #[test]
    fn bad_types_name_the_file() {
        let err = Config::parse(
            "version = 2\nroot = 3\n",
            Path::new("/etc/crated/config.toml"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/etc/crated/config.toml"),
            "{err:#}"
        );
    }
}
