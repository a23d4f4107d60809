#![doc = include_str!("../README.md")]

mod content;
mod db;
pub mod keys;
mod leases;
mod namespaces;
mod schema;

pub use content::{NamespacedContent, SharingPolicy};
pub use db::{Db, ReadTx, WriteTx, DIR_NAME};
pub use schema::SCHEMA_VERSION;
