//! A process's stdio: the fifos (or `file://` logs) the client named,
//! relayed through pipes for a task's init (which criu can checkpoint) or
//! opened for an exec to use directly; with a terminal, the pty master
//! runc hands over on a console socket, copied to and from them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, Result};
use crate::runc::ProcessIo;

fn io_error(path: &str, e: std::io::Error) -> Error {
    Error::io("open stdio", path, e)
}

/// An output: a fifo opened read-write (so opening never waits for the
/// client, and the client still sees the end once the process, the only
/// other holder, exits), or a `file://` log. (`binary://`: see `direct`.)
fn open_output(uri: &str) -> Result<Option<OwnedFd>> {
    if uri.is_empty() {
        return Ok(None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        return Ok(Some(file.into()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(uri)
        .map_err(|e| io_error(uri, e))?;
    Ok(Some(file.into()))
}

/// stdin: the fifo opened without waiting for the client's writer, then
/// made blocking for the process.
fn open_input(path: &str) -> Result<Option<OwnedFd>> {
    if path.is_empty() {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let fd = file.as_raw_fd();
    let fcntl_error = |source| Error::Sys {
        op: "fcntl",
        path: path.into(),
        source,
    };
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(fcntl_error)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(fcntl_error)?;
    Ok(Some(file.into()))
}

/// Whose the pipes of a process's stdio are (containerd's `IoUid` and
/// `IoGid`). A process reopening its stdio by path (`/dev/stdout`,
/// `/proc/self/fd/1`) goes through the pipe's permissions, owner-only:
/// the root of a user namespace, someone else on the host, can do that
/// only with pipes it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The host uid.
    pub uid: u32,
    /// The host gid.
    pub gid: u32,
}

impl Owner {
    /// The owner runtime options ask for; none for root (the shim's own).
    pub fn of(options: &crated_api::containerd::runc::v1::Options) -> Option<Self> {
        (options.io_uid != 0 || options.io_gid != 0).then_some(Self {
            uid: options.io_uid,
            gid: options.io_gid,
        })
    }

    fn give(owner: Option<Self>, pipe: &OwnedFd) -> Result<()> {
        let Some(o) = owner else {
            return Ok(());
        };
        std::os::unix::fs::fchown(pipe, Some(o.uid), Some(o.gid))
            .map_err(|source| Error::PipeOwner { owner: o, source })
    }
}

/// The stdio of a process without a terminal. With `relay` (a task's
/// init): pipes, relayed by the shim to the fifos (or `file://` logs) the
/// client named, as containerd's shim does — criu can checkpoint a process
/// whose stdio is a pipe (runc records it and re-attaches the restored
/// process to new pipes), not one holding a fifo or a file of the host,
/// outside the container's mounts. Without (an exec): the fifos opened
/// for the process to use directly, no copy through the shim — unless
/// the pipes have an `owner`, for the client's fifos are in a directory
/// only it (root) may enter. A `binary://` stdout starts that logging
/// binary for both outputs (pipes to the logger either way, the shim's as
/// containerd's are).
pub fn stdio(
    (stdin, stdout, stderr): (&str, &str, &str),
    id: &str,
    namespace: &str,
    relay: bool,
    owner: Option<Owner>,
) -> Result<(ProcessIo, Relays)> {
    let relay = relay || owner.is_some();
    let mut relays = Relays::default();
    let input = |path: &str| {
        if relay {
            relay_input(path, owner)
        } else {
            open_input(path)
        }
    };
    if stdout.starts_with("binary://") {
        let (out, err) = binary_log(stdout, id, namespace)?;
        let io = ProcessIo {
            stdin: input(stdin)?,
            stdout: Some(out),
            stderr: Some(err),
        };
        return Ok((io, relays));
    }
    let mut output = |stream, uri: &str| {
        if relay {
            relay_output(stream, uri, &mut relays, owner)
        } else {
            open_output(uri)
        }
    };
    let io = ProcessIo {
        stdin: input(stdin)?,
        stdout: output("stdout", stdout)?,
        stderr: output("stderr", stderr)?,
    };
    Ok((io, relays))
}

/// The output relays of a process, each done once it copied all its
/// process (and whatever inherited the pipe) wrote and closed its target.
#[derive(Default)]
pub struct Relays(Vec<tokio::sync::oneshot::Receiver<()>>);

impl Relays {
    /// A relay's end: told when the returned sender goes with its thread.
    fn add(&mut self) -> tokio::sync::oneshot::Sender<()> {
        let (done, ended) = tokio::sync::oneshot::channel();
        self.0.push(ended);
        done
    }

    /// Waits, at most `limit`, for every relay to finish: the delete of a
    /// process answers once its output is all in the `file://` log (or
    /// fifo), as containerd's shim does, but a background process of the
    /// container that still holds the pipe must not hold the delete up.
    pub async fn drained(self, limit: std::time::Duration) {
        let all = async {
            for ended in self.0 {
                let _ = ended.await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// How much one read moves at most.
const CHUNK: usize = 64 << 10;

/// Copies `from` into `to` by read and write until `from` ends or fails
/// (a pty master reads EIO once the process and its children close it)
/// or `to` fails: for what [`relay`](crate::relay) cannot splice, on a
/// thread of its own. A pty is one (splicing from it would hold the fifo's
/// lock while waiting for output, so a client opening the fifo would
/// wait), a `file://` log another (opened for append, which splice
/// refuses, and a regular file cannot be waited on).
fn copy_through_buffer(mut from: File, mut to: File) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| Error::Pipe { source })
}

/// A relay thread: small, as it only copies.
fn relay_thread(stream: &'static str, run: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(stream.to_owned())
        .stack_size(64 << 10)
        .spawn(run)
        .map(|_| ())
        .map_err(|source| Error::RelayThread { stream, source })
}

/// The runtime a relay task goes on: the shim's, which every caller of
/// [`stdio`] runs on.
fn runtime(stream: &'static str) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|e| Error::RelayThread {
        stream,
        source: std::io::Error::other(e),
    })
}

/// An output relayed: the write end of a pipe for the process; a task on
/// the runtime moves the read end into the fifo (opened read-write, so it
/// never waits for the client) until every writer is gone, then closes
/// the fifo so the client sees the end. A `file://` log gets a thread.
fn relay_output(
    stream: &'static str,
    uri: &str,
    relays: &mut Relays,
    owner: Option<Owner>,
) -> Result<Option<OwnedFd>> {
    let Some(target) = open_output(uri)? else {
        return Ok(None);
    };
    let (r, w) = pipe()?;
    Owner::give(owner, &w)?;
    let done = relays.add();
    if crate::relay::spliceable(&target) {
        runtime(stream)?.spawn(async move {
            let _ = crate::relay::output(r, target).await;
            drop(done);
        });
    } else {
        relay_thread(stream, move || {
            copy_through_buffer(File::from(r), File::from(target));
            drop(done);
        })?;
    }
    Ok(Some(w))
}

/// stdin relayed: the read end of a pipe for the process; a task on the
/// runtime moves the client's fifo into it until the client closes its
/// end (or the process is gone), then closes the pipe, which is the
/// process's EOF.
fn relay_input(path: &str, owner: Option<Owner>) -> Result<Option<OwnedFd>> {
    if path.is_empty() {
        return Ok(None);
    }
    // Non-blocking: opening never waits for the client's writer.
    let fifo = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let (r, w) = pipe()?;
    Owner::give(owner, &r)?;
    runtime("stdin")?.spawn(async move {
        let _ = crate::relay::input(fifo.into(), w).await;
    });
    Ok(Some(r))
}

/// The stdin copy of a terminal: waits on both the fifo (data, or its
/// writer gone) and the pty master it feeds (the process gone), so the
/// thread never outlives either.
fn copy_input(mut fifo: File, pipe: OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd as _;
    let mut to = File::from(pipe);
    // On the heap and only once the client writes: most containers are
    // never written to, and their relay should not hold a buffer.
    let mut buf = Vec::new();
    loop {
        let (fifo_events, pipe_events) = {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(to.as_fd(), PollFlags::empty()),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => (fds[0].revents(), fds[1].revents()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        };
        // The process (the pipe's only reader) is gone.
        if pipe_events.is_some_and(|e| e.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)) {
            return;
        }
        // Linux reports POLLHUP on a fifo only after a writer came and
        // went: a client that has not opened its end yet is waited for.
        if fifo_events.is_some_and(|e| e.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)) {
            buf.resize(CHUNK, 0);
            match fifo.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// A descriptor duplicated to 100 or above (close-on-exec), out of the way
/// of the 3, 4, 5 the logging binary at `path` expects.
fn high(fd: &OwnedFd, path: &str) -> Result<OwnedFd> {
    let raw =
        fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(100)).map_err(|source| Error::LogFd {
            path: path.into(),
            source,
        })?;
    // SAFETY: fcntl just made `raw`, a descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// containerd's binary logging protocol: `binary:///path?key=value` runs
/// `/path key value` with `CONTAINER_ID` and `CONTAINER_NAMESPACE` set,
/// the process's stdout and stderr readable on its fds 3 and 4; it writes
/// a byte to fd 5 once ready. Returns the write ends for the process.
fn binary_log(uri: &str, id: &str, namespace: &str) -> Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::process::CommandExt as _;

    let rest = uri.trim_start_matches("binary://");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(Error::LogUri {
            uri: uri.to_owned(),
        });
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) => args.extend([k.to_owned(), v.to_owned()]),
            None => args.push(pair.to_owned()),
        }
    }
    // Close-on-exec: the logger must hold only its read ends (as 3 and 4),
    // or it would never see the end of its input.
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let child_fds = [
        high(&out_r, path)?,
        high(&err_r, path)?,
        high(&ready_w, path)?,
    ];
    let raw: Vec<RawFd> = child_fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = std::process::Command::new(path);
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure only calls dup2, which is async-signal-safe, on
    // descriptors that stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // Not waited for: the shim's reaper reaps it when it exits.
    cmd.spawn().map_err(|source| Error::LogBinary {
        path: path.into(),
        source,
    })?;
    drop((child_fds, out_r, err_r, ready_w));
    // Ready when it writes its byte (or closes fd 5 without one).
    let mut ready = File::from(ready_r);
    let mut byte = [0u8; 1];
    let _ = ready.read(&mut byte);
    Ok((out_w, err_w))
}

/// A failed `op` on the console socket at `path`.
fn console_error(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Console {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A new directory `<temp>/<prefix>-<random>`, mode 0700. mkdir is
/// atomic and never follows a link, so a name someone else took first
/// only means another try.
fn private_temp_dir(prefix: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..16 {
        let mut random = [0u8; 8];
        // SAFETY: the kernel writes at most 8 bytes into the buffer.
        let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
        if n != 8 {
            return Err(console_error(
                "name a directory in",
                &base,
                std::io::Error::last_os_error(),
            ));
        }
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("{prefix}-{name}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(console_error("create", &dir, e)),
        }
    }
    Err(console_error(
        "create a directory in",
        &base,
        last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
    ))
}

/// A console socket runc sends the pty master to.
pub struct ConsoleSocket {
    /// Its path, for `--console-socket`.
    pub path: PathBuf,
    /// The private directory it lives in.
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// A socket in a new private (0700, randomly named) directory under
    /// the temp dir (paths on sockets are short): no other user can
    /// guess, take or connect to it and hand over a terminal of theirs.
    pub fn new() -> Result<Self> {
        let dir = private_temp_dir("crated-pty")?;
        let path = dir.join("pty.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(Self {
                path,
                dir,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(console_error("bind", &path, e))
            }
        }
    }

    /// Waits for runc to send the master.
    pub fn receive(self) -> Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| console_error("accept", &self.path, e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .map_err(|e| console_error("receive", &self.path, e.into()))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| console_error("read message", &self.path, e.into()))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for us; nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(Error::NoPtyMaster {
            path: self.path.clone(),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Copies the pty `master` to the `stdout` fifo and the `stdin` fifo to
/// the master, on threads that end with the process. Returns the output's
/// relay.
pub fn copy_console(master: &OwnedFd, stdin: &str, stdout: &str) -> Result<Relays> {
    let mut relays = Relays::default();
    let out = open_output(stdout)?;
    if let Some(out) = out {
        let from = File::from(
            master
                .try_clone()
                .map_err(|source| Error::DupPty { source })?,
        );
        let to = File::from(out);
        let done = relays.add();
        std::thread::spawn(move || {
            copy_through_buffer(from, to);
            drop(done);
        });
    }
    if let Some(input) = open_input(stdin)? {
        let from = File::from(input);
        let to = master
            .try_clone()
            .map_err(|source| Error::DupPty { source })?;
        // As for a pipe: a client that opens its end of the fifo after
        // the process started (the CRI holds it open for attaches) is
        // waited for, not read as end-of-file.
        std::thread::spawn(move || copy_input(from, to));
    }
    Ok(relays)
}

/// Sets the pty's window size.
pub fn resize(master: &OwnedFd, width: u32, height: u32) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: height.min(u32::from(u16::MAX)) as u16,
        ws_col: width.min(u32::from(u16::MAX)) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which points
    // to a live value; the descriptor is a pty master we own.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn console_sockets_live_in_private_directories() {
        let a = ConsoleSocket::new().unwrap();
        let b = ConsoleSocket::new().unwrap();
        let dir = a.path.parent().unwrap().to_owned();
        assert_ne!(dir, std::env::temp_dir(), "not straight in the temp dir");
        assert_ne!(dir, b.path.parent().unwrap(), "one directory each");
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        // SAFETY: getuid cannot fail.
        assert_eq!(meta.uid(), unsafe { libc::getuid() });
        drop(a);
        assert!(!dir.exists(), "removed with the socket");
    }
}
