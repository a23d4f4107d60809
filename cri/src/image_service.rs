//! `runtime.v1.ImageService` over [`Images`](crate::images::Images).

use crated_api::to_grpc;
use crated_core::Error;
use tonic::{Request, Response, Status};

use crate::batch::{self, Replies};
use crate::images::{Auth, CriImage};
use crate::runtime::v1 as pb;
use crate::runtime::v1::image_service_server::ImageService;
use crate::Cri;

/// An image as the CRI reports it.
fn to_pb(image: CriImage) -> pb::Image {
    let (uid, username) = image.uid_or_username();
    pb::Image {
        spec: Some(pb::ImageSpec {
            image: image.id.clone(),
            ..pb::ImageSpec::default()
        }),
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        uid: uid.map(|value| pb::Int64Value { value }),
        username,
        pinned: image.pinned,
    }
}

/// The sandbox annotation naming the runtime handler a pull is for
/// (containerd 1.7's experimental per-runtime snapshotters).
const RUNTIME_HANDLER_ANNOTATION: &str = "io.containerd.cri.runtime-handler";

fn image_name(spec: Option<pb::ImageSpec>) -> Result<String, Status> {
    spec.map(|s| s.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| to_grpc(Error::invalid_argument("image must be set")))
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let images = self.list_images(request.into_inner().filter).await?;
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    type StreamImagesStream = Replies<pb::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<pb::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.list_images(request.into_inner().filter).await?;
        Ok(Response::new(batch::stream(images, |images| {
            pb::StreamImagesResponse { images }
        })))
    }

    async fn image_status(
        &self,
        request: Request<pb::ImageStatusRequest>,
    ) -> Result<Response<pb::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image)?;
        // An image that is not there is an empty answer, not an error.
        let Some(image) = self.images.get(&name).await.map_err(to_grpc)? else {
            return Ok(Response::new(pb::ImageStatusResponse::default()));
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let config: serde_json::Value =
                serde_json::from_slice(&image.config).unwrap_or(serde_json::Value::Null);
            let verbose = serde_json::json!({
                "chainID": image.chain_id,
                "imageSpec": config,
            });
            info.insert("info".to_owned(), verbose.to_string());
        }
        Ok(Response::new(pb::ImageStatusResponse {
            image: Some(to_pb(image)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<pb::PullImageRequest>,
    ) -> Result<Response<pb::PullImageResponse>, Status> {
        let request = request.into_inner();
        // The snapshotter of the runtime the image is for (cri-api's
        // `runtime_handler`, or containerd 1.7's sandbox annotation): a
        // runtime of its own snapshotter needs the image unpacked there.
        let handler = request
            .image
            .as_ref()
            .map(|i| i.runtime_handler.clone())
            .filter(|h| !h.is_empty())
            .or_else(|| {
                request
                    .sandbox_config
                    .as_ref()
                    .and_then(|c| c.annotations.get(RUNTIME_HANDLER_ANNOTATION).cloned())
            })
            .unwrap_or_default();
        if !handler.is_empty() {
            self.handler_config(&handler).map_err(to_grpc)?;
        }
        let snapshotter = self.snapshotter_for(&handler).to_owned();
        let name = image_name(request.image)?;
        let auth = request.auth.map(|a| Auth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let pinned = self.is_sandbox_image(&name);
        let image = self
            .images
            .pull(&name, auth, pinned, &snapshotter)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::PullImageResponse {
            image_ref: image.id,
        }))
    }

    async fn remove_image(
        &self,
        request: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let name = image_name(request.into_inner().image)?;
        self.images.remove(&name).await.map_err(to_grpc)?;
        Ok(Response::new(pb::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<pb::ImageFsInfoRequest>,
    ) -> Result<Response<pb::ImageFsInfoResponse>, Status> {
        let usage = self.image_fs_usage().await.map_err(to_grpc)?;
        Ok(Response::new(pb::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        }))
    }
}

impl Cri {
    async fn list_images(&self, filter: Option<pb::ImageFilter>) -> Result<Vec<pb::Image>, Status> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|i| !i.is_empty());
        let images = match wanted {
            Some(name) => self
                .images
                .get(&name)
                .await
                .map_err(to_grpc)?
                .into_iter()
                .collect(),
            None => self.images.list().await.map_err(to_grpc)?,
        };
        Ok(images.into_iter().map(to_pb).collect())
    }
}
