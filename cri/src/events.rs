//! Events the CRI follows: a container's OOM kill, which becomes the
//! reason (`OOMKilled`) its status reports once it exits.

use std::sync::Arc;

use crated_api::containerd::events::TaskOom;
use prost::Message as _;

use crate::container::{CriContainer, OOM_REASON};
use crate::store::Records;
use crate::NAMESPACE;

/// Follows `/tasks/oom` in the CRI's namespace until the exchange closes.
pub(crate) fn spawn_oom_monitor(
    events: Arc<dyn crated_core::events::Events>,
    containers: Arc<Records<CriContainer>>,
) {
    tokio::spawn(async move {
        let filter = format!("namespace=={NAMESPACE},topic==\"/tasks/oom\"");
        let mut stream = match events.subscribe(&[filter]).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "subscribe to OOM events: OOM kills will not be reported");
                return;
            }
        };
        while let Some(next) = stream.next().await {
            let envelope = match next {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "OOM events");
                    continue;
                }
            };
            let Ok(event) = TaskOom::decode(envelope.event.value.as_slice()) else {
                continue;
            };
            if let Ok(container) = containers.get(&event.container_id) {
                if container.id != event.container_id {
                    continue;
                }
                let noted = container.update(|s| {
                    s.reason = OOM_REASON.to_owned();
                    Ok(())
                });
                if let Err(e) = noted {
                    tracing::warn!(id = container.id, error = %e, "record OOM kill");
                }
            }
        }
    });
}
