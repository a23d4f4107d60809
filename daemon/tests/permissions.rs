//! What another local user can reach of a daemon's root and state while a
//! container runs, against containerd 1.6 with the same container: nothing
//! crated exposes may go beyond what containerd exposes (the
//! CVE-2021-41103 class: bundles, rootfs, content, snapshots, metadata).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use common::{debian_ctr, ok, Containerd, Daemon};

/// Every path under `base` that a user who is neither owner nor group can
/// reach (each directory above it searchable by others) and then read,
/// list, search or write, with its mode. Symlinks are not followed.
fn exposed(base: &Path) -> BTreeMap<String, u32> {
    fn walk(base: &Path, path: &Path, out: &mut BTreeMap<String, u32>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            return;
        }
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        if mode & 0o007 != 0 {
            out.insert(if rel.is_empty() { ".".into() } else { rel }, mode);
        }
        if meta.is_dir() && mode & 0o001 != 0 {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(base, &entry.path(), out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(base, base, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_reaches_no_more_than_of_containerd() {
    let (_registry, image) = common::registry_with_busybox().await;
    let ns = format!("perm-{}", std::process::id());
    let crated = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let containerd = tokio::task::spawn_blocking(Containerd::start)
        .await
        .unwrap();
    let _cleanup = common::NamespaceCleanup(&crated, ns.clone());
    // The tests' temp dirs are private; open them as /var/lib and /run
    // are, so that only the daemons' own modes stand in the way.
    for dir in [crated.dir.path(), containerd.dir.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // runc's state is machine-wide: the two daemons' ids must not meet.
    let cns = format!("{ns}-containerd");
    let run = |ctr: &dyn Fn(&[&str]) -> std::process::Output, ns: &str| {
        ok(ctr(&["-n", ns, "images", "pull", "--plain-http", &image]));
        ok(ctr(&[
            "-n",
            ns,
            "run",
            "-d",
            &image,
            "exposed",
            "sh",
            "-c",
            "sleep 1000",
        ]));
    };
    run(&|args| crated.ctr(&debian_ctr(), args), &ns);
    run(&|args| containerd.ctr(args), &cns);

    // A path's shape: what differs between the two runs (namespaces)
    // written alike.
    let shape = |path: &str| path.replace(&cns, "<ns>").replace(&ns, "<ns>");
    let mut report = String::new();
    let mut seen = BTreeMap::new();
    for (name, base) in [
        ("crated", crated.dir.path()),
        ("containerd", containerd.dir.path()),
    ] {
        for sub in ["root", "state"] {
            let exposed = exposed(&base.join(sub));
            report.push_str(&format!("{name} {sub}:\n"));
            for (path, mode) in &exposed {
                report.push_str(&format!("  {mode:04o} {path}\n"));
            }
            let shapes: BTreeMap<String, u32> = exposed
                .into_iter()
                .map(|(path, mode)| (shape(&path), mode & 0o007))
                .collect();
            seen.insert((name, sub), shapes);
        }
    }
    // Not vacuous: containerd's state is searchable by others (0711).
    assert!(
        !seen[&("containerd", "state")].is_empty(),
        "containerd exposes nothing; the comparison means nothing:\n{report}"
    );
    for sub in ["root", "state"] {
        let ours = &seen[&("crated", sub)];
        let theirs = &seen[&("containerd", sub)];
        for (path, bits) in ours {
            let allowed = theirs.get(path).copied().unwrap_or(0);
            assert_eq!(
                bits & !allowed,
                0,
                "{sub}/{path}: others get {bits:o}, containerd allows {allowed:o}\n{report}"
            );
        }
    }

    for (ctr, ns) in [
        (
            &(|args: &[&str]| crated.ctr(&debian_ctr(), args))
                as &dyn Fn(&[&str]) -> std::process::Output,
            &ns,
        ),
        (&|args: &[&str]| containerd.ctr(args), &cns),
    ] {
        let _ = ctr(&["-n", ns, "tasks", "kill", "-s", "SIGKILL", "exposed"]);
        std::thread::sleep(Duration::from_millis(500));
        let _ = ctr(&["-n", ns, "tasks", "rm", "-f", "exposed"]);
        let _ = ctr(&["-n", ns, "containers", "rm", "exposed"]);
    }
    // runc's state dir and cgroups of containerd's namespace (ours go with
    // the guard).
    common::forget_namespace(&cns);
}
