//! Containers: the metadata of a container (not its running task).

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::descriptor::Any;
use crate::{Namespace, Result};

/// The runtime a container runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Runtime {
    /// e.g. `io.containerd.runc.v2`.
    pub name: String,
    /// Runtime-specific options.
    pub options: Option<Any>,
}

/// A container record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its id, an identifier.
    pub id: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The image it was created from (informational).
    pub image: String,
    /// The runtime.
    pub runtime: Runtime,
    /// The OCI runtime spec.
    pub spec: Option<Any>,
    /// The snapshotter of its root filesystem.
    pub snapshotter: String,
    /// The snapshot key of its root filesystem.
    pub snapshot_key: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last updated.
    pub updated_at: SystemTime,
    /// Client extensions.
    pub extensions: BTreeMap<String, Any>,
    /// The sandbox it belongs to (containerd 1.7).
    pub sandbox: String,
}

/// The store of containers.
#[async_trait::async_trait]
pub trait ContainerStore: Send + Sync {
    /// The container `id`; NotFound if absent.
    async fn get(&self, ns: &Namespace, id: &str) -> Result<Container>;
    /// Containers matching any of `filters` (fields `id`, `image`,
    /// `runtime.name`, `labels.<k>`).
    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Container>>;
    /// Creates a container; AlreadyExists if the id is taken.
    async fn create(&self, ns: &Namespace, container: Container) -> Result<Container>;
    /// Updates fields (`labels`, `labels.<k>`, `spec`, `extensions`,
    /// `extensions.<k>`, `image`, `snapshotkey`; none = all of those, with
    /// runtime and snapshotter immutable).
    async fn update(
        &self,
        ns: &Namespace,
        container: Container,
        fieldpaths: &[String],
    ) -> Result<Container>;
    /// Deletes a container; NotFound if absent.
    async fn delete(&self, ns: &Namespace, id: &str) -> Result<()>;
}
