//! The one list of built-in plugins, in registration order.
//!
//! Adding a plugin means adding it here; nothing registers itself.

use std::sync::Arc;

use crated_core::Error;

use crate::plugin::{types, InitContext, InitError, Registration};
use crate::services;

/// Every plugin this build of crated carries.
pub fn builtins() -> Vec<Registration> {
    vec![
        services::opt::REGISTRATION,
        services::events::EXCHANGE,
        services::content::STORE,
        services::snapshotters::NATIVE,
        services::snapshotters::OVERLAYFS,
        services::snapshotters::BTRFS,
        services::metadata::REGISTRATION,
        services::diff::WALKING,
        services::gc::REGISTRATION,
        services::tasks::RUNTIME,
        services::version::REGISTRATION,
        services::events::SERVICE,
        services::content::SERVICE,
        services::snapshotters::SERVICE,
        services::diff::SERVICE,
        services::namespaces::REGISTRATION,
        services::leases::REGISTRATION,
        services::images::REGISTRATION,
        services::containers::REGISTRATION,
        services::tasks::SERVICE,
        services::healthcheck::REGISTRATION,
        services::introspection::REGISTRATION,
    ]
}

/// `[proxy_plugins]` as registrations. The address of each goes into its
/// plugin's config section (see [`proxy_sections`]), so that the init, a
/// plain function, reads it like any other setting.
///
/// A `content` proxy becomes the blob store under the metadata layer in
/// place of the local one (the last content plugin to load wins, and proxies
/// load after builtins). A `snapshot` proxy is one more snapshotter, named
/// by its section, served by the snapshots service of whatever listens at
/// its address (another crated, or any containerd snapshotter plugin); an
/// unknown type fails with InvalidArgument.
pub fn proxies(config: &crate::config::Config) -> Vec<Registration> {
    config
        .proxy_plugins
        .iter()
        .map(|(name, proxy)| {
            // Registrations are 'static by design (they form a static list);
            // proxies are few and live as long as the daemon.
            let id: &'static str = Box::leak(name.clone().into_boxed_str());
            let (r#type, init): (&'static str, crate::plugin::InitFn) = match proxy.kind.as_str() {
                "content" => (types::CONTENT, init_content_proxy),
                "snapshot" => (types::SNAPSHOTTER, init_snapshot_proxy),
                _ => (PROXY_UNKNOWN, init_unknown),
            };
            Registration {
                r#type,
                id,
                requires: &[],
                config: None,
                init,
            }
        })
        .collect()
}

/// The config sections carrying each proxy's address.
pub fn proxy_sections(config: &crate::config::Config) -> Vec<(String, toml::Table)> {
    proxies(config)
        .into_iter()
        .zip(config.proxy_plugins.values())
        .map(|(reg, proxy)| {
            let mut table = toml::Table::new();
            table.insert("address".into(), toml::Value::String(proxy.address.clone()));
            (reg.uri(), table)
        })
        .collect()
}

const PROXY_UNKNOWN: &str = "io.containerd.proxy.v1";

#[derive(serde::Deserialize, Default)]
struct ProxyConfig {
    address: String,
}

fn init_content_proxy(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let address = proxy_address(ctx)?;
    let channel = crated_api::dial::lazy(&address);
    if ctx.handles.content_backend.is_some() {
        tracing::info!(
            proxy = ctx.registration.id,
            "content proxy replaces the local content store"
        );
    }
    ctx.handles.content_backend = Some(Arc::new(crated_api::proxy::content::ContentProxy::new(
        channel,
    )));
    Ok(())
}

fn proxy_address(ctx: &mut InitContext<'_>) -> Result<String, InitError> {
    let config: ProxyConfig = ctx.config()?;
    if config.address.is_empty() {
        return Err(Error::invalid_argument(format!(
            "proxy plugin {} has no address",
            ctx.registration.id
        ))
        .into());
    }
    ctx.exports.insert("address".into(), config.address.clone());
    Ok(config.address)
}

/// The namespace a proxied snapshotter is called in: the metadata layer
/// above it already puts the caller's namespace in every key.
const PROXY_SNAPSHOT_NAMESPACE: &str = crated_core::namespaces::DEFAULT;

fn init_snapshot_proxy(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    let address = proxy_address(ctx)?;
    let channel = crated_api::dial::lazy(&address);
    let id = ctx.registration.id;
    let ns = crated_core::Namespace::new(PROXY_SNAPSHOT_NAMESPACE)?;
    let proxy = crated_api::proxy::snapshots::SnapshotsProxy::new(channel, id, ns);
    ctx.handles
        .snapshotters
        .push((id.to_owned(), Arc::new(proxy)));
    Ok(())
}

fn init_unknown(ctx: &mut InitContext<'_>) -> Result<(), InitError> {
    Err(Error::invalid_argument(format!(
        "proxy plugin {:?} has an unsupported type: use \"snapshot\" or \"content\"",
        ctx.registration.id
    ))
    .into())
}
