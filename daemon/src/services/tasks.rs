//! `io.containerd.runtime.v2 task`, the task manager (bundles and shims),
//! and `io.containerd.grpc.v1 tasks`, the service over it.

use std::sync::Arc;

use crated_core::Error;
use crated_runtime_v2::{ManagerConfig, TaskManager};

use crate::plugin::{types, InitContext, InitError, Registration};

/// The runtime v2 task manager.
pub const RUNTIME: Registration = Registration {
    r#type: types::RUNTIME_V2,
    id: "task",
    requires: &[types::EVENT, types::INTERNAL],
    config: None,
    init: init_runtime,
};

/// The gRPC tasks service.
pub const SERVICE: Registration = Registration {
    r#type: types::GRPC,
    id: "tasks",
    requires: &[types::RUNTIME_V2, types::METADATA],
    config: None,
    init: init_service,
};

fn init_runtime(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let exchange = ctx.exchange()?;
    let publish_binary = std::env::current_exe()
        .map_err(|e| Error::unknown(format!("the daemon's executable: {e}")))?;
    let config = ManagerConfig {
        root: ctx.daemon_root.clone(),
        state: ctx.daemon_state.clone(),
        address: ctx.grpc_address.clone(),
        ttrpc_address: ctx.ttrpc_address.clone(),
        publish_binary,
        opt: ctx.handles.opt.clone(),
    };
    ctx.exports.insert(
        "root".to_owned(),
        ctx.daemon_root
            .join(crated_runtime_v2::bundle::PLUGIN_DIR)
            .display()
            .to_string(),
    );
    ctx.exports.insert(
        "state".to_owned(),
        ctx.daemon_state
            .join(crated_runtime_v2::bundle::PLUGIN_DIR)
            .display()
            .to_string(),
    );
    let manager = TaskManager::new(config, exchange);
    // Shims of tasks from before a restart: reconnected (or cleaned up
    // after) while the daemon comes up.
    let recovering = manager.clone();
    tokio::spawn(async move {
        if let Err(e) = recovering.recover().await {
            tracing::error!(error = %e, "recovering tasks");
        }
    });
    ctx.handles.tasks = Some(manager);
    Ok(())
}

fn init_service(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let manager = ctx
        .handles
        .tasks
        .clone()
        .ok_or_else(|| Error::failed_precondition("no task manager loaded"))?;
    let db = ctx.metadata()?;
    let content = ctx
        .handles
        .content
        .clone()
        .ok_or_else(|| Error::failed_precondition("no content store loaded"))?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_runtime_v2::service::Service::new(manager, Arc::new(db), content)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
