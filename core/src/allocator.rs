//! glibc's allocator, tuned for processes that work in bursts and then
//! idle for a long time: the daemon and every shim.
//!
//! glibc reads its tunables from `GLIBC_TUNABLES` only when a process
//! starts, so a process is tuned by the one that executes it: the daemon
//! re-executes itself, a shim's `start` gives them to the long-lived shim
//! it spawns anyway. The tuned process then drops the variable again
//! ([`forget_tuning`]), so what *it* starts — runc, hooks, CNI plugins,
//! shims — gets the environment the operator gave.
//!
//! ```no_run
//! // In the process that spawns the long-lived one:
//! let mut command = std::process::Command::new("/proc/self/exe");
//! crated_core::allocator::tune(&mut command, "my-daemon");
//! // First thing in the spawned process, while it has one thread:
//! if let Some(name) = crated_core::allocator::forget_tuning() {
//!     eprintln!("started tuned by {name:?}");
//! }
//! ```

use std::ffi::OsString;
use std::process::Command;

/// The tunables: no per-thread cache of freed blocks, and blocks of
/// 128 KiB and more always mapped on their own.
///
/// - **No per-thread caches (tcache).** A thread keeps up to seven freed
///   blocks of every small size for itself, out of reach of
///   [`trim`]; after a burst those of long-lived threads pin pages that
///   would otherwise go back. Daemon, 1,000 blobs and containers created
///   and removed, 15 s idle: 9.8–15.8 MiB anonymous with the caches,
///   7.2–8.1 MiB without. An idle shim's heap: 100 KiB resident with
///   them, 80 KiB without, 64 KiB trimmed. The cost is the arena lock on
///   small allocations.
/// - **A fixed mapping threshold.** By default glibc raises the size from
///   which a block gets a mapping of its own each time such a block is
///   freed (up to 32 MiB), so after the first large buffer every later one
///   is carved from an arena, pushes its top up, and the small long-lived
///   blocks allocated meanwhile keep the pages in between from going back.
///   Fixed at 128 KiB (glibc's starting value): daemon peak 18–20 → 10–13
///   MiB, idle after 6.6–7.1 → 6.2–6.7 MiB.
pub const TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=131072";

/// Marks a process started with [`TUNABLES`] by [`tune`], and carries
/// what its starter wanted it to know (the daemon: its process name).
const TUNED_MARK: &str = "CRATED_MALLOC_TUNED";

/// Starts `command` with [`TUNABLES`] and the mark that carries `note`;
/// whether it will. Nothing is set where the operator set
/// `GLIBC_TUNABLES` (their tuning stands, and is inherited as given) or
/// where the allocator is not glibc's.
pub fn tune(command: &mut Command, note: &str) -> bool {
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return false;
    }
    command
        .env("GLIBC_TUNABLES", TUNABLES)
        .env(TUNED_MARK, note);
    true
}

/// In a process [`tune`] started: removes the tunables and the mark from
/// its environment, so the processes it starts inherit neither, and
/// returns the mark's note; `None` in any other process (the operator's
/// own `GLIBC_TUNABLES` stays). Call first thing, while the process has
/// one thread: nothing may read the environment meanwhile.
pub fn forget_tuning() -> Option<OsString> {
    let note = std::env::var_os(TUNED_MARK)?;
    std::env::remove_var(TUNED_MARK);
    std::env::remove_var("GLIBC_TUNABLES");
    Some(note)
}

/// Returns the free pages of every arena to the kernel; whether any were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes each arena's lock itself; it only
        // releases memory no allocation holds.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tunables are set as glibc spells them: every one a
    /// `glibc.malloc.` name with a number.
    #[test]
    fn the_tunables_are_glibc_names_with_numbers() {
        for tunable in TUNABLES.split(':') {
            let (name, value) = tunable.split_once('=').expect("name=value");
            assert!(name.starts_with("glibc.malloc."), "{tunable}");
            assert!(value.parse::<u64>().is_ok(), "{tunable}");
        }
    }

    /// A command tuned here carries the tunables and the note, and
    /// nothing when the operator set their own.
    #[test]
    fn a_tuned_command_carries_the_tunables_and_the_note() {
        let mut command = Command::new("true");
        let expected = std::env::var_os("GLIBC_TUNABLES").is_none();
        assert_eq!(tune(&mut command, "crated"), expected);
        let envs: Vec<_> = command.get_envs().collect();
        if expected {
            assert!(envs.contains(&(
                std::ffi::OsStr::new("GLIBC_TUNABLES"),
                Some(std::ffi::OsStr::new(TUNABLES))
            )));
            assert!(envs.contains(&(
                std::ffi::OsStr::new(TUNED_MARK),
                Some(std::ffi::OsStr::new("crated"))
            )));
        } else {
            assert!(envs.is_empty());
        }
    }
}
