//! Giving back the memory a call used, once the shim is idle again.
//!
//! A shim lives as long as its container and is idle nearly all of that
//! time, one per container: what it keeps resident after its few calls is
//! paid fifty times on a node running fifty. Two things stay resident
//! after a call until asked for:
//!
//! - **Freed heap.** glibc keeps the pages of freed blocks below its
//!   heap's top (a create parses the whole spec and its options, then
//!   frees them). An idle shim's heap: 80 KiB resident, 64 KiB trimmed.
//! - **The main thread's stack.** A create or start runs the task's whole
//!   future on it for a moment (tokio builds a spawned task's cell, future
//!   inside, on the stack before it boxes it): 40 KiB of stack touched
//!   once, resident for the container's life, where the idle shim needs a
//!   few. The pages below the frame that releases them hold nothing live
//!   (nothing lives below the stack pointer), so they go back to the
//!   kernel; the next call that goes as deep gets fresh zeroed pages.
//!
//! The release waits a little after the call so the reply's buffers are
//! free too, and one serves a burst of calls (a create and the start right
//! after it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a call the release waits.
const DELAY: Duration = Duration::from_millis(100);

/// A release is scheduled and has not run yet.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Releases the freed heap and the unused stack [`DELAY`] from now, unless
/// a release is already due. Call from within the shim's runtime.
pub fn release_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(DELAY).await;
        PENDING.store(false, Ordering::Release);
        release_stack_below_here();
        crated_core::allocator::trim();
    });
}

/// Returns to the kernel the pages of the main thread's stack below the
/// page under this function's frame; how many bytes. Nothing on another
/// thread (its stack is not the `[stack]` mapping) or where the mapping
/// cannot be read.
#[inline(never)]
fn release_stack_below_here() -> usize {
    let Some((low, high)) = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| main_stack(&maps))
    else {
        return 0;
    };
    let here = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(here)) as usize;
    if !(low..high).contains(&here) {
        return 0;
    }
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // A whole page of room below this frame for the madvise call itself.
    let end = (here & !(page - 1)).saturating_sub(page);
    if end <= low {
        return 0;
    }
    // SAFETY: [low, end) lies in this thread's own stack mapping, below
    // its stack pointer: no frame, and so no reference, lives there; the
    // kernel hands zeroed pages to whatever grows into it later.
    let rc = unsafe { libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED) };
    if rc == 0 {
        end - low
    } else {
        0
    }
}

/// The bounds of the main thread's stack in `/proc/self/maps` text.
fn main_stack(maps: &str) -> Option<(usize, usize)> {
    let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
    let range = line.split_whitespace().next()?;
    let (low, high) = range.split_once('-')?;
    Some((
        usize::from_str_radix(low, 16).ok()?,
        usize::from_str_radix(high, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_stack_is_read_from_the_maps() {
        let maps = "\
00400000-00406000 r--p 00000000 08:01 123  /usr/bin/containerd-shim-runc-v2
0d610000-0d631000 rw-p 00000000 00:00 0                                  [heap]
7fffaf84f000-7fffaf870000 rw-p 00000000 00:00 0                          [stack]
7fffaf8f0000-7fffaf8f4000 r--p 00000000 00:00 0                          [vvar]
";
        assert_eq!(main_stack(maps), Some((0x7fffaf84f000, 0x7fffaf870000)));
        assert_eq!(
            main_stack("0d610000-0d631000 rw-p 0 00:00 0 [heap]\n"),
            None
        );
    }

    /// A test runs on a thread of its own, whose stack is not `[stack]`:
    /// nothing of it is released.
    #[test]
    fn another_threads_stack_is_left_alone() {
        let released = std::thread::spawn(release_stack_below_here).join().unwrap();
        assert_eq!(released, 0);
    }
}
