//! `crated fsck` against a daemon stopped by SIGKILL with a container
//! still running: clean at first (no false alarm for a live bundle, its
//! rootfs mount or a fresh image), then six injected inconsistencies —
//! each the mark of a crash or a full disk — found without changing
//! anything, repaired with `--repair`, and clean again after.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::owned::OwnedDaemon;
use common::{ok, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_and_repairs_what_a_crash_leaves() {
    let (_registry, image) = common::registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let mut g = OwnedDaemon {
        daemon,
        ns: format!("fsck-{}", std::process::id()),
    };
    ok(g.ctr(&["images", "pull", "--plain-http", &image]));
    ok(g.ctr(&["run", "-d", &image, "live", "sh", "-c", "sleep 1000"]));
    ok(g.ctr(&["snapshots", "prepare", "orphan", ""]));

    let (code, out) = g.fsck(false);
    assert_eq!(code, 8, "fsck ran beside a live daemon:\n{out}");
    assert!(out.contains("stop the daemon"), "{out}");

    g.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    let (code, out) = g.fsck(false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean"), "{out}");

    // The injections.
    let root = g.daemon.dir.path().join("root");
    let state = g.daemon.dir.path().join("state");
    let blobs = root.join("io.containerd.content.v1.content/blobs/sha256");
    // 1. A recorded blob lost (the smallest: a config or manifest).
    let lost: PathBuf = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let lost_digest = format!("sha256:{}", lost.file_name().unwrap().to_string_lossy());
    std::fs::remove_file(&lost).unwrap();
    // 2. A blob nothing records.
    let stray = crated_core::digest::Digest::sha256(b"stray").to_string();
    let stray_hex = stray.trim_start_matches("sha256:").to_owned();
    std::fs::write(blobs.join(&stray_hex), b"stray").unwrap();
    // 3. Snapshot directories a crash left mid-prepare and mid-remove.
    let snapshots = root.join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    std::fs::create_dir_all(snapshots.join("new-9999/fs/etc")).unwrap();
    std::fs::create_dir_all(snapshots.join("rm-9998/fs")).unwrap();
    // 4. A bundle of no container, 5. with a mount in it.
    let ghost = state
        .join("io.containerd.runtime.v2.task")
        .join(&g.ns)
        .join("ghost");
    std::fs::create_dir_all(ghost.join("rootfs")).unwrap();
    std::fs::write(ghost.join("config.json"), b"{}").unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(ghost.join("rootfs"))
        .status()
        .unwrap();
    assert!(mounted.success());
    // 6. A snapshot whose namespace record was lost.
    {
        let db = crated_metadata::Db::open(&root).unwrap();
        db.forget_snapshot(&g.ns, "overlayfs", "orphan").unwrap();
    }

    let (code, out) = g.fsck(false);
    assert_eq!(code, 4, "{out}");
    let expected = [
        format!("records blob {lost_digest}, whose file is missing"),
        format!("blob sha256:{stray_hex} (5 bytes"),
        "new-9999 belongs to no overlayfs snapshot (left by an interrupted prepare)".to_owned(),
        "rm-9998 belongs to no overlayfs snapshot (left by an interrupted remove)".to_owned(),
        format!(
            "tmpfs mounted at {} belongs to no container",
            ghost.join("rootfs").display()
        ),
        format!("task directory {} belongs to no container", ghost.display()),
        "is recorded in no namespace".to_owned(),
        "`crated fsck --repair` fixes 7 of them".to_owned(),
    ];
    for line in &expected {
        assert!(out.contains(line.as_str()), "missing {line:?} in:\n{out}");
    }
    // Only a report: nothing changed.
    assert!(blobs.join(&stray_hex).exists());
    assert!(snapshots.join("new-9999").exists());
    assert!(crated_core::mount::is_mountpoint(&ghost.join("rootfs")).unwrap());

    let (code, out) = g.fsck(true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("7 repaired, 0 left"), "{out}");
    assert!(!blobs.join(&stray_hex).exists());
    assert!(!snapshots.join("new-9999").exists() && !snapshots.join("rm-9998").exists());
    assert!(!ghost.exists(), "{out}");

    let (code, out) = g.fsck(false);
    assert_eq!(code, 0, "after the repair:\n{out}");

    // The daemon starts on the repaired root and still runs the live
    // container; the orphan snapshot is gone for good.
    g.daemon.spawn(&[]);
    let tasks = ok(g.ctr(&["tasks", "ls"]));
    assert!(
        tasks.contains("live") && tasks.contains("RUNNING"),
        "{tasks}"
    );
    let listed = ok(g.ctr(&["snapshots", "ls"]));
    assert!(!listed.contains("orphan"), "{listed}");
}
