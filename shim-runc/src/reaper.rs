//! The shim is the child subreaper of its containers: every exit under it
//! comes here. Commands the shim runs (runc) and container processes are
//! reaped by one loop, so no exit is lost or taken by the wrong waiter: a
//! command is spawned under the same lock the loop reaps under, and its
//! pid registered before the loop can see it exit.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};

/// How a process ended: its status as containerd reports it (the code,
/// or 128 + the signal), and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status.
    pub status: u32,
    /// When it was reaped.
    pub at: SystemTime,
}

#[derive(Default)]
struct Inner {
    /// Commands waiting for their exit.
    commands: HashMap<i32, oneshot::Sender<i32>>,
    /// Container processes and where their exits go.
    processes: HashMap<i32, watch::Sender<Option<Exit>>>,
    /// Exits of processes nobody registered yet (a container process that
    /// exits before its pid is read from runc's pid file).
    unclaimed: HashMap<i32, Exit>,
}

/// The reaper.
#[derive(Clone, Default)]
pub struct Reaper(Arc<Mutex<Inner>>);

fn status_of(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, signal, _) => Some((pid.as_raw(), 128 + signal as i32)),
        _ => None,
    }
}

impl Reaper {
    /// Reaps every child that exited; call on SIGCHLD.
    pub fn reap(&self) {
        let Ok(mut inner) = self.0.lock() else { return };
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some((pid, code)) = status_of(status) else {
                        continue;
                    };
                    if let Some(waiter) = inner.commands.remove(&pid) {
                        let _ = waiter.send(code);
                        continue;
                    }
                    let exit = Exit {
                        status: code as u32,
                        at: SystemTime::now(),
                    };
                    match inner.processes.get(&pid) {
                        Some(tx) => {
                            tx.send_replace(Some(exit));
                        }
                        None => {
                            inner.unclaimed.insert(pid, exit);
                        }
                    }
                }
            }
        }
    }

    /// Runs `cmd` to completion with `stdin` written to it, capturing its
    /// output.
    pub async fn output(
        &self,
        mut cmd: Command,
        stdin: Option<Vec<u8>>,
    ) -> std::io::Result<Output> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let (tx, rx) = oneshot::channel();
        let mut child = {
            let mut inner = self
                .0
                .lock()
                .map_err(|_| std::io::Error::other("reaper lock poisoned"))?;
            let child = cmd.spawn()?;
            inner.commands.insert(child.id() as i32, tx);
            child
        };
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let input = child.stdin.take();
        let io = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            if let (Some(mut w), Some(data)) = (input, stdin) {
                let _ = w.write_all(&data);
            }
            let mut stderr = Vec::new();
            let reader = std::thread::spawn(move || {
                if let Some(e) = err.as_mut() {
                    let _ = e.read_to_end(&mut stderr);
                }
                stderr
            });
            let mut stdout = Vec::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut stdout);
            }
            (stdout, reader.join().unwrap_or_default())
        });
        // The Child is not waited on: the reaper owns the exit.
        drop(child);
        let code = rx
            .await
            .map_err(|_| std::io::Error::other("command exit lost"))?;
        let (stdout, stderr) = io.await.map_err(std::io::Error::other)?;
        Ok(Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
            stdout,
            stderr,
        })
    }

    /// Watches the exit of container process `pid` (which may already have
    /// exited).
    pub fn watch(&self, pid: i32) -> watch::Receiver<Option<Exit>> {
        let Ok(mut inner) = self.0.lock() else {
            return watch::channel(None).1;
        };
        if let Some(tx) = inner.processes.get(&pid) {
            return tx.subscribe();
        }
        let early = inner.unclaimed.remove(&pid);
        let (tx, rx) = watch::channel(early);
        inner.processes.insert(pid, tx);
        rx
    }
}

impl Reaper {
    /// Runs `cmd` (stdio already set) to completion; its exit code.
    pub async fn status(&self, mut cmd: Command) -> std::io::Result<i32> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self
                .0
                .lock()
                .map_err(|_| std::io::Error::other("reaper lock poisoned"))?;
            let child = cmd.spawn()?;
            inner.commands.insert(child.id() as i32, tx);
        }
        rx.await
            .map_err(|_| std::io::Error::other("command exit lost"))
    }
}
