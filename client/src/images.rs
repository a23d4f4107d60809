//! Image records over the daemon's images service.

use std::collections::BTreeMap;

use crated_api::containerd::services::images::v1 as images;
use crated_api::from_grpc;
use crated_api::metadata::set_grpc_namespace;
use crated_api::services::images::{descriptor_from_pb, descriptor_to_pb};
use crated_core::descriptor::Descriptor;
use crated_core::{Error, Namespace, Result};
use tonic::transport::Channel;

/// The target of the image `name`; NotFound names the image.
pub async fn target(channel: &Channel, ns: &Namespace, name: &str) -> Result<Descriptor> {
    let mut client = images::images_client::ImagesClient::new(channel.clone());
    let mut request = tonic::Request::new(images::GetImageRequest {
        name: name.to_owned(),
    });
    set_grpc_namespace(&mut request, ns);
    let image = client
        .get(request)
        .await
        .map_err(|s| from_grpc(s).context(format!("image {name:?}")))?
        .into_inner()
        .image
        .ok_or_else(|| Error::not_found(format!("image {name:?}: not found")))?;
    let target = image
        .target
        .ok_or_else(|| Error::invalid_argument(format!("image {name:?} has no target")))?;
    descriptor_from_pb(target)
}

/// Creates the image record, or updates it to the new target: containerd's
/// `createImage`.
pub async fn put(
    channel: &Channel,
    ns: &Namespace,
    name: &str,
    target: &Descriptor,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    match create(channel, ns, name, target, labels).await {
        Err(e) if e.is_already_exists() => {
            let mut request = tonic::Request::new(images::UpdateImageRequest {
                image: Some(record(name, target, labels)),
                update_mask: None,
            });
            set_grpc_namespace(&mut request, ns);
            images::images_client::ImagesClient::new(channel.clone())
                .update(request)
                .await
                .map(|_| ())
                .map_err(from_grpc)
        }
        created => created,
    }
}

/// The image record `name` → `target`.
fn record(name: &str, target: &Descriptor, labels: &BTreeMap<String, String>) -> images::Image {
    images::Image {
        name: name.to_owned(),
        labels: labels.clone().into_iter().collect(),
        target: Some(descriptor_to_pb(target.clone())),
        ..Default::default()
    }
}

/// Creates the image record `name`; AlreadyExists (naming it) if there is
/// one: nothing is overwritten.
pub async fn create(
    channel: &Channel,
    ns: &Namespace,
    name: &str,
    target: &Descriptor,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    let mut client = images::images_client::ImagesClient::new(channel.clone());
    let mut request = tonic::Request::new(images::CreateImageRequest {
        image: Some(record(name, target, labels)),
    });
    set_grpc_namespace(&mut request, ns);
    client
        .create(request)
        .await
        .map(|_| ())
        .map_err(|s| from_grpc(s).context(format!("image {name:?}")))
}
