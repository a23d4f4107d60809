//! Pods and containers through the CRI, as kubelet drives them: a pod
//! sandbox run from a pause image, containers created in it from busybox,
//! started, logged in the CRI format, exec'd into, stopped with their
//! exit recorded, recovered by a restarted daemon, removed with nothing
//! left behind.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use common::{ok, rows, workspace_bin};
use crated_cri::runtime::v1 as cri;
use cri_support::{
    allocated_ips, bridge_conflist, container_config, eventually, exec, log_records, pod_config,
    start_container, stop_and_remove_pod, Node, NodeOptions,
};

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

/// The OCI spec a container was created with, from its verbose status.
async fn runtime_spec(
    runtime: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
) -> serde_json::Value {
    let verbose = runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    info["runtimeSpec"].take()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_runs_logs_execs_stops_and_is_removed() {
    let mut node = Node::start(&[]).await;
    let image_id = node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let config = pod_config("web", node.logs.path(), true);
    let pod = node.run_pod(&mut runtime, &config).await;
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

    // A pod asking for a user namespace of its own without saying which
    // IDs it maps is refused, not run with the node's; the node's (as the
    // kubelet sends it) is fine.
    let mut own_users = pod_config("userns", node.logs.path(), true);
    let options = own_users
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default);
    options.userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: vec![],
        gids: vec![],
    });
    let err = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(own_users),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("needs a uid and a gid mapping"),
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

    // The kubelet's word after an in-place pod resize: taken for a known
    // pod, NotFound for another.
    let resize = |id: &str| cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: id.into(),
        overhead: None,
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
    };
    runtime
        .update_pod_sandbox_resources(resize(&pod))
        .await
        .unwrap();
    let err = runtime
        .update_pod_sandbox_resources(resize("no-such-pod"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    assert!(err.message().contains("no-such-pod"), "{}", err.message());

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
    // Half an ID mapping (uids without gids) is refused rather than
    // mounted half mapped.
    let mut mapped = container_config("mapped", &node.busybox, &["true"]);
    mapped.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: node.logs.path().display().to_string(),
        uid_mappings: vec![cri::IdMapping {
            host_id: 100000,
            container_id: 0,
            length: 65536,
        }],
        ..Default::default()
    }];
    let err = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(mapped),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("uid and gid mappings go together"),
        "{}",
        err.message()
    );
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
    // The pod's status carries its containers' as they are at its
    // timestamp: the kubelet's evented PLEG reads them there.
    let pod_status = runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pod_status.timestamp >= running.started_at);
    let statuses = &pod_status.containers_statuses;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].id, created);
    assert_eq!(
        statuses[0].state,
        cri::ContainerState::ContainerRunning as i32
    );
    // One shim serves the whole pod, as containerd's does.
    let bundles = node
        .daemon
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task/k8s.io");
    let address = |id: &str| std::fs::read_to_string(bundles.join(id).join("address")).unwrap();
    let shim_address = address(&pod);
    assert_eq!(
        address(&created),
        shim_address,
        "the container has a shim of its own"
    );
    // It joined the pod's shim without running the shim binary's `start`
    // (which the daemon gives a `log` fifo to read).
    assert!(
        !bundles.join(&created).join("log").exists(),
        "the shim binary started for a container of a running pod"
    );
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
    stop_and_remove_pod(&mut runtime, &pod).await;
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
    // The pod's shim left with its last container.
    let socket = std::path::PathBuf::from(shim_address.trim_start_matches("unix://"));
    eventually("the pod's shim gone", || {
        let socket = socket.clone();
        async move {
            if socket.exists() {
                Err(format!("{} is still there", socket.display()))
            } else {
                Ok(())
            }
        }
    })
    .await;
}

/// The NetworkReady condition of the runtime's status.
async fn network_ready(
    runtime: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
) -> cri::RuntimeCondition {
    let status = runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    status
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap()
}

/// Sends `GET /` to `addr` and returns the whole answer.
async fn http_get(addr: std::net::SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| format!("connect {addr}: timed out"))?
    .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_string(&mut answer),
    )
    .await
    .map_err(|_| format!("read {addr}: timed out"))?
    .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// A pod on a CNI bridge, all inside a private node network namespace the
/// test makes: the pod gets its own namespace and a 10.x address the node
/// reaches, a host port maps to it, a restarted daemon tears the network
/// down with the cached result, and stopping frees the address and the
/// namespace.
#[test]
fn a_pod_network_pod_gets_an_address_and_port_mapping_and_is_torn_down() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let mut node = Node::start(&[(
            "10-bridge.conflist",
            bridge_conflist("crated-test", "10.88.7.0/24", ipam.path()),
        )])
        .await;
        node.pull_busybox().await;
        let mut runtime = node.runtime().await;

        let ready = network_ready(&mut runtime).await;
        assert!(ready.status, "{ready:?}");

        let mut config = pod_config("net", node.logs.path(), false);
        config.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 18080,
            host_ip: String::new(),
        }];
        let pod = node.run_pod(&mut runtime, &config).await;
        let status = runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let ip: std::net::IpAddr = status
            .status
            .as_ref()
            .unwrap()
            .network
            .as_ref()
            .unwrap()
            .ip
            .parse()
            .unwrap();
        assert!(ip.to_string().starts_with("10.88.7."), "{ip}");
        assert_eq!(
            allocated_ips(ipam.path(), "crated-test"),
            vec![ip.to_string()]
        );
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        let netns = std::path::PathBuf::from(info["netNamespace"].as_str().unwrap());
        assert!(netns.exists(), "{}", netns.display());

        // A web server in the pod, on the pod's own port 80.
        let create = runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container_config(
                    "web",
                    &node.busybox,
                    &[
                        "sh",
                        "-c",
                        "mkdir -p /www && echo hello-from-the-pod > /www/index.html \
                         && exec httpd -f -p 80 -h /www",
                    ],
                )),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon.logs()))
            .into_inner()
            .container_id;
        runtime
            .start_container(cri::StartContainerRequest {
                container_id: create.clone(),
            })
            .await
            .unwrap();
        // The pod's interface and hostname are its own.
        let inside = exec(
            &mut runtime,
            &create,
            &["sh", "-c", "hostname; ip -o -4 addr show eth0"],
        )
        .await;
        let out = String::from_utf8_lossy(&inside.stdout).into_owned();
        assert!(out.starts_with("net\n"), "{out}");
        assert!(out.contains(&format!("{ip}/24")), "{out}");

        // The node reaches the pod directly, and through the host port on
        // the bridge's gateway address (a local address of the node).
        let direct = eventually("the pod's web server answers", || async move {
            http_get((ip, 80).into()).await
        })
        .await;
        assert!(direct.contains("hello-from-the-pod"), "{direct}");
        let gateway: std::net::IpAddr = "10.88.7.1".parse().unwrap();
        let mapped = eventually("the host port answers", || async move {
            http_get((gateway, 18080).into()).await
        })
        .await;
        assert!(mapped.contains("hello-from-the-pod"), "{mapped}");
        // As critest checks it: the host port on the node's loopback.
        let localhost: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let local = eventually("the host port answers on loopback", || async move {
            http_get((localhost, 18080).into()).await
        })
        .await;
        assert!(local.contains("hello-from-the-pod"), "{local}");

        // The kubelet's metrics from the runtime: the pod's traffic on its
        // eth0, the container's CPU, memory and start, each metric's labels
        // fitting its descriptor.
        let descriptors = runtime
            .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors;
        let pods = runtime
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
        let metrics = pods.iter().find(|p| p.pod_sandbox_id == pod).unwrap();
        let web = metrics
            .container_metrics
            .iter()
            .find(|c| c.container_id == create)
            .unwrap_or_else(|| panic!("{metrics:?}"));
        let all: Vec<&cri::Metric> = metrics.metrics.iter().chain(&web.metrics).collect();
        for m in &all {
            let d = descriptors
                .iter()
                .find(|d| d.name == m.name)
                .unwrap_or_else(|| panic!("no descriptor for {}", m.name));
            assert_eq!(d.label_keys.len(), m.label_values.len(), "{m:?}");
        }
        let value = |name: &str, of: &[cri::Metric]| {
            of.iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("no {name} in {of:?}"))
                .clone()
        };
        let received = value("container_network_receive_bytes_total", &metrics.metrics);
        assert!(received.value.unwrap().value > 0);
        assert_eq!(received.label_values.last().unwrap(), "eth0");
        let memory = value("container_memory_working_set_bytes", &web.metrics);
        assert!(memory.value.unwrap().value > 0);
        // container, id, image, name, namespace, pod.
        assert_eq!(memory.label_values[0], "web");
        assert_eq!(memory.label_values[1], create);
        assert_eq!(memory.label_values[2], node.busybox);
        assert_eq!(memory.label_values[5], "net");
        let started = status_of(&mut runtime, &create).await.started_at / 1_000_000_000;
        assert_eq!(
            value("container_start_time_seconds", &web.metrics)
                .value
                .unwrap()
                .value,
            started as u64
        );
        value("container_cpu_usage_seconds_total", &web.metrics);
        let streamed = {
            use tokio_stream::StreamExt as _;
            let mut stream = runtime
                .stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
                .await
                .unwrap()
                .into_inner();
            let mut ids = Vec::new();
            while let Some(batch) = stream.next().await {
                ids.extend(
                    batch
                        .unwrap()
                        .pod_sandbox_metrics
                        .into_iter()
                        .map(|p| p.pod_sandbox_id),
                );
            }
            ids
        };
        assert_eq!(streamed, std::slice::from_ref(&pod));

        // A daemon killed and restarted tears the network down from the
        // cached CNI result: the address and the host port are freed.
        node.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
        node.daemon.spawn(&[]);
        let mut runtime = node.runtime().await;
        runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon.logs()));
        assert_eq!(
            allocated_ips(ipam.path(), "crated-test"),
            Vec::<String>::new()
        );
        assert!(!netns.exists(), "{} is removed", netns.display());
        assert!(http_get((gateway, 18080).into()).await.is_err());
        assert!(http_get((localhost, 18080).into()).await.is_err());
        let stopped = runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(stopped.state, cri::PodSandboxState::SandboxNotready as i32);
        // Stopping again, then removing twice, is no error (kubelet retries).
        runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        for _ in 0..2 {
            runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .unwrap();
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&pod), "nothing of the pod stays mounted");
    });
}

/// A pod run whose caller gives up half-way (its deadline passes while the
/// network is set up) is finished all the same, not left half-made: the
/// pod shows as ready, and stopping and removing it leaves no address,
/// namespace or mount behind.
#[test]
fn a_pod_run_its_caller_gave_up_on_is_finished_and_removable() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let node = Node::start(&[(
            "10-bridge.conflist",
            bridge_conflist("abandoned", "10.88.14.0/24", ipam.path()),
        )])
        .await;
        let mut runtime = node.runtime().await;
        let config = pod_config("abandoned", node.logs.path(), false);
        let mut hasty = tonic::Request::new(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        });
        hasty.set_timeout(std::time::Duration::from_millis(5));
        let gave_up = runtime.run_pod_sandbox(hasty).await.unwrap_err();
        assert!(
            matches!(
                gave_up.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{gave_up:?}"
        );
        let r = runtime.clone();
        let pod = eventually("the abandoned pod is ready", move || {
            let mut r = r.clone();
            async move {
                let pods = r
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .items;
                match pods.first() {
                    Some(p) if p.state == cri::PodSandboxState::SandboxReady as i32 => {
                        Ok(p.id.clone())
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        assert_eq!(allocated_ips(ipam.path(), "abandoned").len(), 1);
        let netns_dir = node
            .daemon
            .dir
            .path()
            .join("state/io.containerd.grpc.v1.cri/netns");
        let namespaces = || -> Vec<_> {
            std::fs::read_dir(&netns_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        assert_eq!(namespaces().len(), 1, "the pod's network namespace");
        stop_and_remove_pod(&mut runtime, &pod).await;
        assert_eq!(
            allocated_ips(ipam.path(), "abandoned"),
            Vec::<String>::new()
        );
        assert_eq!(namespaces(), Vec::<std::ffi::OsString>::new());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&pod), "nothing of the pod stays mounted");
    });
}

/// With no network config the node says NetworkReady=false with the
/// reason, and a pod that needs a network is refused naming the directory;
/// host-network pods still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cni_config_the_network_is_not_ready_and_pod_networks_are_refused() {
    let node = Node::start(&[]).await;
    let mut runtime = node.runtime().await;
    let network_ready = network_ready(&mut runtime).await;
    assert!(!network_ready.status);
    assert_eq!(network_ready.reason, "NetworkPluginNotReady");
    assert!(network_ready.message.contains("cni"), "{network_ready:?}");
    let refused = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("nonet", node.logs.path(), false)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(refused.message().contains("net.d"), "{refused:?}");
    // Nothing of the refused pod is left: its name is free again.
    let pods = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
}

/// `sandbox_image = ""`: pods start on crated's own pause image, made in
/// the content store on first use (no registry involved), pinned so the
/// kubelet never collects it, and listed like any image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sandbox_image_pods_run_on_crateds_own_pause() {
    let node = cri_support::Node::start_with(cri_support::NodeOptions {
        builtin_pause: true,
        ..Default::default()
    })
    .await;
    let mut runtime = node.runtime().await;
    let mut pods = Vec::new();
    for name in ["own-pause-1", "own-pause-2"] {
        let pod = node
            .run_pod(&mut runtime, &pod_config(name, node.logs.path(), true))
            .await;
        pods.push(pod);
    }
    let ctr = workspace_bin("ctr");
    let tasks = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "tasks", "ls"]));
    for pod in &pods {
        assert!(
            tasks
                .lines()
                .any(|l| l.starts_with(pod.as_str()) && l.contains("RUNNING")),
            "{tasks}"
        );
    }
    let images = node
        .images()
        .await
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    let pause = images
        .iter()
        .find(|i| i.repo_tags == ["crated.local/pause:builtin"])
        .unwrap_or_else(|| panic!("{images:?}"));
    assert!(pause.pinned);
    // The pause process exits 0 on SIGTERM, as Kubernetes' does.
    ok(node
        .daemon
        .ctr(&ctr, &["-n", "k8s.io", "tasks", "kill", &pods[0]]));
    eventually("the pause process exits on SIGTERM", || {
        let out = node.daemon.ctr(&ctr, &["-n", "k8s.io", "tasks", "ls"]);
        let pod = pods[0].clone();
        async move {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text
                .lines()
                .any(|l| l.starts_with(pod.as_str()) && l.contains("RUNNING"))
            {
                Err(text)
            } else {
                Ok(())
            }
        }
    })
    .await;
    for pod in pods {
        runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .unwrap();
    }
}

/// GetContainerEvents: a subscriber sees the pod and its container
/// created, started, stopped and deleted, each event carrying the pod's
/// status (the kubelet's evented PLEG drops an event without one) and the
/// containers' statuses as they are after the change; the pod's own
/// removal comes last, with no status to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_follow_a_pod_through_its_life() {
    use tokio_stream::StreamExt as _;
    let node = Node::start(&[]).await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let mut events = runtime
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let config = pod_config("evented", node.logs.path(), true);
    let pod = node.run_pod(&mut runtime, &config).await;
    let created = start_container(
        &mut runtime,
        &pod,
        &config,
        container_config("c", &node.busybox, &["sleep", "1000"]),
    )
    .await;
    runtime
        .stop_container(cri::StopContainerRequest {
            container_id: created.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap();

    use cri::ContainerEventType as Kind;
    let mut seen = Vec::new();
    let want = [
        (pod.clone(), Kind::ContainerCreatedEvent),
        (pod.clone(), Kind::ContainerStartedEvent),
        (created.clone(), Kind::ContainerCreatedEvent),
        (created.clone(), Kind::ContainerStartedEvent),
        (created.clone(), Kind::ContainerStoppedEvent),
        (created.clone(), Kind::ContainerDeletedEvent),
    ];
    while seen.len() < want.len() {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {seen:?}"))
            .unwrap()
            .unwrap();
        let kind = Kind::try_from(event.container_event_type).unwrap();
        // The kubelet takes an event's status as the container's: a
        // started container still shown as created would be started again,
        // and the stop event must already say it exited.
        let state_now = match kind {
            Kind::ContainerStartedEvent => Some(cri::ContainerState::ContainerRunning),
            Kind::ContainerStoppedEvent => Some(cri::ContainerState::ContainerExited),
            _ => None,
        };
        if let (true, Some(state)) = (event.container_id == created, state_now) {
            let status = event
                .containers_statuses
                .iter()
                .find(|s| s.id == created)
                .unwrap();
            assert_eq!(status.state, state as i32, "{kind:?}");
        }
        assert_eq!(
            event.pod_sandbox_status.as_ref().map(|s| s.id.as_str()),
            Some(pod.as_str()),
            "{kind:?} of {}",
            event.container_id
        );
        let listed = event.containers_statuses.iter().any(|s| s.id == created);
        assert_eq!(
            listed,
            event.container_id == created && kind != Kind::ContainerDeletedEvent,
            "{kind:?} of {}: {:?}",
            event.container_id,
            event.containers_statuses
        );
        seen.push((event.container_id, kind));
    }
    assert_eq!(seen, want);
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let removed = loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
            .await
            .expect("the pod's removal event")
            .unwrap()
            .unwrap();
        if event.container_event_type == Kind::ContainerDeletedEvent as i32 {
            break event;
        }
    };
    assert_eq!(removed.container_id, pod);
    assert!(removed.pod_sandbox_status.is_none());
}

/// A container's writable layer as container stats and ImageFsInfo report
/// it: measured in the background every `stats_collect_period`, so what a
/// container writes (and deletes) shows within a period or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writable_layers_are_measured_every_stats_collect_period() {
    const GROWTH: u64 = 4 << 20;
    let node = cri_support::Node::start_with(cri_support::NodeOptions {
        stats_collect_period: Some(1),
        ..Default::default()
    })
    .await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let (_, pod, created) = node.run_sleeping_pod(&mut runtime, "usage").await;
    let layer = |runtime: &cri::runtime_service_client::RuntimeServiceClient<_>| {
        let (mut runtime, id) = (runtime.clone(), created.clone());
        async move {
            let stats = runtime
                .container_stats(cri::ContainerStatsRequest { container_id: id })
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap();
            let layer = stats.writable_layer.unwrap();
            let mountpoint = layer.fs_id.unwrap().mountpoint;
            assert!(
                mountpoint.ends_with("io.containerd.snapshotter.v1.overlayfs"),
                "{mountpoint}"
            );
            (layer.used_bytes.unwrap().value, layer.timestamp)
        }
    };
    let image_fs = || {
        let images = node.images();
        async move {
            images
                .await
                .image_fs_info(cri::ImageFsInfoRequest {})
                .await
                .unwrap()
                .into_inner()
                .image_filesystems[0]
                .used_bytes
                .unwrap()
                .value
        }
    };
    let (before, taken) = layer(&runtime).await;
    let fs_before = image_fs().await;

    let out = exec(
        &mut runtime,
        &created,
        &["sh", "-c", &format!("head -c {GROWTH} /dev/zero > /grown")],
    )
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let (grown, later) = eventually("the layer's growth measured", || async {
        let (used, at) = layer(&runtime).await;
        if used >= before + GROWTH {
            Ok((used, at))
        } else {
            Err(format!("{used} bytes (before: {before})"))
        }
    })
    .await;
    assert!(later > taken, "a new measurement has a new time");
    eventually("ImageFsInfo counts the layer's growth", || async {
        let used = image_fs().await;
        if used >= fs_before + GROWTH {
            Ok(())
        } else {
            Err(format!("{used} bytes (before: {fs_before})"))
        }
    })
    .await;

    let out = exec(&mut runtime, &created, &["rm", "/grown"]).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    eventually("the layer's shrinking measured", || async {
        let (used, _) = layer(&runtime).await;
        if used + GROWTH <= grown {
            Ok(())
        } else {
            Err(format!("{used} bytes (grown: {grown})"))
        }
    })
    .await;
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
}

/// The `Stream*` list calls (the kubelet's `CRIListStreaming`) answer
/// what the `List*` calls do, filters included, in batches of at least
/// one item; nothing to list is a stream that just ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_calls_answer_what_the_list_calls_do() {
    let node = Node::start(&[]).await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let mut pods = Vec::new();
    for name in ["stream-a", "stream-b"] {
        let config = pod_config(name, node.logs.path(), true);
        let pod = node.run_pod(&mut runtime, &config).await;
        start_container(
            &mut runtime,
            &pod,
            &config,
            container_config("sleeper", &node.busybox, &["sleep", "3600"]),
        )
        .await;
        pods.push(pod);
    }

    /// Every item of a stream; each reply must hold at least one.
    macro_rules! collect {
        ($call:expr, $field:ident) => {{
            let mut stream = $call.await.unwrap().into_inner();
            let mut items = Vec::new();
            while let Some(reply) = stream.message().await.unwrap() {
                assert!(!reply.$field.is_empty(), "an empty batch");
                items.extend(reply.$field);
            }
            items
        }};
    }
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    let listed = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    let streamed = collect!(
        runtime.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default()),
        pod_sandboxes
    );
    assert_eq!(streamed.len(), 2);
    assert_eq!(
        sorted(streamed.into_iter().map(|p| p.id).collect()),
        sorted(listed.into_iter().map(|p| p.id).collect())
    );

    let listed = runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    let streamed = collect!(
        runtime.stream_containers(cri::StreamContainersRequest::default()),
        containers
    );
    assert_eq!(streamed.len(), 2);
    assert_eq!(
        sorted(streamed.iter().map(|c| c.id.clone()).collect()),
        sorted(listed.iter().map(|c| c.id.clone()).collect())
    );
    // A filter as List takes it: the first pod's container only.
    let in_first = collect!(
        runtime.stream_containers(cri::StreamContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pods[0].clone(),
                ..Default::default()
            }),
        }),
        containers
    );
    assert_eq!(in_first.len(), 1);
    assert_eq!(in_first[0].pod_sandbox_id, pods[0]);

    let stats = collect!(
        runtime.stream_container_stats(cri::StreamContainerStatsRequest::default()),
        container_stats
    );
    assert_eq!(
        sorted(
            stats
                .iter()
                .map(|s| s.attributes.clone().unwrap().id)
                .collect()
        ),
        sorted(streamed.iter().map(|c| c.id.clone()).collect())
    );
    let pod_stats = collect!(
        runtime.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default()),
        pod_sandbox_stats
    );
    assert_eq!(
        sorted(
            pod_stats
                .iter()
                .map(|s| s.attributes.clone().unwrap().id)
                .collect()
        ),
        sorted(pods.clone())
    );

    let images = node.images().await;
    let listed = images
        .clone()
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    let streamed = collect!(
        images
            .clone()
            .stream_images(cri::StreamImagesRequest { filter: None }),
        images
    );
    assert_eq!(streamed, listed);

    // Nothing selected: no reply at all, and the stream ends.
    let none = collect!(
        runtime.stream_pod_sandboxes(cri::StreamPodSandboxesRequest {
            filter: Some(cri::PodSandboxFilter {
                id: "0000000000000000".into(),
                ..Default::default()
            }),
        }),
        pod_sandboxes
    );
    assert!(none.is_empty());
    let none = collect!(
        images.clone().stream_images(cri::StreamImagesRequest {
            filter: Some(cri::ImageFilter {
                image: Some(cri::ImageSpec {
                    image: "127.0.0.1:1/not/there:latest".into(),
                    ..Default::default()
                }),
            }),
        }),
        images
    );
    assert!(none.is_empty());

    for pod in pods {
        runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .unwrap();
    }
}

/// An image for image volumes: two layers, a directory to mount by
/// itself, a file, and links that would lead out of the image if they
/// were resolved on the host.
fn volume_image() -> crated_testimages::Image {
    use crated_testimages::LayerBuilder;
    let one = LayerBuilder::new()
        .dir("data")
        .and_then(|l| l.dir("data/sub"))
        .and_then(|l| l.file("data/sub/file", b"one"))
        .and_then(|l| l.file("data/afile", b"a"))
        .and_then(|l| l.symlink("data/up", "../../../../../.."))
        .and_then(|l| l.finish())
        .unwrap();
    let two = LayerBuilder::new()
        .dir("data")
        .and_then(|l| l.file("data/second", b"two"))
        .and_then(|l| l.finish())
        .unwrap();
    crated_testimages::image_with_config(
        "linux",
        crated_testimages::host_arch(),
        vec![one, two],
        serde_json::json!({}),
    )
    .unwrap()
}

/// [`volume_image`] pushed as `name` to the node's registry and pulled
/// through the CRI; its image id.
async fn pull_volume_image(node: &Node, name: &str) -> String {
    let registry = node.busybox.split('/').next().unwrap();
    let reference = format!("{registry}/{name}");
    crated_testimages::push(&reference, &volume_image())
        .await
        .unwrap();
    node.images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: reference,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref
}

/// How many mounts sit at `path` on the host.
fn mounts_at(path: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .count()
}

/// Image volumes (KEP 4639): an image's files mounted read-only into the
/// pod's containers, whole or one directory of it, once per pod whatever
/// the number of containers (also after a daemon restart); bad mounts
/// refused with cri-api's reason and nothing created; the pod's stop
/// unmounts them, its removal lets the collector take the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_mount_an_images_files_read_only_once_per_pod() {
    let mut node = Node::start(&[]).await;
    node.pull_busybox().await;
    let host = node.busybox.split('/').next().unwrap().to_owned();
    let data_id = pull_volume_image(&node, "test/data:1").await;
    let mut runtime = node.runtime().await;
    let config = pod_config("volumes", node.logs.path(), true);
    let pod = node.run_pod(&mut runtime, &config).await;
    let volume = |path: &str, sub: &str| cri::Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: data_id.clone(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    };
    let mut reader = container_config("reader", &node.busybox, &["sleep", "1000"]);
    reader.mounts = vec![volume("/vol", ""), volume("/sub", "data/sub")];
    let reader = start_container(&mut runtime, &pod, &config, reader).await;

    // Both layers' files, the sub directory alone, nothing writable.
    let read = exec(
        &mut runtime,
        &reader,
        &["cat", "/vol/data/sub/file", "/vol/data/second", "/sub/file"],
    )
    .await;
    assert_eq!(
        (
            read.exit_code,
            String::from_utf8_lossy(&read.stdout).as_ref()
        ),
        (0, "onetwoone"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let write = exec(&mut runtime, &reader, &["touch", "/vol/new"]).await;
    assert_ne!(write.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );

    // The status says where the image is mounted and which it is.
    let base = node
        .daemon
        .dir
        .path()
        .join("state/io.containerd.grpc.v1.cri/image-volumes")
        .join(&pod);
    let status = status_of(&mut runtime, &reader).await;
    let mount = |path: &str| {
        status
            .mounts
            .iter()
            .find(|m| m.container_path == path)
            .unwrap_or_else(|| panic!("{:?}", status.mounts))
            .clone()
    };
    let whole = mount("/vol");
    let target = std::path::PathBuf::from(&whole.host_path);
    assert_eq!(target.parent(), Some(base.as_path()), "{whole:?}");
    let image_ref = &whole.image.as_ref().unwrap().image_ref;
    assert!(
        image_ref.starts_with(&format!("{host}/test/data@sha256:")),
        "{image_ref}"
    );
    assert_eq!(
        std::path::PathBuf::from(&mount("/sub").host_path),
        target.join("data/sub")
    );
    assert_eq!(mounts_at(&whole.host_path), 1);
    let ctr = workspace_bin("ctr");
    let snapshots = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "snapshots", "ls"]));
    assert!(snapshots.contains(&whole.host_path), "{snapshots}");
    let leases = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "leases", "ls"]));
    assert!(leases.contains(&pod), "{leases}");

    // Another container of the pod, after a restart of the daemon, uses
    // the same mount.
    node.daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    node.daemon.spawn(&[]);
    let mut runtime = node.runtime().await;
    let mut second = container_config("second", &node.busybox, &["sleep", "1000"]);
    second.mounts = vec![volume("/data", "")];
    let second = start_container(&mut runtime, &pod, &config, second).await;
    let read = exec(&mut runtime, &second, &["cat", "/data/data/second"]).await;
    assert_eq!(String::from_utf8_lossy(&read.stdout), "two");
    assert_eq!(mounts_at(&whole.host_path), 1);

    // Refused, naming what is wrong, and nothing is created: a writable
    // image mount, an image not pulled, a sub path the image lacks (a link
    // climbing out of the image stays in it, where there is no /etc), a
    // file.
    let not_pulled = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (
            cri::Mount {
                readonly: false,
                ..volume("/w", "")
            },
            tonic::Code::InvalidArgument,
            "must be read-only",
        ),
        (
            cri::Mount {
                image: Some(cri::ImageSpec {
                    image: not_pulled.clone(),
                    ..Default::default()
                }),
                ..volume("/n", "")
            },
            tonic::Code::NotFound,
            "pull it first",
        ),
        (
            volume("/m", "data/missing"),
            tonic::Code::NotFound,
            "data/missing",
        ),
        (
            volume("/e", "data/up/etc"),
            tonic::Code::NotFound,
            "data/up/etc",
        ),
        (
            volume("/f", "data/afile"),
            tonic::Code::InvalidArgument,
            "not a directory",
        ),
    ];
    for (i, (bad, code, says)) in cases.into_iter().enumerate() {
        let mut config_bad = container_config(&format!("bad-{i}"), &node.busybox, &["true"]);
        config_bad.mounts = vec![bad];
        let err = runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config_bad),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(
            err.message().starts_with("ImageVolumeMountFailed: ") && err.message().contains(says),
            "{}",
            err.message()
        );
    }
    let containers = runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 2, "{containers:?}");

    // The stop unmounts and removes the view; the removal ends the lease.
    runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    assert_eq!(mounts_at(&whole.host_path), 0);
    assert!(!base.exists());
    let snapshots = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "snapshots", "ls"]));
    assert!(!snapshots.contains(&whole.host_path), "{snapshots}");
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let leases = ok(node.daemon.ctr(&ctr, &["-n", "k8s.io", "leases", "ls"]));
    assert!(!leases.contains(&pod), "{leases}");
}

/// CDI devices (the kubelet's `CDI_devices`, from DRA drivers and device
/// plugins, and `cdi.k8s.io/…` annotations): each device's edits from the
/// spec files in `cdi_spec_dirs`, read when the container is created — a
/// device node with cgroup access, a mount, variables, the spec's own
/// edits once. An unknown device is refused with the reason, naming the
/// spec files that could not be used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_devices_are_injected_from_the_spec_directories() {
    let cdi = tempfile::tempdir().unwrap();
    let node = cri_support::Node::start_with(cri_support::NodeOptions {
        cdi_spec_dirs: Some(vec![cdi.path().join("etc"), cdi.path().join("run")]),
        ..Default::default()
    })
    .await;
    node.pull_busybox().await;
    // Written after the daemon started: specs are read at each create.
    let vendor_lib = cdi.path().join("vendor-lib");
    std::fs::create_dir_all(&vendor_lib).unwrap();
    std::fs::write(vendor_lib.join("lib.txt"), "vendor library\n").unwrap();
    std::fs::create_dir_all(cdi.path().join("etc")).unwrap();
    std::fs::create_dir_all(cdi.path().join("run")).unwrap();
    std::fs::write(
        cdi.path().join("run/crated-test.yaml"),
        format!(
            "cdiVersion: 0.6.0\n\
             kind: crated.test/null\n\
             containerEdits:\n  env: [CDI_VENDOR=crated]\n\
             devices:\n\
             - name: \"0\"\n  containerEdits:\n    env: [CDI_DEVICE=null0]\n    \
               deviceNodes:\n    - path: /dev/cdi-null\n      hostPath: /dev/null\n      permissions: rw\n    \
               mounts:\n    - hostPath: {}\n      containerPath: /opt/vendor\n      options: [ro, bind]\n\
             - name: by-annotation\n  containerEdits:\n    env: [FROM_ANNOTATION=yes]\n",
            vendor_lib.display()
        ),
    )
    .unwrap();
    std::fs::write(cdi.path().join("etc/broken.json"), "{\"cdiVersion\": ").unwrap();
    let mut runtime = node.runtime().await;
    let config = pod_config("cdi", node.logs.path(), true);
    let pod = node.run_pod(&mut runtime, &config).await;
    let mut app = container_config("app", &node.busybox, &["sleep", "1000"]);
    app.cdi_devices = vec![cri::CdiDevice {
        name: "crated.test/null=0".into(),
    }];
    app.annotations.insert(
        "cdi.k8s.io/extra".into(),
        "crated.test/null=by-annotation".into(),
    );
    let app = start_container(&mut runtime, &pod, &config, app).await;
    let out = exec(
        &mut runtime,
        &app,
        &[
            "sh",
            "-c",
            "echo $CDI_VENDOR $CDI_DEVICE $FROM_ANNOTATION; cat /opt/vendor/lib.txt; \
             test -c /dev/cdi-null && echo char device; touch /opt/vendor/x || echo read-only",
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "crated null0 yes\nvendor library\nchar device\nread-only\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The device node is /dev/null's, with the cgroup access the spec
    // grants.
    let spec = runtime_spec(&mut runtime, &app).await;
    let linux = &spec["linux"];
    let node_entry = linux["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "/dev/cdi-null")
        .unwrap_or_else(|| panic!("{linux}"));
    assert_eq!(
        (
            &node_entry["type"],
            &node_entry["major"],
            &node_entry["minor"]
        ),
        (&"c".into(), &1.into(), &3.into())
    );
    assert!(
        linux["resources"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["allow"] == true
                && r["major"] == 1
                && r["minor"] == 3
                && r["access"] == "rw"),
        "{linux}"
    );

    // Unknown devices and bad names are refused, naming them.
    let mut unknown = container_config("unknown", &node.busybox, &["true"]);
    unknown.cdi_devices = vec![cri::CdiDevice {
        name: "crated.test/null=9".into(),
    }];
    let err = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(unknown),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    assert!(
        err.message()
            .contains("unresolvable CDI devices crated.test/null=9")
            && err.message().contains("broken.json"),
        "{}",
        err.message()
    );
    let mut bad = container_config("bad", &node.busybox, &["true"]);
    bad.annotations
        .insert("cdi.k8s.io/x".into(), "not-qualified".into());
    let err = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(bad),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(err.message().contains("not-qualified"), "{}", err.message());
    stop_and_remove_pod(&mut runtime, &pod).await;
}

/// A runtime handler's settings from a containerd config reach its pods
/// and containers: the base spec they start from (`base_runtime_spec`,
/// here with a file limit of its own), the pod and container annotations
/// passed through by pattern, privileged containers without the host's
/// devices, and the runc flags of its options (seen by a runc wrapper
/// named as `BinaryName`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_handler_settings_shape_the_specs() {
    let work = tempfile::tempdir().unwrap();
    // The base: Debian's ctr's default spec (cgroup path "/default"),
    // with RLIMIT_NOFILE 4242.
    let default_spec = ok(std::process::Command::new(common::debian_ctr())
        .args(["oci", "spec"])
        .output()
        .unwrap());
    let mut base: serde_json::Value = serde_json::from_str(&default_spec).unwrap();
    base["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 4242, "soft": 4242}]);
    let base_path = work.path().join("base.json");
    std::fs::write(&base_path, base.to_string()).unwrap();
    let args_log = work.path().join("runc-args.log");
    let wrapper = work.path().join("runc-wrapper");
    common::runc_recording_to(&wrapper, &args_log);
    let runtime_table = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]";
    let node = cri_support::Node::start_with(cri_support::NodeOptions {
        cri_tables: format!(
            "{runtime_table}\n\
             runtime_type = \"io.containerd.runc.v2\"\n\
             base_runtime_spec = {base:?}\n\
             pod_annotations = [\"example.com/*\"]\n\
             container_annotations = [\"vendor.io/fl?g\"]\n\
             privileged_without_host_devices = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n\
             BinaryName = {wrapper:?}\n\
             NoPivotRoot = true\n\
             NoNewKeyring = true\n",
            base = base_path.display().to_string(),
            wrapper = wrapper.display().to_string(),
        ),
        ..Default::default()
    })
    .await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let mut config = pod_config("handler", node.logs.path(), true);
    config.annotations = [
        ("example.com/tier".to_owned(), "gold".to_owned()),
        ("other.org/x".to_owned(), "no".to_owned()),
    ]
    .into();
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let pod = node.run_pod(&mut runtime, &config).await;
    let mut app = container_config("app", &node.busybox, &["sleep", "1000"]);
    app.annotations = [
        ("vendor.io/flag".to_owned(), "on".to_owned()),
        ("vendor.io/other".to_owned(), "no".to_owned()),
    ]
    .into();
    app.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let app = start_container(&mut runtime, &pod, &config, app).await;

    let limit = exec(&mut runtime, &app, &["sh", "-c", "ulimit -n"]).await;
    assert_eq!(String::from_utf8_lossy(&limit.stdout).trim(), "4242");
    let spec = runtime_spec(&mut runtime, &app).await;
    // Its own cgroup, not the base's.
    assert_eq!(spec["linux"]["cgroupsPath"], format!("/k8s.io/{app}"));
    let notes = spec["annotations"].as_object().unwrap();
    assert_eq!(notes["example.com/tier"], "gold", "{notes:?}");
    assert_eq!(notes["vendor.io/flag"], "on", "{notes:?}");
    assert!(!notes.contains_key("other.org/x") && !notes.contains_key("vendor.io/other"));
    assert_eq!(notes["io.kubernetes.cri.sandbox-id"], pod.as_str());
    // Privileged, yet none of the host's device nodes, nor access to all.
    let devices = spec["linux"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !devices
            .iter()
            .any(|d| d["path"] == "/dev/loop-control" || d["path"] == "/dev/kmsg"),
        "{devices:?}"
    );
    let rules = spec["linux"]["resources"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !rules
            .iter()
            .any(|r| r["allow"] == true && r.get("major").is_none() && r.get("type").is_none()),
        "{rules:?}"
    );
    let effective = &spec["process"]["capabilities"]["effective"];
    assert!(
        effective
            .as_array()
            .is_some_and(|caps| caps.iter().any(|c| c == "CAP_SYS_ADMIN")),
        "still privileged: {effective}"
    );
    // The pod's own spec has the pod annotation too.
    let ctr = workspace_bin("ctr");
    let sandbox = ok(node
        .daemon
        .ctr(&ctr, &["-n", "k8s.io", "containers", "info", &pod]));
    assert!(sandbox.contains("example.com/tier"), "{sandbox}");
    // runc was created with the options' flags.
    let args = std::fs::read_to_string(&args_log).unwrap();
    let creates: Vec<&str> = args.lines().filter(|l| l.contains(" create ")).collect();
    assert_eq!(creates.len(), 2, "{args}");
    assert!(
        creates
            .iter()
            .all(|l| l.contains("--no-pivot") && l.contains("--no-new-keyring")),
        "{args}"
    );
    stop_and_remove_pod(&mut runtime, &pod).await;
}

/// Settings of containerd's CRI section that shape every container's
/// spec: `unset_seccomp_profile` for a container that asks for no
/// profile, `disable_proc_mount` keeping the default masked paths,
/// `disable_cgroup` (no cgroup path, no limits) and
/// `disable_hugetlb_controller` (no huge page limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_section_settings_shape_every_container() {
    let node = cri_support::Node::start_with(cri_support::NodeOptions {
        cri_keys: vec![
            "unset_seccomp_profile = \"runtime/default\"".into(),
            "disable_proc_mount = true".into(),
            "disable_cgroup = true".into(),
            "disable_hugetlb_controller = true".into(),
        ],
        ..Default::default()
    })
    .await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let mut config = pod_config("settings", node.logs.path(), true);
    config.linux.as_mut().unwrap().cgroup_parent = "/crated-test-pods".into();
    let pod = node.run_pod(&mut runtime, &config).await;
    let mut app = container_config("app", &node.busybox, &["sleep", "1000"]);
    app.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        }),
        security_context: Some(cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/crated-test-masked".into()],
            ..Default::default()
        }),
    });
    let app = start_container(&mut runtime, &pod, &config, app).await;
    let spec = runtime_spec(&mut runtime, &app).await;
    let linux = &spec["linux"];
    // RuntimeDefault: a syscall allow list whose default is to refuse.
    assert_eq!(
        linux["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
        "{linux}"
    );
    let masked = linux["maskedPaths"].to_string();
    assert!(
        masked.contains("/proc/kcore") && !masked.contains("crated-test-masked"),
        "{masked}"
    );
    assert!(linux.get("cgroupsPath").is_none(), "{linux}");
    let resources = &linux["resources"];
    assert!(resources["memory"]["limit"].is_null(), "{resources}");
    assert!(resources["hugepageLimits"].is_null(), "{resources}");
    let status = exec(
        &mut runtime,
        &app,
        &["grep", "Seccomp:", "/proc/self/status"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains('2'),
        "filter mode: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    stop_and_remove_pod(&mut runtime, &pod).await;
}

/// `cni.conf_template` on a node without a CNI config: the kubelet's pod
/// CIDR (UpdateRuntimeConfig) renders it into `conf_dir` once, and the
/// network becomes ready; a CIDR that is not one, or a template that does
/// not parse, is refused naming it and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cni_template_is_rendered_once_for_the_pod_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("cni.template");
    std::fs::write(&template, "{{range .PodCIDRRanges}}").unwrap();
    let node = Node::start_with(NodeOptions {
        cni_conf_template: Some(template.clone()),
        ..NodeOptions::default()
    })
    .await;
    let mut runtime = node.runtime().await;
    let conf = node
        .daemon
        .dir
        .path()
        .join("cni/net.d/10-containerd-net.conflist");
    let update = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    let network_ready = |runtime: &cri::runtime_service_client::RuntimeServiceClient<_>| {
        let mut runtime = runtime.clone();
        async move {
            let status = runtime
                .status(cri::StatusRequest { verbose: false })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            status
                .conditions
                .iter()
                .find(|c| c.r#type == "NetworkReady")
                .unwrap()
                .status
        }
    };
    assert!(!network_ready(&runtime).await);

    let err = runtime
        .update_runtime_config(update("10.88.16.0"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("10.88.16.0"), "{err}");
    let err = runtime
        .update_runtime_config(update("10.88.16.0/24"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(
        err.message().contains(&template.display().to_string()),
        "{err}"
    );
    assert!(!conf.exists());
    assert!(!network_ready(&runtime).await);

    std::fs::write(
        &template,
        r#"{"cniVersion": "1.0.0", "name": "templated", "plugins": [{"type": "bridge", "bridge": "tmpl0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}]}"#,
    )
    .unwrap();
    runtime.update_runtime_config(update("")).await.unwrap();
    assert!(!conf.exists(), "an empty pod CIDR renders nothing");
    runtime
        .update_runtime_config(update("10.88.16.0/24"))
        .await
        .unwrap();
    let rendered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    assert_eq!(
        rendered["plugins"][0]["ipam"]["ranges"],
        serde_json::json!([[{"subnet": "10.88.16.0/24"}]])
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert!(network_ready(&runtime).await);

    // Once there is a config, a new CIDR does not rewrite it.
    runtime
        .update_runtime_config(update("10.99.0.0/24"))
        .await
        .unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    assert_eq!(again, rendered);
}

/// A runtime handler with a snapshotter of its own (containerd 1.7's
/// `runtimes.<name>.snapshotter`): a pull for the handler unpacks into it
/// (one for an unknown handler is refused naming it), its pods' sandbox
/// and containers get their root filesystems from it — an image pulled for
/// the default one is unpacked there when needed — and their stats
/// measure it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_handler_uses_its_own_snapshotter() {
    let runtimes = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
    let node = Node::start_with(NodeOptions {
        cri_tables: format!(
            "{runtimes}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             {runtimes}.plain]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"native\"\n"
        ),
        ..NodeOptions::default()
    })
    .await;
    let ctr = workspace_bin("ctr");
    let native_snapshots = || {
        ok(node.daemon.ctr(
            &ctr,
            &["-n", "k8s.io", "snapshots", "--snapshotter", "native", "ls"],
        ))
    };
    // A pull for the handler unpacks into its snapshotter; one for a
    // handler that is not configured is refused.
    let mut images = node.images().await;
    let spec = |handler: &str| cri::ImageSpec {
        image: node.busybox.clone(),
        runtime_handler: handler.into(),
        ..Default::default()
    };
    let err = images
        .pull_image(cri::PullImageRequest {
            image: Some(spec("nope")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert!(err.message().contains("nope"), "{err}");
    assert!(rows(&native_snapshots()).is_empty());
    images
        .pull_image(cri::PullImageRequest {
            image: Some(spec("plain")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!rows(&native_snapshots()).is_empty());
    // The pause image, pulled for the default snapshotter with the pod,
    // is unpacked into the handler's when its sandbox needs it.
    let mut runtime = node.runtime().await;
    let config = pod_config("plain", node.logs.path(), true);
    let pod = node
        .run_pod_with_handler(&mut runtime, &config, "plain")
        .await;
    let app = start_container(
        &mut runtime,
        &pod,
        &config,
        container_config(
            "app",
            &node.busybox,
            &["sh", "-c", "echo hi > /written; sleep 1000"],
        ),
    )
    .await;
    for id in [&pod, &app] {
        let info = ok(node
            .daemon
            .ctr(&ctr, &["-n", "k8s.io", "containers", "info", id]));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["Snapshotter"], "native", "{id}: {info}");
    }
    assert_eq!(
        exec(&mut runtime, &app, &["cat", "/written"]).await.stdout,
        b"hi\n"
    );
    let stats = runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: app.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let layer = stats.writable_layer.unwrap();
    assert!(
        layer
            .fs_id
            .unwrap()
            .mountpoint
            .ends_with("io.containerd.snapshotter.v1.native"),
        "the writable layer is measured in the runtime's snapshotter"
    );
    assert!(native_snapshots().contains(&app));
    stop_and_remove_pod(&mut runtime, &pod).await;
    assert!(!native_snapshots().contains(&app));
}

/// A `hostUsers: false` pod as the kubelet asks for it: mode POD with one
/// range of 65536 IDs in the pod's and each container's namespace options,
/// its volumes with the same mappings.
fn userns_options(host_id: u32) -> cri::NamespaceOption {
    let range = vec![cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65536,
    }];
    cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: range.clone(),
            gids: range,
        }),
        ..Default::default()
    }
}

fn with_userns(config: &mut cri::PodSandboxConfig, options: cri::NamespaceOption) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    let mut merged = security.namespace_options.clone().unwrap_or_default();
    merged.userns_options = options.userns_options;
    security.namespace_options = Some(merged);
}

/// `hostUsers: false`: the pod runs as a range of host IDs of its own, its
/// image's files and its volumes show as its root's (ID-mapped, nothing
/// rewritten on disk), its network namespace is its own to set sysctls in,
/// under the overlay and the native snapshotter alike; bad user namespace
/// options are refused; nothing stays mounted after the pod is removed.
#[test]
fn a_pod_with_its_own_user_namespace_owns_its_files_and_network() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let runtimes = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
        let mut node = Node::start_with(NodeOptions {
            cni: vec![(
                "10-bridge.conflist".into(),
                bridge_conflist("crated-userns", "10.88.9.0/24", ipam.path()),
            )],
            cri_tables: format!(
                "{runtimes}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
                 {runtimes}.plain]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"native\"\n"
            ),
            ..NodeOptions::default()
        })
        .await;
        node.pull_busybox().await;
        let mut runtime = node.runtime().await;
        let status = runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        for handler in &status.runtime_handlers {
            let features = handler.features.as_ref().unwrap();
            assert!(features.user_namespaces, "{handler:?}");
        }

        // Refused before anything is made: two ranges, a host-network pod,
        // a mode other than NODE and POD.
        let mut two = pod_config("two", node.logs.path(), false);
        let mut options = userns_options(196_608);
        if let Some(u) = options.userns_options.as_mut() {
            let extra = u.uids[0];
            u.uids.push(extra);
        }
        with_userns(&mut two, options);
        let mut host = pod_config("host", node.logs.path(), true);
        with_userns(&mut host, userns_options(196_608));
        let mut target = pod_config("target", node.logs.path(), false);
        let mut options = userns_options(196_608);
        if let Some(u) = options.userns_options.as_mut() {
            u.mode = cri::NamespaceMode::Target as i32;
        }
        with_userns(&mut target, options);
        for (config, says) in [
            (two, "only one mapping line"),
            (host, "node's network"),
            (target, "unsupported user namespace mode TARGET"),
        ] {
            let err = runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.message().contains(says), "{err}");
        }
        let listed = runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(listed.is_empty(), "{listed:?}");

        // A volume of the node's: a file of root's, one of user 1000's.
        let volume = tempfile::tempdir().unwrap();
        std::fs::write(volume.path().join("f"), "x").unwrap();
        std::fs::write(volume.path().join("g"), "x").unwrap();
        std::os::unix::fs::chown(volume.path().join("g"), Some(1000), Some(1000)).unwrap();
        let log_file = volume.path().join("termination-log");
        std::fs::write(&log_file, "").unwrap();
        // An image volume (KEP 4639) of two layers: its view is an overlay.
        let data_id = pull_volume_image(&node, "test/userns-data:1").await;

        for (handler, host_id) in [("", 196_608u32), ("plain", 262_144)] {
            let name = format!("userns{}", handler);
            let mut config = pod_config(&name, node.logs.path(), false);
            with_userns(&mut config, userns_options(host_id));
            // A sysctl of the pod's network, which runc writes as the
            // pod's root: the namespace must be the pod's.
            config.linux.get_or_insert_with(Default::default).sysctls = [(
                "net.ipv4.ip_unprivileged_port_start".to_owned(),
                "80".to_owned(),
            )]
            .into();
            let pod = node
                .run_pod_with_handler(&mut runtime, &config, handler)
                .await;
            let ns = userns_options(host_id);
            let mappings = ns.userns_options.clone().unwrap();
            // Its stdio reopened by path goes through the pipes' owner,
            // which must be the pod's root (as where images link logs).
            let mut app = container_config(
                "app",
                &node.busybox,
                &[
                    "sh",
                    "-c",
                    "echo via-dev-stdout > /dev/stdout; echo via-dev-stderr > /dev/stderr; \
                     exec sleep 1000",
                ],
            );
            app.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(ns.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let mount = |host: &std::path::Path, at: &str| cri::Mount {
                host_path: host.display().to_string(),
                container_path: at.into(),
                uid_mappings: mappings.uids.clone(),
                gid_mappings: mappings.gids.clone(),
                ..Default::default()
            };
            let image_mount = cri::Mount {
                readonly: true,
                image: Some(cri::ImageSpec {
                    image: data_id.clone(),
                    ..Default::default()
                }),
                uid_mappings: mappings.uids.clone(),
                gid_mappings: mappings.gids.clone(),
                container_path: "/vol".into(),
                ..Default::default()
            };
            app.mounts = vec![
                mount(volume.path(), "/data"),
                mount(&log_file, "/dev/termination-log"),
                image_mount,
            ];
            // A container asking for another range than its pod's.
            let mut stranger = app.clone();
            stranger.metadata.as_mut().unwrap().name = "stranger".into();
            if let Some(sc) = stranger
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
            {
                sc.namespace_options = Some(userns_options(host_id + 65536));
            }
            let err = runtime
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(stranger),
                    sandbox_config: Some(config.clone()),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.message().contains("is not its pod's"), "{err}");

            let app = start_container(&mut runtime, &pod, &config, app).await;
            let out = exec(
                &mut runtime,
                &app,
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
                     stat -c %u:%g / /bin/busybox /etc/hosts /data/f /data/g /dev/termination-log \
                     /vol/data/second; \
                     cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
                     touch /written /data/new && echo done > /dev/termination-log && echo wrote",
                ],
            )
            .await;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let lines: Vec<Vec<&str>> = stdout
                .lines()
                .map(|l| l.split_whitespace().collect())
                .collect();
            let range = ["0".to_owned(), host_id.to_string(), "65536".to_owned()];
            assert_eq!(lines.len(), 12, "{stdout}{stderr}\n{}", node.daemon.logs());
            assert_eq!(lines[0], range, "uid_map: {stdout}");
            assert_eq!(lines[1], range, "gid_map: {stdout}");
            assert_eq!(lines[2], ["0"], "the pod's root: {stdout}");
            for (line, owner) in
                lines[3..10]
                    .iter()
                    .zip(["0:0", "0:0", "0:0", "0:0", "1000:1000", "0:0", "0:0"])
            {
                assert_eq!(line, &[owner], "{stdout}");
            }
            assert_eq!(lines[10], ["80"], "a sysctl of the pod's network: {stdout}");
            assert_eq!(lines[11], ["wrote"], "{stdout}{stderr}");
            let out = exec(
                &mut runtime,
                &app,
                &[
                    "sh",
                    "-c",
                    "echo exec-out > /dev/stdout; echo exec-err > /dev/stderr",
                ],
            )
            .await;
            assert_eq!(
                (
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                ("exec-out\n".into(), "exec-err\n".into()),
                "an exec reopening its stdio"
            );
            let log = node.logs.path().join(&name).join("app.log");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let logged = loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("via-dev-stderr") && text.contains("via-dev-stdout")
                    || std::time::Instant::now() > deadline
                {
                    break text;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            };
            assert!(
                logged.contains(" stdout F via-dev-stdout\n")
                    && logged.contains(" stderr F via-dev-stderr\n"),
                "{logged}"
            );
            // The shim's rewritten config stays owner-only, its ID-mapped
            // copies are gone once runc made the container.
            let bundle = node
                .daemon
                .dir
                .path()
                .join("state/io.containerd.runtime.v2.task/k8s.io")
                .join(&app);
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(bundle.join("config.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "config.json mode {mode:o}");
            assert!(!bundle.join("idmapped").exists());
            // On the node: the process runs as the range's root, what it
            // wrote in the volume is the node's root's, nothing rewritten.
            let verbose = runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: app.clone(),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
            let pid = info["pid"].as_u64().unwrap();
            let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let uids = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert_eq!(
                uids.split_whitespace().nth(1),
                Some(host_id.to_string().as_str()),
                "{uids}"
            );
            use std::os::unix::fs::MetadataExt as _;
            let new = std::fs::metadata(volume.path().join("new")).unwrap();
            assert_eq!((new.uid(), new.gid()), (0, 0));
            assert_eq!(std::fs::read_to_string(&log_file).unwrap(), "done\n");
            std::fs::remove_file(volume.path().join("new")).unwrap();
            let g = std::fs::metadata(volume.path().join("g")).unwrap();
            assert_eq!(g.uid(), 1000, "the volume is not rewritten");

            if handler.is_empty() {
                // A daemon killed and restarted puts a new container in the
                // same user namespace.
                node.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
                node.daemon.spawn(&[]);
                runtime = node.runtime().await;
                let mut later = container_config("later", &node.busybox, &["sleep", "1000"]);
                later.linux = Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(ns.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                let later = start_container(&mut runtime, &pod, &config, later).await;
                let out = exec(&mut runtime, &later, &["cat", "/proc/self/uid_map"]).await;
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let seen: Vec<&str> = stdout.split_whitespace().collect();
                assert_eq!(seen, range, "after the restart: {stdout}");
            }
            let pod_status = runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.clone(),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            let info: serde_json::Value = serde_json::from_str(&pod_status.info["info"]).unwrap();
            let netns = std::path::PathBuf::from(info["netNamespace"].as_str().unwrap());
            let mut pinned = netns.clone().into_os_string();
            pinned.push(".userns");
            let pinned = std::path::PathBuf::from(pinned);
            assert!(pinned.exists(), "{}", pinned.display());
            stop_and_remove_pod(&mut runtime, &pod).await;
            assert!(!netns.exists() && !pinned.exists(), "{}", netns.display());
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = node.daemon.dir.path().display().to_string();
        let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&dir)).collect();
        assert!(left.is_empty(), "{left:#?}");
    });
}

/// A runtime with a `cni_conf_dir` of its own (containerd 1.7, for
/// runtimes whose pods need another network) puts its pods on that
/// network and the others on the node's; NetworkReady asks both, naming
/// the runtime whose network is missing; each pod's network is torn down
/// by the configuration that set it up, its address freed there.
#[test]
fn a_runtime_with_its_own_cni_conf_dir_puts_its_pods_on_its_network() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let alt = tempfile::tempdir().unwrap();
        let runtimes = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
        let node = Node::start_with(NodeOptions {
            cni: vec![(
                "10-bridge.conflist".into(),
                bridge_conflist("crated-node", "10.88.17.0/24", ipam.path()),
            )],
            cri_tables: format!(
                "{runtimes}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
                 {runtimes}.alt]\nruntime_type = \"io.containerd.runc.v2\"\ncni_conf_dir = {:?}\n",
                alt.path().display().to_string()
            ),
            ..NodeOptions::default()
        })
        .await;
        let mut runtime = node.runtime().await;
        let ready = network_ready(&mut runtime).await;
        assert!(
            !ready.status && ready.message.contains("\"alt\""),
            "{ready:?}"
        );
        std::fs::write(
            alt.path().join("10-alt.conflist"),
            bridge_conflist("crated-alt", "10.88.18.0/24", ipam.path()),
        )
        .unwrap();
        let ready = network_ready(&mut runtime).await;
        assert!(ready.status, "{ready:?}");

        for (handler, network, subnet) in [
            ("", "crated-node", "10.88.17."),
            ("alt", "crated-alt", "10.88.18."),
        ] {
            let config = pod_config(&format!("on-{network}"), node.logs.path(), false);
            let pod = node
                .run_pod_with_handler(&mut runtime, &config, handler)
                .await;
            let status = runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.clone(),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
            let ip = status.status.unwrap().network.unwrap().ip;
            assert!(ip.starts_with(subnet), "{handler:?}: {ip}");
            // What the networks gave the pod, as containerd's verbose info
            // shows it (`crictl inspectp … | jq .info.cniResult`).
            let eth0 = &info["cniResult"]["Interfaces"]["eth0"];
            assert_eq!(eth0["IPConfigs"][0]["IP"], ip.as_str(), "{info}");
            assert_eq!(
                eth0["IPConfigs"][0]["Gateway"],
                format!("{subnet}1"),
                "{info}"
            );
            assert_eq!(eth0["Sandbox"], info["netNamespace"], "{info}");
            assert_eq!(eth0["Mac"].as_str().map(str::len), Some(17), "{info}");
            let lo = &info["cniResult"]["Interfaces"]["lo"]["IPConfigs"];
            assert_eq!(lo[0]["IP"], "127.0.0.1", "{info}");
            assert_eq!(allocated_ips(ipam.path(), network), vec![ip]);
            stop_and_remove_pod(&mut runtime, &pod).await;
            assert!(
                allocated_ips(ipam.path(), network).is_empty(),
                "{handler:?}: the address stays allocated"
            );
        }
    });
}

/// An ExecSync whose command leaves a process in the background, which
/// holds the output open past the exit, answers once
/// `drain_exec_sync_io_timeout` (1 s here, 5 s by default) has passed,
/// with what the command wrote by then, instead of waiting as long as
/// that process lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_sync_leaving_a_process_behind_answers_after_the_drain() {
    let node = Node::start_with(NodeOptions {
        cri_keys: vec!["drain_exec_sync_io_timeout = \"1s\"".into()],
        ..Default::default()
    })
    .await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let (_, pod, app) = node.run_sleeping_pod(&mut runtime, "drain").await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        exec(
            &mut runtime,
            &app,
            &["sh", "-c", "echo hi; (sleep 4; echo late; sleep 300) &"],
        ),
    )
    .await
    .expect("ExecSync waited for the background process");
    // "late" comes 4 s after the exit: past this drain, within the default.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.exit_code, 0);
    stop_and_remove_pod(&mut runtime, &pod).await;
}

/// A runtime handler's `runtime_path` (containerd's key for a shim binary
/// elsewhere than the PATH): its pods' sandbox and containers run under
/// that shim — here Debian's containerd shim — while the default
/// handler's run under crated's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_handler_runs_its_pods_under_its_runtime_path() {
    const DEBIAN_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
    let runtimes = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
    let node = Node::start_with(NodeOptions {
        cri_tables: format!(
            "{runtimes}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             {runtimes}.debian]\nruntime_type = \"io.containerd.runc.v2\"\n\
             runtime_path = {DEBIAN_SHIM:?}\n\
             {runtimes}.debian.options]\nNoNewKeyring = true\n"
        ),
        ..NodeOptions::default()
    })
    .await;
    node.pull_busybox().await;
    let mut runtime = node.runtime().await;
    let shim_of = |pid: u64| {
        let shim = common::parent_of(&pid.to_string());
        std::fs::read_link(format!("/proc/{shim}/exe")).unwrap()
    };
    for (handler, shim) in [
        ("debian", std::path::PathBuf::from(DEBIAN_SHIM)),
        ("", workspace_bin("containerd-shim-runc-v2")),
    ] {
        let name = format!(
            "shim-{}",
            if handler.is_empty() {
                "default"
            } else {
                handler
            }
        );
        let config = pod_config(&name, node.logs.path(), true);
        let pod = node
            .run_pod_with_handler(&mut runtime, &config, handler)
            .await;
        let app = start_container(
            &mut runtime,
            &pod,
            &config,
            container_config("app", &node.busybox, &["sleep", "1000"]),
        )
        .await;
        let pod_info = runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let pod_info: serde_json::Value = serde_json::from_str(&pod_info.info["info"]).unwrap();
        let app_info = runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: app.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let app_info: serde_json::Value = serde_json::from_str(&app_info.info["info"]).unwrap();
        // containerd's fields, which `crictl inspectp` shows.
        assert_eq!(pod_info["processStatus"], "running", "{pod_info}");
        let named = if handler.is_empty() { "runc" } else { handler };
        assert_eq!(pod_info["runtimeHandler"], named, "{pod_info}");
        assert_eq!(pod_info["config"]["metadata"]["name"], name, "{pod_info}");
        assert_eq!(pod_info["netNamespaceClosed"], false, "{pod_info}");
        assert!(pod_info["runtimeSpec"]["process"].is_object(), "{pod_info}");
        assert_eq!(app_info["config"]["metadata"]["name"], "app", "{app_info}");
        let options = if handler.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!({"no_new_keyring": true})
        };
        assert_eq!(pod_info["runtimeOptions"], options, "{pod_info}");
        assert_eq!(app_info["runtimeOptions"], options, "{app_info}");
        for (what, info) in [("sandbox", &pod_info), ("container", &app_info)] {
            let pid = info["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("{what}: {info}"));
            assert_eq!(shim_of(pid), shim, "{handler:?}: the {what}'s shim");
        }
        assert_eq!(
            exec(&mut runtime, &app, &["echo", "hi"]).await.stdout,
            b"hi\n",
            "{handler:?}"
        );
        stop_and_remove_pod(&mut runtime, &pod).await;
    }
}
