//! The images service: the store, publishing `/images/*`, with `sync`
//! deletes that wait for a collection.

use std::sync::Arc;

use crated_api::containerd::services::images::v1 as ev;
use crated_core::events::Exchange;
use crated_core::gc::Trigger;
use crated_core::images::{Image, ImageStore};
use crated_core::{Namespace, Result};

use crate::events::publish;

/// Images, with their events.
pub struct ImageService {
    store: Arc<dyn ImageStore>,
    exchange: Exchange,
    gc: Arc<dyn Trigger>,
}

impl ImageService {
    /// `store` publishing to `exchange`; `sync` deletes wait on `gc`.
    pub fn new(store: Arc<dyn ImageStore>, exchange: Exchange, gc: Arc<dyn Trigger>) -> Self {
        Self {
            store,
            exchange,
            gc,
        }
    }
}

#[async_trait::async_trait]
impl ImageStore for ImageService {
    async fn get(&self, ns: &Namespace, name: &str) -> Result<Image> {
        self.store.get(ns, name).await
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Image>> {
        self.store.list(ns, filters).await
    }

    async fn create_dated(
        &self,
        ns: &Namespace,
        image: Image,
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image> {
        let created = self.store.create_dated(ns, image, epoch).await?;
        let event = ev::ImageCreate {
            name: created.name.clone(),
            labels: created.labels.clone().into_iter().collect(),
        };
        publish(
            &self.exchange,
            ns,
            "/images/create",
            "containerd.services.images.v1.ImageCreate",
            &event,
        );
        Ok(created)
    }

    async fn update_dated(
        &self,
        ns: &Namespace,
        image: Image,
        fieldpaths: &[String],
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image> {
        let updated = self
            .store
            .update_dated(ns, image, fieldpaths, epoch)
            .await?;
        let event = ev::ImageUpdate {
            name: updated.name.clone(),
            labels: updated.labels.clone().into_iter().collect(),
        };
        publish(
            &self.exchange,
            ns,
            "/images/update",
            "containerd.services.images.v1.ImageUpdate",
            &event,
        );
        Ok(updated)
    }

    async fn delete(&self, ns: &Namespace, name: &str, sync: bool) -> Result<()> {
        self.store.delete(ns, name, sync).await?;
        let event = ev::ImageDelete {
            name: name.to_owned(),
        };
        publish(
            &self.exchange,
            ns,
            "/images/delete",
            "containerd.services.images.v1.ImageDelete",
            &event,
        );
        if sync {
            self.gc.schedule_and_wait().await?;
        }
        Ok(())
    }
}
