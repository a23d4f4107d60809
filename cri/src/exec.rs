//! `ExecSync`: a command run in a running container, its output returned
//! whole (each stream capped at 16 MiB, as containerd's).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crated_client::cio::Fifos;
use crated_core::{Error, Result};
use tokio::io::AsyncWrite;

use crate::runtime::v1 as pb;
use crate::Cri;

/// The most of each stream ExecSync returns; the rest is read and
/// dropped so the process never blocks on a full pipe.
const MAX_STREAM: usize = 16 * 1024 * 1024;
/// How long the output may take to drain after the process exited.
const DRAIN: Duration = Duration::from_secs(5);

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

impl Cri {
    /// `ExecSync`: runs `cmd` in the container with its process settings
    /// (user, env, cwd, capabilities) and no terminal; a positive timeout
    /// kills it after that many seconds and answers DeadlineExceeded.
    pub(crate) async fn exec_sync(
        &self,
        request: pb::ExecSyncRequest,
    ) -> Result<pb::ExecSyncResponse> {
        if request.cmd.is_empty() {
            return Err(Error::invalid_argument("exec command must not be empty"));
        }
        let container = self.containers.get(&request.container_id)?;
        let state = container.status().state();
        if state != pb::ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {:?} is {}, not running",
                container.id,
                crate::container_run::state_name(state)
            )));
        }
        let record = self.client.load_container(&container.id).await?;
        let task = record.task().await?;
        let spec = record.spec()?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::failed_precondition("the container's spec has no process"))?;
        process.set_terminal(Some(false));
        process.set_args(Some(request.cmd.clone()));
        let exec_id = crate::store::new_id()?;
        let fifos = Fifos::new(
            &self.container_state(&container.id).join("io"),
            &exec_id,
            false,
            false,
        )?;
        let held = fifos.hold_outputs();
        let exec = task.exec(&exec_id, &process, fifos.stdio()).await?;
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
        attached.wait(DRAIN).await;
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
}
