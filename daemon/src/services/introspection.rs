//! `io.containerd.grpc.v1 introspection`: what loaded, and the server UUID.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crated_api::containerd::services::introspection::v1 as pb;
use crated_api::google::rpc::Status as RpcStatus;
use crated_core::filters::{self, Adaptor};
use crated_core::Error;
use tonic::{Request, Response, Status};

use crate::plugin::{
    types, InitContext, InitError, PluginInfo, Registration, Status as PluginStatus,
};

/// The plugin. It requires every other plugin so that it is initialised
/// last, as in containerd.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "introspection",
    requires: &["*"],
    config: None,
    init,
};

/// The suffix containerd's ctr looks for to show a plugin as `skip`.
const SKIP_PLUGIN: &str = "skip plugin";

struct Service {
    plugins: Arc<OnceLock<Vec<PluginInfo>>>,
    uuid: String,
}

struct Fields<'a>(&'a PluginInfo);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["type"] => Some(self.0.r#type.clone()).filter(|s| !s.is_empty()),
            ["id"] => Some(self.0.id.clone()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }
}

fn to_pb(info: &PluginInfo) -> pb::Plugin {
    let init_err = match &info.status {
        PluginStatus::Ok => None,
        PluginStatus::Skipped(reason) => Some(RpcStatus {
            code: tonic::Code::Unknown as i32,
            message: format!("{reason}: {SKIP_PLUGIN}"),
            details: Vec::new(),
        }),
        PluginStatus::Failed(kind, message) => Some(RpcStatus {
            code: crated_api::status::grpc_code(*kind) as i32,
            message: message.clone(),
            details: Vec::new(),
        }),
    };
    pb::Plugin {
        r#type: info.r#type.clone(),
        id: info.id.clone(),
        requires: info.requires.clone(),
        platforms: Vec::new(),
        exports: info.exports.clone().into_iter().collect(),
        capabilities: info.capabilities.clone(),
        init_err,
    }
}

#[tonic::async_trait]
impl pb::introspection_server::Introspection for Service {
    async fn plugins(
        &self,
        request: Request<pb::PluginsRequest>,
    ) -> Result<Response<pb::PluginsResponse>, Status> {
        let filter =
            filters::parse_all(&request.into_inner().filters).map_err(crated_api::to_grpc)?;
        let plugins = self
            .plugins
            .get()
            .map(|all| {
                all.iter()
                    .filter(|p| filter.matches(&Fields(p)))
                    .map(to_pb)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::PluginsResponse { plugins }))
    }

    async fn server(&self, _: Request<()>) -> Result<Response<pb::ServerResponse>, Status> {
        Ok(Response::new(pb::ServerResponse {
            uuid: self.uuid.clone(),
            pid: u64::from(std::process::id()),
            pidns: pid_namespace(),
        }))
    }
}

/// The inode of the daemon's PID namespace, as containerd 1.7 reports it;
/// 0 when it cannot be read.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Reads the server UUID under `dir`, creating it durably on first start.
fn server_uuid(dir: &Path) -> Result<String, Error> {
    let path = dir.join("uuid");
    match std::fs::read_to_string(&path) {
        Ok(text) if uuid::Uuid::parse_str(text.trim()).is_ok() => {
            return Ok(text.trim().to_owned())
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "server uuid file is malformed; writing a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::unknown(format!("read {}: {e}", path.display()))),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let io = |e: std::io::Error| Error::unknown(format!("write {}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("uuid.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(id.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(id)
}

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let uuid = server_uuid(&ctx.root)?;
    let service = Service {
        plugins: Arc::clone(&ctx.handles.plugins),
        uuid,
    };
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            pb::introspection_server::IntrospectionServer::new(service)
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = server_uuid(dir.path()).unwrap();
        assert_eq!(server_uuid(dir.path()).unwrap(), first);
        assert!(uuid::Uuid::parse_str(&first).is_ok());
    }
}
