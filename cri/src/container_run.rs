//! Running CRI containers: StartContainer (the task, its log), the exit
//! monitor that records how it ended, StopContainer,
//! UpdateContainerResources and ReopenContainerLog.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crated_client::{NewTask, Task};
use crated_core::tasks::{Exit, UpdateTask};
use crated_core::{Error, Result};
use tokio::net::unix::pipe;

use crate::container::{
    nanos, now_nanos, parse_signal, ContainerIo, CriContainer, START_ERROR_EXIT_CODE,
    START_ERROR_REASON, UNKNOWN_EXIT_CODE,
};
use crate::logs::{LogReader, LogWriter};
use crate::runtime::v1 as pb;
use crate::Cri;

/// How long a killed container may take to be reaped before StopContainer
/// gives up.
const KILL_WAIT: Duration = Duration::from_secs(60);
/// How long the log may take to drain after the container exited.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// Opens the read end of an output fifo without waiting for a writer; the
/// shim opens the write end while the task is created.
fn hold_reader(path: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("open fifo {path}"), e))
}

/// Opens a container's stdin fifo for writing, to hold while it runs.
/// Read-write, so the open succeeds whether or not the shim has opened
/// its read end yet (a terminal's copy may open it later); we never read.
pub(crate) fn hold_stdin(path: &str) -> Result<pipe::Sender> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Error::io(format!("open fifo {path}"), e))
}

fn receiver(file: std::fs::File, path: &str) -> Result<LogReader> {
    let rx =
        pipe::Receiver::from_file(file).map_err(|e| Error::io(format!("watch fifo {path}"), e))?;
    Ok(Box::new(rx))
}

/// Starts copying a container's output into its log (or discarding it
/// when it has no log path), through the tee that attached clients read;
/// the log writer and its reopener go into `io`.
pub(crate) async fn start_output(
    io: &mut ContainerIo,
    log_path: &str,
    stdout: LogReader,
    stderr: Option<LogReader>,
    max_len: i64,
) -> Result<()> {
    let stdout = io.output.tee(stdout, false);
    let stderr = stderr.map(|stderr| io.output.tee(stderr, true));
    if log_path.is_empty() {
        for mut stream in std::iter::once(stdout).chain(stderr) {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
        return Ok(());
    }
    let log = LogWriter::start(log_path, stdout, stderr, max_len).await?;
    io.reopener = Some(log.reopener());
    io.log = Some(log);
    Ok(())
}

impl Cri {
    /// The container `id` (or unique prefix), which must be running: what
    /// exec, attach and their URLs need.
    pub(crate) fn running_container(&self, id: &str) -> Result<Arc<CriContainer>> {
        let container = self.containers.get(id)?;
        let state = container.status().state();
        if state != pb::ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {:?} is {}, not running",
                container.id,
                state_name(state)
            )));
        }
        Ok(container)
    }

    /// `StartContainer`.
    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        let container = self.containers.get(id)?;
        container.update_volatile(|s| {
            if s.state() != pb::ContainerState::ContainerCreated {
                return Err(Error::failed_precondition(format!(
                    "container {:?} is {}, not created",
                    container.id,
                    state_name(s.state())
                )));
            }
            if s.removing {
                return Err(Error::failed_precondition(format!(
                    "container {:?} is being removed, it cannot be started",
                    container.id
                )));
            }
            if s.starting {
                return Err(Error::failed_precondition(format!(
                    "container {:?} is already starting",
                    container.id
                )));
            }
            s.starting = true;
            Ok(())
        })?;
        let started = self.start_task(&container).await;
        if let Err(e) = &started {
            let message = e.to_string();
            let recorded = container.update(|s| {
                s.pid = 0;
                s.finished_at = now_nanos();
                s.exit_code = START_ERROR_EXIT_CODE;
                s.reason = START_ERROR_REASON.to_owned();
                s.message = message;
                Ok(())
            });
            if let Err(e) = recorded {
                tracing::warn!(id = container.id, error = %e, "record a failed start");
            }
            container.mark_stopped();
        }
        let _ = container.update_volatile(|s| {
            s.starting = false;
            Ok(())
        });
        started
    }

    async fn start_task(&self, container: &Arc<CriContainer>) -> Result<()> {
        let sandbox = self.sandboxes.get(&container.metadata.sandbox_id)?;
        if sandbox.state() != crate::sandbox::SandboxState::Ready {
            return Err(Error::failed_precondition(format!(
                "sandbox {:?} of the container is not running",
                sandbox.id
            )));
        }
        let ns = container
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        if ns.pid == pb::NamespaceMode::Target as i32 {
            self.containers.get(&ns.target_id)?;
        }
        let record = self.client.load_container(&container.id).await?;
        let options = match crate::userns::PodUserns::from_options(&ns)? {
            Some(userns) => userns.io_owner_options(record.record().runtime.options.as_ref())?,
            None => None,
        };
        let mut io = container.io.lock().await;
        let stdio = io.stdio.clone();
        let held_out = hold_reader(&stdio.stdout)?;
        let held_err = (!stdio.stderr.is_empty())
            .then(|| hold_reader(&stdio.stderr))
            .transpose()?;
        let task = record
            .new_task(
                stdio.clone(),
                container.config.tty,
                NewTask {
                    options,
                    runtime_path: self
                        .handler_config(&sandbox.metadata.runtime_handler)?
                        .runtime_path
                        .clone(),
                    ..NewTask::default()
                },
            )
            .await?;
        let outcome = async {
            if !stdio.stdin.is_empty() {
                // The task holds the read end now; hold the write end so
                // the process waits for input instead of reading its end.
                let sender = hold_stdin(&stdio.stdin)?;
                io.stdin = Some(sender);
            }
            let stdout = receiver(held_out, &stdio.stdout)?;
            let stderr = match held_err {
                Some(f) => Some(receiver(f, &stdio.stderr)?),
                None => None,
            };
            start_output(
                &mut io,
                &container.metadata.log_path,
                stdout,
                stderr,
                self.config.max_container_log_line_size,
            )
            .await?;
            task.start().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = outcome {
            let _ = task.kill(libc::SIGKILL as u32, true).await;
            let _ = task.delete().await;
            if let Some(log) = io.log.take() {
                log.stop();
            }
            io.stdin = None;
            return Err(e);
        }
        drop(io);
        container.update(|s| {
            s.pid = task.pid();
            s.started_at = now_nanos();
            Ok(())
        })?;
        self.spawn_exit_monitor(Arc::clone(container), task);
        self.publish_container_event(
            &container.id,
            &container.metadata.sandbox_id,
            pb::ContainerEventType::ContainerStartedEvent,
        )
        .await;
        Ok(())
    }

    /// `StopContainer`: the stop signal, then SIGKILL after `timeout`
    /// (at once for zero). Stopping what is not running is not an error.
    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        // Stopping what is gone is done (the kubelet retries stops).
        let container = match self.containers.get(id) {
            Ok(container) => container,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let timeout = Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
        self.stop_container_now(&container, timeout).await
    }

    /// Stops `container`: see [`Cri::stop_container`].
    pub(crate) async fn stop_container_now(
        &self,
        container: &Arc<CriContainer>,
        timeout: Duration,
    ) -> Result<()> {
        let state = container.status().state();
        if !matches!(
            state,
            pb::ContainerState::ContainerRunning | pb::ContainerState::ContainerUnknown
        ) {
            return Ok(());
        }
        let task = match self.load_task(&container.id).await? {
            Some(task) => task,
            None => {
                if state == pb::ContainerState::ContainerUnknown {
                    self.record_exit(container, unknown_exit()).await;
                }
                return Ok(());
            }
        };
        if state == pb::ContainerState::ContainerUnknown {
            self.spawn_exit_monitor(Arc::clone(container), task.clone());
        }
        if !timeout.is_zero() {
            let name = if container.metadata.stop_signal.is_empty() {
                "SIGTERM"
            } else {
                &container.metadata.stop_signal
            };
            let signal = parse_signal(name)?;
            if !container.stop_signaled.swap(true, Ordering::SeqCst) {
                if let Err(e) = task.kill(signal as u32, false).await {
                    if !e.is_not_found() {
                        return Err(e.context(format!("stop container {:?}", container.id)));
                    }
                }
            }
            if tokio::time::timeout(timeout, container.wait_stopped())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        if let Err(e) = task.kill(libc::SIGKILL as u32, false).await {
            if !e.is_not_found() {
                return Err(e.context(format!("kill container {:?}", container.id)));
            }
        }
        tokio::time::timeout(KILL_WAIT, container.wait_stopped())
            .await
            .map_err(|_| {
                Error::deadline_exceeded(format!(
                    "container {:?} did not exit {}s after SIGKILL",
                    container.id,
                    KILL_WAIT.as_secs()
                ))
            })
    }

    /// The task of container `id`, if it has one.
    pub(crate) async fn load_task(&self, id: &str) -> Result<Option<Task>> {
        let record = match self.client.load_container(id).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match record.task().await {
            Ok(task) => Ok(Some(task)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `UpdateContainerResources`: the running task's cgroup (when it
    /// runs), its spec and its status.
    pub(crate) async fn update_container_resources(
        &self,
        request: pb::UpdateContainerResourcesRequest,
    ) -> Result<()> {
        let container = self.containers.get(&request.container_id)?;
        let Some(resources) = request.linux else {
            return Ok(());
        };
        let state = container.status().state();
        if !matches!(
            state,
            pb::ContainerState::ContainerCreated | pb::ContainerState::ContainerRunning
        ) {
            return Err(Error::failed_precondition(format!(
                "container {:?} is {}: only created or running containers can be updated",
                container.id,
                state_name(state)
            )));
        }
        let record = self.client.load_container(&container.id).await?;
        let mut spec = record.spec()?;
        crated_client::spec::apply(
            &mut spec,
            &crated_client::spec::SpecContext::new(self.client.namespace(), &container.id),
            &[crate::spec_opts::with_cri_resources(
                Some(&resources),
                self.config.hugetlb(),
            )?],
        )?;
        let oci = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        if let Some(task) = self.load_task(&container.id).await? {
            let value = serde_json::to_vec(&oci)
                .map_err(|e| Error::unknown(format!("encode resources: {e}")))?;
            task.update(UpdateTask {
                resources: Some(crated_core::descriptor::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .to_owned(),
                    value,
                }),
                annotations: Default::default(),
            })
            .await?;
        }
        let mut updated = record.record().clone();
        updated.spec = Some(crated_client::spec::to_any(&spec)?);
        self.client
            .services()
            .containers
            .update(self.client.namespace(), updated, &["spec".to_owned()])
            .await?;
        container.update(|s| {
            s.resources = prost::Message::encode_to_vec(&resources);
            Ok(())
        })
    }

    /// `ReopenContainerLog`: after kubelet rotated the file.
    pub(crate) async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let container = self.containers.get(id)?;
        if container.status().state() != pb::ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {:?} is not running",
                container.id
            )));
        }
        let reopener = container.io.lock().await.reopener.clone();
        match reopener {
            Some(r) => r.reopen().await,
            None => Ok(()),
        }
    }
}

/// The lower-case name of a CRI container state.
pub fn state_name(state: pb::ContainerState) -> &'static str {
    match state {
        pb::ContainerState::ContainerCreated => "created",
        pb::ContainerState::ContainerRunning => "running",
        pb::ContainerState::ContainerExited => "exited",
        pb::ContainerState::ContainerUnknown => "unknown",
    }
}

fn unknown_exit() -> Exit {
    Exit {
        pid: 0,
        exit_status: UNKNOWN_EXIT_CODE as u32,
        exited_at: Some(std::time::SystemTime::now()),
    }
}

impl Cri {
    /// Waits for the task's exit in the background, then records it.
    pub(crate) fn spawn_exit_monitor(&self, container: Arc<CriContainer>, task: Task) {
        let cri = self.this.clone();
        tokio::spawn(async move {
            let exit = match task.wait().await {
                Ok(exit) => exit,
                Err(e) if e.is_not_found() => unknown_exit(),
                Err(e) => {
                    // The daemon is shutting down or the shim is gone; a
                    // restart recovers the container's state.
                    tracing::warn!(id = container.id, error = %e, "wait for container exit");
                    return;
                }
            };
            if let Some(cri) = cri.upgrade() {
                cri.record_exit(&container, exit).await;
            }
        });
    }

    /// What happens when a container's task exits: the task deleted, the log
    /// drained, the exit recorded (once), the stop event sent (with the
    /// status saying so), waiters woken.
    pub(crate) async fn record_exit(&self, container: &CriContainer, exit: Exit) {
        match self.client.load_container(&container.id).await {
            Ok(record) => match record.task().await {
                Ok(task) => {
                    if let Err(e) = task.delete().await {
                        if !e.is_not_found() {
                            tracing::warn!(id = container.id, error = %e, "delete exited task");
                        }
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(id = container.id, error = %e, "load exited task"),
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(id = container.id, error = %e, "load exited container"),
        }
        let io: ContainerIo = {
            let mut io = container.io.lock().await;
            ContainerIo {
                stdio: io.stdio.clone(),
                log: io.log.take(),
                reopener: io.reopener.take(),
                stdin: io.stdin.take(),
                ..Default::default()
            }
        };
        drop(io.stdin);
        if let Some(log) = io.log {
            if let Err(e) = log.drain(LOG_DRAIN).await {
                tracing::warn!(id = container.id, error = %e, "container log");
            }
        }
        let exited_at = exit.exited_at.map(nanos).unwrap_or_else(now_nanos);
        let recorded = container.update(|s| {
            if s.finished_at == 0 {
                s.pid = 0;
                s.finished_at = exited_at;
                s.exit_code = i32::try_from(exit.exit_status).unwrap_or(UNKNOWN_EXIT_CODE);
            }
            s.unknown = false;
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::error!(id = container.id, error = %e, "record container exit");
        }
        // The event before the stop is marked handled, as containerd
        // sends it: a StopContainer waits for that mark, and a removal
        // right after it must not leave the event without this container.
        self.publish_container_event(
            &container.id,
            &container.metadata.sandbox_id,
            pb::ContainerEventType::ContainerStoppedEvent,
        )
        .await;
        container.mark_stopped();
    }
}
