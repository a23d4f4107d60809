//! Giving back the memory a call freed, once the shim is idle again.
//!
//! A shim lives as long as its container and is idle nearly all of that
//! time, one per container: what it keeps resident after its few calls is
//! paid fifty times on a node running fifty. glibc keeps the pages of
//! freed blocks below its heap's top (a create parses the whole spec and
//! its options, then frees them) until asked. An idle shim's heap was 80
//! KiB resident of which 16 KiB went back on a trim. The trim waits a
//! little after the call so the reply's buffers are free too, and one
//! trim serves a burst of calls (a create and the start right after it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a call the trim waits.
const DELAY: Duration = Duration::from_millis(100);

/// A trim is scheduled and has not run yet.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Trims the allocator [`DELAY`] from now, unless a trim is already due.
/// Call from within the shim's runtime.
pub fn trim_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(DELAY).await;
        PENDING.store(false, Ordering::Release);
        crated_core::allocator::trim();
    });
}
