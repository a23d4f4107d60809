//! Pod sandboxes: the pause container holding a pod's namespaces, its
//! network, and the files its containers share (hostname, hosts,
//! resolv.conf, /dev/shm).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crated_client::spec::{self, ImageConfig, Opt, SpecContext};
use crated_client::{NewContainer, NewTask, Rootfs};
use crated_core::containers::Runtime;
use crated_core::descriptor::Any;
use crated_core::tasks::Stdio;
use crated_core::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::network::PodNetworkState;
use crate::runtime::v1 as pb;
use crate::spec_opts;
use crate::userns::PodUserns;
use crate::Cri;

/// Container label telling the CRI's sandboxes from its containers, as
/// containerd's.
pub const KIND_LABEL: &str = "io.cri-containerd.kind";
/// [`KIND_LABEL`] of a sandbox.
pub const KIND_SANDBOX: &str = "sandbox";
/// The extension holding what a restarted daemon needs of a sandbox.
pub const METADATA_EXTENSION: &str = "io.cri-containerd.sandbox.metadata";
/// Its type.
const METADATA_TYPE: &str = "crated.cri.v1.SandboxMetadata";

/// Annotations containerd's CRI puts on sandbox and container specs.
pub mod annotations {
    /// `sandbox` or `container`.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The sandbox's id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's uid.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's log directory.
    pub const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
    /// The container's name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image the container runs.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// The pod's cpu period (its overhead-free resources, for runtimes
    /// that size a VM).
    pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
    /// The pod's cpu quota.
    pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
    /// The pod's cpu shares.
    pub const SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
    /// The pod's memory limit.
    pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
}

/// The OOM score adjustment of pause containers (containerd's).
const SANDBOX_OOM_SCORE_ADJ: i32 = -998;
/// The cpu shares of pause containers (containerd's).
const SANDBOX_CPU_SHARES: u64 = 2;
/// The size of a pod's shared /dev/shm.
const SHM_SIZE: &str = "size=65536k";

/// What a restarted daemon needs to know of a sandbox, kept in its
/// container record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxMetadata {
    /// Its name (`name_namespace_uid_attempt`).
    pub name: String,
    /// The runtime handler it was run with.
    pub runtime_handler: String,
    /// Its network namespace, if it has its own.
    pub netns: Option<PathBuf>,
    /// Its IPs, first the primary.
    pub ips: Vec<String>,
    /// When it was created, in nanoseconds since the epoch.
    pub created_at: i64,
    /// The snapshotter of its snapshots (its runtime's when it was made;
    /// empty in records of older versions: its runtime's now).
    #[serde(default)]
    pub snapshotter: String,
}

/// Whether a sandbox can run containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Its pause container runs.
    Ready,
    /// Stopped (or its pause container died).
    NotReady,
}

/// A pod sandbox.
pub struct Sandbox {
    /// Its id.
    pub id: String,
    /// What it was run with, except the metadata kept below.
    pub config: pb::PodSandboxConfig,
    /// What is kept across restarts.
    pub metadata: SandboxMetadata,
    /// Its state.
    pub state: Mutex<SandboxState>,
    /// Serialises stop and remove of this sandbox.
    pub lifecycle: tokio::sync::Mutex<()>,
    /// Turns true once its pause task's exit is handled.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Sandbox {
    /// A sandbox record in `state`.
    pub fn new(
        id: String,
        config: pb::PodSandboxConfig,
        metadata: SandboxMetadata,
        state: SandboxState,
    ) -> Self {
        Self {
            id,
            config,
            metadata,
            state: Mutex::new(state),
            lifecycle: tokio::sync::Mutex::new(()),
            stopped: tokio::sync::watch::channel(state != SandboxState::Ready).0,
        }
    }

    /// Waits until its pause task's exit is handled.
    pub(crate) async fn wait_stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Its state now.
    pub fn state(&self) -> SandboxState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: SandboxState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The namespace options of the pod.
    pub fn namespace_options(&self) -> pb::NamespaceOption {
        namespace_options(&self.config)
    }

    /// Whether the pod uses the node's network.
    pub fn host_network(&self) -> bool {
        self.namespace_options().network == pb::NamespaceMode::Node as i32
    }
}

/// The namespace options of a pod's config (all Pod by default).
pub fn namespace_options(config: &pb::PodSandboxConfig) -> pb::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// containerd's sandbox name: `name_namespace_uid_attempt`.
pub fn sandbox_name(meta: &pb::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}",
        meta.name, meta.namespace, meta.uid, meta.attempt
    )
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A pod's resolv.conf from its DNS config.
fn resolv_conf(dns: &pb::DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    std::fs::write(path, content).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

impl Cri {
    /// `<root>/sandboxes/<id>`: the files the pod's containers share.
    pub(crate) fn sandbox_root(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    /// `<state>/sandboxes/<id>`: the pod's /dev/shm mount.
    pub(crate) fn sandbox_state(&self, id: &str) -> PathBuf {
        self.state.join("sandboxes").join(id)
    }

    /// The pod's shared /dev/shm, or the host's with host IPC.
    pub(crate) fn sandbox_shm(&self, sandbox: &Sandbox) -> PathBuf {
        if sandbox.namespace_options().ipc == pb::NamespaceMode::Node as i32 {
            PathBuf::from("/dev/shm")
        } else {
            self.sandbox_state(&sandbox.id).join("shm")
        }
    }

    /// The runtime for `handler` (the default runtime when empty).
    pub(crate) fn runtime_for(&self, handler: &str) -> Result<(String, Runtime)> {
        let runtime = self.handler_config(handler)?;
        let mut options = runtime.options.clone();
        options.no_pivot_root |= self.config.containerd.no_pivot;
        Ok((
            self.handler_name(handler).to_owned(),
            Runtime {
                name: runtime.runtime_type.clone(),
                options: crate::runc_options(&options),
            },
        ))
    }

    /// `RunPodSandbox`: returns the new sandbox's id.
    pub(crate) async fn run_pod_sandbox(
        &self,
        request: pb::RunPodSandboxRequest,
    ) -> Result<String> {
        let config = request
            .config
            .ok_or_else(|| Error::invalid_argument("sandbox config must be set"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Error::invalid_argument("sandbox config must include metadata"))?;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(Error::invalid_argument(
                "sandbox metadata must include name, namespace and uid",
            ));
        }
        if PodUserns::of_pod(&config)?.is_some()
            && namespace_options(&config).network == pb::NamespaceMode::Node as i32
        {
            return Err(Error::invalid_argument(
                "a pod with a user namespace of its own cannot use the node's network (hostUsers: false with hostNetwork: true)",
            ));
        }
        let id = crate::store::new_id()?;
        let name = sandbox_name(&meta);
        self.names.reserve(&name, &id)?;
        let created = self
            .create_sandbox(&id, &name, config, &request.runtime_handler)
            .await;
        match created {
            Ok(sandbox) => {
                self.sandboxes.insert(&id, sandbox);
                for kind in [
                    pb::ContainerEventType::ContainerCreatedEvent,
                    pb::ContainerEventType::ContainerStartedEvent,
                ] {
                    self.publish_container_event(&id, &id, kind).await;
                }
                Ok(id)
            }
            Err(e) => {
                self.names.release(&name, &id);
                Err(e)
            }
        }
    }

    async fn create_sandbox(
        &self,
        id: &str,
        name: &str,
        config: pb::PodSandboxConfig,
        handler: &str,
    ) -> Result<Arc<Sandbox>> {
        let (handler, runtime) = self.runtime_for(handler)?;
        let image = self.sandbox_image().await?;
        let snapshotter = self.snapshotter_for(&handler).to_owned();
        self.unpacked_in(&image, &snapshotter).await?;
        let userns = PodUserns::of_pod(&config)?;
        if userns.is_some() && !self.userns_handlers.contains(&handler) {
            return Err(Error::failed_precondition(format!(
                "runtime handler {handler:?} does not run pods with a user namespace of their own \
                 (hostUsers: false): it needs runc's shim, and the kernel must ID-map mounts of \
                 the filesystem holding crated's root"
            )));
        }
        let mut undo = Undo::default();
        let result = async {
            let options = namespace_options(&config);
            let host_network = options.network == pb::NamespaceMode::Node as i32;
            // Files the pod's containers share.
            let root = self.sandbox_root(id);
            std::fs::create_dir_all(&root)
                .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
            undo.remove_dir(root.clone());
            self.write_sandbox_files(id, &config, host_network)?;
            if options.ipc != pb::NamespaceMode::Node as i32 {
                let shm = self.sandbox_state(id).join("shm");
                mount_shm(&shm).await?;
                undo.unmount(shm);
            }
            // Its network namespace; the network in it is set up below,
            // while the pause container starts.
            let network = if host_network {
                PodNetworkState::host()
            } else {
                let netns = self.network.create_netns(&handler, userns.clone()).await?;
                let network = PodNetworkState {
                    netns: Some(netns.path().to_owned()),
                };
                undo.network(
                    (handler.clone(), id.to_owned()),
                    config.clone(),
                    network.clone(),
                );
                network
            };
            let mut metadata = SandboxMetadata {
                name: name.to_owned(),
                runtime_handler: handler.clone(),
                netns: network.netns.clone(),
                ips: Vec::new(),
                created_at: now_nanos(),
                snapshotter: snapshotter.clone(),
            };
            // The pause container.
            let image_config = image.image_config()?;
            let spec = {
                let ns = self.client.namespace().clone();
                let opts = self.sandbox_spec_options(
                    id,
                    &handler,
                    &config,
                    &image_config,
                    &network,
                    userns.as_ref(),
                )?;
                let owned_id = id.to_owned();
                spec::generate(&SpecContext::new(&ns, &owned_id), &opts)?
            };
            let mut extensions = std::collections::BTreeMap::new();
            extensions.insert(
                METADATA_EXTENSION.to_owned(),
                metadata_extension(&metadata)?,
            );
            extensions.insert(
                crate::CONFIG_EXTENSION.to_owned(),
                crate::encode_config(&config),
            );
            let new = NewContainer {
                image: image.id.clone(),
                snapshotter: snapshotter.clone(),
                rootfs: Rootfs::NewSnapshot {
                    key: id.to_owned(),
                    parent: image.chain_id.clone(),
                    labels: userns
                        .as_ref()
                        .map(PodUserns::snapshot_labels)
                        .unwrap_or_default(),
                },
                runtime,
                labels: [(KIND_LABEL.to_owned(), KIND_SANDBOX.to_owned())].into(),
                extensions,
                ..NewContainer::new(spec)
            };
            // Whatever of the container and its task came to be.
            undo.container(id.to_owned());
            let began = std::time::Instant::now();
            let task_options = NewTask {
                runtime_path: self.handler_config(&handler)?.runtime_path.clone(),
                ..NewTask::default()
            };
            let pause = async {
                let container = self.client.create_container(id, new).await?;
                let task = container
                    .new_task(Stdio::default(), false, task_options)
                    .await?;
                task.start().await?;
                Ok::<_, Error>((container, task, began.elapsed()))
            };
            // The CNI ADDs need only the namespace, not a process in it:
            // they run while the pause container starts, the two longest
            // steps of a pod start side by side.
            let pod_cidr = self.pod_cidr.lock().map(|c| c.clone()).unwrap_or_default();
            let add = async {
                let ips = match &network.netns {
                    Some(netns) => {
                        let pod = (handler.as_str(), id);
                        self.network.add(pod, &config, netns, &pod_cidr).await
                    }
                    None => Ok(Vec::new()),
                };
                (ips, began.elapsed())
            };
            let (started, (ips, network_took)) = tokio::join!(pause, add);
            let (mut container, task, pause_took) = started?;
            // Which of the two is the longer step of a pod start.
            tracing::debug!(
                id,
                pause_micros = u64::try_from(pause_took.as_micros()).unwrap_or(u64::MAX),
                network_micros = u64::try_from(network_took.as_micros()).unwrap_or(u64::MAX),
                "pause container started and pod network set up"
            );
            metadata.ips = ips?;
            if !metadata.ips.is_empty() {
                container
                    .set_extension(METADATA_EXTENSION, metadata_extension(&metadata)?)
                    .await?;
            }
            let sandbox = Arc::new(Sandbox::new(
                id.to_owned(),
                config,
                metadata,
                SandboxState::Ready,
            ));
            self.watch_sandbox(Arc::clone(&sandbox), task);
            Ok(sandbox)
        }
        .await;
        match result {
            Ok(sandbox) => Ok(sandbox),
            Err(e) => {
                undo.run(self).await;
                Err(e)
            }
        }
    }

    /// crated's own pause image (`sandbox_image = ""`), made on first use.
    async fn builtin_pause_image(&self) -> Result<crate::images::CriImage> {
        if let Some(image) = self.images.get(crate::pause::BUILTIN_PAUSE).await? {
            return Ok(image);
        }
        let labels = std::collections::BTreeMap::from([
            (
                crate::images::IMAGE_LABEL.to_owned(),
                crate::images::IMAGE_LABEL_MANAGED.to_owned(),
            ),
            (
                crate::images::PINNED_LABEL.to_owned(),
                crate::images::PINNED.to_owned(),
            ),
        ]);
        crate::pause::create(&self.client, &self.config.containerd.snapshotter, &labels)
            .await
            .map_err(|e| e.context("make crated's built-in pause image"))?;
        self.images
            .get(crate::pause::BUILTIN_PAUSE)
            .await?
            .ok_or_else(|| Error::not_found("the built-in pause image vanished after its creation"))
    }

    /// The sandbox image, pulled if it is not there yet.
    async fn sandbox_image(&self) -> Result<crate::images::CriImage> {
        let name = &self.config.sandbox_image;
        if name.is_empty() {
            return self.builtin_pause_image().await;
        }
        match self.images.get(name).await? {
            Some(image) => Ok(image),
            None => self
                .images
                .pull(name, None, true, &self.config.containerd.snapshotter)
                .await
                .map_err(|e| e.context(format!("sandbox image {name:?}"))),
        }
    }

    fn write_sandbox_files(
        &self,
        id: &str,
        config: &pb::PodSandboxConfig,
        host_network: bool,
    ) -> Result<()> {
        let root = self.sandbox_root(id);
        let hostname = if host_network || config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        write_file(&root.join("hostname"), format!("{hostname}\n").as_bytes())?;
        // The node's hosts file, as containerd's: kubelet mounts its own
        // over it for pods that do not use the node's network.
        let hosts = std::fs::read("/etc/hosts").map_err(|e| Error::io("read /etc/hosts", e))?;
        write_file(&root.join("hosts"), &hosts)?;
        let resolv = config
            .dns_config
            .as_ref()
            .map(resolv_conf)
            .filter(|r| !r.is_empty());
        let resolv = match resolv {
            Some(r) => r.into_bytes(),
            None => std::fs::read("/etc/resolv.conf")
                .map_err(|e| Error::io("read /etc/resolv.conf", e))?,
        };
        write_file(&root.join("resolv.conf"), &resolv)
    }

    /// The spec options of a pod's pause container, as containerd's CRI
    /// builds them.
    fn sandbox_spec_options(
        &self,
        id: &str,
        handler: &str,
        config: &pb::PodSandboxConfig,
        image: &ImageConfig,
        network: &PodNetworkState,
        userns: Option<&PodUserns>,
    ) -> Result<Vec<Opt>> {
        let meta = config.metadata.clone().unwrap_or_default();
        let options = namespace_options(config);
        let linux = config.linux.clone().unwrap_or_default();
        let security = linux.security_context.clone().unwrap_or_default();
        let mut args = image.entrypoint.clone().unwrap_or_default();
        args.extend(image.cmd.clone().unwrap_or_default());
        if args.is_empty() {
            return Err(Error::invalid_argument(
                "the sandbox image has neither entrypoint nor cmd",
            ));
        }
        // The pause container starts from the default spec whatever the
        // runtime's base_runtime_spec, as in containerd.
        let runtime = self.handler_config(handler)?;
        let mut opts: Vec<Opt> = vec![
            spec_opts::without_mount("/run"),
            spec_opts::without_default_security(),
            spec::with_env(image.env.clone().unwrap_or_default()),
            spec::with_readonly_rootfs(true),
            spec::with_process_args(args),
        ];
        if !config.hostname.is_empty() {
            opts.push(spec::with_hostname(config.hostname.clone()));
        }
        if !image.working_dir.is_empty() {
            opts.push(spec::with_process_cwd(image.working_dir.clone()));
        }
        if self.config.disable_cgroup {
            opts.push(spec_opts::without_cgroups());
        } else if !linux.cgroup_parent.is_empty() {
            opts.push(spec::with_cgroup_path(spec_opts::cgroups_path(
                &linux.cgroup_parent,
                id,
            )));
        }
        match (
            &network.netns,
            options.network == pb::NamespaceMode::Node as i32,
        ) {
            (_, true) => {
                opts.push(spec::without_namespace(LinuxNamespaceType::Network));
                opts.push(spec::without_namespace(LinuxNamespaceType::Uts));
            }
            (Some(path), false) => {
                opts.push(spec::with_namespace_path(LinuxNamespaceType::Network, path))
            }
            (None, false) => {}
        }
        if let Some(userns) = userns {
            // The one its network namespace was made in, pinned beside it.
            let pinned = network
                .netns
                .as_ref()
                .map(|path| crate::netns::NetNs::from_path(path.clone()).userns_path());
            opts.push(spec_opts::with_user_namespace(pinned, userns)?);
        }
        if options.pid == pb::NamespaceMode::Node as i32 {
            opts.push(spec::without_namespace(LinuxNamespaceType::Pid));
        }
        let shm = if options.ipc == pb::NamespaceMode::Node as i32 {
            opts.push(spec::without_namespace(LinuxNamespaceType::Ipc));
            "/dev/shm".to_owned()
        } else {
            self.sandbox_state(id).join("shm").display().to_string()
        };
        // As containerd mounts them: nosuid, nodev and noexec also keep
        // the read-only remount within what a bind of the pod's shm tmpfs
        // (made with those flags) may be remounted with inside a user
        // namespace, where they are locked.
        let ro = ["rbind", "ro", "nosuid", "nodev", "noexec"].map(str::to_owned);
        opts.push(spec::with_mounts(vec![
            spec::mount_of("bind", &shm, "/dev/shm", &ro),
            spec::mount_of(
                "bind",
                &self
                    .sandbox_root(id)
                    .join("resolv.conf")
                    .display()
                    .to_string(),
                "/etc/resolv.conf",
                &ro,
            ),
        ]));
        let mut sysctls: HashMap<String, String> = linux.sysctls.clone();
        if options.network != pb::NamespaceMode::Node as i32 {
            if self.config.enable_unprivileged_ports {
                sysctls
                    .entry("net.ipv4.ip_unprivileged_port_start".into())
                    .or_insert_with(|| "0".into());
            }
            // Its group range must be mapped in the pod's user namespace,
            // which the node's full range is not (containerd skips it too).
            if self.config.enable_unprivileged_icmp && userns.is_none() {
                sysctls
                    .entry("net.ipv4.ping_group_range".into())
                    .or_insert_with(|| "0 2147483647".into());
            }
        }
        if !sysctls.is_empty() {
            opts.push(spec::with_sysctls(sysctls));
        }
        let mut resources = LinuxResources::default();
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_shares(Some(SANDBOX_CPU_SHARES));
        resources.set_cpu(Some(cpu));
        opts.push(spec::with_resources(resources));
        opts.push(spec::with_oom_score_adj(
            spec_opts::restricted_oom_score_adj(
                SANDBOX_OOM_SCORE_ADJ,
                self.config.restrict_oom_score_adj,
            )?,
        ));
        let user = spec_opts::user_string(
            "",
            security.run_as_user.as_ref().map(|u| u.value),
            security.run_as_group.as_ref().map(|g| g.value),
        )?;
        let user = if user.is_empty() {
            image.user.clone()
        } else {
            user
        };
        if !user.is_empty() {
            opts.push(spec::with_user(user));
        }
        opts.push(spec_opts::with_supplemental_groups(
            &security.supplemental_groups,
            false,
        )?);
        // The deprecated profile path still comes from older kubelets.
        #[allow(deprecated)]
        let legacy =
            self.seccomp_or_unset(security.seccomp.as_ref(), &security.seccomp_profile_path);
        if let Some(seccomp) =
            spec_opts::with_cri_seccomp(security.seccomp.as_ref(), legacy, security.privileged)?
        {
            opts.push(seccomp);
        }
        // Passed through first: the CRI's own annotations win.
        let mut notes: HashMap<String, String> =
            crate::runtimes::passthrough(&config.annotations, &runtime.pod_annotations)
                .into_iter()
                .collect();
        notes.insert(annotations::CONTAINER_TYPE.into(), "sandbox".into());
        notes.insert(annotations::SANDBOX_ID.into(), id.to_owned());
        notes.insert(
            annotations::SANDBOX_NAMESPACE.into(),
            meta.namespace.clone(),
        );
        notes.insert(annotations::SANDBOX_UID.into(), meta.uid.clone());
        notes.insert(annotations::SANDBOX_NAME.into(), meta.name.clone());
        notes.insert(
            annotations::SANDBOX_LOG_DIR.into(),
            config.log_directory.clone(),
        );
        if let Some(r) = &linux.resources {
            notes.insert(
                annotations::SANDBOX_CPU_PERIOD.into(),
                r.cpu_period.to_string(),
            );
            notes.insert(
                annotations::SANDBOX_CPU_QUOTA.into(),
                r.cpu_quota.to_string(),
            );
            notes.insert(
                annotations::SANDBOX_CPU_SHARES.into(),
                r.cpu_shares.to_string(),
            );
            notes.insert(
                annotations::SANDBOX_MEMORY.into(),
                r.memory_limit_in_bytes.to_string(),
            );
        }
        opts.push(spec::with_annotations(notes));
        Ok(opts)
    }

    /// `StopPodSandbox`: its containers stopped, its pause container
    /// killed, its network torn down, its image volumes unmounted.
    /// Stopping what is stopped, or gone, is not an error.
    pub(crate) async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(sandbox) => sandbox,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lifecycle = sandbox.lifecycle.lock().await;
        for container in self.containers_of(&sandbox.id) {
            self.stop_container_now(&container, Duration::ZERO).await?;
        }
        if let Some(task) = self.load_task(&sandbox.id).await? {
            if let Err(e) = task.kill(libc::SIGKILL as u32, true).await {
                if !e.is_not_found() {
                    return Err(e.context(format!("kill sandbox {:?}", sandbox.id)));
                }
            }
            // Its watcher deletes the task and says so.
            tokio::time::timeout(Duration::from_secs(60), sandbox.wait_stopped())
                .await
                .map_err(|_| {
                    Error::deadline_exceeded(format!(
                        "the pause process of sandbox {:?} did not exit after SIGKILL",
                        sandbox.id
                    ))
                })?;
        }
        if let Some(netns) = &sandbox.metadata.netns {
            let runtime = self.handler_name(&sandbox.metadata.runtime_handler);
            self.network
                .teardown((runtime, &sandbox.id), &sandbox.config, netns)
                .await?;
        }
        let shm = self.sandbox_state(&sandbox.id).join("shm");
        unmount_shm(&shm).await?;
        self.unmount_image_volumes(&sandbox.id).await?;
        sandbox.set_state(SandboxState::NotReady);
        Ok(())
    }

    async fn kill_sandbox_task(&self, id: &str) -> Result<()> {
        let container = match self.client.load_container(id).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let task = match container.task().await {
            Ok(task) => task,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Err(e) = task.kill(libc::SIGKILL as u32, true).await {
            if !e.is_not_found() {
                tracing::debug!(id, error = %e, "kill sandbox task");
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), task.wait()).await;
        match task.delete().await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `RemovePodSandbox`: stopped (if it was not), its containers
    /// removed, its pause container, snapshot and files deleted, its name
    /// released. Removing what is gone is not an error.
    pub(crate) async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(sandbox) => sandbox,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_sandbox(&sandbox.id).await?;
        let _lifecycle = sandbox.lifecycle.lock().await;
        for container in self.containers_of(&sandbox.id) {
            self.remove_container(&container.id).await?;
        }
        match self.client.load_container(&sandbox.id).await {
            Ok(container) => container.delete(true).await?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        for dir in [
            self.sandbox_root(&sandbox.id),
            self.sandbox_state(&sandbox.id),
        ] {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("remove {}", dir.display()), e))
                }
                _ => {}
            }
        }
        self.release_image_volumes(&sandbox.id).await?;
        self.sandboxes.remove(&sandbox.id);
        self.names.release(&sandbox.metadata.name, &sandbox.id);
        self.publish_container_event(
            &sandbox.id,
            &sandbox.id,
            pb::ContainerEventType::ContainerDeletedEvent,
        )
        .await;
        Ok(())
    }

    /// The legacy seccomp profile of a pod or container: its own, or
    /// `unset_seccomp_profile` when it asks for none at all.
    pub(crate) fn seccomp_or_unset<'a>(
        &'a self,
        profile: Option<&pb::SecurityProfile>,
        legacy: &'a str,
    ) -> &'a str {
        if profile.is_none() && legacy.is_empty() {
            &self.config.unset_seccomp_profile
        } else {
            legacy
        }
    }

    /// `UpdatePodSandboxResources`: the kubelet has resized the pod's
    /// cgroup itself before it calls; containerd hands the new figures to
    /// its NRI plugins and nothing else, and crated has no NRI. So the
    /// call is acknowledged for a pod that exists (NotFound otherwise),
    /// and the pod's containers keep the resources their own updates set.
    pub(crate) fn update_pod_sandbox_resources(
        &self,
        request: &pb::UpdatePodSandboxResourcesRequest,
    ) -> Result<()> {
        let sandbox = self.sandboxes.get(&request.pod_sandbox_id)?;
        tracing::debug!(
            id = sandbox.id,
            resources = ?request.resources,
            overhead = ?request.overhead,
            "pod resources updated by the kubelet"
        );
        Ok(())
    }

    /// A sandbox as `ListPodSandbox` reports it.
    pub(crate) fn sandbox_to_pb(&self, sandbox: &Sandbox) -> pb::PodSandbox {
        pb::PodSandbox {
            id: sandbox.id.clone(),
            metadata: sandbox.config.metadata.clone(),
            state: sandbox_state_pb(sandbox.state()) as i32,
            created_at: sandbox.metadata.created_at,
            labels: sandbox.config.labels.clone(),
            annotations: sandbox.config.annotations.clone(),
            runtime_handler: sandbox.metadata.runtime_handler.clone(),
        }
    }

    /// `PodSandboxStatus`.
    pub(crate) async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<pb::PodSandboxStatusResponse> {
        let sandbox = self.sandboxes.get(id)?;
        let mut ips = sandbox.metadata.ips.iter();
        let network = pb::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| pb::PodIp { ip: ip.clone() }).collect(),
        };
        let status = pb::PodSandboxStatus {
            id: sandbox.id.clone(),
            metadata: sandbox.config.metadata.clone(),
            state: sandbox_state_pb(sandbox.state()) as i32,
            created_at: sandbox.metadata.created_at,
            network: Some(network),
            linux: Some(pb::LinuxPodSandboxStatus {
                namespaces: Some(pb::Namespace {
                    options: Some(sandbox.namespace_options()),
                }),
            }),
            labels: sandbox.config.labels.clone(),
            annotations: sandbox.config.annotations.clone(),
            runtime_handler: sandbox.metadata.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if verbose {
            info.insert("info".to_owned(), self.sandbox_info(&sandbox).await?);
        }
        Ok(pb::PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: Vec::new(),
            timestamp: now_nanos(),
        })
    }

    /// The verbose `info` of `PodSandboxStatus` with containerd's fields,
    /// which `crictl inspectp` shows (`.info.pid` is how people enter a
    /// pod's namespaces): the pause process and its status, whether the
    /// network namespace is gone, the image, snapshot and runtime of the
    /// pause container, the pod's config and the pause container's spec,
    /// what its CNI networks gave it; and crated's own record of the
    /// sandbox.
    async fn sandbox_info(&self, sandbox: &Sandbox) -> Result<String> {
        let record = self.client.load_container(&sandbox.id).await?;
        let tasks = &self.client.services().tasks;
        let (pid, status) = match tasks.get(self.client.namespace(), &sandbox.id, "").await {
            Ok(process) => (process.pid, process.status.as_str()),
            // As containerd's: no task is a deleted process.
            Err(e) if e.is_not_found() => (0, "deleted"),
            Err(e) => return Err(e),
        };
        let r = record.record();
        let details = serde_json::json!({
            "pid": pid,
            "processStatus": status,
            "netNamespaceClosed": sandbox.metadata.netns.as_ref().is_some_and(|p| !p.exists()),
            "image": r.image,
            "snapshotKey": r.snapshot_key,
            "snapshotter": r.snapshotter,
            "runtimeHandler": sandbox.metadata.runtime_handler,
            "runtimeType": r.runtime.name,
            "runtimeOptions": crate::runtime_options_json(r.runtime.options.as_ref()),
            "config": sandbox.config,
            "runtimeSpec": record.spec().ok(),
            "cniResult": self.network.cni_result(&sandbox.id)?,
            "sandboxID": sandbox.id,
            "metadata": sandbox.metadata,
            "netNamespace": sandbox.metadata.netns,
        });
        Ok(details.to_string())
    }

    /// `ListPodSandbox`.
    pub(crate) fn list_pod_sandbox(
        &self,
        filter: Option<pb::PodSandboxFilter>,
    ) -> Vec<pb::PodSandbox> {
        let mut out: Vec<pb::PodSandbox> = self
            .sandboxes
            .all()
            .iter()
            .filter(|s| match &filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || s.id.starts_with(&f.id))
                        && f.state
                            .as_ref()
                            .is_none_or(|st| st.state == sandbox_state_pb(s.state()) as i32)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| s.config.labels.get(k) == Some(v))
                }
            })
            .map(|s| self.sandbox_to_pb(s))
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }
}

/// A sandbox state as its wire value.
pub fn sandbox_state_pb(state: SandboxState) -> pb::PodSandboxState {
    match state {
        SandboxState::Ready => pb::PodSandboxState::SandboxReady,
        SandboxState::NotReady => pb::PodSandboxState::SandboxNotready,
    }
}

/// Mounts the pod's shared /dev/shm (tmpfs) at `path`.
async fn mount_shm(path: &Path) -> Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        nix::mount::mount(
            Some("shm"),
            &path,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOEXEC
                | nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV,
            Some(format!("mode=1777,{SHM_SIZE}").as_str()),
        )
        .map_err(|e| Error::io(format!("mount shm on {}", path.display()), e.into()))
    })
    .await
    .map_err(|e| Error::unknown(format!("mount shm: {e}")))?
}

/// The sandbox metadata as the pause container's extension.
fn metadata_extension(metadata: &SandboxMetadata) -> Result<Any> {
    Ok(Any {
        type_url: METADATA_TYPE.to_owned(),
        value: serde_json::to_vec(metadata)
            .map_err(|e| Error::unknown(format!("encode sandbox metadata: {e}")))?,
    })
}

/// Unmounts a pod's /dev/shm; one that is not mounted is fine.
async fn unmount_shm(path: &Path) -> Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io(format!("unmount {}", path.display()), e.into())),
        }
    })
    .await
    .map_err(|e| Error::unknown(format!("unmount shm: {e}")))?
}

/// What a failed `RunPodSandbox` must take back, in reverse order.
#[derive(Default)]
struct Undo(Vec<UndoStep>);

enum UndoStep {
    RemoveDir(PathBuf),
    Unmount(PathBuf),
    /// A pod's network: (its runtime, its id), its config, what it came to.
    Network((String, String), Box<pb::PodSandboxConfig>, PodNetworkState),
    Container(String),
}

impl Undo {
    fn remove_dir(&mut self, path: PathBuf) {
        self.0.push(UndoStep::RemoveDir(path));
    }
    fn unmount(&mut self, path: PathBuf) {
        self.0.push(UndoStep::Unmount(path));
    }
    fn network(
        &mut self,
        pod: (String, String),
        config: pb::PodSandboxConfig,
        network: PodNetworkState,
    ) {
        self.0
            .push(UndoStep::Network(pod, Box::new(config), network));
    }
    fn container(&mut self, id: String) {
        self.0.push(UndoStep::Container(id));
    }

    async fn run(self, cri: &Cri) {
        for step in self.0.into_iter().rev() {
            let outcome = match step {
                UndoStep::RemoveDir(path) => tokio::fs::remove_dir_all(&path)
                    .await
                    .map_err(|e| Error::io(format!("remove {}", path.display()), e)),
                UndoStep::Unmount(path) => unmount_shm(&path).await,
                UndoStep::Network((runtime, id), config, network) => match &network.netns {
                    Some(netns) => cri.network.teardown((&runtime, &id), &config, netns).await,
                    None => Ok(()),
                },
                UndoStep::Container(id) => {
                    async {
                        cri.kill_sandbox_task(&id).await?;
                        match cri.client.load_container(&id).await {
                            Ok(container) => container.delete(true).await,
                            // Never made: the failure came first.
                            Err(e) if e.is_not_found() => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    .await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "cleaning up after a failed RunPodSandbox");
            }
        }
    }
}

impl Cri {
    /// Marks the sandbox not ready when its pause process exits, deletes
    /// the exited task and sends the pod's stop event.
    pub(crate) fn watch_sandbox(&self, sandbox: Arc<Sandbox>, task: crated_client::Task) {
        let cri = self.this.clone();
        tokio::spawn(async move {
            match task.wait().await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                // Shutting down: a restart recovers the state.
                Err(_) => return,
            }
            sandbox.set_state(SandboxState::NotReady);
            if let Err(e) = task.delete().await {
                if !e.is_not_found() {
                    tracing::warn!(id = sandbox.id, error = %e, "delete exited sandbox task");
                }
            }
            // The event first, as for a container: a removal waiting for
            // the stop must not leave it without the pod's status.
            if let Some(cri) = cri.upgrade() {
                cri.publish_container_event(
                    &sandbox.id,
                    &sandbox.id,
                    pb::ContainerEventType::ContainerStoppedEvent,
                )
                .await;
            }
            sandbox.stopped.send_replace(true);
        });
    }
}
