//! `io.containerd.metadata.v1 sled`: the metadata database.

use std::sync::Arc;

use crated_metadata::{GarbageCollector, NamespacedContent, NamespacedSnapshots, SharingPolicy};
use serde::{Deserialize, Serialize};

use crate::plugin::{config_table, types, InitContext, InitError, Registration};

/// The plugin.
pub const REGISTRATION: Registration = Registration {
    r#type: types::METADATA,
    id: "sled",
    requires: &[types::CONTENT, types::SNAPSHOTTER],
    config: Some(config_table::<Config>),
    init,
};

/// `[plugins."io.containerd.metadata.v1.sled"]`, as containerd's bolt plugin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// `shared`: a blob present in any namespace is visible to a writer in
    /// another without a second transfer; `isolated`: it must be written
    /// again.
    content_sharing_policy: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            content_sharing_policy: "shared".into(),
        }
    }
}

fn init(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let config: Config = ctx.config()?;
    let policy = match config.content_sharing_policy.as_str() {
        "shared" => SharingPolicy::Shared,
        "isolated" => SharingPolicy::Isolated,
        other => {
            return Err(crated_core::Error::invalid_argument(format!(
                "content_sharing_policy {other:?} is not supported: use \"shared\" or \"isolated\""
            ))
            .into())
        }
    };
    let backend = ctx.handles.content_backend.clone().ok_or_else(|| {
        crated_core::Error::failed_precondition(format!(
            "plugin type {} is not loaded",
            types::CONTENT
        ))
    })?;
    let db = crated_metadata::Db::open(&ctx.daemon_root)?;
    ctx.exports
        .insert("path".into(), db.path().display().to_string());
    let content = NamespacedContent::new(db.clone(), backend, policy);
    let backends = ctx.handles.snapshotters.clone();
    let snapshots = NamespacedSnapshots::new(db.clone(), backends);
    ctx.handles.collector = Some(Arc::new(
        GarbageCollector::new(db.clone(), content.clone()).with_snapshots(snapshots.clone()),
    ));
    ctx.handles.content = Some(Arc::new(content));
    ctx.handles.snapshots = Some(Arc::new(snapshots));
    ctx.handles.metadata = Some(db);
    Ok(())
}
