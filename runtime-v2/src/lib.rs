#![doc = include_str!("../README.md")]
#![allow(clippy::result_large_err)]

pub mod binary;
pub mod bundle;
pub mod checkpoint;
pub mod manager;
pub mod service;
pub mod shim;

pub use manager::{CreateOptions, ManagerConfig, TaskManager};
