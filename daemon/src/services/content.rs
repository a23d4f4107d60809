//! The content plugins: `io.containerd.content.v1 content`, the local blob
//! store, and `io.containerd.grpc.v1 content`, the gRPC service over the
//! namespaced view the metadata plugin builds on it.

use std::sync::Arc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The local blob store, under `<root>/io.containerd.content.v1.content`.
pub const STORE: Registration = Registration {
    r#type: types::CONTENT,
    id: "content",
    requires: &[],
    config: None,
    init: init_store,
};

/// The gRPC content service.
pub const SERVICE: Registration = Registration {
    r#type: types::GRPC,
    id: "content",
    requires: &[types::METADATA, types::EVENT],
    config: None,
    init: init_service,
};

fn init_store(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let store = crated_content_store::LocalStore::open(&ctx.root)?;
    ctx.exports
        .insert("root".into(), ctx.root.display().to_string());
    ctx.handles.content_backend = Some(Arc::new(store));
    Ok(())
}

fn init_service(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let store = ctx.content()?;
    let exchange = ctx.exchange()?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::content::Service::new(store, exchange)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
