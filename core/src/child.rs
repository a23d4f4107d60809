//! Running a program to completion from async code, waited on through a
//! pidfd.
//!
//! tokio's `process` feature waits for children by catching SIGCHLD, which
//! brings its signal driver into every runtime of the build — the shim's
//! too, whose one current-thread runtime then holds a channel for each of
//! the 65 signal numbers (22 KiB of every shim). A pidfd says when its
//! process exited without any signal: the runtime waits on it like on a
//! socket. The workspace builds tokio without `process`; the daemon runs
//! its shims' `start` and `delete` and the CNI plugins through here.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use std::time::Duration;
//! use crated_core::child::{output, Failure};
//! let mut cmd = std::process::Command::new("/usr/lib/cni/loopback");
//! match output(&mut cmd, Some(b"{}"), Duration::from_secs(10)).await {
//!     Ok(out) => println!("{} bytes out, {}", out.stdout.len(), out.status),
//!     Err(Failure::TimedOut) => println!("killed after 10 s"),
//!     Err(Failure::Io(e)) => return Err(e),
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::unix::pipe;

/// Why [`output`] has no output.
#[derive(Debug)]
pub enum Failure {
    /// Starting the program, or talking to it, failed.
    Io(io::Error),
    /// It did not finish within the limit and was killed.
    TimedOut,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// A type that owns its descriptor for as long as it lives and never
/// swaps it for another: what the runtime may wait on.
pub trait OwnsFd: AsRawFd {}

impl OwnsFd for OwnedFd {}

impl OwnsFd for nix::sys::signalfd::SignalFd {}

/// Registers `inner`'s descriptor with the current runtime for `interest`
/// (tokio's safe constructors are deprecated: this is the one place that
/// vouches for the descriptor).
pub fn registered<T: OwnsFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: an `OwnsFd` keeps one open descriptor from here until it is
    // dropped, which the AsyncFd does after deregistering it.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(io::Error::from)
}

/// A pidfd for `pid`, registered with the current runtime: readable once
/// that process exits (also after it was reaped). `ESRCH` if it is gone.
pub fn pidfd(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let raw = i32::try_from(raw).map_err(io::Error::other)?;
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor (close-on-exec) we own.
    registered(unsafe { OwnedFd::from_raw_fd(raw) }, Interest::READABLE)
}

/// A started child that is killed and reaped if its waiter goes away
/// before it ended (a timeout, or the caller's future dropped).
struct Running {
    child: Option<std::process::Child>,
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl Running {
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        let (Some(child), Some(pidfd)) = (self.child.as_mut(), self.pidfd.as_ref()) else {
            return Err(io::Error::other("child already waited for"));
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            pidfd.readable().await?.clear_ready();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Not reaped yet, so the pid is still this child's.
        let _ = child.kill();
        match (self.pidfd.take(), tokio::runtime::Handle::try_current()) {
            (Some(pidfd), Ok(runtime)) => {
                runtime.spawn(async move {
                    let _ = pidfd.readable().await;
                    let _ = child.wait();
                });
            }
            // Off a runtime (it is shutting down): the kill is enough to
            // end it; whoever reaps orphans gets it at our exit.
            _ => {
                let _ = child.try_wait();
            }
        }
    }
}

/// Runs `cmd` with `input` on its stdin (else /dev/null), collecting its
/// stdout and stderr, until it exits and closes both; kills it if that
/// takes longer than `limit`. `cmd`'s stdio is set here.
pub async fn output(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<Output, Failure> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn()?;
    let pidfd = pidfd(child.id());
    let mut running = Running {
        child: Some(child),
        pidfd: None,
    };
    running.pidfd = Some(pidfd?);
    let work = async {
        let child = running
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other("child already waited for"))?;
        let (stdout, stderr) = exchange(child, input).await?;
        let status = running.wait().await?;
        io::Result::Ok(Output {
            status,
            stdout,
            stderr,
        })
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// Writes `input` to `child`'s stdin (then closes it) while reading its
/// stdout and stderr to their ends, all on the runtime — no thread per
/// child. Streams not piped are skipped; a program that does not read
/// its input closes the pipe, which is not an error.
pub async fn exchange(
    child: &mut std::process::Child,
    input: Option<&[u8]>,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let reader = |r: Option<OwnedFd>| r.map(pipe::Receiver::from_owned_fd).transpose();
    let stdin = child
        .stdin
        .take()
        .map(OwnedFd::from)
        .map(pipe::Sender::from_owned_fd)
        .transpose()?;
    let stdout = reader(child.stdout.take().map(OwnedFd::from))?;
    let stderr = reader(child.stderr.take().map(OwnedFd::from))?;
    let write = async move {
        if let (Some(mut w), Some(data)) = (stdin, input) {
            let _ = w.write_all(data).await;
        }
    };
    let read = |r: Option<pipe::Receiver>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            r.read_to_end(&mut buf).await?;
        }
        io::Result::Ok(buf)
    };
    let ((), stdout, stderr) = tokio::join!(write, read(stdout), read(stderr));
    Ok((stdout?, stderr?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[tokio::test]
    async fn input_goes_in_and_both_outputs_and_the_status_come_back() {
        let out = output(
            &mut sh("tr a-z A-Z; echo oops >&2; exit 3"),
            Some(b"hello"),
            Duration::from_secs(20),
        )
        .await
        .expect("ran");
        assert_eq!(out.stdout, b"HELLO");
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn more_output_than_a_pipe_holds_is_all_read() {
        let out = output(
            &mut sh("head -c 1000000 /dev/zero"),
            None,
            Duration::from_secs(20),
        )
        .await
        .expect("ran");
        assert_eq!(out.stdout.len(), 1_000_000);
        assert!(out.status.success());
    }

    /// A program past its limit is killed and reaped: no process and no
    /// zombie is left behind.
    #[tokio::test]
    async fn a_program_past_its_limit_is_killed_and_reaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 100", pid_file.display());
        let started = std::time::Instant::now();
        let failure = output(&mut sh(&script), None, Duration::from_millis(500)).await;
        assert!(matches!(failure, Err(Failure::TimedOut)), "{failure:?}");
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "waited for the program"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        for _ in 0..500 {
            if !proc_dir.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        panic!("process {pid} left behind: {state}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_an_io_error() {
        let failure = output(
            &mut Command::new("/nonexistent/program"),
            None,
            Duration::from_secs(5),
        )
        .await;
        assert!(
            matches!(&failure, Err(Failure::Io(e)) if e.kind() == io::ErrorKind::NotFound),
            "{failure:?}"
        );
    }
}
