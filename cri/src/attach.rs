//! Attach: clients joining a running container's stdio. The container's
//! output goes to its log as always; a tee on the way copies it to every
//! attached client (several at once), and a client's input goes into the
//! container's stdin, which the CRI holds open for the container's life.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crated_core::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::{broadcast, watch};

use crate::exec::StreamIo;
use crate::logs::LogReader;
use crate::Cri;

/// Chunks of output buffered per attached client; a client that falls
/// further behind loses output rather than stalling the container.
const BACKLOG: usize = 128;
/// How long an ended attach waits for its client to take the rest.
const DRAIN: Duration = Duration::from_secs(5);

type Chunk = Arc<[u8]>;

/// Copies of a container's output for attached clients.
#[derive(Clone, Debug)]
pub struct OutputHub {
    stdout: broadcast::Sender<Chunk>,
    stderr: broadcast::Sender<Chunk>,
}

impl Default for OutputHub {
    fn default() -> Self {
        Self {
            stdout: broadcast::channel(BACKLOG).0,
            stderr: broadcast::channel(BACKLOG).0,
        }
    }
}

impl OutputHub {
    /// `reader` (the container's stdout, or its stderr when `stderr`),
    /// copying what is read to the attached clients.
    pub fn tee(&self, reader: LogReader, stderr: bool) -> LogReader {
        let to = if stderr { &self.stderr } else { &self.stdout };
        Box::new(Tee {
            inner: reader,
            to: to.clone(),
        })
    }
}

struct Tee {
    inner: LogReader,
    to: broadcast::Sender<Chunk>,
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() && self.to.receiver_count() > 0 {
            // Nobody attached between the count and the send is fine.
            let _ = self.to.send(Chunk::from(read));
        }
        Poll::Ready(Ok(()))
    }
}

/// Copies one output stream to a client until told to stop, then what is
/// still buffered, then ends the client's stream.
async fn pump(
    mut chunks: broadcast::Receiver<Chunk>,
    mut out: crated_client::cio::Output,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Ok(data) => {
                    if out.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::debug!(lost, "attached client fell behind; output dropped");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    while let Ok(data) = chunks.try_recv() {
        if out.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

impl Cri {
    /// An attach (the streaming server's `/attach`) to the running
    /// container `id`: its output to the client, the client's input to
    /// its stdin (if it was made with one), terminal sizes to its tty.
    /// Ends when the container stops, when the client's input ends, or
    /// when the client goes away (`gone`); the container runs on.
    pub(crate) async fn attach_stream(
        &self,
        id: &str,
        io: StreamIo,
        gone: impl Future<Output = ()>,
    ) -> Result<()> {
        let container = self.running_container(id)?;
        let (stdout, stderr) = {
            let held = container.io.lock().await;
            (
                held.output.stdout.subscribe(),
                held.output.stderr.subscribe(),
            )
        };
        let (stop, stopped) = watch::channel(false);
        let mut pumps = Vec::new();
        for (chunks, out) in [(stdout, io.stdout), (stderr, io.stderr)] {
            if let Some(out) = out {
                pumps.push(tokio::spawn(pump(chunks, out, stopped.clone())));
            }
        }
        let resizes = io.resize.map(|mut sizes| {
            let client = self.client.clone();
            let id = container.id.clone();
            tokio::spawn(async move {
                let task = match client.load_container(&id).await {
                    Ok(record) => record.task().await,
                    Err(e) => Err(e),
                };
                let Ok(task) = task else {
                    return;
                };
                while let Some((width, height)) = sizes.recv().await {
                    if let Err(e) = task.resize(width.into(), height.into()).await {
                        tracing::debug!(id, error = %e, "resize attached terminal");
                    }
                }
            })
        });
        let input_done = async {
            match io.stdin {
                Some(input) if container.config.stdin => {
                    self.feed_stdin(&container, input).await;
                }
                // Input for a container without stdin goes nowhere, and
                // its end ends nothing.
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = input_done => {}
            () = container.wait_stopped() => {}
            () = gone => {}
        }
        stop.send_replace(true);
        for pump in pumps {
            let _ = tokio::time::timeout(DRAIN, pump).await;
        }
        if let Some(resizes) = resizes {
            resizes.abort();
        }
        Ok(())
    }

    /// Copies a client's input into the container's stdin until the
    /// client's input ends; with `stdin_once` the container's stdin is
    /// then closed (the process reads end-of-file).
    async fn feed_stdin(&self, container: &crate::container::CriContainer, mut input: LogReader) {
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            let n = match input.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut held = container.io.lock().await;
            let Some(stdin) = held.stdin.as_mut() else {
                break;
            };
            if let Err(e) = stdin.write_all(&chunk[..n]).await {
                tracing::debug!(id = container.id, error = %e, "write attached input");
                break;
            }
        }
        if container.config.stdin_once {
            container.io.lock().await.stdin = None;
        }
    }
}
