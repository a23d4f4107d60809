//! `containerd.services.namespaces.v1.Namespaces` over a [`NamespaceStore`].

use std::sync::Arc;

use crated_core::filters::{self, Adaptor};
use crated_core::namespaces::{NamespaceInfo, NamespaceStore};
use crated_core::{Error, Namespace, Result};
use tonic::{Request, Response, Status};

use crated_core::events::Exchange;

use crate::containerd::events as ev;
use crate::containerd::services::namespaces::v1 as pb;
use crate::metadata::grpc_namespace;
use crate::services::events::{payload, publish};
use crate::to_grpc;

/// The namespaces service of a daemon.
pub struct Service {
    store: Arc<dyn NamespaceStore>,
    exchange: Exchange,
}

impl Service {
    /// Serves `store`, publishing `/namespaces/*` events to `exchange`.
    pub fn new(store: Arc<dyn NamespaceStore>, exchange: Exchange) -> Self {
        Self { store, exchange }
    }

    /// Publishes in the caller's namespace (as containerd does), or in the
    /// namespace acted on when the caller named none.
    fn publish<T, M: prost::Message>(
        &self,
        request: &Request<T>,
        target: &Namespace,
        topic: &str,
        type_url: &str,
        event: &M,
    ) {
        let ns = grpc_namespace(request).unwrap_or_else(|_| target.clone());
        publish(&self.exchange, &ns, topic, payload(type_url, event));
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::namespaces_server::NamespacesServer<Self> {
        pb::namespaces_server::NamespacesServer::new(self)
    }
}

fn to_pb(info: NamespaceInfo) -> pb::Namespace {
    pb::Namespace {
        name: info.name.to_string(),
        labels: info.labels.into_iter().collect(),
    }
}

fn name(raw: &str) -> Result<Namespace> {
    Namespace::new(raw)
}

struct Fields<'a>(&'a NamespaceInfo);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["name"] => Some(self.0.name.to_string()),
            ["labels", key @ ..] => filters::map_value(&self.0.labels, key),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl pb::namespaces_server::Namespaces for Service {
    async fn get(
        &self,
        request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::GetNamespaceResponse>, Status> {
        let name = name(&request.into_inner().name).map_err(to_grpc)?;
        // containerd answers Get for a namespace that does not exist yet with
        // empty labels, and its Go client relies on it: `ctr run` and
        // `ctr images pull` read the default-snapshotter label of a namespace
        // they are about to create on first use. So NotFound is not an error
        // on the wire here.
        let info = match self.store.get(&name).await {
            Ok(info) => info,
            Err(err) if err.is_not_found() => NamespaceInfo {
                name,
                labels: Default::default(),
            },
            Err(err) => return Err(to_grpc(err)),
        };
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
        let filter = if filter.is_empty() {
            filters::Filter::always()
        } else {
            filters::parse(&filter).map_err(to_grpc)?
        };
        let namespaces = self
            .store
            .list()
            .await
            .map_err(to_grpc)?
            .into_iter()
            .filter(|info| filter.matches(&Fields(info)))
            .map(to_pb)
            .collect();
        Ok(Response::new(pb::ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        let ns = request
            .get_ref()
            .namespace
            .clone()
            .ok_or_else(|| to_grpc(Error::invalid_argument("namespace must be set")))?;
        let name = name(&ns.name).map_err(to_grpc)?;
        let info = self
            .store
            .create(&name, ns.labels.into_iter().collect())
            .await
            .map_err(to_grpc)?;
        let event = ev::NamespaceCreate {
            name: info.name.to_string(),
            labels: info.labels.clone().into_iter().collect(),
        };
        self.publish(
            &request,
            &name,
            "/namespaces/create",
            "containerd.events.NamespaceCreate",
            &event,
        );
        Ok(Response::new(pb::CreateNamespaceResponse {
            namespace: Some(to_pb(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateNamespaceRequest>,
    ) -> Result<Response<pb::UpdateNamespaceResponse>, Status> {
        let body = request.get_ref().clone();
        let ns = body
            .namespace
            .ok_or_else(|| to_grpc(Error::invalid_argument("namespace must be set")))?;
        let update = NamespaceInfo {
            name: name(&ns.name).map_err(to_grpc)?,
            labels: ns.labels.into_iter().collect(),
        };
        let paths = body.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self.store.update(update, &paths).await.map_err(to_grpc)?;
        let event = ev::NamespaceUpdate {
            name: info.name.to_string(),
            labels: info.labels.clone().into_iter().collect(),
        };
        self.publish(
            &request,
            &info.name,
            "/namespaces/update",
            "containerd.events.NamespaceUpdate",
            &event,
        );
        Ok(Response::new(pb::UpdateNamespaceResponse {
            namespace: Some(to_pb(info)),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        let name = name(&request.get_ref().name).map_err(to_grpc)?;
        self.store.delete(&name).await.map_err(to_grpc)?;
        let event = ev::NamespaceDelete {
            name: name.to_string(),
        };
        self.publish(
            &request,
            &name,
            "/namespaces/delete",
            "containerd.events.NamespaceDelete",
            &event,
        );
        Ok(Response::new(()))
    }
}
