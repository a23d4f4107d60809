#![doc = include_str!("../README.md")]

pub mod allocator;
pub mod base64;
pub mod blocking;
pub mod checkpoint;
pub mod child;
pub mod containers;
pub mod content;
pub mod deprecation;
pub mod descriptor;
pub mod diff;
pub mod digest;
pub mod duration;
pub mod error;
pub mod events;
pub mod filters;
pub mod fs;
pub mod gc;
pub mod identifiers;
pub mod images;
pub mod introspection;
pub mod kernel;
pub mod labels;
pub mod leases;
pub mod mount;
pub mod namespaces;
pub mod platforms;
pub mod reference;
pub mod signals;
pub mod snapshots;
pub mod tasks;

pub use error::{Error, Kind, Result};
pub use namespaces::Namespace;
