//! Publishing task events to the daemon: ttrpc `Forward` to
//! `TTRPC_ADDRESS`, as containerd's shims do.
//!
//! Events are delivered in the order they were published. One the daemon
//! cannot take (it is down, or restarting) waits in a bounded backlog with
//! everything published after it, and a retrier delivers the backlog once
//! the daemon serves its clients again, a moment after, so that clients
//! reconnecting to the restarted daemon (a Docker engine, kubelet) are
//! subscribed when the exits that happened meanwhile arrive.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crated_api::containerd::services::events::ttrpc::v1 as pb;
use crated_api::containerd::services::events::ttrpc::v1::events_ttrpc::EventsClient;
use crated_core::Namespace;
use prost::Message;
use tokio::sync::Mutex;

/// Events kept for a daemon that is away; beyond this the oldest go (a
/// daemon that comes back rebuilds task state from the shim anyway).
const BACKLOG_LIMIT: usize = 1024;
/// First and longest pause between redelivery attempts.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long after the daemon's client socket answers again the backlog
/// waits, for subscribers to come back.
const RESUBSCRIBE_GRACE: Duration = Duration::from_secs(1);
/// The bound of one `Forward`.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A publisher to the daemon's ttrpc socket.
pub struct Publisher {
    address: String,
    /// The daemon's client (gRPC) socket: its answering again is the sign
    /// that the daemon is back and clients can subscribe.
    daemon: Option<PathBuf>,
    namespace: Namespace,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    client: Option<EventsClient>,
    backlog: VecDeque<pb::ForwardRequest>,
    /// A retrier task is delivering the backlog.
    retrying: bool,
}

impl Publisher {
    /// Publishes to `address` (a socket path or `unix://` address);
    /// `daemon` is the daemon's own socket, whose return ends a wait.
    pub fn new(address: &str, daemon: &str, namespace: Namespace) -> Arc<Self> {
        let address = if address.starts_with("unix://") {
            address.to_owned()
        } else {
            format!("unix://{address}")
        };
        let daemon = daemon.trim_start_matches("unix://");
        Arc::new(Self {
            address,
            daemon: (!daemon.is_empty()).then(|| PathBuf::from(daemon)),
            namespace,
            state: Mutex::new(State::default()),
        })
    }

    /// Sends `event` on `topic`, or queues it behind earlier events the
    /// daemon has not taken yet.
    pub async fn publish<M: Message>(self: &Arc<Self>, topic: &str, name: &str, event: &M) {
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
        let mut state = self.state.lock().await;
        if state.backlog.is_empty() {
            match self.forward(&mut state.client, &request).await {
                Ok(()) => return,
                Err(e) => log!("shim: publish {topic}: {e}; kept until the daemon is back"),
            }
        }
        if state.backlog.len() >= BACKLOG_LIMIT {
            state.backlog.pop_front();
        }
        state.backlog.push_back(request);
        if !state.retrying {
            state.retrying = true;
            tokio::spawn(Arc::clone(self).redeliver());
        }
    }

    /// One `Forward`, reconnecting once if the connection went stale.
    async fn forward(
        &self,
        client: &mut Option<EventsClient>,
        request: &pb::ForwardRequest,
    ) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..2 {
            if client.is_none() {
                let connected = ttrpc::r#async::Client::connect(&self.address)
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.address))?;
                *client = Some(EventsClient::new(connected));
            }
            let Some(c) = client.as_ref() else {
                return Err(format!("connect {}: no client", self.address));
            };
            let ctx = crated_api::metadata::ttrpc_context(&self.namespace, FORWARD_TIMEOUT);
            match c.forward(ctx, request).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    *client = None;
                }
            }
        }
        Err(last)
    }

    /// Whether the daemon answers on its client socket (true when the
    /// shim was not told where that is).
    async fn daemon_serving(&self) -> bool {
        match &self.daemon {
            Some(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            None => true,
        }
    }

    /// Delivers the backlog, in order, once the daemon is back.
    async fn redeliver(self: Arc<Self>) {
        let mut pause = RETRY_FIRST;
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
            if !self.daemon_serving().await {
                continue;
            }
            tokio::time::sleep(RESUBSCRIBE_GRACE).await;
            let mut state = self.state.lock().await;
            let State {
                client, backlog, ..
            } = &mut *state;
            while let Some(front) = backlog.front() {
                if self.forward(client, front).await.is_err() {
                    break;
                }
                backlog.pop_front();
            }
            if backlog.is_empty() {
                state.retrying = false;
                log!("shim: daemon back; queued events delivered");
                return;
            }
        }
    }
}
