//! The snapshotter plugins — `io.containerd.snapshotter.v1` `native`,
//! `overlayfs` and `btrfs`, each under its own root — and
//! `io.containerd.grpc.v1 snapshots`, the service over the namespaced view
//! the metadata plugin builds on them.

use std::path::PathBuf;
use std::sync::Arc;

use crated_core::snapshots::Snapshotter;
use serde::{Deserialize, Serialize};

use crate::plugin::{config_table, types, InitContext, InitError, Registration};

/// `io.containerd.snapshotter.v1 native`.
pub const NATIVE: Registration = Registration {
    r#type: types::SNAPSHOTTER,
    id: "native",
    requires: &[],
    config: Some(config_table::<Config>),
    init: init_native,
};

/// `io.containerd.snapshotter.v1 overlayfs`.
pub const OVERLAYFS: Registration = Registration {
    r#type: types::SNAPSHOTTER,
    id: "overlayfs",
    requires: &[],
    config: Some(config_table::<Config>),
    init: init_overlayfs,
};

/// `io.containerd.snapshotter.v1 btrfs`.
pub const BTRFS: Registration = Registration {
    r#type: types::SNAPSHOTTER,
    id: "btrfs",
    requires: &[],
    config: Some(config_table::<Config>),
    init: init_btrfs,
};

/// `io.containerd.grpc.v1 snapshots`.
pub const SERVICE: Registration = Registration {
    r#type: types::GRPC,
    id: "snapshots",
    requires: &[types::METADATA, types::EVENT],
    config: None,
    init: init_service,
};

/// A snapshotter's section, as containerd's: where its snapshots live.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Root of the snapshotter; empty means `<root>/<type>.<id>`.
    root_path: String,
}

fn root(ctx: &mut InitContext<'_>) -> Result<PathBuf, InitError> {
    let config: Config = ctx.config()?;
    let root = if config.root_path.is_empty() {
        ctx.root.clone()
    } else {
        PathBuf::from(config.root_path)
    };
    ctx.exports
        .insert("root".into(), root.display().to_string());
    Ok(root)
}

fn register(ctx: &mut InitContext<'_>, snapshotter: Arc<dyn Snapshotter>) {
    let name = ctx.registration.id.to_owned();
    ctx.handles.snapshotters.push((name, snapshotter));
}

fn init_native(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let root = root(ctx)?;
    let sn = crated_snapshotter_native::open(&root)?;
    register(ctx, Arc::new(sn));
    Ok(())
}

fn init_overlayfs(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let root = root(ctx)?;
    let sn = crated_snapshotter_overlay::open(&root)?;
    register(ctx, Arc::new(sn));
    Ok(())
}

fn init_btrfs(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let root = root(ctx)?;
    match crated_snapshotter_btrfs::open(&root) {
        Ok(sn) => {
            register(ctx, Arc::new(sn));
            Ok(())
        }
        // Not on btrfs: this plugin does not apply here, as containerd
        // reports it (`skip`), and the empty root it made is left alone.
        Err(err) if err.kind() == crated_core::Kind::FailedPrecondition => {
            Err(InitError::Skip(err.message().to_owned()))
        }
        Err(err) => Err(err.into()),
    }
}

fn init_service(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let snapshots = ctx.handles.snapshots.clone().ok_or_else(|| {
        crated_core::Error::failed_precondition(format!(
            "plugin type {} is not loaded",
            types::SNAPSHOTTER
        ))
    })?;
    let exchange = ctx.exchange()?;
    ctx.handles.grpc.push(Box::new(move |routes, limits| {
        routes.add_service(
            crated_api::services::snapshots::Service::new(snapshots, exchange)
                .into_server()
                .max_decoding_message_size(limits.max_recv)
                .max_encoding_message_size(limits.max_send),
        )
    }));
    Ok(())
}
