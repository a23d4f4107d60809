//! After a restart: the CRI's sandboxes and containers read back from
//! their container records (the metadata and config extensions) and
//! status files, their tasks' states learned from the shims, the logs of
//! running containers reattached and their exits watched again.

use std::sync::Arc;

use crated_client::Container;
use crated_core::tasks::Status;
use crated_core::{Error, Result};

use crate::container::{
    now_nanos, read_status, write_status, ContainerIo, ContainerMetadata, ContainerStatus,
    CriContainer, KIND_CONTAINER, METADATA_EXTENSION as CONTAINER_METADATA,
};
use crate::logs::LogReader;
use crate::runtime::v1 as pb;
use crate::sandbox::{
    Sandbox, SandboxMetadata, SandboxState, KIND_LABEL, KIND_SANDBOX,
    METADATA_EXTENSION as SANDBOX_METADATA,
};
use crate::Cri;

fn metadata<T: serde::de::DeserializeOwned>(record: &Container, key: &str) -> Result<T> {
    let any = record.record().extensions.get(key).ok_or_else(|| {
        Error::not_found(format!(
            "container {:?} has no {key} extension",
            record.id()
        ))
    })?;
    serde_json::from_slice(&any.value)
        .map_err(|e| Error::invalid_argument(format!("{key} of {:?}: {e}", record.id())))
}

fn config<M: prost::Message + prost::Name + Default>(record: &Container) -> Result<M> {
    let any = record
        .record()
        .extensions
        .get(crate::CONFIG_EXTENSION)
        .ok_or_else(|| {
            Error::not_found(format!("container {:?} has no CRI config", record.id()))
        })?;
    crate::decode_config(any)
}

impl Cri {
    /// Reads back every sandbox and container of the CRI's namespace; one
    /// that cannot be read is logged and left alone.
    pub(crate) async fn recover(&self) -> Result<()> {
        let records = self.client.containers(&[]).await?;
        let kind = |c: &Container| {
            c.record()
                .labels
                .get(KIND_LABEL)
                .cloned()
                .unwrap_or_default()
        };
        for record in records.iter().filter(|c| kind(c) == KIND_SANDBOX) {
            if let Err(e) = self.recover_sandbox(record).await {
                tracing::warn!(id = record.id(), error = %e, "recover sandbox");
            }
        }
        for record in records.iter().filter(|c| kind(c) == KIND_CONTAINER) {
            if let Err(e) = self.recover_container(record).await {
                tracing::warn!(id = record.id(), error = %e, "recover container");
            }
        }
        Ok(())
    }

    async fn recover_sandbox(&self, record: &Container) -> Result<()> {
        let metadata: SandboxMetadata = metadata(record, SANDBOX_METADATA)?;
        let config: pb::PodSandboxConfig = config(record)?;
        let mut running = None;
        match record.task().await {
            Ok(task) => match task.status().await?.status {
                Status::Running | Status::Paused | Status::Pausing => running = Some(task),
                _ => {
                    let _ = task.kill(libc::SIGKILL as u32, true).await;
                    if let Err(e) = task.delete().await {
                        tracing::warn!(id = record.id(), error = %e, "delete stopped sandbox task");
                    }
                }
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.names.reserve(&metadata.name, record.id())?;
        let state = if running.is_some() {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        };
        let sandbox = Arc::new(Sandbox::new(
            record.id().to_owned(),
            config,
            metadata,
            state,
        ));
        self.sandboxes.insert(record.id(), Arc::clone(&sandbox));
        if let Some(task) = running {
            self.watch_sandbox(sandbox, task);
        }
        Ok(())
    }

    async fn recover_container(&self, record: &Container) -> Result<()> {
        let id = record.id().to_owned();
        let metadata: ContainerMetadata = metadata(record, CONTAINER_METADATA)?;
        let config: pb::ContainerConfig = config(record)?;
        let status_file = self.container_root(&id).join("status");
        let mut status = match read_status(&status_file) {
            Ok(s) => s,
            Err(e) => {
                // Created before its status was written: the record's
                // time is its creation.
                tracing::warn!(id, error = %e, "container status unreadable; starting over");
                ContainerStatus {
                    created_at: crate::container::nanos(record.record().created_at),
                    ..Default::default()
                }
            }
        };
        let mut io = ContainerIo::default();
        let mut running = None;
        match record.task().await {
            Ok(task) => {
                let state = task.status().await?;
                io.stdio = state.stdio.clone();
                match state.status {
                    Status::Running | Status::Paused | Status::Pausing => {
                        status.pid = task.pid();
                        if status.started_at == 0 {
                            status.started_at = now_nanos();
                        }
                        running = Some(task);
                    }
                    Status::Created => {
                        // Created, never started: back to created.
                        let _ = task.kill(libc::SIGKILL as u32, true).await;
                        let _ = task.delete().await;
                        status.pid = 0;
                    }
                    Status::Stopped => {
                        let exit = task.delete().await.ok();
                        if status.finished_at == 0 {
                            status.pid = 0;
                            status.finished_at = exit
                                .as_ref()
                                .and_then(|e| e.exited_at)
                                .map(crate::container::nanos)
                                .unwrap_or_else(now_nanos);
                            status.exit_code = exit
                                .map(|e| {
                                    i32::try_from(e.exit_status)
                                        .unwrap_or(crate::container::UNKNOWN_EXIT_CODE)
                                })
                                .unwrap_or(crate::container::UNKNOWN_EXIT_CODE);
                        }
                    }
                    Status::Unknown => status.unknown = true,
                }
            }
            Err(e) if e.is_not_found() => {
                if status.started_at != 0 && status.finished_at == 0 {
                    // It ran and its end was not seen.
                    status.pid = 0;
                    status.finished_at = now_nanos();
                    status.exit_code = crate::container::UNKNOWN_EXIT_CODE;
                    status.reason = "Unknown".to_owned();
                }
            }
            Err(e) => return Err(e),
        }
        if io.stdio.stdout.is_empty() {
            io.stdio = self.container_fifos(&id);
        }
        if let Err(e) = write_status(&status_file, &status) {
            tracing::warn!(id, error = %e, "write recovered container status");
        }
        if let Some(task) = &running {
            if let Err(e) = self.reattach_io(&metadata, &config, &mut io).await {
                tracing::warn!(id, error = %e, "reattach container log");
            }
            let _ = task;
        }
        self.names.reserve(&metadata.name, &id)?;
        let container = Arc::new(CriContainer::new(
            id.clone(),
            metadata,
            config,
            status,
            status_file,
            io,
        ));
        self.containers.insert(&id, Arc::clone(&container));
        if let Some(task) = running {
            self.spawn_exit_monitor(container, task);
        } else if container.status().state() == pb::ContainerState::ContainerExited {
            container.mark_stopped();
        } else if container.status().unknown {
            self.record_exit(
                &container,
                crated_core::tasks::Exit {
                    pid: 0,
                    exit_status: crate::container::UNKNOWN_EXIT_CODE as u32,
                    exited_at: None,
                },
            )
            .await;
        }
        Ok(())
    }

    /// The fifos made for container `id` at its creation, found on disk.
    fn container_fifos(&self, id: &str) -> crated_core::tasks::Stdio {
        let dir = self.container_state(id).join("io");
        let mut stdio = crated_core::tasks::Stdio::default();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return stdio;
        };
        for entry in entries.flatten() {
            let sub = entry.path();
            let path = |s: &str| {
                let p = sub.join(format!("{id}-{s}"));
                if p.exists() {
                    p.display().to_string()
                } else {
                    String::new()
                }
            };
            if !path("stdout").is_empty() {
                stdio.stdin = path("stdin");
                stdio.stdout = path("stdout");
                stdio.stderr = path("stderr");
            }
        }
        stdio
    }

    /// Reopens a running container's fifos (the shim holds their other
    /// ends) and starts writing its log again, appending.
    async fn reattach_io(
        &self,
        metadata: &ContainerMetadata,
        config: &pb::ContainerConfig,
        io: &mut ContainerIo,
    ) -> Result<()> {
        let open = |path: String| async move {
            let rx = crated_client::cio::open_reader(path.clone().into())
                .await
                .map_err(|e| Error::io(format!("open fifo {path}"), e))?;
            Ok::<LogReader, Error>(Box::new(rx))
        };
        let stdout = open(io.stdio.stdout.clone()).await?;
        let stderr = if io.stdio.stderr.is_empty() || config.tty {
            None
        } else {
            Some(open(io.stdio.stderr.clone()).await?)
        };
        if !io.stdio.stdin.is_empty() {
            io.stdin = crate::container_run::hold_stdin(&io.stdio.stdin).ok();
        }
        crate::container_run::start_output(
            io,
            &metadata.log_path,
            stdout,
            stderr,
            self.config.max_container_log_line_size,
        )
        .await
    }
}
