//! A real kubelet (Kubernetes v1.36, built by `cargo xtask deps` from the
//! Go module proxy) running a static pod on crated, as a node without an
//! API server runs one: everything the kubelet does to the pod goes
//! through crated's CRI, and the test checks what a user of the node would
//! see — the kubelet's own view of the pod (`/pods`, `/containerLogs`,
//! `/run`, `/stats/summary` on its HTTPS port), not crated's.
//!
//! The kubelet shares the test's private network namespace (its probes
//! reach the pod over the CNI bridge there). Three things keep it off the
//! machine: its cgroups live under a cgroup root of the test's own, removed
//! afterwards; it runs in a mount namespace of its own where the six
//! kernel settings it insists on (`vm.overcommit_memory`, `kernel.panic`,
//! …) are files holding the values it wants, so with
//! `protectKernelDefaults` it reads them instead of setting the machine's,
//! and where the fixed paths it writes to are empty tmpfs; and eviction
//! and image GC are off, so a full disk on the CI machine
//! cannot evict the pod mid-test.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cri_support::{eventually_within, Node, NodeOptions};
use serde_json::Value;

/// The kernel settings the kubelet checks (its `setupKernelTunables`) and
/// the values it wants.
const KERNEL_TUNABLES: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// The kubelet's HTTPS API and healthz ports; free, as the network
/// namespace is the test's own.
const KUBELET_PORT: u16 = 10250;
const HEALTHZ_PORT: u16 = 10248;

/// A cgroup root made for the kubelet in every cgroup hierarchy (the
/// unified one alone on a cgroup v2 host); removed, with whatever the kubelet
/// made below it, when dropped.
struct CgroupRoot {
    name: String,
    dirs: Vec<PathBuf>,
}

impl CgroupRoot {
    fn create(name: &str) -> CgroupRoot {
        let base = Path::new("/sys/fs/cgroup");
        let hierarchies: Vec<PathBuf> = if base.join("cgroup.controllers").exists() {
            vec![base.to_path_buf()]
        } else {
            std::fs::read_dir(base)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                // On a hybrid host, the kubelet's cgroup manager also makes
                // its groups in the unified hierarchy: that one too.
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        };
        let mut dirs = Vec::new();
        for hierarchy in hierarchies {
            let dir = hierarchy.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            // A new cpuset v1 group has no CPUs or memory nodes: nothing
            // could run in it until given its parent's.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(hierarchy.join(file)) {
                    std::fs::write(dir.join(file), value.trim()).unwrap();
                }
            }
            dirs.push(dir);
        }
        CgroupRoot {
            name: format!("/{name}"),
            dirs,
        }
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Deepest first: a cgroup with children cannot be removed.
            let mut all = Vec::new();
            collect_dirs(dir, &mut all);
            all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in all {
                if let Err(e) = std::fs::remove_dir(&d) {
                    eprintln!("could not remove cgroup {}: {e}", d.display());
                }
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// A running kubelet, stopped when dropped.
struct Kubelet {
    child: Child,
    dir: PathBuf,
    stopped: bool,
}

impl Kubelet {
    /// Starts the kubelet at `bin` in `dir` (its root dir, certificates,
    /// logs and static pod manifests), on `node`'s CRI socket, and waits
    /// until it is healthy.
    async fn start(
        bin: &Path,
        node: &Node,
        dir: &Path,
        cgroup_root: &str,
        setup: Setup,
    ) -> Kubelet {
        let tunables = dir.join("tunables");
        std::fs::create_dir_all(&tunables).unwrap();
        let mut binds = String::new();
        for (i, (name, value)) in KERNEL_TUNABLES.iter().enumerate() {
            let file = tunables.join(i.to_string());
            std::fs::write(&file, format!("{value}\n")).unwrap();
            binds.push_str(&format!(
                "mount --bind {} /proc/sys/{name} && ",
                file.display()
            ));
        }
        // Two fixed paths the kubelet writes whatever its config says
        // (container log links in /var/log/containers, its device plugin
        // socket in /var/lib/kubelet/device-plugins): in its namespace,
        // /var/log and /var/lib are empty tmpfs.
        binds.push_str("mount -t tmpfs tmpfs /var/log && mount -t tmpfs tmpfs /var/lib && ");
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\n\
             kind: KubeletConfiguration\n\
             containerRuntimeEndpoint: {endpoint}\n\
             imageServiceEndpoint: {endpoint}\n\
             staticPodPath: {dir}/manifests\n\
             fileCheckFrequency: 1s\n\
             syncFrequency: 3s\n\
             address: 127.0.0.1\n\
             port: {KUBELET_PORT}\n\
             readOnlyPort: 0\n\
             healthzBindAddress: 127.0.0.1\n\
             healthzPort: {HEALTHZ_PORT}\n\
             authentication:\n  anonymous:\n    enabled: true\n  webhook:\n    enabled: false\n\
             authorization:\n  mode: AlwaysAllow\n\
             cgroupDriver: cgroupfs\n\
             cgroupRoot: {cgroup_root}\n\
             cgroupsPerQOS: true\n\
             failSwapOn: false\n\
             failCgroupV1: false\n\
             protectKernelDefaults: true\n\
             oomScoreAdj: 0\n\
             podLogsDir: {dir}/pod-logs\n\
             resolvConf: {dir}/resolv.conf\n\
             evictionHard:\n  memory.available: \"0%\"\n  nodefs.available: \"0%\"\n  \
             nodefs.inodesFree: \"0%\"\n  imagefs.available: \"0%\"\n  imagefs.inodesFree: \"0%\"\n\
             imageGCHighThresholdPercent: 100\n\
             imageGCLowThresholdPercent: 99\n\
             containerLogMaxSize: 4Ki\n\
             containerLogMaxFiles: 3\n\
             containerLogMonitorInterval: 3s\n",
            endpoint = node.endpoint(),
            dir = dir.display(),
        );
        let mut config = config;
        if !setup.feature_gates.is_empty() {
            config.push_str("featureGates:\n");
            for gate in setup.feature_gates {
                config.push_str(&format!("  {gate}: true\n"));
            }
        }
        if setup.conf_template {
            config.push_str(&format!("podCIDR: {}\n", setup.subnet));
        }
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        // Appended to: a restarted kubelet's log follows the first one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kubelet.log"))
            .unwrap();
        // `unshare` execs the shell, which execs the kubelet: the child's
        // pid is the kubelet's.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(format!("{binds}exec \"$@\""))
            .arg("kubelet")
            .arg(bin)
            .arg(format!("--config={}/config.yaml", dir.display()))
            .arg(format!("--root-dir={}/root", dir.display()))
            .arg(format!("--cert-dir={}/pki", dir.display()))
            .arg("--hostname-override=crated-node")
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the kubelet");
        let kubelet = Kubelet {
            child,
            dir: dir.to_path_buf(),
            stopped: false,
        };
        let healthz = format!("http://127.0.0.1:{HEALTHZ_PORT}/healthz");
        let mut last = String::new();
        for _ in 0..600 {
            last = http_get(&healthz);
            if last == "ok" {
                return kubelet;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the kubelet never became healthy ({last}):\n{}",
            kubelet.logs()
        );
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("kubelet.log")).unwrap_or_default();
        // The end is what explains a failure; the whole log is long.
        let start = text.len().saturating_sub(30_000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    fn manifest(&self, name: &str) -> PathBuf {
        self.dir.join("manifests").join(format!("{name}.yaml"))
    }

    /// `curl` against the kubelet's HTTPS API (its own self-signed
    /// certificate; anonymous requests are allowed): the body, or the
    /// failure.
    fn api(&self, method: &str, path: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sSk", "--max-time", "10", "-X", method, "--fail-with-body"])
            .arg(format!("https://127.0.0.1:{KUBELET_PORT}{path}"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(body)
        } else {
            Err(format!(
                "{method} {path}: {}{body}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The kubelet's view of the static pod `name` (namespace `default`).
    fn pod(&self, name: &str) -> Result<Value, String> {
        let pods: Value =
            serde_json::from_str(&self.api("GET", "/pods")?).map_err(|e| format!("/pods: {e}"))?;
        pods["items"]
            .as_array()
            .and_then(|items| {
                items.iter().find(|p| {
                    p["metadata"]["name"].as_str() == Some(&format!("{name}-crated-node"))
                })
            })
            .cloned()
            .ok_or_else(|| format!("no pod {name} in /pods: {pods}"))
    }

    /// SIGTERM (SIGKILL after 10 s), as systemd stops it; its pods run
    /// on.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The body `curl` gets from `url` in the test's network namespace (empty
/// when it gets none).
fn http_get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status of container `name` in a pod's status.
fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    by_name(&pod["status"]["containerStatuses"], name)
}

/// The item of the JSON list `items` whose `name` is `name`.
fn by_name<'a>(items: &'a Value, name: &str) -> Option<&'a Value> {
    items
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
}

/// The stats of static pod `name` in a `/stats/summary` answer.
fn pod_stats<'a>(summary: &'a Value, name: &str) -> Option<&'a Value> {
    let name = format!("{name}-crated-node");
    summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"].as_str() == Some(name.as_str()))
}

/// How a test's node and kubelet are set up.
#[derive(Clone, Copy, Default)]
struct Setup {
    /// Tells the test's cgroup root apart.
    name: &'static str,
    /// The pods' CNI subnet, a /24.
    subnet: &'static str,
    /// The kubelet's feature gates turned on.
    feature_gates: &'static [&'static str],
    /// No CNI config, but crated's `cni.conf_template`, rendered for the
    /// `podCIDR` (`subnet`) the kubelet is given.
    conf_template: bool,
}

/// A private network namespace's node — crated with a CNI bridge network
/// — and a kubelet on it. Fields drop in order: the kubelet stops, the
/// node removes its pods, then the kubelet's cgroups go.
struct Harness {
    kubelet: Kubelet,
    node: Node,
    cgroups: CgroupRoot,
    work: tempfile::TempDir,
    _ipam: tempfile::TempDir,
    bin: PathBuf,
    setup: Setup,
}

impl Harness {
    /// Must run inside `in_private_netns`.
    async fn start(setup: Setup) -> Harness {
        let bin = crated_testimages::cri_tool("kubelet").unwrap_or_else(|| {
            panic!(
                "the kubelet is not built in {}: run `cargo xtask deps`",
                crated_testimages::go_bin_dir().display()
            )
        });
        let ipam = tempfile::tempdir().unwrap();
        let cgroups = CgroupRoot::create(&format!(
            "crated-kubelet-{}-{}",
            std::process::id(),
            setup.name
        ));
        let work = tempfile::tempdir().unwrap();
        let bridge = cri_support::bridge_conflist("kubelet", setup.subnet, ipam.path());
        let options = if setup.conf_template {
            // containerd's documented dual-stack ranges and routes.
            let template = work.path().join("cni.template");
            let text = bridge
                .replace(
                    &format!(r#"[{{"subnet":"{}"}}]"#, setup.subnet),
                    r#"{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}"#,
                )
                .replace(
                    r#"[{"dst":"0.0.0.0/0"}]"#,
                    r#"[{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]"#,
                );
            assert!(
                text.contains(".PodCIDRRanges") && text.contains(".Routes"),
                "{text}"
            );
            std::fs::write(&template, text).unwrap();
            NodeOptions {
                cni_conf_template: Some(template),
                ..NodeOptions::default()
            }
        } else {
            NodeOptions {
                cni: vec![("10-kubelet.conflist".into(), bridge)],
                ..NodeOptions::default()
            }
        };
        let node = Node::start_with(options).await;
        let kubelet = Kubelet::start(&bin, &node, work.path(), &cgroups.name, setup).await;
        Harness {
            kubelet,
            node,
            cgroups,
            work,
            _ipam: ipam,
            bin,
            setup,
        }
    }

    /// Stops the kubelet and starts it again on the same directories, as
    /// an upgrade of it does.
    async fn restart_kubelet(&mut self) {
        self.kubelet.stop();
        self.kubelet = Kubelet::start(
            &self.bin,
            &self.node,
            self.work.path(),
            &self.cgroups.name,
            self.setup,
        )
        .await;
    }

    /// `what`, with the end of the kubelet's log and the daemon's log.
    fn fail(&self, what: &str) -> String {
        format!(
            "{what}\n--- kubelet log (end) ---\n{}\n--- daemon log ---\n{}",
            self.kubelet.logs(),
            self.node.daemon.logs()
        )
    }

    /// Writes the `web` pod's manifest and waits until its server is ready
    /// and serves the page at the pod IP, and its crasher has been
    /// restarted with its exit code and termination message kept; the
    /// kubelet's view of the pod.
    async fn web_pod_runs(&self) -> Value {
        std::fs::write(self.kubelet.manifest("web"), web_pod(&self.node.busybox)).unwrap();
        // The server becomes ready: the kubelet pulled the image, ran the
        // sandbox and both containers through crated, learnt the pod's IP
        // from it and reached the server over the pod network.
        let pod = self
            .until(
                "the server is ready",
                "web",
                Duration::from_secs(90),
                |pod| {
                    let server = container_status(pod, "server").ok_or("no server status")?;
                    (server["ready"] == Value::Bool(true))
                        .then(|| pod.clone())
                        .ok_or_else(|| format!("not ready: {server}"))
                        .and_then(|pod| {
                            // Nothing made the kubelet restart it (a
                            // status it misread would).
                            match server["restartCount"].as_u64() {
                                Some(0) => Ok(pod),
                                _ => Err(format!("restarted before its probes failed: {server}")),
                            }
                        })
                },
            )
            .await;
        let pod_ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            pod_ip.starts_with(self.setup.subnet.trim_end_matches("0/24")),
            "{}",
            self.fail(&format!("pod IP {pod_ip}: {pod}"))
        );
        assert_eq!(
            http_get(&format!("http://{pod_ip}:8080/index.html")),
            "hello from crated\n"
        );

        // The crasher exits 3 and is restarted, its exit code and
        // termination message kept as its last state; its runs share the
        // emptyDir with the server.
        let crasher = self
            .until(
                "the crasher is restarted",
                "web",
                Duration::from_secs(90),
                |pod| {
                    let crasher = container_status(pod, "crasher").ok_or("no crasher status")?;
                    (crasher["restartCount"].as_u64().unwrap_or(0) >= 1
                        && crasher["lastState"]["terminated"].is_object())
                    .then(|| crasher.clone())
                    .ok_or_else(|| crasher.to_string())
                },
            )
            .await;
        let last = &crasher["lastState"]["terminated"];
        assert_eq!(
            last["exitCode"].as_i64(),
            Some(3),
            "{}",
            self.fail(&crasher.to_string())
        );
        assert_eq!(
            last["message"].as_str(),
            Some("crashed on purpose\n"),
            "{}",
            self.fail(&crasher.to_string())
        );
        pod
    }

    /// Removes the manifests of `pods` and waits until the kubelet has
    /// stopped them: no container runs any more, no sandbox is ready.
    async fn remove_pods(&self, pods: &[&str]) {
        for pod in pods {
            std::fs::remove_file(self.kubelet.manifest(pod)).unwrap();
        }
        let crictl = cri_support::Crictl::new(&self.node, self.work.path());
        eventually_within("the pods are stopped", Duration::from_secs(60), || async {
            let running = crictl.ok(&["ps", "-q", "--state", "running"]);
            let ready = crictl.ok(&["pods", "-q", "--state", "ready"]);
            (running.trim().is_empty() && ready.trim().is_empty())
                .then_some(())
                .ok_or_else(|| format!("running: {running} ready pods: {ready}"))
        })
        .await;
    }

    /// Waits (up to `limit`) for `check` on the kubelet's view of the
    /// static pod `name` to give a value.
    async fn until<T: std::fmt::Debug>(
        &self,
        what: &str,
        name: &str,
        limit: Duration,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> T {
        let check = &check;
        let found = tokio::time::timeout(limit, async {
            loop {
                match self.kubelet.pod(name).and_then(|pod| check(&pod)) {
                    Ok(value) => return value,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
        .await;
        match found {
            Ok(value) => value,
            Err(_) => {
                let last = self.kubelet.pod(name).and_then(|pod| check(&pod));
                panic!("{}", self.fail(&format!("{what} never held: {last:?}")))
            }
        }
    }
}

/// The static pod: an HTTP server with an HTTP readiness probe and an exec
/// liveness probe, and a container that exits 3 each time it runs (with a
/// termination message), both sharing an emptyDir.
fn web_pod(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {{}}
  containers:
  - name: server
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello from $GREETING > /www/index.html && touch /tmp/healthy && echo serving && exec httpd -f -p 8080 -h /www"]
    env:
    - name: GREETING
      value: crated
    ports:
    - containerPort: 8080
    readinessProbe:
      httpGet:
        path: /index.html
        port: 8080
      periodSeconds: 1
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 1
    resources:
      limits:
        memory: 64Mi
        cpu: 200m
    volumeMounts:
    - name: shared
      mountPath: /shared
  - name: crasher
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo run >> /shared/runs; echo crashing; echo crashed on purpose > /dev/termination-log; exit 3"]
    volumeMounts:
    - name: shared
      mountPath: /shared
"#
    )
}

/// A host-network pod, as a node's control plane static pods are: an HTTP
/// server on the node's loopback.
fn hostnet_pod(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostnet
  namespace: default
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo on the node > /www/index.html && exec httpd -f -p 127.0.0.1:18080 -h /www"]
    readinessProbe:
      httpGet:
        host: 127.0.0.1
        path: /index.html
        port: 18080
      periodSeconds: 1
"#
    )
}

/// A pod with a user namespace of its own (`hostUsers: false`), on an
/// emptyDir.
fn userns_pod(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: userns
  namespace: default
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 2
  volumes:
  - name: scratch
    emptyDir: {{}}
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "touch /scratch/mine && exec sleep 1000"]
    volumeMounts:
    - name: scratch
      mountPath: /scratch
"#
    )
}

/// The host path of the cgroup directory holding a process, from its
/// `/proc/<pid>/cgroup` text: the memory hierarchy's on cgroup v1, the
/// unified one's on v2.
fn memory_cgroup(proc_cgroup: &str) -> Option<PathBuf> {
    let v1 = proc_cgroup.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
    });
    v1.or_else(|| {
        let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
    })
}

/// The memory limit in a cgroup directory (v1 or v2), in bytes.
fn memory_limit(dir: &Path) -> Option<u64> {
    ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Probes, restarts, logs, ExecSync, stats, cgroups and removal, as the
/// kubelet drives them.
#[test]
fn kubelet_runs_a_static_pod_on_crated() {
    crated_testimages::in_private_netns(|| async {
        let h = Harness::start(Setup {
            name: "web",
            subnet: "10.88.12.0/24",
            ..Setup::default()
        })
        .await;
        let kubelet = &h.kubelet;
        std::fs::write(kubelet.manifest("hostnet"), hostnet_pod(&h.node.busybox)).unwrap();
        std::fs::write(kubelet.manifest("userns"), userns_pod(&h.node.busybox)).unwrap();

        let pod = h.web_pod_runs().await;
        let logs = kubelet
            .api("GET", "/containerLogs/default/web-crated-node/crasher")
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        assert_eq!(logs, "crashing\n", "{}", h.fail("the crasher's logs"));
        // `/run` is an ExecSync through crated.
        let runs = kubelet
            .api(
                "POST",
                "/run/default/web-crated-node/server?cmd=cat%20/shared/runs",
            )
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        assert!(
            runs.lines().count() >= 2 && runs.lines().all(|l| l == "run"),
            "{}",
            h.fail(&runs)
        );

        // The server runs in the pod's cgroup the kubelet made (QoS class
        // burstable: the crasher asks for nothing), under the node's cgroup
        // root, with the memory limit of its spec.
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let proc_cgroup = kubelet
            .api(
                "POST",
                "/run/default/web-crated-node/server?cmd=cat%20/proc/self/cgroup",
            )
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        let dir = memory_cgroup(&proc_cgroup)
            .unwrap_or_else(|| panic!("{}", h.fail(&format!("no memory cgroup in {proc_cgroup}"))));
        let pod_cgroup = format!("{}/kubepods/burstable/pod{uid}/", h.cgroups.name);
        assert!(
            dir.to_string_lossy().contains(&pod_cgroup),
            "{}",
            h.fail(&format!("{} is not under {pod_cgroup}", dir.display()))
        );
        assert_eq!(
            memory_limit(&dir),
            Some(64 << 20),
            "{}",
            h.fail(&dir.display().to_string())
        );

        // The summary API reads crated's container stats.
        let summary = kubelet
            .api("GET", "/stats/summary")
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        let summary: Value = serde_json::from_str(&summary).unwrap();
        let server_stats = pod_stats(&summary, "web")
            .and_then(|web| by_name(&web["containers"], "server"))
            .unwrap_or_else(|| panic!("{}", h.fail(&format!("no server stats: {summary}"))));
        assert!(
            server_stats["memory"]["workingSetBytes"]
                .as_u64()
                .unwrap_or(0)
                > 0
                && server_stats["cpu"]["usageCoreNanoSeconds"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0,
            "{}",
            h.fail(&format!("server stats: {server_stats}"))
        );

        // The host-network pod serves on the node's own loopback.
        h.until(
            "the host-network server is ready",
            "hostnet",
            Duration::from_secs(60),
            |pod| {
                let server = container_status(pod, "server").ok_or("no server status")?;
                (server["ready"] == Value::Bool(true))
                    .then_some(())
                    .ok_or_else(|| server.to_string())
            },
        )
        .await;
        assert_eq!(
            http_get("http://127.0.0.1:18080/index.html"),
            "on the node\n"
        );

        // The hostUsers: false pod runs as a range of 65536 host IDs the
        // kubelet chose, its root owning its image's files, the kubelet's
        // /etc/hosts and what it wrote in its emptyDir.
        h.until(
            "the userns pod runs",
            "userns",
            Duration::from_secs(60),
            |pod| {
                let app = container_status(pod, "app").ok_or("no app status")?;
                app["state"]["running"]
                    .is_object()
                    .then_some(())
                    .ok_or_else(|| app.to_string())
            },
        )
        .await;
        let inside = kubelet
            .api(
                "POST",
                "/run/default/userns-crated-node/app?cmd=stat%20-c%20%25u:%25g%20/bin/busybox%20/etc/hosts%20/scratch/mine",
            )
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        assert_eq!(inside, "0:0\n0:0\n0:0\n", "{}", h.fail(&inside));
        let uid_map = kubelet
            .api(
                "POST",
                "/run/default/userns-crated-node/app?cmd=cat%20/proc/self/uid_map",
            )
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        let range: Vec<u64> = uid_map
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(
            matches!(range[..], [0, host, 65536] if host >= 65536 && host % 65536 == 0),
            "{}",
            h.fail(&uid_map)
        );

        // A failing liveness probe (its file removed through ExecSync)
        // makes the kubelet stop the server through crated and start it
        // again; it is ready once more.
        kubelet
            .api(
                "POST",
                "/run/default/web-crated-node/server?cmd=rm%20/tmp/healthy",
            )
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        h.until(
            "the server is restarted and ready",
            "web",
            Duration::from_secs(90),
            |pod| {
                let server = container_status(pod, "server").ok_or("no server status")?;
                (server["restartCount"].as_u64().unwrap_or(0) >= 1
                    && server["ready"] == Value::Bool(true))
                .then_some(())
                .ok_or_else(|| server.to_string())
            },
        )
        .await;

        // The manifests removed, the kubelet stops the pods.
        h.remove_pods(&["web", "hostnet", "userns"]).await;
    });
}

/// A pod with an init container, a sidecar, lifecycle hooks and a chatty
/// main container, on a hostPath directory of the test's.
fn lifecycle_pod(image: &str, shared: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: lifecycle
  namespace: default
spec:
  terminationGracePeriodSeconds: 5
  volumes:
  - name: shared
    hostPath:
      path: {shared}
      type: Directory
  initContainers:
  - name: init
    image: {image}
    command: ["sh", "-c", "echo init >> /shared/events"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  - name: sidecar
    image: {image}
    restartPolicy: Always
    command: ["sh", "-c", "echo sidecar >> /shared/events; trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo line $i of a container that talks a lot, so that the kubelet rotates its log; sleep 0.05; done"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo poststart >> /shared/events"]
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop >> /shared/events"]
    volumeMounts:
    - name: shared
      mountPath: /shared
"#,
        shared = shared.display()
    )
}

/// The numbers of the `line N …` records in a CRI log file's text.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|record| {
            record
                .split_once(" line ")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Init containers, a sidecar, postStart/preStop hooks, log rotation with
/// ReopenContainerLog, and crated killed and restarted under a running
/// pod, which the kubelet must find as it was.
#[test]
fn kubelet_pod_lifecycle_survives_a_crated_restart() {
    crated_testimages::in_private_netns(|| async {
        let mut h = Harness::start(Setup {
            name: "lifecycle",
            subnet: "10.88.13.0/24",
            ..Setup::default()
        })
        .await;
        let shared = h.work.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let events = shared.join("events");
        std::fs::write(
            h.kubelet.manifest("lifecycle"),
            lifecycle_pod(&h.node.busybox, &shared),
        )
        .unwrap();

        let running = |pod: &Value| -> Result<(String, String), String> {
            let main = container_status(pod, "main").ok_or("no main status")?;
            let sidecar = by_name(&pod["status"]["initContainerStatuses"], "sidecar")
                .ok_or("no sidecar status")?;
            if main["state"]["running"].is_object() && sidecar["state"]["running"].is_object() {
                Ok((
                    main["containerID"].as_str().unwrap_or_default().to_string(),
                    sidecar["containerID"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ))
            } else {
                Err(format!("main {main}; sidecar {sidecar}"))
            }
        };
        let (main_id, sidecar_id) = h
            .until(
                "main and sidecar run",
                "lifecycle",
                Duration::from_secs(90),
                running,
            )
            .await;
        eventually_within(
            "the postStart hook ran",
            Duration::from_secs(30),
            || async {
                let text = std::fs::read_to_string(&events).unwrap_or_default();
                text.contains("poststart").then_some(()).ok_or(text)
            },
        )
        .await;
        let text = std::fs::read_to_string(&events).unwrap();
        let order: Vec<&str> = text.lines().collect();
        assert_eq!(order.first(), Some(&"init"), "{}", h.fail(&text));
        assert!(
            order.contains(&"sidecar") && order.len() == 3,
            "{}",
            h.fail(&text)
        );

        // The kubelet rotates the main container's log (renames it, asks
        // crated to reopen it): records go on in a new file.
        let pod = h.kubelet.pod("lifecycle").unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        let log_dir = h
            .work
            .path()
            .join("pod-logs")
            .join(format!("default_lifecycle-crated-node_{uid}"))
            .join("main");
        let (rotated, current) =
            eventually_within("the log is rotated", Duration::from_secs(60), || async {
                let mut rotated = Vec::new();
                for entry in std::fs::read_dir(&log_dir)
                    .map_err(|e| e.to_string())?
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with("0.log.")
                        && !name.ends_with(".gz")
                        && !name.ends_with(".tmp")
                    {
                        rotated.push(entry.path());
                    }
                }
                let current = std::fs::read_to_string(log_dir.join("0.log")).unwrap_or_default();
                let Some(first_rotated) = rotated.first() else {
                    return Err(format!("no rotated log in {}", log_dir.display()));
                };
                let old = line_numbers(&std::fs::read_to_string(first_rotated).unwrap_or_default());
                let new = line_numbers(&current);
                match (old.last(), new.last()) {
                    (Some(o), Some(n)) if n > o => Ok((old, new)),
                    _ => Err(format!(
                        "rotated ends {:?}, current ends {:?}",
                        old.last(),
                        new.last()
                    )),
                }
            })
            .await;
        assert!(!rotated.is_empty() && !current.is_empty());

        // crated killed and started again, then the kubelet restarted: each
        // time the kubelet finds the same containers running, none
        // restarted, no second sandbox (it would make new ones for what
        // crated lost or reported otherwise: labels, annotations, state).
        h.node.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
        tokio::time::sleep(Duration::from_secs(4)).await;
        h.node.daemon.spawn(&[]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.restart_kubelet().await;
        let crictl = cri_support::Crictl::new(&h.node, h.work.path());
        tokio::time::sleep(Duration::from_secs(8)).await;
        let pod = h
            .until(
                "the pod runs after the restart",
                "lifecycle",
                Duration::from_secs(60),
                |pod| running(pod).map(|ids| (ids, pod.clone())),
            )
            .await
            .1;
        let (main_after, sidecar_after) = running(&pod).unwrap();
        assert_eq!(
            (main_after, sidecar_after),
            (main_id, sidecar_id),
            "{}",
            h.fail(&pod.to_string())
        );
        let main = container_status(&pod, "main").unwrap();
        assert_eq!(
            main["restartCount"].as_u64(),
            Some(0),
            "{}",
            h.fail(&pod.to_string())
        );
        let pods = crictl.ok(&["pods", "-q"]);
        assert_eq!(pods.lines().count(), 1, "{}", h.fail(&pods));
        // Its log still flows into 0.log.
        let before =
            line_numbers(&std::fs::read_to_string(log_dir.join("0.log")).unwrap_or_default());
        eventually_within(
            "the log goes on after the restart",
            Duration::from_secs(30),
            || async {
                let now = line_numbers(
                    &std::fs::read_to_string(log_dir.join("0.log")).unwrap_or_default(),
                );
                (now.last() > before.last() || now.first() > before.last())
                    .then_some(())
                    .ok_or_else(|| format!("{:?} then {:?}", before.last(), now.last()))
            },
        )
        .await;

        // The manifest removed: the preStop hook runs before the main
        // container is stopped, then everything stops.
        h.remove_pods(&["lifecycle"]).await;
        let text = std::fs::read_to_string(&events).unwrap();
        assert_eq!(text.lines().last(), Some("prestop"), "{}", h.fail(&text));
    });
}

/// The kubelet's alpha ways of reading the runtime, which lean on crated
/// more: the evented PLEG (container changes from `GetContainerEvents`
/// instead of relisting) and every statistic from the CRI
/// (`ListPodSandboxStats`, `ListContainerStats`, and the pod sandbox
/// metrics behind `/metrics/cadvisor`).
#[test]
fn kubelet_with_evented_pleg_and_cri_stats() {
    crated_testimages::in_private_netns(|| async {
        let h = Harness::start(Setup {
            name: "cristats",
            subnet: "10.88.14.0/24",
            feature_gates: &["EventedPLEG", "PodAndContainerStatsFromCRI"],
            ..Setup::default()
        })
        .await;
        let pod = h.web_pod_runs().await;
        let pod_ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        for _ in 0..5 {
            http_get(&format!("http://{pod_ip}:8080/index.html"));
        }

        // The pod's network traffic (from its network namespace) and its
        // containers' CPU and memory, in the summary API.
        let summary = eventually_within("pod stats", Duration::from_secs(60), || async {
            let summary: Value = serde_json::from_str(&h.kubelet.api("GET", "/stats/summary")?)
                .map_err(|e| e.to_string())?;
            let web = pod_stats(&summary, "web")
                .cloned()
                .ok_or_else(|| format!("no web pod: {summary}"))?;
            let rx = web["network"]["rxBytes"].as_u64().unwrap_or(0);
            let server = by_name(&web["containers"], "server")
                .cloned()
                .unwrap_or_default();
            let working_set = server["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
            (rx > 0 && working_set > 0)
                .then(|| web.clone())
                .ok_or_else(|| format!("rx {rx}, working set {working_set}: {web}"))
        })
        .await;
        assert!(
            summary["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0,
            "{}",
            h.fail(&summary.to_string())
        );

        // `/metrics/cadvisor` is crated's pod sandbox metrics, labelled as
        // cAdvisor labels them.
        let metrics = h
            .kubelet
            .api("GET", "/metrics/cadvisor")
            .unwrap_or_else(|e| panic!("{}", h.fail(&e)));
        let server_memory = metrics.lines().find(|l| {
            l.starts_with("container_memory_working_set_bytes{")
                && l.contains(r#"container="server""#)
                && l.contains(r#"pod="web-crated-node""#)
        });
        let value = server_memory
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{}",
            h.fail(&format!(
                "no server working set in /metrics/cadvisor:\n{metrics}"
            ))
        );

        // Every event crated sent while the pod ran carried the pod's
        // status: the kubelet used them all.
        let log = std::fs::read_to_string(h.work.path().join("kubelet.log")).unwrap();
        let dropped: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Evented PLEG: received ContainerEventResponse with nil"))
            .collect();
        assert!(dropped.is_empty(), "{}", h.fail(&dropped.join("\n")));

        h.remove_pods(&["web"]).await;
    });
}

/// A node without a CNI config of its own (no network add-on): crated
/// renders `cni.conf_template` for the pod CIDR the kubelet is given
/// (UpdateRuntimeConfig), the network becomes ready, and pods get their
/// addresses from that CIDR.
#[test]
fn kubelet_pod_cidr_renders_the_cni_template() {
    crated_testimages::in_private_netns(|| async {
        let h = Harness::start(Setup {
            name: "template",
            subnet: "10.88.15.0/24",
            conf_template: true,
            ..Setup::default()
        })
        .await;
        // web_pod_runs checks the pod's IP is in the kubelet's pod CIDR.
        h.web_pod_runs().await;
        let conf_dir = h.node.daemon.dir.path().join("cni/net.d");
        let rendered = std::fs::read_to_string(conf_dir.join("10-containerd-net.conflist"))
            .unwrap_or_else(|e| panic!("{}", h.fail(&e.to_string())));
        let rendered: Value = serde_json::from_str(&rendered).unwrap();
        let ipam = &rendered["plugins"][0]["ipam"];
        assert_eq!(
            (&ipam["ranges"], &ipam["routes"]),
            (
                &serde_json::json!([[{"subnet": "10.88.15.0/24"}]]),
                &serde_json::json!([{"dst": "0.0.0.0/0"}])
            ),
            "{rendered}"
        );
        h.remove_pods(&["web"]).await;
    });
}
