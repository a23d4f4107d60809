//! Task stdio as containerd's `cio`: fifos in a fresh directory under
//! `/run/containerd/fifo` (where containerd's shims expect to be allowed
//! to open them), and copies between them and this process's stdio.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crated_core::{Error, Result};

/// containerd's default fifo directory.
pub const FIFO_DIR: &str = "/run/containerd/fifo";

/// The fifos of one process, removed on drop (unless kept for a later
/// attach).
pub struct FifoSet {
    /// Removed on drop; `None` for fifos this set does not own.
    dir: Option<PathBuf>,
    /// Where the process reads its stdin from (none: `/dev/null`).
    pub stdin: Option<PathBuf>,
    /// Where it writes stdout (with a terminal, everything).
    pub stdout: PathBuf,
    /// Where it writes stderr (none with a terminal).
    pub stderr: Option<PathBuf>,
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o700))
        .map_err(|e| Error::unknown(format!("mkfifo {}: {e}", path.display())))
}

impl FifoSet {
    /// Makes `<id>-stdin` (if `stdin`), `<id>-stdout` and (without a
    /// terminal) `<id>-stderr` in a new directory under `root`.
    pub fn new(root: &Path, id: &str, stdin: bool, terminal: bool) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::unknown(format!("create {}: {e}", root.display())))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = root.join(format!("{nanos:x}-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| Error::unknown(format!("create {}: {e}", dir.display())))?;
        let set = Self {
            stdin: stdin.then(|| dir.join(format!("{id}-stdin"))),
            stdout: dir.join(format!("{id}-stdout")),
            stderr: (!terminal).then(|| dir.join(format!("{id}-stderr"))),
            dir: Some(dir),
        };
        for fifo in set
            .stdin
            .iter()
            .chain([&set.stdout])
            .chain(set.stderr.iter())
        {
            mkfifo(fifo)?;
        }
        Ok(set)
    }

    /// The fifos a running process was created with (`ctr tasks attach`);
    /// they are not removed on drop.
    pub fn existing(stdin: &str, stdout: &str, stderr: &str) -> Self {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        Self {
            dir: None,
            stdin: path(stdin),
            stdout: PathBuf::from(stdout),
            stderr: path(stderr),
        }
    }

    /// Opens the output fifos for reading without waiting, to hold while a
    /// detached task is created: a shim that opens its write ends blocking
    /// (containerd's) needs a reader to be there once.
    pub fn hold_outputs(&self) -> Vec<File> {
        std::iter::once(&self.stdout)
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

    /// Leaves the fifos in place for a later attach (a detached task).
    pub fn keep(mut self) {
        self.dir = None;
    }

    /// A path as the task API wants it (empty for none).
    pub fn path(p: &Option<PathBuf>) -> String {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Starts copying: the process's stdout and stderr to ours, our stdin
    /// to the process's.
    pub fn attach(&self) -> Attached {
        let mut readers = Vec::new();
        let copy_out = |fifo: PathBuf, to_stderr: bool| {
            std::thread::spawn(move || {
                // Blocks until the shim opens its end.
                let Ok(mut file) = File::open(&fifo) else {
                    return;
                };
                let mut buf = [0u8; 32 << 10];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let written = if to_stderr {
                                let mut e = std::io::stderr().lock();
                                e.write_all(&buf[..n]).and_then(|()| e.flush())
                            } else {
                                let mut o = std::io::stdout().lock();
                                o.write_all(&buf[..n]).and_then(|()| o.flush())
                            };
                            if written.is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        };
        readers.push((self.stdout.clone(), copy_out(self.stdout.clone(), false)));
        if let Some(stderr) = &self.stderr {
            readers.push((stderr.clone(), copy_out(stderr.clone(), true)));
        }
        if let Some(stdin) = self.stdin.clone() {
            // Detached: it ends with our stdin, or with the process.
            std::thread::spawn(move || {
                let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&stdin) else {
                    return;
                };
                let mut input = std::io::stdin();
                let mut buf = [0u8; 32 << 10];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if fifo.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        Attached { readers }
    }
}

impl Drop for FifoSet {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Output copies in progress.
pub struct Attached {
    readers: Vec<(PathBuf, JoinHandle<()>)>,
}

impl Attached {
    /// Waits (up to `limit`) for the output to be copied to the end: the
    /// shim closes its ends once the process is gone and its output drained.
    /// A fifo the shim never opened is released so no thread stays blocked.
    pub fn wait(self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for (fifo, thread) in self.readers {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !thread.is_finished() {
                // An opener of the write end wakes a reader still in open();
                // closing it at once gives that reader its end of file.
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo);
                let grace = Instant::now() + Duration::from_millis(100);
                while !thread.is_finished() && Instant::now() < grace {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // One still reading from a writer that never closes is left
            // behind rather than blocking the caller.
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}
