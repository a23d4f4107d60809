//! What can go wrong reading CDI specs and injecting devices, each with its
//! containerd kind.

use std::path::PathBuf;

use crated_core::error::KindError;
use crated_core::Kind;

/// A CDI failure; `?` turns it into a [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device name that is not `vendor/class=name` with valid parts.
    #[error("invalid CDI device name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which part is wrong.
        reason: String,
    },
    /// A spec file that cannot be read.
    #[error("read CDI spec {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A spec file that is not a valid CDI spec.
    #[error("invalid CDI spec {path}: {reason}")]
    InvalidSpec {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        reason: String,
    },
    /// Devices no spec provides (or that two specs of the same priority
    /// both provide); `problems` lists the spec files that could not be
    /// used, which may be why.
    #[error("unresolvable CDI devices {}{}", devices.join(", "), problems_suffix(problems))]
    Unresolvable {
        /// The devices asked for and not found.
        devices: Vec<String>,
        /// Spec files skipped, with the reason, and devices in conflict.
        problems: Vec<String>,
    },
    /// A device's edits cannot be applied on this host (a device node that
    /// is missing or of the wrong type, an unknown hook name).
    #[error("inject CDI device {device}: {reason}")]
    Inject {
        /// The device.
        device: String,
        /// What failed.
        reason: String,
    },
}

fn problems_suffix(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" (CDI spec problems: {})", problems.join("; "))
    }
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::InvalidName { .. } => Kind::InvalidArgument,
            Error::Read { .. } | Error::InvalidSpec { .. } => Kind::FailedPrecondition,
            Error::Unresolvable { .. } => Kind::NotFound,
            Error::Inject { .. } => Kind::FailedPrecondition,
        }
    }
}

/// What this crate returns.
pub type Result<T> = std::result::Result<T, Error>;
