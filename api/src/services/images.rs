//! `containerd.services.images.v1.Images` over an [`ImageStore`]: a
//! translation only (events and `sync` deletes are the service layer's).

use std::sync::Arc;

use crated_core::digest::Digest;
use crated_core::images::{Image, ImageStore};
use crated_core::Result;
use tonic::{Request, Response, Status};

use crate::containerd::services::images::v1 as pb;
use crate::convert::{descriptor_from_pb, descriptor_to_pb, to_system_time, to_timestamp};
use crate::metadata::grpc_namespace;
use crate::to_grpc;

/// The images service of a daemon.
pub struct Service {
    store: Arc<dyn ImageStore>,
}

impl Service {
    /// Serves `store`.
    pub fn new(store: Arc<dyn ImageStore>) -> Self {
        Self { store }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::images_server::ImagesServer<Self> {
        pb::images_server::ImagesServer::new(self)
    }
}

/// An image as its wire message.
pub fn to_pb(image: Image) -> pb::Image {
    pb::Image {
        name: image.name,
        labels: image.labels.into_iter().collect(),
        target: Some(descriptor_to_pb(image.target)),
        created_at: Some(to_timestamp(image.created_at)),
        updated_at: Some(to_timestamp(image.updated_at)),
    }
}

/// A wire image as the core type; its target must be valid.
pub fn from_pb(image: Option<pb::Image>) -> Result<Image> {
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
    let image = image.ok_or(crate::error::Error::Missing("image"))?;
    let now = std::time::SystemTime::now();
    let target = match image.target {
        Some(target) if needs_target => descriptor_from_pb(target)?,
        None if needs_target => {
            return Err(
                crated_core::Error::from(crate::error::Error::Missing("image Target"))
                    .context(format!("image {:?}", image.name)),
            )
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
        let request = request.into_inner();
        let epoch = request.source_date_epoch.as_ref().map(to_system_time);
        let image = from_pb(request.image).map_err(to_grpc)?;
        let created = self
            .store
            .create_dated(&ns, image, epoch)
            .await
            .map_err(to_grpc)?;
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
        let epoch = request.source_date_epoch.as_ref().map(to_system_time);
        let image = update_from_pb(request.image, &paths).map_err(to_grpc)?;
        let updated = self
            .store
            .update_dated(&ns, image, &paths, epoch)
            .await
            .map_err(to_grpc)?;
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
            .delete(&ns, &request.name, request.sync)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }
}
