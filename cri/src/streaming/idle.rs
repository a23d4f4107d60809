//! Idle streaming connections: when nothing has gone either way for the
//! configured `stream_idle_timeout`, the connection is cut, so a client
//! that hangs (or stops reading) pins nothing for longer than that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinHandle};

/// When traffic last went either way; cheap to clone and touch.
#[derive(Clone)]
pub struct Activity {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    /// Something was read or written just now.
    pub fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Aborts `tasks` (a connection's reader and writer) once `activity` has
/// been quiet for `limit`; `None` when there is no limit.
pub fn watchdog(
    activity: Activity,
    limit: Option<Duration>,
    tasks: Vec<AbortHandle>,
) -> Option<JoinHandle<()>> {
    let limit = limit?;
    Some(tokio::spawn(async move {
        loop {
            let idle = activity.idle();
            if idle >= limit {
                tracing::info!(?limit, "closing an idle streaming connection");
                for task in tasks {
                    task.abort();
                }
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }))
}

/// Sets a flag when dropped: a task's end, even by abort, is seen.
pub struct OnDrop(pub Option<tokio::sync::watch::Sender<bool>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_connection_is_cut_and_a_busy_one_is_not() {
        let activity = Activity::default();
        let quiet = tokio::spawn(std::future::pending::<()>());
        let dog = watchdog(
            activity.clone(),
            Some(Duration::from_millis(300)),
            vec![quiet.abort_handle()],
        )
        .unwrap();
        // Touched for a while: not idle.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            activity.touch();
            assert!(!quiet.is_finished());
        }
        // Then silent: cut.
        dog.await.unwrap();
        assert!(quiet.await.unwrap_err().is_cancelled());
        assert!(watchdog(activity, None, vec![]).is_none());
    }
}
