//! A private network namespace for a test: the "node" a CRI or CNI test
//! runs in, so pod networks, bridges and their 10.x addresses never touch
//! the machine's own network namespace and vanish with the test.
//!
//! Linux keeps a network namespace per thread, and a thread or process
//! inherits the one of the thread that creates it. So a test calls
//! [`enter_private_netns`] first thing on its own thread, then builds its
//! tokio runtime and starts the registry, the daemon and the tools: all of
//! them (and every shim and CNI plugin they start) live in the private
//! namespace, which the kernel frees when the last of them exits.

use std::io;
use std::process::Command;

/// Moves the calling thread into a new network namespace whose loopback
/// is up. Only this thread and what it starts afterwards are affected.
pub fn enter_private_netns() -> io::Result<()> {
    // SAFETY: unshare has no memory effects; it only changes this
    // thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`ip link set lo up` in the private network namespace failed: {status}"
        )));
    }
    Ok(())
}

/// Runs `test` on a new thread inside a fresh private network namespace
/// with a multi-thread tokio runtime of its own (whose workers inherit the
/// namespace), and returns its result; a panic in `test` is re-raised.
pub fn in_private_netns<F, Fut, T>(test: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let thread = std::thread::spawn(move || {
        enter_private_netns().expect("enter a private network namespace");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(test())
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
