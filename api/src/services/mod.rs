//! gRPC service adapters: a `crated-core` trait object in, a tonic service out.
//!
//! Each adapter validates its request, calls the store, and maps errors with
//! [`crate::to_grpc`]; it holds no state of its own.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
