//! The shim is the child subreaper of its containers: every exit under it
//! comes here. Commands the shim runs (runc) and container processes are
//! reaped by one loop, so no exit is lost or taken by the wrong waiter: a
//! command is spawned under the same lock the loop reaps under, and its
//! pid registered before the loop can see it exit.
//!
//! Pids are recycled by the kernel, so the reaper remembers none longer
//! than it must: a watched process is forgotten once its exit is handed
//! over, and an exit nobody watches (an orphan reparented to the shim) is
//! kept only while a launch is under way, the one moment a container
//! process can exit before its pid is known. Otherwise a new exec given an
//! old pid would look exited the moment it started.

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
    /// Running container processes and where their exits go.
    processes: HashMap<i32, watch::Sender<Option<Exit>>>,
    /// Exits of processes nobody registered yet (a container process that
    /// exits before its pid is read from runc's pid file), kept while a
    /// launch window is open.
    unclaimed: HashMap<i32, Exit>,
    /// Launches under way (open [`ExitWindow`]s).
    windows: usize,
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
                    // The receiver keeps the value after the sender goes.
                    match inner.processes.remove(&pid) {
                        Some(tx) => {
                            tx.send_replace(Some(exit));
                        }
                        None if inner.windows > 0 => {
                            inner.unclaimed.insert(pid, exit);
                        }
                        None => {}
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
        // Read and written on the runtime, not on threads of their own: a
        // thread per command would be spawned for every runc call and stay
        // in an idle shim's memory for a while after. The Child is not
        // waited on: the reaper owns the exit.
        let (stdout, stderr) = crated_core::child::exchange(&mut child, stdin.as_deref()).await?;
        drop(child);
        let code = rx
            .await
            .map_err(|_| std::io::Error::other("command exit lost"))?;
        Ok(Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
            stdout,
            stderr,
        })
    }

    /// Watches the exit of container process `pid` (which may already have
    /// exited, if it did so inside an open [`ExitWindow`]).
    pub fn watch(&self, pid: i32) -> watch::Receiver<Option<Exit>> {
        let Ok(mut inner) = self.0.lock() else {
            return watch::channel(None).1;
        };
        if let Some(tx) = inner.processes.get(&pid) {
            return tx.subscribe();
        }
        if let Some(early) = inner.unclaimed.remove(&pid) {
            return watch::channel(Some(early)).1;
        }
        let (tx, rx) = watch::channel(None);
        inner.processes.insert(pid, tx);
        rx
    }

    /// Opens a launch window: until the returned guard is dropped, exits
    /// of processes nobody watches yet are kept for [`Reaper::watch`].
    /// Hold it from before runc starts a process until its pid is watched.
    pub fn window(&self) -> ExitWindow {
        if let Ok(mut inner) = self.0.lock() {
            inner.windows += 1;
        }
        ExitWindow(self.clone())
    }
}

/// An open launch window of a [`Reaper`]; see [`Reaper::window`].
pub struct ExitWindow(Reaper);

impl Drop for ExitWindow {
    fn drop(&mut self) {
        if let Ok(mut inner) = (self.0).0.lock() {
            inner.windows = inner.windows.saturating_sub(1);
            if inner.windows == 0 {
                inner.unclaimed.clear();
            }
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// `reap` takes any child of the test binary, so tests that spawn
    /// children take turns.
    pub(crate) static CHILDREN: Mutex<()> = Mutex::new(());

    /// Reaps until `rx` sees an exit.
    fn reap_until(reaper: &Reaper, rx: &watch::Receiver<Option<Exit>>) -> Exit {
        for _ in 0..500 {
            reaper.reap();
            if let Some(exit) = *rx.borrow() {
                return exit;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no exit reaped");
    }

    // The reaper under test is what waits for it.
    #[allow(clippy::zombie_processes)]
    fn spawn(code: i32) -> i32 {
        let child = Command::new("sh")
            .args(["-c", &format!("exit {code}")])
            .spawn()
            .expect("spawn sh");
        child.id() as i32
    }

    #[test]
    fn a_watched_pid_is_forgotten_once_its_exit_is_handed_over() {
        let _turn = CHILDREN.lock();
        let reaper = Reaper::default();
        let pid = spawn(3);
        let first = reaper.watch(pid);
        assert_eq!(reap_until(&reaper, &first).status, 3);
        // The kernel may hand the same pid to a new process: watching it
        // again must not report the old exit.
        let again = reaper.watch(pid);
        assert_eq!(*again.borrow(), None, "a recycled pid looked exited");
    }

    #[test]
    fn early_exits_are_kept_only_inside_a_launch_window() {
        let _turn = CHILDREN.lock();
        let reaper = Reaper::default();
        // Inside a window: an exit before the watch is not lost.
        let window = reaper.window();
        let pid = spawn(4);
        let mut early = None;
        for _ in 0..500 {
            reaper.reap();
            if reaper
                .0
                .lock()
                .map(|i| i.unclaimed.contains_key(&pid))
                .unwrap_or(false)
            {
                early = Some(reaper.watch(pid));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let early = early.expect("exit inside the window was not kept");
        assert_eq!(early.borrow().map(|e| e.status), Some(4));
        // An orphan reaped inside the window but never claimed is
        // forgotten when the window closes.
        let orphan = spawn(5);
        for _ in 0..500 {
            reaper.reap();
            if reaper
                .0
                .lock()
                .map(|i| i.unclaimed.contains_key(&orphan))
                .unwrap_or(false)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(window);
        assert_eq!(*reaper.watch(orphan).borrow(), None);
        // Outside any window an unwatched exit is not kept at all.
        let stray = spawn(6);
        std::thread::sleep(Duration::from_millis(200));
        reaper.reap();
        assert_eq!(*reaper.watch(stray).borrow(), None);
    }
}
