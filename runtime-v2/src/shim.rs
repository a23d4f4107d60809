//! A connected shim: the ttrpc `containerd.task.v2.Task` client of one
//! task, every call carrying the namespace and a bounded timeout (but
//! `Wait`, which lasts as long as the process).

use std::path::Path;
use std::time::Duration;

use crated_api::containerd::task::v2 as pb;
use crated_api::containerd::task::v2::task_ttrpc::TaskClient;
use crated_api::from_ttrpc;
use crated_api::metadata::ttrpc_context;
use crated_core::{Error, Result};
use tokio::io::AsyncBufReadExt as _;

use crate::binary::ShimCommand;
use crate::bundle::Bundle;

/// How long a shim call may take (but `Wait`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a checkpoint (criu's dump of the task's memory) may take.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

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

fn timeout_error<'a>(what: &'a str, id: &'a str) -> impl Fn(ttrpc::Error) -> Error + 'a {
    move |e| from_ttrpc(e).context(format!("{what} of task {id:?}"))
}

impl Shim {
    /// Connects to the shim at `address`.
    pub async fn connect(
        bundle: Bundle,
        address: String,
        command: ShimCommand,
        log: Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Self> {
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            ttrpc::r#async::Client::connect(&address),
        )
        .await
        .map_err(|_| {
            Error::deadline_exceeded(format!(
                "connecting to shim {address}: no answer within 10s"
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

    fn ctx(&self, timeout: Duration) -> ttrpc::context::Context {
        ttrpc_context(&self.bundle.namespace, timeout)
    }

    /// The bundle directory.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle.path
    }

    /// `Create`.
    pub async fn create(&self, req: &pb::CreateTaskRequest) -> Result<pb::CreateTaskResponse> {
        self.client
            .create(self.ctx(CALL_TIMEOUT), req)
            .await
            .map_err(timeout_error("create", self.id()))
    }

    /// `Start`.
    pub async fn start(&self, exec_id: &str) -> Result<pb::StartResponse> {
        let req = pb::StartRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        // A task created from a checkpoint is restored by its Start.
        self.client
            .start(self.ctx(CHECKPOINT_TIMEOUT), &req)
            .await
            .map_err(timeout_error("start", self.id()))
    }

    /// `State`.
    pub async fn state(&self, exec_id: &str) -> Result<pb::StateResponse> {
        let req = pb::StateRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.client
            .state(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map_err(timeout_error("state", self.id()))
    }

    /// `Delete` (of the task, or of an exec process).
    pub async fn delete(&self, exec_id: &str) -> Result<pb::DeleteResponse> {
        let req = pb::DeleteRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.client
            .delete(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map_err(timeout_error("delete", self.id()))
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
            .kill(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("kill", self.id()))
    }

    /// `Wait`: until the process exits; no timeout.
    pub async fn wait(&self, exec_id: &str) -> Result<pb::WaitResponse> {
        let req = pb::WaitRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.client
            .wait(self.ctx(Duration::ZERO), &req)
            .await
            .map_err(timeout_error("wait", self.id()))
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
    pub async fn pids(&self) -> Result<pb::PidsResponse> {
        let req = pb::PidsRequest {
            id: self.id().to_owned(),
        };
        self.client
            .pids(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map_err(timeout_error("pids", self.id()))
    }

    /// `Pause`.
    pub async fn pause(&self) -> Result<()> {
        let req = pb::PauseRequest {
            id: self.id().to_owned(),
        };
        self.client
            .pause(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("pause", self.id()))
    }

    /// `Resume`.
    pub async fn resume(&self) -> Result<()> {
        let req = pb::ResumeRequest {
            id: self.id().to_owned(),
        };
        self.client
            .resume(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("resume", self.id()))
    }

    /// `Checkpoint`: the shim has criu dump the task into `path`. criu
    /// takes as long as the memory it writes: no short timeout.
    pub async fn checkpoint(&self, path: &Path, options: Option<prost_types::Any>) -> Result<()> {
        let req = pb::CheckpointTaskRequest {
            id: self.id().to_owned(),
            path: path.display().to_string(),
            options,
        };
        self.client
            .checkpoint(self.ctx(CHECKPOINT_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("checkpoint", self.id()))
    }

    /// `Exec`.
    pub async fn exec(&self, req: &pb::ExecProcessRequest) -> Result<()> {
        self.client
            .exec(self.ctx(CALL_TIMEOUT), req)
            .await
            .map(|_| ())
            .map_err(timeout_error("exec", self.id()))
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
            .resize_pty(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("resize pty", self.id()))
    }

    /// `CloseIO`.
    pub async fn close_io(&self, exec_id: &str, stdin: bool) -> Result<()> {
        let req = pb::CloseIoRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            stdin,
        };
        self.client
            .close_io(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map(|_| ())
            .map_err(timeout_error("close io", self.id()))
    }

    /// `Update`.
    pub async fn update(&self, req: &pb::UpdateTaskRequest) -> Result<()> {
        self.client
            .update(self.ctx(CALL_TIMEOUT), req)
            .await
            .map(|_| ())
            .map_err(timeout_error("update", self.id()))
    }

    /// `Stats`.
    pub async fn stats(&self) -> Result<pb::StatsResponse> {
        let req = pb::StatsRequest {
            id: self.id().to_owned(),
        };
        self.client
            .stats(self.ctx(CALL_TIMEOUT), &req)
            .await
            .map_err(timeout_error("stats", self.id()))
    }

    /// `Connect`: the shim's and the task's pids; answers only a live shim.
    pub async fn connect_info(&self, timeout: Duration) -> Result<pb::ConnectResponse> {
        let req = pb::ConnectRequest {
            id: self.id().to_owned(),
        };
        self.client
            .connect(self.ctx(timeout), &req)
            .await
            .map_err(timeout_error("connect", self.id()))
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
            .shutdown(self.ctx(Duration::from_secs(5)), &req)
            .await
        {
            tracing::debug!(id = self.id(), error = %e, "shim shutdown");
        }
    }
}
