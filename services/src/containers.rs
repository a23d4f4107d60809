//! The containers service: the store, publishing `/containers/*`.

use std::sync::Arc;

use crated_api::containerd::events as ev;
use crated_api::convert::any_to_pb;
use crated_core::containers::{Container, ContainerStore};
use crated_core::events::Exchange;
use crated_core::{Namespace, Result};

use crate::events::publish;

/// Containers, with their events.
pub struct ContainerService {
    store: Arc<dyn ContainerStore>,
    exchange: Exchange,
}

impl ContainerService {
    /// `store` publishing to `exchange`.
    pub fn new(store: Arc<dyn ContainerStore>, exchange: Exchange) -> Self {
        Self { store, exchange }
    }
}

#[async_trait::async_trait]
impl ContainerStore for ContainerService {
    async fn get(&self, ns: &Namespace, id: &str) -> Result<Container> {
        self.store.get(ns, id).await
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Container>> {
        self.store.list(ns, filters).await
    }

    async fn create(&self, ns: &Namespace, container: Container) -> Result<Container> {
        let created = self.store.create(ns, container).await?;
        let event = ev::ContainerCreate {
            id: created.id.clone(),
            image: created.image.clone(),
            runtime: Some(ev::container_create::Runtime {
                name: created.runtime.name.clone(),
                options: created.runtime.options.clone().map(any_to_pb),
            }),
        };
        publish(
            &self.exchange,
            ns,
            "/containers/create",
            "containerd.events.ContainerCreate",
            &event,
        );
        Ok(created)
    }

    async fn update(
        &self,
        ns: &Namespace,
        container: Container,
        fieldpaths: &[String],
    ) -> Result<Container> {
        let updated = self.store.update(ns, container, fieldpaths).await?;
        let event = ev::ContainerUpdate {
            id: updated.id.clone(),
            image: updated.image.clone(),
            labels: updated.labels.clone().into_iter().collect(),
            snapshot_key: updated.snapshot_key.clone(),
        };
        publish(
            &self.exchange,
            ns,
            "/containers/update",
            "containerd.events.ContainerUpdate",
            &event,
        );
        Ok(updated)
    }

    async fn delete(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.store.delete(ns, id).await?;
        let event = ev::ContainerDelete { id: id.to_owned() };
        publish(
            &self.exchange,
            ns,
            "/containers/delete",
            "containerd.events.ContainerDelete",
            &event,
        );
        Ok(())
    }
}
