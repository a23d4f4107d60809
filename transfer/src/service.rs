//! `containerd.services.transfer.v1.Transfer`: one call moves an image
//! between a registry, the image store and an archive stream — pull,
//! push, tag, import and export, as containerd 1.7's local transferrer
//! (what `ctr images pull --local=false` and containerd 2's ctr use).

use std::collections::BTreeMap;
use std::sync::Arc;

use crated_api::containerd::services::transfer::v1 as pb;
use crated_api::containerd::types::transfer::{
    ImageExportStream, ImageImportStream, ImageStore, OciRegistry,
};
use crated_api::containerd::types::Platform as PbPlatform;
use crated_client::export::ExportOptions;
use crated_client::import::ImportOptions;
use crated_client::pull::PullOptions;
use crated_client::push::PushOptions;
use crated_client::{leases, Client};
use crated_core::descriptor::Descriptor;
use crated_core::platforms::{self, Matcher, Platform};
use crated_core::{Error, Namespace, Result};
use prost_types::Any;
use tonic::{Request, Response, Status};

use crate::config::{Config, DEFAULT_SNAPSHOTTER};
use crate::progress::Reporter;
use crate::registry::{self, describe};
use crate::streams::StreamManager;
use crate::{any, archive};

/// The transfer service over the in-process client.
pub struct Service {
    client: Client,
    config: Arc<Config>,
    streams: Arc<StreamManager>,
}

/// What a transfer's source or destination is.
enum Endpoint {
    Registry(OciRegistry),
    Store(ImageStore),
    Import(ImageImportStream),
    Export(ImageExportStream),
}

impl Endpoint {
    /// The endpoint an Any holds; NotImplemented for a kind crated does
    /// not know, which containerd answers the same way.
    fn decode(any: &Any) -> Result<Option<Self>> {
        Ok(Some(if any::is::<OciRegistry>(any) {
            Self::Registry(any::unpack(any)?)
        } else if any::is::<ImageStore>(any) {
            Self::Store(any::unpack(any)?)
        } else if any::is::<ImageImportStream>(any) {
            Self::Import(any::unpack(any)?)
        } else if any::is::<ImageExportStream>(any) {
            Self::Export(any::unpack(any)?)
        } else {
            return Ok(None);
        }))
    }
}

impl Service {
    /// Transfers through `client`'s services, as `config` says, with
    /// side streams from `streams`.
    pub fn new(client: Client, config: Arc<Config>, streams: Arc<StreamManager>) -> Self {
        Self {
            client,
            config,
            streams,
        }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::transfer_server::TransferServer<Self> {
        pb::transfer_server::TransferServer::new(self)
    }

    /// Runs one transfer in `ns`.
    pub async fn transfer(&self, ns: Namespace, request: pb::TransferRequest) -> Result<()> {
        let source = request.source.unwrap_or_default();
        let destination = request.destination.unwrap_or_default();
        let unimplemented = || {
            Error::not_implemented(format!(
                "method Transfer not implemented for {} to {}",
                source.type_url, destination.type_url
            ))
        };
        let (Some(from), Some(to)) = (Endpoint::decode(&source)?, Endpoint::decode(&destination)?)
        else {
            return Err(unimplemented());
        };
        let progress_stream = request
            .options
            .map(|o| o.progress_stream)
            .filter(|id| !id.is_empty())
            .map(|id| self.streams.take(ns.as_str(), &id))
            .transpose()?;
        let progress = Reporter::new(progress_stream);
        let job = Job {
            client: self.client.with_namespace(ns),
            config: Arc::clone(&self.config),
            streams: Arc::clone(&self.streams),
            progress,
        };
        let result = match (from, to) {
            (Endpoint::Registry(registry), Endpoint::Store(store)) => {
                job.pull(registry, store).await
            }
            (Endpoint::Store(store), Endpoint::Registry(registry)) => {
                job.push(store, registry).await
            }
            (Endpoint::Store(from), Endpoint::Store(to)) => job.tag(from, to).await,
            (Endpoint::Import(stream), Endpoint::Store(store)) => job.import(stream, store).await,
            (Endpoint::Store(store), Endpoint::Export(stream)) => job.export(store, stream).await,
            _ => Err(unimplemented()),
        };
        job.progress.flush().await;
        result
    }
}

#[tonic::async_trait]
impl pb::transfer_server::Transfer for Service {
    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> std::result::Result<Response<()>, Status> {
        let ns = crated_api::metadata::grpc_namespace(&request).map_err(crated_api::to_grpc)?;
        Service::transfer(self, ns, request.into_inner())
            .await
            .map(Response::new)
            .map_err(crated_api::to_grpc)
    }
}

/// One transfer.
struct Job {
    client: Client,
    config: Arc<Config>,
    streams: Arc<StreamManager>,
    progress: Reporter,
}

impl Job {
    async fn resolver(&self, registry: &OciRegistry) -> Result<crated_distribution::Resolver> {
        let hosts_dir =
            (!self.config.config_path.is_empty()).then(|| self.config.config_path.clone().into());
        registry::resolver(
            registry,
            hosts_dir,
            &self.streams,
            self.client.namespace().as_str(),
        )
        .await
    }

    async fn pull(&self, registry: OciRegistry, store: ImageStore) -> Result<()> {
        let from = describe(&registry);
        refuse_unbuilt(&store)?;
        if store_names(&store, None).is_empty() {
            return Err(Error::not_found(format!(
                "no image name found for the pull from {from}"
            )));
        }
        let resolver = self.resolver(&registry).await?;
        let (matcher, all_platforms) = store_platforms(&store);
        let unpack = self.unpack_platform(&store.unpacks)?;
        let options = PullOptions {
            // Every platform is fetched; the one unpacked is the one asked.
            matcher: match &unpack {
                Some((_, platform)) if all_platforms => Matcher::only_strict(platform),
                _ => matcher,
            },
            all_platforms,
            max_concurrent_downloads: self.config.max_concurrent_downloads.max(1) as usize,
            snapshotter: unpack.as_ref().map(|(snapshotter, _)| snapshotter.clone()),
            labels: store.labels.clone().into_iter().collect(),
            // The whole image, as containerd's transfer fetches it.
            fetch_all_layers: true,
            record: false,
            ..PullOptions::default()
        };
        self.progress.status(format!("Resolving from {from}"));
        let blobs = self
            .progress
            .blobs(&registry.reference, "downloading")
            .on_resolved(format!("Pulling from {from}"));
        let lease = leases::Temporary::create(&self.client).await?;
        let pulled = crated_client::pull::pull_in_lease(
            &self.client,
            &resolver,
            &registry.reference,
            &options,
            blobs,
            lease.id(),
        )
        .await;
        let result = match pulled {
            Ok(pulled) => self.record(&store, &pulled.target).await,
            Err(err) => Err(err),
        };
        lease.release().await;
        result?;
        self.progress.status(format!("Completed pull from {from}"));
        Ok(())
    }

    /// Records the image `target` under the names `store` gives it, each
    /// created or moved to the target.
    async fn record(&self, store: &ImageStore, target: &Descriptor) -> Result<()> {
        let labels: BTreeMap<String, String> = store.labels.clone().into_iter().collect();
        for name in store_names(store, Some(target)) {
            crated_client::images::put(&self.client, &name, target, &labels).await?;
            self.progress.node("saved", &name);
        }
        Ok(())
    }

    /// The unpack of `asked` to make: the first asked platform the
    /// configuration allows, with the snapshotter it names (or the
    /// configured one when it names none, if that is the default). None:
    /// no unpack, as containerd skips what its configuration does not list.
    fn unpack_platform(
        &self,
        asked: &[crated_api::containerd::types::transfer::UnpackConfiguration],
    ) -> Result<Option<(String, Platform)>> {
        for unpack in asked {
            let Some(platform) = unpack.platform.as_ref().and_then(platform_from_pb) else {
                continue;
            };
            for configured in &self.config.unpack_config {
                let allowed = platforms::parse(&configured.platform).map_err(|e| {
                    e.context(format!(
                        "transfer unpack_config platform {:?}",
                        configured.platform
                    ))
                })?;
                let snapshotter_fits = unpack.snapshotter == configured.snapshotter
                    || (unpack.snapshotter.is_empty()
                        && configured.snapshotter == DEFAULT_SNAPSHOTTER);
                if snapshotter_fits && Matcher::only_strict(&allowed).matches(&platform) {
                    return Ok(Some((configured.snapshotter.clone(), platform)));
                }
            }
        }
        Ok(None)
    }

    async fn push(&self, store: ImageStore, registry: OciRegistry) -> Result<()> {
        let to = describe(&registry);
        let target = crated_client::images::target(&self.client, &store.name).await?;
        let resolver = self.resolver(&registry).await?;
        self.progress.status(format!("Pushing to {to}"));
        self.progress.node("pushing content", &store.name);
        let options = PushOptions {
            matcher: None,
            max_concurrent_uploads: self.config.max_concurrent_uploaded_layers.max(1) as usize,
        };
        crated_client::push::push(
            &self.client,
            &resolver,
            &registry.reference,
            &target,
            &options,
            Arc::new(self.progress.blobs(&store.name, "uploading")),
        )
        .await?;
        self.progress.node("pushed content", &store.name);
        self.progress.status(format!("Completed push to {to}"));
        Ok(())
    }

    async fn tag(&self, from: ImageStore, to: ImageStore) -> Result<()> {
        let target = crated_client::images::target(&self.client, &from.name).await?;
        if store_names(&to, Some(&target)).is_empty() {
            return Err(Error::not_found(format!(
                "no image name found to tag {:?} as",
                from.name
            )));
        }
        self.record(&to, &target).await
    }

    async fn import(&self, stream: ImageImportStream, store: ImageStore) -> Result<()> {
        refuse_unbuilt(&store)?;
        let input = archive::receive(
            self.streams
                .take(self.client.namespace().as_str(), &stream.stream)?,
        );
        let (matcher, all_platforms) = store_platforms(&store);
        let mut options = ImportOptions {
            index_name: (!store.name.is_empty()).then(|| store.name.clone()),
            all_platforms,
            matcher: matcher.clone(),
            compress_blobs: stream.force_compress,
            ..ImportOptions::default()
        };
        for reference in &store.extra_references {
            if !reference.is_prefix {
                return Err(Error::not_implemented(format!(
                    "an import named {:?} by an extra reference is not built yet: name it by a prefix",
                    reference.name
                )));
            }
            // An overwritable prefix is the generated `import-<date>`, which
            // names bare references only; another one also filters.
            options.base_name = (!reference.allow_overwrite).then(|| reference.name.clone());
            options.digests = reference.add_digest;
            options.skip_digest_for_named = reference.skip_named_digest;
        }
        let unpack = self.unpack_platform(&store.unpacks)?;
        self.progress.status("Importing");
        let imported =
            crated_client::import::import(&self.client, Box::new(input), &options).await?;
        let labels: BTreeMap<String, String> = store.labels.clone().into_iter().collect();
        for image in &imported {
            if !labels.is_empty() {
                crated_client::images::put(&self.client, &image.name, &image.target, &labels)
                    .await?;
            }
            if let Some((snapshotter, platform)) = &unpack {
                let node = crated_client::descriptor_node(&image.name, &image.target)?;
                let only = Matcher::only_strict(platform);
                crated_client::unpack(&self.client, &node, snapshotter, &only).await?;
            }
            self.progress.node("saved", &image.name);
        }
        self.progress.status("Completed import");
        Ok(())
    }

    async fn export(&self, store: ImageStore, stream: ImageExportStream) -> Result<()> {
        let mut names: Vec<String> = Vec::new();
        if !store.name.is_empty() {
            names.push(store.name.clone());
        }
        for reference in &store.extra_references {
            if reference.is_prefix {
                return Err(Error::not_implemented(
                    "prefix lookup on export not implemented",
                ));
            }
            names.push(reference.name.clone());
        }
        if names.is_empty() {
            return Err(Error::invalid_argument("an export names no image"));
        }
        let platforms: Vec<Platform> = stream
            .platforms
            .iter()
            .filter_map(platform_from_pb)
            .collect();
        let options = ExportOptions {
            matcher: if platforms.is_empty() {
                // The host's platform exactly, as containerd's exporter
                // (a pull of it fetched no other).
                Matcher::only_strict(&platforms::default_platform())
            } else {
                Matcher::ordered(platforms)
            },
            all_platforms: stream.all_platforms,
            skip_docker_manifest: stream.skip_compatibility_manifest,
            skip_non_distributable: stream.skip_non_distributable,
        };
        let output = self
            .streams
            .take(self.client.namespace().as_str(), &stream.stream)?;
        let (writer, sending) = archive::send(output);
        let exported = crated_client::export::export(&self.client, &names, writer, &options).await;
        let sent = sending.finish().await;
        exported?;
        sent
    }
}

/// The names an image-store destination records `target` under: its
/// name and its extra references, `@<digest>` added where asked (with no
/// target yet: the names it will have, for checking there are any).
fn store_names(store: &ImageStore, target: Option<&Descriptor>) -> Vec<String> {
    let mut names = Vec::new();
    if !store.name.is_empty() {
        names.push(store.name.clone());
    }
    for reference in store.extra_references.iter().filter(|r| !r.is_prefix) {
        match target {
            Some(target) if reference.add_digest => {
                names.push(format!("{}@{}", reference.name, target.digest));
            }
            _ => names.push(reference.name.clone()),
        }
    }
    names
}

/// The platforms an image-store destination keeps: those it lists, in
/// order, or every one when it lists none.
fn store_platforms(store: &ImageStore) -> (Matcher, bool) {
    let listed: Vec<Platform> = store
        .platforms
        .iter()
        .filter_map(platform_from_pb)
        .collect();
    if listed.is_empty() {
        (Matcher::all(), true)
    } else {
        (Matcher::ordered(listed), false)
    }
}

/// What an image store may ask that crated does not do yet.
fn refuse_unbuilt(store: &ImageStore) -> Result<()> {
    if store.all_metadata {
        return Err(Error::not_implemented(
            "fetching all manifests but one platform's content (all_metadata) is not built yet: list the platforms, or none for all",
        ));
    }
    if store.manifest_limit > 0 {
        return Err(Error::not_implemented(format!(
            "a manifest limit ({}) is not built yet",
            store.manifest_limit
        )));
    }
    Ok(())
}

/// A wire platform; none for one without an OS (containerd's "no
/// platform").
fn platform_from_pb(platform: &PbPlatform) -> Option<Platform> {
    (!platform.os.is_empty()).then(|| Platform::from(platform.clone()))
}
