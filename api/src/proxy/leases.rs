//! [`LeaseStore`] over containerd's gRPC leases service.

use std::collections::BTreeMap;

use crated_core::leases::{Lease, LeaseStore, Resource};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::leases::v1 as pb;
use crate::convert::to_system_time;
use crate::from_grpc;

/// The leases of a remote daemon.
#[derive(Clone)]
pub struct LeasesProxy {
    client: pb::leases_client::LeasesClient<Channel>,
}

impl LeasesProxy {
    /// Calls the leases service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::leases_client::LeasesClient::new(channel)),
        }
    }
}

fn lease(l: pb::Lease) -> Lease {
    Lease {
        id: l.id,
        created_at: l
            .created_at
            .as_ref()
            .map(to_system_time)
            .unwrap_or(std::time::UNIX_EPOCH),
        labels: l.labels.into_iter().collect(),
    }
}

fn resource_to_pb(r: Resource) -> pb::Resource {
    pb::Resource {
        id: r.id,
        r#type: r.r#type,
    }
}

#[async_trait::async_trait]
impl LeaseStore for LeasesProxy {
    async fn create(
        &self,
        ns: &Namespace,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        let req = pb::CreateRequest {
            id: id.to_owned(),
            labels: labels.into_iter().collect(),
        };
        let reply = self
            .client
            .clone()
            .create(request(Some(ns), None, req)?)
            .await;
        Ok(lease(
            reply
                .map_err(from_grpc)?
                .into_inner()
                .lease
                .unwrap_or_default(),
        ))
    }

    async fn delete(&self, ns: &Namespace, id: &str, sync: bool) -> Result<()> {
        let req = pb::DeleteRequest {
            id: id.to_owned(),
            sync,
        };
        self.client
            .clone()
            .delete(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Lease>> {
        let req = pb::ListRequest {
            filters: filters.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .list(request(Some(ns), None, req)?)
            .await;
        Ok(reply
            .map_err(from_grpc)?
            .into_inner()
            .leases
            .into_iter()
            .map(lease)
            .collect())
    }

    async fn add_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        let req = pb::AddResourceRequest {
            id: id.to_owned(),
            resource: Some(resource_to_pb(resource)),
        };
        self.client
            .clone()
            .add_resource(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn delete_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        let req = pb::DeleteResourceRequest {
            id: id.to_owned(),
            resource: Some(resource_to_pb(resource)),
        };
        self.client
            .clone()
            .delete_resource(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn list_resources(&self, ns: &Namespace, id: &str) -> Result<Vec<Resource>> {
        let req = pb::ListResourcesRequest { id: id.to_owned() };
        let reply = self
            .client
            .clone()
            .list_resources(request(Some(ns), None, req)?)
            .await;
        Ok(reply
            .map_err(from_grpc)?
            .into_inner()
            .resources
            .into_iter()
            .map(|r| Resource {
                id: r.id,
                r#type: r.r#type,
            })
            .collect())
    }
}
