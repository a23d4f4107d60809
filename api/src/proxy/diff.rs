//! [`Differ`](crated_core::diff::Differ) over containerd's gRPC diff
//! service: layers applied and made by the daemon.

use crated_core::descriptor::Descriptor;
use crated_core::diff::{Applier, ApplyOptions, CompareOptions, Comparer};
use crated_core::mount::Mount;
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::diff::v1 as pb;
use crate::convert::{descriptor_from_pb, descriptor_to_pb, mount_to_pb};
use crate::error::Error as WireError;
use crate::from_grpc;

/// The diff service of a remote daemon.
#[derive(Clone)]
pub struct DiffProxy {
    client: pb::diff_client::DiffClient<Channel>,
}

impl DiffProxy {
    /// Calls the diff service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::diff_client::DiffClient::new(channel)),
        }
    }
}

fn descriptor(d: Option<crate::containerd::types::Descriptor>, what: &str) -> Result<Descriptor> {
    let d = d.ok_or_else(|| WireError::MissingReply(format!("descriptor in its {what} reply")))?;
    descriptor_from_pb(d)
}

#[async_trait::async_trait]
impl Applier for DiffProxy {
    async fn apply(
        &self,
        ns: &Namespace,
        layer: &Descriptor,
        mounts: &[Mount],
        options: ApplyOptions,
    ) -> Result<Descriptor> {
        let req = pb::ApplyRequest {
            diff: Some(descriptor_to_pb(layer.clone())),
            mounts: mounts.iter().cloned().map(mount_to_pb).collect(),
            payloads: Default::default(),
            sync_fs: options.sync_fs,
        };
        let reply = self
            .client
            .clone()
            .apply(request(Some(ns), None, req)?)
            .await;
        descriptor(reply.map_err(from_grpc)?.into_inner().applied, "apply")
    }
}

#[async_trait::async_trait]
impl Comparer for DiffProxy {
    async fn compare(
        &self,
        ns: &Namespace,
        lower: &[Mount],
        upper: &[Mount],
        options: CompareOptions,
    ) -> Result<Descriptor> {
        let req = pb::DiffRequest {
            left: lower.iter().cloned().map(mount_to_pb).collect(),
            right: upper.iter().cloned().map(mount_to_pb).collect(),
            media_type: options.media_type,
            r#ref: options.reference,
            labels: options.labels.into_iter().collect(),
            source_date_epoch: options.source_date_epoch.map(crate::convert::to_timestamp),
        };
        let req = request(Some(ns), options.lease.as_deref(), req)?;
        let reply = self.client.clone().diff(req).await;
        descriptor(reply.map_err(from_grpc)?.into_inner().diff, "diff")
    }
}
