#![doc = include_str!("../README.md")]
// tonic handlers return `Result<_, tonic::Status>`.
#![allow(clippy::result_large_err)]

mod accounts;
pub mod attach;
mod batch;
mod checkpoint;
pub mod cni;
pub mod config;
pub mod container;
mod container_events;
mod container_run;
pub mod error;
mod events;
mod exec;
mod image_service;
mod image_volumes;
pub mod images;
pub mod logs;
mod metrics;
pub mod netns;
mod network;
mod pause;
mod plugin;
mod recover;
mod runtime_service;
mod runtimes;
pub mod sandbox;
mod sandbox_stats;
pub mod seccomp;
pub mod spec_opts;
mod stats;
pub mod store;
pub mod streaming;
mod usage;
pub mod userns;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crated_client::Client;
use crated_core::descriptor::Any;
use crated_core::{Error, Result};

use crate::container::CriContainer;
use crate::sandbox::Sandbox;
use crate::store::{Names, Records};

pub use plugin::registration;

/// The CRI wire types and tonic stubs (`runtime.v1`, cri-api v0.36).
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod runtime {
    /// `runtime.v1`.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/runtime.v1.rs"));
    }
}

use runtime::v1 as pb;

/// The namespace the CRI keeps everything in, as containerd's.
pub const NAMESPACE: &str = "k8s.io";

/// The CRI API version crated speaks.
pub const API_VERSION: &str = "v1";

/// The container extension holding the CRI config a sandbox or container
/// was made with (protobuf), for a restarted daemon.
pub const CONFIG_EXTENSION: &str = "io.crated.cri.config";

/// A CRI config message as a container extension.
pub(crate) fn encode_config<M: prost::Message + prost::Name>(config: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: config.encode_to_vec(),
    }
}

/// A CRI config message back from its extension.
pub(crate) fn decode_config<M: prost::Message + prost::Name + Default>(any: &Any) -> Result<M> {
    if any.type_url != M::type_url() {
        return Err(Error::invalid_argument(format!(
            "config extension holds {:?}, not {:?}",
            any.type_url,
            M::type_url()
        )));
    }
    M::decode(any.value.as_slice())
        .map_err(|e| Error::invalid_argument(format!("decode {}: {e}", any.type_url)))
}

/// A runtime's runc options as the shim takes them
/// (`containerd.runc.v1.Options`); none when all are defaults.
pub(crate) fn runc_options(options: &config::RuncOptions) -> Option<Any> {
    use crated_api::containerd::runc::v1::Options;
    let message = Options {
        binary_name: options.binary_name.clone(),
        root: options.root.clone(),
        systemd_cgroup: options.systemd_cgroup,
        no_pivot_root: options.no_pivot_root,
        no_new_keyring: options.no_new_keyring,
        shim_cgroup: options.shim_cgroup.clone(),
        io_uid: options.io_uid,
        io_gid: options.io_gid,
        criu_path: options.criu_path.clone(),
        criu_work_path: options.criu_work_path.clone(),
        ..Default::default()
    };
    (message != Options::default()).then(|| Any {
        type_url: RUNC_OPTIONS.to_owned(),
        value: prost::Message::encode_to_vec(&message),
    })
}

/// A container's runtime options as the verbose status calls show them,
/// in the JSON Go makes of containerd's `runc.v1.Options` (its proto field
/// names, zero values left out); null without options or for another
/// runtime's.
pub(crate) fn runtime_options_json(options: Option<&Any>) -> serde_json::Value {
    use crated_api::containerd::runc::v1::Options;
    let Some(any) = options.filter(|a| a.type_url.ends_with(RUNC_OPTIONS)) else {
        return serde_json::Value::Null;
    };
    let Ok(o) = <Options as prost::Message>::decode(any.value.as_slice()) else {
        return serde_json::Value::Null;
    };
    let mut all = serde_json::json!({
        "no_pivot_root": o.no_pivot_root,
        "no_new_keyring": o.no_new_keyring,
        "shim_cgroup": o.shim_cgroup,
        "io_uid": o.io_uid,
        "io_gid": o.io_gid,
        "binary_name": o.binary_name,
        "root": o.root,
        "criu_path": o.criu_path,
        "systemd_cgroup": o.systemd_cgroup,
        "criu_image_path": o.criu_image_path,
        "criu_work_path": o.criu_work_path,
    });
    if let Some(fields) = all.as_object_mut() {
        fields.retain(|_, v| *v != false && *v != "" && *v != 0);
    }
    all
}

/// The type of runc's options in an `Any`.
pub(crate) const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

/// The CRI plugin: its client (namespace `k8s.io`, in process), its
/// configuration, and what it keeps of pods and containers.
pub struct Cri {
    client: Client,
    config: Arc<config::Config>,
    images: images::Images,
    /// `<root>/io.containerd.grpc.v1.cri`.
    root: PathBuf,
    /// `<state>/io.containerd.grpc.v1.cri`.
    state: PathBuf,
    /// The pod CIDR kubelet gave (UpdateRuntimeConfig).
    pod_cidr: Mutex<String>,
    /// Names of sandboxes and containers in use.
    names: Names,
    /// Pod sandboxes by id.
    sandboxes: Arc<Records<Sandbox>>,
    /// Containers by id.
    containers: Arc<Records<CriContainer>>,
    /// Pod networking.
    network: network::Network,
    /// Runtime handlers whose runtime makes recursive read-only mounts.
    rro_handlers: std::collections::BTreeSet<String>,
    /// Runtime handlers that run pods in user namespaces of their own
    /// (`hostUsers: false`).
    userns_handlers: std::collections::BTreeSet<String>,
    /// `GetContainerEvents` subscribers' feed.
    container_events: tokio::sync::broadcast::Sender<Arc<pb::ContainerEventResponse>>,
    /// The streaming server's tokens and URL.
    streaming: streaming::Streaming,
    /// The containers' writable layers, as last measured.
    layer_usage: usage::LayerUsages,
    /// Images' account files, read by earlier container creates.
    accounts: accounts::AccountsCache,
    /// Held while a container is checkpointed: two dumps at once would
    /// each pause and resume the task under the other.
    checkpointing: tokio::sync::Mutex<()>,
    /// The base OCI specs of runtimes that name one, by runtime name.
    base_specs: std::collections::BTreeMap<String, Arc<oci_spec::runtime::Spec>>,
    /// Per pod: held while its image volumes are mounted for a container
    /// or unmounted at its stop (see `image_volumes`).
    image_volume_locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The plugin itself, for work that must outlive the call that asked
    /// for it ([`Cri::to_completion`]).
    this: std::sync::Weak<Cri>,
}

impl Cri {
    /// The plugin over `client` (whose namespace it replaces with
    /// `k8s.io`).
    pub fn new(
        client: Client,
        config: config::Config,
        root: PathBuf,
        state: PathBuf,
    ) -> Result<Arc<Self>> {
        let client = client.with_namespace(crated_core::Namespace::new(NAMESPACE)?);
        config.pull_progress_timeout()?;
        config.stream_idle_timeout()?;
        config.exec_sync_drain()?;
        config.stats_collect_period()?;
        config.registry.validate()?;
        let ip_pref = config.cni.ip_preference();
        config.warn_unsupported();
        let rro_handlers = rro_handlers(&config);
        let userns_handlers = userns_handlers(&config, &root);
        let base_specs = runtimes::load_base_specs(&config)?;
        let config = Arc::new(config);
        Ok(Arc::new_cyclic(|this| Self {
            images: images::Images::new(client.clone(), Arc::clone(&config)),
            network: network::Network::new(
                &config.cni,
                &config.containerd.runtimes,
                ip_pref,
                root.join("cni").join("cache"),
                state.join("netns"),
            ),
            client,
            config,
            root,
            state,
            pod_cidr: Mutex::new(String::new()),
            names: Names::default(),
            sandboxes: Arc::new(Records::new("sandbox")),
            containers: Arc::new(Records::new("container")),
            rro_handlers,
            userns_handlers,
            container_events: tokio::sync::broadcast::channel(container_events::BACKLOG).0,
            streaming: streaming::Streaming::default(),
            layer_usage: usage::LayerUsages::default(),
            accounts: accounts::AccountsCache::default(),
            checkpointing: tokio::sync::Mutex::new(()),
            image_volume_locks: Mutex::default(),
            base_specs,
            this: this.clone(),
        }))
    }

    /// Runs `work` to its end in a task of its own and returns what it
    /// gives. A call that changes the node (a pod run, a container
    /// started or removed) is several steps — namespaces, CNI, shims,
    /// records — and a future dropped between two of them (the caller's
    /// deadline passed, its connection closed) would leave the first
    /// without the rest and no record of them. Run apart from the call,
    /// each finishes or undoes itself as it would have; the kubelet's
    /// next look finds the outcome.
    pub(crate) async fn to_completion<T, Fut>(
        &self,
        what: &str,
        work: impl FnOnce(Arc<Cri>) -> Fut,
    ) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let cri = self
            .this
            .upgrade()
            .ok_or_else(|| Error::unavailable("the CRI plugin is shutting down"))?;
        tokio::spawn(work(cri))
            .await
            .map_err(|e| Error::unknown(format!("{what}: {e}")))?
    }

    /// Reads back the sandboxes and containers of a previous run and
    /// starts following task events; before the plugin serves.
    pub async fn start(&self) -> Result<()> {
        self.recover().await?;
        events::spawn_oom_monitor(
            std::sync::Arc::clone(&self.client.services().events),
            Arc::clone(&self.containers),
        );
        Ok(())
    }

    fn version(&self, _: pb::VersionRequest) -> pb::VersionResponse {
        pb::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "crated".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: API_VERSION.into(),
        }
    }

    async fn status(&self, request: pb::StatusRequest) -> pb::StatusResponse {
        let runtime_ready = pb::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        let network_ready = match self.network.status().await {
            Ok(()) => pb::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(e) => pb::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!("Network plugin returns error: {e}"),
            },
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            if let Ok(config) = serde_json::to_string(&*self.config) {
                info.insert("config".to_owned(), config);
            }
        }
        let handler = |name: &str| pb::RuntimeHandler {
            name: name.to_owned(),
            features: Some(pb::RuntimeHandlerFeatures {
                recursive_read_only_mounts: self.supports_rro(name),
                user_namespaces: self.userns_handlers.contains(self.handler_name(name)),
            }),
        };
        let mut runtime_handlers = vec![handler("")];
        runtime_handlers.extend(self.config.containerd.runtimes.keys().map(|n| handler(n)));
        pb::StatusResponse {
            status: Some(pb::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers,
            features: Some(pb::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        }
    }

    fn runtime_config(&self) -> pb::RuntimeConfigResponse {
        let default = self
            .config
            .containerd
            .runtimes
            .get(&self.config.containerd.default_runtime_name);
        let systemd =
            self.config.systemd_cgroup || default.is_some_and(|r| r.options.systemd_cgroup);
        let driver = if systemd {
            pb::CgroupDriver::Systemd
        } else {
            pb::CgroupDriver::Cgroupfs
        };
        pb::RuntimeConfigResponse {
            linux: Some(pb::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }
    }

    /// The kubelet's pod CIDR: kept for the CNI plugins' `ipRanges`, and
    /// the CNI config rendered from `cni.conf_template` with it when there
    /// is none yet. An empty CIDR changes nothing, as in containerd.
    async fn update_runtime_config(&self, request: pb::UpdateRuntimeConfigRequest) -> Result<()> {
        let cidr = request
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(());
        }
        let cidrs = cni::template::pod_cidrs(&cidr)?;
        if let Ok(mut pod_cidr) = self.pod_cidr.lock() {
            *pod_cidr = cidr;
        }
        let template = &self.config.cni.conf_template;
        if template.is_empty() {
            return Ok(());
        }
        self.network
            .render_template(Path::new(template), &cidrs)
            .await
            .map(|_| ())
    }

    /// Whether `name` is the configured sandbox image (kept pinned).
    fn is_sandbox_image(&self, name: &str) -> bool {
        let normalize = |n: &str| {
            crated_core::reference::parse_docker_ref(n)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| n.to_owned())
        };
        !self.config.sandbox_image.is_empty()
            && normalize(name) == normalize(&self.config.sandbox_image)
    }

    /// Whether the runtime of `handler` (the default for "") makes
    /// recursive read-only mounts.
    fn supports_rro(&self, handler: &str) -> bool {
        self.rro_handlers.contains(self.handler_name(handler))
    }

    /// Where `snapshotter` keeps its snapshots.
    async fn snapshotter_root(&self, snapshotter: &str) -> Result<String> {
        let filter = format!("type==io.containerd.snapshotter.v1,id=={snapshotter}");
        let plugins = self
            .client
            .services()
            .introspection
            .plugins(&[filter])
            .await?;
        plugins
            .first()
            .and_then(|p| p.exports.get("root").cloned())
            .ok_or_else(|| {
                Error::failed_precondition(format!("snapshotter {snapshotter:?} is not loaded"))
            })
    }

    /// Disk used by the snapshots of `k8s.io` in the CRI's snapshotter
    /// (writable layers as last measured), and where that snapshotter
    /// keeps them.
    async fn image_fs_usage(&self) -> Result<pb::FilesystemUsage> {
        let snapshotter = &self.config.containerd.snapshotter;
        let mountpoint = self.snapshotter_root(snapshotter).await?;
        let sn = self.client.snapshotter(snapshotter, None)?;
        let total = self.layer_usage.of(snapshotter).total(sn.as_ref()).await?;
        Ok(filesystem_usage(mountpoint, total))
    }
}

/// A CRI filesystem usage of `measured` on `mountpoint`.
fn filesystem_usage(mountpoint: String, measured: usage::Measured) -> pb::FilesystemUsage {
    pb::FilesystemUsage {
        timestamp: measured.timestamp,
        fs_id: Some(pb::FilesystemIdentifier { mountpoint }),
        used_bytes: Some(pb::UInt64Value {
            value: measured.bytes,
        }),
        inodes_used: Some(pb::UInt64Value {
            value: measured.inodes,
        }),
    }
}

/// The runtime handlers that run `hostUsers: false` pods: runc's (crated's
/// shim ID-maps their volumes whatever the runc, see `shim-runc`), where
/// the kernel ID-maps mounts of the filesystem holding the CRI's `root`
/// (its snapshots and pod files).
fn userns_handlers(
    config: &config::Config,
    root: &std::path::Path,
) -> std::collections::BTreeSet<String> {
    let probe = root
        .ancestors()
        .find(|dir| dir.is_dir())
        .unwrap_or(std::path::Path::new("/"));
    if !crated_core::mount::idmap::supported(probe) {
        tracing::info!(dir = %probe.display(), "no ID-mapped mounts here: pods with hostUsers: false are refused");
        return Default::default();
    }
    runc_handlers(config)
        .map(|(name, _)| name.clone())
        .collect()
}

/// The runtime handlers whose runtime is runc's shim.
fn runc_handlers(
    config: &config::Config,
) -> impl Iterator<Item = (&String, &config::RuntimeConfig)> {
    config
        .containerd
        .runtimes
        .iter()
        .filter(|(_, runtime)| runtime.runtime_type.starts_with("io.containerd.runc."))
}

/// The runtime handlers whose runc lists the `rro` mount option in `runc
/// features`, on a kernel with `mount_setattr` (5.12).
fn rro_handlers(config: &config::Config) -> std::collections::BTreeSet<String> {
    if !crated_core::kernel::at_least(5, 12) {
        return Default::default();
    }
    runc_handlers(config)
        .filter(|(_, runtime)| {
            let binary = if runtime.options.binary_name.is_empty() {
                "runc"
            } else {
                &runtime.options.binary_name
            };
            std::process::Command::new(binary)
                .arg("features")
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .and_then(|v| {
                    v.get("mountOptions")?
                        .as_array()
                        .map(|opts| opts.iter().any(|o| o == "rro"))
                })
                .unwrap_or(false)
        })
        .map(|(name, _)| name.clone())
        .collect()
}
