//! The leases service: the store, with `sync` deletes that wait for a
//! collection.

use std::collections::BTreeMap;
use std::sync::Arc;

use crated_core::gc::Trigger;
use crated_core::leases::{Lease, LeaseStore, Resource};
use crated_core::{Namespace, Result};

/// Leases.
pub struct LeaseService {
    store: Arc<dyn LeaseStore>,
    gc: Arc<dyn Trigger>,
}

impl LeaseService {
    /// `store`, whose `sync` deletes wait on `gc`.
    pub fn new(store: Arc<dyn LeaseStore>, gc: Arc<dyn Trigger>) -> Self {
        Self { store, gc }
    }
}

#[async_trait::async_trait]
impl LeaseStore for LeaseService {
    async fn create(
        &self,
        ns: &Namespace,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        self.store.create(ns, id, labels).await
    }

    async fn delete(&self, ns: &Namespace, id: &str, sync: bool) -> Result<()> {
        self.store.delete(ns, id, sync).await?;
        if sync {
            self.gc.schedule_and_wait().await?;
        }
        Ok(())
    }

    async fn create_transient(
        &self,
        ns: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        self.store.create_transient(ns, labels).await
    }

    async fn delete_transient(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.store.delete_transient(ns, id).await
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Lease>> {
        self.store.list(ns, filters).await
    }

    async fn add_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        self.store.add_resource(ns, id, resource).await
    }

    async fn delete_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        self.store.delete_resource(ns, id, resource).await
    }

    async fn list_resources(&self, ns: &Namespace, id: &str) -> Result<Vec<Resource>> {
        self.store.list_resources(ns, id).await
    }
}
