//! `io.containerd.runtime.v2 task`: the task manager. Its init reconnects
//! to the shims of a previous daemon before it returns, so the daemon
//! serves no request before its running tasks are known again.

use std::sync::Arc;

use crated_plugin::{types, Plugin, Registration, Type};

use crate::error::Error;
use crate::timeouts::Timeouts;
use crate::{bundle, ManagerConfig, TaskManager};

/// Runtime v2 task managers.
pub const RUNTIME: Type<Arc<TaskManager>> = Type::new(types::RUNTIME_V2);

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(RUNTIME, "task", |ctx| async move {
        let exchange = ctx.get(types::EVENT)?;
        let publish_binary = std::env::current_exe()
            .map_err(|source| crated_core::Error::from(Error::DaemonExecutable { source }))?;
        let config = ManagerConfig {
            root: ctx.daemon_root().to_owned(),
            state: ctx.daemon_state().to_owned(),
            address: ctx.grpc_address().to_owned(),
            ttrpc_address: ctx.ttrpc_address().to_owned(),
            publish_binary,
            opt: ctx.get_by_id(types::OPT).ok().map(|opt| opt.0),
            timeouts: Timeouts::from_lookup(|key, default| ctx.timeout(key, default)),
        };
        let root = config.root.join(bundle::PLUGIN_DIR);
        let state = config.state.join(bundle::PLUGIN_DIR);
        let manager = TaskManager::new(config, exchange);
        manager.recover().await?;
        Ok(Plugin::new(manager)
            .export("root", root.display())
            .export("state", state.display()))
    })
    .requires(&[types::EVENT.name(), types::INTERNAL])
}
