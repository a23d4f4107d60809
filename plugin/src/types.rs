//! containerd's plugin types, and the typed handles of those whose plugins
//! provide a `core` trait. Types whose values come from other crates
//! (the runtime's task manager, gRPC services, the service layer) are
//! declared by those crates with [`Type::new`] and [`Id::new`].

use std::path::PathBuf;
use std::sync::Arc;

use crated_core::containers::ContainerStore;
use crated_core::content::ContentStore;
use crated_core::diff::Differ;
use crated_core::events::Exchange;
use crated_core::gc::{Collector, MutationSource, Trigger};
use crated_core::images::ImageStore;
use crated_core::leases::LeaseStore;
use crated_core::namespaces::NamespaceStore;
use crated_core::snapshots::{Snapshotter, Snapshotters};

use crate::{Id, Type};

/// Internal plugins (`opt`, …).
pub const INTERNAL: &str = "io.containerd.internal.v1";
/// gRPC services.
pub const GRPC: &str = "io.containerd.grpc.v1";
/// ttrpc services.
pub const TTRPC: &str = "io.containerd.ttrpc.v1";
/// The in-process service layer.
pub const SERVICE: &str = "io.containerd.service.v1";
/// Runtime v2 task managers.
pub const RUNTIME_V2: &str = "io.containerd.runtime.v2";

/// Content stores: the blobs every namespace shares. The last one loaded
/// is the one the metadata plugin puts namespaces over (a `content` proxy
/// plugin replaces the local store).
pub const CONTENT: Type<Arc<dyn ContentStore>> = Type::new("io.containerd.content.v1");

/// Snapshotters, by id.
pub const SNAPSHOTTER: Type<Arc<dyn Snapshotter>> = Type::new("io.containerd.snapshotter.v1");

/// Differs (layer appliers and comparers), in load order.
pub const DIFFER: Type<Arc<dyn Differ>> = Type::new("io.containerd.differ.v1");

/// The events exchange.
pub const EVENT: Type<Exchange> = Type::new("io.containerd.event.v1");

/// The garbage collection scheduler: what a `sync` delete waits on.
pub const GC: Type<Arc<dyn Trigger>> = Type::new("io.containerd.gc.v1");

/// The metadata database, through the stores it provides.
pub const METADATA: Type<Metadata> = Type::new("io.containerd.metadata.v1");

/// The directory installed binaries go to (`ctr install`).
pub const OPT: Id<Opt> = Id::new(INTERNAL, "opt");

/// Deprecated features seen in use (containerd 1.7's warning service).
pub const WARNING: Id<crated_core::deprecation::Warnings> = Id::new(INTERNAL, "warning");

/// What the metadata plugin provides: namespaced stores over the content
/// store and snapshotters, and the collector of what none of them holds.
#[derive(Clone)]
pub struct Metadata {
    /// Namespaces.
    pub namespaces: Arc<dyn NamespaceStore>,
    /// Images.
    pub images: Arc<dyn ImageStore>,
    /// Containers.
    pub containers: Arc<dyn ContainerStore>,
    /// Leases.
    pub leases: Arc<dyn LeaseStore>,
    /// Content as each namespace sees it.
    pub content: Arc<dyn ContentStore>,
    /// The snapshotters as each namespace sees them.
    pub snapshots: Arc<dyn Snapshotters>,
    /// One full collection over all of it.
    pub collector: Arc<dyn Collector>,
    /// Tells the scheduler about writes.
    pub mutations: Arc<dyn MutationSource>,
}

/// The opt directory: `bin/` leads the shims' PATH, `lib/` their
/// LD_LIBRARY_PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt(pub PathBuf);

/// The in-process service layer (`io.containerd.service.v1`): what the
/// gRPC services serve and in-process clients (the CRI plugin) call. Each
/// does what containerd's API does — events, synchronous deletes, leases —
/// over the stores below it.
pub mod services {
    use std::sync::Arc;

    use crated_core::containers::ContainerStore;
    use crated_core::content::ContentStore;
    use crated_core::diff::Differ;
    use crated_core::images::ImageStore;
    use crated_core::introspection::Introspection;
    use crated_core::leases::LeaseStore;
    use crated_core::namespaces::NamespaceService;
    use crated_core::snapshots::Snapshotters;
    use crated_core::tasks::Tasks;

    use super::SERVICE;
    use crate::Id;

    /// Content.
    pub const CONTENT: Id<Arc<dyn ContentStore>> = Id::new(SERVICE, "content-service");
    /// Images.
    pub const IMAGES: Id<Arc<dyn ImageStore>> = Id::new(SERVICE, "images-service");
    /// Containers.
    pub const CONTAINERS: Id<Arc<dyn ContainerStore>> = Id::new(SERVICE, "containers-service");
    /// Leases.
    pub const LEASES: Id<Arc<dyn LeaseStore>> = Id::new(SERVICE, "leases-service");
    /// Namespaces.
    pub const NAMESPACES: Id<Arc<dyn NamespaceService>> = Id::new(SERVICE, "namespaces-service");
    /// Snapshots, by snapshotter and namespace.
    pub const SNAPSHOTS: Id<Arc<dyn Snapshotters>> = Id::new(SERVICE, "snapshots-service");
    /// Layers applied and made.
    pub const DIFF: Id<Arc<dyn Differ>> = Id::new(SERVICE, "diff-service");
    /// Tasks.
    pub const TASKS: Id<Arc<dyn Tasks>> = Id::new(SERVICE, "tasks-service");
    /// Plugins, identity and version.
    pub const INTROSPECTION: Id<Arc<dyn Introspection>> = Id::new(SERVICE, "introspection-service");
}
