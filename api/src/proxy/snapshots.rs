//! A [`Snapshotter`] over a daemon's snapshots service: one snapshotter, in
//! one namespace. `ctr` uses it, and it runs the conformance suite against a
//! live daemon.
//!
//! ```no_run
//! # async fn example(channel: tonic::transport::Channel) -> crated_core::Result<()> {
//! use crated_api::proxy::snapshots::SnapshotsProxy;
//! use crated_core::snapshots::Snapshotter;
//! use crated_core::Namespace;
//!
//! let sn = SnapshotsProxy::new(channel, "overlayfs", Namespace::new("default")?);
//! let mounts = sn.prepare("my-rootfs", "", Default::default()).await?;
//! # let _ = mounts; Ok(()) }
//! ```

use crated_core::mount::Mount;
use std::sync::Arc;

use crated_core::snapshots::{Info, Labels, Snapshotter, Snapshotters, Usage};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use crate::containerd::services::snapshots::v1 as pb;
use crate::convert::mount_from_pb;
use crate::from_grpc;
use crate::metadata::{set_grpc_lease, set_grpc_namespace};
use crate::services::snapshots::{info_from_pb, info_to_pb};

/// The snapshotter `snapshotter` of the daemon on a channel, in a namespace.
#[derive(Clone)]
pub struct SnapshotsProxy {
    client: pb::snapshots_client::SnapshotsClient<Channel>,
    snapshotter: String,
    ns: Namespace,
    lease: Option<String>,
}

impl SnapshotsProxy {
    /// Calls snapshotter `snapshotter` of the snapshots service on
    /// `channel`, in namespace `ns`.
    pub fn new(channel: Channel, snapshotter: impl Into<String>, ns: Namespace) -> Self {
        Self {
            client: pb::snapshots_client::SnapshotsClient::new(channel),
            snapshotter: snapshotter.into(),
            ns,
            lease: None,
        }
    }

    /// Snapshots created or committed through this proxy are held by
    /// `lease`, like a Go client's context `WithLease`.
    pub fn with_lease(mut self, lease: impl Into<String>) -> Self {
        self.lease = Some(lease.into());
        self
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        set_grpc_namespace(&mut request, &self.ns);
        if let Some(lease) = &self.lease {
            // A lease id that is not a header value fails on the server as
            // "lease not found"; it cannot be created in the first place.
            let _ = set_grpc_lease(&mut request, lease);
        }
        request
    }
}

fn mounts(mounts: Vec<crate::containerd::types::Mount>) -> Vec<Mount> {
    mounts.into_iter().map(mount_from_pb).collect()
}

#[async_trait::async_trait]
impl Snapshotter for SnapshotsProxy {
    async fn stat(&self, key: &str) -> Result<Info> {
        let response = self
            .client
            .clone()
            .stat(self.request(pb::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(info_from_pb(response.into_inner().info.unwrap_or_default()))
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let response = self
            .client
            .clone()
            .update(self.request(pb::UpdateSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                info: Some(info_to_pb(info)),
                update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                    paths: fieldpaths.to_vec(),
                }),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(info_from_pb(response.into_inner().info.unwrap_or_default()))
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let response = self
            .client
            .clone()
            .usage(self.request(pb::UsageRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            .map_err(from_grpc)?
            .into_inner();
        Ok(Usage {
            size: response.size,
            inodes: response.inodes,
        })
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let response = self
            .client
            .clone()
            .mounts(self.request(pb::MountsRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(mounts(response.into_inner().mounts))
    }

    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let response = self
            .client
            .clone()
            .prepare(self.request(pb::PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
                parent: parent.to_owned(),
                labels: labels.into_iter().collect(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(mounts(response.into_inner().mounts))
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let response = self
            .client
            .clone()
            .view(self.request(pb::ViewSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
                parent: parent.to_owned(),
                labels: labels.into_iter().collect(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(mounts(response.into_inner().mounts))
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.client
            .clone()
            .commit(self.request(pb::CommitSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                name: name.to_owned(),
                key: key.to_owned(),
                labels: labels.into_iter().collect(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.client
            .clone()
            .remove(self.request(pb::RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let mut stream = self
            .client
            .clone()
            .list(self.request(pb::ListSnapshotsRequest {
                snapshotter: self.snapshotter.clone(),
                filters: filters.to_vec(),
            }))
            .await
            .map_err(from_grpc)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(from_grpc)? {
            out.extend(batch.info.into_iter().map(info_from_pb));
        }
        Ok(out)
    }

    async fn cleanup(&self) -> Result<()> {
        self.client
            .clone()
            .cleanup(self.request(pb::CleanupRequest {
                snapshotter: self.snapshotter.clone(),
            }))
            .await
            .map_err(from_grpc)?;
        Ok(())
    }
}

/// Every snapshotter of a remote daemon, by name, as [`Snapshotters`].
#[derive(Clone)]
pub struct SnapshottersProxy {
    channel: Channel,
}

impl SnapshottersProxy {
    /// Calls the snapshots service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }
}

impl Snapshotters for SnapshottersProxy {
    /// Unknown here: the names are the daemon's (its introspection lists
    /// its snapshotter plugins).
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn get(&self, ns: &Namespace, name: &str, lease: Option<&str>) -> Result<Arc<dyn Snapshotter>> {
        let proxy = SnapshotsProxy::new(self.channel.clone(), name, ns.clone());
        Ok(Arc::new(match lease {
            Some(lease) => proxy.with_lease(lease),
            None => proxy,
        }))
    }
}
