//! OOM events: the kernel's OOM killer acting in the container's cgroup is
//! published as `/tasks/oom`, as containerd's shim does — on cgroup v1
//! through `memory.oom_control` and an eventfd registered in
//! `cgroup.event_control`, on v2 by watching `oom_kill` in `memory.events`.
//! Either is a task on the shim's runtime waiting on one descriptor, not a
//! thread per container.

use std::os::fd::{AsFd, AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;

use crate::cgroup::Cgroup;

/// Calls `notify` each time `cgroup` has a process OOM-killed, until the
/// cgroup goes away. Call on the shim's runtime.
pub fn watch(cgroup: &Cgroup, notify: impl Fn() + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(dir) = cgroup.dir(Path::new(crate::CGROUP_ROOT), "memory") else {
        return;
    };
    if let Cgroup::Unified(_) = cgroup {
        runtime.spawn(watch_events(dir.join("memory.events"), notify));
    } else if let Some(event) = register_v1(&dir) {
        runtime.spawn(watch_v1(event, notify));
    }
}

/// The `oom_kill` count of a cgroup v2 `memory.events`.
fn oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// A descriptor the runtime can wait on (nix's `Inotify` is `AsFd` only).
struct Raw<T>(T);

impl<T: AsFd> AsRawFd for Raw<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl crated_core::child::OwnsFd for Raw<Inotify> {}

/// cgroup v2: `notify` for each rise of `oom_kill` in the `memory.events`
/// file at `events`, until the file goes (the cgroup removed: the watch
/// ends with IN_IGNORED).
async fn watch_events(events: PathBuf, notify: impl Fn()) {
    let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) else {
        return;
    };
    if inotify
        .add_watch(&events, AddWatchFlags::IN_MODIFY)
        .is_err()
    {
        return;
    }
    let Ok(inotify) = crated_core::child::registered(Raw(inotify), Interest::READABLE) else {
        return;
    };
    let mut seen = std::fs::read_to_string(&events)
        .map(|t| oom_kills(&t))
        .unwrap_or(0);
    loop {
        let Ok(mut ready) = inotify.readable().await else {
            return;
        };
        let batch = match ready.get_inner().0.read_events() {
            Ok(batch) => batch,
            Err(nix::errno::Errno::EAGAIN) => {
                ready.clear_ready();
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if batch
            .iter()
            .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
        {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&events) else {
            return;
        };
        let now = oom_kills(&text);
        if now > seen {
            seen = now;
            notify();
        }
    }
}

/// cgroup v1: an eventfd registered for the OOM notifications of the
/// memory cgroup at `dir`, with the `memory.oom_control` it was
/// registered for (kept open while the eventfd is watched).
fn register_v1(dir: &Path) -> Option<(OwnedFd, std::fs::File, PathBuf)> {
    let control = std::fs::File::open(dir.join("memory.oom_control")).ok()?;
    // SAFETY: eventfd takes no pointers; a negative return is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a new descriptor we own.
    let event = unsafe { OwnedFd::from_raw_fd(raw) };
    let registration = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), registration).ok()?;
    Some((event, control, dir.to_owned()))
}

/// cgroup v1: `notify` for each count the eventfd reads, until the cgroup
/// is removed (which fires the eventfd too).
async fn watch_v1((event, _control, dir): (OwnedFd, std::fs::File, PathBuf), notify: impl Fn()) {
    let Ok(event) = crated_core::child::registered(event, Interest::READABLE) else {
        return;
    };
    loop {
        let Ok(mut ready) = event.readable().await else {
            return;
        };
        let mut count = [0u8; 8];
        match nix::unistd::read(ready.get_inner().as_raw_fd(), &mut count) {
            Ok(_) => {
                if !dir.exists() {
                    return;
                }
                notify();
            }
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// The v2 watcher on a `memory.events` of our own (these hosts run
    /// cgroup v1): each rise of `oom_kill` is one notification, other
    /// changes none, and the watcher ends when the file goes, as it does
    /// with its cgroup.
    #[test]
    fn memory_events_rises_are_notified_until_the_file_goes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("memory.events");
        let text = |kills: u32| format!("low 0\nhigh 0\nmax 3\noom 2\noom_kill {kills}\n");
        std::fs::write(&events, text(1)).expect("write");
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let watcher = rt.spawn(watch_events(events.clone(), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let wait_for = |n: usize| {
            rt.block_on(async {
                for _ in 0..200 {
                    if seen.load(Ordering::SeqCst) >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        // Let the watcher take its first reading.
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0,
            "the count it started with is no OOM"
        );
        std::fs::write(&events, text(1).replace("max 3", "max 4")).expect("write");
        std::fs::write(&events, text(2)).expect("write");
        wait_for(1);
        std::fs::write(&events, text(4)).expect("write");
        wait_for(2);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        std::fs::remove_file(&events).expect("remove");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), watcher)
                .await
                .expect("the watcher outlived its file")
                .expect("watcher task");
        });
    }
}
