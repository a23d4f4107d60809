//! [`NamespaceService`] over containerd's gRPC namespaces service.

use std::collections::BTreeMap;

use crated_core::namespaces::{NamespaceInfo, NamespaceService};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::namespaces::v1 as pb;
use crate::error::Error as WireError;
use crate::from_grpc;
use crate::services::namespaces::{from_pb, to_pb};

/// The namespaces of a remote daemon.
#[derive(Clone)]
pub struct NamespacesProxy {
    client: pb::namespaces_client::NamespacesClient<Channel>,
}

impl NamespacesProxy {
    /// Calls the namespaces service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::namespaces_client::NamespacesClient::new(channel)),
        }
    }
}

fn namespace(ns: Option<pb::Namespace>) -> Result<NamespaceInfo> {
    from_pb(ns).map_err(|source| {
        WireError::BadReply {
            what: "namespace",
            source,
        }
        .into()
    })
}

#[async_trait::async_trait]
impl NamespaceService for NamespacesProxy {
    async fn create(
        &self,
        caller: Option<&Namespace>,
        name: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        let req = pb::CreateNamespaceRequest {
            namespace: Some(to_pb(NamespaceInfo {
                name: name.clone(),
                labels,
            })),
        };
        let reply = self
            .client
            .clone()
            .create(request(caller, None, req)?)
            .await;
        namespace(reply.map_err(from_grpc)?.into_inner().namespace)
    }

    async fn get(&self, name: &Namespace) -> Result<NamespaceInfo> {
        let req = pb::GetNamespaceRequest {
            name: name.to_string(),
        };
        let reply = self.client.clone().get(request(None, None, req)?).await;
        namespace(reply.map_err(from_grpc)?.into_inner().namespace)
    }

    async fn list(&self, filters: &[String]) -> Result<Vec<NamespaceInfo>> {
        // The wire request has room for one filter; several are OR-ed
        // here.
        let filter = crated_core::filters::parse_all(filters)?;
        let req = pb::ListNamespacesRequest {
            filter: String::new(),
        };
        let reply = self.client.clone().list(request(None, None, req)?).await;
        let mut all = Vec::new();
        for ns in reply.map_err(from_grpc)?.into_inner().namespaces {
            all.push(namespace(Some(ns))?);
        }
        all.retain(|info| filter.matches(&crated_core::namespaces::InfoFields(info)));
        Ok(all)
    }

    async fn update(
        &self,
        caller: Option<&Namespace>,
        info: NamespaceInfo,
        fieldpaths: &[String],
    ) -> Result<NamespaceInfo> {
        let req = pb::UpdateNamespaceRequest {
            namespace: Some(to_pb(info)),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let reply = self
            .client
            .clone()
            .update(request(caller, None, req)?)
            .await;
        namespace(reply.map_err(from_grpc)?.into_inner().namespace)
    }

    async fn delete(&self, caller: Option<&Namespace>, name: &Namespace) -> Result<()> {
        let req = pb::DeleteNamespaceRequest {
            name: name.to_string(),
        };
        self.client
            .clone()
            .delete(request(caller, None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }
}
