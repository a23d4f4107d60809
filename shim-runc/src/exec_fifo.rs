//! Starting a container that runc created, without a second runc.
//!
//! `runc create` leaves the container's init blocked opening
//! `<root>/<id>/exec.fifo` for writing. `runc start` is a reader of that
//! fifo and little else: it opens it, which lets init go on; init writes
//! one byte and execs the container's process, which closes its end; runc
//! reads to that end and removes the fifo (runc tells a created container
//! from a running one by whether the fifo is there). As a process of its
//! own that costs 4–5 ms of every container start — a Go runtime coming
//! up and the container's state loaded — where the read itself takes
//! microseconds, so the shim reads the fifo itself.
//!
//! An init that ends before it writes (killed after the create) never
//! opens the fifo, and a reader would wait for ever: runc polls the pid
//! for that, the shim waits on a pidfd beside the fifo. Anything unusual —
//! no fifo (started already, or never created), no pidfd — leaves the
//! start to the runtime binary, which says what is wrong in its own words.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::stat::Mode;
use tokio::io::Interest;

/// The fifo's name in runc's directory of a container.
pub const NAME: &str = "exec.fifo";

/// How a start through the fifo went.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// init was let go and has exec'd (or failed to: runc's own start
    /// says "started" then too, and the exit tells the rest).
    Done,
    /// init ended before it was let go: the container has stopped.
    InitGone,
    /// Not for this path: the runtime binary's `start` should run.
    ByRuntime,
}

/// Lets the init `init` of the container whose exec fifo is `fifo` run
/// its process, and removes the fifo, as `runc start` does.
pub async fn start(fifo: &Path, init: i32) -> io::Result<Start> {
    // The pidfd first: once the fifo is open for reading init may write
    // into it, and a reader that then gave up would take that byte with
    // it (a later `runc start` would find the fifo empty).
    let Ok(pid) = u32::try_from(init) else {
        return Ok(Start::ByRuntime);
    };
    let exited = match crated_core::child::pidfd(pid) {
        Ok(fd) => Some(fd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => None,
        Err(_) => return Ok(Start::ByRuntime),
    };
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let raw = match nix::fcntl::open(fifo, flags, Mode::empty()) {
        Ok(raw) => raw,
        Err(Errno::ENOENT) => return Ok(Start::ByRuntime),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let is_fifo = nix::sys::stat::fstat(fd.as_raw_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
    if !is_fifo {
        return Ok(Start::ByRuntime);
    }
    let fd = crated_core::child::registered(fd, Interest::READABLE)?;
    let mut wrote = false;
    let outcome = match exited {
        // Gone before we looked: what it wrote, if anything, is in the
        // fifo already.
        None => ended(fd.get_ref(), &mut wrote)?,
        Some(exited) => loop {
            tokio::select! {
                ready = fd.readable() => {
                    let mut ready = ready?;
                    match drain(fd.get_ref(), &mut wrote)? {
                        Drained::End => break verdict(wrote),
                        Drained::NotYet => ready.clear_ready(),
                    }
                }
                gone = exited.readable() => {
                    let _exited = gone?;
                    break ended(fd.get_ref(), &mut wrote)?;
                }
            }
        },
    };
    if outcome == Start::Done {
        match std::fs::remove_file(fifo) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(outcome)
}

/// Where a read of the fifo stands.
enum Drained {
    /// The writer came and closed its end.
    End,
    /// No writer yet, or one that has not closed.
    NotYet,
}

/// Reads what is in the fifo, noting in `wrote` whether init wrote.
fn drain(fd: &OwnedFd, wrote: &mut bool) -> io::Result<Drained> {
    let mut buf = [0u8; 16];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => {
                // No writer now. A fifo no writer has opened yet reads as
                // empty too; poll tells them apart, reporting a hang-up
                // only once a writer has come and gone.
                return Ok(if *wrote || hung_up(fd) {
                    Drained::End
                } else {
                    Drained::NotYet
                });
            }
            Ok(_) => *wrote = true,
            Err(Errno::EAGAIN) => return Ok(Drained::NotYet),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the fifo's writer closed its end. Only a hang-up counts: data
/// written since the read that found none means a writer still there.
fn hung_up(fd: &OwnedFd) -> bool {
    use std::os::fd::AsFd as _;
    crate::relay::poll_now(fd.as_fd(), PollFlags::POLLIN)
        .is_some_and(|r| r.contains(PollFlags::POLLHUP))
}

/// init has ended: it was let go if it wrote before it did.
fn ended(fd: &OwnedFd, wrote: &mut bool) -> io::Result<Start> {
    drain(fd, wrote)?;
    Ok(verdict(*wrote))
}

/// The writer is done: init was let go if it wrote its byte.
fn verdict(wrote: bool) -> Start {
    if wrote {
        Start::Done
    } else {
        Start::InitGone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn fifo_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join(NAME);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).expect("mkfifo");
        path
    }

    /// `sh -c script fifo`, standing in for runc's init.
    fn init(script: &str, fifo: &Path) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .arg(fifo)
            .spawn()
            .expect("spawn sh")
    }

    fn start_of(fifo: &Path, child: &Child) -> Start {
        let pid = i32::try_from(child.id()).expect("pid");
        // Bounded: a start that waits for ever fails the test instead.
        runtime()
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), start(fifo, pid)).await
            })
            .expect("the start waited for ever")
            .expect("start")
    }

    /// An init that writes its byte and closes its end (as an exec does)
    /// has started: the fifo is gone, as after `runc start`.
    #[test]
    fn an_init_that_writes_and_closes_is_started_and_the_fifo_removed() {
        let _children = crate::reaper::tests::CHILDREN.lock();
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = fifo_in(&dir);
        let mut child = init("printf 0 > \"$0\"; sleep 0.5", &fifo);
        assert_eq!(start_of(&fifo, &child), Start::Done);
        assert!(!fifo.exists(), "the fifo was left");
        // The start did not wait for the process to end.
        assert!(child.try_wait().expect("try_wait").is_none());
        child.wait().expect("wait");
    }

    /// An init that ends without opening the fifo (killed after the
    /// create) is reported, not waited for: no writer ever comes.
    #[test]
    fn an_init_that_ends_before_the_fifo_is_reported_gone() {
        let _children = crate::reaper::tests::CHILDREN.lock();
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = fifo_in(&dir);
        let mut child = init("sleep 0.2", &fifo);
        assert_eq!(start_of(&fifo, &child), Start::InitGone);
        assert!(fifo.exists(), "the fifo of a stopped container went");
        child.wait().expect("wait");
        // Already reaped: no pidfd, the fifo is read as it is.
        assert_eq!(start_of(&fifo, &child), Start::InitGone);
    }

    /// No fifo, or a path that is not one: the runtime's own start runs.
    #[test]
    fn anything_but_a_fifo_is_left_to_the_runtime() {
        let _children = crate::reaper::tests::CHILDREN.lock();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = init("sleep 0.5", dir.path());
        let missing = dir.path().join(NAME);
        assert_eq!(start_of(&missing, &child), Start::ByRuntime);
        std::fs::write(&missing, b"0").expect("write");
        assert_eq!(start_of(&missing, &child), Start::ByRuntime);
        assert!(missing.exists(), "a file that is not a fifo was removed");
        child.wait().expect("wait");
    }
}
