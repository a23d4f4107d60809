//! `io.containerd.differ.v1 walking`: layers applied onto, and made from,
//! mounts, reading and writing the namespaced content of the metadata
//! plugin.

use std::sync::Arc;

use crated_core::diff::Differ;
use crated_plugin::{types, Plugin, Registration};

use crate::WalkingDiffer;

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(types::DIFFER, "walking", |ctx| async move {
        let content = ctx.get(types::METADATA)?.content;
        // Mount points for layers applied onto mounts that are not an
        // overlay's upper directory.
        let scratch = ctx.state.join("mounts");
        let differ: Arc<dyn Differ> = Arc::new(WalkingDiffer::new(content, &scratch)?);
        Ok(Plugin::new(differ))
    })
    .requires(&[types::METADATA.name()])
}
