//! Tasks driven through the gRPC API the way containerd's Go client (and
//! so a Docker engine) drives them, with our shim: what such a client
//! relies on in events and metrics.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{debian_ctr, ok, workspace_bin, Daemon, NamespaceCleanup};
use crated_api::containerd::events as ev;
use crated_api::containerd::runc::v1::Options as RuncOptions;
use crated_api::containerd::services::containers::v1 as containers;
use crated_api::containerd::services::events::v1 as events;
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::containerd::services::snapshots::v1 as snapshots;
use crated_api::containerd::services::tasks::v1 as tasks;
use crated_api::metadata::{set_grpc_lease, set_grpc_namespace};
use crated_core::Namespace;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

/// A loop that exits 0 on SIGTERM (`sleep` as pid 1 would ignore it).
const SERVE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

/// The API in one namespace, under a lease (as the Go client works), so
/// no collection takes a snapshot between its prepare and its container.
struct Api {
    channel: Channel,
    ns: Namespace,
    lease: String,
}

impl Api {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        set_grpc_namespace(&mut request, &self.ns);
        set_grpc_lease(&mut request, &self.lease).unwrap();
        request
    }

    fn tasks(&self) -> tasks::tasks_client::TasksClient<Channel> {
        tasks::tasks_client::TasksClient::new(self.channel.clone())
    }

    /// The Metrics of the task of container `id`.
    async fn metrics_of(&self, id: &str) -> Vec<crated_api::containerd::types::Metric> {
        self.tasks()
            .metrics(self.request(tasks::MetricsRequest {
                filters: vec![format!("id=={id}")],
            }))
            .await
            .unwrap()
            .into_inner()
            .metrics
    }

    fn containers(&self) -> containers::containers_client::ContainersClient<Channel> {
        containers::containers_client::ContainersClient::new(self.channel.clone())
    }

    fn snapshots(&self) -> snapshots::snapshots_client::SnapshotsClient<Channel> {
        snapshots::snapshots_client::SnapshotsClient::new(self.channel.clone())
    }

    /// A copy of `template` as container `id`, on a new snapshot of the
    /// same image (each in its own cgroup); returns its rootfs mounts, as
    /// the Go client's `NewTask` passes them.
    async fn clone_container(
        &self,
        template: &containers::Container,
        parent: &str,
        id: &str,
    ) -> Vec<crated_api::containerd::types::Mount> {
        self.clone_container_with(template, parent, id, |_| {})
            .await
    }

    /// [`Self::clone_container`], the copy's spec changed by `edit`.
    async fn clone_container_with(
        &self,
        template: &containers::Container,
        parent: &str,
        id: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Vec<crated_api::containerd::types::Mount> {
        let mounts = self
            .snapshots()
            .prepare(self.request(snapshots::PrepareSnapshotRequest {
                snapshotter: template.snapshotter.clone(),
                key: id.to_owned(),
                parent: parent.to_owned(),
                labels: HashMap::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        let mut container = template.clone();
        container.id = id.to_owned();
        container.snapshot_key = id.to_owned();
        let spec = container.spec.as_mut().unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&spec.value).unwrap();
        json["linux"]["cgroupsPath"] = format!("/{}/{id}", self.ns.as_str()).into();
        edit(&mut json);
        spec.value = serde_json::to_vec(&json).unwrap();
        self.containers()
            .create(self.request(containers::CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .unwrap();
        mounts
    }

    /// Container `id`'s record.
    async fn container(&self, id: &str) -> containers::Container {
        self.containers()
            .get(self.request(containers::GetContainerRequest { id: id.to_owned() }))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap()
    }

    /// Creates and starts the task of `container` on its own snapshot.
    async fn start_task(&self, container: &containers::Container) {
        self.start_task_with(container, None).await;
    }

    /// [`Self::start_task`] with the runtime's `options`.
    async fn start_task_with(
        &self,
        container: &containers::Container,
        options: Option<prost_types::Any>,
    ) {
        self.create_task_with(container, options).await;
        self.tasks()
            .start(self.request(tasks::StartRequest {
                container_id: container.id.clone(),
                exec_id: String::new(),
            }))
            .await
            .unwrap();
    }

    /// Creates the task of `container` on its own snapshot (runc's
    /// `create`: the init waits for the start).
    async fn create_task(&self, container: &containers::Container) -> tasks::CreateTaskResponse {
        self.create_task_with(container, None).await
    }

    /// [`Self::create_task`] with the runtime's `options` (runc's
    /// `Options`).
    async fn create_task_with(
        &self,
        container: &containers::Container,
        options: Option<prost_types::Any>,
    ) -> tasks::CreateTaskResponse {
        let rootfs = self
            .snapshots()
            .mounts(self.request(snapshots::MountsRequest {
                snapshotter: container.snapshotter.clone(),
                key: container.snapshot_key.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        self.tasks()
            .create(self.request(tasks::CreateTaskRequest {
                container_id: container.id.clone(),
                rootfs,
                options,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Removes container `id` and its snapshot (its task is gone).
    async fn remove_container(&self, snapshotter: &str, id: &str) {
        self.containers()
            .delete(self.request(containers::DeleteContainerRequest { id: id.to_owned() }))
            .await
            .unwrap();
        self.snapshots()
            .remove(self.request(snapshots::RemoveSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                key: id.to_owned(),
            }))
            .await
            .unwrap();
    }
}

/// A daemon with busybox pulled into a namespace of this test, and our
/// shim's path.
struct Setup {
    _registry: crated_testimages::Registry,
    daemon: Daemon,
    ns: String,
    shim: String,
    image: String,
}

async fn setup(name: &str) -> Setup {
    let (registry, image) = common::registry_with_busybox().await;
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    // runc's state dir is per namespace and machine-wide: unique per run.
    let ns = format!("{name}-{}", std::process::id());
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", &ns, "images", "pull", "--plain-http", &image],
    ));
    let shim = workspace_bin("containerd-shim-runc-v2")
        .display()
        .to_string();
    Setup {
        _registry: registry,
        daemon,
        ns,
        shim,
        image,
    }
}

impl Setup {
    async fn api(&self) -> Api {
        let channel = self.daemon.channel().await;
        let ns = Namespace::new(self.ns.clone()).unwrap();
        let mut create = tonic::Request::new(leases::CreateRequest {
            id: "task-api".into(),
            labels: HashMap::new(),
        });
        set_grpc_namespace(&mut create, &ns);
        leases::leases_client::LeasesClient::new(channel.clone())
            .create(create)
            .await
            .unwrap();
        Api {
            channel,
            ns,
            lease: "task-api".into(),
        }
    }

    /// Container `id` made by containerd's ctr with our shim, and the
    /// parent of its snapshot.
    async fn template(
        &self,
        api: &Api,
        id: &str,
        args: &[&str],
    ) -> (containers::Container, String) {
        let mut command = vec![
            "-n",
            self.ns.as_str(),
            "containers",
            "create",
            "--runtime",
            self.shim.as_str(),
            self.image.as_str(),
            id,
            // Else the `-c` of `sh -c` is taken for ctr's `--config`.
            "--",
        ];
        command.extend_from_slice(args);
        ok(self.daemon.ctr(&debian_ctr(), &command));
        let container = api.container(id).await;
        let parent = api
            .snapshots()
            .stat(api.request(snapshots::StatSnapshotRequest {
                snapshotter: container.snapshotter.clone(),
                key: container.snapshot_key.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap()
            .parent;
        (container, parent)
    }
}

/// What the subscription saw, in order: (topic, process id, exit status).
/// A process is named by its container id (init) or exec id.
type Seen = Arc<Mutex<Vec<(String, String, u32)>>>;

/// Subscribes to `/tasks/start`, `/tasks/exec-started` and `/tasks/exit`
/// of `ns`; the subscription is registered when this returns.
async fn subscribe(api: &Api) -> Seen {
    let filters = ["/tasks/start", "/tasks/exec-started", "/tasks/exit"]
        .iter()
        .map(|topic| format!("namespace=={},topic==\"{topic}\"", api.ns.as_str()))
        .collect();
    let mut stream = events::events_client::EventsClient::new(api.channel.clone())
        .subscribe(events::SubscribeRequest { filters })
        .await
        .unwrap()
        .into_inner();
    let seen: Seen = Arc::default();
    let into = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(Ok(envelope)) = stream.next().await {
            let Some(event) = envelope.event else {
                continue;
            };
            let entry = match envelope.topic.as_str() {
                "/tasks/start" => {
                    let start = ev::TaskStart::decode(event.value.as_slice()).unwrap();
                    (envelope.topic, start.container_id, 0)
                }
                "/tasks/exec-started" => {
                    let started = ev::TaskExecStarted::decode(event.value.as_slice()).unwrap();
                    (envelope.topic, started.exec_id, 0)
                }
                _ => {
                    let exit = ev::TaskExit::decode(event.value.as_slice()).unwrap();
                    (envelope.topic, exit.id, exit.exit_status)
                }
            };
            into.lock().unwrap().push(entry);
        }
    });
    seen
}

/// Waits until `seen` holds `count` exits; a copy of it.
async fn exits_seen(seen: &Seen, count: usize) -> Vec<(String, String, u32)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = seen.lock().unwrap().clone();
        let exits = now.iter().filter(|e| e.0 == "/tasks/exit").count();
        if exits >= count || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every id of `ids` whose `start` topic did not come before its exit
/// with status 7, and why.
fn out_of_order(seen: &[(String, String, u32)], ids: &[String], start: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for id in ids {
        let started = seen.iter().position(|e| e.0 == start && &e.1 == id);
        let exited = seen.iter().position(|e| e.0 == "/tasks/exit" && &e.1 == id);
        match (started, exited) {
            (Some(s), Some(x)) if s < x && seen[x].2 == 7 => {}
            (Some(s), Some(x)) if s < x => wrong.push(format!("{id}: exit status {}", seen[x].2)),
            (s, x) => wrong.push(format!("{id}: {start} at {s:?}, /tasks/exit at {x:?}")),
        }
    }
    wrong
}

/// Waits for every worker before failing on the first that failed, so no
/// task is left half made when the test ends.
async fn join_all(workers: Vec<tokio::task::JoinHandle<()>>) {
    let mut failed = None;
    for worker in workers {
        if let Err(e) = worker.await {
            failed.get_or_insert(e);
        }
    }
    if let Some(e) = failed {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A Docker engine waits for the `/tasks/exit` that follows a task's
/// `/tasks/start` and never sees one published before it; so must every
/// process that exits at once, init or exec, come after its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_exits_are_published_after_their_start() {
    const TASKS: usize = 200;
    const EXECS: usize = 50;
    const PARALLEL: usize = 6;
    let s = setup("order").await;
    let _cleanup = NamespaceCleanup(&s.daemon, s.ns.clone());
    let api = Arc::new(s.api().await);
    let (template, parent) = s.template(&api, "template", &["sh", "-c", "exit 7"]).await;
    let seen = subscribe(&api).await;

    let ids: Vec<String> = (0..TASKS).map(|i| format!("fast-{i}")).collect();
    let queue = Arc::new(Mutex::new(ids.clone()));
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (api, queue, template, parent) = (
            Arc::clone(&api),
            Arc::clone(&queue),
            template.clone(),
            parent.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop() else {
                    return;
                };
                let rootfs = api.clone_container(&template, &parent, &id).await;
                let mut tasks = api.tasks();
                tasks
                    .create(api.request(tasks::CreateTaskRequest {
                        container_id: id.clone(),
                        rootfs,
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
                tasks
                    .start(api.request(tasks::StartRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                    }))
                    .await
                    .unwrap();
                let exit = tasks
                    .wait(api.request(tasks::WaitRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(exit.exit_status, 7, "{id}");
                tasks
                    .delete(api.request(tasks::DeleteTaskRequest {
                        container_id: id.clone(),
                    }))
                    .await
                    .unwrap();
                api.remove_container(&template.snapshotter, &id).await;
            }
        }));
    }
    join_all(workers).await;

    // Exec processes of one running task.
    let (serving, _) = s.template(&api, "serving", &["sh", "-c", SERVE]).await;
    api.start_task(&serving).await;
    let spec: serde_json::Value =
        serde_json::from_slice(&serving.spec.as_ref().unwrap().value).unwrap();
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(["sh", "-c", "exit 7"]);
    let process = prost_types::Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&process).unwrap(),
    };
    let exec_ids: Vec<String> = (0..EXECS).map(|i| format!("exec-{i}")).collect();
    let queue = Arc::new(Mutex::new(exec_ids.clone()));
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (api, queue, process) = (Arc::clone(&api), Arc::clone(&queue), process.clone());
        workers.push(tokio::spawn(async move {
            let mut tasks = api.tasks();
            loop {
                let Some(exec_id) = queue.lock().unwrap().pop() else {
                    return;
                };
                tasks
                    .exec(api.request(tasks::ExecProcessRequest {
                        container_id: "serving".into(),
                        exec_id: exec_id.clone(),
                        spec: Some(process.clone()),
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
                tasks
                    .start(api.request(tasks::StartRequest {
                        container_id: "serving".into(),
                        exec_id: exec_id.clone(),
                    }))
                    .await
                    .unwrap();
                let exit = tasks
                    .wait(api.request(tasks::WaitRequest {
                        container_id: "serving".into(),
                        exec_id: exec_id.clone(),
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(exit.exit_status, 7, "{exec_id}");
                tasks
                    .delete_process(api.request(tasks::DeleteProcessRequest {
                        container_id: "serving".into(),
                        exec_id,
                    }))
                    .await
                    .unwrap();
            }
        }));
    }
    join_all(workers).await;

    let seen = exits_seen(&seen, TASKS + EXECS).await;
    let inits = out_of_order(&seen, &ids, "/tasks/start");
    let execs = out_of_order(&seen, &exec_ids, "/tasks/exec-started");
    assert!(
        inits.is_empty() && execs.is_empty(),
        "{} of {TASKS} tasks and {} of {EXECS} execs were published out of order or wrongly:\n{}",
        inits.len(),
        execs.len(),
        inits
            .iter()
            .take(10)
            .chain(execs.iter().take(10))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `docker stats` reads every sub-message containerd's shim fills without
/// checking for absent ones (a Docker engine crashed on the missing CPU
/// throttling): all of them must be there, with figures that make sense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_every_sub_message_docker_reads() {
    let s = setup("metrics").await;
    let _cleanup = NamespaceCleanup(&s.daemon, s.ns.clone());
    let api = s.api().await;
    let (serving, parent) = s.template(&api, "stats", &["sh", "-c", SERVE]).await;
    api.start_task(&serving).await;
    // Without a cgroupsPath runc picks the cgroup (below its own): the
    // shim finds it from the init, as it must for systemd's unit names.
    api.clone_container_with(&serving, &parent, "nopath", |spec| {
        spec["linux"].as_object_mut().unwrap().remove("cgroupsPath");
    })
    .await;
    api.start_task(&api.container("nopath").await).await;
    let nopath = api.metrics_of("nopath").await;
    let data = nopath[0].data.as_ref().expect("metrics carry data");
    let pids = if data.type_url.ends_with("v2.Metrics") {
        let m = crated_api::cgroups::v2::Metrics::decode(data.value.as_slice()).unwrap();
        m.pids.map(|p| p.current)
    } else {
        let m = crated_api::cgroups::v1::Metrics::decode(data.value.as_slice()).unwrap();
        m.pids.map(|p| p.current)
    };
    assert!(pids.unwrap_or(0) >= 1, "{data:?}");
    let metrics = api.metrics_of("stats").await;
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics[0].id, "stats");
    let data = metrics[0].data.as_ref().expect("metrics carry data");
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(data.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = crated_api::cgroups::v2::Metrics::decode(data.value.as_slice()).unwrap();
        let pids = m.pids.as_ref().expect("pids");
        assert!(pids.current >= 1, "{m:?}");
        assert!(m.cpu.is_some(), "cpu: {m:?}");
        assert!(m.memory.as_ref().expect("memory").usage > 0, "{m:?}");
        assert!(m.io.is_some(), "io: {m:?}");
        return;
    }
    assert_eq!(data.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = crated_api::cgroups::v1::Metrics::decode(data.value.as_slice()).unwrap();
    let cpu = m.cpu.as_ref().expect("cpu");
    assert!(cpu.usage.as_ref().expect("cpu usage").total > 0, "{m:?}");
    assert!(cpu.throttling.is_some(), "cpu throttling: {m:?}");
    let memory = m.memory.as_ref().expect("memory");
    let usage = memory.usage.as_ref().expect("memory usage");
    assert!(usage.usage > 0 && usage.limit > 0, "{m:?}");
    for (name, entry) in [
        ("swap", &memory.swap),
        ("kernel", &memory.kernel),
        ("kernel_tcp", &memory.kernel_tcp),
    ] {
        assert!(entry.is_some(), "memory {name}: {m:?}");
    }
    assert!(m.blkio.is_some(), "blkio: {m:?}");
    assert!(m.pids.as_ref().expect("pids").current >= 1, "{m:?}");
    // One entry per huge page size of the host, named as containerd does.
    let mut sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    let mut pagesizes: Vec<&str> = m.hugetlb.iter().map(|h| h.pagesize.as_str()).collect();
    pagesizes.sort();
    pagesizes.dedup();
    assert_eq!(
        pagesizes.len(),
        sizes.len(),
        "hugetlb {pagesizes:?} for {sizes:?}"
    );
    if sizes.iter().any(|s| s == "hugepages-2048kB") {
        assert!(pagesizes.contains(&"2MB"), "{pagesizes:?}");
    }
}

/// runc's view of container `id` of namespace `ns` (our shim's runc root).
fn runc_status(ns: &str, id: &str) -> String {
    let out = ok(std::process::Command::new("runc")
        .args(["--root", &format!("/run/containerd/runc/{ns}"), "state", id])
        .output()
        .unwrap());
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    state["status"].as_str().unwrap_or_default().to_owned()
}

/// Our shim starts a container runc created by reading runc's exec fifo
/// itself (no `runc start` process): runc must then see the container
/// running, as after its own start, and a start whose init was killed
/// after the create must fail with a clear error, not wait for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_leaves_runc_agreeing_and_one_after_init_died_fails() {
    let s = setup("start").await;
    let _cleanup = NamespaceCleanup(&s.daemon, s.ns.clone());
    let api = s.api().await;
    let (serving, parent) = s.template(&api, "serving", &["sh", "-c", SERVE]).await;
    let mut tasks = api.tasks();
    let rootfs = api.clone_container(&serving, &parent, "killed").await;

    let fifo = format!("/run/containerd/runc/{}/serving/exec.fifo", s.ns);
    let created = api.create_task(&serving).await;
    assert_eq!(runc_status(&s.ns, "serving"), "created");
    assert!(
        std::path::Path::new(&fifo).exists(),
        "no {fifo} after create"
    );
    let started = tasks
        .start(api.request(tasks::StartRequest {
            container_id: "serving".into(),
            exec_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.pid, created.pid);
    assert_eq!(runc_status(&s.ns, "serving"), "running");
    assert!(
        !std::path::Path::new(&fifo).exists(),
        "{fifo} left after start"
    );
    // The container's process runs: init exec'd the shell.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", started.pid)).unwrap();
    assert_eq!(comm.trim(), "sh");

    // An init killed between create and start.
    let created = tasks
        .create(api.request(tasks::CreateTaskRequest {
            container_id: "killed".into(),
            rootfs,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(created.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let start = tokio::time::timeout(
        Duration::from_secs(20),
        tasks.start(api.request(tasks::StartRequest {
            container_id: "killed".into(),
            exec_id: String::new(),
        })),
    )
    .await
    .expect("a start of a task whose init was killed hung");
    let status = start.expect_err("a task whose init was killed started");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("cannot start") && status.message().contains("killed"),
        "{status:?}"
    );
    // Nothing stuck: the task deletes as any stopped one.
    tasks
        .delete(api.request(tasks::DeleteTaskRequest {
            container_id: "killed".into(),
        }))
        .await
        .unwrap();
    api.remove_container(&serving.snapshotter, "killed").await;
}

/// runc's runtime options as a Create carries them.
fn runc_options(options: RuncOptions) -> prost_types::Any {
    prost_types::Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: options.encode_to_vec(),
    }
}

/// The cgroup directories runc recorded for container `id` of namespace
/// `ns` (our shim's runc root).
fn runc_cgroups(ns: &str, id: &str) -> Vec<std::path::PathBuf> {
    let state = std::fs::read(format!("/run/containerd/runc/{ns}/{id}/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    state["cgroup_paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_str().unwrap().into())
        .collect()
}

/// Our shim deletes a stopped container itself: its cgroups and runc's
/// directory of it go with no `runc delete` process. A container whose
/// spec has a poststop hook is still deleted by runc, which runs the hook.
/// runc is run through a wrapper (named `runc`, so the shim treats it as
/// runc) that notes each command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_task_is_deleted_without_runc_unless_a_hook_needs_it() {
    let s = setup("destroy").await;
    let _cleanup = NamespaceCleanup(&s.daemon, s.ns.clone());
    let api = s.api().await;
    let tools = tempfile::tempdir().unwrap();
    let calls = tools.path().join("calls");
    let hooked_state = tools.path().join("hooked-state");
    let wrapper = tools.path().join("runc");
    common::runc_recording_to(&wrapper, &calls);
    let options = runc_options(RuncOptions {
        binary_name: wrapper.display().to_string(),
        ..Default::default()
    });

    let (plain, parent) = s.template(&api, "plain", &["sh", "-c", SERVE]).await;
    let hook = serde_json::json!([{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {}", hooked_state.display())],
    }]);
    api.clone_container_with(&plain, &parent, "hooked", |spec| {
        spec["hooks"]["poststop"] = hook
    })
    .await;
    let hooked = api.container("hooked").await;
    let mut cgroups = HashMap::new();
    for container in [&plain, &hooked] {
        let id = container.id.as_str();
        api.start_task_with(container, Some(options.clone())).await;
        let paths = runc_cgroups(&s.ns, id);
        assert!(!paths.is_empty(), "{id}: no cgroups");
        for path in &paths {
            assert!(
                path.is_dir(),
                "{id}: {} missing while running",
                path.display()
            );
        }
        cgroups.insert(id, paths);
    }
    let mut tasks = api.tasks();
    for id in ["plain", "hooked"] {
        tasks
            .kill(api.request(tasks::KillRequest {
                container_id: id.into(),
                signal: libc::SIGKILL as u32,
                ..Default::default()
            }))
            .await
            .unwrap();
        tasks
            .wait(api.request(tasks::WaitRequest {
                container_id: id.into(),
                exec_id: String::new(),
            }))
            .await
            .unwrap();
        let deleted = tasks
            .delete(api.request(tasks::DeleteTaskRequest {
                container_id: id.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.exit_status, 137, "{id}");
        let dir = format!("/run/containerd/runc/{}/{id}", s.ns);
        assert!(
            !std::path::Path::new(&dir).exists(),
            "{id}: {dir} left after the delete"
        );
        for path in &cgroups[id] {
            assert!(!path.exists(), "{id}: cgroup {} left", path.display());
        }
    }

    let calls = std::fs::read_to_string(&calls).unwrap();
    let ran = |command: &str, id: &str| {
        calls.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.contains(&command) && words.last() == Some(&id)
        })
    };
    // The wrapper ran: the create went through it.
    assert!(ran("create", "plain") && ran("create", "hooked"), "{calls}");
    assert!(
        !ran("delete", "plain"),
        "runc deleted the plain task:\n{calls}"
    );
    assert!(
        ran("delete", "hooked"),
        "runc did not delete the hooked task:\n{calls}"
    );
    // runc ran the hook with the stopped container's state.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&hooked_state).unwrap()).unwrap();
    assert_eq!(state["id"], "hooked", "{state}");
    assert_eq!(state["status"], "stopped", "{state}");

    api.remove_container(&plain.snapshotter, "hooked").await;
}

/// A cgroup of this test's in the hierarchies a shim is placed in: the
/// unified one, or v1's memory and pids (a v1 path need not be in every
/// hierarchy). Removed on drop, once the shims in it are gone.
struct TestCgroup(Vec<std::path::PathBuf>);

impl TestCgroup {
    fn make(path: &str) -> Self {
        let root = std::path::Path::new("/sys/fs/cgroup");
        let rel = path.trim_start_matches('/');
        let dirs: Vec<_> = if root.join("cgroup.controllers").exists() {
            vec![root.join(rel)]
        } else {
            vec![root.join("memory").join(rel), root.join("pids").join(rel)]
        };
        for dir in &dirs {
            std::fs::create_dir_all(dir).unwrap();
        }
        Self(dirs)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::fs::remove_dir(dir).is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runtime options that place the shim, as containerd's shim reads them
/// from `start`'s stdin: `ShimCgroup` puts the long-lived shim into a
/// cgroup that exists (refused, naming it, when no hierarchy has it or it
/// leaves the hierarchy, and nothing is left running), and a shim scores
/// one above the daemon for the OOM killer, so it goes before the daemon.
/// Options of runc's type that do not decode are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_options_place_the_shim_in_its_cgroup_and_above_the_daemon() {
    let s = setup("placed").await;
    let _cleanup = NamespaceCleanup(&s.daemon, s.ns.clone());
    let api = s.api().await;
    let cgroup = format!("/crated-shims-{}", std::process::id());
    let made = TestCgroup::make(&cgroup);
    // Raising a score needs no privilege: the daemon's becomes 7.
    std::fs::write(format!("/proc/{}/oom_score_adj", s.daemon.pid()), "7").unwrap();
    let in_cgroup = |shim_cgroup: &str| {
        runc_options(RuncOptions {
            shim_cgroup: shim_cgroup.into(),
            ..Default::default()
        })
    };
    let (placed, parent) = s.template(&api, "placed", &["sh", "-c", SERVE]).await;
    let mut tasks = api.tasks();

    let missing = format!("/crated-no-such-{}", std::process::id());
    let garbled = prost_types::Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![0x0a, 0xff],
    };
    for (id, options, says) in [
        (
            "missing",
            in_cgroup(&missing),
            format!("shim cgroup {missing:?} does not exist"),
        ),
        (
            "escaping",
            in_cgroup("/../etc"),
            "may not leave its hierarchy".to_owned(),
        ),
        (
            "garbled",
            garbled,
            "runtime options containerd.runc.v1.Options".to_owned(),
        ),
    ] {
        let rootfs = api.clone_container(&placed, &parent, id).await;
        let err = tasks
            .create(api.request(tasks::CreateTaskRequest {
                container_id: id.into(),
                rootfs,
                options: Some(options),
                ..Default::default()
            }))
            .await
            .expect_err(id);
        assert!(err.message().contains(&says), "{id}: {err:?}");
        // Nothing of it runs, nor stays to be cleaned up.
        let gone = tasks
            .get(api.request(tasks::GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            }))
            .await
            .expect_err(id);
        assert_eq!(gone.code(), tonic::Code::NotFound, "{id}: {gone:?}");
        api.remove_container(&placed.snapshotter, id).await;
    }

    api.start_task_with(&placed, Some(in_cgroup(&cgroup))).await;
    let init = tasks
        .get(api.request(tasks::GetRequest {
            container_id: "placed".into(),
            exec_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap()
        .pid;
    let shim = common::parent_of(&init.to_string());
    let cgroups = std::fs::read_to_string(format!("/proc/{shim}/cgroup")).unwrap();
    let in_it: Vec<&str> = cgroups
        .lines()
        .filter(|l| l.ends_with(&format!(":{cgroup}")))
        .collect();
    assert_eq!(in_it.len(), made.0.len(), "shim {shim} is in\n{cgroups}");
    let score = std::fs::read_to_string(format!("/proc/{shim}/oom_score_adj")).unwrap();
    assert_eq!(score.trim(), "8", "the shim's OOM score adjustment");
    // The container is not the shim's cgroup's: runc moved it to its own.
    let own = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(!own.contains(&format!(":{cgroup}\n")), "{own}");

    tasks
        .kill(api.request(tasks::KillRequest {
            container_id: "placed".into(),
            signal: libc::SIGKILL as u32,
            ..Default::default()
        }))
        .await
        .unwrap();
    tasks
        .wait(api.request(tasks::WaitRequest {
            container_id: "placed".into(),
            exec_id: String::new(),
        }))
        .await
        .unwrap();
    tasks
        .delete(api.request(tasks::DeleteTaskRequest {
            container_id: "placed".into(),
        }))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{shim}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "shim {shim} did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(made);
}
