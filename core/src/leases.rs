//! Leases: named, labelled holds on resources that the garbage collector
//! must keep (content, ingests, snapshots) while a client works with them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::{Error, Namespace, Result};

/// The gRPC header naming the lease of a request, as containerd's
/// `leases.WithLease`.
pub const GRPC_HEADER: &str = "containerd-lease";
/// The ttrpc metadata key naming the lease of a request.
pub const TTRPC_HEADER: &str = "containerd-lease-ttrpc";

/// The label that gives a lease an expiry (RFC 3339); the garbage collector
/// removes the lease after it.
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// The label that makes a lease hold only its direct resources, not what
/// they reference.
pub const FLAT_LABEL: &str = "containerd.io/gc.flat";

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its id, unique in its namespace.
    pub id: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A resource a lease holds: `content` (id = digest), `ingests` (id = ref)
/// or `snapshots/<snapshotter>` (id = key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// The resource's id within its type.
    pub id: String,
    /// The resource type.
    pub r#type: String,
}

impl Resource {
    /// Checks the type and id as containerd does: `content` ids are
    /// digests, `snapshots` types name their snapshotter, other types are
    /// not supported.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(Error::invalid_argument(format!(
                "resource of type {:?} has an empty id",
                self.r#type
            )));
        }
        let parts: Vec<&str> = self.r#type.split('/').collect();
        match parts.as_slice() {
            ["content"] => crate::digest::Digest::parse(&self.id)
                .map(|_| ())
                .map_err(|e| {
                    Error::invalid_argument(format!(
                        "invalid content resource id {:?}: {}",
                        self.id,
                        e.message()
                    ))
                }),
            ["ingests"] => Ok(()),
            ["snapshots", snapshotter] if !snapshotter.is_empty() => Ok(()),
            ["snapshots", ..] => Err(Error::invalid_argument(format!(
                "invalid snapshot resource type {:?}: use snapshots/<snapshotter>",
                self.r#type
            ))),
            _ => Err(Error::not_implemented(format!(
                "resource type {:?} not supported yet",
                self.r#type
            ))),
        }
    }
}

/// Validates a lease id: any non-empty text without NUL (containerd does not
/// restrict lease ids to identifiers; its random ids contain `_` and `-`
/// runs).
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_argument("lease id must not be empty"));
    }
    if id.contains('\0') {
        return Err(Error::invalid_argument(format!(
            "lease id {id:?} must not contain NUL"
        )));
    }
    Ok(())
}

/// The store of leases.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Creates a lease; AlreadyExists if the id is taken.
    async fn create(
        &self,
        ns: &Namespace,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease>;

    /// Deletes a lease and its holds; NotFound if absent. What it held is
    /// left to the garbage collector; with `sync` the call returns once a
    /// collection has run (the service layer does that wait: a plain store
    /// ignores the flag).
    async fn delete(&self, ns: &Namespace, id: &str, sync: bool) -> Result<()>;

    /// Creates a lease with a generated id for one operation of this
    /// process (a pull, a container create), guarding what it makes from
    /// the collector until the records that hold it are written. Unlike
    /// [`LeaseStore::create`] it may return before the lease is on disk:
    /// nothing outside the process was told of it, the first durable write
    /// of the operation takes it to disk, and one lost to a crash only
    /// lets the collector take sooner what the dead operation left. The
    /// default is `create`.
    async fn create_transient(
        &self,
        ns: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        self.create(ns, "", labels).await
    }

    /// Deletes a lease of [`LeaseStore::create_transient`] once its
    /// operation is over; may return before that is on disk (a lease back
    /// after a crash holds what records hold anyway, until it expires).
    /// The default is `delete`.
    async fn delete_transient(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.delete(ns, id, false).await
    }

    /// Leases matching any of `filters` (fields `id`, `labels.<key>`).
    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Lease>>;

    /// Adds a resource to a lease; NotFound if the lease is absent.
    async fn add_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()>;

    /// Removes a resource from a lease.
    async fn delete_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()>;

    /// The resources a lease holds.
    async fn list_resources(&self, ns: &Namespace, id: &str) -> Result<Vec<Resource>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_checked_like_containerd() {
        let r = |t: &str, id: &str| Resource {
            id: id.into(),
            r#type: t.into(),
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(r("content", &digest).validate().is_ok());
        assert!(r("ingests", "ref").validate().is_ok());
        assert!(r("snapshots/overlayfs", "k").validate().is_ok());
        assert_eq!(
            r("content", "nope").validate().unwrap_err().kind(),
            crate::Kind::InvalidArgument
        );
        assert_eq!(
            r("snapshots", "k").validate().unwrap_err().kind(),
            crate::Kind::InvalidArgument
        );
        assert_eq!(
            r("images", "x").validate().unwrap_err().kind(),
            crate::Kind::NotImplemented
        );
    }

    #[test]
    fn ids() {
        assert!(validate_id("123456-ab_-").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a\0b").is_err());
    }
}
