//! `io.containerd.internal.v1 opt`: the directory binary images install
//! into. `ctr install` puts an image's `bin/` (and optionally `lib/`)
//! files here; the runtime looks for shims in `<path>/bin` first and puts
//! it first on the shims' PATH.

use std::path::PathBuf;

use crated_core::Error;

use crate::error::Error as ServiceError;
use crated_plugin::types::{self, Opt};
use crated_plugin::{Plugin, Registration};
use serde::{Deserialize, Serialize};

/// `[plugins."io.containerd.internal.v1.opt"]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Root of installed binaries.
    pub path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/opt/crated".into(),
        }
    }
}

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(types::OPT.r#type(), types::OPT.id(), |ctx| async move {
        let config: Config = ctx.config()?;
        if !config.path.is_absolute() {
            return Err(Error::from(ServiceError::RelativeOpt(config.path)).into());
        }
        for dir in [config.path.join("bin"), config.path.join("lib")] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::from(ServiceError::io("create opt directory", &dir)(e)))?;
        }
        Ok(Plugin::new(Opt(config.path.clone())).export("path", config.path.display()))
    })
    .with_config::<Config>()
}
