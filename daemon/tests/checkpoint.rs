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

use common::{ok, registry_with_busybox, workspace_bin, Daemon, NamespaceCleanup};

/// A daemon whose shims find `criu` first on their PATH.
fn daemon_with(criu: &Path) -> Daemon {
    let mut daemon = Daemon::prepare("", "");
    let mut path = OsString::from(criu.parent().unwrap());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    daemon.spawn_env(&[], &[("PATH", &path)]);
    daemon
}

/// A criu that runs here; else None, with the reason printed (the test
/// then skips, saying so).
fn criu_or_skip() -> Option<PathBuf> {
    crated_testimages::criu()
        .map_err(|why| eprintln!("SKIPPED: criu cannot run here: {why}"))
        .ok()
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

/// The whole journey with `ctr` (ours or containerd's) on both sides:
/// run a counter on one daemon, pause it, checkpoint it (task, image and
/// rw layer) into `<registry>/test/<name>:1`, push; on a second daemon
/// pull the image, fetch the checkpoint and restore it; the count goes on
/// from where it was.
async fn journey(ctr: PathBuf, name: &str) {
    let Some(criu) = criu_or_skip() else { return };
    let (registry, busybox) = registry_with_busybox().await;
    let checkpoint = format!("{}/test/{name}:1", registry.host);
    let (criu_a, criu_b) = (criu.clone(), criu.clone());
    let first = tokio::task::spawn_blocking(move || daemon_with(&criu_a))
        .await
        .unwrap();
    let second = tokio::task::spawn_blocking(move || daemon_with(&criu_b))
        .await
        .unwrap();
    // Two machines: two namespaces too, as runc's state dir is per host.
    let (ns_a, ns_b) = (
        format!("{name}-a-{}", std::process::id()),
        format!("{name}-b-{}", std::process::id()),
    );
    let _clean_a = NamespaceCleanup(&first, ns_a.clone());
    let _clean_b = NamespaceCleanup(&second, ns_b.clone());
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

    // The dump is taken after this: a restored counter goes on from at
    // least here (one started afresh would count from 1).
    let at_checkpoint = count(&first, &ns_a, "counter").unwrap();
    let args = [
        "containers",
        "checkpoint",
        "--task",
        "--image",
        "--rw",
        "counter",
        &checkpoint,
    ];
    let dumped = on(&first, &ns_a, &args);
    if !dumped.status.success() {
        let log = rootfs(&first, &ns_a, "counter").with_file_name("criu-dump.log");
        panic!(
            "checkpoint failed: {}\ncriu's log:\n{}",
            String::from_utf8_lossy(&dumped.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // The scratch copy of the dump (memory of the task) does not stay.
    let scratch = first
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task/.checkpoints");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} kept the dump",
            scratch.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ctr paused it for the dump and resumed it: it goes on here too.
    let tasks = ok(on(&first, &ns_a, &["tasks", "ls"]));
    assert!(tasks.contains("RUNNING"), "{tasks}");
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
    // Ours pulls it as any image (the image inside is unpacked);
    // containerd's ctr fetches its content.
    let fetch = if ctr == workspace_bin("ctr") {
        "images pull"
    } else {
        "content fetch"
    };
    let mut args: Vec<&str> = fetch.split(' ').collect();
    args.extend(["--plain-http", &checkpoint]);
    ok(on(&second, &ns_b, &args));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_ctr_checkpoints_pushes_pulls_and_restores_elsewhere() {
    journey(workspace_bin("ctr"), "ours").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerds_ctr_checkpoints_pushes_pulls_and_restores_elsewhere() {
    journey(common::debian_ctr(), "containerds").await;
}

/// `ctr tasks checkpoint --exit`: the task is dumped and stops; the
/// checkpoint image it names starts a new container where it left off
/// (our `ctr run --checkpoint`: containerd 1.6's ctr has no such flag).
async fn exit_and_run_from(ctr: PathBuf, name: &str) {
    let Some(criu) = criu_or_skip() else { return };
    let (_registry, busybox) = registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(move || daemon_with(&criu))
        .await
        .unwrap();
    let ns = format!("{name}-{}", std::process::id());
    let _clean = NamespaceCleanup(&daemon, ns.clone());
    let on = |args: &[&str]| {
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        daemon.ctr(&ctr, &full)
    };
    ok(on(&["images", "pull", "--plain-http", &busybox]));
    ok(on(&["run", "-d", &busybox, "counter", "sh", "-c", COUNTER]));
    let before = wait_count(&daemon, &ns, "counter", 5);
    let printed = ok(on(&["tasks", "checkpoint", "--exit", "counter"]));
    let checkpoint = printed.trim();
    assert!(
        checkpoint.starts_with("containerd.io/checkpoint/counter:"),
        "{printed}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(on(&["tasks", "ls"])).contains("STOPPED") {
        assert!(
            Instant::now() < deadline,
            "the task did not exit after its dump"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_at = count(&daemon, &ns, "counter").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&daemon, &ns, "counter"),
        Some(stopped_at),
        "still counting"
    );
    // runc dropped the container when criu stopped it: the task still
    // goes away as any stopped task (and its shim with it).
    ok(on(&["tasks", "rm", "counter"]));
    ok(on(&["containers", "rm", "counter"]));

    let ours = workspace_bin("ctr");
    let run = [
        "-n",
        &ns,
        "run",
        "-d",
        "--checkpoint",
        checkpoint,
        &busybox,
        "again",
        "sh",
    ];
    ok(daemon.ctr(&ours, &run));
    let resumed = wait_count(&daemon, &ns, "again", before);
    let later = wait_count(&daemon, &ns, "again", resumed + 3);
    assert!(
        resumed >= before && later > resumed,
        "{before} → {resumed} → {later}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_ctr_checkpoints_with_exit_and_runs_from_the_checkpoint() {
    exit_and_run_from(workspace_bin("ctr"), "exit-ours").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerds_ctr_checkpoints_with_exit_and_runs_from_the_checkpoint() {
    exit_and_run_from(common::debian_ctr(), "exit-containerds").await;
}

/// What needs no criu: a checkpoint of a container's image and rw layer
/// (no task), and the clear errors of asking for what is not there; a
/// failed restore leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_without_a_task_and_their_errors() {
    let (_registry, busybox) = registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ns = format!("ckpt-errors-{}", std::process::id());
    let _clean = NamespaceCleanup(&daemon, ns.clone());
    let ctr = workspace_bin("ctr");
    let on = |args: &[&str]| {
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        daemon.ctr(&ctr, &full)
    };
    ok(on(&["images", "pull", "--plain-http", &busybox]));
    ok(on(&["containers", "create", &busybox, "idle"]));

    let err = common::fails(on(&[
        "containers",
        "checkpoint",
        "--task",
        "idle",
        "ckpt:task",
    ]));
    assert!(err.contains("has no task to checkpoint"), "{err}");
    assert!(!ok(on(&["images", "ls", "-q"])).contains("ckpt:task"));

    ok(on(&[
        "containers",
        "checkpoint",
        "--image",
        "--rw",
        "idle",
        "ckpt:files",
    ]));
    let listed = ok(on(&["images", "ls"]));
    assert!(listed.contains("ckpt:files"), "{listed}");
    // A checkpoint never replaces an image: not its own, not the one the
    // container runs.
    let before = ok(on(&["images", "ls"]));
    for taken in ["ckpt:files", busybox.as_str()] {
        let err = common::fails(on(&["containers", "checkpoint", "--image", "idle", taken]));
        assert!(err.contains("already exists"), "{err}\n{}", daemon.logs());
    }
    assert_eq!(ok(on(&["images", "ls"])), before);

    let err = common::fails(on(&[
        "containers",
        "restore",
        "--live",
        "copy",
        "ckpt:files",
    ]));
    assert!(err.contains("without --task"), "{err}");
    let containers = ok(on(&["containers", "ls", "-q"]));
    assert_eq!(containers.split_whitespace().collect::<Vec<_>>(), ["idle"]);
    let snapshots = ok(on(&["snapshots", "ls"]));
    assert!(!snapshots.contains("copy"), "{snapshots}");

    let err = common::fails(on(&["containers", "restore", "copy", "nothing:here"]));
    assert!(err.contains("nothing:here"), "{err}");
}
