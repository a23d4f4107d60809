//! Task stdio owned by the caller, as containerd's `cio`: fifos made in a
//! fresh owner-only directory (the shim opens their other ends), and
//! copies between them and the caller's async streams.
//!
//! A fifo's open blocks until its other end is opened; those opens run on
//! blocking threads, and the copies on non-blocking descriptors, so
//! nothing here blocks an async worker.
//!
//! ```no_run
//! # async fn f() -> crated_core::Result<()> {
//! use crated_client::cio::Fifos;
//!
//! let fifos = Fifos::new(std::path::Path::new("/run/crated/fifo"), "web", true, false)?;
//! // … create the task with `fifos.stdio()`, then:
//! let attached = fifos.attach(
//!     Some(Box::new(tokio::io::empty())),
//!     Some(Box::new(tokio::io::sink())),
//!     Some(Box::new(tokio::io::sink())),
//! );
//! // … start the task, wait for it, then let the output drain:
//! attached.wait(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crated_core::tasks::Stdio;
use crated_core::Result;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::Error;

/// containerd's default fifo directory, where its shims may open fifos.
pub const FIFO_DIR: &str = "/run/containerd/fifo";

/// A stream the process reads its stdin from.
pub type Input = Box<dyn AsyncRead + Send + Unpin>;
/// A stream the process's output is copied to.
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// The fifos of one process, removed with their directory on drop unless
/// kept (for a later attach to a detached task).
#[derive(Debug)]
pub struct Fifos {
    /// Removed on drop; `None` for fifos this set does not own.
    dir: Option<PathBuf>,
    /// Where the process reads stdin (none: `/dev/null`).
    pub stdin: Option<PathBuf>,
    /// Where it writes stdout (with a terminal, everything).
    pub stdout: Option<PathBuf>,
    /// Where it writes stderr (none with a terminal).
    pub stderr: Option<PathBuf>,
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|source| {
        Error::Mkfifo {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

impl Fifos {
    /// Makes `<id>-stdin` (with `stdin`), `<id>-stdout` and, without a
    /// `terminal`, `<id>-stderr` in a new 0700 directory under `root`.
    pub fn new(root: &Path, id: &str, stdin: bool, terminal: bool) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create", root, e))?;
        let dir = root.join(crated_core::identifiers::unique_part());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("create", &dir, e))?;
        let mut set = Self {
            stdin: stdin.then(|| dir.join(format!("{id}-stdin"))),
            stdout: Some(dir.join(format!("{id}-stdout"))),
            stderr: (!terminal).then(|| dir.join(format!("{id}-stderr"))),
            dir: Some(dir),
        };
        let made = set
            .stdin
            .iter()
            .chain(set.stdout.iter())
            .chain(set.stderr.iter())
            .try_for_each(|p| mkfifo(p));
        if let Err(e) = made {
            // The directory goes with `set`.
            set.stdin = None;
            return Err(e);
        }
        Ok(set)
    }

    /// The fifos a process was created with (to attach to a running
    /// task); not removed on drop.
    pub fn existing(stdio: &Stdio) -> Self {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        Self {
            dir: None,
            stdin: path(&stdio.stdin),
            stdout: path(&stdio.stdout),
            stderr: path(&stdio.stderr),
        }
    }

    /// The paths as a task is created with them.
    pub fn stdio(&self) -> Stdio {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        Stdio {
            stdin: path(&self.stdin),
            stdout: path(&self.stdout),
            stderr: path(&self.stderr),
        }
    }

    /// Opens the output fifos for reading without waiting, to hold while a
    /// detached task is created: a shim that opens its write ends blocking
    /// (containerd's) needs a reader to be there once.
    pub fn hold_outputs(&self) -> Vec<File> {
        self.stdout
            .iter()
            .chain(self.stderr.iter())
            .filter_map(|p| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p)
                    .ok()
            })
            .collect()
    }

    /// Leaves the fifos in place (a detached task's, for a later attach).
    pub fn keep(mut self) {
        self.dir = None;
    }

    /// Starts copying: the process's stdout and stderr into `stdout` and
    /// `stderr`, `stdin` into the process's stdin (closed at its end, so
    /// the process reads end-of-file). Streams not given are not copied.
    pub fn attach(
        &self,
        stdin: Option<Input>,
        stdout: Option<Output>,
        stderr: Option<Output>,
    ) -> Attached {
        let mut outputs = Vec::new();
        for (fifo, sink) in [(&self.stdout, stdout), (&self.stderr, stderr)] {
            if let (Some(fifo), Some(sink)) = (fifo.clone(), sink) {
                outputs.push((fifo.clone(), tokio::spawn(copy_out(fifo, sink))));
            }
        }
        let input = match (self.stdin.clone(), stdin) {
            (Some(fifo), Some(source)) => Some((fifo.clone(), tokio::spawn(copy_in(fifo, source)))),
            _ => None,
        };
        Attached { outputs, input }
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Opens `fifo` for reading once a writer has it open, on a blocking
/// thread; the result is non-blocking.
pub async fn open_reader(fifo: PathBuf) -> std::io::Result<pipe::Receiver> {
    let file = tokio::task::spawn_blocking(move || File::open(&fifo))
        .await
        .map_err(std::io::Error::other)??;
    pipe::Receiver::from_file(file)
}

/// Opens `fifo` for writing once a reader has it open, on a blocking
/// thread; the result is non-blocking.
pub async fn open_writer(fifo: PathBuf) -> std::io::Result<pipe::Sender> {
    let file =
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(&fifo))
            .await
            .map_err(std::io::Error::other)??;
    pipe::Sender::from_file(file)
}

async fn copy_out(fifo: PathBuf, mut sink: Output) {
    let Ok(mut reader) = open_reader(fifo).await else {
        return;
    };
    let _ = tokio::io::copy(&mut reader, &mut sink).await;
    let _ = sink.flush().await;
}

async fn copy_in(fifo: PathBuf, mut source: Input) {
    let Ok(mut writer) = open_writer(fifo).await else {
        return;
    };
    let _ = tokio::io::copy(&mut source, &mut writer).await;
    // Dropping the writer closes the fifo: the process reads end-of-file.
}

/// Copies in progress.
pub struct Attached {
    outputs: Vec<(PathBuf, JoinHandle<()>)>,
    input: Option<(PathBuf, JoinHandle<()>)>,
}

/// Ends a copy into `fifo`, waking its open if no reader ever came: a
/// reader of our own lets the blocked open return.
fn stop_input(fifo: &Path, copy: JoinHandle<()>) {
    copy.abort();
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo);
}

impl Attached {
    /// Waits (up to `limit`) for the output to be copied to its end: the
    /// shim closes its ends once the process is gone and its output is
    /// drained. A fifo the shim never opened is released, so no thread
    /// stays blocked in its open. The stdin copy stops.
    pub async fn wait(self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (fifo, mut copy) in self.outputs {
            if tokio::time::timeout_at(deadline, &mut copy).await.is_ok() {
                continue;
            }
            // A writer of our own wakes a reader still blocked in open()
            // and closing it gives that reader its end of file.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            if tokio::time::timeout(Duration::from_millis(100), &mut copy)
                .await
                .is_err()
            {
                // A writer that never closes: left behind rather than
                // blocking the caller.
                copy.abort();
            }
        }
        if let Some((fifo, copy)) = self.input {
            stop_input(&fifo, copy);
        }
    }

    /// Stops copying at once.
    pub fn abort(self) {
        for (_, copy) in self.outputs {
            copy.abort();
        }
        if let Some((fifo, copy)) = self.input {
            stop_input(&fifo, copy);
        }
    }
}
