//! The one list of built-in plugins, in registration order.
//!
//! Adding a plugin means adding it here; nothing registers itself.

use crate::plugin::Registration;
use crate::services;

/// Every plugin this build of crated carries.
pub fn builtins() -> Vec<Registration> {
    vec![
        services::opt::REGISTRATION,
        services::metadata::REGISTRATION,
        services::version::REGISTRATION,
        services::namespaces::REGISTRATION,
        services::healthcheck::REGISTRATION,
        services::introspection::REGISTRATION,
    ]
}

/// Registrations standing in for `[proxy_plugins]`, which need the content
/// and snapshot services that have not landed yet: each fails its init with
/// NotImplemented naming itself, so `ctr plugins ls` shows why; an unknown
/// proxy type fails with InvalidArgument.
pub fn proxies(config: &crate::config::Config) -> Vec<Registration> {
    const UNKNOWN: &str = "io.containerd.proxy.v1";
    config
        .proxy_plugins
        .iter()
        .map(|(name, proxy)| {
            // Registrations are 'static by design (they form a static list);
            // proxies are few and live as long as the daemon.
            let id: &'static str = Box::leak(name.clone().into_boxed_str());
            let r#type: &'static str = match proxy.kind.as_str() {
                "snapshot" => "io.containerd.snapshotter.v1",
                "content" => "io.containerd.content.v1",
                _ => UNKNOWN,
            };
            Registration {
                r#type,
                id,
                requires: &[],
                config: None,
                init: |ctx| {
                    let reg = ctx.registration;
                    Err(if reg.r#type == UNKNOWN {
                        crated_core::Error::invalid_argument(format!(
                            "proxy plugin {:?} has an unsupported type: use \"snapshot\" or \"content\"",
                            reg.id
                        ))
                    } else {
                        crated_core::Error::not_implemented(format!(
                            "proxy plugin {} is not implemented yet: the {} service it plugs into has not landed",
                            reg.uri(),
                            reg.r#type
                        ))
                    }
                    .into())
                },
            }
        })
        .collect()
}
