//! Images: a name bound to a target descriptor (an index or manifest).

pub mod walk;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::descriptor::Descriptor;
use crate::{Namespace, Result};

/// An image record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image name, usually a normalised reference.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The root descriptor.
    pub target: Descriptor,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last updated.
    pub updated_at: SystemTime,
}

/// The store of images.
#[async_trait::async_trait]
pub trait ImageStore: Send + Sync {
    /// The image `name`; NotFound if absent.
    async fn get(&self, ns: &Namespace, name: &str) -> Result<Image>;
    /// Images matching any of `filters` (fields `name`, `target.digest`,
    /// `target.mediatype`, `labels.<k>`, `annotations.<k>`).
    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Image>>;
    /// Creates an image dated now; AlreadyExists if the name is taken.
    async fn create(&self, ns: &Namespace, image: Image) -> Result<Image> {
        self.create_dated(ns, image, None).await
    }
    /// Creates an image dated `epoch` (`SOURCE_DATE_EPOCH`), or now.
    async fn create_dated(
        &self,
        ns: &Namespace,
        image: Image,
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image>;
    /// Updates fields (`labels`, `labels.<k>`, `target`, `annotations`,
    /// `annotations.<k>`; none = replace labels and target), dated now.
    async fn update(&self, ns: &Namespace, image: Image, fieldpaths: &[String]) -> Result<Image> {
        self.update_dated(ns, image, fieldpaths, None).await
    }
    /// [`ImageStore::update`] dated `epoch` (`SOURCE_DATE_EPOCH`), or now.
    async fn update_dated(
        &self,
        ns: &Namespace,
        image: Image,
        fieldpaths: &[String],
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image>;
    /// Deletes an image; NotFound if absent. What only it referenced is
    /// left to the garbage collector; with `sync` the call returns once a
    /// collection has run (the service layer does that wait: a plain store
    /// ignores the flag).
    async fn delete(&self, ns: &Namespace, name: &str, sync: bool) -> Result<()>;
}
