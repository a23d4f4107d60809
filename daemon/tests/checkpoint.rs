//! Checkpoint and restore across two daemons, as across two machines: a
//! counter is checkpointed on one crated (criu through runc and our
//! shim), the checkpoint image pushed to a loopback registry, pulled by a
//! second crated with its own root and state, and restored there; the
//! counter goes on from where it was.
//!
//! criu must be able to run here: where it cannot, each test says why and
//! is skipped (never silently green).

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ok, workspace_bin, Daemon};
use crated_testimages::{push, Registry};

/// A daemon whose shims find `criu` first on their PATH.
fn daemon_with(criu: &Path) -> Daemon {
    let mut daemon = Daemon::prepare("", "");
    let mut path = OsString::from(criu.parent().unwrap());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    daemon.spawn_env(&[], &[("PATH", &path)]);
    daemon
}

/// Kills and removes what a namespace of a daemon holds.
struct Cleanup<'a>(&'a Daemon, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ctr = workspace_bin("ctr");
        let ns = self.1.as_str();
        if self.0.is_running() {
            let tasks = self.0.ctr(&ctr, &["-n", ns, "tasks", "ls", "-q"]);
            for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
                let _ = self
                    .0
                    .ctr(&ctr, &["-n", ns, "tasks", "kill", "-s", "SIGKILL", id]);
                let _ = self.0.ctr(&ctr, &["-n", ns, "tasks", "rm", "-f", id]);
            }
            let containers = self.0.ctr(&ctr, &["-n", ns, "containers", "ls", "-q"]);
            for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
                let _ = self.0.ctr(&ctr, &["-n", ns, "containers", "rm", id]);
            }
        }
        let _ = std::fs::remove_dir(format!("/run/containerd/runc/{ns}"));
    }
}

/// The container's rootfs as its shim mounted it (the bundle's `rootfs`).
fn rootfs(daemon: &Daemon, ns: &str, id: &str) -> PathBuf {
    daemon
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns)
        .join(id)
        .join("rootfs")
}

fn count(daemon: &Daemon, ns: &str, id: &str) -> Option<u64> {
    std::fs::read_to_string(rootfs(daemon, ns, id).join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Waits until `id`'s counter is at least `at_least`; returns it.
fn wait_count(daemon: &Daemon, ns: &str, id: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = count(daemon, ns, id).filter(|n| *n >= at_least) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the counter of {id} never reached {at_least} (at {:?}):\n{}",
            count(daemon, ns, id),
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_pushed_pulled_and_restored_elsewhere_goes_on_counting() {
    let criu = match crated_testimages::criu() {
        Ok(criu) => criu,
        Err(why) => {
            eprintln!("SKIPPED: criu cannot run here: {why}");
            return;
        }
    };
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let busybox = format!("{}/test/busybox:latest", registry.host);
    push(&busybox, &crated_testimages::busybox().unwrap())
        .await
        .unwrap();
    let checkpoint = format!("{}/test/counter-checkpoint:1", registry.host);
    let ctr = workspace_bin("ctr");
    let (criu_a, criu_b) = (criu.clone(), criu.clone());
    let first = tokio::task::spawn_blocking(move || daemon_with(&criu_a))
        .await
        .unwrap();
    let second = tokio::task::spawn_blocking(move || daemon_with(&criu_b))
        .await
        .unwrap();
    // Two machines: two namespaces too, as runc's state dir is per host.
    let (ns_a, ns_b) = (
        format!("ckpt-a-{}", std::process::id()),
        format!("ckpt-b-{}", std::process::id()),
    );
    let _clean_a = Cleanup(&first, ns_a.clone());
    let _clean_b = Cleanup(&second, ns_b.clone());
    let on = |daemon: &Daemon, ns: &str, args: &[&str]| {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        daemon.ctr(&ctr, &full)
    };

    ok(on(
        &first,
        &ns_a,
        &["images", "pull", "--plain-http", &busybox],
    ));
    ok(on(
        &first,
        &ns_a,
        &["run", "-d", &busybox, "counter", "sh", "-c", COUNTER],
    ));
    wait_count(&first, &ns_a, "counter", 5);

    // Paused, the count on disk is the count in memory.
    ok(on(&first, &ns_a, &["tasks", "pause", "counter"]));
    let at_checkpoint = count(&first, &ns_a, "counter").unwrap();
    let dumped = on(
        &first,
        &ns_a,
        &[
            "containers",
            "checkpoint",
            "--task",
            "--image",
            "--rw",
            "counter",
            &checkpoint,
        ],
    );
    if !dumped.status.success() {
        let log = rootfs(&first, &ns_a, "counter").with_file_name("criu-dump.log");
        panic!(
            "checkpoint failed: {}\ncriu's log:\n{}",
            String::from_utf8_lossy(&dumped.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // The checkpoint left it as it was: paused, then running on resume.
    let tasks = ok(on(&first, &ns_a, &["tasks", "ls"]));
    assert!(tasks.contains("PAUSED"), "{tasks}");
    ok(on(&first, &ns_a, &["tasks", "resume", "counter"]));
    wait_count(&first, &ns_a, "counter", at_checkpoint + 2);
    ok(on(
        &first,
        &ns_a,
        &["images", "push", "--plain-http", &checkpoint],
    ));

    // The second daemon has only the image and the checkpoint's name.
    ok(on(
        &second,
        &ns_b,
        &["images", "pull", "--plain-http", &busybox],
    ));
    ok(on(
        &second,
        &ns_b,
        &[
            "containers",
            "restore",
            "--live",
            "--rw",
            "counter",
            &checkpoint,
        ],
    ));
    let first_seen = wait_count(&second, &ns_b, "counter", at_checkpoint);
    let later = wait_count(&second, &ns_b, "counter", first_seen + 3);
    assert!(
        first_seen >= at_checkpoint && later > first_seen,
        "restored counter went {first_seen} → {later}; it was at {at_checkpoint}"
    );
    let tasks = ok(on(&second, &ns_b, &["tasks", "ls"]));
    assert!(tasks.contains("RUNNING"), "{tasks}");
    drop(registry);
}
