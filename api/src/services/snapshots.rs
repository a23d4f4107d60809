//! `containerd.services.snapshots.v1.Snapshots` over namespaced
//! [`Snapshotters`]: a translation only (the service layer publishes the
//! `/snapshot/*` events).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use crated_core::mount::Mount;
use crated_core::snapshots::{Info, Kind, Snapshotter, Snapshotters};
use crated_core::Result;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::containerd::services::snapshots::v1 as pb;
use crate::containerd::types;
use crate::convert::{mount_to_pb, to_system_time, to_timestamp};
use crate::metadata::{grpc_lease, grpc_namespace};
use crate::to_grpc;

/// Infos per List message, as containerd batches them.
const LIST_BATCH: usize = 100;

/// The snapshots service of a daemon.
pub struct Service {
    snapshotters: Arc<dyn Snapshotters>,
}

impl Service {
    /// Serves `snapshotters`.
    pub fn new(snapshotters: Arc<dyn Snapshotters>) -> Self {
        Self { snapshotters }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::snapshots_server::SnapshotsServer<Self> {
        pb::snapshots_server::SnapshotsServer::new(self)
    }

    fn get<T>(
        &self,
        request: &Request<T>,
        name: &str,
    ) -> Result<(crated_core::Namespace, Arc<dyn Snapshotter>)> {
        let ns = grpc_namespace(request)?;
        let lease = grpc_lease(request)?;
        let snapshotter = self.snapshotters.get(&ns, name, lease.as_deref())?;
        Ok((ns, snapshotter))
    }
}

/// One snapshotter served standalone: under whatever name a client asks
/// for, the same in every namespace — how a snapshotter runs behind
/// containerd's (or crated's) `[proxy_plugins]`, which name it after their
/// own section.
pub struct Standalone(pub Arc<dyn Snapshotter>);

impl Snapshotters for Standalone {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn get(
        &self,
        _ns: &crated_core::Namespace,
        _name: &str,
        _lease: Option<&str>,
    ) -> Result<Arc<dyn Snapshotter>> {
        Ok(Arc::clone(&self.0))
    }
}

/// A snapshot kind as its wire value.
pub fn kind_to_pb(kind: Kind) -> pb::Kind {
    match kind {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

/// A wire kind as the core type; `Unknown` is InvalidArgument.
pub fn kind_from_pb(kind: i32) -> Result<Kind> {
    match pb::Kind::try_from(kind) {
        Ok(pb::Kind::View) => Ok(Kind::View),
        Ok(pb::Kind::Active) => Ok(Kind::Active),
        Ok(pb::Kind::Committed) => Ok(Kind::Committed),
        _ => Err(crate::error::Error::UnknownSnapshotKind(kind).into()),
    }
}

/// Snapshot info as its wire message.
pub fn info_to_pb(info: Info) -> pb::Info {
    pb::Info {
        name: info.name,
        parent: info.parent,
        kind: kind_to_pb(info.kind) as i32,
        created_at: Some(to_timestamp(info.created_at)),
        updated_at: Some(to_timestamp(info.updated_at)),
        labels: info.labels.into_iter().collect(),
    }
}

/// Wire snapshot info as the core type (for updates: the kind defaults to
/// active when the client leaves it unset, as it does).
pub fn info_from_pb(info: pb::Info) -> Info {
    let now = std::time::SystemTime::now();
    Info {
        kind: kind_from_pb(info.kind).unwrap_or(Kind::Active),
        name: info.name,
        parent: info.parent,
        created_at: info.created_at.as_ref().map(to_system_time).unwrap_or(now),
        updated_at: info.updated_at.as_ref().map(to_system_time).unwrap_or(now),
        labels: info.labels.into_iter().collect(),
    }
}

fn mounts(mounts: Vec<Mount>) -> Vec<types::Mount> {
    mounts.into_iter().map(mount_to_pb).collect()
}

fn labels(map: HashMap<String, String>) -> crated_core::snapshots::Labels {
    map.into_iter().collect()
}

#[tonic::async_trait]
impl pb::snapshots_server::Snapshots for Service {
    async fn prepare(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let r = request.into_inner();
        let m = sn
            .prepare(&r.key, &r.parent, labels(r.labels))
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn view(
        &self,
        request: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let r = request.into_inner();
        let m = sn
            .view(&r.key, &r.parent, labels(r.labels))
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn mounts(
        &self,
        request: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let m = sn.mounts(&request.get_ref().key).await.map_err(to_grpc)?;
        Ok(Response::new(pb::MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let r = request.into_inner();
        sn.commit(&r.name, &r.key, labels(r.labels))
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        sn.remove(&request.get_ref().key).await.map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let info = sn.stat(&request.get_ref().key).await.map_err(to_grpc)?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let r = request.into_inner();
        let info = r
            .info
            .ok_or_else(|| to_grpc(crate::error::Error::Missing("snapshot info").into()))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = sn
            .update(info_from_pb(info), &paths)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(info_to_pb(updated)),
        }))
    }

    type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send>>;

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let infos = sn.walk(&request.get_ref().filters).await.map_err(to_grpc)?;
        let batches: Vec<Result<pb::ListSnapshotsResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|chunk| {
                Ok(pb::ListSnapshotsResponse {
                    info: chunk.iter().cloned().map(info_to_pb).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        let usage = sn.usage(&request.get_ref().key).await.map_err(to_grpc)?;
        Ok(Response::new(pb::UsageResponse {
            size: usage.size,
            inodes: usage.inodes,
        }))
    }

    async fn cleanup(&self, request: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        let (_, sn) = self
            .get(&request, &request.get_ref().snapshotter)
            .map_err(to_grpc)?;
        sn.cleanup().await.map_err(to_grpc)?;
        Ok(Response::new(()))
    }
}
