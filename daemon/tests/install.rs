//! `ctr install`: binary images into the opt directory, which the daemon
//! puts first on its shims' PATH. The scenario of the issue: with runc
//! hidden from PATH, `ctr run` fails naming runc; a FROM-scratch image of
//! `/bin/runc` is fetched and installed; `ctr run` then works.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{debian_ctr, fails, ok, registry_with, workspace_bin, Daemon, NamespaceCleanup};

/// A daemon whose opt directory is `<dir>/opt` and whose PATH (so its
/// shims') holds no runc.
fn daemon_without_runc() -> (Daemon, PathBuf) {
    // The test config points the opt plugin at `<dir>/opt`.
    let mut daemon = Daemon::prepare("", "");
    let opt = daemon.dir.path().join("opt");
    // Debian's runc package puts it in /usr/sbin and links it from
    // /usr/bin: the PATH is a directory of /usr/bin's commands but runc.
    let tools = daemon.dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for entry in std::fs::read_dir("/usr/bin").unwrap() {
        let name = entry.unwrap().file_name();
        if name != "runc" {
            std::os::unix::fs::symlink(Path::new("/usr/bin").join(&name), tools.join(&name))
                .unwrap();
        }
    }
    daemon.spawn_env(&[], &[("PATH", tools.as_os_str())]);
    (daemon, opt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_runc_runs_containers_when_none_is_on_path() {
    let (_registry, host) = registry_with(vec![
        ("test/busybox:latest", crated_testimages::busybox().unwrap()),
        ("tools/runc:1", crated_testimages::runc().unwrap()),
    ])
    .await;
    let (daemon, opt) = tokio::task::spawn_blocking(daemon_without_runc)
        .await
        .unwrap();
    let ns = format!("install-{}", std::process::id());
    let _cleanup = NamespaceCleanup(&daemon, ns.clone());
    let ctr = workspace_bin("ctr");
    let busybox = format!("{host}/test/busybox:latest");
    let runc = format!("{host}/tools/runc:1");
    let ctr_ns = |args: &[&str]| {
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        daemon.ctr(&ctr, &full)
    };
    ok(ctr_ns(&["images", "pull", "--plain-http", &busybox]));

    let err = fails(ctr_ns(&["run", "--rm", &busybox, "before", "echo", "ok"]));
    assert!(err.contains("runc not found"), "{err}");
    // The failed run left nothing behind.
    assert_eq!(ok(ctr_ns(&["tasks", "ls", "-q"])).trim(), "");

    ok(ctr_ns(&["content", "fetch", "--plain-http", &runc]));
    ok(ctr_ns(&["install", &runc]));
    let installed = opt.join("bin/runc");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read("/usr/sbin/runc").unwrap()
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    // Only the file itself: no temporary files left beside it.
    let names: Vec<_> = std::fs::read_dir(opt.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["runc"]);

    let out = ok(ctr_ns(&["run", "--rm", &busybox, "after", "echo", "ok"]));
    assert_eq!(out, "ok\n");
    // The installed image is an ordinary image.
    let images = ok(ctr_ns(&["images", "ls", "-q"]));
    assert!(images.lines().any(|l| l == runc), "{images}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_refuses_to_overwrite_unless_replace_with_both_ctrs() {
    let (_registry, host) =
        registry_with(vec![("tools/runc:1", crated_testimages::runc().unwrap())]).await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let runc = format!("{host}/tools/runc:1");
    ok(daemon.ctr(
        &workspace_bin("ctr"),
        &["content", "fetch", "--plain-http", &runc],
    ));
    let opt = daemon.dir.path().join("elsewhere");
    let existing = opt.join("bin/runc");
    std::fs::create_dir_all(existing.parent().unwrap()).unwrap();
    for ctr in [workspace_bin("ctr"), debian_ctr()] {
        std::fs::write(&existing, b"precious").unwrap();
        let path = opt.display().to_string();
        let err = fails(daemon.ctr(&ctr, &["install", "--path", &path, &runc]));
        assert!(
            err.contains("cannot replace") && err.contains("runc"),
            "{}: {err}",
            ctr.display()
        );
        assert_eq!(
            std::fs::read(&existing).unwrap(),
            b"precious",
            "{}",
            ctr.display()
        );
        let names: Vec<_> = std::fs::read_dir(opt.join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["runc"], "{}", ctr.display());

        ok(daemon.ctr(&ctr, &["install", "--replace", "--path", &path, &runc]));
        assert_eq!(
            std::fs::read(&existing).unwrap(),
            std::fs::read("/usr/sbin/runc").unwrap(),
            "{}",
            ctr.display()
        );
    }
    // Without --path, Debian's ctr finds our opt directory through the
    // introspection service.
    let opt = daemon.dir.path().join("opt");
    assert!(!opt.join("bin/runc").exists());
    ok(daemon.ctr(&debian_ctr(), &["install", &runc]));
    assert_eq!(
        std::fs::read(opt.join("bin/runc")).unwrap(),
        std::fs::read("/usr/sbin/runc").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_binary_image_writes_nothing_outside_the_install_path() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("planted");
    let (_registry, host) = registry_with(vec![(
        "tools/hostile:1",
        crated_testimages::hostile_install(&marker).unwrap(),
    )])
    .await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let reference = format!("{host}/tools/hostile:1");
    ok(daemon.ctr(
        &workspace_bin("ctr"),
        &["content", "fetch", "--plain-http", &reference],
    ));
    let passwd = std::fs::read("/etc/passwd").unwrap();
    for (i, ctr) in [workspace_bin("ctr"), debian_ctr()].into_iter().enumerate() {
        let dest = daemon.dir.path().join(format!("dest{i}"));
        let out = daemon.ctr(
            &ctr,
            &[
                "install",
                "--libs",
                "--path",
                &dest.display().to_string(),
                &reference,
            ],
        );
        // Debian's ctr refuses the layer's links outright; ours installs
        // what may be installed. Neither writes outside.
        assert!(
            !marker.exists(),
            "{}: wrote {}",
            ctr.display(),
            marker.display()
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
        if i == 0 {
            ok(out);
            let mut tree = Vec::new();
            for dir in ["bin", "lib"] {
                if let Ok(entries) = std::fs::read_dir(dest.join(dir)) {
                    for e in entries {
                        tree.push(format!(
                            "{dir}/{}",
                            e.unwrap().file_name().to_string_lossy()
                        ));
                    }
                }
            }
            let mut top: Vec<_> = std::fs::read_dir(&dest)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            top.sort();
            assert_eq!(top, ["bin"]);
            // `bin/ok` of the first layer went with the `bin` the second
            // replaced; the file "through" the symlink lands in our bin.
            assert_eq!(tree, ["bin/planted"]);
            assert!(std::fs::symlink_metadata(dest.join("bin/planted"))
                .unwrap()
                .is_file());
        }
    }
}
