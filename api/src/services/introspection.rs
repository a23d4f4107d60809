//! `containerd.services.introspection.v1.Introspection` and
//! `containerd.services.version.v1.Version` over [`Introspection`]: a
//! translation only.

use std::sync::Arc;

use crated_core::introspection::{Introspection, PluginInfo, PluginStatus};
use tonic::{Request, Response, Status};

use crate::containerd::services::introspection::v1 as pb;
use crate::containerd::services::version::v1 as version_pb;
use crate::google::rpc::Status as RpcStatus;
use crate::to_grpc;

/// The suffix containerd's ctr looks for to show a plugin as `skip`.
pub const SKIP_PLUGIN: &str = "skip plugin";

/// The introspection and version services of a daemon.
#[derive(Clone)]
pub struct Service {
    introspection: Arc<dyn Introspection>,
}

impl Service {
    /// Serves `introspection`.
    pub fn new(introspection: Arc<dyn Introspection>) -> Self {
        Self { introspection }
    }

    /// The tonic server of the introspection service.
    pub fn into_server(self) -> pb::introspection_server::IntrospectionServer<Self> {
        pb::introspection_server::IntrospectionServer::new(self)
    }

    /// The tonic server of the version service.
    pub fn into_version_server(self) -> version_pb::version_server::VersionServer<Self> {
        version_pb::version_server::VersionServer::new(self)
    }
}

/// A plugin's record as its wire message: a skipped plugin carries an
/// error ending in "skip plugin", as containerd's ctr expects.
pub fn plugin_to_pb(info: PluginInfo) -> pb::Plugin {
    let init_err = match &info.status {
        PluginStatus::Ok => None,
        PluginStatus::Skipped(reason) => Some(RpcStatus {
            code: tonic::Code::Unknown as i32,
            message: format!("{reason}: {SKIP_PLUGIN}"),
            details: Vec::new(),
        }),
        PluginStatus::Failed(kind, message) => Some(RpcStatus {
            code: crate::status::grpc_code(*kind) as i32,
            message: message.clone(),
            details: Vec::new(),
        }),
    };
    pb::Plugin {
        r#type: info.r#type,
        id: info.id,
        requires: info.requires,
        platforms: Vec::new(),
        exports: info.exports.into_iter().collect(),
        capabilities: info.capabilities,
        init_err,
    }
}

/// A wire plugin record as the core type.
pub fn plugin_from_pb(p: pb::Plugin) -> PluginInfo {
    let status = match p.init_err {
        None => PluginStatus::Ok,
        Some(err) => match err.message.strip_suffix(&format!(": {SKIP_PLUGIN}")) {
            Some(reason) => PluginStatus::Skipped(reason.to_owned()),
            None => PluginStatus::Failed(
                crate::status::kind_of_grpc(tonic::Code::from_i32(err.code)),
                err.message,
            ),
        },
    };
    PluginInfo {
        r#type: p.r#type,
        id: p.id,
        requires: p.requires,
        exports: p.exports.into_iter().collect(),
        capabilities: p.capabilities,
        status,
    }
}

#[tonic::async_trait]
impl pb::introspection_server::Introspection for Service {
    async fn plugins(
        &self,
        request: Request<pb::PluginsRequest>,
    ) -> Result<Response<pb::PluginsResponse>, Status> {
        let plugins = self
            .introspection
            .plugins(&request.into_inner().filters)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::PluginsResponse {
            plugins: plugins.into_iter().map(plugin_to_pb).collect(),
        }))
    }

    async fn server(&self, _: Request<()>) -> Result<Response<pb::ServerResponse>, Status> {
        let server = self.introspection.server().await.map_err(to_grpc)?;
        Ok(Response::new(pb::ServerResponse {
            uuid: server.uuid,
            pid: server.pid,
            pidns: server.pidns,
            deprecations: server
                .deprecations
                .into_iter()
                .map(|d| pb::DeprecationWarning {
                    id: d.id,
                    message: d.message,
                    last_occurrence: Some(crate::convert::to_timestamp(d.last_occurrence)),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl version_pb::version_server::Version for Service {
    async fn version(
        &self,
        _: Request<()>,
    ) -> Result<Response<version_pb::VersionResponse>, Status> {
        let version = self.introspection.version().await.map_err(to_grpc)?;
        Ok(Response::new(version_pb::VersionResponse {
            version: version.version,
            revision: version.revision,
        }))
    }
}
