//! Blocking work called from async code.

/// Runs `f`, which waits on the disk or a process (a database flush, a
/// lock another flush holds, an unmount retried while a mount is busy) or
/// computes for long, without stalling an async worker: on a multi-thread
/// tokio runtime the worker first hands its other tasks to another thread
/// (`block_in_place`), so one slow disk does not stop every RPC. Anywhere
/// else (a current-thread runtime, a plain or blocking-pool thread) `f`
/// just runs.
///
/// ```
/// let n = crated_core::blocking::off_worker(|| 6 * 7);
/// assert_eq!(n, 42);
/// ```
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
