//! The built-in plugins: each module holds one plugin's registration and init.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod gc;
pub mod healthcheck;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod metadata;
pub mod namespaces;
pub mod opt;
pub mod snapshotters;
pub mod tasks;
pub mod version;
