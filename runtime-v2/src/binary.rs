//! Shim binaries: which one a runtime name means, and the `start` and
//! `delete` commands of the runtime v2 protocol.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crated_api::containerd::task::v2 as shim;
use crated_core::child::Failure;
use crated_core::tasks::Exit;
use prost::Message as _;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::timeouts::{self, Timeouts};

/// `containerd-shim-<name>-<version>` for `io.containerd.<name>.<version>`
/// (the last two dot-separated parts), as containerd's `BinaryName`.
pub fn binary_name(runtime: &str) -> Result<String> {
    let parts: Vec<&str> = runtime.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty() || p.contains('/')) {
        return Err(Error::InvalidRuntimeName {
            runtime: runtime.to_owned(),
        });
    }
    Ok(format!(
        "containerd-shim-{}-{}",
        parts[parts.len() - 2],
        parts[parts.len() - 1]
    ))
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The shim binary for `runtime`: an absolute path as is, else its binary
/// name looked up in `opt_bin` (the opt plugin's `bin/`), beside the
/// daemon's executable, then on PATH.
pub fn resolve(runtime: &str, opt_bin: Option<&Path>) -> Result<PathBuf> {
    if runtime.starts_with('/') {
        let path = PathBuf::from(runtime);
        if !executable(&path) {
            return Err(Error::ShimNotExecutable { path });
        }
        return Ok(path);
    }
    let name = binary_name(runtime)?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(opt_bin.map(Path::to_owned));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(&name))
        .find(|p| executable(p))
        .ok_or_else(|| Error::ShimNotInstalled {
            runtime: runtime.to_owned(),
            binary: name,
        })
}

/// What every shim command is told.
#[derive(Debug, Clone)]
pub struct ShimCommand {
    /// The shim binary.
    pub binary: PathBuf,
    /// The daemon's gRPC address (`-address`).
    pub address: PathBuf,
    /// The daemon's ttrpc address (`TTRPC_ADDRESS`), where shims publish.
    pub ttrpc_address: PathBuf,
    /// The daemon's executable (`-publish-binary`).
    pub publish_binary: PathBuf,
    /// The opt directory: `bin/` goes first on the shim's PATH, `lib/` on
    /// its LD_LIBRARY_PATH (containerd's opt plugin sets both on itself).
    pub opt: Option<PathBuf>,
    /// How long `start` and `delete` may take.
    pub timeouts: Timeouts,
}

/// `first` ahead of the directories already in the variable `name`.
fn prepend_path(name: &str, first: PathBuf) -> std::ffi::OsString {
    let rest = std::env::var_os(name).unwrap_or_default();
    // An empty entry would mean the working directory (the bundle).
    let dirs = std::iter::once(first)
        .chain(std::env::split_paths(&rest).filter(|d| !d.as_os_str().is_empty()));
    // A directory holding ':' cannot be on a PATH: keep the variable as was.
    std::env::join_paths(dirs).unwrap_or(rest)
}

impl ShimCommand {
    fn io_error(&self, action: &'static str, bundle: &Bundle, source: std::io::Error) -> Error {
        Error::ShimIo {
            binary: self.binary.clone(),
            action,
            id: bundle.id.clone(),
            source,
        }
    }

    fn timeout(
        &self,
        action: &'static str,
        bundle: &Bundle,
        key: &'static str,
        limit: std::time::Duration,
    ) -> Error {
        Error::ShimTimeout {
            binary: self.binary.clone(),
            action,
            id: bundle.id.clone(),
            key,
            limit,
        }
    }

    fn command(&self, bundle: &Bundle, args: &[&str]) -> std::process::Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("-namespace")
            .arg(bundle.namespace.as_str())
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .args(args)
            .current_dir(&bundle.path)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .env("GOMAXPROCS", "2")
            // systemd's socket is crated's own: runc would take it as the
            // container's and wait at start for a READY that never comes.
            .env_remove("NOTIFY_SOCKET")
            // Its own process group: a signal to the daemon's group must
            // not take the shims (and their containers) with it.
            .process_group(0);
        if let Some(opt) = &self.opt {
            cmd.env("PATH", prepend_path("PATH", opt.join("bin"))).env(
                "LD_LIBRARY_PATH",
                prepend_path("LD_LIBRARY_PATH", opt.join("lib")),
            );
        }
        cmd
    }

    /// `start`: launches the shim for `bundle` (which daemonises) and
    /// returns the ttrpc address it prints. `options` (an encoded
    /// `google.protobuf.Any`) go to its stdin.
    pub async fn start(&self, bundle: &Bundle, options: Option<Vec<u8>>) -> Result<String> {
        let mut cmd = self.command(bundle, &["-id", &bundle.id, "start"]);
        let limit = self.timeouts.shim_start;
        // A shim that does not read its options closes the pipe.
        let input = Some(options.as_deref().unwrap_or_default());
        let out = crated_core::child::output(&mut cmd, input, limit)
            .await
            .map_err(|failure| match failure {
                Failure::Io(e) => self.io_error("start", bundle, e),
                Failure::TimedOut => self.timeout("start", bundle, timeouts::SHIM_START, limit),
            })?;
        if !out.status.success() {
            let mut message = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if !stderr.is_empty() {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&stderr);
            }
            return Err(Error::StartFailed {
                binary: self.binary.clone(),
                id: bundle.id.clone(),
                output: message,
                status: out.status,
            });
        }
        let address = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !address.starts_with("unix://") {
            return Err(Error::ShimAddress {
                binary: self.binary.clone(),
                id: bundle.id.clone(),
                printed: address,
            });
        }
        Ok(address)
    }

    /// `delete`: cleans up after a shim that is gone (kills and deletes the
    /// container, unmounts its rootfs); returns what it reports of the exit.
    pub async fn delete(&self, bundle: &Bundle) -> Result<Exit> {
        let bundle_path = bundle.path.display().to_string();
        let mut cmd = self.command(
            bundle,
            &["-id", &bundle.id, "-bundle", &bundle_path, "delete"],
        );
        let limit = self.timeouts.shim_cleanup;
        let out = crated_core::child::output(&mut cmd, None, limit)
            .await
            .map_err(|failure| match failure {
                Failure::Io(e) => self.io_error("delete", bundle, e),
                Failure::TimedOut => self.timeout("delete", bundle, timeouts::SHIM_CLEANUP, limit),
            })?;
        if !out.status.success() {
            return Err(Error::DeleteFailed {
                binary: self.binary.clone(),
                id: bundle.id.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                status: out.status,
            });
        }
        let deleted = shim::DeleteResponse::decode(out.stdout.as_slice()).map_err(|source| {
            Error::DeleteResponse {
                binary: self.binary.clone(),
                id: bundle.id.clone(),
                source,
            }
        })?;
        Ok(crated_api::convert::exit_from_pb(
            deleted.pid,
            deleted.exit_status,
            deleted.exited_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_map_to_binaries() {
        assert_eq!(
            binary_name("io.containerd.runc.v2").ok().as_deref(),
            Some("containerd-shim-runc-v2")
        );
        assert_eq!(
            binary_name("io.containerd.runhcs.v1").ok().as_deref(),
            Some("containerd-shim-runhcs-v1")
        );
        for bad in ["runc", "", "io..v2", "a/b.c"] {
            assert!(binary_name(bad).is_err(), "{bad}");
        }
        let err = resolve("io.containerd.nonexistent.v9", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("containerd-shim-nonexistent-v9") && err.contains("not installed"),
            "{err}"
        );
    }
}
