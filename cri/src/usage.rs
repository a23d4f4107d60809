//! Disk usage of the CRI's snapshots, as container stats and ImageFsInfo
//! report it.
//!
//! A committed snapshot's usage is recorded when it is committed and costs a
//! lookup (made once: it never changes); an active one (a container's writable layer) has to be measured
//! by walking its files, which for a container that writes many files is
//! far too slow to do on every stats call kubelet makes. So active
//! snapshots are measured in the background every `stats_collect_period`
//! (as containerd's snapshot syncer does) and calls answer from those
//! measurements, each with the time it was taken. A layer not measured yet
//! (a container created since the last round) is measured on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crated_core::snapshots::{Kind, Snapshotter, Usage};
use crated_core::Result;

use crate::container::now_nanos;
use crate::Cri;

/// One measurement of an active snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Measured {
    /// Bytes used.
    pub bytes: u64,
    /// Inodes used.
    pub inodes: u64,
    /// When it was taken (Unix nanoseconds).
    pub timestamp: i64,
}

impl Measured {
    fn of(usage: Usage, timestamp: i64) -> Self {
        Self {
            bytes: u64::try_from(usage.size).unwrap_or(0),
            inodes: u64::try_from(usage.inodes).unwrap_or(0),
            timestamp,
        }
    }
}

/// The latest measurement of each active snapshot, by key.
#[derive(Default)]
pub(crate) struct LayerUsage {
    measured: Mutex<HashMap<String, Measured>>,
    /// The usage of committed snapshots (and views), recorded once: their
    /// files never change, and asking the snapshotter for each one on
    /// every ImageFsInfo is a hop to its blocking thread per layer.
    fixed: Mutex<HashMap<String, Measured>>,
}

impl LayerUsage {
    fn get(&self, key: &str) -> Option<Measured> {
        self.measured.lock().ok()?.get(key).copied()
    }

    fn put(&self, key: &str, measured: Measured) {
        if let Ok(mut map) = self.measured.lock() {
            map.insert(key.to_owned(), measured);
        }
    }

    /// The usage of active snapshot `key`: the latest measurement, else one
    /// taken now.
    pub(crate) async fn active(&self, sn: &dyn Snapshotter, key: &str) -> Result<Measured> {
        if let Some(m) = self.get(key) {
            return Ok(m);
        }
        let measured = Measured::of(sn.usage(key).await?, now_nanos());
        self.put(key, measured);
        Ok(measured)
    }

    /// The recorded usage of snapshot `key`, which is not active.
    async fn fixed(&self, sn: &dyn Snapshotter, key: &str, now: i64) -> Result<Measured> {
        let known = self.fixed.lock().ok().and_then(|map| map.get(key).copied());
        if let Some(m) = known {
            return Ok(Measured {
                timestamp: now,
                ..m
            });
        }
        let measured = Measured::of(sn.usage(key).await?, now);
        if let Ok(mut map) = self.fixed.lock() {
            map.insert(key.to_owned(), measured);
        }
        Ok(measured)
    }

    /// Measures every active snapshot again and forgets those that are
    /// gone. A snapshot removed while it is measured is left out.
    pub(crate) async fn refresh(&self, sn: &dyn Snapshotter) -> Result<()> {
        let mut fresh = HashMap::new();
        let infos = sn.walk(&[]).await?;
        if let Ok(mut fixed) = self.fixed.lock() {
            let live: std::collections::HashSet<&str> =
                infos.iter().map(|info| info.name.as_str()).collect();
            fixed.retain(|key, _| live.contains(key.as_str()));
        }
        for info in infos {
            if info.kind != Kind::Active {
                continue;
            }
            match sn.usage(&info.name).await {
                Ok(usage) => {
                    fresh.insert(info.name, Measured::of(usage, now_nanos()));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::debug!(key = info.name, error = %e, "measure a writable layer"),
            }
        }
        if let Ok(mut map) = self.measured.lock() {
            *map = fresh;
        }
        Ok(())
    }

    /// Total usage of every snapshot of `sn`: committed ones as recorded,
    /// active ones as last measured. Its timestamp is that of the oldest
    /// measurement in it (now when none is).
    pub(crate) async fn total(&self, sn: &dyn Snapshotter) -> Result<Measured> {
        let now = now_nanos();
        let mut total = Measured {
            bytes: 0,
            inodes: 0,
            timestamp: now,
        };
        let infos = sn.walk(&[]).await?;
        // Those not known yet (a new layer, a new container) are asked for
        // at once rather than one after another.
        let each = futures::future::join_all(infos.iter().map(|info| async move {
            if info.kind == Kind::Active {
                self.active(sn, &info.name).await
            } else {
                self.fixed(sn, &info.name, now).await
            }
        }))
        .await;
        for one in each {
            match one {
                Ok(m) => {
                    total.bytes += m.bytes;
                    total.inodes += m.inodes;
                    total.timestamp = total.timestamp.min(m.timestamp);
                }
                // Removed since the walk.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// The measurements of each snapshotter pods use, by its name (the same
/// key — a chain id — names a different snapshot in each).
#[derive(Default)]
pub(crate) struct LayerUsages(Mutex<HashMap<String, Arc<LayerUsage>>>);

impl LayerUsages {
    /// Those of `snapshotter`.
    pub(crate) fn of(&self, snapshotter: &str) -> Arc<LayerUsage> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(all.entry(snapshotter.to_owned()).or_default())
    }
}

/// Measures the CRI's active snapshots every `period` for as long as the
/// plugin lives.
pub(crate) fn spawn_refresh(cri: &Arc<Cri>, period: Duration) {
    let cri: Weak<Cri> = Arc::downgrade(cri);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(cri) = cri.upgrade() else { return };
            for name in cri.snapshotters_in_use() {
                let refreshed = match cri.client.snapshotter(&name, None) {
                    Ok(sn) => cri.layer_usage.of(&name).refresh(sn.as_ref()).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = refreshed {
                    tracing::warn!(snapshotter = name, error = %e, "measure the containers' writable layers");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A native snapshotter in a temp dir with one committed snapshot
    /// holding `base` bytes and, on it, active snapshot "layer"; the
    /// directory of the active one's files.
    async fn snapshotter(
        base: usize,
    ) -> (
        tempfile::TempDir,
        crated_snapshotter_native::Native,
        std::path::PathBuf,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sn = crated_snapshotter_native::open(dir.path()).unwrap();
        let mounts = sn
            .prepare("base-key", "", Default::default())
            .await
            .unwrap();
        std::fs::write(
            std::path::Path::new(&mounts[0].source).join("base"),
            vec![1; base],
        )
        .unwrap();
        sn.commit("base", "base-key", Default::default())
            .await
            .unwrap();
        let mounts = sn
            .prepare("layer", "base", Default::default())
            .await
            .unwrap();
        let files = std::path::PathBuf::from(&mounts[0].source);
        (dir, sn, files)
    }

    #[tokio::test]
    async fn an_active_layer_is_measured_again_only_by_a_refresh() {
        let (_dir, sn, files) = snapshotter(64 << 10).await;
        let cache = LayerUsage::default();
        // Never measured: measured now.
        let first = cache.active(&sn, "layer").await.unwrap();
        assert!(first.bytes >= 64 << 10, "{first:?}");

        std::fs::write(files.join("grown"), vec![2; 1 << 20]).unwrap();
        assert_eq!(
            cache.active(&sn, "layer").await.unwrap(),
            first,
            "a stats call answers from the last measurement"
        );
        cache.refresh(&sn).await.unwrap();
        let after = cache.active(&sn, "layer").await.unwrap();
        assert!(
            after.bytes >= first.bytes + (1 << 20),
            "{after:?} after {first:?}"
        );
        assert!(after.timestamp >= first.timestamp);

        // The total: the committed base as recorded plus the layer as
        // last measured (the layer holds a copy of the base).
        let total = cache.total(&sn).await.unwrap();
        assert!(total.bytes >= after.bytes + (64 << 10), "{total:?}");
        assert!(
            total.timestamp <= after.timestamp,
            "as old as its oldest part"
        );

        // A removed snapshot is forgotten at the next refresh.
        sn.remove("layer").await.unwrap();
        cache.refresh(&sn).await.unwrap();
        assert!(cache.get("layer").is_none());
        assert!(cache.active(&sn, "layer").await.unwrap_err().is_not_found());

        // A committed layer's usage is asked for once, and forgotten with
        // the layer.
        assert!(cache.fixed.lock().unwrap().contains_key("base"));
        sn.remove("base").await.unwrap();
        assert_eq!(cache.total(&sn).await.unwrap().bytes, 0);
        cache.refresh(&sn).await.unwrap();
        assert!(cache.fixed.lock().unwrap().is_empty());
    }
}
