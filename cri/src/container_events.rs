//! `GetContainerEvents`, the stream the kubelet's evented PLEG follows:
//! a CRI event when a container or pod sandbox is created, started,
//! stopped or deleted, carrying the pod's status and its containers'
//! statuses as they are after the change.
//!
//! The kubelet drops an event without a pod status, and trusts the
//! statuses an event carries, so each is sent by the code that made the
//! change, after recording it, as containerd's CRI sends them: a sandbox's
//! created and started once RunPodSandbox has stored it, a container's
//! created once CreateContainer has, started once StartContainer has
//! recorded its start, stopped once its exit is recorded, deleted once its
//! record is gone (with the pod's status for a container; none for a
//! removed pod, which the kubelet ignores and learns from its relist).

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast;

use crate::container::now_nanos;
use crate::runtime::v1 as pb;
use crate::Cri;

/// How many events a slow subscriber may fall behind before it misses
/// some (it is told in the log; the kubelet relists then). The channel
/// holds them behind an `Arc`: it fills every slot when it is made, and a
/// slot holding a whole event (472 bytes) made it 483 KB resident from
/// start, a slot holding a pointer 40 KB.
pub(crate) const BACKLOG: usize = 1024;

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
    /// the pod `sandbox_id`; called once the change is recorded.
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
                .await
                .ok()
                .and_then(|r| r.status);
            event.containers_statuses = self.container_statuses_of(sandbox_id).await;
        }
        event
    }
}
