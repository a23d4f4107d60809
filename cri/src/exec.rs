//! Exec in a running container: `ExecSync`, its output returned whole
//! (each stream capped at 16 MiB, as containerd's), and the streamed exec
//! behind the streaming server's `/exec`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crated_client::cio::{Fifos, Input, Output};
use crated_core::{Error, Result};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::runtime::v1 as pb;
use crate::Cri;

/// The most of each stream ExecSync returns; the rest is read and
/// dropped so the process never blocks on a full pipe.
const MAX_STREAM: usize = 16 * 1024 * 1024;
/// How long a process killed at its timeout may take to exit.
const DRAIN: Duration = Duration::from_secs(5);
/// "For ever", for `drain_exec_sync_io_timeout = "0s"`.
const NO_LIMIT: Duration = Duration::from_secs(u32::MAX as u64);

/// A buffer that keeps the first `MAX_STREAM` bytes written to it.
#[derive(Clone, Default)]
struct Capped(Arc<Mutex<Vec<u8>>>);

impl Capped {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_STREAM.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The stdio of a streamed exec or attach; streams not given are not
/// connected.
#[derive(Default)]
pub(crate) struct StreamIo {
    /// What the client types.
    pub stdin: Option<Input>,
    /// Where the process's stdout (with a terminal, all its output) goes.
    pub stdout: Option<Output>,
    /// Where its stderr goes (never with a terminal).
    pub stderr: Option<Output>,
    /// Terminal sizes (width, height) the client sends.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

/// An exec process made and not yet started, with its fifos.
struct Prepared {
    exec: crated_client::Process,
    fifos: Fifos,
    id: String,
}

impl Cri {
    /// Makes an exec process running `cmd` in the running container `id`
    /// with the container's process settings (user, env, cwd,
    /// capabilities).
    async fn prepare_exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<Prepared> {
        if cmd.is_empty() {
            return Err(Error::invalid_argument("exec command must not be empty"));
        }
        let container = self.running_container(container_id)?;
        let record = self.client.load_container(&container.id).await?;
        let task = record.task().await?;
        let spec = record.spec()?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::failed_precondition("the container's spec has no process"))?;
        process.set_terminal(Some(tty));
        process.set_args(Some(cmd.to_vec()));
        let id = crate::store::new_id()?;
        let fifos = Fifos::new(
            &self.container_state(&container.id).join("io"),
            &id,
            stdin,
            tty,
        )?;
        let exec = task.exec(&id, &process, fifos.stdio()).await?;
        Ok(Prepared { exec, fifos, id })
    }

    /// `ExecSync`: runs `cmd` in the container with no terminal; a
    /// positive timeout kills it after that many seconds and answers
    /// DeadlineExceeded.
    pub(crate) async fn exec_sync(
        &self,
        request: pb::ExecSyncRequest,
    ) -> Result<pb::ExecSyncResponse> {
        let drain = self.config.exec_sync_drain()?.unwrap_or(NO_LIMIT);
        let Prepared {
            exec,
            fifos,
            id: exec_id,
        } = self
            .prepare_exec(&request.container_id, &request.cmd, false, false)
            .await?;
        let held = fifos.hold_outputs();
        let (stdout, stderr) = (Capped::default(), Capped::default());
        let attached = fifos.attach(
            None,
            Some(Box::new(stdout.clone())),
            Some(Box::new(stderr.clone())),
        );
        let outcome = async {
            exec.start().await?;
            drop(held);
            let limit = u64::try_from(request.timeout).unwrap_or(0);
            if limit == 0 {
                return exec.wait().await;
            }
            match tokio::time::timeout(Duration::from_secs(limit), exec.wait()).await {
                Ok(exit) => Ok(exit?),
                Err(_) => {
                    if let Err(e) = exec.kill(libc::SIGKILL as u32, false).await {
                        if !e.is_not_found() {
                            tracing::warn!(exec_id, error = %e, "kill timed-out exec");
                        }
                    }
                    let _ = tokio::time::timeout(DRAIN, exec.wait()).await;
                    Err(Error::deadline_exceeded(format!(
                        "command {:?} timed out after {limit}s",
                        request.cmd
                    )))
                }
            }
        }
        .await;
        // The output ends when every holder of it is gone: a process the
        // command left in the background keeps it open past the exit.
        attached.wait(drain).await;
        if let Err(e) = exec.delete().await {
            if !e.is_not_found() {
                tracing::warn!(exec_id, error = %e, "delete exec process");
            }
        }
        let exit = outcome?;
        Ok(pb::ExecSyncResponse {
            stdout: stdout.take(),
            stderr: stderr.take(),
            exit_code: i32::try_from(exit.exit_status).unwrap_or(i32::MAX),
        })
    }

    /// A streamed exec (the streaming server's `/exec`): `cmd` in the
    /// running container with the client's stdio, terminal and resizes;
    /// returns its exit status. When `gone` completes (the client went
    /// away) the process is killed rather than left running.
    pub(crate) async fn exec_stream(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        io: StreamIo,
        gone: impl std::future::Future<Output = ()>,
    ) -> Result<u32> {
        let Prepared { exec, fifos, id } = self
            .prepare_exec(container_id, cmd, tty, io.stdin.is_some())
            .await?;
        let held = fifos.hold_outputs();
        let attached = fifos.attach(io.stdin, io.stdout, io.stderr);
        let mut resizes = None;
        let outcome = async {
            let waiting = exec.wait();
            exec.start().await?;
            drop(held);
            // The terminal exists once the process is started: sizes go
            // to it from then on (the client sends the first at once, and
            // it waits in the channel).
            resizes = io.resize.map(|mut sizes| {
                let exec = exec.clone();
                tokio::spawn(async move {
                    while let Some((width, height)) = sizes.recv().await {
                        if let Err(e) = exec.resize(width.into(), height.into()).await {
                            tracing::debug!(error = %e, "resize exec terminal");
                        }
                    }
                })
            });
            tokio::pin!(waiting, gone);
            tokio::select! {
                exit = &mut waiting => exit,
                () = &mut gone => {
                    tracing::info!(container_id, exec_id = id, "exec client went away; killing the process");
                    if let Err(e) = exec.kill(libc::SIGKILL as u32, false).await {
                        if !e.is_not_found() {
                            tracing::warn!(exec_id = id, error = %e, "kill abandoned exec");
                        }
                    }
                    waiting.await
                }
            }
        }
        .await;
        attached.wait(DRAIN).await;
        if let Some(resizes) = resizes {
            resizes.abort();
        }
        if let Err(e) = exec.delete().await {
            if !e.is_not_found() {
                tracing::warn!(exec_id = id, error = %e, "delete exec process");
            }
        }
        Ok(outcome?.exit_status)
    }
}
