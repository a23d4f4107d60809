//! `io.containerd.event.v1 exchange`, the events exchange every service
//! publishes to, and `io.containerd.grpc.v1 events`, which serves it over
//! gRPC (Subscribe, Publish, Forward) and over ttrpc (Forward, for shims).

use std::sync::Arc;

use crated_api::containerd::services::events::ttrpc::v1::events_ttrpc;

use crate::plugin::{types, InitContext, InitError, Registration};

/// The exchange.
pub const EXCHANGE: Registration = Registration {
    r#type: types::EVENT,
    id: "exchange",
    requires: &[],
    config: None,
    init: init_exchange,
};

/// The events service.
pub const SERVICE: Registration = Registration {
    r#type: types::GRPC,
    id: "events",
    requires: &[types::EVENT],
    config: None,
    init: init_service,
};

fn init_exchange(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    ctx.handles.exchange = Some(crated_core::events::Exchange::new());
    Ok(())
}

fn init_service(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let service = crated_api::services::events::Service::new(ctx.exchange()?);
    ctx.handles
        .ttrpc
        .extend(events_ttrpc::create_events(Arc::new(service.clone())));
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            service
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
