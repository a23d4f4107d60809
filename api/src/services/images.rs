//! `containerd.services.images.v1.Images` over an [`ImageStore`].

use std::sync::Arc;

use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::events::Exchange;
use crated_core::gc::Trigger;
use crated_core::images::{Image, ImageStore};
use crated_core::{Error, Result};
use tonic::{Request, Response, Status};

use crate::containerd::services::images::v1 as pb;
use crate::containerd::types;
use crate::convert::{to_system_time, to_timestamp};
use crate::metadata::grpc_namespace;
use crate::services::events::{payload, publish};
use crate::to_grpc;

/// The images service of a daemon.
pub struct Service {
    store: Arc<dyn ImageStore>,
    exchange: Exchange,
    gc: Option<Arc<dyn Trigger>>,
}

impl Service {
    /// Serves `store`, publishing `/images/*` events to `exchange`.
    pub fn new(store: Arc<dyn ImageStore>, exchange: Exchange) -> Self {
        Self {
            store,
            exchange,
            gc: None,
        }
    }

    /// Lets a `sync` delete wait for a garbage collection, as containerd's
    /// does; without it `sync` only deletes.
    pub fn with_gc(mut self, gc: Arc<dyn Trigger>) -> Self {
        self.gc = Some(gc);
        self
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::images_server::ImagesServer<Self> {
        pb::images_server::ImagesServer::new(self)
    }
}

/// A descriptor as its wire message.
pub fn descriptor_to_pb(d: Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type,
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        annotations: d.annotations.into_iter().collect(),
    }
}

/// A wire descriptor as the core type; the digest must parse and the size
/// must not be negative.
pub fn descriptor_from_pb(d: types::Descriptor) -> Result<Descriptor> {
    Ok(Descriptor {
        digest: Digest::parse(&d.digest).map_err(|e| e.context("Target.Digest"))?,
        size: u64::try_from(d.size).map_err(|_| {
            Error::invalid_argument(format!("Target.Size {} must not be negative", d.size))
        })?,
        media_type: d.media_type,
        annotations: d.annotations.into_iter().collect(),
    })
}

fn to_pb(image: Image) -> pb::Image {
    pb::Image {
        name: image.name,
        labels: image.labels.into_iter().collect(),
        target: Some(descriptor_to_pb(image.target)),
        created_at: Some(to_timestamp(image.created_at)),
        updated_at: Some(to_timestamp(image.updated_at)),
    }
}

fn from_pb(image: Option<pb::Image>) -> Result<Image> {
    from_pb_with(image, true)
}

/// The image of an update. Clients fill in the fields the mask names and
/// leave the rest empty (containerd's Go client sends an empty target when
/// it only sets labels), so the target digest is checked only when the
/// update replaces the target.
fn update_from_pb(image: Option<pb::Image>, paths: &[String]) -> Result<Image> {
    let needs_target = paths.is_empty() || paths.iter().any(|p| p == "target");
    from_pb_with(image, needs_target)
}

/// A digest in place of one the update does not use; the store copies only
/// the fields the mask names, so it is never stored.
const UNUSED_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn from_pb_with(image: Option<pb::Image>, needs_target: bool) -> Result<Image> {
    let image = image.ok_or_else(|| Error::invalid_argument("image must be set"))?;
    let now = std::time::SystemTime::now();
    let target = match image.target {
        Some(target) if needs_target => descriptor_from_pb(target)?,
        None if needs_target => {
            return Err(Error::invalid_argument(format!(
                "Target of image {:?} must be set",
                image.name
            )))
        }
        target => {
            let mut target = target.unwrap_or_default();
            if Digest::parse(&target.digest).is_err() {
                UNUSED_DIGEST.clone_into(&mut target.digest);
            }
            target.size = target.size.max(0);
            descriptor_from_pb(target)?
        }
    };
    Ok(Image {
        target,
        name: image.name,
        labels: image.labels.into_iter().collect(),
        created_at: image.created_at.as_ref().map(to_system_time).unwrap_or(now),
        updated_at: image.updated_at.as_ref().map(to_system_time).unwrap_or(now),
    })
}

#[tonic::async_trait]
impl pb::images_server::Images for Service {
    async fn get(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let image = self
            .store
            .get(&ns, &request.get_ref().name)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::GetImageResponse {
            image: Some(to_pb(image)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let images = self
            .store
            .list(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.into_iter().map(to_pb).collect(),
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateImageRequest>,
    ) -> Result<Response<pb::CreateImageResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let image = from_pb(request.into_inner().image).map_err(to_grpc)?;
        let created = self.store.create(&ns, image).await.map_err(to_grpc)?;
        let event = pb::ImageCreate {
            name: created.name.clone(),
            labels: created.labels.clone().into_iter().collect(),
        };
        publish(
            &self.exchange,
            &ns,
            "/images/create",
            payload("containerd.services.images.v1.ImageCreate", &event),
        );
        Ok(Response::new(pb::CreateImageResponse {
            image: Some(to_pb(created)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateImageRequest>,
    ) -> Result<Response<pb::UpdateImageResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let image = update_from_pb(request.image, &paths).map_err(to_grpc)?;
        let updated = self
            .store
            .update(&ns, image, &paths)
            .await
            .map_err(to_grpc)?;
        let event = pb::ImageUpdate {
            name: updated.name.clone(),
            labels: updated.labels.clone().into_iter().collect(),
        };
        publish(
            &self.exchange,
            &ns,
            "/images/update",
            payload("containerd.services.images.v1.ImageUpdate", &event),
        );
        Ok(Response::new(pb::UpdateImageResponse {
            image: Some(to_pb(updated)),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        self.store
            .delete(&ns, &request.name)
            .await
            .map_err(to_grpc)?;
        let event = pb::ImageDelete { name: request.name };
        publish(
            &self.exchange,
            &ns,
            "/images/delete",
            payload("containerd.services.images.v1.ImageDelete", &event),
        );
        if let Some(gc) = self.gc.as_ref().filter(|_| request.sync) {
            gc.schedule_and_wait().await.map_err(to_grpc)?;
        }
        Ok(Response::new(()))
    }
}
