//! The registry's own failures: a bad config section, a plugin a
//! dependent needs that did not load, an inconsistent registration list.

use crated_core::error::KindError;
use crated_core::Kind;

/// What went wrong loading plugins.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin's config section does not decode into its config type.
    #[error("invalid config for plugin {plugin}: {message}")]
    Config {
        /// `type.id` of the plugin.
        plugin: String,
        /// What TOML said, trimmed.
        message: String,
        /// The decoding error.
        #[source]
        source: toml::de::Error,
    },
    /// No plugin of a type a dependent asked for has loaded.
    #[error("no plugin of type {0} is loaded")]
    TypeNotLoaded(String),
    /// The plugin a dependent asked for did not load; `why` says how it
    /// ended (empty when it is not registered).
    #[error("plugin {plugin} is not loaded{why}")]
    NotLoaded {
        /// `type.id`.
        plugin: String,
        /// `: <reason>` of its skip or failure, or empty.
        why: String,
    },
    /// Registrations that require each other.
    #[error("plugin {0} is part of a requires cycle")]
    Cycle(String),
    /// One `type.id` registered twice.
    #[error("plugin {0} is registered twice")]
    Duplicate(String),
    /// A plugin of `required_plugins` is unknown or disabled.
    #[error("required plugin {0} is not registered or is disabled")]
    RequiredMissing(String),
    /// A plugin of `required_plugins` skipped itself.
    #[error("required plugin {plugin} was skipped: {reason}")]
    RequiredSkipped {
        /// `type.id`.
        plugin: String,
        /// Why it skipped.
        reason: String,
    },
    /// A plugin of `required_plugins` failed.
    #[error("required plugin {plugin} failed to load: {message}")]
    RequiredFailed {
        /// `type.id`.
        plugin: String,
        /// Its error.
        message: String,
    },
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Config { .. } => Kind::InvalidArgument,
            Error::TypeNotLoaded(_)
            | Error::NotLoaded { .. }
            | Error::Cycle(_)
            | Error::Duplicate(_)
            | Error::RequiredMissing(_)
            | Error::RequiredSkipped { .. }
            | Error::RequiredFailed { .. } => Kind::FailedPrecondition,
        }
    }
}
