//! `io.containerd.grpc.v1 containers`.

use std::sync::Arc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "containers",
    requires: &[types::METADATA, types::EVENT],
    config: None,
    init,
};

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let db = ctx.metadata()?;
    let exchange = ctx.exchange()?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::containers::Service::new(Arc::new(db), exchange)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
