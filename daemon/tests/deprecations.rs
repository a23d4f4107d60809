//! containerd 1.7's deprecation warnings for what a client runs: a task
//! of the `io.containerd.runc.v1` runtime (Debian's shim of that name)
//! runs, and containerd 1.7's ctr then lists that runtime as deprecated.

#![allow(clippy::unwrap_used)]

mod common;

use common::{debian_ctr, ok, registry_with_busybox, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_the_runc_v1_runtime_is_listed_as_deprecated() {
    let ctr17 = crated_testimages::cri_tool("ctr-1.7")
        .expect("ctr-1.7 is not built: run `cargo xtask deps`");
    let debian = debian_ctr();
    let (_registry, reference) = registry_with_busybox().await;
    let daemon = Daemon::start();
    ok(daemon.ctr(&debian, &["images", "pull", "--plain-http", &reference]));
    assert_eq!(ok(daemon.ctr(&ctr17, &["deprecations", "list"])).trim(), "");

    let out = ok(daemon.ctr(
        &debian,
        &[
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v1",
            &reference,
            "old-shim",
            "echo",
            "through runc.v1",
        ],
    ));
    assert_eq!(out.trim(), "through runc.v1");
    let listed = ok(daemon.ctr(&ctr17, &["deprecations", "list"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with("io.containerd.deprecation/runtime-runc-v1"))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"));
    assert!(row.contains("io.containerd.runc.v2"), "{row}");
}
