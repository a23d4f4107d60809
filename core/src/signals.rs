//! Signals as an async stream, without tokio's signal driver.
//!
//! tokio's signal support, once compiled into a build, makes every runtime
//! with I/O enabled set up a channel for each of the 65 signal numbers
//! (22 KiB of heap) — in the daemon and in each shim, which only wants
//! SIGCHLD (and reads it from a signalfd). The workspace leaves tokio's
//! `signal` feature off and the few places that wait for a signal use
//! this: a handler that writes the signal's number to a pipe the runtime
//! waits on, installed while a [`Signals`] lives and the previous
//! disposition restored when it goes.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let mut signals = crated_core::signals::Signals::new(&[libc::SIGTERM, libc::SIGINT])?;
//! if let Some(signal) = signals.recv().await {
//!     println!("stopping on signal {signal}");
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The pipe's write end for the handler; -1 until the first [`Signals`].
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

/// The pipe, made once and kept open for the life of the process: a
/// handler that runs late never writes to a descriptor closed (and
/// perhaps reused) meanwhile.
static PIPE: std::sync::OnceLock<(OwnedFd, OwnedFd)> = std::sync::OnceLock::new();

/// The process's pipe, made on first use, emptied of bytes an earlier
/// `Signals` left unread; a new descriptor for its read end.
fn pipe() -> io::Result<OwnedFd> {
    let (read, _) = match PIPE.get() {
        Some(ends) => ends,
        None => {
            let ends =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
            // Only the holder of TAKEN gets here: nobody set it meanwhile.
            let ends = PIPE.get_or_init(|| ends);
            WRITE_END.store(ends.1.as_raw_fd(), Ordering::SeqCst);
            ends
        }
    };
    let mut stale = [0u8; 64];
    while nix::unistd::read(read.as_raw_fd(), &mut stale).is_ok_and(|n| n > 0) {}
    read.try_clone()
}

/// Whether a [`Signals`] lives: one at a time per process, as the
/// handler has one pipe to write to.
static TAKEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: write(2) of one byte to a
    // non-blocking pipe (a full pipe drops the byte: the reader has
    // plenty to wake for), keeping the interrupted code's errno.
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: one byte from a live local to a descriptor this module
        // keeps open while it is published in WRITE_END.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Delivery of some signals to this process, while it lives.
pub struct Signals {
    read: tokio::net::unix::pipe::Receiver,
    previous: Vec<(Signal, SigAction)>,
}

impl Signals {
    /// Starts catching `signals` (their default action, such as ending
    /// the process, no longer happens). Call on a tokio runtime with I/O
    /// enabled. Fails if another `Signals` lives or a number is not a
    /// signal that can be caught.
    pub fn new(signals: &[libc::c_int]) -> io::Result<Self> {
        let wanted = signals
            .iter()
            .map(|&n| {
                Signal::try_from(n).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{n} is not a signal"))
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "signals are already being caught in this process",
            ));
        }
        let read = match pipe().and_then(tokio::net::unix::pipe::Receiver::from_owned_fd) {
            Ok(r) => r,
            Err(e) => {
                TAKEN.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        let mut this = Signals {
            read,
            previous: Vec::new(),
        };
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in wanted {
            // SAFETY: the handler only makes async-signal-safe calls.
            match unsafe { sigaction(signal, &action) } {
                Ok(previous) => this.previous.push((signal, previous)),
                // Drop restores what was installed so far.
                Err(e) => return Err(e.into()),
            }
        }
        Ok(this)
    }

    /// The next signal caught (as its number); `None` if the pipe failed.
    pub async fn recv(&mut self) -> Option<libc::c_int> {
        let mut byte = [0u8; 1];
        loop {
            if self.read.readable().await.is_err() {
                return None;
            }
            match self.read.try_read(&mut byte) {
                Ok(1) => return Some(libc::c_int::from(byte[0])),
                Ok(_) => return None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..).rev() {
            // SAFETY: puts back the disposition sigaction gave us.
            let _ = unsafe { sigaction(signal, &previous) };
        }
        TAKEN.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the module holds one process-wide slot.
    #[tokio::test]
    async fn caught_signals_arrive_and_the_default_comes_back() {
        let err = Signals::new(&[libc::SIGUSR1, 4242]).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("4242"), "{err}");
        let mut signals = Signals::new(&[libc::SIGUSR1, libc::SIGUSR2]).expect("catch");
        let me = nix::unistd::getpid();
        nix::sys::signal::kill(me, Signal::SIGUSR2).expect("kill");
        assert_eq!(signals.recv().await, Some(libc::SIGUSR2));
        nix::sys::signal::kill(me, Signal::SIGUSR1).expect("kill");
        assert_eq!(signals.recv().await, Some(libc::SIGUSR1));
        let err = Signals::new(&[libc::SIGUSR1])
            .err()
            .expect("a second Signals");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        drop(signals);
        // SAFETY: reads the current disposition (a null new action).
        let now = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut old);
            old.sa_sigaction
        };
        assert_eq!(now, libc::SIG_DFL, "the handler stayed after drop");
        // A byte left in the pipe is not the next Signals' signal.
        let stale = [libc::SIGUSR2 as u8];
        // SAFETY: one byte from a live local to the pipe's write end.
        unsafe { libc::write(WRITE_END.load(Ordering::SeqCst), stale.as_ptr().cast(), 1) };
        let mut again = Signals::new(&[libc::SIGUSR1]).expect("the slot is free again");
        nix::sys::signal::kill(me, Signal::SIGUSR1).expect("kill");
        assert_eq!(again.recv().await, Some(libc::SIGUSR1));
    }
}
