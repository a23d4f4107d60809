//! Streaming over WebSocket, as newer clients (kubectl, crictl and
//! critest with `--websocket-*`) speak it:
//!
//! - exec and attach with `v5.channel.k8s.io` (or `v4`): binary messages
//!   whose first byte names the channel — 0 stdin, 1 stdout, 2 stderr,
//!   3 error (the final status), 4 terminal sizes — and, in v5, `[255, n]`
//!   to close channel n (the client's end of stdin);
//! - port-forward with `SPDY/3.1+portforward.k8s.io`: SPDY tunnelled
//!   through binary messages, served by the SPDY port-forward as is.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::header::HeaderValue;
use hyper::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::PollSender;

use super::chunks::ChunkReader;
use super::idle::{watchdog, Activity, OnDrop};
use super::remotecommand::{decode_resizes, Outcome};
use super::sessions::Command;
use super::spdy::Connection;
use super::Pending;
use crate::exec::StreamIo;
use crate::Cri;

/// Port-forward's SPDY tunnelled in WebSocket.
pub const TUNNELED_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` ends a channel.
const CLOSE: u8 = 255;

/// How long the last messages may take to reach the client.
const FINISH: Duration = Duration::from_secs(5);

/// Whether `request` asks for a WebSocket upgrade.
pub fn is_websocket(request: &Request<hyper::body::Incoming>) -> bool {
    request
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// What a WebSocket handshake needs from the request: the accept key of
/// the response and the subprotocol chosen from the client's offer (in
/// its order of preference) among `supported`.
pub fn handshake(
    request: &Request<hyper::body::Incoming>,
    supported: &[&'static str],
) -> Result<(HeaderValue, &'static str), String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if header("sec-websocket-version") != Some("13") {
        return Err("unable to upgrade: WebSocket version 13 is required".into());
    }
    let key = header("sec-websocket-key")
        .filter(|k| !k.is_empty())
        .ok_or("unable to upgrade: Sec-WebSocket-Key is missing")?;
    let offered: Vec<&str> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let chosen = offered
        .iter()
        .find_map(|o| supported.iter().copied().find(|s| s == o))
        .ok_or_else(|| {
            format!(
                "unable to upgrade: requested protocol(s) {offered:?} are not supported; supported: {supported:?}"
            )
        })?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = HeaderValue::from_str(&accept).map_err(|e| e.to_string())?;
    Ok((accept, chosen))
}

/// Serves `pending` on an upgraded WebSocket connection that negotiated
/// `protocol`.
pub(super) async fn serve<S>(
    cri: Arc<Cri>,
    pending: Pending,
    io: S,
    protocol: &'static str,
    idle: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    match pending {
        Pending::PortForward(request) => {
            let conn = Connection::serve(Tunnel::new(ws), idle);
            super::portforward::serve(cri, request, conn).await;
        }
        Pending::Exec(request) => {
            remote_command(&cri, Command::Exec(request), ws, protocol, idle).await;
        }
        Pending::Attach(request) => {
            remote_command(&cri, Command::Attach(request), ws, protocol, idle).await;
        }
    }
}

/// An exec or attach over channel messages.
async fn remote_command<S>(
    cri: &Cri,
    command: Command,
    ws: WebSocketStream<S>,
    protocol: &'static str,
    idle: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let options = command.options();
    let v5 = protocol.starts_with("v5.");
    let (mut sink, mut source) = ws.split();
    let (out, mut queued) = mpsc::channel::<Message>(64);
    let activity = Activity::default();
    let writer = tokio::spawn({
        let activity = activity.clone();
        async move {
            while let Some(message) = queued.recv().await {
                let last = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || last {
                    break;
                }
                activity.touch();
            }
            let _ = sink.close().await;
        }
    });
    let (stdin_tx, stdin) = mpsc::channel(16);
    let (resize_tx, resize) = mpsc::channel(4);
    let (gone_tx, gone) = watch::channel(false);
    let reader = tokio::spawn({
        let activity = activity.clone();
        async move {
            // Set however the reader ends, aborted by the watchdog too.
            let _gone = OnDrop(Some(gone_tx));
            let mut stdin_tx = options.stdin.then_some(stdin_tx);
            let mut resize_tx = options.tty.then_some(resize_tx);
            while let Some(message) = source.next().await {
                activity.touch();
                let data = match message {
                    Ok(Message::Binary(data)) => data,
                    Ok(Message::Close(_)) | Err(_) => break,
                    // Pings are answered by the library; text is not ours.
                    Ok(_) => continue,
                };
                let (channel, payload) = match data.split_first() {
                    Some((channel, payload)) => (*channel, payload),
                    None => continue,
                };
                let target = match channel {
                    STDIN => &mut stdin_tx,
                    RESIZE => &mut resize_tx,
                    CLOSE if v5 => {
                        match payload.first() {
                            Some(&STDIN) => stdin_tx = None,
                            Some(&RESIZE) => resize_tx = None,
                            _ => {}
                        }
                        continue;
                    }
                    _ => continue,
                };
                if let Some(tx) = target {
                    if payload.is_empty() {
                        continue;
                    }
                    if tx.send(payload.to_vec()).await.is_err() {
                        *target = None;
                    }
                }
            }
        }
    });
    let watchdog = watchdog(
        activity,
        idle,
        vec![reader.abort_handle(), writer.abort_handle()],
    );
    let channel = |id: u8, wanted: bool| {
        wanted.then(|| {
            Box::new(ChannelWriter {
                id,
                out: PollSender::new(out.clone()),
            }) as crated_client::cio::Output
        })
    };
    let io = StreamIo {
        stdin: options
            .stdin
            .then(|| Box::new(ChunkReader::new(stdin)) as _),
        stdout: channel(STDOUT, options.stdout),
        stderr: channel(STDERR, options.stderr),
        resize: options
            .tty
            .then(|| decode_resizes(ChunkReader::new(resize))),
    };
    let gone = async move {
        let mut gone = gone;
        let _ = gone.wait_for(|g| *g).await;
    };
    let outcome = command.run(cri, io, Box::pin(gone)).await;
    if let Outcome::Failed(why) = &outcome {
        tracing::info!("streaming session failed: {why}");
    }
    let mut status = vec![ERROR];
    status.extend_from_slice(&outcome.status_json());
    let _ = out.send(Message::Binary(Bytes::from(status))).await;
    let _ = out
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(out);
    if tokio::time::timeout(FINISH, writer).await.is_err() {
        tracing::debug!("streaming client did not take its last messages");
    }
    // The client answers the close; nothing it says after matters.
    let _ = tokio::time::timeout(FINISH, reader).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
}

/// One output channel: each write is one binary message, prefixed with
/// the channel's number.
struct ChannelWriter {
    id: u8,
    out: PollSender<Message>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "WebSocket closed");
        ready!(self.out.poll_reserve(cx)).map_err(|_| gone())?;
        let n = buf.len().min(32 * 1024);
        let mut message = Vec::with_capacity(n + 1);
        message.push(self.id);
        message.extend_from_slice(&buf[..n]);
        self.out
            .send_item(Message::Binary(Bytes::from(message)))
            .map_err(|_| gone())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A WebSocket carrying a byte stream in binary messages (the SPDY
/// tunnel): reads end at the close, shutdown sends one.
struct Tunnel<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> Tunnel<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tunnel<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
        let n = buf.remaining().min(self.pending.len());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tunnel<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.ws.poll_ready_unpin(cx)).map_err(ws_error)?;
        self.ws
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match ready!(self.ws.poll_close_unpin(cx)) {
            Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(ws_error(e))),
        }
    }
}
