//! `containerd.services.namespaces.v1.Namespaces` over a
//! [`NamespaceService`]: a translation only.

use std::sync::Arc;

use crated_core::namespaces::{NamespaceInfo, NamespaceService};
use crated_core::{Namespace, Result};
use tonic::{Request, Response, Status};

use crate::containerd::services::namespaces::v1 as pb;
use crate::metadata::grpc_namespace;
use crate::to_grpc;

/// The namespaces service of a daemon.
pub struct Service {
    service: Arc<dyn NamespaceService>,
}

impl Service {
    /// Serves `service`.
    pub fn new(service: Arc<dyn NamespaceService>) -> Self {
        Self { service }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::namespaces_server::NamespacesServer<Self> {
        pb::namespaces_server::NamespacesServer::new(self)
    }
}

/// A namespace as its wire message.
pub fn to_pb(info: NamespaceInfo) -> pb::Namespace {
    pb::Namespace {
        name: info.name.to_string(),
        labels: info.labels.into_iter().collect(),
    }
}

/// A wire namespace as the core type; the name must be valid.
pub fn from_pb(ns: Option<pb::Namespace>) -> Result<NamespaceInfo> {
    let ns = ns.ok_or(crate::error::Error::Missing("namespace"))?;
    Ok(NamespaceInfo {
        name: Namespace::new(ns.name)?,
        labels: ns.labels.into_iter().collect(),
    })
}

/// The caller's own namespace, if its request names one.
fn caller<T>(request: &Request<T>) -> Option<Namespace> {
    grpc_namespace(request).ok()
}

#[tonic::async_trait]
impl pb::namespaces_server::Namespaces for Service {
    async fn get(
        &self,
        request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::GetNamespaceResponse>, Status> {
        let name = Namespace::new(request.into_inner().name).map_err(to_grpc)?;
        let info = self.service.get(&name).await.map_err(to_grpc)?;
        Ok(Response::new(pb::GetNamespaceResponse {
            namespace: Some(to_pb(info)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        // containerd ignores the filter; applying it is what a caller who
        // sends one expects.
        let filter = request.into_inner().filter;
        let filters: Vec<String> = if filter.is_empty() {
            Vec::new()
        } else {
            vec![filter]
        };
        let namespaces = self
            .service
            .list(&filters)
            .await
            .map_err(to_grpc)?
            .into_iter()
            .map(to_pb)
            .collect();
        Ok(Response::new(pb::ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        let caller = caller(&request);
        let ns = from_pb(request.into_inner().namespace).map_err(to_grpc)?;
        let info = self
            .service
            .create(caller.as_ref(), &ns.name, ns.labels)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::CreateNamespaceResponse {
            namespace: Some(to_pb(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateNamespaceRequest>,
    ) -> Result<Response<pb::UpdateNamespaceResponse>, Status> {
        let caller = caller(&request);
        let body = request.into_inner();
        let update = from_pb(body.namespace).map_err(to_grpc)?;
        let paths = body.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self
            .service
            .update(caller.as_ref(), update, &paths)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateNamespaceResponse {
            namespace: Some(to_pb(info)),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = caller(&request);
        let name = Namespace::new(request.into_inner().name).map_err(to_grpc)?;
        self.service
            .delete(caller.as_ref(), &name)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }
}
