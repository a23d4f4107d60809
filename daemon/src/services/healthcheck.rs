//! `io.containerd.grpc.v1 healthcheck`: `grpc.health.v1.Health`.

use crate::plugin::{types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GRPC,
    id: "healthcheck",
    requires: &[],
    config: None,
    init,
};

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    // The reporter starts with the server-wide service ("") SERVING, which
    // is what `grpc_health_probe` and Kubernetes ask for.
    let (_reporter, service) = tonic_health::server::health_reporter();
    ctx.handles
        .grpc
        .push(Box::new(move |routes, _| routes.add_service(service)));
    Ok(())
}
