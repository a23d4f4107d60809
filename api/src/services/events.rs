//! `containerd.services.events.v1.Events` (gRPC) and
//! `containerd.services.events.ttrpc.v1.Events` (ttrpc, for shims) over
//! [`Events`], and the helper that encodes an event payload.

use std::pin::Pin;
use std::sync::Arc;

use crated_core::events::{Envelope, Events, Payload};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::containerd::services::events::ttrpc::v1 as ttrpc_pb;
use crate::containerd::services::events::v1 as pb;
use crate::convert::{to_system_time, to_timestamp};
use crate::error::Error as WireError;
use crate::metadata::{grpc_namespace, ttrpc_namespace};
use crate::{to_grpc, to_ttrpc};

/// Encodes a containerd event message under its type name, as containerd's
/// `typeurl` does for its event types (`containerd.events.TaskExit`, …).
pub fn payload<M: prost::Message>(type_url: &str, message: &M) -> Payload {
    Payload {
        type_url: type_url.to_owned(),
        value: message.encode_to_vec(),
    }
}

fn any_to_payload(any: Option<prost_types::Any>) -> Payload {
    let any = any.unwrap_or_default();
    Payload {
        type_url: any.type_url,
        value: any.value,
    }
}

/// An envelope as its wire message.
pub fn envelope_to_pb(envelope: Envelope) -> pb::Envelope {
    pb::Envelope {
        timestamp: Some(to_timestamp(envelope.timestamp)),
        namespace: envelope.namespace,
        topic: envelope.topic,
        event: Some(prost_types::Any {
            type_url: envelope.event.type_url,
            value: envelope.event.value,
        }),
    }
}

/// An envelope from its wire parts; no timestamp means now.
pub fn envelope_from_parts(
    timestamp: Option<prost_types::Timestamp>,
    namespace: String,
    topic: String,
    event: Option<prost_types::Any>,
) -> Envelope {
    Envelope {
        timestamp: timestamp
            .as_ref()
            .map(to_system_time)
            .unwrap_or_else(std::time::SystemTime::now),
        namespace,
        topic,
        event: any_to_payload(event),
    }
}

/// The events service of a daemon.
#[derive(Clone)]
pub struct Service {
    events: Arc<dyn Events>,
}

impl Service {
    /// Serves `events`.
    pub fn new(events: Arc<dyn Events>) -> Self {
        Self { events }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::events_server::EventsServer<Self> {
        pb::events_server::EventsServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::events_server::Events for Service {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        if request.event.is_none() {
            return Err(to_grpc(WireError::Missing("event").into()));
        }
        self.events
            .publish(&ns, &request.topic, any_to_payload(request.event))
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    async fn forward(&self, request: Request<pb::ForwardRequest>) -> Result<Response<()>, Status> {
        let envelope = request
            .into_inner()
            .envelope
            .ok_or_else(|| to_grpc(WireError::Missing("envelope").into()))?;
        self.events
            .forward(envelope_from_parts(
                envelope.timestamp,
                envelope.namespace,
                envelope.topic,
                envelope.event,
            ))
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut subscription = self
            .events
            .subscribe(&request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        let stream = async_stream(move |tx| async move {
            while let Some(next) = subscription.next().await {
                let item = next.map(envelope_to_pb).map_err(to_grpc);
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A boxed stream fed by a spawned producer; the producer stops when the
/// client goes away (its sends fail).
fn async_stream<T, F, Fut>(producer: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[async_trait::async_trait]
impl ttrpc_pb::events_ttrpc::Events for Service {
    async fn forward(
        &self,
        ctx: &ttrpc::r#async::TtrpcContext,
        request: ttrpc_pb::ForwardRequest,
    ) -> ttrpc::Result<()> {
        // Shims put the namespace in the envelope; the header, when sent,
        // must agree with it.
        let envelope = request
            .envelope
            .ok_or_else(|| to_ttrpc(WireError::Missing("envelope").into()))?;
        if let Ok(header) = ttrpc_namespace(ctx) {
            if header.as_str() != envelope.namespace {
                return Err(to_ttrpc(
                    WireError::NamespaceMismatch {
                        envelope: envelope.namespace,
                        header: header.to_string(),
                    }
                    .into(),
                ));
            }
        }
        self.events
            .forward(envelope_from_parts(
                envelope.timestamp,
                envelope.namespace,
                envelope.topic,
                envelope.event,
            ))
            .await
            .map_err(to_ttrpc)
    }
}
