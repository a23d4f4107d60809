//! [`Introspection`] over containerd's gRPC introspection and version
//! services.

use crated_core::introspection::{Introspection, PluginInfo, ServerInfo, Version};
use crated_core::Result;
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::introspection::v1 as pb;
use crate::containerd::services::version::v1 as version_pb;
use crate::from_grpc;
use crate::services::introspection::plugin_from_pb;

/// What a remote daemon says about itself.
#[derive(Clone)]
pub struct IntrospectionProxy {
    client: pb::introspection_client::IntrospectionClient<Channel>,
    version: version_pb::version_client::VersionClient<Channel>,
}

impl IntrospectionProxy {
    /// Calls the introspection and version services on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::introspection_client::IntrospectionClient::new(
                channel.clone()
            )),
            version: version_pb::version_client::VersionClient::new(channel),
        }
    }
}

#[async_trait::async_trait]
impl Introspection for IntrospectionProxy {
    async fn plugins(&self, filters: &[String]) -> Result<Vec<PluginInfo>> {
        let req = pb::PluginsRequest {
            filters: filters.to_vec(),
        };
        let reply = self.client.clone().plugins(request(None, None, req)?).await;
        Ok(reply
            .map_err(from_grpc)?
            .into_inner()
            .plugins
            .into_iter()
            .map(plugin_from_pb)
            .collect())
    }

    async fn server(&self) -> Result<ServerInfo> {
        let reply = self.client.clone().server(request(None, None, ())?).await;
        let r = reply.map_err(from_grpc)?.into_inner();
        Ok(ServerInfo {
            uuid: r.uuid,
            pid: r.pid,
            pidns: r.pidns,
            deprecations: r
                .deprecations
                .into_iter()
                .map(|d| crated_core::deprecation::Deprecation {
                    last_occurrence: d
                        .last_occurrence
                        .as_ref()
                        .map(crate::convert::to_system_time)
                        .unwrap_or(std::time::UNIX_EPOCH),
                    id: d.id,
                    message: d.message,
                })
                .collect(),
        })
    }

    async fn version(&self) -> Result<Version> {
        let reply = self.version.clone().version(request(None, None, ())?).await;
        let r = reply.map_err(from_grpc)?.into_inner();
        Ok(Version {
            version: r.version,
            revision: r.revision,
        })
    }
}
