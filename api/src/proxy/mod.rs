//! Proxies: `crated-core` traits implemented by calling a containerd API
//! server over gRPC. `ctr` uses them, and so do `[proxy_plugins]`.

pub mod content;
pub mod snapshots;
