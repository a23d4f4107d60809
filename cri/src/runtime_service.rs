//! `runtime.v1.RuntimeService`: each call turned into the CRI's own
//! types and passed to [`Cri`].

use crated_api::to_grpc;
use tonic::{Request, Response, Status};

use crate::batch::{self, Replies};
use crate::runtime::v1 as pb;
use crate::runtime::v1::runtime_service_server::RuntimeService;
use crate::Cri;

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
        self.update_runtime_config(request.into_inner())
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<pb::RunPodSandboxRequest>,
    ) -> Result<Response<pb::RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let id = self
            .to_completion("RunPodSandbox", |cri| async move {
                cri.run_pod_sandbox(request).await
            })
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<pb::StopPodSandboxRequest>,
    ) -> Result<Response<pb::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.to_completion("StopPodSandbox", |cri| async move {
            cri.stop_pod_sandbox(&id).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<pb::RemovePodSandboxRequest>,
    ) -> Result<Response<pb::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.to_completion("RemovePodSandbox", |cri| async move {
            cri.remove_pod_sandbox(&id).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<pb::PodSandboxStatusRequest>,
    ) -> Result<Response<pb::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let mut status = self
            .pod_sandbox_status(&request.pod_sandbox_id, request.verbose)
            .await
            .map_err(to_grpc)?;
        // Its containers too, read after its timestamp was taken: the
        // kubelet's evented PLEG takes them from here.
        if let Some(id) = status.status.as_ref().map(|s| s.id.clone()) {
            status.containers_statuses = self.container_statuses_of(&id).await;
        }
        Ok(Response::new(status))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<pb::ListPodSandboxRequest>,
    ) -> Result<Response<pb::ListPodSandboxResponse>, Status> {
        let items = self.list_pod_sandbox(request.into_inner().filter);
        Ok(Response::new(pb::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let id = self
            .to_completion("CreateContainer", |cri| async move {
                cri.create_container(request).await
            })
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.to_completion("StartContainer", |cri| async move {
            cri.start_container(&id).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let request = request.into_inner();
        self.to_completion("StopContainer", |cri| async move {
            cri.stop_container(&request.container_id, request.timeout)
                .await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.to_completion("RemoveContainer", |cri| async move {
            cri.remove_container(&id).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let containers = self.list_containers(request.into_inner().filter).await;
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<pb::ContainerStatusRequest>,
    ) -> Result<Response<pb::ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let status = self
            .container_status(&request.container_id, request.verbose)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(status))
    }

    async fn update_container_resources(
        &self,
        request: Request<pb::UpdateContainerResourcesRequest>,
    ) -> Result<Response<pb::UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        self.to_completion("UpdateContainerResources", |cri| async move {
            cri.update_container_resources(request).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<pb::ReopenContainerLogRequest>,
    ) -> Result<Response<pb::ReopenContainerLogResponse>, Status> {
        self.reopen_container_log(&request.into_inner().container_id)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        let response = self
            .exec_sync(request.into_inner())
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(response))
    }

    async fn exec(
        &self,
        request: Request<pb::ExecRequest>,
    ) -> Result<Response<pb::ExecResponse>, Status> {
        self.exec_url(request.into_inner())
            .map(Response::new)
            .map_err(to_grpc)
    }

    async fn attach(
        &self,
        request: Request<pb::AttachRequest>,
    ) -> Result<Response<pb::AttachResponse>, Status> {
        self.attach_url(request.into_inner())
            .map(Response::new)
            .map_err(to_grpc)
    }

    async fn port_forward(
        &self,
        request: Request<pb::PortForwardRequest>,
    ) -> Result<Response<pb::PortForwardResponse>, Status> {
        self.port_forward_url(request.into_inner())
            .map(Response::new)
            .map_err(to_grpc)
    }

    async fn container_stats(
        &self,
        request: Request<pb::ContainerStatsRequest>,
    ) -> Result<Response<pb::ContainerStatsResponse>, Status> {
        let stats = self
            .container_stats(&request.into_inner().container_id)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<pb::ListContainerStatsRequest>,
    ) -> Result<Response<pb::ListContainerStatsResponse>, Status> {
        let stats = self
            .list_container_stats(request.into_inner().filter)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<pb::PodSandboxStatsRequest>,
    ) -> Result<Response<pb::PodSandboxStatsResponse>, Status> {
        let stats = self
            .pod_sandbox_stats(&request.into_inner().pod_sandbox_id)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<pb::ListPodSandboxStatsRequest>,
    ) -> Result<Response<pb::ListPodSandboxStatsResponse>, Status> {
        let stats = self
            .list_pod_sandbox_stats(request.into_inner().filter)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(
        &self,
        request: Request<pb::CheckpointContainerRequest>,
    ) -> Result<Response<pb::CheckpointContainerResponse>, Status> {
        let request = request.into_inner();
        self.to_completion("CheckpointContainer", |cri| async move {
            cri.checkpoint_container(request).await
        })
        .await
        .map_err(to_grpc)?;
        Ok(Response::new(pb::CheckpointContainerResponse {}))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<pb::ListMetricDescriptorsRequest>,
    ) -> Result<Response<pb::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(pb::ListMetricDescriptorsResponse {
            descriptors: crate::metrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<pb::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<pb::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(pb::ListPodSandboxMetricsResponse {
            pod_metrics: self.pod_sandbox_metrics().await,
        }))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<pb::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<pb::UpdatePodSandboxResourcesResponse>, Status> {
        self.update_pod_sandbox_resources(&request.into_inner())
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdatePodSandboxResourcesResponse {}))
    }

    type StreamPodSandboxesStream = Replies<pb::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<pb::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let items = self.list_pod_sandbox(request.into_inner().filter);
        Ok(Response::new(batch::stream(items, |pod_sandboxes| {
            pb::StreamPodSandboxesResponse { pod_sandboxes }
        })))
    }

    type StreamContainersStream = Replies<pb::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<pb::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let containers = self.list_containers(request.into_inner().filter).await;
        Ok(Response::new(batch::stream(containers, |containers| {
            pb::StreamContainersResponse { containers }
        })))
    }

    type StreamContainerStatsStream = Replies<pb::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<pb::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let stats = self
            .list_container_stats(request.into_inner().filter)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(batch::stream(stats, |container_stats| {
            pb::StreamContainerStatsResponse { container_stats }
        })))
    }

    type StreamPodSandboxStatsStream = Replies<pb::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<pb::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let stats = self
            .list_pod_sandbox_stats(request.into_inner().filter)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(batch::stream(stats, |pod_sandbox_stats| {
            pb::StreamPodSandboxStatsResponse { pod_sandbox_stats }
        })))
    }

    type GetContainerEventsStream = Replies<pb::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _: Request<pb::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        use futures::StreamExt as _;
        Ok(Response::new(Box::pin(self.container_events().map(Ok))))
    }

    type StreamPodSandboxMetricsStream = Replies<pb::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<pb::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let metrics = self.pod_sandbox_metrics().await;
        Ok(Response::new(batch::stream(
            metrics,
            |pod_sandbox_metrics| pb::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            },
        )))
    }
}
