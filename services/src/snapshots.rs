//! The snapshots service: the namespaced snapshotters, publishing
//! `/snapshot/*`.

use std::sync::Arc;

use crated_api::containerd::events as ev;
use crated_core::events::Exchange;
use crated_core::mount::Mount;
use crated_core::snapshots::{Info, Labels, Snapshotter, Snapshotters, Usage};
use crated_core::{Namespace, Result};

use crate::events::publish;

/// The snapshotters, each handed out with its events.
pub struct SnapshotService {
    snapshotters: Arc<dyn Snapshotters>,
    exchange: Exchange,
}

impl SnapshotService {
    /// `snapshotters` publishing to `exchange`.
    pub fn new(snapshotters: Arc<dyn Snapshotters>, exchange: Exchange) -> Self {
        Self {
            snapshotters,
            exchange,
        }
    }
}

impl Snapshotters for SnapshotService {
    fn names(&self) -> Vec<String> {
        self.snapshotters.names()
    }

    fn get(&self, ns: &Namespace, name: &str, lease: Option<&str>) -> Result<Arc<dyn Snapshotter>> {
        if name.is_empty() {
            return Err(crate::error::Error::Missing("snapshotter").into());
        }
        Ok(Arc::new(Publishing {
            inner: self.snapshotters.get(ns, name, lease)?,
            name: name.to_owned(),
            ns: ns.clone(),
            exchange: self.exchange.clone(),
        }))
    }
}

/// One snapshotter as one namespace sees it, publishing its mutations.
struct Publishing {
    inner: Arc<dyn Snapshotter>,
    /// The snapshotter's name, which containerd 1.7's events carry.
    name: String,
    ns: Namespace,
    exchange: Exchange,
}

#[async_trait::async_trait]
impl Snapshotter for Publishing {
    async fn stat(&self, key: &str) -> Result<Info> {
        self.inner.stat(key).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        self.inner.update(info, fieldpaths).await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        self.inner.usage(key).await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.inner.mounts(key).await
    }

    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let mounts = self.inner.prepare(key, parent, labels).await?;
        let event = ev::SnapshotPrepare {
            key: key.to_owned(),
            parent: parent.to_owned(),
            snapshotter: self.name.clone(),
        };
        publish(
            &self.exchange,
            &self.ns,
            "/snapshot/prepare",
            "containerd.events.SnapshotPrepare",
            &event,
        );
        Ok(mounts)
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.inner.view(key, parent, labels).await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.inner.commit(name, key, labels).await?;
        let event = ev::SnapshotCommit {
            key: key.to_owned(),
            name: name.to_owned(),
            snapshotter: self.name.clone(),
        };
        publish(
            &self.exchange,
            &self.ns,
            "/snapshot/commit",
            "containerd.events.SnapshotCommit",
            &event,
        );
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.inner.remove(key).await?;
        let event = ev::SnapshotRemove {
            key: key.to_owned(),
            snapshotter: self.name.clone(),
        };
        publish(
            &self.exchange,
            &self.ns,
            "/snapshot/remove",
            "containerd.events.SnapshotRemove",
            &event,
        );
        Ok(())
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        self.inner.walk(filters).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner.cleanup().await
    }
}
