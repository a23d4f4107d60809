//! `io.containerd.grpc.v1 version`.

use crated_api::containerd::services::version::v1 as pb;
use tonic::{Request, Response, Status};

use crate::plugin::{types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "version",
    requires: &[],
    config: None,
    init,
};

/// The daemon version reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision the daemon was built from (`unknown` outside git).
pub const REVISION: &str = match option_env!("CRATED_REVISION") {
    Some(r) => r,
    None => "unknown",
};

struct Service;

#[tonic::async_trait]
impl pb::version_server::Version for Service {
    async fn version(&self, _: Request<()>) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: VERSION.into(),
            revision: REVISION.into(),
        }))
    }
}

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    ctx.handles.grpc.push(Box::new(|routes, limits| {
        routes.add_service(
            pb::version_server::VersionServer::new(Service)
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
