//! A SPDY/3.1 server connection, as Kubernetes' streaming clients use it:
//! the client opens streams (each naming its role in its headers), the
//! server accepts and replies, and both sides send data until each half
//! closes with FIN.
//!
//! No maintained Rust crate speaks SPDY, so this is ours: `frame` is the
//! wire format and header compression, this module the stream
//! multiplexing. Flow control (WINDOW_UPDATE) is neither sent nor
//! enforced, as Go's spdystream — the only peer — does neither.

pub mod dictionary;
pub mod frame;

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use super::chunks::ChunkReader;
use super::idle::{watchdog, Activity, OnDrop};
use frame::{rst, Frame, HeaderDecoder, HeaderEncoder, Headers, FLAG_FIN};

/// The largest DATA frame we send; clients read whole frames into memory.
const MAX_DATA: usize = 32 * 1024;
/// Frames queued for the socket before writers wait.
const OUT_QUEUE: usize = 64;
/// Data frames buffered per stream before the connection's reader waits
/// (one slow stream holds up the others, as in spdystream).
const IN_QUEUE: usize = 16;

/// What the writer task is asked to do.
enum Out {
    Frame(Frame),
    /// Write everything queued before, then close the socket.
    Shutdown,
}

/// One accepted SPDY connection.
pub struct Connection {
    accepted: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    watchdog: Option<JoinHandle<()>>,
    closed: watch::Receiver<bool>,
}

/// A stream the client opened: its headers, what it sends, and our half.
pub struct Stream {
    /// Its id (odd: client-initiated).
    pub id: u32,
    /// Its SYN_STREAM headers, names lower-cased.
    pub headers: Headers,
    /// What the client sends on it.
    pub reader: StreamReader,
    /// Our half.
    pub writer: StreamWriter,
}

impl Stream {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Connection {
    /// Serves SPDY on `io` (the upgraded HTTP connection). With
    /// `idle_timeout`, a connection that carries no frame either way for
    /// that long is closed.
    pub fn serve<T>(io: T, idle_timeout: Option<Duration>) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (accept_tx, accepted) = mpsc::channel(16);
        let (closed_tx, closed) = watch::channel(false);
        let activity = Activity::default();
        let writer = tokio::spawn(write_loop(write_half, out_rx, activity.clone()));
        let reader = tokio::spawn({
            let out = out.clone();
            let activity = activity.clone();
            async move {
                // Set however the reader ends, aborted by the watchdog too.
                let _closed = OnDrop(Some(closed_tx));
                read_loop(read_half, out, accept_tx, activity).await;
            }
        });
        let watchdog = watchdog(
            activity,
            idle_timeout,
            vec![reader.abort_handle(), writer.abort_handle()],
        );
        Self {
            accepted,
            out,
            reader,
            writer,
            watchdog,
            closed,
        }
    }

    /// The next stream the client opens; `None` once the connection is
    /// gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    /// Completes once the client's side of the connection has ended (it
    /// closed it, broke the protocol, or went idle too long).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// Writes what is queued, then closes the connection; the client
    /// sees every stream end.
    pub async fn close(mut self) {
        let _ = self.out.send(Out::Shutdown).await;
        let _ = (&mut self.writer).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite>(
    write_half: W,
    mut out: mpsc::Receiver<Out>,
    activity: Activity,
) {
    let mut write_half = std::pin::pin!(write_half);
    let mut encoder = HeaderEncoder::new();
    let mut bytes = Vec::new();
    while let Some(next) = out.recv().await {
        let Out::Frame(frame) = next else {
            break;
        };
        bytes.clear();
        frame.encode(&mut encoder, &mut bytes);
        // Batch what is already queued into one write.
        while bytes.len() < MAX_DATA {
            match out.try_recv() {
                Ok(Out::Frame(frame)) => frame.encode(&mut encoder, &mut bytes),
                Ok(Out::Shutdown) => {
                    let _ = write_half.write_all(&bytes).await;
                    let _ = write_half.shutdown().await;
                    return;
                }
                Err(_) => break,
            }
        }
        // Flushed at once: a tunnel (SPDY over WebSocket) buffers until
        // told to send.
        let written = match write_half.write_all(&bytes).await {
            Ok(()) => write_half.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "SPDY connection write failed");
            return;
        }
        activity.touch();
    }
    let _ = write_half.flush().await;
    let _ = write_half.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    read_half: R,
    out: mpsc::Sender<Out>,
    accept: mpsc::Sender<Stream>,
    activity: Activity,
) {
    let mut read_half = std::pin::pin!(read_half);
    let mut decoder = HeaderDecoder::new();
    let mut streams: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut last_id = 0;
    loop {
        let frame = match Frame::read(&mut read_half, &mut decoder).await {
            Ok(Some(frame)) => {
                activity.touch();
                frame
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY connection read failed");
                let _ = out
                    .send(Out::Frame(Frame::GoAway {
                        last_good_stream_id: last_id,
                        status: 1,
                    }))
                    .await;
                return;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Client streams are odd and increasing.
                if stream_id % 2 == 0 || stream_id <= last_id {
                    let _ = out
                        .send(Out::Frame(Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        }))
                        .await;
                    continue;
                }
                last_id = stream_id;
                let (tx, rx) = mpsc::channel(IN_QUEUE);
                if flags & FLAG_FIN == 0 {
                    streams.insert(stream_id, tx);
                }
                let reply = Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                };
                if out.send(Out::Frame(reply)).await.is_err() {
                    return;
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    reader: ChunkReader::new(rx),
                    writer: StreamWriter {
                        id: stream_id,
                        out: PollSender::new(out.clone()),
                        closed: false,
                    },
                };
                if accept.send(stream).await.is_err() {
                    let _ = out
                        .send(Out::Frame(Frame::RstStream {
                            stream_id,
                            status: rst::REFUSED_STREAM,
                        }))
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = streams.get(&stream_id) {
                    // A stream whose reader is gone just drops its data.
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        streams.remove(&stream_id);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } if flags & FLAG_FIN != 0 => {
                streams.remove(&stream_id);
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Ping { id } => {
                // Pings from the client have odd ids; answer them. Ours
                // (even) would be answers, and we send none.
                if id % 2 == 1 && out.send(Out::Frame(Frame::Ping { id })).await.is_err() {
                    return;
                }
            }
            Frame::GoAway { .. } => {
                // No new streams will come; the open ones go on.
            }
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. } => {}
        }
    }
}

/// What the client sends on a stream; end-of-file once it half-closes
/// (FIN), resets the stream, or the connection ends.
pub type StreamReader = ChunkReader;

/// Our half of a stream: DATA frames; shutdown sends FIN.
pub struct StreamWriter {
    id: u32,
    out: PollSender<Out>,
    closed: bool,
}

impl StreamWriter {
    /// Aborts the stream (RST_STREAM CANCEL) instead of ending it cleanly.
    pub async fn reset(mut self) {
        self.closed = true;
        if let Some(out) = self.out.get_ref() {
            let _ = out
                .send(Out::Frame(Frame::RstStream {
                    stream_id: self.id,
                    status: rst::CANCEL,
                }))
                .await;
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, frame: Frame) -> Poll<std::io::Result<()>> {
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "SPDY connection closed");
        ready!(self.out.poll_reserve(cx)).map_err(|_| gone())?;
        self.out.send_item(Out::Frame(frame)).map_err(|_| gone())?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        // A writer dropped without shutdown still ends its stream, so the
        // client's copy of it finishes. Frames queued before keep their
        // order: this goes into the same queue.
        if self.closed {
            return;
        }
        let Some(out) = self.out.get_ref().cloned() else {
            return;
        };
        let fin = Out::Frame(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Vec::new(),
        });
        if let Err(mpsc::error::TrySendError::Full(fin)) = out.try_send(fin) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = out.send(fin).await;
                });
            }
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "SPDY stream already closed",
            )));
        }
        let n = buf.len().min(MAX_DATA);
        let frame = Frame::Data {
            stream_id: self.id,
            flags: 0,
            data: buf[..n].to_vec(),
        };
        ready!(self.poll_send(cx, frame))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        let frame = Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Vec::new(),
        };
        ready!(self.poll_send(cx, frame))?;
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
