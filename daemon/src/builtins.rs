//! The one list of built-in plugins, in registration order (init order
//! follows `requires`; among plugins of one type, this order).
//!
//! Each plugin crate exports its registration; snapshotters are gated by
//! Cargo features, and one compiled out is still listed, as skipped.

#[cfg(not(all(
    feature = "snapshotter-native",
    feature = "snapshotter-overlayfs",
    feature = "snapshotter-btrfs"
)))]
use crated_plugin::types;
use crated_plugin::Registration;

use crate::config::Config;

/// Every plugin this build of crated carries.
pub fn builtins() -> Vec<Registration> {
    let mut plugins = vec![crated_content_store::plugin::registration()];
    plugins.extend(snapshotters());
    plugins.extend([
        crated_metadata::plugin::registration(),
        crated_differ::plugin::registration(),
        crated_gc::plugin::registration(),
        crated_runtime_v2::plugin::registration(),
    ]);
    plugins.extend(crated_services::registrations());
    plugins.extend(crated_api::plugins::registrations());
    plugins.extend(crated_transfer::registrations());
    #[cfg(feature = "cri")]
    plugins.push(crated_cri::registration());
    #[cfg(not(feature = "cri"))]
    plugins.push(Registration::compiled_out(
        crated_api::plugins::GRPC.name(),
        "cri",
        "cri",
    ));
    plugins
}

fn snapshotters() -> Vec<Registration> {
    vec![
        #[cfg(feature = "snapshotter-native")]
        crated_snapshotter_native::registration(),
        #[cfg(not(feature = "snapshotter-native"))]
        Registration::compiled_out(types::SNAPSHOTTER.name(), "native", "snapshotter-native"),
        #[cfg(feature = "snapshotter-overlayfs")]
        crated_snapshotter_overlay::registration(),
        #[cfg(not(feature = "snapshotter-overlayfs"))]
        Registration::compiled_out(
            types::SNAPSHOTTER.name(),
            "overlayfs",
            "snapshotter-overlayfs",
        ),
        #[cfg(feature = "snapshotter-btrfs")]
        crated_snapshotter_btrfs::registration(),
        #[cfg(not(feature = "snapshotter-btrfs"))]
        Registration::compiled_out(types::SNAPSHOTTER.name(), "btrfs", "snapshotter-btrfs"),
    ]
}

/// `[proxy_plugins]` as registrations, after the builtins (a content proxy
/// takes the place of the local store).
pub fn proxies(config: &Config) -> Vec<Registration> {
    config
        .proxy_plugins
        .iter()
        .map(|(name, proxy)| crated_api::plugins::proxy(name, &proxy.kind, &proxy.address))
        .collect()
}
