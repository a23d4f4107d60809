//! Giving memory back once a burst of work is over.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena, and
//! a tokio runtime spreads work over worker and blocking threads: after a
//! pull, a thousand container creations or fifty task starts, tens of MiB
//! of freed memory stay resident in half a dozen arenas although only a few
//! MiB are live (measured with `cargo xtask bench run`: 36 MiB anonymous at
//! idle, 15 MiB after one `malloc_trim`). Go's runtime, which containerd
//! runs on, returns such memory in the background; this does the same for
//! crated: a thread looks every few seconds at the process's anonymous
//! memory and the arenas' free bytes and, once either has grown past a
//! threshold, asks glibc to release what the arenas hold free. Nothing live is
//! dropped, so no cache that makes the daemon fast is lost; the cost is a
//! page fault when the memory is used again.
//!
//! ```no_run
//! // At start, once: a thread that looks every 5 s and trims when the
//! // anonymous memory or the free bytes have grown 4 MiB since the last
//! // trim, and once more when a burst of work is over.
//! let _trimmer = crated_daemon::memory::spawn_trimmer(crated_daemon::memory::TrimPolicy {
//!     interval: std::time::Duration::from_secs(5),
//!     threshold: 4 << 20,
//!     when_quiet: true,
//! });
//! ```

use std::time::Duration;

/// Free bytes the allocator holds in its arenas (not counting the top
/// chunk it keeps anyway), or `None` where the allocator cannot say.
pub fn free_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks.saturating_sub(info.keepcost) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

pub use crated_core::allocator::trim;

/// The process's resident anonymous memory, in bytes (`/proc/self/statm`:
/// resident pages less the file-backed ones).
pub fn anon_resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    Some(resident.saturating_sub(shared) * page)
}

/// Caps the allocator's arenas at `arenas` (glibc's default is eight per
/// core). Every thread that allocates gets an arena of its own while the
/// cap allows, and memory freed in one is reused only by the threads on
/// it: after a burst the long-lived blocks left scattered over many arenas
/// pin far more pages than they fill. Measured with `cargo xtask bench
/// run` after its workload, trimmed: 16–22 MiB resident with the default,
/// 11–12 MiB with two arenas, 9–10 MiB with one. Two keep the async
/// workers off one lock: with the per-thread caches off (see
/// [`tune_allocator`]) every allocation takes its arena's. Call
/// before the threads start; whether the cap was taken.
pub fn limit_arenas(arenas: i32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt sets one allocator parameter.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = arenas;
        false
    }
}

pub use crated_core::allocator::TUNABLES;

/// Re-executes the daemon with glibc's allocator tuned for a long-lived
/// process that works in bursts ([`TUNABLES`], which say why), and
/// returns in the re-executed process only. glibc reads these only from
/// the environment at start, hence the exec.
///
/// Nothing happens when `GLIBC_TUNABLES` is already set (the operator's
/// tuning stands) or where the allocator is not glibc's; a failed exec
/// is reported and the daemon goes on as it is. The re-executed process
/// drops the variable again, so shims, runc and CNI plugins start with
/// the environment the daemon was given. Call first thing, while the
/// process has one thread.
pub fn tune_allocator() {
    use std::os::unix::process::CommandExt as _;
    if let Some(name) = crated_core::allocator::forget_tuning() {
        // Exec'd through /proc/self/exe, the kernel named the process
        // "exe": give it back the name it started with, which `ps`,
        // `pidof` and `pkill` go by. A failure leaves "exe", nothing
        // worse.
        let _ = std::fs::write("/proc/self/comm", name.as_encoded_bytes());
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "crated".into());
    let name = std::fs::read_to_string("/proc/self/comm")
        .map(|comm| comm.trim_end_matches('\n').to_owned())
        .unwrap_or_else(|_| "crated".to_owned());
    // The running binary itself, even if its path was replaced since.
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0(arg0).args(args);
    if !crated_core::allocator::tune(&mut command, &name) {
        return;
    }
    let error = command.exec();
    eprintln!("crated: cannot re-execute with glibc's allocator tuned ({error}); going on untuned");
}

/// What the trimmer compares between looks.
#[derive(Clone, Copy)]
struct Marks {
    /// Resident anonymous bytes.
    anon: u64,
    /// Bytes free in the arenas (resident or already given back).
    free: u64,
}

impl Marks {
    fn now() -> Option<Self> {
        Some(Self {
            anon: anon_resident()?,
            free: free_bytes()?,
        })
    }

    /// Whether either figure grew `by` past `self`.
    fn grown(self, now: Self, by: u64) -> bool {
        now.anon >= self.anon.saturating_add(by) || now.free >= self.free.saturating_add(by)
    }

    fn min(self, now: Self) -> Self {
        Self {
            anon: self.anon.min(now.anon),
            free: self.free.min(now.free),
        }
    }
}

/// When the trimmer gives memory back.
#[derive(Clone, Copy, Debug)]
pub struct TrimPolicy {
    /// How often it looks.
    pub interval: Duration,
    /// Growth, since the last trim, of the anonymous memory or of the
    /// arenas' free bytes that makes it trim at its next look.
    pub threshold: u64,
    /// Whether it also trims once the daemon has gone quiet after some
    /// work (neither figure moved more than [`QUIET`] since the look
    /// before, and one did since the last trim): what the tail of a burst
    /// of work freed, too little for `threshold` or left in the arenas'
    /// top chunks, still goes back once the work is over. Once per burst.
    pub when_quiet: bool,
}

/// How little the figures may move between two looks for the daemon to
/// count as quiet.
pub const QUIET: u64 = 64 << 10;

/// Stops its trimmer thread when dropped (at its next look).
#[must_use = "the trimmer stops when this is dropped"]
pub struct Trimmer(Option<std::sync::Arc<std::sync::atomic::AtomicBool>>);

impl Drop for Trimmer {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Starts the thread that looks every `policy.interval` and trims once,
/// since the last trim, the process's anonymous memory has grown
/// `policy.threshold` bytes (pages faulted in, by new or reused
/// allocations) or the arenas' free bytes have (memory freed, which a trim
/// during a busy stretch could not give back yet) — or, with
/// `policy.when_quiet`, once work since the last trim is over. Each mark is the
/// lowest seen since the trim, so memory reused and freed between two
/// looks still counts. A plain thread, not a task: a trim walks every
/// arena under its lock and should not hold an async worker meanwhile.
/// Where the allocator is not glibc's, no thread starts.
pub fn spawn_trimmer(policy: TrimPolicy) -> Trimmer {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(mut mark) = Marks::now() else {
        return Trimmer(None);
    };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let mut previous = mark;
    let mut worked = false;
    let spawned = std::thread::Builder::new()
        .name("crated-trim".into())
        // It allocates next to nothing; the default 2 MiB is waste.
        .stack_size(64 * 1024)
        .spawn(move || loop {
            std::thread::sleep(policy.interval);
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let Some(now) = Marks::now() else {
                continue;
            };
            let quiet = now.anon.abs_diff(previous.anon) <= QUIET
                && now.free.abs_diff(previous.free) <= QUIET;
            previous = now;
            worked |= !quiet;
            let settled = policy.when_quiet && quiet && worked;
            if mark.grown(now, policy.threshold) || settled {
                let released = trim();
                mark = Marks::now().unwrap_or(now);
                previous = mark;
                worked = false;
                tracing::trace!(
                    before = now.anon,
                    after = mark.anon,
                    released,
                    settled,
                    "trimmed the allocator's arenas"
                );
            } else {
                mark = mark.min(now);
            }
        });
    match spawned {
        Ok(_) => Trimmer(Some(stop)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the memory trimmer; freed memory stays with the allocator");
            Trimmer(None)
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_anon_kib() -> u64 {
        anon_resident().expect("/proc/self/statm") / 1024
    }

    /// Allocates 64 MiB in small blocks (below the mmap threshold, so
    /// they live in an arena) on a thread, written so they are resident,
    /// and frees all but the last: that one sits at the top of the arena,
    /// so glibc's own trim on free (which only gives back the top) cannot
    /// do the work. Returns it, to be dropped after the check.
    fn churn() -> Option<Vec<u8>> {
        std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            for i in 0..16 * 1024 {
                blocks.push(vec![i as u8; 4000]);
            }
            let top = blocks.pop();
            drop(blocks);
            top
        })
        .join()
        .expect("allocating thread")
    }

    /// What a thread frees stays resident in its arena until a trim; a
    /// trim gives it back, and so does the trimmer thread unasked. One
    /// test, so that the trimmer cannot act during the first half.
    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        let anon_before = rss_anon_kib();
        let top = churn();
        let anon_freed = rss_anon_kib();
        assert!(
            free_bytes().unwrap_or(0) >= 32 << 20,
            "the freed blocks should be free in the arena ({:?} bytes free)",
            free_bytes()
        );
        assert!(
            anon_freed >= anon_before + 32 * 1024,
            "freed memory should still be resident before a trim: {anon_before} KiB before, {anon_freed} KiB after"
        );
        assert!(trim(), "a trim with 64 MiB free should release memory");
        let anon_trimmed = rss_anon_kib();
        assert!(
            anon_trimmed + 32 * 1024 < anon_freed,
            "anonymous memory: {anon_before} KiB before, {anon_freed} KiB after the free, {anon_trimmed} KiB after the trim"
        );
        drop(top);

        // Without a trim the churn would leave 64 MiB more resident; the
        // trimmer (whenever it looks) brings it back near where it was:
        // first one that trims only past its threshold, then one that
        // trims only once things are quiet.
        for (threshold, when_quiet) in [(8 << 20, false), (u64::MAX / 2, true)] {
            let trimmer = spawn_trimmer(TrimPolicy {
                interval: Duration::from_millis(50),
                threshold,
                when_quiet,
            });
            let anon_before = rss_anon_kib();
            let top = churn();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut now = rss_anon_kib();
            while now >= anon_before + 16 * 1024 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                now = rss_anon_kib();
            }
            assert!(
                now < anon_before + 16 * 1024,
                "the trimmer (threshold {threshold}, when quiet {when_quiet}) left {now} KiB resident, {anon_before} KiB before the churn"
            );
            drop(top);
            drop(trimmer);
            // Its last look is over: the next trimmer works alone.
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}
