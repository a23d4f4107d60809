//! The built-in plugins: each module holds one plugin's registration and init.

pub mod healthcheck;
pub mod introspection;
pub mod metadata;
pub mod namespaces;
pub mod opt;
pub mod version;
