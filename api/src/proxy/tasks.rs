//! [`Tasks`] over containerd's gRPC tasks service.

use std::time::SystemTime;

use crated_core::descriptor::Descriptor;
use crated_core::tasks::{
    CheckpointTask, CreateTask, ExecProcess, Exit, Metric, Process, ProcessInfo, Tasks, UpdateTask,
};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::tasks::v1 as pb;
use crate::convert::{
    any_from_pb, any_to_pb, descriptor_from_pb, descriptor_to_pb, exit_from_pb, mount_to_pb,
    process_from_pb, process_info_from_pb, to_system_time,
};
use crate::error::Error as WireError;
use crate::from_grpc;

/// The tasks of a remote daemon.
#[derive(Clone)]
pub struct TasksProxy {
    client: pb::tasks_client::TasksClient<Channel>,
}

impl TasksProxy {
    /// Calls the tasks service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::tasks_client::TasksClient::new(channel)),
        }
    }

    fn client(&self) -> pb::tasks_client::TasksClient<Channel> {
        self.client.clone()
    }
}

#[async_trait::async_trait]
impl Tasks for TasksProxy {
    async fn create(&self, ns: &Namespace, task: CreateTask) -> Result<u32> {
        let req = pb::CreateTaskRequest {
            container_id: task.container_id,
            rootfs: task.rootfs.into_iter().map(mount_to_pb).collect(),
            stdin: task.stdio.stdin,
            stdout: task.stdio.stdout,
            stderr: task.stdio.stderr,
            terminal: task.terminal,
            checkpoint: task.checkpoint.map(descriptor_to_pb),
            options: task.options.map(any_to_pb),
            runtime_path: task.runtime_path,
        };
        let reply = self.client().create(request(Some(ns), None, req)?).await;
        Ok(reply.map_err(from_grpc)?.into_inner().pid)
    }

    async fn start(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<u32> {
        let req = pb::StartRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let reply = self.client().start(request(Some(ns), None, req)?).await;
        Ok(reply.map_err(from_grpc)?.into_inner().pid)
    }

    async fn delete(&self, ns: &Namespace, id: &str) -> Result<Exit> {
        let req = pb::DeleteTaskRequest {
            container_id: id.to_owned(),
        };
        let r = self
            .client()
            .delete(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?
            .into_inner();
        Ok(exit_from_pb(r.pid, r.exit_status, r.exited_at))
    }

    async fn delete_process(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit> {
        let req = pb::DeleteProcessRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let r = self
            .client()
            .delete_process(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?
            .into_inner();
        Ok(exit_from_pb(r.pid, r.exit_status, r.exited_at))
    }

    async fn get(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Process> {
        let req = pb::GetRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let reply = self.client().get(request(Some(ns), None, req)?).await;
        let process = reply.map_err(from_grpc)?.into_inner().process;
        process
            .map(process_from_pb)
            .ok_or_else(|| WireError::MissingReply(format!("process for task {id:?}")).into())
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Process>> {
        // The wire request carries one filter; several are OR-ed by asking
        // for everything and filtering here.
        let (filter, local) = match filters {
            [one] => (one.clone(), None),
            _ => (
                String::new(),
                Some(crated_core::filters::parse_all(filters)?),
            ),
        };
        let req = pb::ListTasksRequest { filter };
        let reply = self.client().list(request(Some(ns), None, req)?).await;
        let mut tasks: Vec<Process> = reply
            .map_err(from_grpc)?
            .into_inner()
            .tasks
            .into_iter()
            .map(process_from_pb)
            .collect();
        if let Some(filter) = local {
            tasks.retain(|p| filter.matches(&crated_core::tasks::ProcessFields(p)));
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
        let req = pb::KillRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
        };
        self.client()
            .kill(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn exec(&self, ns: &Namespace, id: &str, process: ExecProcess) -> Result<()> {
        let req = pb::ExecProcessRequest {
            container_id: id.to_owned(),
            stdin: process.stdio.stdin,
            stdout: process.stdio.stdout,
            stderr: process.stdio.stderr,
            terminal: process.terminal,
            spec: process.spec.map(any_to_pb),
            exec_id: process.exec_id,
        };
        self.client()
            .exec(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn resize_pty(
        &self,
        ns: &Namespace,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        let req = pb::ResizePtyRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            width,
            height,
        };
        self.client()
            .resize_pty(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn close_io(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<()> {
        let req = pb::CloseIoRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            stdin: true,
        };
        self.client()
            .close_io(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn pause(&self, ns: &Namespace, id: &str) -> Result<()> {
        let req = pb::PauseTaskRequest {
            container_id: id.to_owned(),
        };
        self.client()
            .pause(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn resume(&self, ns: &Namespace, id: &str) -> Result<()> {
        let req = pb::ResumeTaskRequest {
            container_id: id.to_owned(),
        };
        self.client()
            .resume(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn pids(&self, ns: &Namespace, id: &str) -> Result<Vec<ProcessInfo>> {
        let req = pb::ListPidsRequest {
            container_id: id.to_owned(),
        };
        let reply = self.client().list_pids(request(Some(ns), None, req)?).await;
        Ok(reply
            .map_err(from_grpc)?
            .into_inner()
            .processes
            .into_iter()
            .map(process_info_from_pb)
            .collect())
    }

    async fn checkpoint(
        &self,
        ns: &Namespace,
        id: &str,
        options: CheckpointTask,
    ) -> Result<Vec<Descriptor>> {
        let req = pb::CheckpointTaskRequest {
            container_id: id.to_owned(),
            parent_checkpoint: String::new(),
            options: options.options.map(any_to_pb),
        };
        let req = request(Some(ns), options.lease.as_deref(), req)?;
        let reply = self.client().checkpoint(req).await;
        reply
            .map_err(from_grpc)?
            .into_inner()
            .descriptors
            .into_iter()
            .map(descriptor_from_pb)
            .collect()
    }

    async fn update(&self, ns: &Namespace, id: &str, update: UpdateTask) -> Result<()> {
        let req = pb::UpdateTaskRequest {
            container_id: id.to_owned(),
            resources: update.resources.map(any_to_pb),
            annotations: update.annotations.into_iter().collect(),
        };
        self.client()
            .update(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn metrics(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Metric>> {
        let req = pb::MetricsRequest {
            filters: filters.to_vec(),
        };
        let reply = self.client().metrics(request(Some(ns), None, req)?).await;
        Ok(reply
            .map_err(from_grpc)?
            .into_inner()
            .metrics
            .into_iter()
            .map(|m| Metric {
                id: m.id,
                timestamp: m
                    .timestamp
                    .as_ref()
                    .map(to_system_time)
                    .unwrap_or_else(SystemTime::now),
                data: m.data.map(any_from_pb),
            })
            .collect())
    }

    async fn wait(&self, ns: &Namespace, id: &str, exec_id: &str) -> Result<Exit> {
        let req = pb::WaitRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let r = self
            .client()
            .wait(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?
            .into_inner();
        Ok(exit_from_pb(0, r.exit_status, r.exited_at))
    }
}
