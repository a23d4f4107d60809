//! `GetContainerEvents`, the stream the kubelet's evented PLEG follows:
//! a CRI event when a container or pod sandbox is created, started,
//! stopped or deleted, carrying the pod's status and its containers'
//! statuses as they are after the change.
//!
//! The kubelet drops an event without a pod status, so each is sent when
//! the CRI's records can give one, as containerd's CRI sends them: a
//! creation (the sandbox's created and started, a container's created) once
//! the call that made it has stored its record, a removal once the record is
//! gone (with the pod's status for a container; none for a removed pod,
//! which the kubelet ignores and learns from its relist). Starts and exits,
//! which happen to records already stored, come from the daemon's exchange
//! (`/tasks/start`, `/tasks/exit` in `k8s.io`); one of a task the CRI does
//! not know (a sandbox still being made, a container of another client)
//! is not sent.

use std::sync::Arc;
use std::time::Duration;

use crated_api::containerd::events::{TaskExit, TaskStart};
use futures::Stream;
use prost::Message as _;
use tokio::sync::broadcast;

use crate::container::now_nanos;
use crate::runtime::v1 as pb;
use crate::{Cri, NAMESPACE};

/// How many events a slow subscriber may fall behind before it misses
/// some (it is told in the log; the kubelet relists then). The channel
/// holds them behind an `Arc`: it fills every slot when it is made, and a
/// slot holding a whole event (472 bytes) made it 483 KB resident from
/// start, a slot holding a pointer 40 KB.
pub(crate) const BACKLOG: usize = 1024;

/// How long a stop event waits for the exit to be recorded in the CRI's
/// status, so the statuses it carries say "exited".
const EXIT_RECORDED: Duration = Duration::from_secs(5);

impl Cri {
    /// A subscriber's stream of container events, from now on.
    pub(crate) fn container_events(&self) -> impl Stream<Item = pb::ContainerEventResponse> {
        futures::stream::unfold(self.container_events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Arc::unwrap_or_clone(event), rx)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a container event subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Sends the event of `kind` for `id` (a container or a sandbox) of
    /// the pod `sandbox_id`, as a CRI call that created or removed it ends.
    pub(crate) async fn publish_container_event(
        &self,
        id: &str,
        sandbox_id: &str,
        kind: pb::ContainerEventType,
    ) {
        // No subscriber: nothing to build.
        if self.container_events.receiver_count() == 0 {
            return;
        }
        let event = self.container_event(id, sandbox_id, kind).await;
        let _ = self.container_events.send(Arc::new(event));
    }

    /// The pod `id` belongs to (itself for a sandbox), if the CRI knows it.
    fn sandbox_of(&self, id: &str) -> Option<String> {
        match self.sandboxes.get(id) {
            Ok(sandbox) if sandbox.id == id => Some(sandbox.id.clone()),
            _ => self
                .containers
                .get(id)
                .ok()
                .filter(|c| c.id == id)
                .map(|c| c.metadata.sandbox_id.clone()),
        }
    }

    /// The event for `id` (a container or a sandbox) of `kind`, with the
    /// statuses of the pod `sandbox_id` (none if it is gone).
    async fn container_event(
        &self,
        id: &str,
        sandbox_id: &str,
        kind: pb::ContainerEventType,
    ) -> pb::ContainerEventResponse {
        let mut event = pb::ContainerEventResponse {
            container_id: id.to_owned(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        };
        if self.sandboxes.get(sandbox_id).is_ok() {
            event.pod_sandbox_status = self
                .pod_sandbox_status(sandbox_id, false)
                .ok()
                .and_then(|r| r.status);
            event.containers_statuses = self.container_statuses_of(sandbox_id).await;
        }
        event
    }

    /// Turns `envelope` into a CRI event, if it is one.
    async fn translate(&self, topic: &str, value: &[u8]) -> Option<pb::ContainerEventResponse> {
        use pb::ContainerEventType as Kind;
        let (id, kind) = match topic {
            "/tasks/start" => (
                TaskStart::decode(value).ok()?.container_id,
                Kind::ContainerStartedEvent,
            ),
            "/tasks/exit" => {
                let exit = TaskExit::decode(value).ok()?;
                // An exec's exit is not the container's.
                if exit.id != exit.container_id {
                    return None;
                }
                if let Ok(container) = self.containers.get(&exit.container_id) {
                    let _ = tokio::time::timeout(EXIT_RECORDED, container.wait_stopped()).await;
                } else if let Ok(sandbox) = self.sandboxes.get(&exit.container_id) {
                    let _ = tokio::time::timeout(EXIT_RECORDED, sandbox.wait_stopped()).await;
                }
                (exit.container_id, Kind::ContainerStoppedEvent)
            }
            _ => return None,
        };
        let sandbox_id = self.sandbox_of(&id)?;
        Some(self.container_event(&id, &sandbox_id, kind).await)
    }
}

/// Follows the exchange and publishes CRI events until it closes.
pub(crate) fn spawn(cri: Arc<Cri>) {
    tokio::spawn(async move {
        let filters: Vec<String> = ["/tasks/start", "/tasks/exit"]
            .iter()
            .map(|topic| format!("namespace=={NAMESPACE},topic==\"{topic}\""))
            .collect();
        let events = Arc::clone(&cri.client.services().events);
        let mut stream = match events.subscribe(&filters).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "subscribe to task events: GetContainerEvents will stay silent");
                return;
            }
        };
        while let Some(next) = stream.next().await {
            let Ok(envelope) = next else { continue };
            // No subscriber: nothing to build.
            if cri.container_events.receiver_count() == 0 {
                continue;
            }
            if let Some(event) = cri.translate(&envelope.topic, &envelope.event.value).await {
                let _ = cri.container_events.send(Arc::new(event));
            }
        }
    });
}
