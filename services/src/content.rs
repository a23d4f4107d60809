//! The content service: the namespaced store, publishing
//! `/content/delete`.

use std::sync::Arc;

use crated_api::containerd::events as ev;
use crated_core::content::{ContentStore, Info, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::events::Exchange;
use crated_core::{Namespace, Result};

use crate::events::publish;

/// Content, with its events.
pub struct ContentService {
    store: Arc<dyn ContentStore>,
    exchange: Exchange,
}

impl ContentService {
    /// `store` publishing to `exchange`.
    pub fn new(store: Arc<dyn ContentStore>, exchange: Exchange) -> Self {
        Self { store, exchange }
    }
}

#[async_trait::async_trait]
impl ContentStore for ContentService {
    async fn info(&self, ns: &Namespace, digest: &Digest) -> Result<Info> {
        self.store.info(ns, digest).await
    }

    async fn update(&self, ns: &Namespace, info: Info, fieldpaths: &[String]) -> Result<Info> {
        self.store.update(ns, info, fieldpaths).await
    }

    async fn walk(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Info>> {
        self.store.walk(ns, filters).await
    }

    async fn delete(&self, ns: &Namespace, digest: &Digest) -> Result<()> {
        self.store.delete(ns, digest).await?;
        let event = ev::ContentDelete {
            digest: digest.to_string(),
        };
        publish(
            &self.exchange,
            ns,
            "/content/delete",
            "containerd.events.ContentDelete",
            &event,
        );
        Ok(())
    }

    async fn reader_at(&self, ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        self.store.reader_at(ns, digest).await
    }

    async fn status(&self, ns: &Namespace, r#ref: &str) -> Result<Status> {
        self.store.status(ns, r#ref).await
    }

    async fn list_statuses(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Status>> {
        self.store.list_statuses(ns, filters).await
    }

    async fn abort(&self, ns: &Namespace, r#ref: &str) -> Result<()> {
        self.store.abort(ns, r#ref).await
    }

    async fn writer(&self, ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        self.store.writer(ns, options).await
    }
}
