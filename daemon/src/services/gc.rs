//! `io.containerd.gc.v1 scheduler`: decides when the metadata plugin's
//! collector runs, with containerd's settings.

use std::sync::Arc;

use crated_gc::{Scheduler, Settings};

use crate::plugin::{config_table, types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::GC,
    id: "scheduler",
    requires: &[types::METADATA],
    config: Some(config_table::<Settings>),
    init,
};

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let settings: Settings = ctx.config()?;
    let db = ctx.metadata()?;
    let collector = ctx.handles.collector.clone().ok_or_else(|| {
        crated_core::Error::failed_precondition(format!(
            "plugin type {} provides no garbage collector",
            types::METADATA
        ))
    })?;
    for (key, value) in crated_gc::exports(&settings) {
        ctx.exports.insert(key, value);
    }
    let scheduler = Scheduler::spawn(collector, settings);
    let on_write = scheduler.clone();
    db.on_mutation(Arc::new(move |dirty| on_write.mutation(dirty)));
    ctx.handles.gc = Some(Arc::new(scheduler));
    Ok(())
}
