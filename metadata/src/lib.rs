#![doc = include_str!("../README.md")]

mod db;
pub mod keys;
mod namespaces;
mod schema;

pub use db::{Db, ReadTx, WriteTx, DIR_NAME};
pub use schema::SCHEMA_VERSION;
