//! `io.containerd.grpc.v1 images`.

use std::sync::Arc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "images",
    requires: &[types::METADATA, types::GC, types::EVENT],
    config: None,
    init,
};

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let db = ctx.metadata()?;
    let gc = ctx.gc()?;
    let exchange = ctx.exchange()?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::images::Service::new(Arc::new(db), exchange)
                .with_gc(gc)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
