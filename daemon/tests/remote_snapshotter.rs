//! Lazy pulling through a remote snapshotter, as Kubernetes nodes run
//! stargz: the real stargz snapshotter (its library, served by
//! `stargz-tool`) plugged in with `[proxy_plugins]`, the CRI told to pass
//! the layers' locations (`disable_snapshot_annotations = false`). The
//! pull mounts each eStargz layer from the registry instead of fetching
//! it, and containers read its files all the same.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{debian_ctr, ok, registry_with};
use crated_core::digest::Digest;
use crated_cri::runtime::v1 as cri;
use cri_support::{exec, stop_and_remove_pod, Node};

/// The stargz snapshotter serving `socket`, its state under `root`; on
/// drop it is stopped and whatever it left mounted is unmounted.
struct Stargz {
    child: Child,
    root: PathBuf,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stargz {
    /// Starts it (`tool` is `stargz-tool`), reaching `registry` (`127.0.0.1:<port>`) over plain
    /// HTTP, without prefetching or background fetches: a layer's bytes
    /// come from the registry only when a file is read.
    fn start(tool: &Path, registry: &str) -> Stargz {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let socket = dir.path().join("stargz.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "noprefetch = true\nno_background_fetch = true\n\
                 [[resolver.host.{registry:?}.mirrors]]\nhost = {registry:?}\ninsecure = true\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("stargz.log")).unwrap();
        let child = Command::new(tool)
            .arg("serve")
            .args([&root, &socket, &config])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let stargz = Stargz {
            child,
            root,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stargz.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "stargz never listened:\n{}",
                stargz.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stargz
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.with_file_name("stargz.log")).unwrap_or_default()
    }

    /// The FUSE mounts it made: one per layer it mounted from the
    /// registry.
    fn layer_mounts(&self) -> Vec<String> {
        mounts_under(&self.root)
            .into_iter()
            .filter(|(_, fstype)| fstype.starts_with("fuse"))
            .map(|(point, _)| point)
            .collect()
    }
}

impl Drop for Stargz {
    fn drop(&mut self) {
        // SIGTERM: it stops serving and closes its snapshotter.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Detached, as a FUSE mount whose server is gone may not let go
        // otherwise.
        let _ = crated_core::mount::unmount_beneath(&self.root);
    }
}

/// Mount points (with their filesystem types) at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.display().to_string();
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = *fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = *fields.get(dash + 1)?;
            point
                .starts_with(&prefix)
                .then(|| (point.to_owned(), fstype.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cri_pull_through_stargz_mounts_layers_it_never_fetches() {
    let tool = crated_testimages::cri_tool("stargz-tool")
        .expect("stargz-tool is not built: run `cargo xtask deps`");
    let image = crated_testimages::estargz_busybox(&tool).unwrap();
    let layers: Vec<String> = image
        .blobs
        .iter()
        .filter(|b| b.media_type.contains("layer"))
        .map(|b| b.digest.to_string())
        .collect();
    assert_eq!(layers.len(), 2);
    let (registry, host) = registry_with(vec![("test/lazy:1", image.clone())]).await;
    let reference = format!("{host}/test/lazy:1");
    let stargz = {
        let host = host.clone();
        tokio::task::spawn_blocking(move || Stargz::start(&tool, &host))
            .await
            .unwrap()
    };
    let node = Node::start_with(cri_support::NodeOptions {
        cri_tables: format!(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
             snapshotter = \"stargz\"\n\
             disable_snapshot_annotations = false\n\
             [proxy_plugins.stargz]\ntype = \"snapshot\"\naddress = {:?}\n",
            stargz.socket.display().to_string()
        ),
        ..Default::default()
    })
    .await;

    let pulled = node
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: reference.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull: {e}\n{}\n{}", node.daemon.logs(), stargz.log()))
        .into_inner()
        .image_ref;
    assert_eq!(pulled, image.blobs.last().unwrap().digest.to_string());

    // Neither layer reached the content store, nor did crated fetch one:
    // the snapshotter mounted both from the registry.
    let ctr = debian_ctr();
    let content = ok(node
        .daemon
        .ctr(&ctr, &["-n", "k8s.io", "content", "ls", "-q"]));
    for layer in &layers {
        assert!(
            !content.contains(layer.as_str()),
            "{layer} fetched:\n{content}"
        );
        let by_crated: Vec<String> = registry
            .log()
            .lines()
            .filter(|l| {
                l.contains(&format!("\"GET /v2/test/lazy/blobs/{layer} "))
                    && l.contains("\"crated/")
            })
            .map(str::to_owned)
            .collect();
        assert!(
            by_crated.is_empty(),
            "crated fetched {layer}: {by_crated:#?}"
        );
    }
    let mounted = stargz.layer_mounts();
    assert_eq!(mounted.len(), 2, "{mounted:?}\n{}", stargz.log());

    // The image's snapshots carry what the snapshotter found the layers
    // by, as containerd's CRI passes them.
    let top = Digest::chain_id(&image.diff_ids).unwrap().to_string();
    let info = ok(node.daemon.ctr(
        &ctr,
        &[
            "-n",
            "k8s.io",
            "snapshots",
            "--snapshotter",
            "stargz",
            "info",
            &top,
        ],
    ));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let labels = &info["Labels"];
    assert_eq!(info["Kind"], "Committed", "{info}");
    assert_eq!(
        labels["containerd.io/snapshot/cri.image-ref"],
        reference.as_str(),
        "{info}"
    );
    assert_eq!(
        labels["containerd.io/snapshot/cri.layer-digest"],
        layers[1].as_str(),
        "{info}"
    );
    assert_eq!(
        labels["containerd.io/snapshot/cri.manifest-digest"],
        image.root.digest.to_string(),
        "{info}"
    );
    assert_eq!(labels["containerd.io/snapshot.ref"], top.as_str(), "{info}");
    assert!(
        labels[crated_testimages::TOC_DIGEST_ANNOTATION].is_string(),
        "the layer's TOC digest is passed on: {info}"
    );

    // A container on the image reads its files through the mounts.
    let mut runtime = node.runtime().await;
    let (_, pod, app) = node
        .run_pod_of(&mut runtime, "lazy", &reference, &["sleep", "3600"])
        .await;
    let marker = format!("/{}", crated_testimages::ESTARGZ_MARKER.0);
    let read = exec(&mut runtime, &app, &["cat", &marker]).await;
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        crated_testimages::ESTARGZ_MARKER.1,
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    stop_and_remove_pod(&mut runtime, &pod).await;
    drop(node);
    drop(stargz);
}
