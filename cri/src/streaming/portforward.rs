//! Port-forward over SPDY (`portforward.k8s.io`): for every connection
//! the client forwards, it opens an error stream and a data stream that
//! share a `requestid` and name the pod's `port`; we connect to that port
//! on the pod's loopback — inside its network namespace, or the host's
//! for a host-network pod — and copy both ways.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::remotecommand::STREAM_CREATION_TIMEOUT;
use super::spdy::{Connection, Stream, StreamReader, StreamWriter};
use crate::netns::{connect_loopback, NetNs};
use crate::runtime::v1 as pb;
use crate::Cri;

/// The protocol a port-forward upgrade negotiates.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    since: Option<Instant>,
}

/// Serves one port-forward connection until the client closes it.
pub(super) async fn serve(cri: Arc<Cri>, request: pb::PortForwardRequest, mut conn: Connection) {
    let sandbox = match cri.sandboxes.get(&request.pod_sandbox_id) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            tracing::info!(error = %e, "port-forward to a pod that is gone");
            conn.close().await;
            return;
        }
    };
    let netns = sandbox.metadata.netns.clone();
    let pod = sandbox.id.clone();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = conn.accept().await {
        let Some(request_id) = stream.header("requestid").map(str::to_owned) else {
            tracing::debug!("port-forward stream without a requestid");
            stream.writer.reset().await;
            continue;
        };
        // Halves whose partner never came are given up on.
        let now = Instant::now();
        pairs.retain(|_, p| p.since.is_some_and(|t| now - t < STREAM_CREATION_TIMEOUT));
        let pair = pairs.entry(request_id.clone()).or_default();
        pair.since.get_or_insert(now);
        match stream.header("streamtype") {
            Some("data") => pair.data = Some(stream),
            Some("error") => pair.error = Some(stream),
            other => {
                tracing::debug!(?other, "port-forward stream of unknown type");
                stream.writer.reset().await;
                continue;
            }
        }
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pairs.remove(&request_id)
            {
                tokio::spawn(forward(pod.clone(), netns.clone(), data, error));
            }
        }
    }
    conn.close().await;
}

/// Forwards one connection; a failure is reported on its error stream.
async fn forward(pod: String, netns: Option<PathBuf>, data: Stream, error: Stream) {
    let Stream {
        reader: mut error_reader,
        writer: mut error_writer,
        ..
    } = error;
    let port = data.header("port").unwrap_or_default().to_owned();
    let result = match port.parse::<u16>() {
        Ok(p) if p > 0 => copy(p, netns, data.reader, data.writer).await,
        _ => Err(format!("invalid port {port:?}")),
    };
    if let Err(e) = result {
        let message = format!("error forwarding port {port} to pod {pod}: {e}");
        tracing::info!("{message}");
        let _ = error_writer.write_all(message.as_bytes()).await;
    }
    let _ = error_writer.shutdown().await;
    // The client sends nothing on the error stream; drain its end.
    let _ = tokio::io::copy(&mut error_reader, &mut tokio::io::sink()).await;
}

/// Connects to `port` on the pod's loopback and copies both ways until
/// both sides are done.
async fn copy(
    port: u16,
    netns: Option<PathBuf>,
    mut from_client: StreamReader,
    mut to_client: StreamWriter,
) -> Result<(), String> {
    let connected = tokio::task::spawn_blocking(move || match netns {
        Some(path) => NetNs::from_path(path).connect_tcp(port),
        None => connect_loopback(port),
    })
    .await
    .map_err(|e| e.to_string())?;
    let socket = connected.map_err(|e| format!("connect to port {port}: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let socket = TcpStream::from_std(socket).map_err(|e| e.to_string())?;
    let (from_pod, mut to_pod): (ReadHalf<TcpStream>, _) = tokio::io::split(socket);
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_pod).await;
        // The client is done sending: the pod reads end-of-file.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut from_pod = from_pod;
        let copied = tokio::io::copy(&mut from_pod, &mut to_client).await;
        let _ = to_client.shutdown().await;
        copied
    };
    let ((), copied) = tokio::join!(upstream, downstream);
    copied
        .map(|_| ())
        .map_err(|e| format!("copy from port {port}: {e}"))
}
