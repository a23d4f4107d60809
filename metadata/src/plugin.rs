//! `io.containerd.metadata.v1 sled`: the database, and the namespaced
//! content and snapshot views it builds over the content store and the
//! snapshotters loaded before it.

use std::sync::Arc;

use crated_plugin::types::{self, Metadata};
use crated_plugin::{InitError, Plugin, Registration};
use serde::{Deserialize, Serialize};

use crate::{Db, Error, GarbageCollector, NamespacedContent, NamespacedSnapshots, SharingPolicy};

/// `[plugins."io.containerd.metadata.v1.sled"]`, with the keys of
/// containerd's bolt plugin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `shared`: a blob present in any namespace is visible to a writer in
    /// another without a second transfer; `isolated`: it must be written
    /// again.
    pub content_sharing_policy: String,
    /// crated's own key: the bound, in bytes, of the database's page cache
    /// (containerd's bolt maps its file instead). At least 1 MiB.
    pub cache_capacity: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            content_sharing_policy: "shared".into(),
            cache_capacity: crate::DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// The least `cache_capacity` taken: below it sled would read most
/// records back from its file on every request.
pub const MIN_CACHE_CAPACITY: u64 = 1 << 20;

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(types::METADATA, "sled", |ctx| async move {
        let config: Config = ctx.config()?;
        let policy = match config.content_sharing_policy.as_str() {
            "shared" => SharingPolicy::Shared,
            "isolated" => SharingPolicy::Isolated,
            other => {
                return Err(InitError::Failed(
                    Error::SharingPolicy {
                        value: other.to_owned(),
                    }
                    .into(),
                ))
            }
        };
        if config.cache_capacity < MIN_CACHE_CAPACITY {
            return Err(InitError::Failed(
                Error::CacheCapacity {
                    value: config.cache_capacity,
                    minimum: MIN_CACHE_CAPACITY,
                    default: crate::DEFAULT_CACHE_CAPACITY,
                }
                .into(),
            ));
        }
        let backend = ctx.get(types::CONTENT)?;
        let root = ctx.daemon_root().to_owned();
        let capacity = config.cache_capacity;
        let db = tokio::task::spawn_blocking(move || Db::open_with(&root, capacity))
            .await
            .map_err(|source| Error::OpenTask { source })
            .and_then(|opened| opened)
            .map_err(crated_core::Error::from)?;
        let content = NamespacedContent::new(db.clone(), backend, policy);
        let snapshots = NamespacedSnapshots::new(db.clone(), ctx.get_all(types::SNAPSHOTTER));
        let collector =
            GarbageCollector::new(db.clone(), content.clone()).with_snapshots(snapshots.clone());
        let path = db.path().display().to_string();
        let closing = db.clone();
        let db = Arc::new(db);
        Ok(Plugin::new(Metadata {
            namespaces: db.clone(),
            images: db.clone(),
            containers: db.clone(),
            leases: db.clone(),
            content: Arc::new(content),
            snapshots: Arc::new(snapshots),
            collector: Arc::new(collector),
            mutations: db,
        })
        .export("path", path)
        .on_close(move || async move {
            // Every write was flushed before its reply; this is for what
            // sled keeps of its own (its page cache's dirty pages).
            let flushed = tokio::task::spawn_blocking(move || closing.flush()).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(error = %e, "flush metadata database");
            }
        }))
    })
    .requires(&[types::CONTENT.name(), types::SNAPSHOTTER.name()])
    .with_config::<Config>()
}
