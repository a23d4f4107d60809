//! `io.containerd.grpc.v1 cri`: the CRI served on the daemon's socket, as
//! containerd serves it, over the service layer in process.

use std::sync::Arc;

use crated_api::plugins::{Server, GRPC};
use crated_client::{Client, Services};
use crated_plugin::types;
use crated_plugin::{Plugin, Registration};

use crate::config::Config;
use crate::runtime::v1::image_service_server::ImageServiceServer;
use crate::runtime::v1::runtime_service_server::RuntimeServiceServer;
use crate::Cri;

/// The plugin's registration.
pub fn registration() -> Registration {
    Registration::new(GRPC, "cri", |ctx| async move {
        let config: Config = ctx.config()?;
        let warnings = ctx.get_by_id(types::WARNING)?;
        for warning in config.deprecations() {
            tracing::warn!(id = warning.id(), "DEPRECATION: {}", warning.message());
            warnings.emit(warning);
        }
        let client = Client::new(Services::from_plugins(&ctx)?);
        let cri = Cri::new(client, config, ctx.root.clone(), ctx.state.clone())?;
        cri.start().await?;
        crate::streaming::serve(&cri).await?;
        crate::usage::spawn_refresh(&cri, cri.config.stats_collect_period()?);
        let server = Server::new(move |routes, limits| {
            routes
                .add_service(
                    RuntimeServiceServer::from_arc(Arc::clone(&cri))
                        .max_decoding_message_size(limits.max_recv)
                        .max_encoding_message_size(limits.max_send),
                )
                .add_service(
                    ImageServiceServer::from_arc(Arc::clone(&cri))
                        .max_decoding_message_size(limits.max_recv)
                        .max_encoding_message_size(limits.max_send),
                )
        });
        Ok(Plugin::new(server))
    })
    .requires(&[types::SERVICE, types::EVENT.name(), types::INTERNAL])
    .with_config::<Config>()
}
