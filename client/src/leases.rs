//! Leases a client takes for the length of an operation, as the Go
//! client's `WithLease`: a random id, expiring after a day in case the
//! client dies, deleted when the operation is over.

use std::time::{Duration, SystemTime};

use crated_core::leases::EXPIRE_LABEL;
use crated_core::{Namespace, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::Client;

/// How long a temporary lease outlives a client that never releases it.
pub const EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// A lease held for one operation.
pub struct Temporary {
    client: Client,
    ns: Namespace,
    id: String,
}

impl Temporary {
    /// Creates a lease with a generated id that expires after [`EXPIRY`],
    /// in the client's namespace.
    pub async fn create(client: &Client) -> Result<Self> {
        let expires = OffsetDateTime::from(SystemTime::now() + EXPIRY)
            .format(&Rfc3339)
            .unwrap_or_default();
        let ns = client.namespace().clone();
        // Transient: the daemon's own store need not flush it (the
        // operation's first durable write does); through a proxy it is an
        // ordinary lease.
        let lease = client
            .services()
            .leases
            .create_transient(&ns, [(EXPIRE_LABEL.to_owned(), expires)].into())
            .await?;
        Ok(Self {
            client: client.clone(),
            ns,
            id: lease.id,
        })
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deletes the lease; what it held is left to the collector. A failure
    /// is logged: the lease expires anyway.
    pub async fn release(self) {
        let leases = &self.client.services().leases;
        if let Err(err) = leases.delete_transient(&self.ns, &self.id).await {
            tracing::warn!(lease = self.id, error = %err, "release lease");
        }
    }
}
