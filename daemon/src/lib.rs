#![doc = include_str!("../README.md")]

pub mod builtins;
pub mod config;
pub mod logging;
pub mod server;
pub mod socket;
