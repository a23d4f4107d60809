//! CRI `CheckpointContainer`, as kubelet's forensic checkpointing (and
//! `crictl checkpoint --export`) asks for it: a running container of a pod
//! on a CNI bridge dumped by criu into one tar archive that checkpointctl
//! can read, while the container runs on; bad requests refused with
//! nothing written.
//!
//! The archive is read back as an operator would, with checkpointctl
//! (built by `cargo xtask deps`). criu must be able to run here: where it
//! cannot, the test says why and is skipped (never silently green).

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crated_cri::runtime::v1 as cri;
use cri::runtime_service_client::RuntimeServiceClient;
use cri_support::{
    bridge_conflist, container_config, eventually, pod_config, start_container,
    stop_and_remove_pod, Node, NodeOptions,
};
use tonic::transport::Channel;

const COUNTER: &str =
    "echo kept > /note; i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done";

/// The count the container's counter is at, read through ExecSync.
async fn count(runtime: &mut RuntimeServiceClient<Channel>, id: &str) -> Result<u64, String> {
    let reply = runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["cat".into(), "/count".into()],
            timeout: 10,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    String::from_utf8_lossy(&reply.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}: {:?}", String::from_utf8_lossy(&reply.stdout)))
}

/// Waits until `id`'s counter is past `past`; the count it reached.
async fn counts_past(
    runtime: &RuntimeServiceClient<Channel>,
    id: &str,
    past: u64,
    what: &str,
) -> u64 {
    let (runtime, id) = (runtime.clone(), id.to_owned());
    eventually(what, move || {
        let (mut r, id) = (runtime.clone(), id.clone());
        async move {
            match count(&mut r, &id).await? {
                n if n > past => Ok(n),
                n => Err(format!("at {n}, waiting to pass {past}")),
            }
        }
    })
    .await
}

async fn checkpoint(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
    location: &Path,
) -> Result<(), tonic::Status> {
    runtime
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.display().to_string(),
            timeout: 0,
        })
        .await
        .map(|_| ())
}

/// The entries of a tar archive: path → bytes (directories left out).
fn entries(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(data);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(path, bytes);
    }
    out
}

#[test]
fn a_running_container_is_checkpointed_into_an_archive_and_runs_on() {
    let criu = match crated_testimages::criu() {
        Ok(criu) => criu,
        Err(why) => {
            eprintln!("SKIPPED: criu cannot run here: {why}");
            return;
        }
    };
    crated_testimages::in_private_netns(move || async move {
        // A pod on a CNI bridge, as a node's pods are: the container joins
        // the pod's network namespace, which criu must leave alone.
        let ipam = tempfile::tempdir().unwrap();
        let node = Node::start_with(NodeOptions {
            cni: vec![(
                "10-forensic.conflist".to_owned(),
                bridge_conflist("forensic", "10.88.13.0/24", ipam.path()),
            )],
            path_prefix: Some(criu.parent().unwrap().to_owned()),
            ..NodeOptions::default()
        })
        .await;
        let image_ref = node.pull_busybox().await;
        let mut runtime = node.runtime().await;
        let config = pod_config("forensic", node.logs.path(), false);
        let pod = node.run_pod(&mut runtime, &config).await;
        let id = start_container(
            &mut runtime,
            &pod,
            &config,
            container_config("counter", &node.busybox, &["sh", "-c", COUNTER]),
        )
        .await;
        counts_past(&runtime, &id, 2, "the counter counts").await;
        let mut r = runtime.clone();

        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("counter.tar");

        // Refused, with nothing written: no location, a relative one, one
        // in a directory that does not exist, an unknown container.
        let refused = checkpoint(&mut r, &id, Path::new("")).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("location"), "{refused:?}");
        let refused = checkpoint(&mut r, &id, Path::new("counter.tar"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("absolute"), "{refused:?}");
        let refused = checkpoint(&mut r, &id, &out.path().join("no/such/dir.tar"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("does not exist"), "{refused:?}");
        let refused = checkpoint(&mut r, "no-such-container", &archive)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

        // The checkpoint: the archive alone appears, readable by its owner
        // only; the container's scratch files are gone.
        checkpoint(&mut r, &id, &archive)
            .await
            .unwrap_or_else(|e| panic!("checkpoint: {e:?}\n{}", node.daemon.logs()));
        let names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("counter.tar")]);
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let container_root = node
            .daemon
            .dir
            .path()
            .join("root/io.containerd.grpc.v1.cri/containers")
            .join(&id);
        let leftovers: Vec<_> = std::fs::read_dir(&container_root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("checkpoint"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // What is in it: checkpointctl's layout.
        let data = std::fs::read(&archive).unwrap();
        let files = entries(&data);
        let config: serde_json::Value = serde_json::from_slice(&files["config.dump"]).unwrap();
        assert_eq!(config["id"], id.as_str(), "{config}");
        assert_eq!(config["name"], "counter", "{config}");
        assert_eq!(config["rootfsImageRef"], image_ref.as_str(), "{config}");
        assert_eq!(config["rootfsImage"], node.busybox.as_str(), "{config}");
        assert_eq!(config["rootfsImageName"], node.busybox.as_str(), "{config}");
        assert_eq!(config["runtime"], "io.containerd.runc.v2", "{config}");
        assert!(
            config["checkpointedTime"]
                .as_str()
                .unwrap_or_default()
                .starts_with("20"),
            "{config}"
        );
        let spec: serde_json::Value = serde_json::from_slice(&files["spec.dump"]).unwrap();
        assert_eq!(spec["process"]["args"][2], COUNTER, "{spec}");
        for image in ["checkpoint/inventory.img", "checkpoint/pstree.img"] {
            assert!(
                files.contains_key(image),
                "{image} missing: {:?}",
                files.keys().collect::<Vec<_>>()
            );
        }
        let log = String::from_utf8_lossy(&files["dump.log"]);
        assert!(log.contains("Dumping finished successfully"), "{log}");
        let rootfs = entries(&files["rootfs-diff.tar"]);
        assert_eq!(rootfs.get("note").map(Vec::as_slice), Some(&b"kept\n"[..]));
        let dumped: u64 = String::from_utf8_lossy(&rootfs["count"])
            .trim()
            .parse()
            .unwrap();
        assert!(dumped >= 3, "count {dumped}");

        // checkpointctl, as an operator would read it, sees the container,
        // its process tree and criu's statistics.
        let checkpointctl = crated_testimages::cri_tool("checkpointctl").unwrap_or_else(|| {
            panic!(
                "checkpointctl is not built in {}: run `cargo xtask deps`",
                crated_testimages::go_bin_dir().display()
            )
        });
        let inspect = std::process::Command::new(&checkpointctl)
            .args(["inspect", "--all", "--format", "json"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "checkpointctl inspect: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let seen = &inspected[0];
        assert_eq!(seen["id"], id.as_str(), "{seen}");
        assert_eq!(seen["container_name"], "counter", "{seen}");
        assert_eq!(seen["image"], node.busybox.as_str(), "{seen}");
        assert_eq!(seen["runtime"], "io.containerd.runc.v2", "{seen}");
        let cmdline = seen["process_tree"]["cmdline"].as_str().unwrap_or_default();
        assert!(cmdline.contains(COUNTER), "{seen}");
        assert!(
            seen["statistics"]["pages_written"].as_u64() > Some(0),
            "{seen}"
        );
        assert_eq!(
            seen["checkpoint_size"]["root_fs_diff_size"].as_u64(),
            Some(files["rootfs-diff.tar"].len() as u64),
            "{seen}"
        );

        // It runs on: running, counting past what was dumped.
        let status = r
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
        counts_past(
            &runtime,
            &id,
            dumped,
            "the counter counts on after the checkpoint",
        )
        .await;

        // A second checkpoint replaces the archive whole.
        checkpoint(&mut r, &id, &archive).await.unwrap();
        let second = std::fs::read(&archive).unwrap();
        let rootfs = entries(&entries(&second)["rootfs-diff.tar"]);
        let again: u64 = String::from_utf8_lossy(&rootfs["count"])
            .trim()
            .parse()
            .unwrap();
        assert!(again > dumped, "{again} after {dumped}");

        // A caller that gives up half-way (its deadline passes while criu
        // dumps) does not leave the container paused: it counts on, and the
        // checkpoint it asked for is still written.
        let abandoned = out.path().join("abandoned.tar");
        let mut hasty = tonic::Request::new(cri::CheckpointContainerRequest {
            container_id: id.clone(),
            location: abandoned.display().to_string(),
            timeout: 0,
        });
        hasty.set_timeout(std::time::Duration::from_millis(20));
        let gave_up = r.checkpoint_container(hasty).await.unwrap_err();
        assert!(
            matches!(
                gave_up.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{gave_up:?}"
        );
        let counted = count(&mut r, &id).await.unwrap_or(0);
        counts_past(
            &runtime,
            &id,
            counted + 2,
            "the counter counts on after an abandoned checkpoint",
        )
        .await;
        let a = abandoned.clone();
        eventually("the abandoned checkpoint's archive is written", move || {
            let a = a.clone();
            async move { a.exists().then_some(()).ok_or_else(|| "not yet".to_owned()) }
        })
        .await;

        // A stopped container cannot be checkpointed; the archive stays.
        r.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        let refused = checkpoint(&mut r, &id, &archive).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(
            refused.message().contains("CONTAINER_EXITED"),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&archive).unwrap(), second);

        stop_and_remove_pod(&mut r, &pod).await;
    });
}

/// A checkpoint that criu cannot make fails naming criu; the container,
/// paused for the dump, is running again, and no archive appears.
#[test]
fn a_failed_dump_leaves_the_container_running_and_no_archive() {
    crated_testimages::in_private_netns(|| async {
        let broken = tempfile::tempdir().unwrap();
        let criu = broken.path().join("criu");
        common::write_script(&criu, "echo 'criu: this one is broken' >&2\nexit 1\n");
        let node = Node::start_with(NodeOptions {
            path_prefix: Some(broken.path().to_owned()),
            ..NodeOptions::default()
        })
        .await;
        node.pull_busybox().await;
        let mut runtime = node.runtime().await;
        let config = pod_config("broken-criu", node.logs.path(), true);
        let pod = node.run_pod(&mut runtime, &config).await;
        let id = start_container(
            &mut runtime,
            &pod,
            &config,
            container_config("counter", &node.busybox, &["sh", "-c", COUNTER]),
        )
        .await;
        let out = tempfile::tempdir().unwrap();
        let refused = checkpoint(&mut runtime, &id, &out.path().join("counter.tar"))
            .await
            .unwrap_err();
        assert!(
            refused.message().contains("criu dump failed"),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

        // Not left paused: it counts on.
        let before = count(&mut runtime, &id).await.unwrap_or(0);
        counts_past(
            &runtime,
            &id,
            before,
            "the counter counts on after the failed dump",
        )
        .await;
        stop_and_remove_pod(&mut runtime, &pod).await;
    });
}
