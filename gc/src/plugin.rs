//! `io.containerd.gc.v1 scheduler`: decides when the metadata plugin's
//! collector runs, with containerd's settings.

use std::sync::Arc;

use crated_core::gc::Trigger;
use crated_plugin::{types, Plugin, Registration};

use crate::{exports, Scheduler, Settings};

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(types::GC, "scheduler", |ctx| async move {
        let settings: Settings = ctx.config()?;
        let metadata = ctx.get(types::METADATA)?;
        let scheduler = Scheduler::spawn(metadata.collector, settings.clone());
        let on_write = scheduler.clone();
        metadata
            .mutations
            .on_mutation(Arc::new(move |dirty| on_write.mutation(dirty)));
        let trigger: Arc<dyn Trigger> = Arc::new(scheduler);
        let mut plugin = Plugin::new(trigger);
        for (key, value) in exports(&settings) {
            plugin = plugin.export(key, value);
        }
        Ok(plugin)
    })
    .requires(&[types::METADATA.name()])
    .with_config::<Settings>()
}
