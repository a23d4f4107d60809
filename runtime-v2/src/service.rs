//! `containerd.services.tasks.v1.Tasks` over the [`TaskManager`], as
//! containerd's tasks service: a task is created for a container record
//! (its spec and runtime), and every other call goes to the task's shim.

use std::sync::Arc;

use crated_api::containerd::services::tasks::v1 as api;
use crated_api::containerd::task::v2 as shim_pb;
use crated_api::containerd::types::Metric;
use crated_api::containerd::v1::types::Process;
use crated_api::metadata::grpc_namespace;
use crated_api::to_grpc;
use crated_core::containers::ContainerStore;
use crated_core::{Error, Namespace, Result};
use tonic::{Request, Response, Status};

use crate::manager::{CreateOptions, TaskManager};
use crate::shim::Shim;

/// The tasks service of a daemon.
pub struct Service {
    manager: Arc<TaskManager>,
    containers: Arc<dyn ContainerStore>,
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

fn required(id: &str, what: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_argument(format!("{what} must be set")));
    }
    Ok(())
}

impl Service {
    /// Serves `manager`'s tasks for the containers in `containers`.
    pub fn new(manager: Arc<TaskManager>, containers: Arc<dyn ContainerStore>) -> Self {
        Self {
            manager,
            containers,
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
        if r.checkpoint.is_some() {
            return Err(Error::not_implemented(
                "creating a task from a checkpoint is not built yet",
            ));
        }
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
                },
            )
            .await?;
        Ok(api::CreateTaskResponse {
            container_id: r.container_id,
            pid,
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
        _request: Request<api::CheckpointTaskRequest>,
    ) -> std::result::Result<Response<api::CheckpointTaskResponse>, Status> {
        reply(Err(Error::not_implemented(
            "checkpointing a task is not built yet",
        )))
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
