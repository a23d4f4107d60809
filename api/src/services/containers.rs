//! `containerd.services.containers.v1.Containers` over a
//! [`ContainerStore`]: a translation only (the service layer publishes
//! the `/containers/*` events).

use std::pin::Pin;
use std::sync::Arc;

use crated_core::containers::{Container, ContainerStore, Runtime};
use crated_core::{Error, Result};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::containerd::services::containers::v1 as pb;
use crate::convert::{any_from_pb, any_to_pb, to_system_time, to_timestamp};
use crate::metadata::grpc_namespace;
use crate::to_grpc;

/// The containers service of a daemon.
pub struct Service {
    store: Arc<dyn ContainerStore>,
}

impl Service {
    /// Serves `store`.
    pub fn new(store: Arc<dyn ContainerStore>) -> Self {
        Self { store }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::containers_server::ContainersServer<Self> {
        pb::containers_server::ContainersServer::new(self)
    }
}

/// A container as its wire message.
pub fn to_pb(c: Container) -> pb::Container {
    pb::Container {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: Some(pb::container::Runtime {
            name: c.runtime.name,
            options: c.runtime.options.map(any_to_pb),
        }),
        spec: c.spec.map(any_to_pb),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: Some(to_timestamp(c.created_at)),
        updated_at: Some(to_timestamp(c.updated_at)),
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_to_pb(v)))
            .collect(),
        sandbox: c.sandbox,
    }
}

/// A wire container as the core type.
pub fn from_pb(c: Option<pb::Container>) -> Result<Container> {
    let c = c.ok_or_else(|| Error::from(crate::error::Error::Missing("container")))?;
    let now = std::time::SystemTime::now();
    let runtime = c.runtime.unwrap_or_default();
    Ok(Container {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: Runtime {
            name: runtime.name,
            options: runtime.options.map(any_from_pb),
        },
        spec: c.spec.map(any_from_pb),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: c.created_at.as_ref().map(to_system_time).unwrap_or(now),
        updated_at: c.updated_at.as_ref().map(to_system_time).unwrap_or(now),
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_from_pb(v)))
            .collect(),
        sandbox: c.sandbox,
    })
}

#[tonic::async_trait]
impl pb::containers_server::Containers for Service {
    async fn get(
        &self,
        request: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::GetContainerResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let container = self
            .store
            .get(&ns, &request.get_ref().id)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::GetContainerResponse {
            container: Some(to_pb(container)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let containers = self
            .store
            .list(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListContainersResponse {
            containers: containers.into_iter().map(to_pb).collect(),
        }))
    }

    type ListStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::ListContainerMessage, Status>> + Send>>;

    async fn list_stream(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let containers = self
            .store
            .list(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        let messages: Vec<Result<pb::ListContainerMessage, Status>> = containers
            .into_iter()
            .map(|c| {
                Ok(pb::ListContainerMessage {
                    container: Some(to_pb(c)),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn create(
        &self,
        request: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let container = from_pb(request.into_inner().container).map_err(to_grpc)?;
        let created = self.store.create(&ns, container).await.map_err(to_grpc)?;
        Ok(Response::new(pb::CreateContainerResponse {
            container: Some(to_pb(created)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::UpdateContainerResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        let container = from_pb(request.container).map_err(to_grpc)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self
            .store
            .update(&ns, container, &paths)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateContainerResponse {
            container: Some(to_pb(updated)),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let id = request.into_inner().id;
        self.store.delete(&ns, &id).await.map_err(to_grpc)?;
        Ok(Response::new(()))
    }
}
