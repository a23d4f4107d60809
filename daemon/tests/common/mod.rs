//! A real `crated` on a temporary root, state and socket, and the two ctr
//! binaries (Debian's containerd 1.6 `/usr/bin/ctr` and ours) to drive it.
//!
//! Every daemon gets its own directories and socket, so tests run in
//! parallel; `Drop` stops the daemon even when a test fails.

#![allow(dead_code)]

pub mod blobs;
pub mod owned;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// Writes an executable (0755) shell script `body` at `path`: a stand-in
/// for a program the daemon or shim runs (criu, a logging binary, runc).
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes at `path` a runc that appends each command line it is given to
/// `log`, then runs the real runc with it.
pub fn runc_recording_to(path: &Path, log: &Path) {
    write_script(
        path,
        &format!("echo \"$*\" >> {}\nexec runc \"$@\"\n", log.display()),
    );
}

/// Debian's containerd 1.6 ctr.
pub const DEBIAN_CTR: &str = "/usr/bin/ctr";

/// Path of a binary built in this workspace (`crated`, `ctr`), next to the
/// test executable's `deps/` directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    if name == "crated" {
        return PathBuf::from(env!("CARGO_BIN_EXE_crated"));
    }
    let exe = std::env::current_exe().expect("test executable path is known");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (cargo xtask ci does)",
        bin.display()
    );
    bin
}

/// Debian's ctr; its absence is a failure, not a skip: CI installs it.
pub fn debian_ctr() -> PathBuf {
    let path = PathBuf::from(DEBIAN_CTR);
    assert!(
        path.exists(),
        "{DEBIAN_CTR} is missing: install containerd 1.6 from Debian (apt-get install containerd), as cargo xtask ci does"
    );
    path
}

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub address: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// The directories of a daemon, which outlive restarts.
pub fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("root"),
        dir.join("state"),
        dir.join("run/crated.sock"),
    )
}

/// Writes a config for `dir`: `top` holds top-level keys, `sections` TOML
/// tables. The opt plugin points into `dir` unless `sections` configures it.
pub fn write_config(dir: &Path, top: &str, sections: &str) -> PathBuf {
    let (root, state, address) = layout(dir);
    let opt = if sections.contains("io.containerd.internal.v1.opt") {
        String::new()
    } else {
        format!(
            "[plugins.\"io.containerd.internal.v1.opt\"]\npath = {:?}\n",
            dir.join("opt")
        )
    };
    // Content ingested without a lease (as Debian's `ctr content ingest`
    // does) is garbage to the collector. containerd's first collection runs
    // 100 ms after start and would race a test's first steps; later ones run
    // only after deletes or 100 writes, which tests control. So test daemons
    // skip the start-up collection unless a test configures the scheduler.
    let gc = if sections.contains("io.containerd.gc.v1.scheduler") {
        String::new()
    } else {
        "[plugins.\"io.containerd.gc.v1.scheduler\"]\nstartup_delay = \"0s\"\n".to_owned()
    };
    let text = format!(
        "version = 2\nroot = {root:?}\nstate = {state:?}\n{top}\n\n[grpc]\naddress = {address:?}\n\n{opt}\n{gc}\n{sections}\n"
    );
    let config = dir.join("config.toml");
    std::fs::write(&config, text).expect("write config");
    config
}

impl Daemon {
    /// Starts a daemon with the default test config.
    pub fn start() -> Self {
        Self::start_with("", "")
    }

    /// Starts a daemon with `top`-level keys and `sections` added to its config.
    pub fn start_with(top: &str, sections: &str) -> Self {
        let mut daemon = Self::prepare(top, sections);
        daemon.spawn(&[]);
        daemon
    }

    /// A daemon's directory and config, not started yet.
    pub fn prepare(top: &str, sections: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crated-test")
            .tempdir()
            .expect("temp dir");
        let config = write_config(dir.path(), top, sections);
        let (_, _, address) = layout(dir.path());
        let log = dir.path().join("crated.log");
        Daemon {
            dir,
            config,
            address,
            log,
            child: None,
        }
    }

    /// Starts the daemon process and waits until its socket answers.
    pub fn spawn(&mut self, extra_args: &[&str]) {
        self.spawn_env(extra_args, &[]);
    }

    /// [`Daemon::spawn`] with `env` added to the daemon's environment.
    pub fn spawn_env(&mut self, extra_args: &[&str], env: &[(&str, &std::ffi::OsStr)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(workspace_bin("crated"))
            .arg("--config")
            .arg(&self.config)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn crated");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.address).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("crated exited during start ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "crated did not start within 30s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon process is up (not stopped by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("daemon is running")
    }

    /// The daemon's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "crated did not exit within 15s of {signal}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a ctr binary against this daemon.
    pub fn ctr(&self, ctr: &Path, args: &[&str]) -> Output {
        ctr_at(ctr, &self.address, &[], args)
    }

    /// [`Daemon::ctr`] with `env` set in ctr's environment.
    pub fn ctr_with_env(&self, ctr: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        ctr_at(ctr, &self.address, env, args)
    }

    /// A gRPC channel to the daemon.
    pub async fn channel(&self) -> Channel {
        crated_api::dial::connect(&self.address.display().to_string())
            .await
            .expect("connect to crated")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// stdout of a successful command; panics with both streams otherwise.
pub fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// stderr of a failed command; panics if it succeeded.
pub fn fails(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "command unexpectedly succeeded:\nstdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// The rows of a ctr table, split on whitespace, without the header.
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// Debian's containerd 1.6 on a temporary root, state and socket (CRI
/// off), for interop in the other direction; killed on drop.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub address: PathBuf,
    child: Child,
}

impl Containerd {
    /// Starts `/usr/bin/containerd` and waits until its socket answers.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// [`Containerd::start`] with `sections` (TOML tables, such as a
    /// plugin's) added to its config.
    pub fn start_with(sections: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("containerd-test")
            .tempdir()
            .expect("temp dir");
        let address = dir.path().join("run/containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n[grpc]\naddress = {address:?}\n\n[ttrpc]\naddress = {:?}\n\n{sections}\n",
                dir.path().join("root"),
                dir.path().join("state"),
                dir.path().join("run/containerd.sock.ttrpc"),
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/containerd (apt-get install containerd)");
        // Owned from here on, so that a containerd that never answers is
        // killed by the drop when the wait below panics.
        let containerd = Self {
            dir,
            address,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&containerd.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                std::fs::read_to_string(containerd.dir.path().join("containerd.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        containerd
    }

    /// Runs Debian's ctr against it.
    pub fn ctr(&self, args: &[&str]) -> Output {
        ctr_at(Path::new(DEBIAN_CTR), &self.address, &[], args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills and removes what namespace `.1` of daemon `.0` holds when dropped
/// (a test that fails halfway leaves no container running), then what
/// the namespace left on the machine ([`forget_namespace`]).
pub struct NamespaceCleanup<'a>(pub &'a Daemon, pub String);

impl Drop for NamespaceCleanup<'_> {
    fn drop(&mut self) {
        if self.0.is_running() {
            empty_namespace(self.0, &workspace_bin("ctr"), &self.1);
        }
        forget_namespace(&self.1);
    }
}

/// Removes what a namespace leaves on the machine once its containers are
/// gone: runc's state dir of it (`/run/containerd/runc/<ns>`) and the
/// parent cgroup runc made for it in every hierarchy
/// (`/sys/fs/cgroup/<controller>/<ns>` on v1, `/sys/fs/cgroup/<ns>` on
/// v2), which nothing else removes (containerd leaves them too): every
/// test has a namespace of its own, so a machine that runs the tests
/// often collected thousands. Only empty ones go (rmdir).
pub fn forget_namespace(ns: &str) {
    let _ = std::fs::remove_dir(format!("/run/containerd/runc/{ns}"));
    let root = Path::new("/sys/fs/cgroup");
    let _ = std::fs::remove_dir(root.join(ns));
    for hierarchy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(ns));
    }
}

/// Kills and removes every task of namespace `ns` of a running `daemon`,
/// then removes its containers, through `ctr`; failures are ignored (this
/// runs while a test unwinds).
pub fn empty_namespace(daemon: &Daemon, ctr: &Path, ns: &str) {
    let tasks = daemon.ctr(ctr, &["-n", ns, "tasks", "ls", "-q"]);
    for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
        let _ = daemon.ctr(ctr, &["-n", ns, "tasks", "kill", "-s", "SIGKILL", id]);
        let _ = daemon.ctr(ctr, &["-n", ns, "tasks", "rm", "-f", id]);
    }
    let containers = daemon.ctr(ctr, &["-n", ns, "containers", "ls", "-q"]);
    for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
        let _ = daemon.ctr(ctr, &["-n", ns, "containers", "rm", id]);
    }
}

/// Debian's docker-registry on loopback with `images` pushed, each under
/// its `repository:tag`; returns it (stopped on drop) and its host.
pub async fn registry_with(
    images: Vec<(&'static str, crated_testimages::Image)>,
) -> (crated_testimages::Registry, String) {
    let registry = tokio::task::spawn_blocking(|| crated_testimages::Registry::start(None))
        .await
        .expect("join")
        .expect("start docker-registry");
    for (name, image) in images {
        crated_testimages::push(&format!("{}/{name}", registry.host), &image)
            .await
            .expect("push test image");
    }
    let host = registry.host.clone();
    (registry, host)
}

/// [`registry_with`] busybox as `test/busybox:latest`; returns the
/// registry and that reference.
pub async fn registry_with_busybox() -> (crated_testimages::Registry, String) {
    let busybox = crated_testimages::busybox().expect("busybox image");
    let (registry, host) = registry_with(vec![("test/busybox:latest", busybox)]).await;
    (registry, format!("{host}/test/busybox:latest"))
}

/// The parent of `pid`: a container's init is reparented to its shim (the
/// subreaper) once runc has started it.
pub fn parent_of(pid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the parenthesised command: state, ppid.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().to_owned()
}

/// Runs ctr binary `ctr` against the daemon at `address`, whatever the
/// environment names besides `env`, within [`CLIENT_LIMIT`].
fn ctr_at(ctr: &Path, address: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    output_within(
        Command::new(ctr)
            .arg("--address")
            .arg(address)
            .args(args)
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_ADDRESS")
            .envs(env.iter().copied()),
        CLIENT_LIMIT,
    )
}

/// containerd 1.7's ctr (`ctr-1.7`, built by `cargo xtask deps`), which
/// reaches what 1.7 added to the API (`--local=false`, deprecations,
/// `SOURCE_DATE_EPOCH`).
pub fn ctr17() -> PathBuf {
    crated_testimages::cri_tool("ctr-1.7").expect("ctr-1.7 is not built: run `cargo xtask deps`")
}

/// How long one ctr (or other client) run may take in a test before it is
/// killed: far above the slowest (a checkpoint, a large pull), so reaching
/// it means a hang.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(300);

/// Runs `cmd` (stdin empty, output captured, as `Command::output`) to its
/// end; one still running after `limit` is killed and fails the test with
/// what it printed, so that a hanging client stops its test instead of
/// the whole run.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let printed = finished
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| {
                    format!(
                        "stdout:\n{}\nstderr:\n{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            panic!("{cmd:?} still ran after {limit:?} and was killed\n{printed}");
        }
    }
}
