//! The tasks service, as containerd's: a task is created for a container
//! record (its spec and runtime, or a checkpoint to restore), and every
//! other call goes to the task's shim through the runtime.

use crated_core::deprecation::{Warning, Warnings};
use std::sync::Arc;

use crated_api::containerd::runc::v1::{CheckpointOptions, Options as RuncOptions};
use crated_api::convert::any_to_pb;
use crated_core::containers::ContainerStore;
use crated_core::content::ContentStore;
use crated_core::descriptor::{Any, Descriptor};
use crated_core::filters::{self, Adaptor};
use crated_core::tasks::{
    CheckpointTask, CreateTask, ExecProcess, Exit, Metric, Process, ProcessFields, ProcessInfo,
    Tasks, UpdateTask,
};
use crated_core::{identifiers, Namespace, Result};

use crate::error::Error as ServiceError;
use crated_runtime_v2::checkpoint;
use crated_runtime_v2::shim::Shim;
use crated_runtime_v2::{CreateOptions, RestoreFrom, TaskManager};
use prost::Message as _;

/// How many shims a listing or a metrics call asks at once.
const PARALLEL: usize = 16;

/// Tasks over the runtime.
pub struct TaskService {
    manager: Arc<TaskManager>,
    containers: Arc<dyn ContainerStore>,
    /// Where checkpoints are written to and restored from.
    content: Arc<dyn ContentStore>,
    /// Where a deprecated runtime in use is told.
    warnings: Warnings,
}

impl TaskService {
    /// Tasks of `manager` for the containers in `containers`,
    /// checkpointing into (and restoring from) `content`; a task of a
    /// deprecated runtime is reported to `warnings`.
    pub fn new(
        manager: Arc<TaskManager>,
        containers: Arc<dyn ContainerStore>,
        content: Arc<dyn ContentStore>,
        warnings: Warnings,
    ) -> Self {
        Self {
            manager,
            containers,
            content,
            warnings,
        }
    }

    fn shim(&self, ns: &Namespace, id: &str) -> Result<Arc<Shim>> {
        required(id, "container id")?;
        self.manager.get(ns, id)
    }
}

fn required(value: &str, what: &'static str) -> Result<()> {
    if value.is_empty() {
        return Err(ServiceError::Missing(what).into());
    }
    Ok(())
}

/// `image_path` of runc checkpoint options: where the caller wants the
/// dump kept, instead of in the content store.
fn checkpoint_path(options: Option<&Any>) -> Option<std::path::PathBuf> {
    let any = options.filter(|o| o.type_url.ends_with("containerd.runc.v1.CheckpointOptions"))?;
    let opts = CheckpointOptions::decode(any.value.as_slice()).ok()?;
    Some(opts.image_path)
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// `criu_image_path` of runc options: a checkpoint directory to restore
/// from as it is.
fn restore_path(options: Option<&Any>) -> Option<std::path::PathBuf> {
    let any = options.filter(|o| o.type_url.ends_with("containerd.runc.v1.Options"))?;
    let opts = RuncOptions::decode(any.value.as_slice()).ok()?;
    Some(opts.criu_image_path)
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// Filter field of a metrics request: `id`.
struct IdField<'a>(&'a str);

impl Adaptor for IdField<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["id"] => Some(self.0.to_owned()),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Tasks for TaskService {
    async fn create(&self, ns: &Namespace, task: CreateTask) -> Result<u32> {
        required(&task.container_id, "container id")?;
        let container = self.containers.get(ns, &task.container_id).await?;
        let spec = container
            .spec
            .map(|s| s.value)
            .ok_or_else(|| ServiceError::NoSpec(task.container_id.clone()))?;
        // From a checkpoint: its images, extracted for the shim to restore
        // at Start (the runc options' `criu_image_path` names a directory
        // that is already there instead).
        let checkpoint = match (restore_path(task.options.as_ref()), &task.checkpoint) {
            (Some(path), _) => Some(RestoreFrom::Path(path)),
            (None, Some(desc)) => {
                let dir = self.manager.checkpoint_scratch()?;
                checkpoint::extract(self.content.clone(), ns, desc, dir.path()).await?;
                Some(RestoreFrom::Scratch(dir))
            }
            (None, None) => None,
        };
        let runtime = if task.runtime_path.is_empty() {
            container.runtime.name.clone()
        } else {
            task.runtime_path.clone()
        };
        if runtime == "io.containerd.runc.v1" {
            self.warnings.emit(Warning::RuntimeRuncV1);
        }
        let options = task.options.or(container.runtime.options);
        let (_, pid) = self
            .manager
            .create(
                ns,
                &task.container_id,
                CreateOptions {
                    spec,
                    rootfs: task.rootfs,
                    stdio: task.stdio,
                    terminal: task.terminal,
                    runtime,
                    options,
                    checkpoint,
                },
            )
            .await?;
        Ok(pid)
    }

    async fn start(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<u32> {
        self.shim(ns, id)?.start(exec_id).await
    }

    async fn delete(&self, ns: &Namespace, id: &str) -> Result<Exit> {
        required(id, "container id")?;
        self.manager.delete(ns, id).await
    }

    async fn delete_process(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit> {
        let shim = self.shim(ns, id)?;
        required(exec_id, "exec id")?;
        shim.delete(exec_id).await
    }

    async fn get(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Process> {
        self.shim(ns, id)?.state(exec_id).await
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Process>> {
        use futures::StreamExt as _;
        let filter = filters::parse_all(filters)?;
        // Each shim within the task state timeout, several at once: one
        // hung shim costs the listing its timeout, not the others' too.
        let states: Vec<_> = futures::stream::iter(self.manager.list(ns))
            .map(|shim| async move {
                let state = shim.list_state().await;
                (shim, state)
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut tasks = Vec::new();
        for (shim, state) in states {
            match state {
                Ok(process) if filter.matches(&ProcessFields(&process)) => tasks.push(process),
                Ok(_) => {}
                // Deleted meanwhile, or its shim died (the monitor cleans
                // up after it): not listed, as containerd.
                Err(e) => {
                    if !e.is_not_found() {
                        tracing::warn!(id = shim.id(), error = %e, "task state for list");
                    }
                }
            }
        }
        Ok(tasks)
    }

    async fn kill(
        &self,
        ns: &Namespace,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        self.shim(ns, id)?.kill(exec_id, signal, all).await
    }

    async fn exec(&self, ns: &Namespace, id: &str, process: ExecProcess) -> Result<()> {
        let shim = self.shim(ns, id)?;
        required(&process.exec_id, "exec id")?;
        // Exec ids name files in the task's bundle.
        identifiers::validate(&process.exec_id)
            .map_err(|e| e.context(format!("exec id {:?}", process.exec_id)))?;
        shim.exec(process).await
    }

    async fn resize_pty(
        &self,
        ns: &Namespace,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        self.shim(ns, id)?.resize_pty(exec_id, width, height).await
    }

    async fn close_io(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<()> {
        self.shim(ns, id)?.close_io(exec_id).await
    }

    async fn pause(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.shim(ns, id)?.pause().await
    }

    async fn resume(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.shim(ns, id)?.resume().await
    }

    async fn pids(&self, ns: &Namespace, id: &str) -> Result<Vec<ProcessInfo>> {
        self.shim(ns, id)?.pids().await
    }

    /// containerd's tasks `Checkpoint`: the shim has criu dump the task
    /// into a scratch directory, which goes into the content store as a
    /// tar, with the container's spec beside it (under the caller's
    /// lease). With `image_path` in the options the dump stays there and
    /// nothing is stored.
    async fn checkpoint(
        &self,
        ns: &Namespace,
        id: &str,
        options: CheckpointTask,
    ) -> Result<Vec<Descriptor>> {
        let shim = self.shim(ns, id)?;
        let container = self.containers.get(ns, id).await?;
        if let Some(path) = checkpoint_path(options.options.as_ref()) {
            shim.checkpoint(&path, options.options).await?;
            return Ok(Vec::new());
        }
        let dir = self.manager.checkpoint_scratch()?;
        shim.checkpoint(dir.path(), options.options).await?;
        let lease = options.lease.as_deref();
        let image = checkpoint::write_image(&*self.content, ns, lease, dir.path()).await?;
        let spec = container
            .spec
            .map(any_to_pb)
            .map(|any| any.encode_to_vec())
            .unwrap_or_default();
        let config = crated_core::content::write_blob(
            &*self.content,
            ns,
            lease,
            checkpoint::MEDIA_TYPE_CONFIG,
            &format!("checkpoint-spec-{id}"),
            spec.as_slice(),
        )
        .await?;
        Ok(vec![image, config])
    }

    async fn update(&self, ns: &Namespace, id: &str, update: UpdateTask) -> Result<()> {
        self.shim(ns, id)?.update(update).await
    }

    async fn metrics(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Metric>> {
        use futures::StreamExt as _;
        let filter = filters::parse_all(filters)?;
        let shims: Vec<Arc<Shim>> = self
            .manager
            .list(ns)
            .into_iter()
            .filter(|shim| filter.matches(&IdField(shim.id())))
            .collect();
        let stats: Vec<_> = futures::stream::iter(shims)
            .map(|shim| async move {
                let stats = shim.stats().await;
                (shim, stats)
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut metrics = Vec::with_capacity(stats.len());
        for (shim, stats) in stats {
            match stats {
                Ok((timestamp, data)) => metrics.push(Metric {
                    id: shim.id().to_owned(),
                    timestamp,
                    data,
                }),
                // Gone meanwhile: not reported, as containerd.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(metrics)
    }

    async fn wait(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit> {
        self.shim(ns, id)?.wait(exec_id).await
    }
}
