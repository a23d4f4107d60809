//! Pods and containers through the CRI, as kubelet drives them: a pod
//! sandbox run from a pause image, containers created in it from busybox,
//! started, logged in the CRI format, exec'd into, stopped with their
//! exit recorded, recovered by a restarted daemon, removed with nothing
//! left behind.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use common::{ok, workspace_bin};
use crated_cri::runtime::v1 as cri;
use cri_support::{container_config, eventually, log_records, pod_config, Node};

async fn status_of(
    runtime: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
) -> cri::ContainerStatus {
    runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

async fn exec(
    runtime: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    cmd: &[&str],
) -> cri::ExecSyncResponse {
    runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_runs_logs_execs_stops_and_is_removed() {
    let mut node = Node::start(&[]).await;
    let image_id = node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let config = pod_config("web", node.logs.path(), true);
    let pod = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon.logs()))
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(pod.len(), 64);

    // The same name again is refused while the pod exists.
    let err = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("web_default_uid-web_0"),
        "{}",
        err.message()
    );

    let status = runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod[..12].into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.id, pod);
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.labels["app"], "web");
    let pods = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);

    // A container: output into the CRI log, both streams.
    let created = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config(
                "app",
                &node.busybox,
                &[
                    "sh",
                    "-c",
                    "echo hello; echo oops >&2; trap 'exit 7' TERM; \
                     while true; do [ -f /tmp/go ] && rm /tmp/go && echo after-restart; sleep 0.1; done",
                ],
            )),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon.logs()))
        .into_inner()
        .container_id;
    let before = status_of(&mut runtime, &created).await;
    assert_eq!(before.state, cri::ContainerState::ContainerCreated as i32);
    assert_eq!(before.image_id, image_id);
    assert_eq!(before.image.as_ref().unwrap().image, node.busybox);
    runtime
        .start_container(cri::StartContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon.logs()));
    let running = status_of(&mut runtime, &created).await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32);
    assert!(running.started_at > 0);
    let log = std::path::PathBuf::from(&running.log_path);
    assert!(log.starts_with(node.logs.path()), "{log:?}");
    let records = eventually("both lines in the log", || {
        let log = log.clone();
        async move {
            let r = log_records(&log);
            if r.len() >= 2 {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await;
    assert!(
        records.contains(&("stdout".into(), "F".into(), "hello".into())),
        "{records:?}"
    );
    assert!(
        records.contains(&("stderr".into(), "F".into(), "oops".into())),
        "{records:?}"
    );

    // ExecSync: both streams and the exit code; the pod's files.
    let out = exec(
        &mut runtime,
        &created,
        &["sh", "-c", "echo out; echo bad >&2; exit 3"],
    )
    .await;
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"bad\n");
    assert_eq!(out.exit_code, 3);
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let out = exec(&mut runtime, &created, &["cat", "/etc/hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host_name);
    let out = exec(&mut runtime, &created, &["sh", "-c", "echo $HOSTNAME"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host_name);
    let out = exec(&mut runtime, &created, &["cat", "/etc/resolv.conf"]).await;
    assert_eq!(out.stdout, std::fs::read("/etc/resolv.conf").unwrap());
    let out = exec(
        &mut runtime,
        &created,
        &["grep", "-c", " /dev/shm ", "/proc/mounts"],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let timed_out = runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: created.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(
        timed_out.code(),
        tonic::Code::DeadlineExceeded,
        "{timed_out:?}"
    );

    // Stats while it runs.
    let stats = runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(stats.attributes.unwrap().id, created);
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(stats.writable_layer.is_some());

    // A restarted daemon finds the pod and container as they were, and
    // keeps logging.
    node.daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    node.daemon.spawn(&[]);
    let mut runtime = node.runtime().await;
    let again = status_of(&mut runtime, &created).await;
    assert_eq!(again.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(again.started_at, running.started_at);
    exec(&mut runtime, &created, &["touch", "/tmp/go"]).await;
    eventually("a line logged after the restart", || {
        let log = log.clone();
        async move {
            let r = log_records(&log);
            if r.iter().any(|r| r.2 == "after-restart") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await;

    // StopContainer: the stop signal, its handler's exit code recorded.
    runtime
        .stop_container(cri::StopContainerRequest {
            container_id: created.clone(),
            timeout: 10,
        })
        .await
        .unwrap();
    let stopped = status_of(&mut runtime, &created).await;
    assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 7);
    assert_eq!(stopped.reason, "Error");
    assert!(stopped.finished_at >= stopped.started_at);

    // Removal leaves nothing: no containerd records, no snapshots.
    runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap();
    let gone = runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: created.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    // Twice is fine (kubelet retries).
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let ctr = workspace_bin("ctr");
    let left = ok(node
        .daemon
        .ctr(&ctr, &["-n", "k8s.io", "containers", "ls", "-q"]));
    assert!(left.trim().is_empty(), "{left}");
    let snapshots = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "snapshots", "ls"]));
    assert!(
        !snapshots.contains(&pod) && !snapshots.contains(&created),
        "{snapshots}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&pod), "the pod's shm is unmounted");
}
