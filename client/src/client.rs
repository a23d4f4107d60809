//! The client: containerd's services, reached over a socket or in
//! process, and a namespace to act in.

use std::sync::Arc;
use std::time::Duration;

use crated_core::containers::ContainerStore;
use crated_core::content::ContentStore;
use crated_core::diff::Differ;
use crated_core::events::Events;
use crated_core::images::ImageStore;
use crated_core::introspection::Introspection;
use crated_core::leases::LeaseStore;
use crated_core::namespaces::NamespaceService;
use crated_core::snapshots::{Snapshotter, Snapshotters};
use crated_core::tasks::Tasks;
use crated_core::{Namespace, Result};

use crate::Error;

/// The services a client drives: the daemon's, through gRPC proxies, or
/// the service layer itself when the client runs inside the daemon
/// (containerd's "in-memory services").
#[derive(Clone)]
pub struct Services {
    /// Content.
    pub content: Arc<dyn ContentStore>,
    /// Images.
    pub images: Arc<dyn ImageStore>,
    /// Containers.
    pub containers: Arc<dyn ContainerStore>,
    /// Leases.
    pub leases: Arc<dyn LeaseStore>,
    /// Namespaces.
    pub namespaces: Arc<dyn NamespaceService>,
    /// Snapshots.
    pub snapshots: Arc<dyn Snapshotters>,
    /// Layers applied and made.
    pub diff: Arc<dyn Differ>,
    /// Tasks.
    pub tasks: Arc<dyn Tasks>,
    /// Events.
    pub events: Arc<dyn Events>,
    /// Plugins, identity, version.
    pub introspection: Arc<dyn Introspection>,
}

impl Services {
    /// The daemon's own service layer, from its loaded plugins (in
    /// process: the CRI plugin's init, or a daemon embedded in a program).
    pub fn from_plugins(plugins: &impl crated_plugin::Lookup) -> Result<Self> {
        use crated_plugin::types::{self, services};
        let exchange = plugins.get(types::EVENT)?;
        Ok(Self {
            content: plugins.get_by_id(services::CONTENT)?,
            images: plugins.get_by_id(services::IMAGES)?,
            containers: plugins.get_by_id(services::CONTAINERS)?,
            leases: plugins.get_by_id(services::LEASES)?,
            namespaces: plugins.get_by_id(services::NAMESPACES)?,
            snapshots: plugins.get_by_id(services::SNAPSHOTS)?,
            diff: plugins.get_by_id(services::DIFF)?,
            tasks: plugins.get_by_id(services::TASKS)?,
            events: Arc::new(exchange),
            introspection: plugins.get_by_id(services::INTROSPECTION)?,
        })
    }

    /// The services of the daemon on `channel`.
    pub fn remote(channel: tonic::transport::Channel) -> Self {
        use crated_api::proxy::*;
        Self {
            content: Arc::new(content::ContentProxy::new(channel.clone())),
            images: Arc::new(images::ImagesProxy::new(channel.clone())),
            containers: Arc::new(containers::ContainersProxy::new(channel.clone())),
            leases: Arc::new(leases::LeasesProxy::new(channel.clone())),
            namespaces: Arc::new(namespaces::NamespacesProxy::new(channel.clone())),
            snapshots: Arc::new(snapshots::SnapshottersProxy::new(channel.clone())),
            diff: Arc::new(diff::DiffProxy::new(channel.clone())),
            tasks: Arc::new(tasks::TasksProxy::new(channel.clone())),
            events: Arc::new(events::EventsProxy::new(channel.clone())),
            introspection: Arc::new(introspection::IntrospectionProxy::new(channel)),
        }
    }
}

/// A client of crated (or containerd), acting in one namespace.
///
/// Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn f() -> crated_core::Result<()> {
/// use crated_client::Client;
///
/// let client = Client::connect("/run/crated/crated.sock", None).await?;
/// let client = client.with_namespace(crated_core::Namespace::new("example")?);
/// for image in client.services().images.list(client.namespace(), &[]).await? {
///     println!("{}", image.name);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    services: Services,
    namespace: Namespace,
}

impl Client {
    /// A client of the daemon listening on `address` (a socket path,
    /// `unix://` optional), in the `default` namespace (or
    /// `CONTAINERD_NAMESPACE`'s). Fails after `timeout` if given.
    pub async fn connect(address: &str, timeout: Option<Duration>) -> Result<Self> {
        let path = crated_api::dial::socket_path(address).to_owned();
        let dial = crated_api::dial::connect(address);
        let channel = match timeout {
            Some(timeout) => {
                tokio::time::timeout(timeout, dial)
                    .await
                    .map_err(|_| Error::DialTimeout {
                        address: path.clone(),
                        timeout,
                    })?
            }
            None => dial.await,
        }
        .map_err(|source| Error::Dial {
            address: path,
            source,
        })?;
        Ok(Self::from_channel(channel))
    }

    /// A client over an open channel to a daemon.
    pub fn from_channel(channel: tonic::transport::Channel) -> Self {
        Self::new(Services::remote(channel))
    }

    /// A client over `services` (in process: the daemon's service layer).
    pub fn new(services: Services) -> Self {
        let namespace = std::env::var(crated_core::namespaces::ENV)
            .ok()
            .and_then(|ns| Namespace::new(ns).ok())
            .unwrap_or_else(Namespace::default_namespace);
        Self {
            services,
            namespace,
        }
    }

    /// This client acting in `namespace`.
    #[must_use]
    pub fn with_namespace(&self, namespace: Namespace) -> Self {
        Self {
            services: self.services.clone(),
            namespace,
        }
    }

    /// The namespace it acts in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The services it drives.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Snapshotter `name` in this client's namespace; with `lease`, what
    /// it creates is held by that lease.
    pub fn snapshotter(&self, name: &str, lease: Option<&str>) -> Result<Arc<dyn Snapshotter>> {
        self.services.snapshots.get(&self.namespace, name, lease)
    }
}
