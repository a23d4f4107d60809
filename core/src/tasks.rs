//! Tasks: the running processes of containers, as containerd's tasks
//! service serves them. A task is created for a container record (its
//! spec and runtime), runs its init process, and may run exec processes
//! beside it; the runtime drives each through a shim.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::descriptor::{Any, Descriptor};
use crate::mount::Mount;
use crate::{Namespace, Result};

/// What a process is doing, with containerd's numbering on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// The runtime does not know.
    #[default]
    Unknown,
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Stopped,
    /// Frozen.
    Paused,
    /// Being frozen.
    Pausing,
}

impl Status {
    /// containerd's lower-case name (`ctr tasks ls` prints it upper-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
            Status::Pausing => "pausing",
        }
    }
}

/// A process of a task: its init (id = the container id) or an exec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    /// The task's container id.
    pub container_id: String,
    /// The container id for the init process, the exec id for an exec.
    pub id: String,
    /// Its pid in the daemon's pid namespace; 0 before it started.
    pub pid: u32,
    /// Its status.
    pub status: Status,
    /// Its stdio as the task was created with (paths or URIs).
    pub stdio: Stdio,
    /// Whether it has a terminal.
    pub terminal: bool,
    /// Its exit status, once stopped.
    pub exit_status: u32,
    /// When it exited, once stopped.
    pub exited_at: Option<SystemTime>,
}

/// Where a process's standard streams go: fifo or file paths, or
/// `binary://` / `file://` URIs the shim understands; empty = none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stdio {
    /// Standard input.
    pub stdin: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exit {
    /// Its pid.
    pub pid: u32,
    /// Its exit status (128 + signal when killed; 255 when unknown).
    pub exit_status: u32,
    /// When it exited.
    pub exited_at: Option<SystemTime>,
}

/// A task to create.
#[derive(Debug, Clone, Default)]
pub struct CreateTask {
    /// The container whose task this is.
    pub container_id: String,
    /// Root filesystem mounts (the container's snapshot), mounted by the
    /// shim on the bundle's `rootfs`.
    pub rootfs: Vec<Mount>,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// Whether it gets a terminal.
    pub terminal: bool,
    /// A checkpoint image in the content store to restore the task from.
    pub checkpoint: Option<Descriptor>,
    /// Options for the runtime; the container's runtime options otherwise.
    pub options: Option<Any>,
    /// A shim binary to use instead of the container's runtime.
    pub runtime_path: String,
}

/// Filter fields of a process: `id`, `container_id`, `status`, `pid`.
pub struct ProcessFields<'a>(pub &'a Process);

impl crate::filters::Adaptor for ProcessFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["id"] => Some(self.0.id.clone()),
            ["container_id"] => Some(self.0.container_id.clone()),
            ["status"] => Some(self.0.status.as_str().to_owned()),
            ["pid"] => Some(self.0.pid.to_string()),
            _ => None,
        }
    }
}

/// An exec process to add to a running task.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    /// Its id, unique in the task; an identifier.
    pub exec_id: String,
    /// Its stdio.
    pub stdio: Stdio,
    /// Whether it gets a terminal.
    pub terminal: bool,
    /// Its OCI process spec (`types.containerd.io/opencontainers/runtime-spec/1/Process`).
    pub spec: Option<Any>,
}

/// A process of a task as its runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessInfo {
    /// The pid.
    pub pid: u32,
    /// Runtime-specific details (runc: the exec id).
    pub info: Option<Any>,
}

/// How to checkpoint a task.
#[derive(Debug, Clone, Default)]
pub struct CheckpointTask {
    /// Runtime options (runc: `containerd.runc.v1.CheckpointOptions`).
    pub options: Option<Any>,
    /// The lease the checkpoint's blobs are written under.
    pub lease: Option<String>,
}

/// A change of a running task's resources.
#[derive(Debug, Clone, Default)]
pub struct UpdateTask {
    /// New resources (an OCI `LinuxResources` for runc).
    pub resources: Option<Any>,
    /// Annotations for the runtime.
    pub annotations: BTreeMap<String, String>,
}

/// A task's metrics, as its runtime reports them (runc: cgroup metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The task's id.
    pub id: String,
    /// When they were read.
    pub timestamp: SystemTime,
    /// The runtime's metrics message.
    pub data: Option<Any>,
}

/// The tasks service: containerd's `Tasks`, over plain types.
///
/// Every call names the namespace; the task is named by its container id.
/// An empty `exec_id` means the task's init process.
#[async_trait::async_trait]
pub trait Tasks: Send + Sync {
    /// Creates the task of a container; returns the init's pid.
    /// NotFound for no such container, AlreadyExists if it has a task.
    async fn create(&self, ns: &Namespace, task: CreateTask) -> Result<u32>;
    /// Starts a process (the init, or a created exec); returns its pid.
    async fn start(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<u32>;
    /// Deletes a stopped task; returns its init's exit.
    async fn delete(&self, ns: &Namespace, id: &str) -> Result<Exit>;
    /// Deletes a stopped exec process.
    async fn delete_process(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit>;
    /// A process's state.
    async fn get(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Process>;
    /// The init processes of the tasks of `ns` matching any of `filters`
    /// (fields `id`, `container_id`, `status`, `pid`); none = all.
    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Process>>;
    /// Signals a process; with `all`, every process of the task.
    async fn kill(
        &self,
        ns: &Namespace,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()>;
    /// Adds an exec process (created, not started).
    async fn exec(&self, ns: &Namespace, id: &str, process: ExecProcess) -> Result<()>;
    /// Resizes a process's terminal.
    async fn resize_pty(
        &self,
        ns: &Namespace,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()>;
    /// Closes a process's stdin (it reads end-of-file).
    async fn close_io(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<()>;
    /// Freezes every process of the task.
    async fn pause(&self, ns: &Namespace, id: &str) -> Result<()>;
    /// Thaws the task.
    async fn resume(&self, ns: &Namespace, id: &str) -> Result<()>;
    /// The pids of the task's processes.
    async fn pids(&self, ns: &Namespace, id: &str) -> Result<Vec<ProcessInfo>>;
    /// Checkpoints the task into the content store (or where the options
    /// say); returns the descriptors of what was written.
    async fn checkpoint(
        &self,
        ns: &Namespace,
        id: &str,
        options: CheckpointTask,
    ) -> Result<Vec<Descriptor>>;
    /// Changes a running task's resources.
    async fn update(&self, ns: &Namespace, id: &str, update: UpdateTask) -> Result<()>;
    /// Metrics of the tasks matching any of `filters` (field `id`).
    async fn metrics(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Metric>>;
    /// Waits until a process exits; returns how.
    async fn wait(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit>;
}
/// The spec annotations that name a runc v2 shim's group (the containers
/// one shim process serves), the first present wins: containerd's runc
/// shim reads the same two.
pub const RUNC_GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The shim group the OCI spec `spec` (a bundle's `config.json`) names:
/// its first group annotation present, `None` without one or when that
/// one is empty (the container is then a group of its own). The shim and
/// the daemon (which joins a running group's shim itself) read it alike.
pub fn runc_shim_group(spec: &[u8]) -> serde_json::Result<Option<String>> {
    let spec: serde_json::Value = serde_json::from_slice(spec)?;
    Ok(RUNC_GROUP_ANNOTATIONS
        .iter()
        .find_map(|key| spec["annotations"][key].as_str())
        .filter(|group| !group.is_empty())
        .map(str::to_owned))
}
