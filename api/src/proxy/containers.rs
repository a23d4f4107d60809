//! [`ContainerStore`] over containerd's gRPC containers service.

use crated_core::containers::{Container, ContainerStore};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::containers::v1 as pb;
use crate::error::Error as WireError;
use crate::from_grpc;
use crate::services::containers::{from_pb, to_pb};

/// The containers of a remote daemon.
#[derive(Clone)]
pub struct ContainersProxy {
    client: pb::containers_client::ContainersClient<Channel>,
}

impl ContainersProxy {
    /// Calls the containers service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::containers_client::ContainersClient::new(channel)),
        }
    }
}

fn container(c: Option<pb::Container>) -> Result<Container> {
    from_pb(c).map_err(|source| {
        WireError::BadReply {
            what: "container",
            source,
        }
        .into()
    })
}

#[async_trait::async_trait]
impl ContainerStore for ContainersProxy {
    async fn get(&self, ns: &Namespace, id: &str) -> Result<Container> {
        let req = pb::GetContainerRequest { id: id.to_owned() };
        let reply = self.client.clone().get(request(Some(ns), None, req)?).await;
        container(reply.map_err(from_grpc)?.into_inner().container)
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Container>> {
        let req = pb::ListContainersRequest {
            filters: filters.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .list(request(Some(ns), None, req)?)
            .await;
        reply
            .map_err(from_grpc)?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| container(Some(c)))
            .collect()
    }

    async fn create(&self, ns: &Namespace, created: Container) -> Result<Container> {
        let req = pb::CreateContainerRequest {
            container: Some(to_pb(created)),
        };
        let reply = self
            .client
            .clone()
            .create(request(Some(ns), None, req)?)
            .await;
        container(reply.map_err(from_grpc)?.into_inner().container)
    }

    async fn update(
        &self,
        ns: &Namespace,
        updated: Container,
        fieldpaths: &[String],
    ) -> Result<Container> {
        let req = pb::UpdateContainerRequest {
            container: Some(to_pb(updated)),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let reply = self
            .client
            .clone()
            .update(request(Some(ns), None, req)?)
            .await;
        container(reply.map_err(from_grpc)?.into_inner().container)
    }

    async fn delete(&self, ns: &Namespace, id: &str) -> Result<()> {
        let req = pb::DeleteContainerRequest { id: id.to_owned() };
        self.client
            .clone()
            .delete(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }
}
