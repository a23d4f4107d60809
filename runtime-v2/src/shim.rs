//! A connected shim: the ttrpc `containerd.task.v2.Task` client of one
//! task, every call carrying the namespace and a bounded timeout (but
//! `Wait`, which lasts as long as the process). Its methods speak `core`
//! types; the protobuf messages stay inside.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crated_api::containerd::task::v2 as pb;
use crated_api::containerd::task::v2::task_ttrpc::TaskClient;
use crated_api::convert::{
    any_from_pb, any_to_pb, exit_from_pb, process_info_from_pb, status_from_pb, to_system_time,
};
use crated_api::from_ttrpc;
use crated_api::metadata::ttrpc_context;
use crated_core::descriptor::Any;
use crated_core::tasks::{ExecProcess, Exit, Process, ProcessInfo, Stdio, UpdateTask};
use crated_core::{Error, Result};
use tokio::io::AsyncBufReadExt as _;

use crate::binary::ShimCommand;
use crate::bundle::Bundle;
use crate::timeouts::{self, Timeouts};

/// A shim serving one task.
pub struct Shim {
    /// The task's bundle.
    pub bundle: Bundle,
    /// The shim's ttrpc address.
    pub address: String,
    /// How to run the shim binary (for `delete` once it is gone).
    pub command: ShimCommand,
    client: TaskClient,
    log: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.abort();
        }
    }
}

/// Creates the bundle's `log` fifo and copies what the shim writes there
/// into the daemon's log; the shim blocks opening it until a reader is
/// there, so this runs before `start`.
pub fn open_log(bundle: &Bundle) -> Result<tokio::task::JoinHandle<()>> {
    let path = bundle.path.join("log");
    match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => {
            return Err(Error::unknown(format!(
                "create shim log fifo {}: {e}",
                path.display()
            )))
        }
    }
    // Read-write: the fifo never reports end-of-file between shim writers.
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
        .map_err(|e| Error::unknown(format!("open shim log fifo {}: {e}", path.display())))?;
    let (ns, id) = (bundle.namespace.to_string(), bundle.id.clone());
    Ok(tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(receiver).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(namespace = ns, id, "shim: {line}");
        }
    }))
}

/// A shim call's failure, naming the call, the task, and — when the
/// deadline fired — which timeout it was.
fn call_error<'a>(what: &'a str, id: &'a str, key: &'a str) -> impl Fn(ttrpc::Error) -> Error + 'a {
    move |e| {
        let err = from_ttrpc(e);
        if err.kind() == crated_core::Kind::DeadlineExceeded {
            err.context(format!("{what} of task {id:?} (timeout {key})"))
        } else {
            err.context(format!("{what} of task {id:?}"))
        }
    }
}

impl Shim {
    /// Connects to the shim at `address`, giving up after `timeout`.
    pub async fn connect(
        bundle: Bundle,
        address: String,
        command: ShimCommand,
        log: Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Self> {
        let limit = command.timeouts.shim_load;
        let client = tokio::time::timeout(limit, ttrpc::r#async::Client::connect(&address))
            .await
            .map_err(|_| {
                Error::deadline_exceeded(format!(
                    "connecting to shim {address}: no answer within {limit:?} ({})",
                    timeouts::SHIM_LOAD
                ))
            })?
            .map_err(|e| Error::unavailable(format!("connecting to shim {address}: {e}")))?;
        Ok(Self {
            bundle,
            address,
            command,
            client: TaskClient::new(client),
            log,
        })
    }

    /// The task (container) id.
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    fn timeouts(&self) -> &Timeouts {
        &self.command.timeouts
    }

    fn ctx(&self, timeout: Duration) -> ttrpc::context::Context {
        ttrpc_context(&self.bundle.namespace, timeout)
    }

    fn call_ctx(&self) -> ttrpc::context::Context {
        self.ctx(self.timeouts().shim_call)
    }

    /// The bundle directory.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle.path
    }

    /// `Create`; returns the init's pid.
    pub(crate) async fn create(&self, req: &pb::CreateTaskRequest) -> Result<u32> {
        // A task restored from a checkpoint may be created by criu here.
        let (timeout, key) = if req.checkpoint.is_empty() {
            (self.timeouts().shim_call, timeouts::SHIM_CALL)
        } else {
            (self.timeouts().task_checkpoint, timeouts::TASK_CHECKPOINT)
        };
        self.client
            .create(self.ctx(timeout), req)
            .await
            .map(|r| r.pid)
            .map_err(call_error("create", self.id(), key))
    }

    /// `Start`; returns the process's pid.
    pub async fn start(&self, exec_id: &str) -> Result<u32> {
        let req = pb::StartRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        // A task created from a checkpoint is restored by its Start.
        self.client
            .start(self.ctx(self.timeouts().task_checkpoint), &req)
            .await
            .map(|r| r.pid)
            .map_err(call_error("start", self.id(), timeouts::TASK_CHECKPOINT))
    }

    /// `State` of a process, with `timeout` (the task state timeout when
    /// listing, the call timeout otherwise).
    async fn state_within(&self, exec_id: &str, timeout: Duration, key: &str) -> Result<Process> {
        let req = pb::StateRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let state = self
            .client
            .state(self.ctx(timeout), &req)
            .await
            .map_err(call_error("state", self.id(), key))?;
        // containerd's tasks service names the init process by the task's
        // id and an exec by its exec id.
        let id = if state.exec_id.is_empty() {
            self.id().to_owned()
        } else {
            state.exec_id
        };
        Ok(Process {
            container_id: self.id().to_owned(),
            id,
            pid: state.pid,
            status: status_from_pb(state.status),
            stdio: Stdio {
                stdin: state.stdin,
                stdout: state.stdout,
                stderr: state.stderr,
            },
            terminal: state.terminal,
            exit_status: state.exit_status,
            exited_at: state.exited_at.as_ref().map(to_system_time),
        })
    }

    /// `State` of a process.
    pub async fn state(&self, exec_id: &str) -> Result<Process> {
        self.state_within(exec_id, self.timeouts().shim_call, timeouts::SHIM_CALL)
            .await
    }

    /// `State` of the init process within the task state timeout, as a
    /// listing asks it.
    pub async fn list_state(&self) -> Result<Process> {
        self.state_within("", self.timeouts().task_state, timeouts::TASK_STATE)
            .await
    }

    /// `Delete` (of the task, or of an exec process).
    pub async fn delete(&self, exec_id: &str) -> Result<Exit> {
        let req = pb::DeleteRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.client
            .delete(self.call_ctx(), &req)
            .await
            .map(|r| exit_from_pb(r.pid, r.exit_status, r.exited_at))
            .map_err(call_error("delete", self.id(), timeouts::SHIM_CALL))
    }

    /// `Kill`.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = pb::KillRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
        };
        self.client
            .kill(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("kill", self.id(), timeouts::SHIM_CALL))
    }

    /// `Wait`: until the process exits; no timeout.
    pub async fn wait(&self, exec_id: &str) -> Result<Exit> {
        let req = pb::WaitRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.client
            .wait(self.ctx(Duration::ZERO), &req)
            .await
            .map(|r| exit_from_pb(0, r.exit_status, r.exited_at))
            .map_err(call_error("wait", self.id(), ""))
    }

    /// `Wait` for the monitor: a transport failure (the shim is gone) is
    /// told apart from the shim's own answer.
    pub(crate) async fn wait_raw(&self) -> std::result::Result<pb::WaitResponse, ttrpc::Error> {
        let req = pb::WaitRequest {
            id: self.id().to_owned(),
            exec_id: String::new(),
        };
        self.client.wait(self.ctx(Duration::ZERO), &req).await
    }

    /// `Pids`.
    pub async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        let req = pb::PidsRequest {
            id: self.id().to_owned(),
        };
        self.client
            .pids(self.call_ctx(), &req)
            .await
            .map(|r| r.processes.into_iter().map(process_info_from_pb).collect())
            .map_err(call_error("pids", self.id(), timeouts::SHIM_CALL))
    }

    /// `Pause`.
    pub async fn pause(&self) -> Result<()> {
        let req = pb::PauseRequest {
            id: self.id().to_owned(),
        };
        self.client
            .pause(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("pause", self.id(), timeouts::SHIM_CALL))
    }

    /// `Resume`.
    pub async fn resume(&self) -> Result<()> {
        let req = pb::ResumeRequest {
            id: self.id().to_owned(),
        };
        self.client
            .resume(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("resume", self.id(), timeouts::SHIM_CALL))
    }

    /// `Checkpoint`: the shim has criu dump the task into `path`.
    pub async fn checkpoint(&self, path: &Path, options: Option<Any>) -> Result<()> {
        let req = pb::CheckpointTaskRequest {
            id: self.id().to_owned(),
            path: path.display().to_string(),
            options: options.map(any_to_pb),
        };
        self.client
            .checkpoint(self.ctx(self.timeouts().task_checkpoint), &req)
            .await
            .map(|_| ())
            .map_err(call_error(
                "checkpoint",
                self.id(),
                timeouts::TASK_CHECKPOINT,
            ))
    }

    /// `Exec`.
    pub async fn exec(&self, process: ExecProcess) -> Result<()> {
        let req = pb::ExecProcessRequest {
            id: self.id().to_owned(),
            exec_id: process.exec_id,
            terminal: process.terminal,
            stdin: process.stdio.stdin,
            stdout: process.stdio.stdout,
            stderr: process.stdio.stderr,
            spec: process.spec.map(any_to_pb),
        };
        self.client
            .exec(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("exec", self.id(), timeouts::SHIM_CALL))
    }

    /// `ResizePty`.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = pb::ResizePtyRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            width,
            height,
        };
        self.client
            .resize_pty(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("resize pty", self.id(), timeouts::SHIM_CALL))
    }

    /// `CloseIO` of stdin.
    pub async fn close_io(&self, exec_id: &str) -> Result<()> {
        let req = pb::CloseIoRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            stdin: true,
        };
        self.client
            .close_io(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("close io", self.id(), timeouts::SHIM_CALL))
    }

    /// `Update`.
    pub async fn update(&self, update: UpdateTask) -> Result<()> {
        let req = pb::UpdateTaskRequest {
            id: self.id().to_owned(),
            resources: update.resources.map(any_to_pb),
            annotations: update.annotations.into_iter().collect(),
        };
        self.client
            .update(self.call_ctx(), &req)
            .await
            .map(|_| ())
            .map_err(call_error("update", self.id(), timeouts::SHIM_CALL))
    }

    /// `Stats`: the runtime's metrics message, read now.
    pub async fn stats(&self) -> Result<(SystemTime, Option<Any>)> {
        let req = pb::StatsRequest {
            id: self.id().to_owned(),
        };
        self.client
            .stats(self.call_ctx(), &req)
            .await
            .map(|r| (SystemTime::now(), r.stats.map(any_from_pb)))
            .map_err(call_error("stats", self.id(), timeouts::SHIM_CALL))
    }

    /// `Connect`: answers only a live shim, within the task state timeout.
    pub async fn probe(&self) -> Result<()> {
        let req = pb::ConnectRequest {
            id: self.id().to_owned(),
        };
        self.client
            .connect(self.ctx(self.timeouts().task_state), &req)
            .await
            .map(|_| ())
            .map_err(call_error("connect", self.id(), timeouts::TASK_STATE))
    }

    /// `Shutdown`: the shim exits once it serves no task. Its connection
    /// closing is the expected answer.
    pub async fn shutdown(&self) {
        let req = pb::ShutdownRequest {
            id: self.id().to_owned(),
            now: false,
        };
        if let Err(e) = self
            .client
            .shutdown(self.ctx(self.timeouts().shim_shutdown), &req)
            .await
        {
            tracing::debug!(id = self.id(), error = %e, "shim shutdown");
        }
    }
}
