//! [`ImageStore`] over containerd's gRPC images service.

use crated_core::images::{Image, ImageStore};
use crated_core::{Namespace, Result};
use tonic::transport::Channel;

use super::{request, unlimited};
use crate::containerd::services::images::v1 as pb;
use crate::error::Error as WireError;
use crate::from_grpc;
use crate::services::images::{from_pb, to_pb};

/// The images of a remote daemon.
#[derive(Clone)]
pub struct ImagesProxy {
    client: pb::images_client::ImagesClient<Channel>,
}

impl ImagesProxy {
    /// Calls the images service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: unlimited!(pb::images_client::ImagesClient::new(channel)),
        }
    }
}

fn image(image: Option<pb::Image>) -> Result<Image> {
    from_pb(image).map_err(|source| {
        WireError::BadReply {
            what: "image",
            source,
        }
        .into()
    })
}

#[async_trait::async_trait]
impl ImageStore for ImagesProxy {
    async fn get(&self, ns: &Namespace, name: &str) -> Result<Image> {
        let req = pb::GetImageRequest {
            name: name.to_owned(),
        };
        let reply = self.client.clone().get(request(Some(ns), None, req)?).await;
        image(reply.map_err(from_grpc)?.into_inner().image)
    }

    async fn list(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Image>> {
        let req = pb::ListImagesRequest {
            filters: filters.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .list(request(Some(ns), None, req)?)
            .await;
        reply
            .map_err(from_grpc)?
            .into_inner()
            .images
            .into_iter()
            .map(|i| image(Some(i)))
            .collect()
    }

    async fn create_dated(
        &self,
        ns: &Namespace,
        created: Image,
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image> {
        let req = pb::CreateImageRequest {
            image: Some(to_pb(created)),
            source_date_epoch: epoch.map(crate::convert::to_timestamp),
        };
        let reply = self
            .client
            .clone()
            .create(request(Some(ns), None, req)?)
            .await;
        image(reply.map_err(from_grpc)?.into_inner().image)
    }

    async fn update_dated(
        &self,
        ns: &Namespace,
        updated: Image,
        fieldpaths: &[String],
        epoch: Option<std::time::SystemTime>,
    ) -> Result<Image> {
        let req = pb::UpdateImageRequest {
            image: Some(to_pb(updated)),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
            source_date_epoch: epoch.map(crate::convert::to_timestamp),
        };
        let reply = self
            .client
            .clone()
            .update(request(Some(ns), None, req)?)
            .await;
        image(reply.map_err(from_grpc)?.into_inner().image)
    }

    async fn delete(&self, ns: &Namespace, name: &str, sync: bool) -> Result<()> {
        let req = pb::DeleteImageRequest {
            name: name.to_owned(),
            sync,
        };
        self.client
            .clone()
            .delete(request(Some(ns), None, req)?)
            .await
            .map_err(from_grpc)?;
        Ok(())
    }
}
