//! `containerd.services.diff.v1.Diff` over a [`Differ`]: a translation
//! only (the service layer picks among the loaded differs).

use std::sync::Arc;

use crated_core::diff::{ApplyOptions, CompareOptions, Differ};
use crated_core::Result;
use tonic::{Request, Response, Status};

use crate::containerd::services::diff::v1 as pb;
use crate::convert::{descriptor_from_pb, descriptor_to_pb, mount_from_pb};
use crate::metadata::{grpc_lease, grpc_namespace};
use crate::to_grpc;

/// The diff service of a daemon.
pub struct Service {
    differ: Arc<dyn Differ>,
}

impl Service {
    /// Serves `differ`.
    pub fn new(differ: Arc<dyn Differ>) -> Self {
        Self { differ }
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
                .ok_or(crate::error::Error::Missing("diff descriptor"))?,
        )?;
        let mounts: Vec<_> = request.mounts.into_iter().map(mount_from_pb).collect();
        let options = ApplyOptions {
            sync_fs: request.sync_fs,
        };
        let applied = self.differ.apply(&ns, &layer, &mounts, options).await?;
        Ok(pb::ApplyResponse {
            applied: Some(descriptor_to_pb(applied)),
        })
    }

    async fn diff(&self, request: Request<pb::DiffRequest>) -> Result<pb::DiffResponse> {
        let ns = grpc_namespace(&request)?;
        let lease = grpc_lease(&request)?;
        let request = request.into_inner();
        let lower: Vec<_> = request.left.into_iter().map(mount_from_pb).collect();
        let upper: Vec<_> = request.right.into_iter().map(mount_from_pb).collect();
        let options = CompareOptions {
            media_type: request.media_type,
            reference: request.r#ref,
            labels: request.labels.into_iter().collect(),
            lease,
            source_date_epoch: request
                .source_date_epoch
                .as_ref()
                .map(crate::convert::to_system_time),
        };
        let diff = self.differ.compare(&ns, &lower, &upper, options).await?;
        Ok(pb::DiffResponse {
            diff: Some(descriptor_to_pb(diff)),
        })
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
        request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        Service::diff(self, request)
            .await
            .map(Response::new)
            .map_err(to_grpc)
    }
}
