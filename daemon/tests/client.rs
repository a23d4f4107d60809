//! The client library drives a daemon the same way over its socket and in
//! process (the daemon's service layer, no gRPC socket at all, as the CRI
//! plugin does): one test body pulls busybox, creates a container, runs
//! its task with stdio the test owns, and reads its output and exit
//! status.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{registry_with_busybox, workspace_bin, Daemon};
use crated_client::cio::Fifos;
use crated_client::pull::{pull, NoProgress, PullOptions};
use crated_client::spec::{self, ImageConfig, SpecContext};
use crated_client::{Client, NewContainer, NewTask, Rootfs};
use crated_core::Namespace;
use crated_distribution::{HostOptions, Resolver, TransportOptions};

/// Pulls `reference`, runs `sh -c 'echo hello from $0; exit 3'` in it with
/// the output into a file of `dir`, and checks what a user would: the
/// output, the exit status, and that nothing of the container is left.
async fn run_busybox(client: &Client, reference: &str, dir: &Path) {
    let resolver = Resolver::new(HostOptions::default(), None, TransportOptions::default());
    let options = PullOptions {
        snapshotter: Some("overlayfs".into()),
        ..PullOptions::default()
    };
    let pulled = pull(client, &resolver, reference, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(pulled.chain_id.is_some(), "the pull unpacked the image");

    let image = client.image_rootfs(reference, "overlayfs").await.unwrap();
    let config = ImageConfig::parse(&image.config).unwrap();
    let args = ["sh", "-c", "echo hello from $0; exit 3", "busybox"].map(str::to_owned);
    let spec = spec::generate(
        &SpecContext::new(client.namespace(), "hello"),
        &[
            spec::with_image_config_args(config, args.to_vec()),
            spec::with_user("0:0"),
        ],
    )
    .unwrap();
    let container = client
        .create_container(
            "hello",
            NewContainer {
                image: reference.to_owned(),
                snapshotter: "overlayfs".into(),
                rootfs: Rootfs::NewSnapshot {
                    key: "hello".into(),
                    parent: image.chain_id.to_string(),
                    labels: Default::default(),
                },
                ..NewContainer::new(spec)
            },
        )
        .await
        .unwrap();

    let fifos = Fifos::new(&dir.join("fifo"), "hello", false, false).unwrap();
    let out_path = dir.join("stdout");
    let out = tokio::fs::File::create(&out_path).await.unwrap();
    let attached = fifos.attach(None, Some(Box::new(out)), Some(Box::new(tokio::io::sink())));
    let task = container
        .new_task(fifos.stdio(), false, NewTask::default())
        .await
        .unwrap();
    assert!(task.pid() > 0);
    task.start().await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), task.wait())
        .await
        .expect("the task exits")
        .unwrap();
    attached.wait(Duration::from_secs(5)).await;
    assert_eq!(exit.exit_status, 3);
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "hello from busybox\n"
    );

    let deleted = task.delete().await.unwrap();
    assert_eq!(deleted.exit_status, 3);
    container.delete(true).await.unwrap();
    let err = client.load_container("hello").await.err().unwrap();
    assert!(err.is_not_found(), "{err}");
    assert!(client
        .services()
        .tasks
        .list(client.namespace(), &[])
        .await
        .unwrap()
        .is_empty());
    let err = client
        .snapshotter("overlayfs", None)
        .unwrap()
        .stat("hello")
        .await
        .err()
        .unwrap();
    assert!(
        err.is_not_found(),
        "the container's snapshot went with it: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_runs_a_task_over_a_socket() {
    let (_registry, reference) = registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ns = Namespace::new("client-socket").unwrap();
    let _cleanup = common::NamespaceCleanup(&daemon, ns.to_string());
    let client = Client::connect(daemon.address.to_str().unwrap(), None)
        .await
        .unwrap()
        .with_namespace(ns);
    run_busybox(&client, &reference, daemon.dir.path()).await;
}

/// The daemon's service layer in this test's own process: its plugins
/// loaded (the shim found in the opt directory), the ttrpc socket its
/// shims publish to, and no gRPC socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_runs_a_task_in_process() {
    let (_registry, reference) = registry_with_busybox().await;
    let dir = tempfile::Builder::new()
        .prefix("crated-inproc")
        .tempdir()
        .unwrap();
    let config_path = common::write_config(dir.path(), "", "");
    let config = crated_daemon::config::Config::load(Some(&config_path)).unwrap();
    std::fs::create_dir_all(dir.path().join("opt/bin")).unwrap();
    std::os::unix::fs::symlink(
        workspace_bin("containerd-shim-runc-v2"),
        dir.path().join("opt/bin/containerd-shim-runc-v2"),
    )
    .unwrap();
    let loaded = crated_daemon::server::load(&config).await.unwrap();
    assert!(
        !config.grpc.address.exists(),
        "in process, no gRPC socket is served"
    );
    let ns = Namespace::new("client-inproc").unwrap();
    let client = loaded.client().unwrap().with_namespace(ns.clone());
    let result = tokio::spawn({
        let client = client.clone();
        let dir = dir.path().to_owned();
        async move { run_busybox(&client, &reference, &dir).await }
    })
    .await;
    // Whatever happened, no task of this namespace stays behind.
    for task in client
        .services()
        .tasks
        .list(&ns, &[])
        .await
        .unwrap_or_default()
    {
        let tasks = &client.services().tasks;
        let _ = tasks.kill(&ns, &task.id, "", 9, true).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait(&ns, &task.id, "")).await;
        let _ = tasks.delete(&ns, &task.id).await;
    }
    loaded.shutdown().await;
    common::forget_namespace(ns.as_str());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
