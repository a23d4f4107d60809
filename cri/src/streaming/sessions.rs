//! Exec and attach sessions, and how they run over SPDY: the client opens one stream per
//! role (`streamtype` error, stdin, stdout, stderr, resize), the process
//! runs with them, and the error stream carries how it ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::remotecommand::{decode_resizes, Options, Outcome, STREAM_CREATION_TIMEOUT};
use super::spdy::{Connection, StreamReader, StreamWriter};
use super::Pending;
use crate::exec::StreamIo;
use crate::runtime::v1 as pb;
use crate::Cri;

/// An exec or attach waiting for its streams.
pub(super) enum Command {
    Exec(pb::ExecRequest),
    Attach(pb::AttachRequest),
}

/// A future that completes when the client has gone away.
pub(super) type Gone = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Command {
    /// The streams it has.
    pub(super) fn options(&self) -> Options {
        match self {
            Command::Exec(r) => Options::new(r.stdin, r.stdout, r.stderr, r.tty),
            Command::Attach(r) => Options::new(r.stdin, r.stdout, r.stderr, r.tty),
        }
    }

    /// Runs it with the client's stdio; how it ended.
    pub(super) async fn run(self, cri: &Cri, io: StreamIo, gone: Gone) -> Outcome {
        let ran = match self {
            Command::Exec(r) => cri
                .exec_stream(&r.container_id, &r.cmd, r.tty, io, gone)
                .await
                .map(Outcome::Exited),
            Command::Attach(r) => cri
                .attach_stream(&r.container_id, io, gone)
                .await
                .map(|()| Outcome::Exited(0)),
        };
        ran.unwrap_or_else(|e| Outcome::Failed(e.to_string()))
    }
}

/// Serves what `pending` asked for on an upgraded SPDY connection.
pub(super) async fn run(cri: Arc<Cri>, pending: Pending, conn: Connection) {
    match pending {
        Pending::Exec(request) => remote_command(&cri, Command::Exec(request), conn).await,
        Pending::Attach(request) => remote_command(&cri, Command::Attach(request), conn).await,
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

/// Runs an exec or attach over SPDY: the client's streams become the
/// process's stdio, and how it ended goes on the error stream before the
/// connection ends.
async fn remote_command(cri: &Cri, command: Command, mut conn: Connection) {
    let streams = match collect(&mut conn, command.options()).await {
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
    let outcome = command.run(cri, io, Box::pin(conn.closed())).await;
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
