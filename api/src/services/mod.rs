//! gRPC service adapters: a `crated-core` trait object in, a tonic service
//! out.
//!
//! Each adapter turns a request into core types, calls the service, and
//! maps the result back with [`crate::to_grpc`] for errors. What the API
//! does — events, synchronous deletes, leases, checkpoints — belongs to the
//! service layer behind the trait, so in-process callers get it too.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
