//! Image records through the images service.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crated_core::descriptor::Descriptor;
use crated_core::images::Image;
use crated_core::Result;

use crate::{Client, Error};

/// The target of the image `name`; NotFound names the image.
pub async fn target(client: &Client, name: &str) -> Result<Descriptor> {
    let image = client
        .services()
        .images
        .get(client.namespace(), name)
        .await
        .map_err(|e| Error::Image {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
    Ok(image.target)
}

/// Creates the image record, or updates it to the new target: containerd's
/// `createImage`.
pub async fn put(
    client: &Client,
    name: &str,
    target: &Descriptor,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    match create(client, name, target, labels).await {
        Err(e) if e.is_already_exists() => client
            .services()
            .images
            .update(client.namespace(), record(name, target, labels), &[])
            .await
            .map(|_| ()),
        created => created,
    }
}

/// [`put`], leaving a record that already points at `target` with every
/// one of `labels` as it is: nothing written or published for a name that
/// would not change (a re-pull of an image that is there).
pub async fn put_if_changed(
    client: &Client,
    name: &str,
    target: &Descriptor,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    let images = &client.services().images;
    match images.get(client.namespace(), name).await {
        Ok(existing)
            if existing.target == *target && crate::carries_all(&existing.labels, labels) =>
        {
            Ok(())
        }
        Ok(_) => put(client, name, target, labels).await,
        Err(e) if e.is_not_found() => put(client, name, target, labels).await,
        Err(e) => Err(e),
    }
}

/// The image record `name` → `target`.
fn record(name: &str, target: &Descriptor, labels: &BTreeMap<String, String>) -> Image {
    let now = SystemTime::now();
    Image {
        name: name.to_owned(),
        labels: labels.clone(),
        target: target.clone(),
        created_at: now,
        updated_at: now,
    }
}

/// Creates the image record `name`; AlreadyExists (naming it) if there is
/// one: nothing is overwritten.
pub async fn create(
    client: &Client,
    name: &str,
    target: &Descriptor,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    client
        .services()
        .images
        .create(client.namespace(), record(name, target, labels))
        .await
        .map_err(|e| Error::Image {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
    Ok(())
}
