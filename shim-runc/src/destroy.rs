//! Deleting a stopped container without a second runc.
//!
//! Once a container's init has exited, `runc delete` does three things:
//! it removes the container's cgroups, runs the spec's poststop hooks and
//! removes its directory under runc's root. As a process of its own that
//! costs 6–8 ms of every container's removal (a Go runtime coming up and
//! the state loaded) for a few `rmdir`s, so the shim does them itself when
//! the state asks for nothing more:
//!
//! - cgroups of runc's cgroupfs driver (systemd's are a unit runc stops
//!   through D-Bus), each a directory under `/sys/fs/cgroup`;
//! - no poststop hook;
//! - no Intel RDT group, not rootless;
//! - a PID namespace of the container's own: the kernel killed every
//!   process in it with the init (in a shared one runc kills what is left
//!   in the cgroup first).
//!
//! The state is runc's `state.json`, read as JSON and checked field by
//! field: a file another runtime wrote, or a field that is missing or
//! unexpected, leaves the delete to the runtime binary, which says what is
//! wrong in its own words. Like runc, cgroups that stay busy after a few
//! tries are logged and the delete still succeeds.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::CGROUP_ROOT;

/// runc's record of a container, in its directory under the root.
const STATE: &str = "state.json";

/// Rounds of removal for cgroups still busy: processes killed with the
/// init may not have been reaped yet. runc tries five times, sleeping 10,
/// 20, 40 and 80 ms between.
const ROUNDS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// How a delete went.
#[derive(Debug, PartialEq, Eq)]
pub enum Destroy {
    /// The cgroups and runc's directory of the container are gone.
    Done,
    /// Not for this path: the runtime binary's `delete` should run.
    ByRuntime,
}

/// Removes what `runc delete` would for the container whose directory
/// under runc's root is `dir`, its init known to have exited (see the
/// module's docs for when that is left to runc).
pub async fn destroy(dir: &Path) -> Destroy {
    let Ok(state) = std::fs::read(dir.join(STATE)) else {
        return Destroy::ByRuntime;
    };
    let Some(cgroups) = plain_cgroups(&state) else {
        return Destroy::ByRuntime;
    };
    let busy = remove_cgroups(cgroups).await;
    if !busy.is_empty() {
        log!(
            "shim: cgroups of {} still busy after {ROUNDS} tries, left: {busy:?}",
            dir.display()
        );
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log!(
                "shim: remove {}: {e}; deleting with the runtime",
                dir.display()
            );
            Destroy::ByRuntime
        }
        _ => Destroy::Done,
    }
}

/// The cgroup directories of a container whose state (runc's
/// `state.json`) asks for nothing but their removal, or `None`.
fn plain_cgroups(state: &[u8]) -> Option<Vec<PathBuf>> {
    let state: Value = serde_json::from_slice(state).ok()?;
    // Fields every runc since 1.0 writes: their absence means another
    // runtime's file.
    state.get("init_process_pid")?.as_i64()?;
    let config = state.get("config")?;
    let on = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool) == Some(true);
    let cgroups = config.get("cgroups")?;
    if on(&state, "rootless")
        || on(config, "rootless_euid")
        || on(config, "rootless_cgroups")
        || on(cgroups, "Rootless")
    {
        return None;
    }
    let rdt = state.get("intel_rdt_path").and_then(Value::as_str);
    if rdt.is_some_and(|p| !p.is_empty()) || config.get("intel_rdt").is_some_and(|v| !v.is_null()) {
        return None;
    }
    if cgroups.get("Systemd")?.as_bool()? {
        return None;
    }
    let poststop = config
        .get("Hooks")
        .and_then(|hooks| hooks.get("poststop"))
        .and_then(Value::as_array);
    if poststop.is_some_and(|hooks| !hooks.is_empty()) {
        return None;
    }
    let own_pid_namespace = config.get("namespaces")?.as_array()?.iter().any(|ns| {
        ns.get("type").and_then(Value::as_str) == Some("NEWPID")
            && ns
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
    });
    if !own_pid_namespace {
        return None;
    }
    let mut paths = state
        .get("cgroup_paths")?
        .as_object()?
        .values()
        .map(|path| under_cgroupfs(path.as_str()?))
        .collect::<Option<Vec<PathBuf>>>()?;
    // cgroup v1 names co-mounted controllers (cpu and cpuacct) apart.
    paths.sort();
    paths.dedup();
    (!paths.is_empty()).then_some(paths)
}

/// `path` if it names a directory strictly beneath the cgroup mounts,
/// with no `..` on the way.
fn under_cgroupfs(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let rest = path.strip_prefix(CGROUP_ROOT).ok()?;
    let mut parts = rest.components().peekable();
    parts.peek()?;
    parts
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| path.to_owned())
}

/// Removes each cgroup and the cgroups beneath it, in rounds; those still
/// there after the last.
async fn remove_cgroups(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut pause = FIRST_PAUSE;
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        paths.retain(|path| {
            remove_tree(path);
            !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
        });
        if paths.is_empty() {
            break;
        }
    }
    paths
}

/// `rmdir` of `root` and of every directory beneath it, deepest first (a
/// cgroup with children cannot go). Iterative: a container may nest its
/// own cgroups deeper than the shim's small stack would recurse.
fn remove_tree(root: &Path) {
    if std::fs::remove_dir(root).is_ok() {
        return;
    }
    let mut pending = vec![root.to_owned()];
    let mut found = Vec::new();
    while let Some(dir) = pending.pop() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(entry.path());
                }
            }
        }
        found.push(dir);
    }
    // Every directory was found after its parent.
    for dir in found.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The parts of a `state.json` runc 1.1.5 wrote for a container on
    /// this machine's hybrid cgroups (v1 controllers, v2 beside them) that
    /// decide the path.
    fn state() -> Value {
        serde_json::json!({
            "id": "t1",
            "init_process_pid": 4242,
            "init_process_start": 1234,
            "created": "2026-12-06T03:09:29.028151875Z",
            "rootless": false,
            "cgroup_paths": {
                "": "/sys/fs/cgroup/unified/default/t1",
                "name=systemd": "/sys/fs/cgroup/systemd/default/t1",
                "blkio": "/sys/fs/cgroup/blkio/default/t1",
                "cpu": "/sys/fs/cgroup/cpu,cpuacct/default/t1",
                "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/default/t1",
                "memory": "/sys/fs/cgroup/memory/default/t1"
            },
            "namespace_paths": {"NEWPID": "/proc/4242/ns/pid"},
            "external_descriptors": ["/dev/null", "pipe:[1]", "pipe:[2]"],
            "intel_rdt_path": "",
            "config": {
                "rootfs": "/run/containerd/io.containerd.runtime.v2.task/default/t1/rootfs",
                "namespaces": [
                    {"type": "NEWPID", "path": ""},
                    {"type": "NEWNS", "path": ""},
                    {"type": "NEWNET", "path": ""}
                ],
                "cgroups": {"path": "/default/t1", "Systemd": false, "Rootless": false},
                "Hooks": {"prestart": null, "poststop": null}
            }
        })
    }

    fn plain(state: &Value) -> Option<Vec<PathBuf>> {
        plain_cgroups(&serde_json::to_vec(state).unwrap())
    }

    #[test]
    fn a_plain_state_gives_each_cgroup_once() {
        let paths = plain(&state()).unwrap();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/blkio/default/t1",
                "/sys/fs/cgroup/cpu,cpuacct/default/t1",
                "/sys/fs/cgroup/memory/default/t1",
                "/sys/fs/cgroup/systemd/default/t1",
                "/sys/fs/cgroup/unified/default/t1",
            ]
            .map(PathBuf::from)
        );
        // cgroup v2: one path under the empty name.
        let mut v2 = state();
        v2["cgroup_paths"] = serde_json::json!({"": "/sys/fs/cgroup/default/t1"});
        assert_eq!(
            plain(&v2).unwrap(),
            [PathBuf::from("/sys/fs/cgroup/default/t1")]
        );
    }

    #[test]
    fn anything_beyond_rmdir_is_left_to_runc() {
        type Change = fn(&mut Value);
        let cases: [(&str, Change); 14] = [
            ("systemd cgroups", |s| {
                s["config"]["cgroups"]["Systemd"] = true.into()
            }),
            ("a poststop hook", |s| {
                s["config"]["Hooks"]["poststop"] = serde_json::json!([{"path": "/bin/true"}])
            }),
            ("a shared PID namespace", |s| {
                s["config"]["namespaces"][0]["path"] = "/proc/1/ns/pid".into()
            }),
            ("the host's PID namespace", |s| {
                s["config"]["namespaces"] = serde_json::json!([{"type": "NEWNS", "path": ""}])
            }),
            ("an Intel RDT group", |s| {
                s["intel_rdt_path"] = "/sys/fs/resctrl/t1".into()
            }),
            ("Intel RDT configured", |s| {
                s["config"]["intel_rdt"] = serde_json::json!({"l3_cache_schema": "L3:0=f"})
            }),
            ("rootless", |s| {
                s["config"]["rootless_cgroups"] = true.into()
            }),
            ("rootless cgroups", |s| {
                s["config"]["cgroups"]["Rootless"] = true.into()
            }),
            ("a cgroup outside the mounts", |s| {
                s["cgroup_paths"]["memory"] = "/tmp/memory/t1".into()
            }),
            ("a cgroup climbing out", |s| {
                s["cgroup_paths"]["memory"] = "/sys/fs/cgroup/memory/../../../etc".into()
            }),
            ("the cgroup root itself", |s| {
                s["cgroup_paths"] = serde_json::json!({"": "/sys/fs/cgroup"})
            }),
            ("no cgroups", |s| s["cgroup_paths"] = serde_json::json!({})),
            ("another runtime's file", |s| {
                s.as_object_mut().unwrap().remove("init_process_pid");
            }),
            ("no cgroup driver named", |s| {
                s["config"]["cgroups"]
                    .as_object_mut()
                    .unwrap()
                    .remove("Systemd");
            }),
        ];
        for (what, change) in cases {
            let mut s = state();
            change(&mut s);
            assert_eq!(plain(&s), None, "{what}");
        }
        assert_eq!(plain_cgroups(b"{not json"), None);
    }

    #[tokio::test]
    async fn nested_directories_go_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("b/c/d")).unwrap();
        std::fs::create_dir_all(a.join("e")).unwrap();
        let f = dir.path().join("f");
        std::fs::create_dir_all(&f).unwrap();
        // A file stands for a cgroup's busy interface: the directory holding
        // it stays, as a cgroup with processes does, and so do its parents.
        std::fs::write(f.join("busy"), b"").unwrap();
        let left = remove_cgroups(vec![a.clone(), f.clone()]).await;
        assert!(!a.exists());
        assert_eq!(left, [f]);
    }
}
