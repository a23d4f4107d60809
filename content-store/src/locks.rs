//! One writer per ref: in-memory locks.
//!
//! Locks live in the process, never on disk, so a crash or restart cannot
//! leave a stale one behind. Stores opened on the same directory in one
//! process share one lock table, as containerd's process-wide one. The lock is owned by the writer's ingest state,
//! which moves into every blocking file operation: it is released only once
//! nothing touches the ingest's files any more, even when an operation's
//! future was dropped half-way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Error;

/// The refs with an active writer.
#[derive(Debug, Default)]
pub(crate) struct RefLocks {
    held: Mutex<HashMap<String, Instant>>,
    released: Notify,
}

impl RefLocks {
    /// The lock table of the store at `root`, shared by every store opened
    /// on that directory in this process.
    pub(crate) fn for_root(root: &Path) -> Arc<Self> {
        static BY_ROOT: OnceLock<Mutex<HashMap<PathBuf, Weak<RefLocks>>>> = OnceLock::new();
        let key = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        // Poison cannot leave the map inconsistent: each section is one
        // lookup, insert or retain.
        let mut tables = BY_ROOT
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(table) = tables.get(&key).and_then(Weak::upgrade) {
            return table;
        }
        tables.retain(|_, table| table.strong_count() > 0);
        let table = Arc::new(Self::default());
        tables.insert(key, Arc::downgrade(&table));
        table
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding this mutex cannot leave the map half-updated
        // (every critical section is one insert or remove), so a poisoned
        // map is still sound.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks `ref`, waiting up to `wait` for a current holder to let go.
    ///
    /// The wait, like containerd's retries, absorbs a client that closes a
    /// writer and reopens the ref at once, while the server is still
    /// finishing the first. Past it the error is Unavailable.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        r#ref: &str,
        wait: Duration,
    ) -> Result<RefLock, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before trying, so a release between the try and the
            // wait still wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let since = {
                let mut held = self.held();
                match held.get(r#ref) {
                    Some(since) => *since,
                    None => {
                        held.insert(r#ref.to_owned(), Instant::now());
                        return Ok(RefLock {
                            locks: Arc::clone(self),
                            r#ref: r#ref.to_owned(),
                        });
                    }
                }
            };
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(Error::RefLocked {
                    r#ref: r#ref.to_owned(),
                    held_for: since.elapsed(),
                });
            }
        }
    }
}

/// The lock on one ref; dropping it frees the ref.
#[derive(Debug)]
pub(crate) struct RefLock {
    locks: Arc<RefLocks>,
    r#ref: String,
}

impl Drop for RefLock {
    fn drop(&mut self) {
        self.locks.held().remove(&self.r#ref);
        self.locks.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_lock_waits_for_release_then_times_out() {
        let locks = Arc::new(RefLocks::default());
        let first = locks.acquire("r", Duration::ZERO).await.unwrap();
        let err = locks
            .acquire("r", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::RefLocked { r#ref, .. } if r#ref == "r"));
        let err = crated_core::Error::from(err);
        assert_eq!(err.kind(), crated_core::Kind::Unavailable);
        assert!(err.message().starts_with("ref \"r\" is locked"), "{err}");
        // Another ref is independent.
        drop(locks.acquire("s", Duration::ZERO).await.unwrap());

        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { locks.acquire("r", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let started = Instant::now();
        waiter.await.unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by the release"
        );
    }
}
