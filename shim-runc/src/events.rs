//! Publishing task events to the daemon: ttrpc `Forward` to
//! `TTRPC_ADDRESS`, as containerd's shims do.

use std::time::{Duration, SystemTime};

use crated_api::containerd::services::events::ttrpc::v1 as pb;
use crated_api::containerd::services::events::ttrpc::v1::events_ttrpc::EventsClient;
use crated_core::Namespace;
use prost::Message;
use tokio::sync::Mutex;

/// A publisher to the daemon's ttrpc socket.
pub struct Publisher {
    address: String,
    namespace: Namespace,
    client: Mutex<Option<EventsClient>>,
}

impl Publisher {
    /// Publishes to `address` (a socket path or `unix://` address).
    pub fn new(address: &str, namespace: Namespace) -> Self {
        let address = if address.starts_with("unix://") {
            address.to_owned()
        } else {
            format!("unix://{address}")
        };
        Self {
            address,
            namespace,
            client: Mutex::new(None),
        }
    }

    /// Sends `event` on `topic`; a daemon that is down loses it (it
    /// reconciles from the shim's state when it comes back).
    pub async fn publish<M: Message>(&self, topic: &str, name: &str, event: &M) {
        let request = pb::ForwardRequest {
            envelope: Some(pb::Envelope {
                timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                namespace: self.namespace.as_str().to_owned(),
                topic: topic.to_owned(),
                event: Some(prost_types::Any {
                    type_url: format!("containerd.events.{name}"),
                    value: event.encode_to_vec(),
                }),
            }),
        };
        let mut client = self.client.lock().await;
        for _ in 0..2 {
            if client.is_none() {
                match ttrpc::r#async::Client::connect(&self.address).await {
                    Ok(c) => *client = Some(EventsClient::new(c)),
                    Err(e) => {
                        eprintln!("shim: publish {topic}: connect {}: {e}", self.address);
                        return;
                    }
                }
            }
            let Some(c) = client.as_ref() else { return };
            let ctx = crated_api::metadata::ttrpc_context(&self.namespace, Duration::from_secs(5));
            match c.forward(ctx, &request).await {
                Ok(_) => return,
                Err(e) => {
                    eprintln!("shim: publish {topic}: {e}");
                    *client = None;
                }
            }
        }
    }
}
