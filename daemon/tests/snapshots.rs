//! Snapshots through a live `crated`: the conformance suite over the gRPC
//! proxy for the native and overlayfs snapshotters, and Debian's
//! containerd 1.6 `ctr snapshots` driving a layer chain whose mounts it
//! prints and we perform.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{debian_ctr, fails, ok, rows, Daemon};
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::snapshots::testsuite::Fixture;
use crated_core::snapshots::{Labels, Snapshotter};
use crated_core::Namespace;

/// The suite through a daemon, under a lease as a containerd client works:
/// the collector, which a case's hundreds of writes set off, takes
/// snapshots nothing holds.
async fn through_daemon(snapshotter: &str) -> Fixture {
    through_daemon_with(snapshotter, Daemon::start(), ()).await
}

/// [`through_daemon`] on a given daemon; `guard` is dropped after it.
async fn through_daemon_with(
    snapshotter: &str,
    daemon: Daemon,
    guard: impl std::any::Any + Send,
) -> Fixture {
    let ns = Namespace::new("suite").unwrap();
    let mut request = tonic::Request::new(leases::CreateRequest {
        id: "suite".into(),
        labels: Default::default(),
    });
    crated_api::metadata::set_grpc_namespace(&mut request, &ns);
    leases::leases_client::LeasesClient::new(daemon.channel().await)
        .create(request)
        .await
        .unwrap();
    let proxy = SnapshotsProxy::new(daemon.channel().await, snapshotter, ns).with_lease("suite");
    Fixture::new(Arc::new(proxy), (daemon, guard))
}

mod native {
    use super::*;

    async fn snapshotter() -> Fixture {
        through_daemon("native").await
    }

    crated_core::snapshotter_testsuite!(snapshotter);
}

mod btrfs {
    use super::*;

    /// The daemon's btrfs snapshotter on a loop-mounted btrfs per case.
    async fn snapshotter() -> Fixture {
        let fs = crated_testimages::LoopFs::btrfs(256 << 20).unwrap();
        let daemon = Daemon::start_with(
            "",
            &format!(
                "[plugins.\"io.containerd.snapshotter.v1.btrfs\"]\nroot_path = {:?}\n",
                fs.path()
            ),
        );
        through_daemon_with("btrfs", daemon, fs).await
    }

    crated_core::snapshotter_testsuite!(snapshotter);
}

mod overlayfs {
    use super::*;

    async fn snapshotter() -> Fixture {
        through_daemon("overlayfs").await
    }

    crated_core::snapshotter_testsuite!(snapshotter);
}

const NS: &str = "snaps";

fn ctr_with(bin: &Path, daemon: &Daemon, snapshotter: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec!["-n", NS, "snapshots", "--snapshotter", snapshotter];
    full.extend_from_slice(args);
    daemon.ctr(bin, &full)
}

fn ctr(daemon: &Daemon, snapshotter: &str, args: &[&str]) -> std::process::Output {
    ctr_with(&debian_ctr(), daemon, snapshotter, args)
}

/// Runs the `mount -t … -o …` line `ctr snapshots mounts` prints.
fn mount_printed(line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"mount"), "{line}");
    let out = Command::new("mount").args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umount(target: &Path) {
    let out = Command::new("umount").arg(target).output().unwrap();
    assert!(out.status.success(), "umount {}", target.display());
}

#[test]
fn debian_ctr_builds_a_layer_chain() {
    layer_chain(&debian_ctr());
}

#[test]
fn our_ctr_builds_a_layer_chain() {
    layer_chain(&common::workspace_bin("ctr"));
}

fn layer_chain(bin: &Path) {
    let ctr = |daemon: &Daemon, snapshotter: &str, args: &[&str]| {
        ctr_with(bin, daemon, snapshotter, args)
    };
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let target_str = target.display().to_string();

    for snapshotter in ["native", "overlayfs"] {
        ok(ctr(&daemon, snapshotter, &["prepare", "base-work"]));
        let line = ok(ctr(
            &daemon,
            snapshotter,
            &["mounts", &target_str, "base-work"],
        ));
        mount_printed(line.trim());
        std::fs::write(target.join("hello"), "from the base layer\n").unwrap();
        umount(&target);
        ok(ctr(&daemon, snapshotter, &["commit", "base", "base-work"]));

        ok(ctr(&daemon, snapshotter, &["prepare", "top-work", "base"]));
        let line = ok(ctr(
            &daemon,
            snapshotter,
            &["mounts", &target_str, "top-work"],
        ));
        mount_printed(line.trim());
        assert_eq!(
            std::fs::read_to_string(target.join("hello")).unwrap(),
            "from the base layer\n"
        );
        std::fs::remove_file(target.join("hello")).unwrap();
        std::fs::write(target.join("added"), "x").unwrap();
        umount(&target);
        ok(ctr(&daemon, snapshotter, &["commit", "top", "top-work"]));

        ok(ctr(&daemon, snapshotter, &["view", "look", "top"]));
        // ctr labels what it prepares and commits as a gc root, but not
        // views: the first collection would take this one.
        ok(ctr(
            &daemon,
            snapshotter,
            &["label", "look", "containerd.io/gc.root=test"],
        ));
        let line = ok(ctr(&daemon, snapshotter, &["mounts", &target_str, "look"]));
        mount_printed(line.trim());
        assert!(
            !target.join("hello").exists(),
            "{snapshotter}: deleted in top"
        );
        assert!(target.join("added").exists());
        assert!(
            std::fs::write(target.join("nope"), "x").is_err(),
            "views are read-only"
        );
        umount(&target);

        let table = ok(ctr(&daemon, snapshotter, &["ls"]));
        let mut listed = rows(&table);
        listed.sort();
        assert_eq!(
            listed,
            [
                ["base", "", "Committed"].map(String::from).to_vec(),
                ["look", "top", "View"].map(String::from).to_vec(),
                ["top", "base", "Committed"].map(String::from).to_vec(),
            ]
            .map(|mut r| {
                r.retain(|c| !c.is_empty());
                r
            }),
            "{snapshotter}:\n{table}"
        );
        let info = ok(ctr(&daemon, snapshotter, &["info", "top"]));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["Kind"], "Committed", "{info}");
        assert_eq!(info["Parent"], "base");
        assert!(
            info["Labels"]["containerd.io/gc.root"].is_string(),
            "ctr's prepare label kept: {info}"
        );
        let usage = ok(ctr(&daemon, snapshotter, &["usage", "base"]));
        assert!(usage.starts_with("KEY "), "{usage}");

        let err = fails(ctr(&daemon, snapshotter, &["rm", "base"]));
        assert!(err.contains("children"), "{snapshotter}: {err}");
        let labels = ok(ctr(&daemon, snapshotter, &["label", "top", "team=storage"]));
        assert!(labels.contains("team=storage"), "{labels}");
        let tree = ok(ctr(&daemon, snapshotter, &["tree"]));
        assert!(tree.contains("base") && tree.contains("top"), "{tree}");
    }

    // The same key in two snapshotters is two snapshots; a namespace holding
    // snapshots cannot go; unknown snapshotters are named.
    let err = fails(daemon.ctr(bin, &["namespaces", "rm", NS]));
    assert!(err.contains("must be empty"), "{err}");
    let ns = ok(daemon.ctr(bin, &["namespaces", "ls", "-q"]));
    assert!(ns.lines().any(|l| l == NS), "the namespace stays: {ns}");
    let err = fails(ctr(&daemon, "nosuch", &["ls"]));
    assert!(err.contains("snapshotter not loaded: nosuch"), "{err}");

    for snapshotter in ["native", "overlayfs"] {
        for key in ["look", "top", "base"] {
            ok(ctr(&daemon, snapshotter, &["rm", key]));
        }
        assert_eq!(rows(&ok(ctr(&daemon, snapshotter, &["ls"]))).len(), 0);
    }
    ok(daemon.ctr(bin, &["namespaces", "rm", NS]));
}

/// Both ctrs print the same tables, JSON, trees and mount lines.
#[test]
fn both_ctrs_print_the_same() {
    let daemon = Daemon::start();
    let ours = common::workspace_bin("ctr");
    let same = |args: &[&str]| {
        let theirs = ok(ctr_with(&debian_ctr(), &daemon, "native", args));
        let mine = ok(ctr_with(&ours, &daemon, "native", args));
        assert_eq!(
            mine, theirs,
            "ctr snapshots {args:?}: ours (left), containerd's (right)"
        );
        mine
    };
    ok(ctr(&daemon, "native", &["prepare", "a"]));
    ok(ctr(&daemon, "native", &["commit", "base", "a"]));
    ok(ctr(&daemon, "native", &["prepare", "b", "base"]));
    ok(ctr(&daemon, "native", &["commit", "mid", "b"]));
    ok(ctr(&daemon, "native", &["prepare", "work", "mid"]));
    ok(ctr(&daemon, "native", &["view", "peek", "base"]));
    ok(ctr(
        &daemon,
        "native",
        &["label", "mid", "team=storage", "tier=1"],
    ));
    same(&["ls"]);
    same(&["tree"]);
    same(&["info", "mid"]);
    same(&["info", "work"]);
    same(&["usage", "-b"]);
    same(&["usage", "base", "mid"]);
    same(&["mounts", "/mnt/x", "work"]);
    same(&["mounts", "/mnt/x", "peek"]);
    let theirs = ok(ctr(
        &daemon,
        "native",
        &["prepare", "--mounts", "-t", "/mnt/y", "p2", "mid"],
    ));
    let mine = ok(ctr_with(
        &ours,
        &daemon,
        "native",
        &["prepare", "--mounts", "-t", "/mnt/y", "p3", "mid"],
    ));
    assert_eq!(
        mine.replace("/3/", "/N/").lines().count(),
        theirs.lines().count(),
        "{mine}\n{theirs}"
    );
    assert!(
        mine.starts_with("mount -t bind ") && mine.contains("\"Type\": \"bind\""),
        "{mine}"
    );
    let err = fails(ctr_with(&ours, &daemon, "native", &["rm", "base"]));
    assert!(
        err.contains("failed to remove \"base\"") && err.contains("children"),
        "{err}"
    );
}

/// A snapshotter served standalone on a unix socket by this test, plugged
/// into crated with `[proxy_plugins]` as containerd users plug in theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_plugin_reaches_a_standalone_snapshotter() {
    use crated_api::services::snapshots::{Service, Standalone};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("snapshotter.sock");
    let native_root = dir.path().join("native");
    let native = crated_snapshotter_native::open(&native_root).unwrap();
    let service = Service::new(Arc::new(Standalone(Arc::new(native))));
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );

    let sections = format!("[proxy_plugins.custom]\ntype = \"snapshot\"\naddress = {socket:?}\n");
    let daemon = tokio::task::spawn_blocking(move || Daemon::start_with("", &sections))
        .await
        .unwrap();
    let plugins = ok(daemon.ctr(&debian_ctr(), &["plugins", "ls"]));
    assert!(
        rows(&plugins)
            .iter()
            .any(|r| r[..2] == ["io.containerd.snapshotter.v1", "custom"]
                && r.last().map(String::as_str) == Some("ok")),
        "{plugins}"
    );
    ok(ctr(&daemon, "custom", &["prepare", "through-the-proxy"]));
    let listed = ok(ctr(&daemon, "custom", &["ls"]));
    assert_eq!(rows(&listed)[0][0], "through-the-proxy", "{listed}");
    // The files are the standalone snapshotter's.
    let made: Vec<_> = std::fs::read_dir(native_root.join("snapshots"))
        .unwrap()
        .collect();
    assert_eq!(
        made.len(),
        1,
        "one snapshot directory in the standalone root"
    );
    ok(ctr(&daemon, "custom", &["rm", "through-the-proxy"]));
    // As containerd's: the record goes at once, and the collection that
    // removal schedules takes the snapshot out of the standalone one.
    let listed = ok(ctr(&daemon, "custom", &["ls"]));
    assert!(rows(&listed).is_empty(), "{listed}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(native_root.join("snapshots"))
        .unwrap()
        .count()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the standalone snapshotter still has the removed snapshot's files"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.abort();
}

/// The collector takes snapshots nothing holds — records and files — and
/// keeps those a container, a lease, a `gc.root` label or a child holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_removes_snapshots_nothing_holds() {
    use crated_api::containerd::services::containers::v1 as containers;

    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ns = Namespace::new(NS).unwrap();
    let channel = daemon.channel().await;
    let sn = SnapshotsProxy::new(channel.clone(), "native", ns.clone());
    let debian = debian_ctr();
    let collect = || {
        ok(daemon.ctr(&debian, &["-n", NS, "leases", "create", "--id", "trigger"]));
        ok(daemon.ctr(&debian, &["-n", NS, "leases", "rm", "--sync", "trigger"]));
    };

    sn.prepare("loose", "", Labels::new()).await.unwrap();
    let root = [("containerd.io/gc.root".to_owned(), "yes".to_owned())].into();
    sn.prepare("rooted", "", root).await.unwrap();
    ok(daemon.ctr(&debian, &["-n", NS, "leases", "create", "--id", "hold"]));
    sn.clone()
        .with_lease("hold")
        .prepare("held", "", Labels::new())
        .await
        .unwrap();
    // A container's snapshot keeps its parent chain.
    sn.prepare("l1-work", "", Labels::new()).await.unwrap();
    sn.commit("l1", "l1-work", Labels::new()).await.unwrap();
    sn.prepare("rootfs", "l1", Labels::new()).await.unwrap();
    let mut request = tonic::Request::new(containers::CreateContainerRequest {
        container: Some(containers::Container {
            id: "c".into(),
            runtime: Some(containers::container::Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "native".into(),
            snapshot_key: "rootfs".into(),
            ..Default::default()
        }),
    });
    crated_api::metadata::set_grpc_namespace(&mut request, &ns);
    containers::containers_client::ContainersClient::new(channel.clone())
        .create(request)
        .await
        .unwrap();
    let files = || {
        std::fs::read_dir(
            daemon
                .dir
                .path()
                .join("root/io.containerd.snapshotter.v1.native/snapshots"),
        )
        .unwrap()
        .count()
    };
    assert_eq!(files(), 5);

    collect();
    assert!(sn.stat("loose").await.unwrap_err().is_not_found());
    for kept in ["rooted", "held", "rootfs", "l1"] {
        sn.stat(kept)
            .await
            .unwrap_or_else(|e| panic!("{kept}: {e}"));
    }
    assert_eq!(files(), 4, "the loose snapshot's files went too");

    // Without its lease and its container, the rest goes.
    ok(daemon.ctr(&debian, &["-n", NS, "leases", "rm", "hold"]));
    ok(daemon.ctr(
        &debian,
        &["-n", NS, "containers", "rm", "--keep-snapshot", "c"],
    ));
    collect();
    let left: Vec<String> = sn
        .walk(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, ["rooted"]);
    assert_eq!(files(), 1);
}

/// The names of the entries of a (gzipped, if it is) layer.
fn layer_names(layer: &[u8]) -> Vec<String> {
    layer_times(layer)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// Each entry of a layer with its date.
fn layer_times(layer: &[u8]) -> Vec<(String, u64)> {
    let tar: Box<dyn std::io::Read> = if layer.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(layer))
    } else {
        Box::new(layer)
    };
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            (path, e.header().mtime().unwrap())
        })
        .collect()
}

#[test]
fn both_ctrs_snapshots_diff_make_layers_through_the_diff_service() {
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let target_str = target.display().to_string();
    for snapshotter in ["native", "overlayfs"] {
        ok(ctr(&daemon, snapshotter, &["prepare", "base-work"]));
        mount_printed(
            ok(ctr(
                &daemon,
                snapshotter,
                &["mounts", &target_str, "base-work"],
            ))
            .trim(),
        );
        std::fs::create_dir(target.join("etc")).unwrap();
        std::fs::write(target.join("etc/hello"), "hello\n").unwrap();
        std::fs::write(target.join("etc/keep"), "keep\n").unwrap();
        umount(&target);
        ok(ctr(&daemon, snapshotter, &["commit", "base", "base-work"]));
        ok(ctr(&daemon, snapshotter, &["prepare", "top-work", "base"]));
        mount_printed(
            ok(ctr(
                &daemon,
                snapshotter,
                &["mounts", &target_str, "top-work"],
            ))
            .trim(),
        );
        std::fs::remove_file(target.join("etc/hello")).unwrap();
        std::fs::write(target.join("added"), "new\n").unwrap();
        umount(&target);

        // Both ctrs, through the same diff service: the same layer.
        for bin in [debian_ctr(), common::workspace_bin("ctr")] {
            let diff = |extra: &[&str]| {
                let mut args = vec!["-n", NS, "snapshots", "--snapshotter", snapshotter, "diff"];
                args.extend_from_slice(extra);
                daemon.ctr(&bin, &args)
            };
            // Against its parent (the default), gzipped (the default).
            let layer = diff(&["top-work"]);
            assert!(
                layer.status.success(),
                "{}",
                String::from_utf8_lossy(&layer.stderr)
            );
            assert_eq!(
                layer_names(&layer.stdout),
                ["added", "etc", "etc/.wh.hello"],
                "{snapshotter}"
            );
            // Of the base against nothing, uncompressed.
            let plain = diff(&[
                "--media-type",
                "application/vnd.oci.image.layer.v1.tar",
                "base",
            ]);
            assert!(
                plain.status.success(),
                "{}",
                String::from_utf8_lossy(&plain.stderr)
            );
            assert!(!plain.stdout.starts_with(&[0x1f, 0x8b]));
            assert_eq!(
                layer_names(&plain.stdout),
                ["etc", "etc/hello", "etc/keep"],
                "{snapshotter}"
            );
            // Two snapshots: base as lower, top-work as upper.
            let two = diff(&["base", "top-work"]);
            assert_eq!(
                two.stdout, layer.stdout,
                "{snapshotter}: two-snapshot form differs"
            );
            let err = fails(diff(&["--media-type", "application/x-nope", "top-work"]));
            assert!(err.contains("unsupported diff media type"), "{err}");
        }
        // SOURCE_DATE_EPOCH, which containerd 1.7's ctr (and ours) sends
        // with the diff: every entry here is newer, so all are dated then,
        // whiteout included.
        for bin in [common::ctr17(), common::workspace_bin("ctr")] {
            let layer = daemon.ctr_with_env(
                &bin,
                &[("SOURCE_DATE_EPOCH", "1000000000")],
                &[
                    "-n",
                    NS,
                    "snapshots",
                    "--snapshotter",
                    snapshotter,
                    "diff",
                    "top-work",
                ],
            );
            assert!(
                layer.status.success(),
                "{}",
                String::from_utf8_lossy(&layer.stderr)
            );
            let times = layer_times(&layer.stdout);
            assert_eq!(times.len(), 3, "{times:?}");
            assert!(
                times.iter().all(|(_, t)| *t == 1_000_000_000),
                "{bin:?}: {times:?}"
            );
        }
        for key in ["top-work", "base"] {
            ok(ctr(&daemon, snapshotter, &["rm", key]));
        }
    }
}
