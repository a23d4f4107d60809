#![doc = include_str!("../README.md")]

mod error;
mod graph;
pub mod plugin;
mod scheduler;

pub use error::Error;
pub use graph::{label_refs, tricolor, Node, ResourceKind};
pub use scheduler::{exports, Scheduler, Settings};
