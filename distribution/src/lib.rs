#![doc = include_str!("../README.md")]

pub mod auth;
pub mod error;
pub mod hosts;
pub mod mirrors;
mod registry;
pub mod tls;
mod transport;

pub use auth::{Credentials, CredentialsFn};
pub use error::Error;
pub use hosts::{HostOptions, RegistryHost};
pub use registry::{
    is_manifest_type, Fetched, Fetcher, Pushed, Pusher, Resolver, Verifier, ACCEPT_MANIFESTS,
    MAX_MANIFEST_SIZE,
};
pub use tls::TlsOptions;
pub use transport::{TransportOptions, USER_AGENT};
