//! Leases a client takes for the length of an operation, as the Go
//! client's `WithLease`: a random id, expiring after a day in case the
//! client dies, deleted when the operation is over.

use std::time::{Duration, SystemTime};

use crated_api::containerd::services::leases::v1 as pb;
use crated_api::from_grpc;
use crated_api::metadata::set_grpc_namespace;
use crated_core::leases::EXPIRE_LABEL;
use crated_core::{Namespace, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::transport::Channel;

/// How long a temporary lease outlives a client that never releases it.
pub const EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// A lease held for one operation.
pub struct Temporary {
    client: pb::leases_client::LeasesClient<Channel>,
    ns: Namespace,
    id: String,
}

impl Temporary {
    /// Creates a lease with a generated id that expires after [`EXPIRY`].
    pub async fn create(channel: &Channel, ns: &Namespace) -> Result<Self> {
        let expires = OffsetDateTime::from(SystemTime::now() + EXPIRY)
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut request = tonic::Request::new(pb::CreateRequest {
            id: String::new(),
            labels: [(EXPIRE_LABEL.to_owned(), expires)].into(),
        });
        set_grpc_namespace(&mut request, ns);
        let mut client = pb::leases_client::LeasesClient::new(channel.clone());
        let lease = client
            .create(request)
            .await
            .map_err(from_grpc)?
            .into_inner()
            .lease
            .unwrap_or_default();
        Ok(Self {
            client,
            ns: ns.clone(),
            id: lease.id,
        })
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deletes the lease; what it held is left to the collector. A failure
    /// is logged: the lease expires anyway.
    pub async fn release(mut self) {
        let mut request = tonic::Request::new(pb::DeleteRequest {
            id: self.id.clone(),
            sync: false,
        });
        set_grpc_namespace(&mut request, &self.ns);
        if let Err(status) = self.client.delete(request).await {
            tracing::warn!(lease = self.id, error = %status.message(), "release lease");
        }
    }
}
