//! [`Events`] over containerd's gRPC events service.

use crated_core::events::{Envelope, EventStream, Events, Payload};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::events::v1 as pb;
use crate::convert::to_timestamp;
use crate::from_grpc;
use crate::services::events::envelope_from_parts;

/// The events of a remote daemon.
#[derive(Clone)]
pub struct EventsProxy {
    client: pb::events_client::EventsClient<Channel>,
}

impl EventsProxy {
    /// Calls the events service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::events_client::EventsClient::new(channel)),
        }
    }
}

fn any(payload: Payload) -> prost_types::Any {
    prost_types::Any {
        type_url: payload.type_url,
        value: payload.value,
    }
}

struct Subscription(tonic::Streaming<pb::Envelope>);

#[async_trait::async_trait]
impl EventStream for Subscription {
    async fn next(&mut self) -> Option<Result<Envelope>> {
        match self.0.message().await {
            Ok(Some(e)) => Some(Ok(envelope_from_parts(
                e.timestamp,
                e.namespace,
                e.topic,
                e.event,
            ))),
            Ok(None) => None,
            Err(status) => Some(Err(from_grpc(status))),
        }
    }
}

#[async_trait::async_trait]
impl Events for EventsProxy {
    async fn publish(&self, ns: &Namespace, topic: &str, event: Payload) -> Result<()> {
        let req = pb::PublishRequest {
            topic: topic.to_owned(),
            event: Some(any(event)),
        };
        self.client
            .clone()
            .publish(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn forward(&self, envelope: Envelope) -> Result<()> {
        let req = pb::ForwardRequest {
            envelope: Some(pb::Envelope {
                timestamp: Some(to_timestamp(envelope.timestamp)),
                namespace: envelope.namespace,
                topic: envelope.topic,
                event: Some(any(envelope.event)),
            }),
        };
        self.client
            .clone()
            .forward(request(None, None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn subscribe(&self, filters: &[String]) -> Result<Box<dyn EventStream>> {
        let req = pb::SubscribeRequest {
            filters: filters.to_vec(),
        };
        let stream = self
            .client
            .clone()
            .subscribe(request(None, None, req)?)
            .await
            .map_err(from_grpc)?
            .into_inner();
        Ok(Box::new(Subscription(stream)))
    }
}
