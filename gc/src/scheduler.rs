//! When to collect: containerd's `io.containerd.gc.v1 scheduler`.
//!
//! Collections are paced so that their pauses take at most
//! `pause_threshold` of real time; deletions and mutations since the last
//! collection decide whether a scheduled collection runs or is skipped, and
//! a trigger (a `sync` delete) runs one after `schedule_delay` and waits
//! for it.

use std::sync::Arc;
use std::time::Duration;

use crated_core::gc::{Collector, Stats, Trigger};
use crated_core::{duration, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Error;

/// The scheduler's settings, with containerd's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Largest share of real time that collection pauses may take; the
    /// interval between collections is derived from their average length.
    /// Clamped to `0.0..=0.5`; 0 keeps a fixed one-second interval.
    pub pause_threshold: f64,
    /// A collection is scheduled once this many deletions happened since the
    /// last one; 0 schedules one after any deletion when none is pending.
    pub deletion_threshold: u32,
    /// A scheduled collection runs (instead of being skipped) once this many
    /// mutations happened since the last one; 0 disables the count.
    pub mutation_threshold: u32,
    /// Delay before a triggered or threshold-scheduled collection.
    #[serde(with = "go_duration")]
    pub schedule_delay: Duration,
    /// Delay of the first collection after start; 0 means none until one is
    /// needed.
    #[serde(with = "go_duration")]
    pub startup_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pause_threshold: 0.02,
            deletion_threshold: 0,
            mutation_threshold: 100,
            schedule_delay: Duration::ZERO,
            startup_delay: Duration::from_millis(100),
        }
    }
}

mod go_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&duration::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        duration::parse(&text).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

enum Event {
    /// A database write finished at `at`; `dirty` if it removed references.
    Mutation { at: Instant, dirty: bool },
    /// Collect soon and report to `reply`.
    Trigger(oneshot::Sender<Result<Stats, Error>>),
}

/// A running scheduler. Cloning gives another handle to the same one; it
/// stops when every handle is dropped.
#[derive(Clone)]
pub struct Scheduler {
    events: mpsc::UnboundedSender<Event>,
}

impl Scheduler {
    /// Starts scheduling collections by `collector` on the current tokio
    /// runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(collector: Arc<dyn Collector>, settings: Settings) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(collector, settings, rx));
        Self { events }
    }

    /// Records a finished database write; cheap and non-blocking, for the
    /// metadata store's mutation callback.
    pub fn mutation(&self, dirty: bool) {
        // A send fails only once the loop ended with the runtime.
        let _ = self.events.send(Event::Mutation {
            at: Instant::now(),
            dirty,
        });
    }
}

#[async_trait::async_trait]
impl Trigger for Scheduler {
    async fn schedule_and_wait(&self) -> Result<Stats> {
        let (reply, stats) = oneshot::channel();
        self.events
            .send(Event::Trigger(reply))
            .map_err(|_| Error::Stopped)?;
        Ok(stats.await.map_err(|_| Error::Stopped)??)
    }
}

/// The settings as the plugin exports them (containerd's names).
pub fn exports(settings: &Settings) -> Vec<(String, String)> {
    vec![
        (
            "PauseThreshold".into(),
            pause_threshold(settings).to_string(),
        ),
        (
            "DeletionThreshold".into(),
            settings.deletion_threshold.to_string(),
        ),
        (
            "MutationThreshold".into(),
            settings.mutation_threshold.to_string(),
        ),
        (
            "ScheduleDelay".into(),
            duration::format(settings.schedule_delay),
        ),
    ]
}

fn pause_threshold(settings: &Settings) -> f64 {
    if settings.pause_threshold.is_nan() {
        return 0.0;
    }
    settings.pause_threshold.clamp(0.0, 0.5)
}

async fn run(
    collector: Arc<dyn Collector>,
    settings: Settings,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let pause = pause_threshold(&settings);
    let mut interval = Duration::from_secs(1);
    let mut next: Option<Instant> =
        (!settings.startup_delay.is_zero()).then(|| Instant::now() + settings.startup_delay);
    // When the last collection started: a mutation before it is covered.
    let mut last: Option<Instant> = None;
    let mut gc_time = Duration::ZERO;
    let mut collections = 0u32;
    let (mut triggered, mut deletions, mut mutations) = (false, 0u32, 0u32);
    let mut waiters: Vec<oneshot::Sender<Result<Stats, Error>>> = Vec::new();

    loop {
        let event = match next {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => None,
                event = events.recv() => match event {
                    Some(event) => Some(event),
                    None => return,
                },
            },
            None => match events.recv().await {
                Some(event) => Some(event),
                None => return,
            },
        };
        match event {
            None => {
                let needed = triggered
                    || last.is_none()
                    || deletions > 0
                    || (settings.mutation_threshold > 0
                        && mutations >= settings.mutation_threshold);
                if !needed {
                    next = Some(Instant::now() + interval);
                    continue;
                }
            }
            Some(event) => {
                match event {
                    Event::Mutation { at, dirty } => {
                        if last.is_some_and(|l| l > at) {
                            continue;
                        }
                        if dirty {
                            deletions += 1;
                        }
                        mutations += 1;
                    }
                    Event::Trigger(reply) => {
                        waiters.push(reply);
                        triggered = true;
                    }
                }
                let now_needed = triggered
                    || (settings.deletion_threshold > 0
                        && deletions >= settings.deletion_threshold)
                    || (next.is_none()
                        && ((settings.deletion_threshold == 0 && deletions > 0)
                            || (settings.mutation_threshold > 0
                                && mutations >= settings.mutation_threshold)));
                if now_needed {
                    let at = Instant::now() + settings.schedule_delay;
                    if next.is_none_or(|n| n > at) {
                        next = Some(at);
                    }
                }
                continue;
            }
        }

        let started = Instant::now();
        let result = collector.collect().await;
        last = Some(started);
        match &result {
            Ok(stats) => {
                tracing::debug!(
                    d = ?stats.elapsed(),
                    records = stats.records_removed,
                    blobs = stats.blobs_removed,
                    ingests = stats.ingests_removed,
                    snapshots = stats.snapshots_removed,
                    "garbage collected"
                );
                gc_time += stats.elapsed();
                collections += 1;
                (triggered, deletions, mutations) = (false, 0, 0);
                if pause > 0.0 {
                    let average = gc_time.as_secs_f64() / f64::from(collections);
                    interval = Duration::from_secs_f64(average / pause - average);
                }
                next = Some(Instant::now() + interval);
            }
            Err(e) => {
                tracing::error!(error = %e, "garbage collection failed");
                // Retry after one more second than the last wait.
                next = Some(Instant::now() + interval + Duration::from_secs(1));
            }
        }
        // Shared, so every waiter gets the error with its source chain.
        let result = result.map_err(|e| Error::CollectionFailed(Arc::new(e)));
        for waiter in waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting {
        runs: AtomicUsize,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Collector for Counting {
        async fn collect(&self) -> Result<Stats> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(crated_core::Error::unknown("disk on fire"));
            }
            Ok(Stats {
                metadata: Duration::from_millis(1),
                ..Stats::default()
            })
        }
    }

    fn no_startup() -> Settings {
        Settings {
            startup_delay: Duration::ZERO,
            ..Settings::default()
        }
    }

    // The paused clock makes these deterministic: time advances only when
    // every task is idle.

    #[tokio::test(start_paused = true)]
    async fn startup_collection_then_skips_while_nothing_changes() {
        let c = Arc::new(Counting::default());
        let _s = Scheduler::spawn(c.clone(), Settings::default());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(c.runs.load(Ordering::SeqCst), 1, "startup collection");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(c.runs.load(Ordering::SeqCst), 1, "nothing to do, skipped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deletion_makes_the_next_tick_collect() {
        let c = Arc::new(Counting::default());
        let s = Scheduler::spawn(c.clone(), Settings::default());
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.mutation(false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            c.runs.load(Ordering::SeqCst),
            1,
            "one mutation is not enough"
        );
        s.mutation(true);
        // The interval after a 1 ms collection at 2 %: 49 ms.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(c.runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn mutation_threshold_counts() {
        let c = Arc::new(Counting::default());
        let s = Scheduler::spawn(
            c.clone(),
            Settings {
                mutation_threshold: 3,
                ..no_startup()
            },
        );
        s.mutation(false);
        s.mutation(false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.runs.load(Ordering::SeqCst), 0);
        s.mutation(false);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(c.runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_waits_for_a_collection_after_the_delay() {
        let c = Arc::new(Counting::default());
        let s = Scheduler::spawn(
            c.clone(),
            Settings {
                schedule_delay: Duration::from_millis(500),
                ..no_startup()
            },
        );
        let before = Instant::now();
        let stats = s.schedule_and_wait().await.unwrap();
        assert_eq!(stats.metadata, Duration::from_millis(1));
        assert!(before.elapsed() >= Duration::from_millis(500));
        assert_eq!(c.runs.load(Ordering::SeqCst), 1);
        // Two triggers at once share one collection.
        let (a, b) = tokio::join!(s.schedule_and_wait(), s.schedule_and_wait());
        a.unwrap();
        b.unwrap();
        assert_eq!(c.runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_collection_is_reported_to_waiters() {
        let c = Arc::new(Counting {
            fail: true,
            ..Counting::default()
        });
        let s = Scheduler::spawn(c.clone(), no_startup());
        let e = s.schedule_and_wait().await.unwrap_err();
        assert_eq!(e.kind(), crated_core::Kind::Unknown);
        assert!(e.message().contains("disk on fire"));
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>());
        assert!(
            matches!(source, Some(Error::CollectionFailed(inner)) if inner.message() == "disk on fire"),
            "{e}"
        );
    }

    #[test]
    fn settings_read_containerds_config() {
        let s: Settings = serde_json::from_str(
            r#"{"pause_threshold":0.9,"deletion_threshold":5,"schedule_delay":"250ms","startup_delay":"1s"}"#,
        )
        .unwrap();
        assert_eq!(s.deletion_threshold, 5);
        assert_eq!(s.mutation_threshold, 100, "default kept");
        assert_eq!(s.schedule_delay, Duration::from_millis(250));
        assert_eq!(s.startup_delay, Duration::from_secs(1));
        let exported: std::collections::BTreeMap<_, _> = exports(&s).into_iter().collect();
        assert_eq!(exported["PauseThreshold"], "0.5", "clamped");
        assert_eq!(exported["ScheduleDelay"], "250ms");
        let bad = serde_json::from_str::<Settings>(r#"{"schedule_delay":"soon"}"#).unwrap_err();
        assert!(bad.to_string().contains("\"soon\""), "{bad}");
    }
}
