//! `containerd.services.diff.v1.Diff` over [`Applier`]s: `Apply` tries each
//! differ in order until one does not answer NotImplemented, as containerd's
//! diff service does. `Diff` (making a layer from two mounts) answers
//! NotImplemented until a comparer lands.

use std::sync::Arc;

use crated_core::diff::Applier;
use crated_core::{Error, Result};
use tonic::{Request, Response, Status};

use crate::containerd::services::diff::v1 as pb;
use crate::metadata::grpc_namespace;
use crate::services::images::{descriptor_from_pb, descriptor_to_pb};
use crate::services::snapshots::mount_from_pb;
use crate::to_grpc;

/// The diff service of a daemon.
pub struct Service {
    appliers: Vec<Arc<dyn Applier>>,
}

impl Service {
    /// Serves `appliers`, tried in this order.
    pub fn new(appliers: Vec<Arc<dyn Applier>>) -> Self {
        Self { appliers }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::diff_server::DiffServer<Self> {
        pb::diff_server::DiffServer::new(self)
    }

    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<pb::ApplyResponse> {
        let ns = grpc_namespace(&request)?;
        let request = request.into_inner();
        let layer = descriptor_from_pb(
            request
                .diff
                .ok_or_else(|| Error::invalid_argument("diff descriptor must be set"))?,
        )?;
        let mounts: Vec<_> = request.mounts.into_iter().map(mount_from_pb).collect();
        let mut last = Error::not_implemented("no differ is loaded");
        for applier in &self.appliers {
            match applier.apply(&ns, &layer, &mounts).await {
                Ok(applied) => {
                    return Ok(pb::ApplyResponse {
                        applied: Some(descriptor_to_pb(applied)),
                    })
                }
                Err(err) if err.kind() == crated_core::Kind::NotImplemented => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }
}

#[tonic::async_trait]
impl pb::diff_server::Diff for Service {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        Service::apply(self, request)
            .await
            .map(Response::new)
            .map_err(to_grpc)
    }

    async fn diff(
        &self,
        _request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        Err(to_grpc(Error::not_implemented(
            "diff: making a layer from two mounts is not implemented yet (no comparer is loaded)",
        )))
    }
}
