//! OOM events: the kernel's OOM killer acting in the container's cgroup is
//! published as `/tasks/oom`, as containerd's shim does — on cgroup v1
//! through `memory.oom_control` and an eventfd registered in
//! `cgroup.event_control`, on v2 by watching `oom_kill` in `memory.events`.

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;

/// Calls `notify` each time the cgroup at `cgroups_path` (cgroupfs form)
/// has a process OOM-killed, until the cgroup goes away.
pub fn watch(cgroups_path: &str, notify: impl Fn() + Send + 'static) {
    if cgroups_path.is_empty() || cgroups_path.contains(':') {
        return;
    }
    let rel = cgroups_path.trim_start_matches('/').to_owned();
    let root = PathBuf::from("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let events = root.join(&rel).join("memory.events");
        std::thread::spawn(move || {
            use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
            let count = |text: &str| {
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(0)
            };
            let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC) else {
                return;
            };
            if inotify
                .add_watch(&events, AddWatchFlags::IN_MODIFY)
                .is_err()
            {
                return;
            }
            let mut seen = std::fs::read_to_string(&events)
                .map(|t| count(&t))
                .unwrap_or(0);
            // Blocks until the kernel changes memory.events; the watch goes
            // (IN_IGNORED) when the cgroup is removed.
            while let Ok(batch) = inotify.read_events() {
                if batch
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return;
                }
                let Ok(text) = std::fs::read_to_string(&events) else {
                    return;
                };
                let now = count(&text);
                if now > seen {
                    seen = now;
                    notify();
                }
            }
        });
        return;
    }
    let dir = root.join("memory").join(&rel);
    let Ok(control) = std::fs::File::open(dir.join("memory.oom_control")) else {
        return;
    };
    // SAFETY: eventfd takes no pointers; a negative return is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return;
    }
    // SAFETY: `raw` is a new descriptor we own.
    let event = unsafe { OwnedFd::from_raw_fd(raw) };
    let registration = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
    if std::fs::write(dir.join("cgroup.event_control"), registration).is_err() {
        return;
    }
    std::thread::spawn(move || {
        let _control = control;
        let mut event = std::fs::File::from(event);
        let mut buf = [0u8; 8];
        while event.read_exact(&mut buf).is_ok() {
            // The eventfd also fires when the cgroup is removed.
            if !dir.exists() {
                return;
            }
            notify();
        }
    });
}
