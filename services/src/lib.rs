#![doc = include_str!("../README.md")]

pub mod containers;
pub mod content;
pub mod diff;
pub mod error;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod opt;
pub mod snapshots;
pub mod tasks;

use std::sync::Arc;

use crated_core::containers::ContainerStore;
use crated_core::content::ContentStore;
use crated_core::diff::Differ;
use crated_core::images::ImageStore;
use crated_core::introspection::Introspection;
use crated_core::leases::LeaseStore;
use crated_core::namespaces::NamespaceService;
use crated_core::snapshots::Snapshotters;
use crated_core::tasks::Tasks;
use crated_plugin::types::{self, services};
use crated_plugin::{Id, InitContext, Plugin, Registration};
use crated_runtime_v2::plugin::RUNTIME;

pub use containers::ContainerService;
pub use content::ContentService;
pub use diff::DiffService;
pub use images::ImageService;
pub use introspection::IntrospectionService;
pub use leases::LeaseService;
pub use namespaces::Namespaces;
pub use snapshots::SnapshotService;
pub use tasks::TaskService;

/// A service plugin `id`, built by `build` from the context.
fn service<T, F>(id: Id<T>, requires: &[&'static str], build: F) -> Registration
where
    T: Clone + Send + Sync + 'static,
    F: Fn(&InitContext) -> crated_core::Result<T> + Send + Sync + Copy + 'static,
{
    Registration::new(id.r#type(), id.id(), move |ctx| async move {
        Ok(Plugin::new(build(&ctx)?))
    })
    .requires(requires)
}

/// Every plugin of this crate: the events exchange, the opt directory and
/// the `io.containerd.service.v1` services.
pub fn registrations() -> Vec<Registration> {
    let metadata = types::METADATA.name();
    let event = types::EVENT.name();
    vec![
        events::registration(),
        opt::registration(),
        service(services::CONTENT, &[metadata, event], |ctx| {
            let store = ctx.get(types::METADATA)?.content;
            let service: Arc<dyn ContentStore> =
                Arc::new(ContentService::new(store, ctx.get(types::EVENT)?));
            Ok(service)
        }),
        service(
            services::IMAGES,
            &[metadata, event, types::GC.name()],
            |ctx| {
                let store = ctx.get(types::METADATA)?.images;
                let service: Arc<dyn ImageStore> = Arc::new(ImageService::new(
                    store,
                    ctx.get(types::EVENT)?,
                    ctx.get(types::GC)?,
                ));
                Ok(service)
            },
        ),
        service(services::CONTAINERS, &[metadata, event], |ctx| {
            let store = ctx.get(types::METADATA)?.containers;
            let service: Arc<dyn ContainerStore> =
                Arc::new(ContainerService::new(store, ctx.get(types::EVENT)?));
            Ok(service)
        }),
        service(services::LEASES, &[metadata, types::GC.name()], |ctx| {
            let store = ctx.get(types::METADATA)?.leases;
            let service: Arc<dyn LeaseStore> =
                Arc::new(LeaseService::new(store, ctx.get(types::GC)?));
            Ok(service)
        }),
        service(services::NAMESPACES, &[metadata, event], |ctx| {
            let store = ctx.get(types::METADATA)?.namespaces;
            let service: Arc<dyn NamespaceService> =
                Arc::new(Namespaces::new(store, ctx.get(types::EVENT)?));
            Ok(service)
        }),
        service(services::SNAPSHOTS, &[metadata, event], |ctx| {
            let snapshots = ctx.get(types::METADATA)?.snapshots;
            let service: Arc<dyn Snapshotters> =
                Arc::new(SnapshotService::new(snapshots, ctx.get(types::EVENT)?));
            Ok(service)
        }),
        service(services::DIFF, &[types::DIFFER.name()], |ctx| {
            let differs = ctx.get_all(types::DIFFER).into_iter().map(|(_, d)| d);
            let service: Arc<dyn Differ> = Arc::new(DiffService::new(differs.collect()));
            Ok(service)
        }),
        service(
            services::TASKS,
            &[RUNTIME.name(), metadata, event, types::INTERNAL],
            |ctx| {
                let metadata = ctx.get(types::METADATA)?;
                // Events of the containers the tasks service reads are not
                // its to publish: it reads the store directly.
                let service: Arc<dyn Tasks> = Arc::new(TaskService::new(
                    ctx.get(RUNTIME)?,
                    metadata.containers,
                    metadata.content,
                    ctx.get_by_id(types::WARNING)?,
                ));
                Ok(service)
            },
        ),
        // It reads the registry's record when asked, which is complete
        // once every plugin has loaded: its own init can come at any time.
        service(services::INTROSPECTION, &[types::INTERNAL], |ctx| {
            // Where containerd keeps the server UUID, kept across the
            // move of introspection into the service layer.
            let dir = ctx
                .daemon_root()
                .join("io.containerd.grpc.v1.introspection");
            let service: Arc<dyn Introspection> = Arc::new(IntrospectionService::new(
                ctx.plugin_infos(),
                &dir,
                ctx.get_by_id(types::WARNING)?,
            )?);
            Ok(service)
        }),
        Registration::new(
            types::WARNING.r#type(),
            types::WARNING.id(),
            |_ctx| async move { Ok(Plugin::new(crated_core::deprecation::Warnings::default())) },
        ),
    ]
}
