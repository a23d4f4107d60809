//! runc as the shim drives it: `--root <root>/<ns>`, errors from its JSON
//! log, stdio given as file descriptors.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crated_core::{Error, Result};

use crate::reaper::Reaper;

/// A runc binary for one namespace.
#[derive(Clone)]
pub struct Runc {
    /// The binary (`runc`, or the `BinaryName` option, e.g. `crun`).
    pub binary: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Where runc writes its log (JSON), read for error messages.
    pub log: PathBuf,
    /// The reaper that owns every exit.
    pub reaper: Reaper,
}

/// Stdio for a runc command's container process.
#[derive(Default)]
pub struct ProcessIo {
    /// stdin.
    pub stdin: Option<OwnedFd>,
    /// stdout.
    pub stdout: Option<OwnedFd>,
    /// stderr.
    pub stderr: Option<OwnedFd>,
}

fn stdio(fd: Option<OwnedFd>) -> Stdio {
    fd.map(Stdio::from).unwrap_or_else(Stdio::null)
}

impl Runc {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// The last error runc logged, else its stderr.
    fn failure(&self, what: &str, stderr: &[u8]) -> Error {
        let logged = std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|log| {
                log.lines()
                    .rev()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|v| v["level"] == "error")
                    .find_map(|v| v["msg"].as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(stderr).trim().to_owned());
        Error::unknown(format!("OCI runtime {what} failed: {logged}"))
    }

    /// Why runc could not be started: a missing binary says so by name.
    fn spawn_error(&self, what: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "{} not found: no runtime binary {:?} on the shim's PATH {:?}; install it, \
                 or `ctr install` an image that holds it",
                self.binary.display(),
                self.binary,
                std::env::var("PATH").unwrap_or_default()
            ))
        } else {
            Error::unknown(format!("run {} {what}: {e}", self.binary.display()))
        }
    }

    async fn run(&self, what: &str, cmd: Command, stdin: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let _ = std::fs::remove_file(&self.log);
        let out = self
            .reaper
            .output(cmd, stdin)
            .await
            .map_err(|e| self.spawn_error(what, e))?;
        if !out.status.success() {
            return Err(self.failure(what, &out.stderr));
        }
        Ok(out.stdout)
    }

    /// `runc create`: the container's init, stopped before its process
    /// runs; returns its pid.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        console: Option<&Path>,
        io: ProcessIo,
    ) -> Result<i32> {
        let pid_file = bundle.join("init.pid");
        let bundle_s = bundle.display().to_string();
        let pid_s = pid_file.display().to_string();
        let mut args = vec!["create", "--bundle", &bundle_s, "--pid-file", &pid_s];
        let console_s = console.map(|c| c.display().to_string());
        if let Some(c) = &console_s {
            args.extend(["--console-socket", c]);
        }
        args.push(id);
        let mut cmd = self.command(&args);
        cmd.current_dir(bundle)
            .stdin(stdio(io.stdin))
            .stdout(stdio(io.stdout))
            .stderr(stdio(io.stderr));
        // Reaper::output pipes stdout/stderr; the container's stdio must
        // stay what we gave: run it with plain spawn-and-reap.
        self.spawn_with_stdio("create", cmd).await?;
        read_pid(&pid_file)
    }

    /// Runs a command whose stdio was set by the caller (the container's).
    async fn spawn_with_stdio(&self, what: &str, cmd: Command) -> Result<()> {
        let _ = std::fs::remove_file(&self.log);
        let status = self
            .reaper
            .status(cmd)
            .await
            .map_err(|e| self.spawn_error(what, e))?;
        if status != 0 {
            return Err(self.failure(what, b""));
        }
        Ok(())
    }

    /// `runc start`.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.run("start", self.command(&["start", id]), None)
            .await
            .map(|_| ())
    }

    /// `runc exec --detach` of `process` (an OCI process JSON); its pid.
    pub async fn exec(
        &self,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        io: ProcessIo,
    ) -> Result<i32> {
        let process_s = process.display().to_string();
        let pid_s = pid_file.display().to_string();
        let mut args = vec![
            "exec",
            "--detach",
            "--process",
            &process_s,
            "--pid-file",
            &pid_s,
        ];
        let console_s = console.map(|c| c.display().to_string());
        if let Some(c) = &console_s {
            args.extend(["--console-socket", c]);
        }
        args.push(id);
        let mut cmd = self.command(&args);
        cmd.stdin(stdio(io.stdin))
            .stdout(stdio(io.stdout))
            .stderr(stdio(io.stderr));
        self.spawn_with_stdio("exec", cmd).await?;
        read_pid(pid_file)
    }

    /// `runc kill`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &sig]);
        self.run("kill", self.command(&args), None)
            .await
            .map(|_| ())
    }

    /// `runc delete` (`--force` kills first).
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run("delete", self.command(&args), None)
            .await
            .map(|_| ())
    }

    /// `runc pause` / `runc resume`.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let verb = if pause { "pause" } else { "resume" };
        self.run(verb, self.command(&[verb, id]), None)
            .await
            .map(|_| ())
    }

    /// `runc ps --format json`: the container's pids.
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let out = self
            .run("ps", self.command(&["ps", "--format", "json", id]), None)
            .await?;
        serde_json::from_slice(&out).map_err(|e| Error::unknown(format!("runc ps output: {e}")))
    }

    /// `runc update --resources -` with a LinuxResources JSON.
    pub async fn update(&self, id: &str, resources: Vec<u8>) -> Result<()> {
        self.run(
            "update",
            self.command(&["update", "--resources", "-", id]),
            Some(resources),
        )
        .await
        .map(|_| ())
    }
}

fn read_pid(path: &Path) -> Result<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::unknown(format!("no pid in {}", path.display())))
}
