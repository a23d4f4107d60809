//! How long the runtime waits for shims: containerd's
//! `io.containerd.timeout.*` keys of `[timeouts]` where containerd has
//! one, crated's own `crated.timeout.*` keys for the waits containerd
//! leaves unbounded.

use std::time::Duration;

/// Connecting to a shim (after its start, and to running shims when the
/// daemon restarts).
pub const SHIM_LOAD: &str = "io.containerd.timeout.shim.load";
/// The `delete` command run after a shim that is gone.
pub const SHIM_CLEANUP: &str = "io.containerd.timeout.shim.cleanup";
/// A shim's `Shutdown`.
pub const SHIM_SHUTDOWN: &str = "io.containerd.timeout.shim.shutdown";
/// A task's `State` while listing tasks, and the liveness probe of a shim.
pub const TASK_STATE: &str = "io.containerd.timeout.task.state";
/// The `start` command that launches a shim.
pub const SHIM_START: &str = "crated.timeout.shim.start";
/// Any other call to a shim (but `Wait`, which lasts as long as the
/// process).
pub const SHIM_CALL: &str = "crated.timeout.shim.call";
/// A checkpoint, and a `Start` that restores one: criu takes as long as
/// the memory it writes or reads.
pub const TASK_CHECKPOINT: &str = "crated.timeout.task.checkpoint";

/// The runtime's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// [`SHIM_LOAD`].
    pub shim_load: Duration,
    /// [`SHIM_CLEANUP`].
    pub shim_cleanup: Duration,
    /// [`SHIM_SHUTDOWN`].
    pub shim_shutdown: Duration,
    /// [`TASK_STATE`].
    pub task_state: Duration,
    /// [`SHIM_START`].
    pub shim_start: Duration,
    /// [`SHIM_CALL`].
    pub shim_call: Duration,
    /// [`TASK_CHECKPOINT`].
    pub task_checkpoint: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            shim_load: Duration::from_secs(5),
            shim_cleanup: Duration::from_secs(5),
            shim_shutdown: Duration::from_secs(3),
            task_state: Duration::from_secs(2),
            shim_start: Duration::from_secs(30),
            shim_call: Duration::from_secs(60),
            task_checkpoint: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// Each timeout as `lookup(key, default)` says.
    pub fn from_lookup(lookup: impl Fn(&str, Duration) -> Duration) -> Self {
        let d = Self::default();
        Self {
            shim_load: lookup(SHIM_LOAD, d.shim_load),
            shim_cleanup: lookup(SHIM_CLEANUP, d.shim_cleanup),
            shim_shutdown: lookup(SHIM_SHUTDOWN, d.shim_shutdown),
            task_state: lookup(TASK_STATE, d.task_state),
            shim_start: lookup(SHIM_START, d.shim_start),
            shim_call: lookup(SHIM_CALL, d.shim_call),
            task_checkpoint: lookup(TASK_CHECKPOINT, d.task_checkpoint),
        }
    }

    /// Every key with its default, for `crated config default`.
    pub fn defaults() -> Vec<(&'static str, Duration)> {
        let d = Self::default();
        vec![
            (SHIM_CLEANUP, d.shim_cleanup),
            (SHIM_LOAD, d.shim_load),
            (SHIM_SHUTDOWN, d.shim_shutdown),
            (TASK_STATE, d.task_state),
            (SHIM_START, d.shim_start),
            (SHIM_CALL, d.shim_call),
            (TASK_CHECKPOINT, d.task_checkpoint),
        ]
    }
}
