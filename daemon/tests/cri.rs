//! The CRI plugin on the daemon's socket, driven as kubelet drives it
//! (`runtime.v1` over gRPC): version, status, runtime config, and images
//! pulled from a loopback registry, listed, looked up by tag, digest and
//! id, and removed — recorded as containerd's CRI records them, so
//! `ctr -n k8s.io images ls` shows them.

#![allow(clippy::unwrap_used)]

mod common;

use common::{debian_ctr, ok, registry_with_busybox, Daemon};
use crated_cri::runtime::v1 as cri;
use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_owned(),
        ..cri::ImageSpec::default()
    })
}

async fn images(channel: &Channel) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(channel.clone())
}

/// Pulls `reference` through `service`; the image's id. A failure fails
/// the test with `daemon`'s log.
async fn pull_id(
    daemon: &Daemon,
    service: &mut ImageServiceClient<Channel>,
    reference: &str,
) -> String {
    service
        .pull_image(cri::PullImageRequest {
            image: image_spec(reference),
            ..cri::PullImageRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {reference}: {e}\n{}", daemon.logs()))
        .into_inner()
        .image_ref
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_status_and_runtime_config() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let channel = daemon.channel().await;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let version = runtime
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "crated");
    assert_eq!(version.runtime_api_version, "v1");
    let status = runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let ready = |kind: &str| conditions.iter().find(|c| c.r#type == kind).unwrap().status;
    assert!(ready("RuntimeReady"));
    assert!(status.info.contains_key("config"));
    assert!(status.runtime_handlers.iter().any(|h| h.name == "runc"));
    let config = runtime
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );
    // A request without its config is refused, naming what is missing.
    let err = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("sandbox config"),
        "{}",
        err.message()
    );
    // The metrics the kubelet can ask for; no pod, no pod metrics.
    let descriptors = runtime
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    assert!(
        descriptors
            .iter()
            .any(|d| d.name == "container_memory_working_set_bytes"),
        "{descriptors:?}"
    );
    let pods = runtime
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    assert!(pods.is_empty(), "{pods:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pull_list_status_and_remove_as_containerds_cri() {
    let (_registry, reference) = registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let channel = daemon.channel().await;
    let mut service = images(&channel).await;

    let id = pull_id(&daemon, &mut service, &reference).await;
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    // Three records, as containerd's CRI makes them, all labelled.
    let listed = ok(daemon.ctr(&debian_ctr(), &["-n", "k8s.io", "images", "ls"]));
    let rows = common::rows(&listed);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert!(names.contains(&reference.as_str()), "{listed}");
    assert!(names.contains(&id.as_str()), "{listed}");
    let digest_ref = names
        .iter()
        .find(|n| n.contains("@sha256:"))
        .unwrap_or_else(|| panic!("no digest record in:\n{listed}"))
        .to_string();
    assert!(
        rows.iter().all(|r| r
            .last()
            .unwrap()
            .contains("io.cri-containerd.image=managed")),
        "{listed}"
    );

    // Pulled again: the same image, and the records that already point at
    // it are left as they are (no update written or published).
    let mut events = std::process::Command::new(debian_ctr())
        .arg("--address")
        .arg(&daemon.address)
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // `ctr events` subscribes a moment after it starts.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let again = pull_id(&daemon, &mut service, &reference).await;
    assert_eq!(again, id);
    // A namespace created after it marks the end of what the pull published.
    ok(daemon.ctr(&debian_ctr(), &["namespaces", "create", "after-repull"]));
    let seen = {
        use std::io::BufRead as _;
        let mut seen = String::new();
        let stdout = events.stdout.take().unwrap();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("/namespaces/create") {
                break;
            }
        }
        let _ = events.kill();
        let _ = events.wait();
        seen
    };
    for record in [&id, &digest_ref, &reference] {
        assert!(
            !seen
                .lines()
                .any(|l| l.contains("/images/update") && l.contains(record.as_str())),
            "{record} was rewritten:\n{seen}"
        );
    }

    let all = service
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(all.len(), 1, "{all:?}");
    let image = &all[0];
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, std::slice::from_ref(&reference));
    assert_eq!(image.repo_digests, std::slice::from_ref(&digest_ref));
    assert!(image.size > 0);

    // Found by tag, digest reference, full id and id prefix; verbose
    // status carries the image config.
    for name in [reference.as_str(), &digest_ref, &id, &id[7..19]] {
        let status = service
            .image_status(cri::ImageStatusRequest {
                image: image_spec(name),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.image.as_ref().map(|i| i.id.as_str()),
            Some(id.as_str()),
            "{name}"
        );
        assert!(status.info["info"].contains("imageSpec"), "{name}");
    }
    let missing = service
        .image_status(cri::ImageStatusRequest {
            image: image_spec("127.0.0.1:1/not/there:latest"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        missing.image.is_none(),
        "a missing image is an empty answer"
    );

    let fs = service
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage
        .fs_id
        .as_ref()
        .unwrap()
        .mountpoint
        .ends_with("io.containerd.snapshotter.v1.overlayfs"));
    assert!(usage.used_bytes.as_ref().unwrap().value > 0);

    service
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(&reference),
        })
        .await
        .unwrap();
    let left = ok(daemon.ctr(&debian_ctr(), &["-n", "k8s.io", "images", "ls", "-q"]));
    assert!(left.trim().is_empty(), "every record went: {left}");
    // Removing what is gone is not an error (kubelet retries).
    service
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(&reference),
        })
        .await
        .unwrap();

    let err = service
        .pull_image(cri::PullImageRequest {
            image: image_spec("127.0.0.1:1/nothing/here:latest"),
            ..cri::PullImageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("nothing/here"), "{}", err.message());
}

/// A containerd 1.6 `config.toml` that still uses the deprecated registry
/// settings works unchanged: `registry.mirrors` sends pulls of a domain
/// to its mirror, `registry.configs.<host>.tls` trusts the mirror's CA and
/// `registry.configs.<host>.auth` logs in when the pull brings no
/// credentials; a pull that brings its own uses those instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_registry_mirrors_configs_and_auths_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crated_testimages::TestCerts::new(dir.path()).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("tester:{hash}\n")).unwrap();
    let (cert, key, path) = (certs.cert.clone(), certs.key.clone(), htpasswd.clone());
    let registry = tokio::task::spawn_blocking(move || {
        crated_testimages::Registry::start_with(Some(&path), Some((&cert, &key)))
    })
    .await
    .unwrap()
    .unwrap();
    let host = registry.host.clone();
    // Pushed with what a client of this registry needs: https (a
    // loopback host is http by default), its CA, credentials.
    let push_hosts = dir.path().join("certs.d");
    let host_dir = push_hosts.join(host.replace(':', "_") + "_");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{host}\"\nca = {:?}\n",
            certs.ca.display().to_string()
        ),
    )
    .unwrap();
    let pusher = crated_distribution::Resolver::new(
        crated_distribution::HostOptions {
            hosts_dir: Some(push_hosts),
            ..Default::default()
        },
        Some(std::sync::Arc::new(|_: &str| {
            Some(crated_distribution::Credentials::parse_user(
                "tester:s3cret",
            ))
        })),
        crated_distribution::TransportOptions::default(),
    );
    let busybox = crated_testimages::busybox().unwrap();
    crated_testimages::push_with(&pusher, &format!("{host}/test/busybox:latest"), &busybox)
        .await
        .unwrap();

    let sections = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"mirrored.invalid\"]\n\
         endpoint = [\"https://{host}\"]\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"{host}\"]\n\
         endpoint = [\"https://{host}\"]\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"{host}\".tls]\n\
         ca_file = {ca:?}\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"{host}\".auth]\n\
         username = \"tester\"\n\
         password = \"s3cret\"\n",
        ca = certs.ca.display().to_string(),
    );
    let daemon = tokio::task::spawn_blocking(move || Daemon::start_with("", &sections))
        .await
        .unwrap();
    // containerd 1.7's ctr lists the deprecated settings in use, and
    // warns of them on each command.
    let ctr17 = common::ctr17();
    let listed = ok(daemon.ctr(&ctr17, &["deprecations", "list", "--format", "json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "io.containerd.deprecation/cri-registry-mirrors",
            "io.containerd.deprecation/cri-registry-configs",
        ],
        "{listed}"
    );
    assert!(listed[0]["message"]
        .as_str()
        .unwrap()
        .contains("config_path"));
    let warned = daemon.ctr(&ctr17, &["version"]);
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("DEPRECATION"),
        "{warned:?}"
    );
    let channel = daemon.channel().await;
    let mut service = images(&channel).await;
    let pull = |image: String, auth: Option<cri::AuthConfig>| cri::PullImageRequest {
        image: image_spec(&image),
        auth,
        ..cri::PullImageRequest::default()
    };
    // Through the mirror (the domain itself does not exist), then from
    // the registry by its own name (over https, as its own mirror: a
    // loopback host is plain http by default): the configured TLS and
    // login both times.
    for image in [
        "mirrored.invalid/test/busybox:latest".to_owned(),
        format!("{host}/test/busybox:latest"),
    ] {
        let pulled = service
            .pull_image(pull(image.clone(), None))
            .await
            .unwrap_or_else(|e| panic!("pull {image}: {e}\n{}", daemon.logs()))
            .into_inner();
        assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");
    }
    let listed = ok(daemon.ctr(&debian_ctr(), &["-n", "k8s.io", "images", "ls", "-q"]));
    assert!(
        listed.contains("mirrored.invalid/test/busybox:latest"),
        "{listed}"
    );
    // Credentials the pull brings win over the configuration's.
    let wrong = cri::AuthConfig {
        username: "tester".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = service
        .pull_image(pull(format!("{host}/test/busybox:latest"), Some(wrong)))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("unauthorized") || err.message().contains("401"),
        "{}",
        err.message()
    );
}

/// `containerd.discard_unpacked_layers`: a pulled image's layer blobs are
/// collected once unpacked; the image, its config and manifest, and its
/// snapshot stay. As containerd's, a pull of the image again (a kubelet's
/// `imagePullPolicy: Always`) does not download the layers again: it
/// fetches a layer only when it has to unpack it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_layers_are_collected_after_the_unpack() {
    let (registry, reference) = registry_with_busybox().await;
    let layer = crated_testimages::busybox()
        .unwrap()
        .blobs
        .iter()
        .find(|b| b.media_type.contains("layer"))
        .unwrap()
        .digest
        .to_string();
    let daemon = tokio::task::spawn_blocking(|| {
        Daemon::start_with(
            "",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndiscard_unpacked_layers = true\n",
        )
    })
    .await
    .unwrap();
    let channel = daemon.channel().await;
    let mut service = images(&channel).await;
    let id = pull_id(&daemon, &mut service, &reference).await;
    let ctr = debian_ctr();
    let mut content = String::new();
    for _ in 0..200 {
        content = ok(daemon.ctr(&ctr, &["-n", "k8s.io", "content", "ls", "-q"]));
        if !content.contains(&layer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!content.contains(&layer), "the layer stays:\n{content}");
    let config = id.clone();
    assert!(content.contains(&config), "the config goes too:\n{content}");
    let status = service
        .image_status(cri::ImageStatusRequest {
            image: image_spec(&reference),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image.unwrap().id, id);
    let snapshots = ok(daemon.ctr(&ctr, &["-n", "k8s.io", "snapshots", "ls"]));
    assert!(snapshots.lines().count() > 1, "{snapshots}");

    let layer_gets = || {
        registry
            .log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{layer} ")))
            .count()
    };
    assert_eq!(layer_gets(), 1, "{}", registry.log());
    let again = pull_id(&daemon, &mut service, &reference).await;
    assert_eq!(again, id);
    assert_eq!(layer_gets(), 1, "fetched again:\n{}", registry.log());
    let content = ok(daemon.ctr(&ctr, &["-n", "k8s.io", "content", "ls", "-q"]));
    assert!(!content.contains(&layer), "{content}");
}

/// `image_pull_with_sync_fs` (containerd 1.7): each unpacked layer is on
/// disk before its snapshot is committed, so a power cut right after a
/// pull cannot leave the image with empty files. The snapshots here live
/// on a loop-mounted ext4 whose device counts what reached it: the
/// busybox binary's bytes are there when PullImage answers, where without
/// the key they wait in the page cache for the kernel's writeback (tens of
/// seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_with_sync_fs_has_its_layers_on_disk_when_it_answers() {
    let (_registry, reference) = registry_with_busybox().await;
    let disk = crated_testimages::LoopFs::ext4(256 << 20).unwrap();
    let sections = format!(
        "[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nroot_path = {:?}\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\nimage_pull_with_sync_fs = true\n",
        disk.path().display().to_string()
    );
    let daemon = tokio::task::spawn_blocking(move || Daemon::start_with("", &sections))
        .await
        .unwrap();
    let channel = daemon.channel().await;
    let before = disk.bytes_written().unwrap();
    pull_id(&daemon, &mut images(&channel).await, &reference).await;
    let written = disk.bytes_written().unwrap() - before;
    let binary = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(
        written >= binary,
        "{written} bytes reached the disk; the busybox binary alone has {binary}"
    );
    drop(daemon);
}

/// A call that outlives the deadline its client sent (`grpc-timeout`) is
/// the client's to end, as with containerd's Go server: the daemon does
/// not answer it itself. (tonic's server answered CANCELLED without a
/// content-type, which Go clients read as a malformed reply instead of
/// their DEADLINE_EXCEEDED: critest's "public image should timeout if
/// requested" failed whenever that reply came first.) A raw HTTP/2 client
/// sends the header and keeps waiting — tonic's client would enforce the
/// deadline itself — while the pull hangs on a registry that never
/// answers: no reply may come within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_leaves_a_call_past_its_deadline_to_the_client() {
    use http_body_util::BodyExt as _;
    use prost::Message as _;

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap();
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let stream = tokio::net::UnixStream::connect(&daemon.address)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let message = cri::PullImageRequest {
        image: image_spec(&format!("{host}/silent/image:1")),
        ..cri::PullImageRequest::default()
    }
    .encode_to_vec();
    // gRPC framing: uncompressed, then the length.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let request =
        tonic::codegen::http::Request::post("http://crated/runtime.v1.ImageService/PullImage")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "100m")
            .header("containerd-namespace", "k8s.io")
            .body(http_body_util::Full::new(bytes::Bytes::from(frame)).boxed())
            .unwrap();
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        sender.send_request(request),
    )
    .await;
    assert!(
        answered.is_err(),
        "the daemon answered a call past its deadline itself: {answered:?}"
    );
    drop(silent);
}
