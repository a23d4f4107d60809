//! A node for CRI tests: a daemon whose CRI plugin runs pods with a pause
//! image and a busybox image from a loopback registry, its CNI config in
//! the test's own directory, and a guard that removes every pod (and so
//! every container, shim and mount) when the test ends, passed or not.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crated_cri::runtime::v1 as cri;
use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::common::{registry_with, workspace_bin, Daemon};

/// A CRI node: daemon, registry and the references of its images.
pub struct Node {
    pub daemon: Daemon,
    pub registry: crated_testimages::Registry,
    /// `…/test/pause:latest`, the sandbox image.
    pub pause: String,
    /// `…/test/busybox:latest`.
    pub busybox: String,
    /// Where pod logs go.
    pub logs: tempfile::TempDir,
}

/// The CRI section of a test daemon's config; `cni_conf_dir` is where
/// pods' network config is read, `registry_hosts` (if any) the
/// `registry.config_path` of hosts.toml files.
pub fn cri_section(pause: &str, cni_conf_dir: &Path, registry_hosts: Option<&Path>) -> String {
    let mut section = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
         sandbox_image = {pause:?}\n\
         restrict_oom_score_adj = true\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
         conf_dir = {conf:?}\n\
         bin_dir = \"/usr/lib/cni\"\n",
        conf = cni_conf_dir.display().to_string(),
    );
    if let Some(hosts) = registry_hosts {
        section.push_str(&format!(
            "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = {:?}\n",
            hosts.display().to_string()
        ));
    }
    section
}

/// How a [`Node`] is set up.
#[derive(Default)]
pub struct NodeOptions {
    /// Files of its CNI config directory (file name, text).
    pub cni: Vec<(String, String)>,
    /// Make the loopback registry the mirror of the registries critest's
    /// images come from (hosts.toml under the daemon's directory).
    pub mirror: bool,
    /// `sandbox_image = ""`: pods run on crated's built-in pause image.
    pub builtin_pause: bool,
    /// `stats_collect_period` (seconds), if not the default.
    pub stats_collect_period: Option<i64>,
    /// `cdi_spec_dirs`, if not the default.
    pub cdi_spec_dirs: Option<Vec<PathBuf>>,
    /// More `key = value` lines of the CRI section.
    pub cri_keys: Vec<String>,
    /// TOML tables added after the CRI section (its sub-tables).
    pub cri_tables: String,
    /// A directory searched before the daemon's `PATH` (and so its shims'
    /// and runc's): where a working criu is.
    pub path_prefix: Option<PathBuf>,
    /// `cni.conf_template`, if any.
    pub cni_conf_template: Option<PathBuf>,
}

impl Node {
    /// A node whose CNI config directory holds `cni` (file name, text).
    pub async fn start(cni: &[(&str, String)]) -> Node {
        Node::start_with(NodeOptions {
            cni: cni
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            ..NodeOptions::default()
        })
        .await
    }

    /// A node set up as `options` say.
    pub async fn start_with(options: NodeOptions) -> Node {
        let pause = crated_testimages::pause().expect("pause image");
        let busybox = crated_testimages::busybox().expect("busybox image");
        let (registry, host) = registry_with(vec![
            ("test/pause:latest", pause),
            ("test/busybox:latest", busybox),
        ])
        .await;
        let pause = format!("{host}/test/pause:latest");
        let busybox = format!("{host}/test/busybox:latest");
        let logs = tempfile::tempdir().expect("log dir");
        let pause_ref = if options.builtin_pause {
            String::new()
        } else {
            pause.clone()
        };
        let daemon = tokio::task::spawn_blocking(move || {
            let mut daemon = Daemon::prepare("", "");
            let conf_dir = daemon.dir.path().join("cni/net.d");
            std::fs::create_dir_all(&conf_dir).expect("cni conf dir");
            for (name, text) in &options.cni {
                std::fs::write(conf_dir.join(name), text).expect("write cni config");
            }
            let hosts = options.mirror.then(|| {
                let hosts = daemon.dir.path().join("certs.d");
                crated_testimages::write_mirror_hosts(&hosts, &host).expect("mirror hosts.toml");
                hosts
            });
            let mut section = cri_section(&pause_ref, &conf_dir, hosts.as_deref());
            // Keys of the section itself: right after its header.
            let header = "[plugins.\"io.containerd.grpc.v1.cri\"]\n";
            if let Some(period) = options.stats_collect_period {
                section = section.replacen(
                    header,
                    &format!("{header}stats_collect_period = {period}\n"),
                    1,
                );
            }
            for line in &options.cri_keys {
                section = section.replacen(header, &format!("{header}{line}\n"), 1);
            }
            if let Some(template) = &options.cni_conf_template {
                let bin_dir = "bin_dir = \"/usr/lib/cni\"\n";
                section = section.replacen(
                    bin_dir,
                    &format!(
                        "{bin_dir}conf_template = {:?}\n",
                        template.display().to_string()
                    ),
                    1,
                );
            }
            section.push_str(&options.cri_tables);
            if let Some(dirs) = &options.cdi_spec_dirs {
                let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                section =
                    section.replacen(header, &format!("{header}cdi_spec_dirs = {dirs:?}\n"), 1);
            }
            let config = crate::common::write_config(daemon.dir.path(), "", &section);
            daemon.config = config;
            match &options.path_prefix {
                Some(prefix) => {
                    let mut path = prefix.clone().into_os_string();
                    path.push(":");
                    path.push(std::env::var_os("PATH").unwrap_or_default());
                    daemon.spawn_env(&[], &[("PATH", &path)]);
                }
                None => daemon.spawn(&[]),
            }
            daemon
        })
        .await
        .expect("join");
        Node {
            daemon,
            registry,
            pause,
            busybox,
            logs,
        }
    }

    /// Runs a pod sandbox of `config` through `runtime`; its id. A refusal
    /// fails the test with the daemon's log.
    pub async fn run_pod(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        config: &cri::PodSandboxConfig,
    ) -> String {
        self.run_pod_with_handler(runtime, config, "").await
    }

    /// [`Node::run_pod`] through runtime handler `handler`.
    pub async fn run_pod_with_handler(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> String {
        runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("run pod sandbox: {e}\n{}", self.daemon.logs()))
            .into_inner()
            .pod_sandbox_id
    }

    /// A pod `name` on the node's network with one container, `app`,
    /// sleeping in busybox (pulled before): the pod's config, its id and
    /// the container's.
    pub async fn run_sleeping_pod(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        name: &str,
    ) -> (cri::PodSandboxConfig, String, String) {
        self.run_pod_of(runtime, name, &self.busybox, &["sleep", "3600"])
            .await
    }

    /// A pod `name` on the node's network with one container, `app`,
    /// running `command` in `image` (pulled before): the pod's config, its
    /// id and the container's.
    pub async fn run_pod_of(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> (cri::PodSandboxConfig, String, String) {
        let config = pod_config(name, self.logs.path(), true);
        let pod = self.run_pod(runtime, &config).await;
        let app = start_container(
            runtime,
            &pod,
            &config,
            container_config("app", image, command),
        )
        .await;
        (config, pod, app)
    }

    /// The endpoint CRI tools take (`unix://…`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.daemon.address.display())
    }

    /// The RuntimeService.
    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.daemon.channel().await)
    }

    /// The ImageService.
    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.daemon.channel().await)
    }

    /// Pulls busybox for containers.
    pub async fn pull_busybox(&self) -> String {
        self.images()
            .await
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: self.busybox.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("pull busybox")
            .into_inner()
            .image_ref
    }
}

/// A CNI 1.0.0 bridge network `name` with host-local addresses from
/// `subnet` (kept in `ipam_dir`, not the machine's /var/lib/cni) and port
/// mappings; its gateway is the subnet's first address.
pub fn bridge_conflist(name: &str, subnet: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": format!("{name}0"),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string()
}

/// Addresses host-local still holds for network `name` in `ipam_dir`.
pub fn allocated_ips(ipam_dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(ipam_dir.join(name))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A pod config named `name` (uid from the name), logging under `logs`,
/// on the node's network when `host_network`.
pub fn pod_config(name: &str, logs: &Path, host_network: bool) -> cri::PodSandboxConfig {
    let log_directory = logs.join(name);
    std::fs::create_dir_all(&log_directory).expect("pod log dir");
    let mode = if host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_directory.display().to_string(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config running `command` in busybox, logging to
/// `<name>.log`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Creates and starts a container of `config` in `pod`; its id.
pub async fn start_container(
    runtime: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect("create container")
        .into_inner()
        .container_id;
    runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("start container");
    id
}

/// Stops and removes pod sandbox `pod`; a refusal fails the test.
pub async fn stop_and_remove_pod(runtime: &mut RuntimeServiceClient<Channel>, pod: &str) {
    runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .expect("stop pod sandbox");
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .expect("remove pod sandbox");
}

/// Polls `check` every 50 ms for up to 20 s; panics with `what` and the
/// last value if it never holds.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    eventually_within(what, Duration::from_secs(20), check).await
}

/// [`eventually`] with a time limit of the caller's.
pub async fn eventually_within<T: std::fmt::Debug, F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(Instant::now() < deadline, "{what} never held: {last}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for Node {
    /// Pods outlive the daemon (shims): stop and remove every pod through
    /// the CRI, then whatever the namespace still holds.
    fn drop(&mut self) {
        if !self.daemon.is_running() {
            return;
        }
        let address = self.daemon.address.display().to_string();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(channel) = crated_api::dial::connect(&address).await else {
                    return;
                };
                let mut runtime = RuntimeServiceClient::new(channel);
                let Ok(pods) = runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await
                else {
                    return;
                };
                for pod in pods.into_inner().items {
                    let _ = runtime
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: pod.id,
                        })
                        .await;
                }
            });
        })
        .join();
        let ctr = workspace_bin("ctr");
        let tasks = self
            .daemon
            .ctr(&ctr, &["-n", "k8s.io", "tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.daemon.ctr(
                &ctr,
                &["-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id],
            );
            let _ = self
                .daemon
                .ctr(&ctr, &["-n", "k8s.io", "tasks", "rm", "-f", id]);
        }
    }
}

/// Lines of a CRI log file, split into (stream, tag, content).
pub fn log_records(path: &PathBuf) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// crictl on `node`, with a config file of its own so the machine's
/// /etc/crictl.yaml plays no part.
pub struct Crictl {
    pub bin: PathBuf,
    pub config: PathBuf,
}

impl Crictl {
    /// crictl for `node`, its config file in `dir`.
    pub fn new(node: &Node, dir: &Path) -> Crictl {
        let bin = crated_testimages::cri_tool("crictl").unwrap_or_else(|| {
            panic!(
                "crictl is not built in {}: run `cargo xtask deps`",
                crated_testimages::go_bin_dir().display()
            )
        });
        let config = dir.join("crictl.yaml");
        std::fs::write(
            &config,
            format!(
                "runtime-endpoint: {e}\nimage-endpoint: {e}\ntimeout: 30\n",
                e = node.endpoint()
            ),
        )
        .expect("write crictl.yaml");
        Crictl { bin, config }
    }

    /// Runs `crictl args`; its stdout, or a panic with everything it said.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "crictl {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `crictl args` to its end.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run crictl")
    }

    /// `crictl args`, to be spawned as the caller likes.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--config").arg(&self.config).args(args);
        command
    }
}

/// Runs `cmd` in container `id` with ExecSync, without a timeout.
pub async fn exec(
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
