//! `io.containerd.content.v1 content`: the local blob store under the
//! plugin's root.

use std::sync::Arc;

use crated_core::content::ContentStore;
use crated_plugin::{types, Plugin, Registration};

use crate::LocalStore;

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(types::CONTENT, "content", |ctx| async move {
        let store: Arc<dyn ContentStore> =
            Arc::new(LocalStore::open(&ctx.root).map_err(crated_core::Error::from)?);
        Ok(Plugin::new(store).export("root", ctx.root.display()))
    })
}
