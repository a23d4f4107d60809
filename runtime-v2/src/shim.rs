//! A connected shim: the ttrpc `containerd.task.v2.Task` client of one
//! task, every call carrying the namespace and a bounded timeout (but
//! `Wait`, which lasts as long as the process). Its methods speak `core`
//! types; the protobuf messages stay inside.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crated_api::containerd::task::v2 as pb;
use crated_api::containerd::task::v2::task_ttrpc::TaskClient;
use crated_api::convert::{
    any_from_pb, any_to_pb, exit_from_pb, process_info_from_pb, status_from_pb, to_system_time,
};
use crated_api::metadata::ttrpc_context;
use crated_core::descriptor::Any;
use crated_core::tasks::{ExecProcess, Exit, Process, ProcessInfo, Stdio, UpdateTask};
use crated_core::Result;
use tokio::io::AsyncBufReadExt as _;

use crate::binary::ShimCommand;
use crate::bundle::Bundle;
use crate::error::Error;
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
pub fn open_log(bundle: &Bundle) -> crate::error::Result<tokio::task::JoinHandle<()>> {
    let path = bundle.path.join("log");
    match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(source) => {
            return Err(Error::Sys {
                op: "create shim log fifo",
                path,
                source,
            })
        }
    }
    // Read-write: the fifo never reports end-of-file between shim writers.
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
        .map_err(|e| Error::io("open shim log fifo", &path, e))?;
    let (ns, id) = (bundle.namespace.to_string(), bundle.id.clone());
    Ok(tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(receiver).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(namespace = ns, id, "shim: {line}");
        }
    }))
}

/// The bound of one call: how long, and the config key that says so.
#[derive(Clone, Copy)]
struct Bound {
    limit: Duration,
    key: &'static str,
}

/// The error of `call` to the shim of task `id` that failed with `source`
/// after `elapsed`: its timeout when `bound` has passed and the shim gave
/// no answer of its own (ttrpc's client reports its deadline as a plain
/// transport error, the shim's server as a DEADLINE_EXCEEDED status),
/// else the call's failure with the shim's kind.
fn call_failure(
    call: &'static str,
    id: &str,
    bound: Option<Bound>,
    elapsed: Duration,
    source: ttrpc::Error,
) -> Error {
    let answered = match &source {
        ttrpc::Error::RpcStatus(status) => {
            status.code.value() != ttrpc::Code::DEADLINE_EXCEEDED as i32
        }
        _ => false,
    };
    let (id, source) = (id.to_owned(), Box::new(source));
    match bound {
        Some(Bound { limit, key }) if !answered && elapsed >= limit => Error::CallTimeout {
            call,
            id,
            key,
            limit,
            source,
        },
        _ => Error::Call { call, id, source },
    }
}

impl Shim {
    /// Connects to the shim at `address`, giving up after `timeout`.
    pub async fn connect(
        bundle: Bundle,
        address: String,
        command: ShimCommand,
        log: Option<tokio::task::JoinHandle<()>>,
    ) -> crate::error::Result<Self> {
        let limit = command.timeouts.shim_load;
        let client =
            match tokio::time::timeout(limit, ttrpc::r#async::Client::connect(&address)).await {
                Ok(Ok(client)) => client,
                Ok(Err(source)) => {
                    return Err(Error::Connect {
                        address,
                        id: bundle.id,
                        source: Box::new(source),
                    })
                }
                Err(_) => {
                    return Err(Error::ConnectTimeout {
                        address,
                        id: bundle.id,
                        key: timeouts::SHIM_LOAD,
                        limit,
                    })
                }
            };
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

    fn ctx(&self, bound: Option<Bound>) -> ttrpc::context::Context {
        ttrpc_context(
            &self.bundle.namespace,
            bound.map_or(Duration::ZERO, |b| b.limit),
        )
    }

    /// The shim call timeout, for every call but those below.
    fn call_bound(&self) -> Bound {
        Bound {
            limit: self.timeouts().shim_call,
            key: timeouts::SHIM_CALL,
        }
    }

    /// The checkpoint timeout: criu takes as long as the memory it dumps
    /// or restores.
    fn checkpoint_bound(&self) -> Bound {
        Bound {
            limit: self.timeouts().task_checkpoint,
            key: timeouts::TASK_CHECKPOINT,
        }
    }

    /// The task state timeout: listings and liveness probes.
    fn state_bound(&self) -> Bound {
        Bound {
            limit: self.timeouts().task_state,
            key: timeouts::TASK_STATE,
        }
    }

    /// Runs the ttrpc `request` built with a context bounded by `bound`
    /// (unbounded with `None`), naming `call` and the task if it fails
    /// (see [`call_failure`]): whether the timeout fired is told by the
    /// clock, not by ttrpc's wording.
    async fn call<T, F>(
        &self,
        call: &'static str,
        bound: Option<Bound>,
        request: impl FnOnce(ttrpc::context::Context) -> F,
    ) -> crate::error::Result<T>
    where
        F: Future<Output = ttrpc::Result<T>>,
    {
        let started = Instant::now();
        request(self.ctx(bound))
            .await
            .map_err(|source| call_failure(call, self.id(), bound, started.elapsed(), source))
    }

    /// The bundle directory.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle.path
    }

    /// `Create`; returns the init's pid.
    pub(crate) async fn create(&self, req: &pb::CreateTaskRequest) -> crate::error::Result<u32> {
        // A task restored from a checkpoint may be created by criu here.
        let bound = if req.checkpoint.is_empty() {
            self.call_bound()
        } else {
            self.checkpoint_bound()
        };
        self.call("create", Some(bound), |ctx| self.client.create(ctx, req))
            .await
            .map(|r| r.pid)
    }

    /// `Start`; returns the process's pid.
    pub async fn start(&self, exec_id: &str) -> Result<u32> {
        let req = pb::StartRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        // A task created from a checkpoint is restored by its Start.
        self.call("start", Some(self.checkpoint_bound()), |ctx| {
            self.client.start(ctx, &req)
        })
        .await
        .map(|r| r.pid)
        .map_err(Into::into)
    }

    /// `State` of a process, within `bound` (the task state timeout when
    /// listing, the call timeout otherwise).
    async fn state_within(&self, exec_id: &str, bound: Bound) -> Result<Process> {
        let req = pb::StateRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let state = self
            .call("state", Some(bound), |ctx| self.client.state(ctx, &req))
            .await?;
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
        self.state_within(exec_id, self.call_bound()).await
    }

    /// `State` of the init process within the task state timeout, as a
    /// listing asks it.
    pub async fn list_state(&self) -> Result<Process> {
        self.state_within("", self.state_bound()).await
    }

    /// `Delete` (of the task, or of an exec process).
    pub async fn delete(&self, exec_id: &str) -> Result<Exit> {
        let req = pb::DeleteRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.call("delete", Some(self.call_bound()), |ctx| {
            self.client.delete(ctx, &req)
        })
        .await
        .map(|r| exit_from_pb(r.pid, r.exit_status, r.exited_at))
        .map_err(Into::into)
    }

    /// `Kill`.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = pb::KillRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
        };
        self.call("kill", Some(self.call_bound()), |ctx| {
            self.client.kill(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `Wait`: until the process exits; no timeout.
    pub async fn wait(&self, exec_id: &str) -> Result<Exit> {
        let req = pb::WaitRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.call("wait", None, |ctx| self.client.wait(ctx, &req))
            .await
            .map(|r| exit_from_pb(0, r.exit_status, r.exited_at))
            .map_err(Into::into)
    }

    /// `Wait` for the monitor: a transport failure (the shim is gone) is
    /// told apart from the shim's own answer.
    pub(crate) async fn wait_raw(&self) -> std::result::Result<pb::WaitResponse, ttrpc::Error> {
        let req = pb::WaitRequest {
            id: self.id().to_owned(),
            exec_id: String::new(),
        };
        self.client.wait(self.ctx(None), &req).await
    }

    /// `Pids`.
    pub async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        let req = pb::PidsRequest {
            id: self.id().to_owned(),
        };
        self.call("pids", Some(self.call_bound()), |ctx| {
            self.client.pids(ctx, &req)
        })
        .await
        .map(|r| r.processes.into_iter().map(process_info_from_pb).collect())
        .map_err(Into::into)
    }

    /// `Pause`.
    pub async fn pause(&self) -> Result<()> {
        let req = pb::PauseRequest {
            id: self.id().to_owned(),
        };
        self.call("pause", Some(self.call_bound()), |ctx| {
            self.client.pause(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `Resume`.
    pub async fn resume(&self) -> Result<()> {
        let req = pb::ResumeRequest {
            id: self.id().to_owned(),
        };
        self.call("resume", Some(self.call_bound()), |ctx| {
            self.client.resume(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `Checkpoint`: the shim has criu dump the task into `path`.
    pub async fn checkpoint(&self, path: &Path, options: Option<Any>) -> Result<()> {
        let req = pb::CheckpointTaskRequest {
            id: self.id().to_owned(),
            path: path.display().to_string(),
            options: options.map(any_to_pb),
        };
        self.call("checkpoint", Some(self.checkpoint_bound()), |ctx| {
            self.client.checkpoint(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
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
        self.call("exec", Some(self.call_bound()), |ctx| {
            self.client.exec(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `ResizePty`.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = pb::ResizePtyRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            width,
            height,
        };
        self.call("resize pty", Some(self.call_bound()), |ctx| {
            self.client.resize_pty(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `CloseIO` of stdin.
    pub async fn close_io(&self, exec_id: &str) -> Result<()> {
        let req = pb::CloseIoRequest {
            id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
            stdin: true,
        };
        self.call("close io", Some(self.call_bound()), |ctx| {
            self.client.close_io(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `Update`.
    pub async fn update(&self, update: UpdateTask) -> Result<()> {
        let req = pb::UpdateTaskRequest {
            id: self.id().to_owned(),
            resources: update.resources.map(any_to_pb),
            annotations: update.annotations.into_iter().collect(),
        };
        self.call("update", Some(self.call_bound()), |ctx| {
            self.client.update(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// `Stats`: the runtime's metrics message, read now.
    pub async fn stats(&self) -> Result<(SystemTime, Option<Any>)> {
        let req = pb::StatsRequest {
            id: self.id().to_owned(),
        };
        self.call("stats", Some(self.call_bound()), |ctx| {
            self.client.stats(ctx, &req)
        })
        .await
        .map(|r| (SystemTime::now(), r.stats.map(any_from_pb)))
        .map_err(Into::into)
    }

    /// `Connect`: answers only a live shim, within the task state timeout.
    pub async fn probe(&self) -> Result<()> {
        let req = pb::ConnectRequest {
            id: self.id().to_owned(),
        };
        self.call("connect", Some(self.state_bound()), |ctx| {
            self.client.connect(ctx, &req)
        })
        .await
        .map(|_| ())
        .map_err(Into::into)
    }

    /// Whether the shim's socket file is still there: a shim that decides
    /// to exit removes it first.
    pub fn socket_exists(&self) -> bool {
        std::path::Path::new(self.address.trim_start_matches("unix://")).exists()
    }

    /// `Shutdown`: the shim exits once it serves no task. Its connection
    /// closing is the expected answer.
    pub async fn shutdown(&self) {
        let req = pb::ShutdownRequest {
            id: self.id().to_owned(),
            now: false,
        };
        let bound = Bound {
            limit: self.timeouts().shim_shutdown,
            key: timeouts::SHIM_SHUTDOWN,
        };
        if let Err(e) = self
            .call("shutdown", Some(bound), |ctx| {
                self.client.shutdown(ctx, &req)
            })
            .await
        {
            tracing::debug!(id = self.id(), error = %e, "shim shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::error::KindError as _;
    use crated_core::Kind;

    const BOUND: Bound = Bound {
        limit: Duration::from_secs(2),
        key: timeouts::TASK_STATE,
    };

    #[test]
    fn a_call_failing_past_its_bound_names_the_timeout() {
        let err = call_failure(
            "state",
            "t1",
            Some(BOUND),
            Duration::from_secs(3),
            ttrpc::Error::Others("deadline".into()),
        );
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
        assert_eq!(
            err.to_string(),
            "state of task \"t1\": no answer within 2s (timeout io.containerd.timeout.task.state)"
        );
    }

    #[test]
    fn a_shims_own_answer_keeps_its_kind_even_late() {
        let answer = crated_api::to_ttrpc(crated_core::Error::not_found("gone"));
        let err = call_failure("state", "t1", Some(BOUND), Duration::from_secs(3), answer);
        assert_eq!(err.kind(), Kind::NotFound);
        // A broken connection before the bound is no timeout.
        let err = call_failure(
            "state",
            "t1",
            Some(BOUND),
            Duration::from_millis(5),
            ttrpc::Error::Eof,
        );
        assert_eq!(err.kind(), Kind::Unavailable);
        // Nor is anything on an unbounded call (Wait).
        let err = call_failure(
            "wait",
            "t1",
            None,
            Duration::from_secs(3600),
            ttrpc::Error::Eof,
        );
        assert_eq!(err.kind(), Kind::Unavailable);
    }
}
