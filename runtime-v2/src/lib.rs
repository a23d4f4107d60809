#![doc = include_str!("../README.md")]

pub mod binary;
pub mod bundle;
pub mod checkpoint;
pub mod error;
pub mod manager;
pub mod plugin;
pub mod shim;
pub mod timeouts;

pub use error::Error;
pub use manager::{CreateOptions, ManagerConfig, RestoreFrom, TaskManager};
pub use timeouts::Timeouts;
