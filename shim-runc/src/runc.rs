//! runc as the shim drives it: `--root <root>/<ns>`, errors from its JSON
//! log, stdio given as file descriptors.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::destroy::{self, Destroy};
use crate::error::{Error, Result};
use crate::exec_fifo;
use crate::reaper::Reaper;

/// The runtime options of a Create that become `runc create` flags
/// (containerd's `NoPivotRoot`, `NoNewKeyring`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateFlags {
    /// `--no-pivot`: the root is changed with chroot-like moves, for roots
    /// on a ramdisk where pivot_root fails.
    pub no_pivot: bool,
    /// `--no-new-keyring`: the container keeps the caller's session
    /// keyring.
    pub no_new_keyring: bool,
}

/// A runc binary for one namespace.
#[derive(Clone)]
pub struct Runc {
    /// The binary (`runc`, or the `BinaryName` option, e.g. `crun`).
    pub binary: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `--criu`: the criu binary runc checkpoints and restores with (the
    /// `CriuPath` option; else runc's default, `criu` on PATH).
    pub criu: Option<PathBuf>,
    /// Where runc writes its log (JSON), read for error messages.
    pub log: PathBuf,
    /// The reaper that owns every exit.
    pub reaper: Reaper,
}

/// What `runc checkpoint` and `runc restore` share: containerd's
/// `CheckpointOpts` of go-runc.
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    /// `--image-path`: where criu writes (or reads) the images.
    pub image_path: PathBuf,
    /// `--work-path`: criu's logs and work files.
    pub work_path: PathBuf,
    /// `--parent-path`: a pre-dump this image builds on.
    pub parent_path: Option<String>,
    /// `--tcp-established`.
    pub open_tcp: bool,
    /// `--ext-unix-sk`.
    pub external_unix_sockets: bool,
    /// `--shell-job`: the container has a terminal.
    pub terminal: bool,
    /// `--file-locks`.
    pub file_locks: bool,
    /// `--empty-ns`, each.
    pub empty_namespaces: Vec<String>,
    /// `--manage-cgroups-mode` (soft, full, strict).
    pub cgroups_mode: String,
}

impl CriuOptions {
    fn args(&self) -> Vec<String> {
        let mut out = vec![
            "--image-path".to_owned(),
            self.image_path.display().to_string(),
            "--work-path".to_owned(),
            self.work_path.display().to_string(),
        ];
        if let Some(parent) = &self.parent_path {
            out.extend(["--parent-path".to_owned(), parent.clone()]);
        }
        for (set, flag) in [
            (self.open_tcp, "--tcp-established"),
            (self.external_unix_sockets, "--ext-unix-sk"),
            (self.terminal, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ] {
            if set {
                out.push(flag.to_owned());
            }
        }
        if !self.cgroups_mode.is_empty() {
            out.extend([
                "--manage-cgroups-mode".to_owned(),
                self.cgroups_mode.clone(),
            ]);
        }
        for ns in &self.empty_namespaces {
            out.extend(["--empty-ns".to_owned(), ns.clone()]);
        }
        out
    }
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
    /// runc with its global flags (root, log, cgroup driver, criu) and
    /// then `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        // Not the container's (a shim started under a notify-type unit
        // inherits it): runc would wait for the container's READY.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if let Some(criu) = &self.criu {
            cmd.arg("--criu").arg(criu);
        }
        cmd.args(args);
        cmd
    }

    /// runc's `command` for container `id` exited with `status`: the
    /// last error runc logged, else its stderr, classified by
    /// [`Error::runc`].
    fn failure(&self, command: &'static str, id: &str, status: i32, stderr: &[u8]) -> Error {
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
        Error::runc(command, id, status, logged)
    }

    /// Why runc could not be started: a missing binary says so by name.
    fn spawn_error(&self, command: &'static str, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::RuntimeNotFound {
                binary: self.binary.clone(),
                path: std::env::var("PATH").unwrap_or_default(),
                source,
            }
        } else {
            Error::RuntimeIo {
                binary: self.binary.clone(),
                command,
                source,
            }
        }
    }

    async fn run(
        &self,
        command: &'static str,
        id: &str,
        cmd: Command,
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let _ = std::fs::remove_file(&self.log);
        let out = self
            .reaper
            .output(cmd, stdin)
            .await
            .map_err(|e| self.spawn_error(command, e))?;
        if !out.status.success() {
            // The reaper reports a signal as 128 + its number, as an exit
            // code: `code()` holds either.
            let status = out.status.code().unwrap_or(-1);
            return Err(self.failure(command, id, status, &out.stderr));
        }
        Ok(out.stdout)
    }

    /// `runc create`: the container's init, stopped before its process
    /// runs; returns its pid.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        flags: CreateFlags,
        console: Option<&Path>,
        io: ProcessIo,
    ) -> Result<i32> {
        let pid_file = bundle.join("init.pid");
        let bundle_s = bundle.display().to_string();
        let pid_s = pid_file.display().to_string();
        let mut args = vec!["create", "--bundle", &bundle_s, "--pid-file", &pid_s];
        if flags.no_pivot {
            args.push("--no-pivot");
        }
        if flags.no_new_keyring {
            args.push("--no-new-keyring");
        }
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
        self.spawn_with_stdio("create", id, cmd).await?;
        read_pid(&pid_file)
    }

    /// Runs a command whose stdio was set by the caller (the container's).
    async fn spawn_with_stdio(&self, command: &'static str, id: &str, cmd: Command) -> Result<()> {
        let _ = std::fs::remove_file(&self.log);
        let status = self
            .reaper
            .status(cmd)
            .await
            .map_err(|e| self.spawn_error(command, e))?;
        if status != 0 {
            return Err(self.failure(command, id, status, b""));
        }
        Ok(())
    }

    /// Starts created container `id` whose init is `init`: runc's own
    /// start protocol read by the shim (see [`exec_fifo`]) when the
    /// binary is runc, else (and whenever that path does not apply) the
    /// binary's `start`.
    pub async fn start(&self, id: &str, init: i32) -> Result<()> {
        if let Some(fifo) = self.exec_fifo(id) {
            match exec_fifo::start(&fifo, init).await {
                Ok(exec_fifo::Start::Done) => return Ok(()),
                Ok(exec_fifo::Start::InitGone) => {
                    return Err(Error::InitGone { id: id.to_owned() })
                }
                Ok(exec_fifo::Start::ByRuntime) => {}
                Err(e) => return Err(Error::io("start through", fifo, e)),
            }
        }
        self.run("start", id, self.command(&["start", id]), None)
            .await
            .map(|_| ())
    }

    /// Where runc keeps container `id`'s exec fifo (see [`Self::own_dir`]).
    fn exec_fifo(&self, id: &str) -> Option<PathBuf> {
        self.own_dir(id).map(|dir| dir.join(exec_fifo::NAME))
    }

    /// runc's directory of container `id`, when the binary is runc (its
    /// exec fifo and `state.json` are runc's own; other runtimes keep
    /// theirs) and `id` names a directory under the root, not a path.
    fn own_dir(&self, id: &str) -> Option<PathBuf> {
        let plain = !id.is_empty() && id != "." && id != ".." && !id.contains('/');
        (plain && self.binary.file_name() == Some(std::ffi::OsStr::new("runc")))
            .then(|| self.root.join(id))
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
        self.spawn_with_stdio("exec", id, cmd).await?;
        read_pid(pid_file)
    }

    /// `runc checkpoint`: criu dumps the container into
    /// `options.image_path`; it keeps running with `leave_running`, else
    /// criu kills it once dumped.
    pub async fn checkpoint(
        &self,
        id: &str,
        options: &CriuOptions,
        leave_running: bool,
    ) -> Result<()> {
        let mut args = vec!["checkpoint".to_owned()];
        args.extend(options.args());
        if leave_running {
            args.push("--leave-running".to_owned());
        }
        args.push(id.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("checkpoint", id, self.command(&args), None)
            .await
            .map(|_| ())
    }

    /// `runc restore --detach`: the container `id` of `bundle` from the
    /// images at `options.image_path`, its init given `io` (or a terminal
    /// through `console`); not a subreaper, so the restored init becomes
    /// the shim's child. Returns its pid.
    pub async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        options: &CriuOptions,
        no_pivot: bool,
        console: Option<&Path>,
        io: ProcessIo,
    ) -> Result<i32> {
        let pid_file = bundle.join("init.pid");
        let mut args = vec!["restore".to_owned()];
        args.extend(options.args());
        args.extend([
            "--detach".to_owned(),
            "--no-subreaper".to_owned(),
            "--pid-file".to_owned(),
            pid_file.display().to_string(),
        ]);
        if no_pivot {
            args.push("--no-pivot".to_owned());
        }
        if let Some(c) = console {
            args.extend(["--console-socket".to_owned(), c.display().to_string()]);
        }
        args.extend([
            "--bundle".to_owned(),
            bundle.display().to_string(),
            id.to_owned(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.command(&args);
        cmd.current_dir(bundle)
            .stdin(stdio(io.stdin))
            .stdout(stdio(io.stdout))
            .stderr(stdio(io.stderr));
        self.spawn_with_stdio("restore", id, cmd).await?;
        read_pid(&pid_file)
    }

    /// `runc kill`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &sig]);
        self.run("kill", id, self.command(&args), None)
            .await
            .map(|_| ())
    }

    /// `runc delete` (`--force` kills first). A container runc no longer
    /// knows is deleted already: runc drops its state when a checkpoint
    /// stops the container (as containerd's shim, this is not an error).
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run("delete", id, self.command(&args), None).await {
            Ok(_) | Err(Error::RuncNotExist { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes container `id` whose init has exited and been reaped: the
    /// shim removes what runc would (see [`destroy`]) when the binary is
    /// runc and its state asks for nothing more, else `runc delete`.
    pub async fn delete_stopped(&self, id: &str) -> Result<()> {
        if let Some(dir) = self.own_dir(id) {
            if destroy::destroy(&dir).await == Destroy::Done {
                return Ok(());
            }
        }
        self.delete(id, false).await
    }

    /// `runc pause` / `runc resume`.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let verb = if pause { "pause" } else { "resume" };
        self.run(verb, id, self.command(&[verb, id]), None)
            .await
            .map(|_| ())
    }

    /// `runc ps --format json`: the container's pids.
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let out = self
            .run(
                "ps",
                id,
                self.command(&["ps", "--format", "json", id]),
                None,
            )
            .await?;
        serde_json::from_slice(&out).map_err(|source| Error::RuncOutput {
            command: "ps",
            id: id.to_owned(),
            source,
        })
    }

    /// `runc update --resources -` with a LinuxResources JSON.
    pub async fn update(&self, id: &str, resources: Vec<u8>) -> Result<()> {
        self.run(
            "update",
            id,
            self.command(&["update", "--resources", "-", id]),
            Some(resources),
        )
        .await
        .map(|_| ())
    }
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::PidFile {
        path: path.to_owned(),
        source,
    })?;
    text.trim().parse().map_err(|source| Error::BadPid {
        path: path.to_owned(),
        source,
    })
}
