//! `containerd.services.tasks.v1.Tasks` over the [`TaskManager`], as
//! containerd's tasks service: a task is created for a container record
//! (its spec and runtime), and every other call goes to the task's shim.

use std::sync::Arc;

use crated_api::containerd::runc::v1::{CheckpointOptions, Options as RuncOptions};
use crated_api::containerd::services::tasks::v1 as api;
use crated_api::containerd::task::v2 as shim_pb;
use crated_api::containerd::types::Metric;
use crated_api::containerd::v1::types::Process;
use crated_api::metadata::{grpc_lease, grpc_namespace};
use crated_api::services::images::{descriptor_from_pb, descriptor_to_pb};
use crated_api::to_grpc;
use crated_core::containers::ContainerStore;
use crated_core::content::ContentStore;
use crated_core::{Error, Namespace, Result};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::checkpoint;
use crate::manager::{CreateOptions, RestoreFrom, TaskManager};
use crate::shim::Shim;

/// The tasks service of a daemon.
pub struct Service {
    manager: Arc<TaskManager>,
    containers: Arc<dyn ContainerStore>,
    /// Where checkpoints are written to and restored from.
    content: Arc<dyn ContentStore>,
}

fn any_to_pb(any: crated_core::descriptor::Any) -> prost_types::Any {
    prost_types::Any {
        type_url: any.type_url,
        value: any.value,
    }
}

/// A process as containerd's tasks service reports it: `id` is the task's
/// id for the init process, the exec id for an exec.
fn process_of(id: &str, state: shim_pb::StateResponse) -> Process {
    let process_id = if state.exec_id.is_empty() {
        id.to_owned()
    } else {
        state.exec_id
    };
    Process {
        container_id: id.to_owned(),
        id: process_id,
        pid: state.pid,
        status: state.status,
        stdin: state.stdin,
        stdout: state.stdout,
        stderr: state.stderr,
        terminal: state.terminal,
        exit_status: state.exit_status,
        exited_at: state.exited_at,
    }
}

/// `image_path` of runc checkpoint options: where the caller wants the
/// dump kept, instead of in the content store.
fn checkpoint_path(options: Option<&prost_types::Any>) -> Option<std::path::PathBuf> {
    let any = options.filter(|o| o.type_url.ends_with("containerd.runc.v1.CheckpointOptions"))?;
    let opts = CheckpointOptions::decode(any.value.as_slice()).ok()?;
    Some(opts.image_path)
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// `criu_image_path` of runc options: a checkpoint directory to restore
/// from as it is.
fn restore_path(options: Option<&prost_types::Any>) -> Option<std::path::PathBuf> {
    let any = options.filter(|o| o.type_url.ends_with("containerd.runc.v1.Options"))?;
    let opts = RuncOptions::decode(any.value.as_slice()).ok()?;
    Some(opts.criu_image_path)
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

fn required(id: &str, what: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_argument(format!("{what} must be set")));
    }
    Ok(())
}

impl Service {
    /// Serves `manager`'s tasks for the containers in `containers`,
    /// checkpointing into (and restoring from) `content`.
    pub fn new(
        manager: Arc<TaskManager>,
        containers: Arc<dyn ContainerStore>,
        content: Arc<dyn ContentStore>,
    ) -> Self {
        Self {
            manager,
            containers,
            content,
        }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> api::tasks_server::TasksServer<Self> {
        api::tasks_server::TasksServer::new(self)
    }

    fn task<T>(&self, request: &Request<T>, id: &str) -> Result<(Namespace, Arc<Shim>)> {
        let ns = grpc_namespace(request)?;
        required(id, "container id")?;
        let shim = self.manager.get(&ns, id)?;
        Ok((ns, shim))
    }

    async fn create(
        &self,
        request: Request<api::CreateTaskRequest>,
    ) -> Result<api::CreateTaskResponse> {
        let ns = grpc_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id, "container id")?;
        let container = self.containers.get(&ns, &r.container_id).await?;
        // From a checkpoint: its images, extracted for the shim to restore
        // at Start (the runc options' `criu_image_path` names a directory
        // that is already there instead).
        let checkpoint = match (restore_path(r.options.as_ref()), &r.checkpoint) {
            (Some(path), _) => Some(RestoreFrom::Path(path)),
            (None, Some(desc)) => {
                let desc = descriptor_from_pb(desc.clone())?;
                let dir = self.manager.checkpoint_scratch()?;
                checkpoint::extract(self.content.clone(), &ns, &desc, dir.path()).await?;
                Some(RestoreFrom::Scratch(dir))
            }
            (None, None) => None,
        };
        let spec = container.spec.map(|s| s.value).ok_or_else(|| {
            Error::failed_precondition(format!("container {:?} has no spec", r.container_id))
        })?;
        let runtime = if r.runtime_path.is_empty() {
            container.runtime.name.clone()
        } else {
            r.runtime_path.clone()
        };
        let options = r
            .options
            .filter(|o| !o.value.is_empty() || !o.type_url.is_empty())
            .or(container.runtime.options.map(any_to_pb));
        let (_, pid) = self
            .manager
            .create(
                &ns,
                &r.container_id,
                CreateOptions {
                    spec,
                    rootfs: r.rootfs,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    terminal: r.terminal,
                    runtime,
                    options,
                    checkpoint,
                },
            )
            .await?;
        Ok(api::CreateTaskResponse {
            container_id: r.container_id,
            pid,
        })
    }

    /// containerd's tasks `Checkpoint`: the shim has criu dump the task
    /// into a scratch directory, which goes into the content store as a
    /// tar, with the container's spec beside it (under the request's
    /// lease). With `image_path` in the options the dump stays there and
    /// nothing is stored.
    async fn checkpoint_task(
        &self,
        request: Request<api::CheckpointTaskRequest>,
    ) -> Result<api::CheckpointTaskResponse> {
        let (ns, shim) = self.task(&request, &request.get_ref().container_id)?;
        let lease = grpc_lease(&request)?;
        let r = request.into_inner();
        let container = self.containers.get(&ns, &r.container_id).await?;
        if let Some(path) = checkpoint_path(r.options.as_ref()) {
            shim.checkpoint(&path, r.options).await?;
            return Ok(api::CheckpointTaskResponse::default());
        }
        let dir = self.manager.checkpoint_scratch()?;
        shim.checkpoint(dir.path(), r.options).await?;
        let image =
            checkpoint::write_image(&*self.content, &ns, lease.as_deref(), dir.path()).await?;
        let spec = container
            .spec
            .map(any_to_pb)
            .map(|any| any.encode_to_vec())
            .unwrap_or_default();
        let config = crated_core::content::write_blob(
            &*self.content,
            &ns,
            lease.as_deref(),
            checkpoint::MEDIA_TYPE_CONFIG,
            &format!("checkpoint-spec-{}", r.container_id),
            spec.as_slice(),
        )
        .await?;
        Ok(api::CheckpointTaskResponse {
            descriptors: vec![descriptor_to_pb(image), descriptor_to_pb(config)],
        })
    }

    async fn list(
        &self,
        request: Request<api::ListTasksRequest>,
    ) -> Result<api::ListTasksResponse> {
        let ns = grpc_namespace(&request)?;
        let mut tasks = Vec::new();
        for shim in self.manager.list(&ns) {
            match shim.state("").await {
                Ok(state) => tasks.push(process_of(shim.id(), state)),
                // Deleted meanwhile, or its shim died (the monitor cleans
                // up after it): not listed, as containerd.
                Err(e) => {
                    if !e.is_not_found() {
                        tracing::warn!(id = shim.id(), error = %e, "task state for list");
                    }
                }
            }
        }
        Ok(api::ListTasksResponse { tasks })
    }

    async fn metrics(&self, request: Request<api::MetricsRequest>) -> Result<api::MetricsResponse> {
        let ns = grpc_namespace(&request)?;
        let filters = request.into_inner().filters;
        // ctr asks with `id==<container>`; any other filter is an id list.
        let wanted: Vec<String> = filters
            .iter()
            .flat_map(|f| f.split(','))
            .filter_map(|f| {
                f.trim()
                    .strip_prefix("id==")
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .collect();
        let mut metrics = Vec::new();
        for shim in self.manager.list(&ns) {
            if !wanted.is_empty() && !wanted.iter().any(|w| w == shim.id()) {
                continue;
            }
            let stats = shim.stats().await?;
            metrics.push(Metric {
                timestamp: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                id: shim.id().to_owned(),
                data: stats.stats,
            });
        }
        Ok(api::MetricsResponse { metrics })
    }
}

fn reply<T>(result: Result<T>) -> std::result::Result<Response<T>, Status> {
    result.map(Response::new).map_err(to_grpc)
}

#[tonic::async_trait]
impl api::tasks_server::Tasks for Service {
    async fn create(
        &self,
        request: Request<api::CreateTaskRequest>,
    ) -> std::result::Result<Response<api::CreateTaskResponse>, Status> {
        reply(Service::create(self, request).await)
    }

    async fn start(
        &self,
        request: Request<api::StartRequest>,
    ) -> std::result::Result<Response<api::StartResponse>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let started = shim.start(&request.get_ref().exec_id).await?;
            Ok(api::StartResponse { pid: started.pid })
        };
        reply(result.await)
    }

    async fn delete(
        &self,
        request: Request<api::DeleteTaskRequest>,
    ) -> std::result::Result<Response<api::DeleteResponse>, Status> {
        let result = async {
            let ns = grpc_namespace(&request)?;
            let id = request.into_inner().container_id;
            required(&id, "container id")?;
            let deleted = self.manager.delete(&ns, &id).await?;
            Ok(api::DeleteResponse {
                id,
                pid: deleted.pid,
                exit_status: deleted.exit_status,
                exited_at: deleted.exited_at,
            })
        };
        reply(result.await)
    }

    async fn delete_process(
        &self,
        request: Request<api::DeleteProcessRequest>,
    ) -> std::result::Result<Response<api::DeleteResponse>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let exec_id = request.into_inner().exec_id;
            required(&exec_id, "exec id")?;
            let deleted = shim.delete(&exec_id).await?;
            Ok(api::DeleteResponse {
                id: exec_id,
                pid: deleted.pid,
                exit_status: deleted.exit_status,
                exited_at: deleted.exited_at,
            })
        };
        reply(result.await)
    }

    async fn get(
        &self,
        request: Request<api::GetRequest>,
    ) -> std::result::Result<Response<api::GetResponse>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let state = shim.state(&request.get_ref().exec_id).await?;
            Ok(api::GetResponse {
                process: Some(process_of(shim.id(), state)),
            })
        };
        reply(result.await)
    }

    async fn list(
        &self,
        request: Request<api::ListTasksRequest>,
    ) -> std::result::Result<Response<api::ListTasksResponse>, Status> {
        reply(Service::list(self, request).await)
    }

    async fn kill(
        &self,
        request: Request<api::KillRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let r = request.into_inner();
            shim.kill(&r.exec_id, r.signal, r.all).await
        };
        reply(result.await)
    }

    async fn exec(
        &self,
        request: Request<api::ExecProcessRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let r = request.into_inner();
            required(&r.exec_id, "exec id")?;
            shim.exec(&shim_pb::ExecProcessRequest {
                id: r.container_id,
                exec_id: r.exec_id,
                terminal: r.terminal,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                spec: r.spec,
            })
            .await
        };
        reply(result.await)
    }

    async fn resize_pty(
        &self,
        request: Request<api::ResizePtyRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let r = request.into_inner();
            shim.resize_pty(&r.exec_id, r.width, r.height).await
        };
        reply(result.await)
    }

    async fn close_io(
        &self,
        request: Request<api::CloseIoRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let r = request.into_inner();
            shim.close_io(&r.exec_id, r.stdin).await
        };
        reply(result.await)
    }

    async fn pause(
        &self,
        request: Request<api::PauseTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            shim.pause().await
        };
        reply(result.await)
    }

    async fn resume(
        &self,
        request: Request<api::ResumeTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            shim.resume().await
        };
        reply(result.await)
    }

    async fn list_pids(
        &self,
        request: Request<api::ListPidsRequest>,
    ) -> std::result::Result<Response<api::ListPidsResponse>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            Ok(api::ListPidsResponse {
                processes: shim.pids().await?.processes,
            })
        };
        reply(result.await)
    }

    async fn checkpoint(
        &self,
        request: Request<api::CheckpointTaskRequest>,
    ) -> std::result::Result<Response<api::CheckpointTaskResponse>, Status> {
        reply(self.checkpoint_task(request).await)
    }

    async fn update(
        &self,
        request: Request<api::UpdateTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let r = request.into_inner();
            shim.update(&shim_pb::UpdateTaskRequest {
                id: r.container_id,
                resources: r.resources,
                annotations: r.annotations,
            })
            .await
        };
        reply(result.await)
    }

    async fn metrics(
        &self,
        request: Request<api::MetricsRequest>,
    ) -> std::result::Result<Response<api::MetricsResponse>, Status> {
        reply(Service::metrics(self, request).await)
    }

    async fn wait(
        &self,
        request: Request<api::WaitRequest>,
    ) -> std::result::Result<Response<api::WaitResponse>, Status> {
        let result = async {
            let (_, shim) = self.task(&request, &request.get_ref().container_id)?;
            let waited = shim.wait(&request.get_ref().exec_id).await?;
            Ok(api::WaitResponse {
                exit_status: waited.exit_status,
                exited_at: waited.exited_at,
            })
        };
        reply(result.await)
    }
}
