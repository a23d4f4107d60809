//! `io.containerd.differ.v1 walking`, the layer applier and comparer over the namespaced
//! content store, and `io.containerd.grpc.v1 diff`, the service over the
//! loaded differs.

use std::sync::Arc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The walking differ.
pub const WALKING: Registration = Registration {
    r#type: types::DIFFER,
    id: "walking",
    requires: &[types::METADATA],
    config: None,
    init: init_walking,
};

/// The gRPC diff service.
pub const SERVICE: Registration = Registration {
    r#type: types::GRPC,
    id: "diff",
    requires: &[types::DIFFER],
    config: None,
    init: init_service,
};

fn init_walking(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let content = ctx.content()?;
    // Mount points for layers being applied onto non-overlay mounts.
    let scratch = ctx.state.join("mounts");
    let differ = crated_differ::WalkingDiffer::new(content, &scratch)?;
    ctx.handles.differs.push(Arc::new(differ));
    Ok(())
}

fn init_service(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let differs = ctx.handles.differs.clone();
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::diff::Service::new(differs)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
