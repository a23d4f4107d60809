//! Exec and attach sessions over SPDY: the client opens one stream per
//! role (`streamtype` error, stdin, stdout, stderr, resize), the process
//! runs with them, and the error stream carries how it ended.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::remotecommand::{decode_resizes, Options, Outcome, STREAM_CREATION_TIMEOUT};
use super::spdy::{Connection, StreamReader, StreamWriter};
use super::Pending;
use crate::exec::StreamIo;
use crate::Cri;

/// Serves what `pending` asked for on an upgraded connection.
pub(super) async fn run(cri: Arc<Cri>, pending: Pending, conn: Connection) {
    match pending {
        Pending::Exec(request) => {
            let options = Options::new(request.stdin, request.stdout, request.stderr, request.tty);
            remote_command(conn, options, |io, gone| async move {
                match cri
                    .exec_stream(&request.container_id, &request.cmd, request.tty, io, gone)
                    .await
                {
                    Ok(exit) => Outcome::Exited(exit),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            })
            .await;
        }
        Pending::Attach(request) => {
            let options = Options::new(request.stdin, request.stdout, request.stderr, request.tty);
            remote_command(conn, options, |io, gone| async move {
                match cri.attach_stream(&request.container_id, io, gone).await {
                    Ok(()) => Outcome::Exited(0),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            })
            .await;
        }
        Pending::PortForward(request) => super::portforward::serve(cri, request, conn).await,
    }
}

/// The streams of a session as the client opened them.
#[derive(Default)]
struct Streams {
    error: Option<StreamWriter>,
    stdin: Option<StreamReader>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamReader>,
    /// Our halves of the streams only the client writes on: ending them
    /// early would make the client stop writing, so they end with the
    /// session.
    held: Vec<StreamWriter>,
}

impl Streams {
    fn complete(&self, options: Options) -> bool {
        self.error.is_some()
            && (!options.stdin || self.stdin.is_some())
            && (!options.stdout || self.stdout.is_some())
            && (!options.stderr || self.stderr.is_some())
            && (!options.tty || self.resize.is_some())
    }
}

/// Waits (up to the creation timeout) for the client to open the streams
/// the session needs.
async fn collect(conn: &mut Connection, options: Options) -> Result<Streams, &'static str> {
    let deadline = Instant::now() + STREAM_CREATION_TIMEOUT;
    let mut streams = Streams::default();
    while !streams.complete(options) {
        let stream = match tokio::time::timeout_at(deadline, conn.accept()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Err("the client closed the connection before opening its streams"),
            Err(_) => return Err("timed out waiting for the client to open its streams"),
        };
        match stream.header("streamtype") {
            Some("error") => streams.error = Some(stream.writer),
            Some("stdin") => {
                streams.stdin = Some(stream.reader);
                streams.held.push(stream.writer);
            }
            Some("stdout") => streams.stdout = Some(stream.writer),
            Some("stderr") => streams.stderr = Some(stream.writer),
            Some("resize") => {
                streams.resize = Some(stream.reader);
                streams.held.push(stream.writer);
            }
            other => {
                tracing::debug!(?other, "streaming client opened a stream of unknown type");
                stream.writer.reset().await;
            }
        }
    }
    Ok(streams)
}

/// Runs an exec or attach session: `body` gets the client's stdio and a
/// future that completes if the client goes away, and says how the
/// process ended; that goes on the error stream and the connection ends.
async fn remote_command<F, Fut>(mut conn: Connection, options: Options, body: F)
where
    F: FnOnce(StreamIo, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let streams = match collect(&mut conn, options).await {
        Ok(streams) => streams,
        Err(why) => {
            tracing::info!("streaming session not started: {why}");
            conn.close().await;
            return;
        }
    };
    let Streams {
        error,
        stdin,
        stdout,
        stderr,
        resize,
        held,
    } = streams;
    let io = StreamIo {
        stdin: stdin.map(|s| Box::new(s) as _),
        stdout: stdout.map(|s| Box::new(s) as _),
        stderr: stderr.map(|s| Box::new(s) as _),
        resize: resize.map(decode_resizes),
    };
    let outcome = body(io, Box::pin(conn.closed())).await;
    if let Outcome::Failed(why) = &outcome {
        tracing::info!("streaming session failed: {why}");
    }
    if let Some(mut error) = error {
        let _ = error.write_all(&outcome.status_json()).await;
        let _ = error.shutdown().await;
    }
    drop(held);
    conn.close().await;
}
