//! `containerd.services.tasks.v1.Tasks` over [`Tasks`]: a translation
//! only (the service layer finds the container, restores checkpoints and
//! drives the runtime).

use std::sync::Arc;

use crated_core::tasks::{CheckpointTask, CreateTask, ExecProcess, Stdio, Tasks, UpdateTask};
use crated_core::Result;
use tonic::{Request, Response, Status};

use crate::containerd::services::tasks::v1 as pb;
use crate::containerd::types::Metric;
use crate::convert::{
    any_to_pb, descriptor_from_pb, descriptor_to_pb, mount_from_pb, optional_any,
    optional_timestamp, process_info_to_pb, process_to_pb, to_timestamp,
};
use crate::metadata::{grpc_lease, grpc_namespace};
use crate::to_grpc;

/// The tasks service of a daemon.
pub struct Service {
    tasks: Arc<dyn Tasks>,
}

impl Service {
    /// Serves `tasks`.
    pub fn new(tasks: Arc<dyn Tasks>) -> Self {
        Self { tasks }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::tasks_server::TasksServer<Self> {
        pb::tasks_server::TasksServer::new(self)
    }
}

fn reply<T>(result: Result<T>) -> std::result::Result<Response<T>, Status> {
    result.map(Response::new).map_err(to_grpc)
}

/// A create request as the core type.
pub fn create_from_pb(r: pb::CreateTaskRequest) -> Result<CreateTask> {
    Ok(CreateTask {
        container_id: r.container_id,
        rootfs: r.rootfs.into_iter().map(mount_from_pb).collect(),
        stdio: Stdio {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        },
        terminal: r.terminal,
        checkpoint: r.checkpoint.map(descriptor_from_pb).transpose()?,
        options: optional_any(r.options),
        runtime_path: r.runtime_path,
    })
}

#[tonic::async_trait]
impl pb::tasks_server::Tasks for Service {
    async fn create(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> std::result::Result<Response<pb::CreateTaskResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let task = create_from_pb(request.into_inner())?;
                let container_id = task.container_id.clone();
                let pid = self.tasks.create(&ns, task).await?;
                Ok(pb::CreateTaskResponse { container_id, pid })
            }
            .await,
        )
    }

    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> std::result::Result<Response<pb::StartResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                let pid = self.tasks.start(&ns, &r.container_id, &r.exec_id).await?;
                Ok(pb::StartResponse { pid })
            }
            .await,
        )
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> std::result::Result<Response<pb::DeleteResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let id = request.into_inner().container_id;
                let exit = self.tasks.delete(&ns, &id).await?;
                Ok(pb::DeleteResponse {
                    id,
                    pid: exit.pid,
                    exit_status: exit.exit_status,
                    exited_at: optional_timestamp(exit.exited_at),
                })
            }
            .await,
        )
    }

    async fn delete_process(
        &self,
        request: Request<pb::DeleteProcessRequest>,
    ) -> std::result::Result<Response<pb::DeleteResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.into_inner();
                let exit = self
                    .tasks
                    .delete_process(&ns, &r.container_id, &r.exec_id)
                    .await?;
                Ok(pb::DeleteResponse {
                    id: r.exec_id,
                    pid: exit.pid,
                    exit_status: exit.exit_status,
                    exited_at: optional_timestamp(exit.exited_at),
                })
            }
            .await,
        )
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> std::result::Result<Response<pb::GetResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                let process = self.tasks.get(&ns, &r.container_id, &r.exec_id).await?;
                Ok(pb::GetResponse {
                    process: Some(process_to_pb(process)),
                })
            }
            .await,
        )
    }

    async fn list(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> std::result::Result<Response<pb::ListTasksResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let filter = request.into_inner().filter;
                let filters: Vec<String> =
                    Some(filter).filter(|f| !f.is_empty()).into_iter().collect();
                let tasks = self.tasks.list(&ns, &filters).await?;
                Ok(pb::ListTasksResponse {
                    tasks: tasks.into_iter().map(process_to_pb).collect(),
                })
            }
            .await,
        )
    }

    async fn kill(
        &self,
        request: Request<pb::KillRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                self.tasks
                    .kill(&ns, &r.container_id, &r.exec_id, r.signal, r.all)
                    .await
            }
            .await,
        )
    }

    async fn exec(
        &self,
        request: Request<pb::ExecProcessRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.into_inner();
                let process = ExecProcess {
                    exec_id: r.exec_id,
                    stdio: Stdio {
                        stdin: r.stdin,
                        stdout: r.stdout,
                        stderr: r.stderr,
                    },
                    terminal: r.terminal,
                    spec: optional_any(r.spec),
                };
                self.tasks.exec(&ns, &r.container_id, process).await
            }
            .await,
        )
    }

    async fn resize_pty(
        &self,
        request: Request<pb::ResizePtyRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                self.tasks
                    .resize_pty(&ns, &r.container_id, &r.exec_id, r.width, r.height)
                    .await
            }
            .await,
        )
    }

    async fn close_io(
        &self,
        request: Request<pb::CloseIoRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                // containerd's shim closes stdin whatever the flag says:
                // stdin is the only stream a client can close.
                self.tasks.close_io(&ns, &r.container_id, &r.exec_id).await
            }
            .await,
        )
    }

    async fn pause(
        &self,
        request: Request<pb::PauseTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                self.tasks.pause(&ns, &request.get_ref().container_id).await
            }
            .await,
        )
    }

    async fn resume(
        &self,
        request: Request<pb::ResumeTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                self.tasks
                    .resume(&ns, &request.get_ref().container_id)
                    .await
            }
            .await,
        )
    }

    async fn list_pids(
        &self,
        request: Request<pb::ListPidsRequest>,
    ) -> std::result::Result<Response<pb::ListPidsResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let processes = self
                    .tasks
                    .pids(&ns, &request.get_ref().container_id)
                    .await?;
                Ok(pb::ListPidsResponse {
                    processes: processes.into_iter().map(process_info_to_pb).collect(),
                })
            }
            .await,
        )
    }

    async fn checkpoint(
        &self,
        request: Request<pb::CheckpointTaskRequest>,
    ) -> std::result::Result<Response<pb::CheckpointTaskResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let lease = grpc_lease(&request)?;
                let r = request.into_inner();
                let options = CheckpointTask {
                    options: optional_any(r.options),
                    lease,
                };
                let descriptors = self.tasks.checkpoint(&ns, &r.container_id, options).await?;
                Ok(pb::CheckpointTaskResponse {
                    descriptors: descriptors.into_iter().map(descriptor_to_pb).collect(),
                })
            }
            .await,
        )
    }

    async fn update(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.into_inner();
                let update = UpdateTask {
                    resources: optional_any(r.resources),
                    annotations: r.annotations.into_iter().collect(),
                };
                self.tasks.update(&ns, &r.container_id, update).await
            }
            .await,
        )
    }

    async fn metrics(
        &self,
        request: Request<pb::MetricsRequest>,
    ) -> std::result::Result<Response<pb::MetricsResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let metrics = self.tasks.metrics(&ns, &request.get_ref().filters).await?;
                Ok(pb::MetricsResponse {
                    metrics: metrics
                        .into_iter()
                        .map(|m| Metric {
                            timestamp: Some(to_timestamp(m.timestamp)),
                            id: m.id,
                            data: m.data.map(any_to_pb),
                        })
                        .collect(),
                })
            }
            .await,
        )
    }

    async fn wait(
        &self,
        request: Request<pb::WaitRequest>,
    ) -> std::result::Result<Response<pb::WaitResponse>, Status> {
        reply(
            async {
                let ns = grpc_namespace(&request)?;
                let r = request.get_ref();
                let exit = self.tasks.wait(&ns, &r.container_id, &r.exec_id).await?;
                Ok(pb::WaitResponse {
                    exit_status: exit.exit_status,
                    exited_at: optional_timestamp(exit.exited_at),
                })
            }
            .await,
        )
    }
}
