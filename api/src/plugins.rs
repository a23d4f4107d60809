//! The `io.containerd.grpc.v1` plugins — each serves one service of the
//! service layer over gRPC (and, for events, ttrpc) — and the
//! `[proxy_plugins]` that put a remote content store or snapshotter in
//! place of a local one.

use std::collections::HashMap;
use std::sync::Arc;

use crated_core::content::ContentStore;
use crated_core::events::Events;
use crated_core::snapshots::Snapshotter;
use crated_core::{Error, Namespace};
use crated_plugin::types::{self, services as handles};
use crated_plugin::{InitContext, InitError, Plugin, Registration, Type};

use crate::containerd::services::events::ttrpc::v1::events_ttrpc;
use crate::services;

/// Message size limits of the gRPC server (`[grpc] max_*_message_size`).
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Largest message accepted.
    pub max_recv: usize,
    /// Largest message sent.
    pub max_send: usize,
}

type AddRoutes =
    Arc<dyn Fn(tonic::service::Routes, GrpcLimits) -> tonic::service::Routes + Send + Sync>;
type TtrpcServices = Arc<dyn Fn() -> HashMap<String, ttrpc::r#async::Service> + Send + Sync>;

/// What a gRPC plugin provides: services for the daemon's gRPC server and,
/// for some, its ttrpc server.
#[derive(Clone)]
pub struct Server {
    grpc: AddRoutes,
    ttrpc: Option<TtrpcServices>,
}

impl Server {
    /// A gRPC plugin's services, added to the server's routes by
    /// `add_routes` (with the server's message limits).
    pub fn new<F>(add_routes: F) -> Self
    where
        F: Fn(tonic::service::Routes, GrpcLimits) -> tonic::service::Routes + Send + Sync + 'static,
    {
        Self {
            grpc: Arc::new(add_routes),
            ttrpc: None,
        }
    }

    /// Adds this plugin's gRPC services to `routes`.
    pub fn add_routes(
        &self,
        routes: tonic::service::Routes,
        limits: GrpcLimits,
    ) -> tonic::service::Routes {
        (self.grpc)(routes, limits)
    }

    /// This plugin's ttrpc services, if it has any.
    pub fn ttrpc_services(&self) -> HashMap<String, ttrpc::r#async::Service> {
        self.ttrpc.as_ref().map(|make| make()).unwrap_or_default()
    }
}

/// gRPC services.
pub const GRPC: Type<Server> = Type::new(types::GRPC);

/// A gRPC server with the configured message limits.
macro_rules! limited {
    ($server:expr, $limits:expr) => {
        $server
            .max_decoding_message_size($limits.max_recv)
            .max_encoding_message_size($limits.max_send)
    };
}

/// A gRPC plugin over the service `get` finds, served by `serve`.
fn grpc_plugin<S, F>(id: &'static str, requires: &[&'static str], serve: F) -> Registration
where
    S: IntoRoutes + Clone + Send + Sync + 'static,
    F: Fn(&InitContext) -> Result<S, Error> + Send + Sync + Copy + 'static,
{
    Registration::new(GRPC, id, move |ctx| async move {
        let service = serve(&ctx)?;
        Ok(Plugin::new(Server {
            grpc: Arc::new(move |routes, limits| service.clone().into_routes(routes, limits)),
            ttrpc: None,
        }))
    })
    .requires(requires)
}

/// A service that mounts itself on the gRPC routes.
trait IntoRoutes {
    fn into_routes(
        self,
        routes: tonic::service::Routes,
        limits: GrpcLimits,
    ) -> tonic::service::Routes;
}

/// Adapters are rebuilt from their service handle for each mount: they
/// hold nothing but it.
struct Handle<T: ?Sized>(Arc<T>);

impl<T: ?Sized> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl IntoRoutes for Handle<dyn crated_core::images::ImageStore> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::images::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::containers::ContainerStore> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::containers::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn ContentStore> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::content::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::leases::LeaseStore> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::leases::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::namespaces::NamespaceService> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::namespaces::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::snapshots::Snapshotters> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::snapshots::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::diff::Differ> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::diff::Service::new(self.0).into_server(),
            l
        ))
    }
}

impl IntoRoutes for Handle<dyn crated_core::tasks::Tasks> {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        routes.add_service(limited!(
            services::tasks::Service::new(self.0).into_server(),
            l
        ))
    }
}

/// Introspection serves two gRPC services: introspection and version.
#[derive(Clone)]
struct IntrospectionRoutes {
    service: services::introspection::Service,
    introspection: bool,
    version: bool,
}

impl IntoRoutes for IntrospectionRoutes {
    fn into_routes(self, routes: tonic::service::Routes, l: GrpcLimits) -> tonic::service::Routes {
        let mut routes = routes;
        if self.introspection {
            routes = routes.add_service(limited!(self.service.clone().into_server(), l));
        }
        if self.version {
            routes = routes.add_service(limited!(self.service.into_version_server(), l));
        }
        routes
    }
}

/// Health, as `grpc_health_probe` and Kubernetes ask it.
#[derive(Clone)]
struct Health;

impl IntoRoutes for Health {
    fn into_routes(self, routes: tonic::service::Routes, _: GrpcLimits) -> tonic::service::Routes {
        // The reporter starts with the server-wide service ("") SERVING.
        let (_reporter, service) = tonic_health::server::health_reporter();
        routes.add_service(service)
    }
}

/// Every gRPC plugin, with containerd's ids.
pub fn registrations() -> Vec<Registration> {
    vec![
        grpc_plugin("version", &[types::SERVICE], |ctx| {
            Ok(IntrospectionRoutes {
                service: services::introspection::Service::new(
                    ctx.get_by_id(handles::INTROSPECTION)?,
                ),
                introspection: false,
                version: true,
            })
        }),
        events_plugin(),
        grpc_plugin("content", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::CONTENT)?))
        }),
        grpc_plugin("snapshots", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::SNAPSHOTS)?))
        }),
        grpc_plugin("diff", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::DIFF)?))
        }),
        grpc_plugin("namespaces", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::NAMESPACES)?))
        }),
        grpc_plugin("leases", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::LEASES)?))
        }),
        grpc_plugin("images", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::IMAGES)?))
        }),
        grpc_plugin("containers", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::CONTAINERS)?))
        }),
        grpc_plugin("tasks", &[types::SERVICE], |ctx| {
            Ok(Handle(ctx.get_by_id(handles::TASKS)?))
        }),
        grpc_plugin("healthcheck", &[], |_| Ok(Health)),
        // Last, as containerd's, so that it lists every plugin.
        grpc_plugin("introspection", &["*"], |ctx| {
            Ok(IntrospectionRoutes {
                service: services::introspection::Service::new(
                    ctx.get_by_id(handles::INTROSPECTION)?,
                ),
                introspection: true,
                version: false,
            })
        }),
    ]
}

/// `io.containerd.grpc.v1 events`: the exchange over gRPC (subscribe,
/// publish, forward) and over ttrpc (forward, for shims).
fn events_plugin() -> Registration {
    Registration::new(GRPC, "events", |ctx| async move {
        let events: Arc<dyn Events> = Arc::new(ctx.get(types::EVENT)?);
        let service = services::events::Service::new(events);
        let ttrpc_service = service.clone();
        Ok(Plugin::new(Server {
            grpc: Arc::new(move |routes, limits| {
                routes.add_service(limited!(service.clone().into_server(), limits))
            }),
            ttrpc: Some(Arc::new(move || {
                events_ttrpc::create_events(Arc::new(ttrpc_service.clone()))
            })),
        }))
    })
    .requires(&[types::EVENT.name()])
}

/// `[proxy_plugins]` entry `name`: a `content` proxy becomes the blob store
/// under the metadata layer in place of the local one (the last content
/// plugin to load wins, and proxies are listed after the builtins); a
/// `snapshot` proxy is one more snapshotter, named by its section, served
/// by whatever speaks containerd's snapshots service at `address`. Another
/// type fails with InvalidArgument.
pub fn proxy(name: &str, r#type: &str, address: &str) -> Registration {
    let address = address.to_owned();
    match r#type {
        "content" => Registration::new(types::CONTENT, name, move |ctx| {
            let address = address.clone();
            async move {
                check_address(&ctx, &address)?;
                tracing::info!(
                    proxy = ctx.id(),
                    "content proxy replaces the local content store"
                );
                let channel = crate::dial::lazy(&address);
                let store: Arc<dyn ContentStore> =
                    Arc::new(crate::proxy::content::ContentProxy::new(channel));
                Ok(Plugin::new(store).export("address", &address))
            }
        })
        .requires(&[types::CONTENT.name()]),
        "snapshot" => Registration::new(types::SNAPSHOTTER, name, move |ctx| {
            let address = address.clone();
            async move {
                check_address(&ctx, &address)?;
                let channel = crate::dial::lazy(&address);
                // The metadata layer above already puts the caller's
                // namespace in every key.
                let ns = Namespace::default_namespace();
                let snapshotter: Arc<dyn Snapshotter> = Arc::new(
                    crate::proxy::snapshots::SnapshotsProxy::new(channel, ctx.id(), ns),
                );
                Ok(Plugin::new(snapshotter).export("address", &address))
            }
        }),
        other => {
            let other = other.to_owned();
            Registration::new(
                Type::<()>::new("io.containerd.proxy.v1"),
                name,
                move |ctx| {
                    let other = other.clone();
                    async move {
                        Err::<Plugin<()>, _>(InitError::Failed(Error::invalid_argument(format!(
                        "proxy plugin {:?} has an unsupported type {other:?}: use \"snapshot\" or \"content\"",
                        ctx.id()
                    ))))
                    }
                },
            )
        }
    }
}

fn check_address(ctx: &InitContext, address: &str) -> Result<(), InitError> {
    if address.is_empty() {
        return Err(
            Error::invalid_argument(format!("proxy plugin {} has no address", ctx.id())).into(),
        );
    }
    Ok(())
}
