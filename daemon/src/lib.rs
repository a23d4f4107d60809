#![doc = include_str!("../README.md")]

pub mod builtins;
pub mod config;
mod grpc_serve;
pub mod logging;
pub mod memory;
pub mod server;
pub mod socket;
mod timing;
