//! `io.containerd.grpc.v1 leases`.

use std::sync::Arc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "leases",
    requires: &[types::METADATA, types::GC],
    config: None,
    init,
};

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let db = ctx.metadata()?;
    let gc = ctx.gc()?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::leases::Service::new(Arc::new(db))
                .with_gc(gc)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
