//! Pulling from Debian's docker-registry on loopback into crated, with
//! Debian's containerd 1.6 ctr and with ours, onto overlayfs, native and
//! btrfs (a loop-mounted image): images check, the unpacked rootfs,
//! whiteouts, hostile layers, multi-platform indexes, push and pull back.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use common::{debian_ctr, fails, ok, rows, workspace_bin, Daemon};
use crated_testimages::{push, LoopFs, Registry};

const SNAPSHOTTERS: [&str; 3] = ["overlayfs", "native", "btrfs"];

struct Fixture {
    registry: Registry,
    daemon: Daemon,
    _btrfs: LoopFs,
}

/// A registry, and a daemon whose btrfs snapshotter lives on a loop-mounted
/// btrfs (declared after the daemon so it is unmounted after it stops).
async fn fixture() -> Fixture {
    tokio::task::spawn_blocking(|| {
        let registry = Registry::start(None).unwrap();
        let btrfs = LoopFs::btrfs(512 << 20).unwrap();
        let daemon = Daemon::start_with(
            "",
            &format!(
                "[plugins.\"io.containerd.snapshotter.v1.btrfs\"]\nroot_path = {:?}\n",
                btrfs.path()
            ),
        );
        Fixture {
            registry,
            daemon,
            _btrfs: btrfs,
        }
    })
    .await
    .unwrap()
}

fn ctrs() -> [(&'static str, PathBuf); 2] {
    [("debian", debian_ctr()), ("crated", workspace_bin("ctr"))]
}

/// Mounts `image`'s rootfs read-only with `ctr images mount`, runs `check`
/// on it, and unmounts (removing the view) even if `check` panics.
fn with_rootfs(
    daemon: &Daemon,
    ctr: &Path,
    snapshotter: &str,
    image: &str,
    check: impl FnOnce(&Path),
) {
    let target = tempfile::tempdir().unwrap();
    let t = target.path().display().to_string();
    ok(daemon.ctr(
        ctr,
        &["images", "mount", "--snapshotter", snapshotter, image, &t],
    ));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(target.path())));
    // `--rm` takes the view away, so that a later `images rm --sync`
    // collects the image's snapshots too and the next pull starts afresh.
    ok(daemon.ctr(
        ctr,
        &[
            "images",
            "unmount",
            "--rm",
            "--snapshotter",
            snapshotter,
            &t,
        ],
    ));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// `path → dir | file:<content> | link:<target>` of a tree.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link:{}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, "dir".to_owned());
                walk(root, &path, out);
            } else {
                out.insert(
                    rel,
                    format!(
                        "file:{}",
                        String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The row `ctr images check` prints for `reference`.
fn check_row(daemon: &Daemon, ctr: &Path, snapshotter: &str, reference: &str) -> Vec<String> {
    let out = ok(daemon.ctr(ctr, &["images", "check", "--snapshotter", snapshotter]));
    rows(&out)
        .into_iter()
        .find(|r| r[0] == reference)
        .unwrap_or_else(|| panic!("{reference} not in images check:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ctrs_pull_busybox_onto_every_snapshotter() {
    let f = fixture().await;
    let image = crated_testimages::busybox().unwrap();
    let reference = format!("{}/test/busybox:latest", f.registry.host);
    push(&reference, &image).await.unwrap();
    let busybox = std::fs::read("/bin/busybox").unwrap();

    for snapshotter in SNAPSHOTTERS {
        for (who, ctr) in ctrs() {
            let out = ok(f.daemon.ctr(
                &ctr,
                &[
                    "images",
                    "pull",
                    "--plain-http",
                    "--snapshotter",
                    snapshotter,
                    &reference,
                ],
            ));
            assert!(
                out.contains(&format!(
                    "unpacking linux/{}",
                    crated_testimages::host_arch()
                )),
                "{who}: {out}"
            );
            let row = check_row(&f.daemon, &ctr, snapshotter, &reference);
            assert_eq!(row[2], image.root.digest.to_string(), "{who} {snapshotter}");
            assert_eq!(
                row[3..5],
                ["complete", "(2/2)"],
                "{who} {snapshotter}: {row:?}"
            );
            assert_eq!(
                row.last().unwrap(),
                "true",
                "{who} {snapshotter}: not unpacked: {row:?}"
            );
            with_rootfs(&f.daemon, &ctr, snapshotter, &reference, |root| {
                assert!(
                    std::fs::read(root.join("bin/busybox")).unwrap() == busybox,
                    "{who} {snapshotter}: busybox differs"
                );
                assert_eq!(
                    std::fs::read_link(root.join("bin/sh")).unwrap(),
                    Path::new("../bin/busybox")
                );
            });
            ok(f.daemon.ctr(&ctr, &["images", "rm", "--sync", &reference]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whiteout_image_unpacks_to_exactly_the_expected_tree() {
    let f = fixture().await;
    let image = crated_testimages::whiteouts().unwrap();
    let reference = format!("{}/test/whiteouts:1", f.registry.host);
    push(&reference, &image).await.unwrap();
    let expected: BTreeMap<String, String> = crated_testimages::EXPECTED_WHITEOUT_TREE
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for snapshotter in SNAPSHOTTERS {
        for (who, ctr) in ctrs() {
            ok(f.daemon.ctr(
                &ctr,
                &[
                    "images",
                    "pull",
                    "--plain-http",
                    "--snapshotter",
                    snapshotter,
                    &reference,
                ],
            ));
            with_rootfs(&f.daemon, &ctr, snapshotter, &reference, |root| {
                assert_eq!(tree(root), expected, "{who} {snapshotter}");
                let (a, b) = (
                    root.join("d/new").metadata().unwrap(),
                    root.join("d/hard").metadata().unwrap(),
                );
                assert_eq!(
                    a.ino(),
                    b.ino(),
                    "{who} {snapshotter}: d/hard is not a hard link of d/new"
                );
            });
            ok(f.daemon.ctr(&ctr, &["images", "rm", "--sync", &reference]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hostile_layer_writes_outside() {
    let f = fixture().await;
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("escaped");
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    let images = crated_testimages::hostile(&marker).unwrap();
    for (i, (name, image)) in images.iter().enumerate() {
        let reference = format!("{}/test/hostile{i}:1", f.registry.host);
        push(&reference, image).await.unwrap();
        // `..` in names is refused; symlinks pointing out are resolved
        // inside the root, as containerd does (the pull may then succeed).
        let refused = name.contains("dot-dot") || name.contains("hard link");
        for snapshotter in SNAPSHOTTERS {
            for (who, ctr) in ctrs() {
                let out = f.daemon.ctr(
                    &ctr,
                    &[
                        "images",
                        "pull",
                        "--plain-http",
                        "--snapshotter",
                        snapshotter,
                        &reference,
                    ],
                );
                if refused {
                    let err = fails(out);
                    assert!(
                        err.contains("\"..\""),
                        "{name} via {who} on {snapshotter}: refused for another reason: {err}"
                    );
                }
                assert!(
                    !marker.exists(),
                    "{name} via {who} on {snapshotter} wrote {}",
                    marker.display()
                );
                assert_eq!(
                    std::fs::read_to_string(outside.path().join("secret")).unwrap(),
                    "secret",
                    "{name}"
                );
                assert_eq!(
                    std::fs::read_dir(outside.path()).unwrap().count(),
                    1,
                    "{name}: something appeared outside"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_second_repository_delete_and_pull_back() {
    let f = fixture().await;
    let image = crated_testimages::busybox().unwrap();
    let source = format!("{}/test/busybox:latest", f.registry.host);
    push(&source, &image).await.unwrap();
    let ours = workspace_bin("ctr");
    ok(f.daemon
        .ctr(&ours, &["images", "pull", "--plain-http", &source]));
    let content_before = ok(f.daemon.ctr(&ours, &["content", "ls", "-q"]));

    for (who, ctr) in ctrs() {
        let copy = format!("{}/copies/{who}:1", f.registry.host);
        ok(f.daemon
            .ctr(&ctr, &["images", "push", "--plain-http", &copy, &source]));
        ok(f.daemon.ctr(&ctr, &["images", "rm", "--sync", &source]));
        assert!(
            ok(f.daemon.ctr(&ctr, &["content", "ls", "-q"]))
                .trim()
                .is_empty(),
            "{who}: content left after rm --sync"
        );
        ok(f.daemon
            .ctr(&ctr, &["images", "pull", "--plain-http", &copy]));
        let row = check_row(&f.daemon, &ctr, "overlayfs", &copy);
        assert_eq!(
            row[2],
            image.root.digest.to_string(),
            "{who}: pulled back another manifest"
        );
        assert_eq!(
            ok(f.daemon.ctr(&ours, &["content", "ls", "-q"])),
            content_before,
            "{who}: other blobs"
        );
        // Back to the start for the next ctr.
        ok(f.daemon.ctr(&ctr, &["images", "tag", &copy, &source]));
        ok(f.daemon.ctr(&ctr, &["images", "rm", &copy]));
    }
}

/// A chain of indexes deeper than a pull follows is refused by name; one of
/// a sensible depth pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_nested_too_deep_are_refused() {
    let f = fixture().await;
    let ctr = common::workspace_bin("ctr");
    let busybox = crated_testimages::busybox().unwrap();
    let shallow = format!("{}/test/nested:3", f.registry.host);
    push(
        &shallow,
        &crated_testimages::nested_index(busybox.clone(), 3).unwrap(),
    )
    .await
    .unwrap();
    ok(f.daemon
        .ctr(&ctr, &["images", "pull", "--plain-http", &shallow]));
    let deep = format!("{}/test/nested:9", f.registry.host);
    let nine = crated_testimages::nested_index(busybox, 9).unwrap();
    push(&deep, &nine).await.unwrap();
    let said = fails(
        f.daemon
            .ctr(&ctr, &["images", "pull", "--plain-http", &deep]),
    );
    assert!(said.contains("nested more than 8 indexes deep"), "{said}");
    let images = ok(f.daemon.ctr(&ctr, &["images", "ls", "-q"]));
    assert!(!images.contains("nested:9"), "{images}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_index_pulls_the_host_platform() {
    let f = fixture().await;
    let index = crated_testimages::multi_platform().unwrap();
    let reference = format!("{}/test/multi:1", f.registry.host);
    push(&reference, &index).await.unwrap();
    for (who, ctr) in ctrs() {
        ok(f.daemon
            .ctr(&ctr, &["images", "pull", "--plain-http", &reference]));
        let row = check_row(&f.daemon, &ctr, "overlayfs", &reference);
        assert_eq!(row[1], "application/vnd.oci.image.index.v1+json", "{who}");
        // As containerd counts: the host platform's config and layer.
        assert_eq!(row[3..5], ["complete", "(2/2)"], "{who}: {row:?}");
        with_rootfs(&f.daemon, &ctr, "overlayfs", &reference, |root| {
            assert!(
                root.join("bin/busybox").exists(),
                "{who}: not the host image"
            );
        });
        // The other platform on request. As in containerd, the index's gc
        // labels then name only that platform's manifest.
        ok(f.daemon.ctr(
            &ctr,
            &[
                "images",
                "pull",
                "--plain-http",
                "--platform",
                "linux/s390x",
                &reference,
            ],
        ));
        let target = tempfile::tempdir().unwrap();
        let t = target.path().display().to_string();
        ok(f.daemon.ctr(
            &ctr,
            &[
                "images",
                "mount",
                "--platform",
                "linux/s390x",
                &reference,
                &t,
            ],
        ));
        let platform = std::fs::read_to_string(target.path().join("etc/platform"));
        ok(f.daemon.ctr(&ctr, &["images", "unmount", "--rm", &t]));
        assert_eq!(platform.unwrap(), "s390x\n", "{who}");
        ok(f.daemon.ctr(&ctr, &["images", "rm", "--sync", &reference]));
    }
}

/// Our `ctr images pull --plain-http reference`, running in the background
/// (to be killed halfway by the tests that stall its downloads).
fn spawn_pull(daemon: &Daemon, reference: &str) -> std::process::Child {
    std::process::Command::new(workspace_bin("ctr"))
        .arg("--address")
        .arg(&daemon.address)
        .args(["images", "pull", "--plain-http", reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A TCP proxy in front of the registry that records every request head
/// and, while `stall` names a digest, stops forwarding a response for it
/// after `limit` bytes (a download cut halfway, the connection kept open).
struct Proxy {
    host: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stall: std::sync::Arc<std::sync::Mutex<Option<(String, usize)>>>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stall: Arc<Mutex<Option<(String, usize)>>> = Arc::default();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s, st) = (requests.clone(), stall.clone(), stalled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let current = Arc::new(Mutex::new(String::new()));
                let (requests, cur) = (r.clone(), current.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 << 10];
                    let mut pending = String::new();
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                        while let Some(end) = pending.find("\r\n\r\n") {
                            let head: String = pending.drain(..end + 4).collect();
                            *cur.lock().unwrap() =
                                head.lines().next().unwrap_or_default().to_owned();
                            requests.lock().unwrap().push(head);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let (stall, stalled) = (s.clone(), st.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 << 10];
                    let mut sent = 0usize;
                    let mut last = String::new();
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let line = current.lock().unwrap().clone();
                        if line != last {
                            (last, sent) = (line.clone(), 0);
                        }
                        let limit = stall
                            .lock()
                            .unwrap()
                            .as_ref()
                            .filter(|(digest, _)| {
                                line.starts_with("GET") && line.contains(digest.as_str())
                            })
                            .map(|(_, limit)| *limit);
                        if let Some(limit) = limit {
                            if sent + n > limit {
                                stalled.store(true, Ordering::SeqCst);
                                // Hold the connection open, send nothing more.
                                std::future::pending::<()>().await;
                            }
                        }
                        sent += n;
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            host,
            requests,
            stall,
            stalled,
        }
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_halfway_resumes_without_fetching_finished_blobs_again() {
    let f = fixture().await;
    let image = crated_testimages::synthetic(16, 50).unwrap();
    let big = image.blobs[0].clone();
    assert!(big.data.len() > 16 << 20, "the big layer comes first");
    push(&format!("{}/test/big:1", f.registry.host), &image)
        .await
        .unwrap();
    let proxy = Proxy::start(f.registry.host.clone()).await;
    *proxy.stall.lock().unwrap() = Some((big.digest.to_string(), 6 << 20));
    let reference = format!("{}/test/big:1", proxy.host);
    let ours = workspace_bin("ctr");

    let mut first = spawn_pull(&f.daemon, &reference);
    // Killed once the big layer is cut off and every other blob is in.
    let others: Vec<String> = image.blobs[1..]
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let have = ok(f.daemon.ctr(&debian_ctr(), &["content", "ls", "-q"]));
        if proxy.stalled.load(std::sync::atomic::Ordering::SeqCst)
            && others.iter().all(|d| have.contains(d))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first pull never got halfway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let active = ok(f.daemon.ctr(&debian_ctr(), &["content", "active"]));
    let partial = rows(&active)
        .into_iter()
        .find(|r| r[0] == format!("layer-{}", big.digest))
        .unwrap_or_else(|| panic!("no partial ingest of the big layer:\n{active}"));
    assert!(
        !ok(f.daemon.ctr(&debian_ctr(), &["images", "ls", "-q"])).contains(&reference),
        "image recorded before its content"
    );

    *proxy.stall.lock().unwrap() = None;
    proxy.take_requests();
    ok(f.daemon
        .ctr(&ours, &["images", "pull", "--plain-http", &reference]));
    let requests = proxy.take_requests();
    for digest in &others {
        let fetched: Vec<_> = requests
            .iter()
            .filter(|r| r.starts_with("GET") && r.contains(&format!("/blobs/{digest}")))
            .collect();
        assert!(
            fetched.is_empty(),
            "{digest} was fetched again: {fetched:?}"
        );
    }
    let resumed: Vec<_> = requests
        .iter()
        .filter(|r| r.contains(&format!("/blobs/{}", big.digest)))
        .collect();
    assert_eq!(resumed.len(), 1, "{requests:#?}");
    let range = resumed[0]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(|r| r.trim_end_matches('-').parse::<u64>().unwrap())
        })
        .unwrap_or_else(|| panic!("resumed without a Range: {}", resumed[0]));
    assert!(range > 0, "resumed from 0");
    eprintln!("partial ingest {partial:?}, resumed from byte {range}");
    let row = check_row(&f.daemon, &ours, "overlayfs", &reference);
    assert_eq!(row[3..5], ["complete", "(4/4)"], "{row:?}");
    with_rootfs(&f.daemon, &ours, "overlayfs", &reference, |root| {
        assert!(root.join("data/blob0").exists() && !root.join("data/blob3").exists());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ctrs_pull_over_tls_trusting_the_ca_in_a_hosts_dir() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crated_testimages::TestCerts::new(dir.path()).unwrap();
    let (cert, key) = (certs.cert.clone(), certs.key.clone());
    let registry =
        tokio::task::spawn_blocking(move || Registry::start_with(None, Some((&cert, &key))))
            .await
            .unwrap()
            .unwrap();
    let hosts_dir = dir.path().join("certs.d");
    let host_dir = hosts_dir.join(registry.host.replace(':', "_") + "_");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&certs.ca, host_dir.join("ca.pem")).unwrap();
    // containerd 1.6 wants a `[host]` table (a file with only `server` is
    // "invalid `host` tree" to it; we take both).
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{0}\"\n\n[host.\"https://{0}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = \"ca.pem\"\n",
            registry.host
        ),
    )
    .unwrap();
    let reference = format!("{}/secure/busybox:1", registry.host);
    let resolver = crated_distribution::Resolver::new(
        crated_distribution::HostOptions {
            hosts_dir: Some(hosts_dir.clone()),
            ..Default::default()
        },
        None,
        Default::default(),
    );
    let image = crated_testimages::busybox().unwrap();
    crated_testimages::push_with(&resolver, &reference, &image)
        .await
        .unwrap();
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let hosts = hosts_dir.display().to_string();
    for (who, ctr) in ctrs() {
        ok(daemon.ctr(&ctr, &["images", "pull", "--hosts-dir", &hosts, &reference]));
        let row = check_row(&daemon, &ctr, "overlayfs", &reference);
        assert_eq!(row[3..5], ["complete", "(2/2)"], "{who}: {row:?}");
        ok(daemon.ctr(&ctr, &["images", "rm", "--sync", &reference]));
        // Without the CA the server is not trusted, and the error says so.
        let untrusted = dir.path().join("untrusted");
        let untrusted_host = untrusted.join(registry.host.replace(':', "_") + "_");
        std::fs::create_dir_all(&untrusted_host).unwrap();
        std::fs::write(
            untrusted_host.join("hosts.toml"),
            format!(
                "[host.\"https://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                registry.host
            ),
        )
        .unwrap();
        let err = fails(daemon.ctr(
            &ctr,
            &[
                "images",
                "pull",
                "--hosts-dir",
                &untrusted.display().to_string(),
                &reference,
            ],
        ));
        assert!(err.contains("certificate"), "{who}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_unpack_while_later_layers_still_download() {
    let f = fixture().await;
    let image = crated_testimages::synthetic(2, 20).unwrap();
    let last = image.blobs[2].clone();
    assert!(last.media_type.contains("layer"), "{}", last.media_type);
    push(&format!("{}/test/stream:1", f.registry.host), &image)
        .await
        .unwrap();
    let proxy = Proxy::start(f.registry.host.clone()).await;
    // The last layer never finishes on the first try.
    *proxy.stall.lock().unwrap() = Some((last.digest.to_string(), 16));
    let reference = format!("{}/test/stream:1", proxy.host);
    let ours = workspace_bin("ctr");
    let mut pull = spawn_pull(&f.daemon, &reference);
    let first_two = crated_core::digest::Digest::chain_id(&image.diff_ids[..2]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let snapshots = ok(f.daemon.ctr(&debian_ctr(), &["snapshots", "ls"]));
        if snapshots.contains(first_two.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first two layers were not unpacked while the third downloaded:\n{snapshots}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        pull.try_wait().unwrap().is_none(),
        "the pull ended with its last layer stalled"
    );
    pull.kill().unwrap();
    pull.wait().unwrap();
    *proxy.stall.lock().unwrap() = None;
    ok(f.daemon
        .ctr(&ours, &["images", "pull", "--plain-http", &reference]));
    let row = check_row(&f.daemon, &ours, "overlayfs", &reference);
    assert_eq!(row[3..5], ["complete", "(4/4)"], "{row:?}");
    assert_eq!(row.last().unwrap(), "true", "{row:?}");
}
