//! Blocking work called from async code.

/// Runs `f`, which waits on the disk or a process (a database flush, a
/// lock another flush holds, an unmount retried while a mount is busy) or
/// computes for long, without stalling an async worker: on a multi-thread
/// tokio runtime the worker first hands its other tasks to another thread
/// (`block_in_place`), so one slow disk does not stop every RPC. Anywhere
/// else (a current-thread runtime, a plain or blocking-pool thread) `f`
/// just runs.
///
/// ```
/// let n = crated_core::blocking::off_worker(|| 6 * 7);
/// assert_eq!(n, 42);
/// ```
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A blocking writer (for a blocking thread: a tar or gzip writer) whose
/// bytes go to an async task in chunks of up to `chunk` bytes; what is
/// still buffered goes on `flush`. A write fails (BrokenPipe) once the
/// receiver is gone, which stops the producer.
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    chunk: usize,
}

impl ChannelWriter {
    /// Writes into `tx` in chunks of `chunk` bytes.
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>, chunk: usize) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(chunk),
            chunk,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the receiving side stopped")
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
