//! The namespaces service: the store, publishing `/namespaces/*` in the
//! caller's namespace as containerd does.

use std::collections::BTreeMap;
use std::sync::Arc;

use crated_api::containerd::events as ev;
use crated_core::events::Exchange;
use crated_core::namespaces::{NamespaceInfo, NamespaceService, NamespaceStore};
use crated_core::{Namespace, Result};

use crate::events::publish;

/// Namespaces, with their events.
pub struct Namespaces {
    store: Arc<dyn NamespaceStore>,
    exchange: Exchange,
}

impl Namespaces {
    /// `store` publishing to `exchange`.
    pub fn new(store: Arc<dyn NamespaceStore>, exchange: Exchange) -> Self {
        Self { store, exchange }
    }

    fn publish<M: prost::Message>(
        &self,
        caller: Option<&Namespace>,
        target: &Namespace,
        topic: &str,
        type_url: &str,
        event: &M,
    ) {
        publish(
            &self.exchange,
            caller.unwrap_or(target),
            topic,
            type_url,
            event,
        );
    }
}

#[async_trait::async_trait]
impl NamespaceService for Namespaces {
    async fn create(
        &self,
        caller: Option<&Namespace>,
        name: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        let info = self.store.create(name, labels).await?;
        let event = ev::NamespaceCreate {
            name: info.name.to_string(),
            labels: info.labels.clone().into_iter().collect(),
        };
        self.publish(
            caller,
            name,
            "/namespaces/create",
            "containerd.events.NamespaceCreate",
            &event,
        );
        Ok(info)
    }

    async fn get(&self, name: &Namespace) -> Result<NamespaceInfo> {
        match self.store.get(name).await {
            Err(err) if err.is_not_found() => Ok(NamespaceInfo {
                name: name.clone(),
                labels: BTreeMap::new(),
            }),
            other => other,
        }
    }

    async fn list(&self, filters: &[String]) -> Result<Vec<NamespaceInfo>> {
        self.store.list(filters).await
    }

    async fn update(
        &self,
        caller: Option<&Namespace>,
        info: NamespaceInfo,
        fieldpaths: &[String],
    ) -> Result<NamespaceInfo> {
        let info = self.store.update(info, fieldpaths).await?;
        let event = ev::NamespaceUpdate {
            name: info.name.to_string(),
            labels: info.labels.clone().into_iter().collect(),
        };
        self.publish(
            caller,
            &info.name,
            "/namespaces/update",
            "containerd.events.NamespaceUpdate",
            &event,
        );
        Ok(info)
    }

    async fn delete(&self, caller: Option<&Namespace>, name: &Namespace) -> Result<()> {
        self.store.delete(name).await?;
        let event = ev::NamespaceDelete {
            name: name.to_string(),
        };
        self.publish(
            caller,
            name,
            "/namespaces/delete",
            "containerd.events.NamespaceDelete",
            &event,
        );
        Ok(())
    }
}
