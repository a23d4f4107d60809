//! `containerd.services.leases.v1.Leases` over a [`LeaseStore`]: a
//! translation only (the service layer makes `sync` deletes wait).

use std::sync::Arc;

use crated_core::leases::{Lease, LeaseStore, Resource};
use tonic::{Request, Response, Status};

use crate::containerd::services::leases::v1 as pb;
use crate::convert::to_timestamp;
use crate::metadata::grpc_namespace;
use crate::to_grpc;

/// The leases service of a daemon.
pub struct Service {
    store: Arc<dyn LeaseStore>,
}

impl Service {
    /// Serves `store`.
    pub fn new(store: Arc<dyn LeaseStore>) -> Self {
        Self { store }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::leases_server::LeasesServer<Self> {
        pb::leases_server::LeasesServer::new(self)
    }
}

/// A lease as its wire message.
pub fn to_pb(lease: Lease) -> pb::Lease {
    pb::Lease {
        id: lease.id,
        created_at: Some(to_timestamp(lease.created_at)),
        labels: lease.labels.into_iter().collect(),
    }
}

fn resource(r: Option<pb::Resource>) -> Result<Resource, Status> {
    let r = r.ok_or_else(|| to_grpc(crate::error::Error::Missing("resource").into()))?;
    Ok(Resource {
        id: r.id,
        r#type: r.r#type,
    })
}

#[tonic::async_trait]
impl pb::leases_server::Leases for Service {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        // An empty id asks the server to choose one, as containerd does.
        let lease = self
            .store
            .create(&ns, &request.id, request.labels.into_iter().collect())
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::CreateResponse {
            lease: Some(to_pb(lease)),
        }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        self.store
            .delete(&ns, &request.id, request.sync)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let leases = self
            .store
            .list(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListResponse {
            leases: leases.into_iter().map(to_pb).collect(),
        }))
    }

    async fn add_resource(
        &self,
        request: Request<pb::AddResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        self.store
            .add_resource(&ns, &request.id, resource(request.resource)?)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        request: Request<pb::DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        self.store
            .delete_resource(&ns, &request.id, resource(request.resource)?)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        request: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let resources = self
            .store
            .list_resources(&ns, &request.get_ref().id)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListResourcesResponse {
            resources: resources
                .into_iter()
                .map(|r| pb::Resource {
                    id: r.id,
                    r#type: r.r#type,
                })
                .collect(),
        }))
    }
}
