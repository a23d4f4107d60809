//! `CheckpointContainer`: a running container dumped into the archive
//! Kubernetes' forensic checkpointing asks for (kubelet's `/checkpoint`
//! endpoint, `crictl checkpoint --export`), in the layout checkpointctl
//! reads ([`crated_client::checkpoint_archive`]). The container keeps
//! running. criu must be on the shim's `PATH` (runc runs it).

use std::os::unix::fs::DirBuilderExt as _;

use crated_client::checkpoint_archive::{checkpoint_archive, ArchiveInfo};
use crated_core::{Error, Result};

use crate::runtime::v1 as pb;
use crate::Cri;

impl Cri {
    /// `CheckpointContainer`.
    pub(crate) async fn checkpoint_container(
        &self,
        request: pb::CheckpointContainerRequest,
    ) -> Result<()> {
        if request.location.is_empty() {
            return Err(Error::invalid_argument(
                "the location of the checkpoint archive must be set",
            ));
        }
        let container = self.containers.get(&request.container_id)?;
        let _one_at_a_time = self.checkpointing.lock().await;
        let state = container.status().state();
        if state != pb::ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {:?} is {}: only a running container can be checkpointed",
                container.id,
                state.as_str_name()
            )));
        }
        let images = self.images.snapshot().await?;
        let image_name = images
            .get(&container.metadata.image_ref)
            .and_then(|image| image.repo_tags.first().cloned())
            .unwrap_or_default();
        let asked = container.config.image.as_ref().map(|image| {
            if image.user_specified_image.is_empty() {
                image.image.clone()
            } else {
                image.user_specified_image.clone()
            }
        });
        let info = ArchiveInfo {
            name: container
                .config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            image: asked.unwrap_or_default(),
            image_name,
            image_ref: container.metadata.image_ref.clone(),
        };
        // criu's images and work files, beside the container's status;
        // gone once the archive is written (or not).
        let scratch = self.container_root(&container.id).join(format!(
            "checkpoint-{}",
            crated_core::identifiers::unique_part()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&scratch)
            .map_err(|e| Error::io(format!("create {}", scratch.display()), e))?;
        // The task is paused for the dump; the call runs to its end
        // whatever its caller does (`Cri::to_completion`), so the resume
        // always comes.
        let location = std::path::Path::new(&request.location);
        let result =
            checkpoint_archive(&self.client, &container.id, location, &scratch, &info).await;
        let removed = {
            let scratch = scratch.clone();
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&scratch)).await
        };
        if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
            tracing::warn!(dir = %scratch.display(), error = %e, "remove checkpoint scratch");
        }
        result
    }
}
