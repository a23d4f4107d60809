//! Relays between pipes and fifos on the shim's runtime: splice(2) moves
//! the bytes, so a relay is a task holding two registered descriptors — no
//! thread, no stack, no buffer. An idle container's three relays cost a
//! few hundred bytes of heap where three threads cost 8 KiB of stack each.
//!
//! Both ends are non-blocking and waited on through the runtime. A
//! splice that would block does not say which end held it up, so the
//! relay asks poll(2) before it forgets a readiness: forgetting the wrong
//! one would leave the relay asleep with bytes to move.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How much one splice moves at most.
const CHUNK: usize = 64 << 10;

/// Whether a relay can move `fd`'s bytes: a pipe or a fifo. Anything else
/// (a `file://` log, a device) is copied on a thread.
pub fn spliceable(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Registers `fd`, made non-blocking, with the runtime.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    nonblocking(&fd)?;
    crated_core::child::registered(fd, interest)
}

/// What `fd` reports for `events` right now, without waiting (hang-up and
/// error are always reported); `None` if poll(2) failed.
pub(crate) fn poll_now(fd: BorrowedFd<'_>, events: PollFlags) -> Option<PollFlags> {
    let mut fds = [PollFd::new(fd, events)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => Some(PollFlags::empty()),
        Ok(_) => Some(fds[0].revents().unwrap_or(PollFlags::empty())),
        Err(_) => None,
    }
}

/// Whether `fd` reports any of `events` (or a hang-up or error) right now.
fn ready_now(fd: BorrowedFd<'_>, events: PollFlags) -> bool {
    // Unknown: say ready, so the relay tries again rather than sleeps.
    poll_now(fd, events)
        .is_none_or(|r| r.intersects(events | PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// What one splice did.
enum Moved {
    /// Some bytes.
    Some,
    /// The source ended: every writer gone and nothing left.
    End,
    /// The source was empty and its readiness is cleared.
    SourceEmpty,
    /// The target was full.
    TargetFull,
}

/// One splice from `from` (known readable) into `to`.
fn splice_once(
    from: &mut tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>,
    to: &AsyncFd<OwnedFd>,
) -> io::Result<Moved> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        match splice(from.get_inner(), None, to.get_ref(), None, CHUNK, flags) {
            Ok(0) => return Ok(Moved::End),
            Ok(_) => return Ok(Moved::Some),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                if ready_now(from.get_inner().as_fd(), PollFlags::POLLIN) {
                    return Ok(Moved::TargetFull);
                }
                from.clear_ready();
                return Ok(Moved::SourceEmpty);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `to` has room again (or is broken: the next splice says so).
async fn room(to: &AsyncFd<OwnedFd>) -> io::Result<()> {
    let mut ready = to.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if !ready_now(to.get_ref().as_fd(), PollFlags::POLLOUT) {
        ready.clear_ready();
    }
    Ok(())
}

/// Moves pipe `from` into pipe or fifo `to` until `from` ends (every
/// writer gone) or either fails. A full `to` (a client that does not read
/// its fifo) holds the relay, and through the pipe the process, as a full
/// fifo would hold a process writing it directly.
pub async fn output(from: OwnedFd, to: OwnedFd) -> io::Result<()> {
    let from = register(from, Interest::READABLE)?;
    let to = register(to, Interest::WRITABLE)?;
    loop {
        let mut readable = from.readable().await?;
        match splice_once(&mut readable, &to)? {
            Moved::End => return Ok(()),
            Moved::Some | Moved::SourceEmpty => {}
            Moved::TargetFull => {
                drop(readable);
                room(&to).await?;
            }
        }
    }
}

/// Moves the client's stdin fifo `from` into pipe `to` (the process's
/// stdin) until the client closes its end after writing, or the process
/// (the pipe's only reader) is gone — whichever comes first, so the relay
/// outlives neither. Linux reports a fifo readable at its end only after a
/// writer came and went: a client that has not opened its end yet is
/// waited for.
pub async fn input(from: OwnedFd, to: OwnedFd) -> io::Result<()> {
    let from = register(from, Interest::READABLE)?;
    let to = register(to, Interest::WRITABLE)?;
    let reader_gone = async {
        loop {
            // A pipe whose reader closed reports an error; a full one
            // just stops being writable.
            let mut ready = to.ready(Interest::ERROR).await?;
            if ready.ready().is_error() {
                return io::Result::Ok(());
            }
            ready.clear_ready();
        }
    };
    let relay = async {
        loop {
            let mut readable = from.readable().await?;
            match splice_once(&mut readable, &to) {
                Ok(Moved::End) | Err(_) => return io::Result::Ok(()),
                Ok(Moved::Some | Moved::SourceEmpty) => {}
                Ok(Moved::TargetFull) => {
                    drop(readable);
                    room(&to).await?;
                }
            }
        }
    };
    tokio::select! {
        r = reader_gone => r,
        r = relay => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::time::Duration;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe")
    }

    /// A client's stdin fifo in a directory of its own (`stdin`), opened
    /// for the relay as the shim opens it.
    fn client_fifo() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let from = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open fifo")
            .into();
        (dir, from)
    }

    /// Waits (at most `limit`, else fails with `what`) for `relay` to
    /// end without an error.
    fn ends(
        rt: &tokio::runtime::Runtime,
        relay: tokio::task::JoinHandle<io::Result<()>>,
        limit: Duration,
        what: &str,
    ) {
        rt.block_on(async {
            tokio::time::timeout(limit, relay)
                .await
                .expect(what)
                .expect("relay task")
                .expect("relay");
        });
    }

    /// A runtime whose worker runs the relay while the test blocks in
    /// reads and writes of its own.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// More than a pipe holds, written while the reader is slow: the relay
    /// must wait for room in its target and resume, and end with the
    /// writer.
    #[test]
    fn output_moves_everything_through_a_full_target_and_ends_with_the_writer() {
        let rt = runtime();
        let (src_r, src_w) = pipe();
        let (dst_r, dst_w) = pipe();
        let relay = rt.spawn(output(src_r, dst_w));
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(src_w);
            w.write_all(&data).expect("write");
        });
        let reader = std::thread::spawn(move || {
            // Let the target fill up before reading.
            std::thread::sleep(Duration::from_millis(200));
            let mut r = std::fs::File::from(dst_r);
            let mut got = Vec::new();
            r.read_to_end(&mut got).expect("read");
            got
        });
        ends(&rt, relay, Duration::from_secs(20), "relay ended");
        writer.join().expect("writer");
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }

    /// stdin: nothing happens until the client opens its fifo; what it
    /// writes arrives; the relay ends when the process's end goes even
    /// though the client keeps its end open.
    #[test]
    fn input_waits_for_the_client_and_ends_with_the_process() {
        let rt = runtime();
        let (dir, from) = client_fifo();
        let fifo = dir.path().join("stdin");
        let (to_r, to_w) = pipe();
        let relay = rt.spawn(input(from, to_w));
        rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        assert!(
            !relay.is_finished(),
            "the relay took a fifo nobody opened for ended"
        );
        let mut client = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open fifo for writing");
        client.write_all(b"hello\n").expect("write");
        let mut process = std::fs::File::from(to_r);
        let mut got = [0u8; 6];
        process.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello\n");
        drop(process);
        ends(
            &rt,
            relay,
            Duration::from_secs(10),
            "the relay outlived the process",
        );
        drop(client);
    }

    /// stdin: a client that writes and closes is the process's EOF.
    #[test]
    fn input_ends_when_the_client_closes() {
        let rt = runtime();
        let (dir, from) = client_fifo();
        let fifo = dir.path().join("stdin");
        let (to_r, to_w) = pipe();
        let relay = rt.spawn(input(from, to_w));
        std::fs::write(&fifo, b"all of it").expect("write fifo");
        ends(
            &rt,
            relay,
            Duration::from_secs(10),
            "the relay did not end with the client",
        );
        let mut got = String::new();
        std::fs::File::from(to_r)
            .read_to_string(&mut got)
            .expect("read");
        assert_eq!(got, "all of it");
    }
}
