#![doc = include_str!("../README.md")]
// tonic handlers return `Result<_, tonic::Status>`.
#![allow(clippy::result_large_err)]

pub mod any;
pub mod archive;
pub mod config;
pub mod progress;
pub mod registry;
pub mod service;
pub mod streams;

use std::sync::Arc;

use crated_api::plugins::{Server, GRPC};
use crated_client::{Client, Services};
use crated_plugin::{types, Id, Plugin, Registration};

pub use config::Config;
pub use service::Service;
pub use streams::StreamManager;

/// `io.containerd.streaming.v1 manager`: the named streams.
pub const STREAMS: Id<Arc<StreamManager>> = Id::new("io.containerd.streaming.v1", "manager");

/// `io.containerd.transfer.v1 local`: the transfer configuration, which
/// the gRPC service transfers with.
pub const LOCAL: Id<Arc<Config>> = Id::new("io.containerd.transfer.v1", "local");

/// The plugins, as containerd 1.7 registers them: the stream manager, the
/// local transferrer (its configuration), and the two gRPC services.
pub fn registrations() -> Vec<Registration> {
    vec![
        Registration::new(STREAMS.r#type(), STREAMS.id(), |_ctx| async move {
            Ok(Plugin::new(StreamManager::new()))
        }),
        Registration::new(LOCAL.r#type(), LOCAL.id(), |ctx| async move {
            let config: Config = ctx.config()?;
            for unpack in &config.unpack_config {
                crated_core::platforms::parse(&unpack.platform).map_err(|e| {
                    e.context(format!("unpack_config platform {:?}", unpack.platform))
                })?;
                if !unpack.differ.is_empty() && unpack.differ != "walking" {
                    return Err(crated_core::Error::not_found(format!(
                        "diff plugin {:?} of unpack_config: crated has only \"walking\"",
                        unpack.differ
                    ))
                    .into());
                }
            }
            Ok(Plugin::new(Arc::new(config)))
        })
        .with_config::<Config>(),
        Registration::new(GRPC, "streaming", |ctx| async move {
            let streams = ctx.get_by_id(STREAMS)?;
            Ok(Plugin::new(Server::new(move |routes, limits| {
                routes.add_service(
                    streams::Service::new(Arc::clone(&streams))
                        .into_server()
                        .max_decoding_message_size(limits.max_recv)
                        .max_encoding_message_size(limits.max_send),
                )
            })))
        })
        .requires(&[STREAMS.r#type().name()]),
        Registration::new(GRPC, "transfer", |ctx| async move {
            let streams = ctx.get_by_id(STREAMS)?;
            let config = ctx.get_by_id(LOCAL)?;
            let client = Client::new(Services::from_plugins(&ctx)?);
            Ok(Plugin::new(Server::new(move |routes, limits| {
                routes.add_service(
                    Service::new(client.clone(), Arc::clone(&config), Arc::clone(&streams))
                        .into_server()
                        .max_decoding_message_size(limits.max_recv)
                        .max_encoding_message_size(limits.max_send),
                )
            })))
        })
        .requires(&[
            types::SERVICE,
            STREAMS.r#type().name(),
            LOCAL.r#type().name(),
        ]),
    ]
}
