#![doc = include_str!("../README.md")]

mod containers;
mod content;
mod db;
mod error;
mod gc;
mod images;
mod inventory;
pub mod keys;
mod leases;
mod namespaces;
pub mod plugin;
mod records;
mod schema;
mod snapshots;

pub use content::{NamespacedContent, SharingPolicy};
pub use db::{Db, MutationCallback, ReadTx, WriteTx, DEFAULT_CACHE_CAPACITY, DIR_NAME};
pub use error::{Error, SnapshotId};
pub use gc::{GarbageCollector, INGEST_EXPIRY};
pub use inventory::{ContainerEntry, Inventory, SnapshotEntry};
pub use schema::SCHEMA_VERSION;
pub use snapshots::NamespacedSnapshots;
