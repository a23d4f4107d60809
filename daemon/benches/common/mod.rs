//! What the benchmarks share: daemons under test on their own roots, and
//! medians.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tonic::transport::Channel;

/// A daemon under test, on its own root, state and socket.
pub struct Daemon {
    pub name: &'static str,
    child: Child,
    pub address: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(name: &'static str, binary: &Path, parent: &Path) -> anyhow::Result<Self> {
        Self::start_with(name, binary, parent, "", None)
    }

    /// [`Daemon::start`] with `sections` added to the config; containerd
    /// keeps its CRI plugin when they configure it. With `debug_log` the
    /// daemon logs at debug level into that file (for a look at where the
    /// time goes) instead of into its temporary directory.
    pub fn start_with(
        name: &'static str,
        binary: &Path,
        parent: &Path,
        sections: &str,
        debug_log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{name}-"))
            .tempdir_in(parent)?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let address = state.join(format!("{name}.sock"));
        // CRI is containerd's alone and adds its own start-up work.
        let disabled = if name == "containerd" && !sections.contains("grpc.v1.cri") {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
        } else {
            ""
        };
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n{disabled}\n[grpc]\naddress = {address:?}\n\n[ttrpc]\naddress = {:?}\n\n{sections}",
            state.join(format!("{name}.sock.ttrpc"))
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let log_path = debug_log.map_or_else(|| dir.path().join("daemon.log"), Path::to_path_buf);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command.arg("--config").arg(&config_path);
        if debug_log.is_some() {
            command.args(["--log-level", "debug"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&address).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{name} did not start within 30s; see {}",
                    dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            name,
            child,
            address,
            _dir: dir,
        })
    }

    /// The daemon's own directory (config, log, root, state).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(crated_api::dial::connect(&self.address.display().to_string()).await?)
    }

    /// CPU time the daemon's threads alive now have used (their
    /// `schedstat`, nanosecond-exact, unlike `stat`'s clock ticks). A
    /// thread that ends between two readings takes its time with it; the
    /// daemons' threads live long (tokio keeps an idle blocking thread
    /// 10 s), so over a measurement of a few seconds that is rare.
    pub fn cpu_time(&self) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        let nanos: u64 = tasks
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    /// Resident memory of the daemon process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// A KiB figure of the daemon's `/proc/PID/status` (`VmRSS`,
    /// `RssAnon`, …); 0 when it cannot be read.
    pub fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median of `samples` (which must not be empty).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The release `crated` (or another workspace binary): in
/// `$CRATED_BENCH_BINARIES` (set by `cargo xtask bench`, which builds the
/// binaries apart from the harness), else next to the benchmark's `deps/`
/// directory.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("CRATED_BENCH_BINARIES") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .context("benchmark executable has no target directory")?,
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (cargo xtask bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// The release `crated`.
pub fn crated_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("crated")
}

/// PSS of a process, in KiB.
pub fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Shims serving `daemon` (their command line names its socket).
pub fn shims_of(daemon: &Daemon) -> Vec<u32> {
    let address = daemon.address.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&address) {
            out.push(pid);
        }
    }
    out
}
