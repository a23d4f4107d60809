//! CRI containers: what the CRI keeps of each (its config, metadata and a
//! status that survives restarts), and CreateContainer, RemoveContainer,
//! ContainerStatus and ListContainers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crated_client::cio::Fifos;
use crated_client::spec::{self, Accounts, ImageConfig, Opt, SpecContext};
use crated_client::{NewContainer, Rootfs};
use crated_core::descriptor::Any;
use crated_core::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::runtime::v1 as pb;
use crate::sandbox::{annotations, Sandbox, KIND_LABEL};
use crate::spec_opts;
use crate::userns::PodUserns;
use crate::Cri;

/// [`KIND_LABEL`] of a container.
pub const KIND_CONTAINER: &str = "container";
/// The extension holding what a restarted daemon needs of a container.
pub const METADATA_EXTENSION: &str = "io.cri-containerd.container.metadata";
const METADATA_TYPE: &str = "crated.cri.v1.ContainerMetadata";
/// Snapshot labels a container's annotations may pass on (containerd's
/// `snapshots.FilterInheritedLabels`).
const INHERITED_LABEL_PREFIX: &str = "containerd.io/snapshot/";

/// The exit code and reason of a container whose start failed
/// (containerd's).
pub const START_ERROR_EXIT_CODE: i32 = 128;
/// See [`START_ERROR_EXIT_CODE`].
pub const START_ERROR_REASON: &str = "StartError";
/// The exit code of a container whose end was not seen.
pub const UNKNOWN_EXIT_CODE: i32 = 255;
/// The reason of a container the kernel killed for memory.
pub const OOM_REASON: &str = "OOMKilled";

/// What a restarted daemon needs to know of a container, kept in its
/// container record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerMetadata {
    /// Its unique name (`name_pod_namespace_uid_attempt`).
    pub name: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// The image id (config digest) it runs.
    pub image_ref: String,
    /// Its CRI log file, if it logs.
    pub log_path: String,
    /// The signal that stops it (the config's, else the image's).
    pub stop_signal: String,
    /// The identity its process runs with.
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

/// A process's uid, gid and supplementary groups, as its spec has them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessUser {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
}

/// Where a container is in its life, persisted in its status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Its init pid while it runs.
    pub pid: u32,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// Nanoseconds since the epoch; 0 until started.
    pub started_at: i64,
    /// Nanoseconds since the epoch; 0 until it exited.
    pub finished_at: i64,
    /// Its exit code once exited.
    pub exit_code: i32,
    /// Why it is in its state (`OOMKilled`, `StartError`, …).
    pub reason: String,
    /// More about it.
    pub message: String,
    /// Its resources, a `LinuxContainerResources` message.
    #[serde(default)]
    pub resources: Vec<u8>,
    /// A start is in progress.
    #[serde(skip)]
    pub starting: bool,
    /// A remove is in progress.
    #[serde(skip)]
    pub removing: bool,
    /// Its task's state could not be learned after a restart.
    #[serde(skip)]
    pub unknown: bool,
}

impl ContainerStatus {
    /// Its CRI state.
    pub fn state(&self) -> pb::ContainerState {
        if self.unknown {
            pb::ContainerState::ContainerUnknown
        } else if self.finished_at != 0 {
            pb::ContainerState::ContainerExited
        } else if self.started_at != 0 {
            pb::ContainerState::ContainerRunning
        } else {
            pb::ContainerState::ContainerCreated
        }
    }

    /// The resources it was given.
    pub fn resources(&self) -> Option<pb::LinuxContainerResources> {
        (!self.resources.is_empty())
            .then(|| pb::LinuxContainerResources::decode(self.resources.as_slice()).ok())
            .flatten()
    }
}

/// A container's stdio and log writer.
#[derive(Default)]
pub struct ContainerIo {
    /// The fifos its task writes to (and reads stdin from).
    pub stdio: crated_core::tasks::Stdio,
    /// Writes its output into its log while it runs.
    pub log: Option<crate::logs::LogWriter>,
    /// Reopens its log (ReopenContainerLog).
    pub reopener: Option<crate::logs::Reopener>,
    /// The write end of its stdin, held so it does not read end-of-file
    /// until an attach closes it.
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    /// Copies of its output for attached clients.
    pub output: crate::attach::OutputHub,
}

/// A CRI container.
pub struct CriContainer {
    /// Its id.
    pub id: String,
    /// What is kept across restarts.
    pub metadata: ContainerMetadata,
    /// What it was created with.
    pub config: pb::ContainerConfig,
    status: Mutex<ContainerStatus>,
    /// `<root>/containers/<id>/status`.
    status_file: PathBuf,
    /// Turns true once its exit is handled.
    stopped: watch::Sender<bool>,
    /// Its io.
    pub io: tokio::sync::Mutex<ContainerIo>,
    /// A stop with a grace period has sent its signal (sent once).
    pub stop_signaled: AtomicBool,
    /// Its most recent CPU sample (timestamp, total usage), for
    /// `usage_nano_cores`.
    pub cpu_sample: Mutex<Option<(i64, u64)>>,
}

impl CriContainer {
    /// A container record with `status`, persisted in `status_file`.
    pub fn new(
        id: String,
        metadata: ContainerMetadata,
        config: pb::ContainerConfig,
        status: ContainerStatus,
        status_file: PathBuf,
        io: ContainerIo,
    ) -> Self {
        let exited = status.state() == pb::ContainerState::ContainerExited;
        Self {
            id,
            metadata,
            config,
            status: Mutex::new(status),
            status_file,
            stopped: watch::channel(exited).0,
            io: tokio::sync::Mutex::new(io),
            stop_signaled: AtomicBool::new(false),
            cpu_sample: Mutex::new(None),
        }
    }

    /// Its status now.
    pub fn status(&self) -> ContainerStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes its status in memory only (flags that do not persist).
    pub fn update_volatile(
        &self,
        change: impl FnOnce(&mut ContainerStatus) -> Result<()>,
    ) -> Result<()> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = status.clone();
        change(&mut next)?;
        *status = next;
        Ok(())
    }

    /// Changes its status and writes it to disk before returning; on a
    /// failure (of `change` or of the write) the status is as it was.
    pub fn update(&self, change: impl FnOnce(&mut ContainerStatus) -> Result<()>) -> Result<()> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = status.clone();
        change(&mut next)?;
        write_status(&self.status_file, &next)?;
        *status = next;
        Ok(())
    }

    /// Marks its exit handled: stops waiting.
    pub fn mark_stopped(&self) {
        self.stopped.send_replace(true);
    }

    /// Waits until its exit is handled.
    pub async fn wait_stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Its id, metadata, labels and annotations, as stats report them.
    pub fn attributes(&self) -> pb::ContainerAttributes {
        pb::ContainerAttributes {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
        }
    }
}

/// Writes `status` to `path` durably (a crash leaves the old status or
/// the new one).
pub fn write_status(path: &Path, status: &ContainerStatus) -> Result<()> {
    let data = serde_json::to_vec(status)
        .map_err(|e| Error::unknown(format!("encode container status: {e}")))?;
    crated_core::fs::write_durably(path, &data, 0o600)
}

/// Reads a status written by [`write_status`].
pub fn read_status(path: &Path) -> Result<ContainerStatus> {
    let data = std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&data)
        .map_err(|e| Error::unknown(format!("container status {}: {e}", path.display())))
}

/// containerd's container name: `name_pod_namespace_uid_attempt`.
pub fn container_name(c: &pb::ContainerMetadata, s: &pb::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    nanos(std::time::SystemTime::now())
}

/// `t` in nanoseconds since the epoch.
pub fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether `config` mounts something on `destination`.
fn mounts_on(config: &pb::ContainerConfig, destination: &str) -> bool {
    let clean = |p: &str| Path::new(p).components().collect::<PathBuf>();
    config
        .mounts
        .iter()
        .any(|m| clean(&m.container_path) == clean(destination))
}

/// containerd's `WithProcessArgs`: the config's command and args, the
/// image's entrypoint and cmd filling what the config leaves out.
fn process_args(config: &pb::ContainerConfig, image: &ImageConfig) -> Result<Vec<String>> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint.clone().unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(Error::invalid_argument(
            "no command specified: the config and the image give none",
        ));
    }
    Ok(command)
}

/// A signal's name as the CRI enum gives it, or `None` for the runtime's
/// default.
fn config_stop_signal(config: &pb::ContainerConfig) -> Option<String> {
    let signal = pb::Signal::try_from(config.stop_signal).ok()?;
    (signal != pb::Signal::RuntimeDefault).then(|| signal.as_str_name().to_owned())
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(name: &str) -> Result<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Ok(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(offset) = full.strip_prefix("SIGRTMIN") {
        let base = libc::SIGRTMIN();
        let n = match offset {
            "" => 0,
            o => o
                .trim_start_matches('+')
                .parse::<i32>()
                .map_err(|_| bad_signal(name))?,
        };
        return Ok(base + n);
    }
    if let Some(offset) = full.strip_prefix("SIGRTMAX") {
        let base = libc::SIGRTMAX();
        let n = match offset {
            "" => 0,
            o => o
                .trim_start_matches('-')
                .parse::<i32>()
                .map_err(|_| bad_signal(name))?,
        };
        return Ok(base - n);
    }
    let alias = match full.as_str() {
        "SIGCLD" => "SIGCHLD",
        "SIGPOLL" => "SIGIO",
        "SIGIOT" => "SIGABRT",
        other => other,
    };
    alias
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad_signal(name))
}

fn bad_signal(name: &str) -> Error {
    Error::invalid_argument(format!("unknown signal {name:?}"))
}

/// Everything `CreateContainer` needs besides the request.
struct Plan {
    id: String,
    name: String,
    config: pb::ContainerConfig,
    sandbox_config: pb::PodSandboxConfig,
    sandbox: Arc<Sandbox>,
    sandbox_pid: u32,
    image: crate::images::CriImage,
    image_config: ImageConfig,
    /// Image volumes: container path → host directory.
    volumes: Vec<(String, PathBuf)>,
    /// The pod's user namespace, when it has its own.
    userns: Option<PodUserns>,
}

impl Cri {
    /// `<root>/containers/<id>`: its status file and image volumes.
    pub(crate) fn container_root(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// `<state>/containers/<id>`: its fifos.
    pub(crate) fn container_state(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }

    /// The containers of sandbox `id`.
    pub(crate) fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<CriContainer>> {
        self.containers
            .all()
            .into_iter()
            .filter(|c| c.metadata.sandbox_id == sandbox_id)
            .collect()
    }

    /// The statuses of the sandbox's containers (one gone meanwhile is left
    /// out).
    pub(crate) async fn container_statuses_of(&self, sandbox_id: &str) -> Vec<pb::ContainerStatus> {
        let images = self.image_snapshot().await;
        let mut statuses = Vec::new();
        for container in self.containers_of(sandbox_id) {
            if let Ok(status) = self.status_with(&container.id, false, &images).await {
                statuses.extend(status.status);
            }
        }
        statuses
    }

    /// The images, for a call that shows many containers'. A store that
    /// cannot list them shows each container with the image it was
    /// created with, as when its image is gone.
    async fn image_snapshot(&self) -> crate::images::Snapshot {
        match self.images.snapshot().await {
            Ok(images) => images,
            Err(e) => {
                tracing::warn!(error = %e, "list images for container statuses");
                crate::images::Snapshot::default()
            }
        }
    }

    /// The pid of the sandbox's pause process; FailedPrecondition if it
    /// does not run.
    pub(crate) async fn sandbox_pid(&self, sandbox: &Sandbox) -> Result<u32> {
        let not_running =
            || Error::failed_precondition(format!("sandbox {:?} is not running", sandbox.id));
        if sandbox.state() != crate::sandbox::SandboxState::Ready {
            return Err(not_running());
        }
        let container = self.client.load_container(&sandbox.id).await?;
        let task =
            container
                .task()
                .await
                .map_err(|e| if e.is_not_found() { not_running() } else { e })?;
        Ok(task.pid())
    }

    /// `CreateContainer`: returns the new container's id.
    pub(crate) async fn create_container(
        &self,
        request: pb::CreateContainerRequest,
    ) -> Result<String> {
        let config = request
            .config
            .ok_or_else(|| Error::invalid_argument("container config must be set"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Error::invalid_argument("container config must include metadata"))?;
        if meta.name.is_empty() {
            return Err(Error::invalid_argument(
                "container metadata must include a name",
            ));
        }
        let sandbox = self.sandboxes.get(&request.pod_sandbox_id)?;
        let userns =
            PodUserns::of_container(&config, PodUserns::of_pod(&sandbox.config)?.as_ref())?;
        let sandbox_config = request
            .sandbox_config
            .unwrap_or_else(|| sandbox.config.clone());
        let sandbox_meta = sandbox_config.metadata.clone().unwrap_or_default();
        let sandbox_pid = self.sandbox_pid(&sandbox).await?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::invalid_argument(
                "container config must name an image",
            ));
        }
        let image = self.images.get(&image_name).await?.ok_or_else(|| {
            Error::not_found(format!("image {image_name:?} not found: pull it first"))
        })?;
        let image_config = image.image_config()?;
        let id = crate::store::new_id()?;
        let name = container_name(&meta, &sandbox_meta);
        self.names.reserve(&name, &id)?;
        let plan = Plan {
            id: id.clone(),
            name: name.clone(),
            config,
            sandbox_config,
            sandbox,
            sandbox_pid,
            image,
            image_config,
            volumes: Vec::new(),
            userns,
        };
        match self.create_planned(plan).await {
            Ok(container) => {
                let sandbox_id = container.metadata.sandbox_id.clone();
                self.containers.insert(&id, container);
                self.publish_container_event(
                    &id,
                    &sandbox_id,
                    pb::ContainerEventType::ContainerCreatedEvent,
                )
                .await;
                Ok(id)
            }
            Err(e) => {
                self.names.release(&name, &id);
                for dir in [self.container_root(&id), self.container_state(&id)] {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(e)
            }
        }
    }

    async fn create_planned(&self, mut plan: Plan) -> Result<Arc<CriContainer>> {
        let id = plan.id.clone();
        let root = self.container_root(&id);
        let state = self.container_state(&id);
        for dir in [&root, &state] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        // Before the spec: image mounts become bind mounts of the pod's
        // mounted image, and the config kept says where.
        self.mount_image_volumes(
            &plan.sandbox.id,
            &mut plan.config.mounts,
            plan.userns.as_ref(),
        )
        .await?;
        if !self.config.ignore_image_defined_volumes {
            let mut volumes: Vec<String> = plan
                .image_config
                .volumes
                .clone()
                .unwrap_or_default()
                .into_keys()
                .filter(|dst| !mounts_on(&plan.config, dst))
                .collect();
            volumes.sort();
            for dst in volumes {
                let host = root.join("volumes").join(crate::store::new_id()?);
                plan.volumes.push((dst, host));
            }
        }
        let (handler, runtime) = self.runtime_for(&plan.sandbox.metadata.runtime_handler)?;
        // Its pod's: where the pod's other snapshots are.
        let snapshotter = self.snapshotter_of_pod(&plan.sandbox.id);
        self.unpacked_in(&plan.image, &snapshotter).await?;
        let _ = handler;
        let security = plan
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let fifos = Fifos::new(&state.join("io"), &id, plan.config.stdin, plan.config.tty)?;
        let stdio = fifos.stdio();
        let opts = self.container_spec_options(&plan, &security)?;
        let ns = self.client.namespace().clone();
        let volumes = plan.volumes.clone();
        let spec_id = id.clone();
        // The image mounted only for what its files must give: account
        // files not read before, image volumes to fill.
        let known = if volumes.is_empty() {
            self.accounts.get(&plan.image.chain_id)
        } else {
            None
        };
        let spec: Spec = match known {
            Some(accounts) => {
                spec::generate(&SpecContext::new(&ns, &id).with_accounts(&accounts), &opts)?
            }
            None => {
                let (spec, accounts) = self
                    .client
                    .with_view(
                        &snapshotter,
                        &plan.image.chain_id,
                        &self.state.join("views"),
                        move |rootfs| {
                            let accounts = Accounts::read(rootfs)?;
                            let ctx = SpecContext::new(&ns, &spec_id).with_accounts(&accounts);
                            let spec = spec::generate(&ctx, &opts)?;
                            for (dst, host) in &volumes {
                                fill_volume(rootfs, dst, host)?;
                            }
                            Ok((spec, accounts))
                        },
                    )
                    .await?;
                self.accounts.put(&plan.image.chain_id, accounts);
                spec
            }
        };
        let metadata = ContainerMetadata {
            name: plan.name.clone(),
            sandbox_id: plan.sandbox.id.clone(),
            image_ref: plan.image.id.clone(),
            log_path: if plan.sandbox_config.log_directory.is_empty()
                || plan.config.log_path.is_empty()
            {
                String::new()
            } else {
                Path::new(&plan.sandbox_config.log_directory)
                    .join(&plan.config.log_path)
                    .display()
                    .to_string()
            },
            stop_signal: config_stop_signal(&plan.config)
                .unwrap_or_else(|| plan.image_config.stop_signal.clone()),
            user: spec.process().as_ref().map(|p| ProcessUser {
                uid: p.user().uid(),
                gid: p.user().gid(),
                groups: p.user().additional_gids().clone().unwrap_or_default(),
            }),
        };
        let mut labels: BTreeMap<String, String> =
            plan.image_config.labels.clone().unwrap_or_default();
        labels.extend(plan.config.labels.clone());
        labels.insert(KIND_LABEL.to_owned(), KIND_CONTAINER.to_owned());
        let mut extensions = BTreeMap::new();
        extensions.insert(
            METADATA_EXTENSION.to_owned(),
            Any {
                type_url: METADATA_TYPE.to_owned(),
                value: serde_json::to_vec(&metadata)
                    .map_err(|e| Error::unknown(format!("encode container metadata: {e}")))?,
            },
        );
        extensions.insert(
            crate::CONFIG_EXTENSION.to_owned(),
            crate::encode_config(&plan.config),
        );
        let mut snapshot_labels: BTreeMap<String, String> = plan
            .config
            .annotations
            .iter()
            .filter(|(k, _)| k.starts_with(INHERITED_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(userns) = &plan.userns {
            snapshot_labels.extend(userns.snapshot_labels());
        }
        let new = NewContainer {
            image: plan
                .image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| plan.image.id.clone()),
            snapshotter,
            rootfs: Rootfs::NewSnapshot {
                key: id.clone(),
                parent: plan.image.chain_id.clone(),
                labels: snapshot_labels,
            },
            runtime,
            labels,
            extensions,
            ..NewContainer::new(spec)
        };
        let container = self.client.create_container(&id, new).await?;
        let mut status = ContainerStatus {
            created_at: now_nanos(),
            ..Default::default()
        };
        if let Some(r) = plan
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
        {
            status.resources = r.encode_to_vec();
        }
        let status_file = root.join("status");
        if let Err(e) = write_status(&status_file, &status) {
            let _ = container.delete(true).await;
            return Err(e);
        }
        fifos.keep();
        Ok(Arc::new(CriContainer::new(
            id,
            metadata,
            plan.config,
            status,
            status_file,
            ContainerIo {
                stdio,
                ..Default::default()
            },
        )))
    }

    /// The spec options of a container, as containerd's CRI builds them.
    fn container_spec_options(
        &self,
        plan: &Plan,
        security: &pb::LinuxContainerSecurityContext,
    ) -> Result<Vec<Opt>> {
        let config = &plan.config;
        let image = &plan.image_config;
        let sandbox_security = plan
            .sandbox_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let handler = plan.sandbox.metadata.runtime_handler.as_str();
        let runtime = self.handler_config(handler)?;
        let mut opts: Vec<Opt> = vec![spec_opts::without_mount("/run")];
        match self.with_base_spec(handler) {
            // The base spec's limits, seccomp and AppArmor stay: setting
            // them is what it is for (containerd keeps them too).
            Some(base) => opts.insert(0, base),
            None => opts.push(spec_opts::without_default_security()),
        }
        opts.extend([
            spec::with_process_args(process_args(config, image)?),
            spec::with_env(vec![spec::DEFAULT_PATH.to_owned()]),
            spec::with_no_new_privileges(false),
        ]);
        if !config.working_dir.is_empty() {
            opts.push(spec::with_process_cwd(config.working_dir.clone()));
        } else if !image.working_dir.is_empty() {
            opts.push(spec::with_process_cwd(image.working_dir.clone()));
        }
        if config.tty {
            opts.push(spec::with_tty());
        }
        let hostname = if plan.sandbox_config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .map_err(|e| Error::io("read the hostname", e.into()))?
        } else {
            plan.sandbox_config.hostname.clone()
        };
        opts.push(spec::with_env(vec![format!("HOSTNAME={hostname}")]));
        let mut env = image.env.clone().unwrap_or_default();
        env.extend(
            config
                .envs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value)),
        );
        opts.push(spec::with_env(env));
        opts.push(spec_opts::with_cri_mounts(
            &config.mounts,
            &self.container_extra_mounts(plan, security),
            self.supports_rro(&plan.sandbox.metadata.runtime_handler),
        )?);
        if !self.config.disable_proc_mount {
            opts.push(spec_opts::with_proc_paths(
                &security.masked_paths,
                &security.readonly_paths,
            ));
        }
        let owner = self.config.device_ownership_from_security_context.then(|| {
            let id = |v: &Option<pb::Int64Value>| v.as_ref().map(|v| v.value as u32).unwrap_or(0);
            (id(&security.run_as_user), id(&security.run_as_group))
        });
        opts.push(spec_opts::with_cri_devices(&config.devices, owner)?);
        opts.push(spec_opts::with_cri_capabilities(
            security.capabilities.as_ref(),
        )?);
        if security.privileged {
            if !sandbox_security.privileged {
                return Err(Error::invalid_argument(
                    "no privileged container allowed in a sandbox that is not privileged",
                ));
            }
            // A runtime whose containers are VMs or sandboxes keeps the
            // host's devices out of privileged ones.
            let host_devices = !runtime.privileged_without_host_devices;
            opts.push(spec_opts::with_privileged(
                host_devices,
                host_devices || runtime.privileged_without_host_devices_all_devices_allowed,
            ));
        }
        opts.push(spec_opts::without_ambient_capabilities());
        if security.no_new_privs {
            opts.push(spec::with_no_new_privileges(true));
        }
        if security.readonly_rootfs {
            opts.push(spec::with_readonly_rootfs(true));
        }
        let resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
        if self.config.disable_cgroup {
            opts.push(spec_opts::without_cgroups());
        } else {
            opts.push(spec_opts::with_cri_resources(
                resources,
                self.config.hugetlb(),
            )?);
        }
        let parent = plan
            .sandbox_config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        if !parent.is_empty() && !self.config.disable_cgroup {
            opts.push(spec::with_cgroup_path(spec_opts::cgroups_path(
                &parent, &plan.id,
            )));
        }
        let ns_options = security.namespace_options.clone().unwrap_or_default();
        let target_pid = if ns_options.pid == pb::NamespaceMode::Target as i32 {
            self.target_pid(&plan.sandbox.id, &ns_options.target_id)?
        } else {
            plan.sandbox_pid
        };
        if let Some(r) = resources {
            opts.push(spec::with_oom_score_adj(
                spec_opts::restricted_oom_score_adj(
                    i32::try_from(r.oom_score_adj).map_err(|_| {
                        Error::invalid_argument(format!(
                            "oom_score_adj {} is out of range",
                            r.oom_score_adj
                        ))
                    })?,
                    self.config.restrict_oom_score_adj,
                )?,
            ));
        }
        opts.push(spec_opts::with_pod_namespaces(
            &ns_options,
            plan.sandbox_pid,
            target_pid,
            plan.userns.as_ref(),
        )?);
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() && !security.privileged {
            // A cgroup namespace hides the host's hierarchy (cgroup v2).
            opts.push(spec::opt(|spec, _| {
                let linux = spec::linux_mut(spec);
                let list = linux.namespaces_mut().get_or_insert_with(Vec::new);
                if !list.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup) {
                    let mut ns = oci_spec::runtime::LinuxNamespace::default();
                    ns.set_typ(LinuxNamespaceType::Cgroup);
                    list.push(ns);
                }
                Ok(())
            }));
        }
        let sandbox_meta = plan.sandbox_config.metadata.clone().unwrap_or_default();
        // Passed through first: the CRI's own annotations win.
        let mut notes: HashMap<String, String> = crate::runtimes::passthrough(
            &plan.sandbox_config.annotations,
            &runtime.pod_annotations,
        )
        .into_iter()
        .chain(crate::runtimes::passthrough(
            &config.annotations,
            &runtime.container_annotations,
        ))
        .collect();
        notes.insert(annotations::CONTAINER_TYPE.into(), KIND_CONTAINER.into());
        notes.insert(annotations::SANDBOX_ID.into(), plan.sandbox.id.clone());
        notes.insert(
            annotations::SANDBOX_NAMESPACE.into(),
            sandbox_meta.namespace.clone(),
        );
        notes.insert(annotations::SANDBOX_UID.into(), sandbox_meta.uid.clone());
        notes.insert(annotations::SANDBOX_NAME.into(), sandbox_meta.name.clone());
        notes.insert(
            annotations::CONTAINER_NAME.into(),
            config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
        );
        notes.insert(
            annotations::IMAGE_NAME.into(),
            plan.image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| plan.image.id.clone()),
        );
        opts.push(spec::with_annotations(notes));
        // The user last: it replaces the process user; the supplemental
        // groups are merged into what it resolved.
        let user = spec_opts::user_string(
            &security.run_as_username,
            security.run_as_user.as_ref().map(|u| u.value),
            security.run_as_group.as_ref().map(|g| g.value),
        )?;
        let user = if user.is_empty() {
            image.user.clone()
        } else {
            user
        };
        opts.push(spec::with_user(user));
        opts.push(spec_opts::with_supplemental_groups(
            &security.supplemental_groups,
            security.supplemental_groups_policy == pb::SupplementalGroupsPolicy::Strict as i32,
        )?);
        // The deprecated profile names still come from older kubelets.
        #[allow(deprecated)]
        if let Some(o) = spec_opts::with_cri_apparmor(
            security.apparmor.as_ref(),
            &security.apparmor_profile,
            security.privileged,
        )? {
            opts.push(o);
        }
        #[allow(deprecated)]
        let legacy =
            self.seccomp_or_unset(security.seccomp.as_ref(), &security.seccomp_profile_path);
        if let Some(o) =
            spec_opts::with_cri_seccomp(security.seccomp.as_ref(), legacy, security.privileged)?
        {
            opts.push(o);
        }
        // Last: a device's edits may depend on the process's user.
        if let Some(o) = self.with_cdi_devices(config)? {
            opts.push(o);
        }
        Ok(opts)
    }

    /// The CDI devices the container asks for (its `CDI_devices`, then
    /// `cdi.k8s.io/…` annotations), injected from the spec directories as
    /// they are now; `None` when it asks for none. With `enable_cdi` off,
    /// asking by `CDI_devices` is refused rather than ignored: the
    /// container would run without the device it was given.
    fn with_cdi_devices(&self, config: &pb::ContainerConfig) -> Result<Option<Opt>> {
        let mut devices: Vec<String> = config.cdi_devices.iter().map(|d| d.name.clone()).collect();
        if !self.config.enable_cdi {
            if devices.is_empty() {
                return Ok(None);
            }
            return Err(Error::failed_precondition(format!(
                "CDI devices {} are asked for, but enable_cdi is off in the CRI plugin's config",
                devices.join(", ")
            )));
        }
        devices.extend(crated_cdi::devices_from_annotations(&config.annotations)?);
        if devices.is_empty() {
            return Ok(None);
        }
        // Read here, off the async worker; the spec is made later.
        let dirs = &self.config.cdi_spec_dirs;
        let registry = crated_core::blocking::off_worker(|| crated_cdi::Registry::load(dirs));
        Ok(Some(spec::opt(move |spec, _| {
            registry.inject(spec, &devices)?;
            Ok(())
        })))
    }

    /// The files a container shares with its sandbox (hostname, hosts,
    /// resolv.conf, /dev/shm) and the image's volumes, unless the config
    /// mounts something there.
    fn container_extra_mounts(
        &self,
        plan: &Plan,
        security: &pb::LinuxContainerSecurityContext,
    ) -> Vec<pb::Mount> {
        let sandbox_root = self.sandbox_root(&plan.sandbox.id);
        let readonly = security.readonly_rootfs;
        let mut mounts = Vec::new();
        // In a pod with its own user namespace, the files and volumes made
        // for it show as its root's, as containerd maps them (not /dev/shm,
        // a tmpfs open to all).
        let (uid_mappings, gid_mappings) = plan
            .userns
            .as_ref()
            .map(PodUserns::cri_mappings)
            .unwrap_or_default();
        let file = |name: &str, dst: &str| pb::Mount {
            container_path: dst.to_owned(),
            host_path: sandbox_root.join(name).display().to_string(),
            readonly,
            uid_mappings: uid_mappings.clone(),
            gid_mappings: gid_mappings.clone(),
            ..Default::default()
        };
        if sandbox_root.join("hostname").exists() && !mounts_on(&plan.config, "/etc/hostname") {
            mounts.push(file("hostname", "/etc/hostname"));
        }
        if !mounts_on(&plan.config, "/etc/hosts") {
            mounts.push(file("hosts", "/etc/hosts"));
        }
        if !mounts_on(&plan.config, "/etc/resolv.conf") {
            mounts.push(file("resolv.conf", "/etc/resolv.conf"));
        }
        if !mounts_on(&plan.config, "/dev/shm") {
            mounts.push(pb::Mount {
                container_path: "/dev/shm".into(),
                host_path: self.sandbox_shm(&plan.sandbox).display().to_string(),
                ..Default::default()
            });
        }
        for (dst, host) in &plan.volumes {
            mounts.push(pb::Mount {
                container_path: dst.clone(),
                host_path: host.display().to_string(),
                uid_mappings: uid_mappings.clone(),
                gid_mappings: gid_mappings.clone(),
                ..Default::default()
            });
        }
        mounts
    }

    /// The pid of the running container `target` of sandbox `sandbox_id`,
    /// whose pid namespace a container joins.
    fn target_pid(&self, sandbox_id: &str, target: &str) -> Result<u32> {
        let container = self
            .containers
            .get(target)
            .map_err(|e| e.context("target container of the pid namespace"))?;
        if container.metadata.sandbox_id != sandbox_id {
            return Err(Error::invalid_argument(format!(
                "target container {target:?} is not in sandbox {sandbox_id:?}"
            )));
        }
        let status = container.status();
        if status.state() != pb::ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "target container {target:?} is not running"
            )));
        }
        Ok(status.pid)
    }

    /// `RemoveContainer`: stopped at once if it runs, its record, snapshot
    /// and files deleted, its name released. Removing what is gone is not
    /// an error.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        let container = match self.containers.get(id) {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let state = container.status().state();
        if matches!(
            state,
            pb::ContainerState::ContainerRunning | pb::ContainerState::ContainerUnknown
        ) {
            self.stop_container_now(&container, std::time::Duration::ZERO)
                .await?;
        }
        container.update_volatile(|s| {
            if s.starting {
                return Err(Error::failed_precondition(format!(
                    "container {:?} is starting, it cannot be removed",
                    container.id
                )));
            }
            s.removing = true;
            Ok(())
        })?;
        let removed = async {
            match self.client.load_container(&container.id).await {
                Ok(c) => c.delete(true).await?,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            for dir in [
                self.container_root(&container.id),
                self.container_state(&container.id),
            ] {
                match tokio::fs::remove_dir_all(&dir).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(format!("remove {}", dir.display()), e))
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = removed {
            let _ = container.update_volatile(|s| {
                s.removing = false;
                Ok(())
            });
            return Err(e);
        }
        self.containers.remove(&container.id);
        self.names.release(&container.metadata.name, &container.id);
        self.publish_container_event(
            &container.id,
            &container.metadata.sandbox_id,
            pb::ContainerEventType::ContainerDeletedEvent,
        )
        .await;
        Ok(())
    }

    /// The image a container shows: its first tag and first digest
    /// reference, or what it was created with if the image is gone.
    fn container_image(
        container: &CriContainer,
        images: &crate::images::Snapshot,
    ) -> (Option<pb::ImageSpec>, String) {
        let mut spec = container.config.image.clone();
        let mut image_ref = container.metadata.image_ref.clone();
        if let Some(image) = images.get(&container.metadata.image_ref) {
            if let Some(tag) = image.repo_tags.first() {
                spec = Some(pb::ImageSpec {
                    image: tag.clone(),
                    ..Default::default()
                });
            }
            if let Some(digest) = image.repo_digests.first() {
                image_ref = digest.clone();
            }
        }
        (spec, image_ref)
    }

    /// `ContainerStatus`.
    pub(crate) async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<pb::ContainerStatusResponse> {
        // Known before the images are listed: an unknown id is NotFound
        // whatever the image store says.
        self.containers.get(id)?;
        let images = self.image_snapshot().await;
        self.status_with(id, verbose, &images).await
    }

    /// [`Self::container_status`] with the images looked up in `images`.
    async fn status_with(
        &self,
        id: &str,
        verbose: bool,
        images: &crate::images::Snapshot,
    ) -> Result<pb::ContainerStatusResponse> {
        let container = self.containers.get(id)?;
        let status = container.status();
        let state = status.state();
        let (image, image_ref) = Self::container_image(&container, images);
        let mut reason = status.reason.clone();
        if state == pb::ContainerState::ContainerExited && reason.is_empty() {
            reason = if status.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned();
        }
        let (started_at, finished_at) = match state {
            pb::ContainerState::ContainerRunning => (status.started_at, 0),
            pb::ContainerState::ContainerExited | pb::ContainerState::ContainerUnknown => {
                (status.started_at, status.finished_at)
            }
            pb::ContainerState::ContainerCreated => (0, 0),
        };
        let stop_signal =
            pb::Signal::from_str_name(&normalize_signal_name(&container.metadata.stop_signal))
                .unwrap_or(pb::Signal::RuntimeDefault);
        let out = pb::ContainerStatus {
            id: container.id.clone(),
            metadata: container.config.metadata.clone(),
            state: state as i32,
            created_at: status.created_at,
            started_at,
            finished_at,
            exit_code: status.exit_code,
            image,
            image_ref,
            reason,
            message: status.message.clone(),
            labels: container.config.labels.clone(),
            annotations: container.config.annotations.clone(),
            mounts: container.config.mounts.clone(),
            log_path: container.metadata.log_path.clone(),
            resources: status.resources().map(|linux| pb::ContainerResources {
                linux: Some(linux),
                windows: None,
            }),
            image_id: container.metadata.image_ref.clone(),
            user: container.metadata.user.as_ref().map(|u| pb::ContainerUser {
                linux: Some(pb::LinuxContainerUser {
                    uid: i64::from(u.uid),
                    gid: i64::from(u.gid),
                    supplemental_groups: u.groups.iter().map(|g| i64::from(*g)).collect(),
                }),
            }),
            stop_signal: stop_signal as i32,
        };
        let mut info = HashMap::new();
        if verbose {
            let record = self.client.load_container(&container.id).await?;
            let spec = record.spec().ok();
            let details = serde_json::json!({
                "sandboxID": container.metadata.sandbox_id,
                "pid": status.pid,
                "removing": status.removing,
                "snapshotKey": record.record().snapshot_key,
                "snapshotter": record.record().snapshotter,
                "runtimeType": record.record().runtime.name,
                "runtimeOptions":
                    crate::runtime_options_json(record.record().runtime.options.as_ref()),
                "config": container.config,
                "runtimeSpec": spec,
            });
            info.insert("info".to_owned(), details.to_string());
        }
        Ok(pb::ContainerStatusResponse {
            status: Some(out),
            info,
        })
    }

    /// `ListContainers`.
    pub(crate) async fn list_containers(
        &self,
        filter: Option<pb::ContainerFilter>,
    ) -> Vec<pb::Container> {
        let images = self.image_snapshot().await;
        let mut out = Vec::new();
        for c in self.containers.all() {
            let status = c.status();
            if let Some(f) = &filter {
                let keep = (f.id.is_empty() || c.id.starts_with(&f.id))
                    && (f.pod_sandbox_id.is_empty()
                        || c.metadata.sandbox_id.starts_with(&f.pod_sandbox_id))
                    && f.state
                        .as_ref()
                        .is_none_or(|s| s.state == status.state() as i32)
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| c.config.labels.get(k) == Some(v));
                if !keep {
                    continue;
                }
            }
            let (image, image_ref) = Self::container_image(&c, &images);
            out.push(pb::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.metadata.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image,
                image_ref,
                state: status.state() as i32,
                created_at: status.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.metadata.image_ref.clone(),
            });
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }
}

/// `SIGTERM` for `TERM`, `15` or `SIGTERM`; empty for none.
fn normalize_signal_name(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    match parse_signal(name) {
        Ok(n) => nix::sys::signal::Signal::try_from(n)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Copies what the image holds at `dst` (inside the mounted `rootfs`)
/// into the new volume directory `host`, as containerd's `WithVolumes`:
/// a volume starts with the image's content.
fn fill_volume(rootfs: &Path, dst: &str, host: &Path) -> Result<()> {
    std::fs::create_dir_all(host)
        .map_err(|e| Error::io(format!("create {}", host.display()), e))?;
    let source = match resolve_in_root(rootfs, dst) {
        Some(s) => s,
        None => return Ok(()),
    };
    if !source.is_dir() {
        return Ok(());
    }
    copy_tree(&source, host)
}

/// `path` inside `root`, refusing to leave it: `None` if it does not
/// exist there or escapes (symbolic links are not followed out).
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            std::path::Component::Normal(p) => {
                out.push(p);
                let meta = std::fs::symlink_metadata(&out).ok()?;
                if meta.file_type().is_symlink() {
                    // Volumes on links are rare; not following them keeps
                    // a hostile image's link from pointing at the host.
                    return None;
                }
            }
            std::path::Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(out)
}

/// Copies the tree at `from` into the directory `to`: files, directories
/// and symbolic links with their modes and owners.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
    let meta = std::fs::symlink_metadata(from).map_err(|e| io("stat", from, e))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| io("chmod", to, e))?;
    let _ = std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
    for entry in std::fs::read_dir(from).map_err(|e| io("read", from, e))? {
        let entry = entry.map_err(|e| io("read", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src).map_err(|e| io("stat", &src, e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dst).map_err(|e| io("create", &dst, e))?;
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io("read link", &src, e))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| io("link", &dst, e))?;
            let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| io("copy", &src, e))?;
            let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(parse_signal("SIGPOLL").unwrap(), libc::SIGIO);
        assert!(parse_signal("SIGNOPE")
            .unwrap_err()
            .to_string()
            .contains("SIGNOPE"));
        assert_eq!(normalize_signal_name("15"), "SIGTERM");
        assert_eq!(
            pb::Signal::from_str_name("SIGTERM"),
            Some(pb::Signal::Sigterm)
        );
    }

    #[test]
    fn process_args_fill_in_from_the_image() {
        let image = ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        let config = |command: &[&str], args: &[&str]| pb::ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            process_args(&config(&[], &[]), &image).unwrap(),
            ["/entry", "default"]
        );
        assert_eq!(
            process_args(&config(&[], &["x"]), &image).unwrap(),
            ["/entry", "x"]
        );
        assert_eq!(
            process_args(&config(&["/bin/sh"], &[]), &image).unwrap(),
            ["/bin/sh"]
        );
        let err = process_args(&config(&[], &[]), &ImageConfig::default()).unwrap_err();
        assert!(err.to_string().contains("no command"), "{err}");
    }

    #[test]
    fn status_is_durable_and_states_follow_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        let mut status = ContainerStatus {
            created_at: 1,
            ..Default::default()
        };
        assert_eq!(status.state(), pb::ContainerState::ContainerCreated);
        status.started_at = 2;
        assert_eq!(status.state(), pb::ContainerState::ContainerRunning);
        status.finished_at = 3;
        status.exit_code = 7;
        status.starting = true;
        write_status(&path, &status).unwrap();
        let back = read_status(&path).unwrap();
        assert_eq!(back.state(), pb::ContainerState::ContainerExited);
        assert_eq!(back.exit_code, 7);
        assert!(!back.starting, "flags do not persist");
    }

    #[test]
    fn volumes_start_with_the_image_content_and_stay_inside() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("data/sub")).unwrap();
        std::fs::write(rootfs.path().join("data/sub/f"), b"hi").unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.path().join("evil")).unwrap();
        let host = tempfile::tempdir().unwrap();
        fill_volume(rootfs.path(), "/data", &host.path().join("v1")).unwrap();
        assert_eq!(std::fs::read(host.path().join("v1/sub/f")).unwrap(), b"hi");
        fill_volume(rootfs.path(), "/evil", &host.path().join("v2")).unwrap();
        assert_eq!(
            std::fs::read_dir(host.path().join("v2")).unwrap().count(),
            0
        );
        fill_volume(rootfs.path(), "/../../etc", &host.path().join("v3")).unwrap();
        assert_eq!(
            std::fs::read_dir(host.path().join("v3")).unwrap().count(),
            0
        );
    }
}
