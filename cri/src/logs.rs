//! Container logs in the kubelet's CRI format.
//!
//! The kubelet (`kubectl logs`, log rotation) reads a container's log file
//! as one record a line:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F hello world
//! 2016-10-06T00:17:09.669794202Z stderr P first 16 KiB of a long line…
//! ```
//!
//! — a timestamp, the stream (`stdout` or `stderr`), a tag (`F` a full
//! line, `P` a part of one) and the content, which is raw bytes. A
//! [`LogWriter`] makes those records out of a container's stdout and stderr
//! as containerd's CRI does (`pkg/cri/io/logger.go`):
//!
//! - every line becomes one `F` record whose content is the line without
//!   its `\n`, or without its `\r\n` (a tty ends lines so); any other `\r`
//!   is content, and an empty line is an `F` record with empty content;
//! - with a positive `max_len` (`max_container_log_line_size`), a line
//!   longer than that is cut into `P` records of exactly `max_len` bytes and
//!   a last `F` record with the rest, so no record holds more than `max_len`
//!   content bytes; cuts fall on byte counts, even inside a multibyte UTF-8
//!   character — joining the `P`s and the `F` gives back the exact bytes. A
//!   zero or negative `max_len` means no limit;
//! - what is left without a newline when a stream ends (or the writer is
//!   stopped) is written as `P` records: the container never finished that
//!   line. A stream that ends right after a newline writes nothing more;
//! - a record's timestamp is taken when the read that completed it
//!   returned.
//!
//! Where crated differs from containerd, on purpose:
//!
//! - timestamps are UTC with nine fraction digits always
//!   (`…09.669794202Z`); containerd writes Go's `RFC3339Nano` in the
//!   daemon's local zone with trailing zeros dropped. The kubelet parses
//!   both; fixed width keeps records sortable as text;
//! - the log's directory must exist (the kubelet makes it); containerd
//!   creates it. A missing directory is an error naming it, rather than a
//!   log the kubelet does not know to collect or clean up;
//! - both streams are read and written by one task, so records can never
//!   tear each other (containerd serialises two goroutines with a mutex),
//!   and a reopen falls between two records of each stream. A line being
//!   written when the log is reopened goes whole into the new file;
//!   containerd flushes its first part as a `P` record into the old one.
//!
//! A write failure (disk full) does not stop the writer: it keeps draining
//! the container's output, because a container blocked on a full pipe
//! would hang; [`LogWriter::wait`] reports the first failure at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::Result;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::Error;

/// One of a container's output streams, as the writer takes it: in
/// practice the non-blocking read end of the container's stdout or stderr
/// fifo, or of its pty.
pub type LogReader = Box<dyn AsyncRead + Send + Unpin>;

/// containerd creates container logs with this mode; the kubelet and log
/// agents read them as root or as the file's group.
const LOG_FILE_MODE: u32 = 0o640;

/// Bytes read from a stream at a time. A pipe holds 64 KiB; two 16 KiB
/// buffers per container keep memory low while a busy stream still takes
/// few reads.
const READ_SIZE: usize = 16 * 1024;

/// Buffers grown past these sizes by a burst of output (or one huge line
/// with no limit) are freed instead of kept for the life of the container.
const KEEP_BATCH: usize = 256 * 1024;
const KEEP_PENDING: usize = 64 * 1024;

/// `2016-10-06T00:17:09.669794202Z`.
const TIMESTAMP_LEN: usize = 30;
type Timestamp = [u8; TIMESTAMP_LEN];

/// The tag of a record holding a whole line (`runtime.LogTagFull`).
const FULL: u8 = b'F';
/// The tag of a record holding part of a line (`runtime.LogTagPartial`).
const PARTIAL: u8 = b'P';

/// Writes a container's stdout and stderr into its CRI log file until both
/// streams end.
///
/// Dropping a `LogWriter` does not stop it: the container's output is
/// still drained into the log, and the writer ends with the streams.
///
/// ```no_run
/// # async fn example(stdout: crated_cri::logs::LogReader,
/// #                  stderr: crated_cri::logs::LogReader) -> crated_core::Result<()> {
/// use crated_cri::logs::LogWriter;
///
/// let writer = LogWriter::start(
///     "/var/log/pods/ns_pod_uid/app/0.log",
///     stdout,
///     Some(stderr),
///     16 * 1024,
/// )
/// .await?;
/// let reopener = writer.reopener(); // for ReopenContainerLog
/// // … the container exits, its fifos close …
/// writer.wait().await?; // every line is in the file
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LogWriter {
    path: Arc<Path>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<Result<()>>,
}

/// Makes a running [`LogWriter`] reopen its log file: what
/// `ReopenContainerLog` does after the kubelet rotated (renamed) the file.
/// Cheap to clone; it does not keep the writer running.
#[derive(Debug, Clone)]
pub struct Reopener {
    path: Arc<Path>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    /// Close the log file and open its path again; answer when done.
    Reopen(oneshot::Sender<Result<()>>),
    /// Write what is buffered and end.
    Stop,
}

impl LogWriter {
    /// Opens (creating it if needed, appending if not) the log file at
    /// `path` and starts writing `stdout` and `stderr` into it. A tty
    /// container has one output stream, its pty: pass `stderr = None`.
    /// `max_len` is `max_container_log_line_size`: lines longer than a
    /// positive `max_len` are cut into parts; zero or negative means no
    /// limit.
    ///
    /// The file is opened append-only with mode 0640 (less the umask). Its
    /// directory must exist. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// InvalidArgument if `path` is not absolute, FailedPrecondition if its
    /// directory does not exist, and the I/O error's kind if the file
    /// cannot be opened.
    pub async fn start(
        path: impl Into<PathBuf>,
        stdout: LogReader,
        stderr: Option<LogReader>,
        max_len: i64,
    ) -> Result<Self> {
        let path: Arc<Path> = Arc::from(path.into());
        if !path.is_absolute() {
            return Err(Error::LogPathNotAbsolute {
                path: path.to_path_buf(),
            }
            .into());
        }
        let file = open_log(&path).await?;
        // Non-positive is containerd's "no limit"; a limit beyond the
        // address space is no limit either.
        let max_len = usize::try_from(max_len).ok().filter(|&n| n > 0);
        let output = Output {
            path: Arc::clone(&path),
            file: Arc::new(file),
            batch: Vec::new(),
            failure: None,
            failures: 0,
        };
        let stdout = Source::new(Some(stdout), b"stdout", max_len);
        let stderr = Source::new(stderr, b"stderr", max_len);
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(output, stdout, stderr, receiver));
        Ok(Self {
            path,
            commands,
            task,
        })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that reopens the log file while the writer runs.
    pub fn reopener(&self) -> Reopener {
        Reopener {
            path: Arc::clone(&self.path),
            commands: self.commands.clone(),
        }
    }

    /// Asks the writer to end without waiting for the streams' EOF (the
    /// container's IO is being torn down). Lines cut short are written as
    /// partial records, as at EOF. Returns at once; [`LogWriter::wait`]
    /// waits for the end.
    pub fn stop(&self) {
        // A writer that has already ended has nothing left to stop.
        let _ = self.commands.send(Command::Stop);
    }

    /// Waits until both streams have ended (or the writer was stopped)
    /// and everything read is in the log file.
    ///
    /// # Errors
    ///
    /// The first write failure, with its I/O kind — the output was drained
    /// regardless, so this is for the caller to log, not to retry; Unknown
    /// if the writer's task panicked.
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(source) => Err(Error::LogTask {
                path: self.path.to_path_buf(),
                source,
            }
            .into()),
        }
    }

    /// Waits up to `limit` for the streams to end, then stops the writer
    /// and waits for what it read to be written: a container's process
    /// left a child holding its output open, and the log must not wait
    /// for that child forever. The errors of [`LogWriter::wait`].
    pub async fn drain(mut self, limit: std::time::Duration) -> Result<()> {
        let ended = tokio::time::timeout(limit, &mut self.task).await;
        let joined = match ended {
            Ok(joined) => joined,
            Err(_) => {
                self.stop();
                (&mut self.task).await
            }
        };
        match joined {
            Ok(result) => result,
            Err(source) => Err(Error::LogTask {
                path: self.path.to_path_buf(),
                source,
            }
            .into()),
        }
    }
}

impl Reopener {
    /// Closes the current log file and opens the path again — a new file
    /// once the kubelet has renamed the old one — and returns once records
    /// go to the new file: those read before the switch are in the old
    /// file, those read after in the new one. If the path cannot be opened
    /// the writer keeps writing to the old file.
    ///
    /// # Errors
    ///
    /// FailedPrecondition if the writer has ended (the container is not
    /// running); the errors of [`LogWriter::start`] if the path cannot be
    /// opened.
    pub async fn reopen(&self) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let not_running = || -> crated_core::Error {
            Error::LogNotRunning {
                path: self.path.to_path_buf(),
            }
            .into()
        };
        self.commands
            .send(Command::Reopen(done))
            .map_err(|_| not_running())?;
        // The writer dropping the request unanswered means it ended first.
        answer.await.map_err(|_| not_running())?
    }
}

/// The writer's task: reads whichever stream has output, writes the
/// records it completes, and serves commands in between, so a reopen
/// always falls between records.
async fn run(
    mut output: Output,
    mut stdout: Source,
    mut stderr: Source,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<()> {
    let mut listening = true;
    while stdout.is_open() || stderr.is_open() {
        tokio::select! {
            // The kubelet has already renamed the file when it asks for a
            // reopen, and waits: serve it before reading more output.
            biased;
            command = commands.recv(), if listening => match command {
                Some(Command::Reopen(done)) => {
                    // The asker may have given up waiting; the switch
                    // stands either way.
                    let _ = done.send(output.reopen().await);
                }
                Some(Command::Stop) => break,
                // Every handle is gone: nobody can reopen or stop any
                // more, but the container's output must still be drained.
                None => listening = false,
            },
            read = stdout.read(), if stdout.is_open() => {
                stdout.consume(read, &mut output.batch, &output.path);
            }
            read = stderr.read(), if stderr.is_open() => {
                stderr.consume(read, &mut output.batch, &output.path);
            }
        }
        output.flush().await;
    }
    // A stop cuts lines short; keep what was read, as at EOF.
    let now = timestamp(OffsetDateTime::now_utc());
    stdout.close(&now, &mut output.batch);
    stderr.close(&now, &mut output.batch);
    output.flush().await;
    if output.failures > 1 {
        tracing::warn!(
            path = %output.path.display(),
            failures = output.failures,
            "container log writes failed"
        );
    }
    output.failure.map_or(Ok(()), Err)
}

/// One output stream: its reader and the line it is in the middle of.
struct Source {
    reader: Option<LogReader>,
    buf: Box<[u8]>,
    lines: LineSplitter,
}

impl Source {
    fn new(reader: Option<LogReader>, stream: &'static [u8], max_len: Option<usize>) -> Self {
        let buf = if reader.is_some() {
            vec![0; READ_SIZE].into_boxed_slice()
        } else {
            Box::default()
        };
        Self {
            reader,
            buf,
            lines: LineSplitter::new(stream, max_len),
        }
    }

    fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    /// The next read; never completes for a closed stream. Cancel-safe,
    /// as `AsyncRead::read` is: `select!` drops it when another branch
    /// wins.
    async fn read(&mut self) -> io::Result<usize> {
        match &mut self.reader {
            Some(reader) => reader.read(&mut self.buf).await,
            None => std::future::pending().await,
        }
    }

    /// Turns what a read gave into records appended to `out`.
    fn consume(&mut self, read: io::Result<usize>, out: &mut Vec<u8>, path: &Path) {
        let now = timestamp(OffsetDateTime::now_utc());
        match read {
            Ok(0) => self.close(&now, out),
            Ok(n) => self.lines.feed(&self.buf[..n], &now, out),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // containerd likewise ends the stream on a read error,
                // keeping what it had read.
                tracing::warn!(
                    path = %path.display(),
                    stream = %String::from_utf8_lossy(self.lines.stream),
                    error = %err,
                    "reading container output failed; the stream ends here"
                );
                self.close(&now, out);
            }
        }
    }

    /// Ends the stream: drops the reader (closing the fifo's read end) and
    /// writes what is left of an unfinished line.
    fn close(&mut self, now: &Timestamp, out: &mut Vec<u8>) {
        self.reader = None;
        self.buf = Box::default();
        self.lines.finish(now, out);
    }
}

/// The log file and the records waiting to be written to it.
struct Output {
    path: Arc<Path>,
    file: Arc<File>,
    batch: Vec<u8>,
    failure: Option<crated_core::Error>,
    failures: u64,
}

impl Output {
    /// Writes the batch of whole records in one go, off the async workers.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let file = Arc::clone(&self.file);
        let batch = std::mem::take(&mut self.batch);
        let written = tokio::task::spawn_blocking(move || {
            let result = (&*file).write_all(&batch);
            (batch, result)
        })
        .await;
        let failure: crated_core::Error = match written {
            Ok((mut batch, result)) => {
                if batch.capacity() <= KEEP_BATCH {
                    batch.clear();
                    self.batch = batch;
                }
                match result {
                    Ok(()) => return,
                    Err(source) => Error::WriteLog {
                        path: self.path.to_path_buf(),
                        source,
                    }
                    .into(),
                }
            }
            Err(source) => Error::LogTask {
                path: self.path.to_path_buf(),
                source,
            }
            .into(),
        };
        // The records are lost, as in containerd: holding them back would
        // only stall the container once memory or the pipe filled.
        self.failures += 1;
        if self.failure.is_none() {
            tracing::warn!(error = %failure, "container log records dropped");
            self.failure = Some(failure);
        }
    }

    async fn reopen(&mut self) -> Result<()> {
        let file = open_log(&self.path).await?;
        // The old file closes here: no write holds it, flush has returned.
        self.file = Arc::new(file);
        Ok(())
    }
}

/// Opens a log file as containerd does, off the async workers (the log
/// directory may be on a slow disk).
async fn open_log(path: &Arc<Path>) -> Result<File> {
    let owned = Arc::clone(path);
    match tokio::task::spawn_blocking(move || open_log_blocking(&owned)).await {
        Ok(result) => Ok(result?),
        Err(source) => Err(Error::LogTask {
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

fn open_log_blocking(path: &Path) -> Result<File, Error> {
    // O_APPEND: the kubelet may truncate or copy the file while we write,
    // and every write must land at its current end. std opens O_CLOEXEC,
    // so shims and runc do not inherit the descriptor.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|source| {
            let missing_dir = path.parent().filter(|dir| {
                source.kind() == io::ErrorKind::NotFound && matches!(dir.try_exists(), Ok(false))
            });
            match missing_dir {
                Some(dir) => Error::LogDirMissing {
                    dir: dir.to_path_buf(),
                    path: path.to_path_buf(),
                },
                None => Error::OpenLog {
                    path: path.to_path_buf(),
                    source,
                },
            }
        })
}

/// Cuts one stream's bytes into CRI records.
struct LineSplitter {
    stream: &'static [u8],
    /// `None`: no limit.
    max_len: Option<usize>,
    /// The line read so far, at most `max_len` bytes plus a held-back
    /// `\r` once [`LineSplitter::cut_overlong`] has run.
    pending: Vec<u8>,
}

impl LineSplitter {
    fn new(stream: &'static [u8], max_len: Option<usize>) -> Self {
        Self {
            stream,
            max_len,
            pending: Vec::new(),
        }
    }

    /// Appends to `out` the records that `data`, read at `now`, completes.
    fn feed(&mut self, mut data: &[u8], now: &Timestamp, out: &mut Vec<u8>) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let line = &data[..end];
            data = &data[end + 1..];
            if self.pending.is_empty() {
                self.push_line(strip_cr(line), now, out);
            } else {
                let mut pending = std::mem::take(&mut self.pending);
                pending.extend_from_slice(line);
                self.push_line(strip_cr(&pending), now, out);
                if pending.capacity() <= KEEP_PENDING {
                    pending.clear();
                    self.pending = pending;
                }
            }
        }
        self.pending.extend_from_slice(data);
        self.cut_overlong(now, out);
    }

    /// Writes what is left at the end of the stream as partial records.
    fn finish(&mut self, now: &Timestamp, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        let piece = self.max_len.unwrap_or(usize::MAX);
        // An empty rest writes nothing: the stream ended after a newline.
        for part in pending.chunks(piece) {
            push_record(out, now, self.stream, PARTIAL, part);
        }
    }

    /// One line, without its line end: `P` parts of `max_len` bytes while
    /// more than `max_len` remain, then the `F` rest.
    fn push_line(&self, content: &[u8], now: &Timestamp, out: &mut Vec<u8>) {
        let mut rest = content;
        if let Some(max_len) = self.max_len {
            while rest.len() > max_len {
                let (part, tail) = rest.split_at(max_len);
                push_record(out, now, self.stream, PARTIAL, part);
                rest = tail;
            }
        }
        push_record(out, now, self.stream, FULL, rest);
    }

    /// Writes `P` parts of the unfinished line while it holds more than
    /// `max_len` bytes of content, so memory stays bounded by the limit.
    fn cut_overlong(&mut self, now: &Timestamp, out: &mut Vec<u8>) {
        let Some(max_len) = self.max_len else {
            return;
        };
        // A trailing '\r' may begin the "\r\n" that ends the line, which is
        // no content: until the next byte tells, it is not counted, as
        // containerd's readLine unreads it. Otherwise a line of exactly
        // max_len bytes ending "\r\n" across two reads would become a `P`
        // and an empty `F`.
        let held = usize::from(self.pending.last() == Some(&b'\r'));
        let mut start = 0;
        while self.pending.len() - held - start > max_len {
            push_record(
                out,
                now,
                self.stream,
                PARTIAL,
                &self.pending[start..start + max_len],
            );
            start += max_len;
        }
        self.pending.drain(..start);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `<timestamp> <stream> <tag> <content>\n`.
fn push_record(out: &mut Vec<u8>, now: &Timestamp, stream: &[u8], tag: u8, content: &[u8]) {
    out.reserve(TIMESTAMP_LEN + stream.len() + content.len() + 5);
    out.extend_from_slice(now);
    out.push(b' ');
    out.extend_from_slice(stream);
    out.push(b' ');
    out.push(tag);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// RFC 3339 in UTC with nanoseconds, always nine digits.
fn timestamp(t: OffsetDateTime) -> Timestamp {
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let t = t.to_offset(time::UtcOffset::UTC);
    // Years before 0 or after 9999 are not "now".
    let year = u32::try_from(t.year()).unwrap_or(0).min(9999);
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], u32::from(u8::from(t.month())));
    put_digits(&mut out[8..10], u32::from(t.day()));
    put_digits(&mut out[11..13], u32::from(t.hour()));
    put_digits(&mut out[14..16], u32::from(t.minute()));
    put_digits(&mut out[17..19], u32::from(t.second()));
    put_digits(&mut out[20..29], t.nanosecond());
    out
}

/// Writes `value` in decimal, zero-padded to fill `dst`.
fn put_digits(dst: &mut [u8], mut value: u32) {
    for digit in dst.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests;
