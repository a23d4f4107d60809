//! `io.containerd.internal.v1 opt`: the directory binary images install into.
//!
//! `ctr install` puts an image's `bin/` (and optionally `lib/`) files here;
//! the runtime looks for shim and runc binaries in `<path>/bin` first.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::plugin::{config_table, types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::INTERNAL,
    id: "opt",
    requires: &[],
    config: Some(config_table::<Config>),
    init,
};

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Root of installed binaries.
    path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/opt/crated".into(),
        }
    }
}

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let config: Config = ctx.config()?;
    if !config.path.is_absolute() {
        return Err(crated_core::Error::invalid_argument(format!(
            "opt path {:?} must be absolute",
            config.path
        ))
        .into());
    }
    for dir in [config.path.join("bin"), config.path.join("lib")] {
        std::fs::create_dir_all(&dir).map_err(|e| {
            crated_core::Error::unknown(format!("create opt directory {}: {e}", dir.display()))
        })?;
    }
    ctx.exports
        .insert("path".into(), config.path.display().to_string());
    ctx.handles.opt = Some(config.path);
    Ok(())
}
