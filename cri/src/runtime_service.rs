//! `runtime.v1.RuntimeService`: each call turned into the CRI's own
//! types and passed to [`Cri`]; what is not built yet answers
//! Unimplemented, naming it.

use std::pin::Pin;

use crated_api::to_grpc;
use crated_core::Error;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::runtime::v1 as pb;
use crate::runtime::v1::runtime_service_server::RuntimeService;
use crate::Cri;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A call of the CRI not built yet in crated.
fn not_built(what: &str) -> Status {
    to_grpc(Error::not_implemented(format!(
        "{what} is not built yet in crated's CRI plugin"
    )))
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(self.version(request.into_inner())))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.status(request.into_inner()).await))
    }

    async fn runtime_config(
        &self,
        _: Request<pb::RuntimeConfigRequest>,
    ) -> Result<Response<pb::RuntimeConfigResponse>, Status> {
        Ok(Response::new(self.runtime_config()))
    }

    async fn update_runtime_config(
        &self,
        request: Request<pb::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<pb::UpdateRuntimeConfigResponse>, Status> {
        self.update_runtime_config(request.into_inner());
        Ok(Response::new(pb::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        _: Request<pb::RunPodSandboxRequest>,
    ) -> Result<Response<pb::RunPodSandboxResponse>, Status> {
        Err(not_built("running pod sandboxes"))
    }

    async fn stop_pod_sandbox(
        &self,
        _: Request<pb::StopPodSandboxRequest>,
    ) -> Result<Response<pb::StopPodSandboxResponse>, Status> {
        Err(not_built("stopping pod sandboxes"))
    }

    async fn remove_pod_sandbox(
        &self,
        _: Request<pb::RemovePodSandboxRequest>,
    ) -> Result<Response<pb::RemovePodSandboxResponse>, Status> {
        Err(not_built("removing pod sandboxes"))
    }

    async fn pod_sandbox_status(
        &self,
        _: Request<pb::PodSandboxStatusRequest>,
    ) -> Result<Response<pb::PodSandboxStatusResponse>, Status> {
        Err(not_built("pod sandbox status"))
    }

    async fn list_pod_sandbox(
        &self,
        _: Request<pb::ListPodSandboxRequest>,
    ) -> Result<Response<pb::ListPodSandboxResponse>, Status> {
        Err(not_built("listing pod sandboxes"))
    }

    async fn create_container(
        &self,
        _: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        Err(not_built("creating containers"))
    }

    async fn start_container(
        &self,
        _: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        Err(not_built("starting containers"))
    }

    async fn stop_container(
        &self,
        _: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        Err(not_built("stopping containers"))
    }

    async fn remove_container(
        &self,
        _: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        Err(not_built("removing containers"))
    }

    async fn list_containers(
        &self,
        _: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        Err(not_built("listing containers"))
    }

    async fn container_status(
        &self,
        _: Request<pb::ContainerStatusRequest>,
    ) -> Result<Response<pb::ContainerStatusResponse>, Status> {
        Err(not_built("container status"))
    }

    async fn update_container_resources(
        &self,
        _: Request<pb::UpdateContainerResourcesRequest>,
    ) -> Result<Response<pb::UpdateContainerResourcesResponse>, Status> {
        Err(not_built("updating container resources"))
    }

    async fn reopen_container_log(
        &self,
        _: Request<pb::ReopenContainerLogRequest>,
    ) -> Result<Response<pb::ReopenContainerLogResponse>, Status> {
        Err(not_built("reopening container logs"))
    }

    async fn exec_sync(
        &self,
        _: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        Err(not_built("ExecSync"))
    }

    async fn exec(
        &self,
        _: Request<pb::ExecRequest>,
    ) -> Result<Response<pb::ExecResponse>, Status> {
        Err(not_built("Exec (the streaming server)"))
    }

    async fn attach(
        &self,
        _: Request<pb::AttachRequest>,
    ) -> Result<Response<pb::AttachResponse>, Status> {
        Err(not_built("Attach (the streaming server)"))
    }

    async fn port_forward(
        &self,
        _: Request<pb::PortForwardRequest>,
    ) -> Result<Response<pb::PortForwardResponse>, Status> {
        Err(not_built("PortForward (the streaming server)"))
    }

    async fn container_stats(
        &self,
        _: Request<pb::ContainerStatsRequest>,
    ) -> Result<Response<pb::ContainerStatsResponse>, Status> {
        Err(not_built("container stats"))
    }

    async fn list_container_stats(
        &self,
        _: Request<pb::ListContainerStatsRequest>,
    ) -> Result<Response<pb::ListContainerStatsResponse>, Status> {
        Err(not_built("container stats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<pb::PodSandboxStatsRequest>,
    ) -> Result<Response<pb::PodSandboxStatsResponse>, Status> {
        Err(not_built("pod sandbox stats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<pb::ListPodSandboxStatsRequest>,
    ) -> Result<Response<pb::ListPodSandboxStatsResponse>, Status> {
        Err(not_built("pod sandbox stats"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<pb::CheckpointContainerRequest>,
    ) -> Result<Response<pb::CheckpointContainerResponse>, Status> {
        Err(not_built("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<pb::ListMetricDescriptorsRequest>,
    ) -> Result<Response<pb::ListMetricDescriptorsResponse>, Status> {
        Err(not_built("metric descriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<pb::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<pb::ListPodSandboxMetricsResponse>, Status> {
        Err(not_built("pod sandbox metrics"))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _: Request<pb::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<pb::UpdatePodSandboxResourcesResponse>, Status> {
        Err(not_built("updating pod sandbox resources"))
    }

    type StreamPodSandboxesStream = BoxStream<pb::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _: Request<pb::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(not_built("streaming pod sandboxes"))
    }

    type StreamContainersStream = BoxStream<pb::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _: Request<pb::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(not_built("streaming containers"))
    }

    type StreamContainerStatsStream = BoxStream<pb::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _: Request<pb::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(not_built("streaming container stats"))
    }

    type StreamPodSandboxStatsStream = BoxStream<pb::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _: Request<pb::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(not_built("streaming pod sandbox stats"))
    }

    type GetContainerEventsStream = BoxStream<pb::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _: Request<pb::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(not_built("container events"))
    }

    type StreamPodSandboxMetricsStream = BoxStream<pb::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<pb::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(not_built("streaming pod sandbox metrics"))
    }
}
