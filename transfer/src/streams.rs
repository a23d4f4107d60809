//! Named two-way streams (`containerd.services.streaming.v1.Streaming`):
//! the side channels of a transfer. A client opens a stream, names it in
//! its first message (`StreamInit`), waits for the daemon's `Empty`, and
//! then passes the name in a transfer request; the transfer takes the
//! stream by name and sends progress, asks for credentials, or moves an
//! archive's bytes on it.
//!
//! A stream is registered under the namespace of the call that opened it
//! and taken once. The daemon's side ends when its taker drops it (the
//! client reads the end of the stream), or when the client goes away,
//! which also forgets a stream never taken.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use crated_core::{Error, Result};
use prost_types::Any;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crated_api::containerd::services::streaming::v1 as pb;

use crate::any;

/// Messages the daemon may queue on a stream before a send waits for the
/// client to read.
const QUEUE: usize = 16;

/// The streams opened and not yet taken, by namespace and name.
#[derive(Default)]
pub struct StreamManager {
    /// Each with the number of its registration, so the end of one call
    /// never forgets a later stream registered under the same name.
    open: Mutex<HashMap<(String, String), (u64, Stream)>>,
    registrations: std::sync::atomic::AtomicU64,
}

impl StreamManager {
    /// A manager with no streams.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Takes the stream `id` of namespace `ns`; NotFound if no stream of
    /// that name is open there (or it was taken already).
    pub fn take(&self, ns: &str, id: &str) -> Result<Stream> {
        self.lock()
            .remove(&(ns.to_owned(), id.to_owned()))
            .map(|(_, stream)| stream)
            .ok_or_else(|| Error::not_found(format!("stream {id:?} not found in namespace {ns:?}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (u64, Stream)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `stream`; the number of this registration.
    fn register(&self, ns: &str, id: &str, stream: Stream) -> Result<u64> {
        let key = (ns.to_owned(), id.to_owned());
        let mut open = self.lock();
        if open.contains_key(&key) {
            return Err(Error::already_exists(format!(
                "stream {id:?} already exists in namespace {ns:?}"
            )));
        }
        let number = self
            .registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        open.insert(key, (number, stream));
        Ok(number)
    }

    /// Forgets the stream `id` of `ns` of registration `number` if it is
    /// still there untaken.
    fn forget(&self, ns: &str, id: &str, number: u64) {
        let key = (ns.to_owned(), id.to_owned());
        let mut open = self.lock();
        if open.get(&key).is_some_and(|(n, _)| *n == number) {
            open.remove(&key);
        }
    }
}

/// The daemon's end of one stream.
pub struct Stream {
    pub(crate) id: String,
    pub(crate) to_client: mpsc::Sender<std::result::Result<Any, Status>>,
    pub(crate) from_client: Streaming<Any>,
}

impl Stream {
    /// The stream's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends `message`; Unavailable once the client is gone.
    pub async fn send(&mut self, message: Any) -> Result<()> {
        self.to_client
            .send(Ok(message))
            .await
            .map_err(|_| Error::unavailable(format!("stream {:?} closed by the client", self.id)))
    }

    /// The next message of the client; `None` once it has closed its side.
    pub async fn recv(&mut self) -> Result<Option<Any>> {
        self.from_client.message().await.map_err(|status| {
            crated_api::from_grpc(status).context(format!("stream {:?}", self.id))
        })
    }
}

/// The reply side of a stream's call, told when tonic drops it (the call
/// is over: ended by the daemon, or the client went away).
pub struct Outbound {
    messages: mpsc::Receiver<std::result::Result<Any, Status>>,
    _dropped: oneshot::Sender<()>,
}

impl futures::Stream for Outbound {
    type Item = std::result::Result<Any, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.messages).poll_recv(cx)
    }
}

/// The gRPC streaming service over a [`StreamManager`].
pub struct Service {
    manager: Arc<StreamManager>,
}

impl Service {
    /// Serves `manager`.
    pub fn new(manager: Arc<StreamManager>) -> Self {
        Self { manager }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::streaming_server::StreamingServer<Self> {
        pb::streaming_server::StreamingServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::streaming_server::Streaming for Service {
    type StreamStream = Outbound;

    async fn stream(
        &self,
        request: Request<Streaming<Any>>,
    ) -> std::result::Result<Response<Outbound>, Status> {
        // containerd keys streams by the call's namespace, none included.
        let ns = request
            .metadata()
            .get(crated_core::namespaces::GRPC_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut from_client = request.into_inner();
        let first = from_client
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before its StreamInit"))?;
        let init: pb::StreamInit = any::unpack(&first).map_err(crated_api::to_grpc)?;
        if init.id.is_empty() {
            return Err(Status::invalid_argument("StreamInit names no stream id"));
        }
        let (to_client, messages) = mpsc::channel(QUEUE);
        // The acknowledgement goes first, before anyone can take the stream.
        to_client
            .try_send(Ok(any::pack(&())))
            .map_err(|_| Status::internal("stream queue full before its first message"))?;
        let stream = Stream {
            id: init.id.clone(),
            to_client,
            from_client,
        };
        let number = self
            .manager
            .register(&ns, &init.id, stream)
            .map_err(crated_api::to_grpc)?;
        tracing::debug!(stream = init.id, namespace = ns, "registered stream");
        let (dropped, gone) = oneshot::channel();
        let manager = Arc::downgrade(&self.manager);
        tokio::spawn(async move {
            let _ = gone.await;
            if let Some(manager) = manager.upgrade() {
                manager.forget(&ns, &init.id, number);
            }
        });
        Ok(Response::new(Outbound {
            messages,
            _dropped: dropped,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_an_unknown_stream_names_it() {
        let manager = StreamManager::new();
        let err = manager
            .take("default", "progress-1")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("stream \"progress-1\" not found in namespace \"default\"")
        );
    }
}
