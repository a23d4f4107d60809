#![doc = include_str!("../README.md")]

mod context;
pub mod error;
mod registry;
pub mod types;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crated_core::Error;
use futures::future::BoxFuture;
use serde::Serialize;

pub use context::InitContext;
pub use crated_core::introspection::{PluginInfo, PluginStatus};
pub use registry::{load, order, LoadOptions, Registry};

/// A plugin type whose plugins provide values of type `T`.
///
/// The name is containerd's (`io.containerd.snapshotter.v1`); the type
/// parameter is what a dependent gets when it asks for such a plugin.
pub struct Type<T> {
    name: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T> Type<T> {
    /// The type named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _value: PhantomData,
        }
    }

    /// containerd's name of the type.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Type<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Type<T> {}

/// One plugin, by type and id, providing a `T`: for types whose plugins
/// provide different things (`io.containerd.internal.v1`,
/// `io.containerd.service.v1`).
pub struct Id<T> {
    r#type: Type<T>,
    id: &'static str,
}

impl<T> Id<T> {
    /// Plugin `id` of type `type_name`.
    pub const fn new(type_name: &'static str, id: &'static str) -> Self {
        Self {
            r#type: Type::new(type_name),
            id,
        }
    }

    /// Its type.
    pub const fn r#type(&self) -> Type<T> {
        self.r#type
    }

    /// Its id.
    pub const fn id(&self) -> &'static str {
        self.id
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Id<T> {}

/// Typed lookups of loaded plugins, during init ([`InitContext`]) or after
/// load ([`Registry`]).
pub trait Lookup {
    /// The value of the last loaded plugin of `type`.
    fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error>;
    /// The value of plugin `id`.
    fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error>;
}

impl Lookup for InitContext {
    fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error> {
        InitContext::get(self, r#type)
    }

    fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error> {
        InitContext::get_by_id(self, id)
    }
}

impl Lookup for Registry {
    fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error> {
        Registry::get(self, r#type)
    }

    fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error> {
        Registry::get_by_id(self, id)
    }
}

/// What a successful init returns: the value, what to report, and what to
/// do when the daemon stops.
pub struct Plugin<T> {
    value: T,
    exports: BTreeMap<String, String>,
    capabilities: Vec<String>,
    close: Option<CloseFn>,
}

type CloseFn = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

impl<T> Plugin<T> {
    /// A plugin providing `value`.
    pub fn new(value: T) -> Self {
        Self {
            value,
            exports: BTreeMap::new(),
            capabilities: Vec::new(),
            close: None,
        }
    }

    /// Reports `key = value` in introspection (a root, a path, a setting).
    #[must_use]
    pub fn export(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.exports.insert(key.into(), value.to_string());
        self
    }

    /// Announces a capability in introspection.
    #[must_use]
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Runs `close` when the daemon stops; plugins close in the reverse of
    /// their load order, so a plugin closes before what it required.
    #[must_use]
    pub fn on_close<F, Fut>(mut self, close: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.close = Some(Box::new(move || Box::pin(close())));
        self
    }
}

/// Why an init did not produce a plugin.
#[derive(Debug)]
pub enum InitError {
    /// The plugin does not apply here; it is listed as skipped with the
    /// reason.
    Skip(String),
    /// The plugin failed; it is listed as failed with the error.
    Failed(Error),
}

impl From<Error> for InitError {
    fn from(err: Error) -> Self {
        InitError::Failed(err)
    }
}

/// The value of a loaded plugin, its type erased.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// A loaded plugin's erased outcome.
pub(crate) struct Loaded {
    pub(crate) value: Value,
    pub(crate) exports: BTreeMap<String, String>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) close: Option<CloseFn>,
}

type InitFn =
    Arc<dyn Fn(InitContext) -> BoxFuture<'static, Result<Loaded, InitError>> + Send + Sync>;

/// A plugin the daemon may load.
#[derive(Clone)]
pub struct Registration {
    r#type: &'static str,
    id: String,
    requires: Vec<&'static str>,
    config: Option<fn() -> toml::Table>,
    init: InitFn,
}

impl Registration {
    /// Plugin `id` of type `type`, built by `init`.
    pub fn new<T, F, Fut>(r#type: Type<T>, id: impl Into<String>, init: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(InitContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Plugin<T>, InitError>> + Send + 'static,
    {
        let init = Arc::new(init);
        Self {
            r#type: r#type.name(),
            id: id.into(),
            requires: Vec::new(),
            config: None,
            init: Arc::new(move |ctx| {
                let init = Arc::clone(&init);
                Box::pin(async move {
                    let plugin = init(ctx).await?;
                    Ok(Loaded {
                        value: Arc::new(plugin.value),
                        exports: plugin.exports,
                        capabilities: plugin.capabilities,
                        close: plugin.close,
                    })
                })
            }),
        }
    }

    /// A plugin this build does not carry: listed as skipped, naming the
    /// Cargo feature that would build it in.
    pub fn compiled_out(
        r#type: &'static str,
        id: impl Into<String>,
        feature: &'static str,
    ) -> Self {
        Self {
            r#type,
            id: id.into(),
            requires: Vec::new(),
            config: None,
            init: Arc::new(move |_| {
                Box::pin(async move {
                    Err(InitError::Skip(format!(
                        "not compiled in: build crated with the {feature:?} feature"
                    )))
                })
            }),
        }
    }

    /// Plugin types that must be loaded first; `"*"` means every plugin
    /// that does not itself require `"*"`.
    #[must_use]
    pub fn requires(mut self, types: &[&'static str]) -> Self {
        self.requires.extend_from_slice(types);
        self
    }

    /// The plugin's config type: its default is printed by `crated config
    /// default` as the plugin's section.
    #[must_use]
    pub fn with_config<C: Serialize + Default>(mut self) -> Self {
        self.config = Some(config_table::<C>);
        self
    }

    /// containerd's plugin type.
    pub fn r#type(&self) -> &'static str {
        self.r#type
    }

    /// The plugin's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The types it requires.
    pub fn required(&self) -> &[&'static str] {
        &self.requires
    }

    /// `type.id`, the name of the plugin's config section and of the
    /// plugin in `disabled_plugins` and `required_plugins`.
    pub fn uri(&self) -> String {
        format!("{}.{}", self.r#type, self.id)
    }

    /// The default config section, if the plugin has one.
    pub fn default_config(&self) -> Option<toml::Table> {
        self.config.map(|f| f())
    }
}

/// A config type's default as a TOML section.
fn config_table<C: Serialize + Default>() -> toml::Table {
    toml::Table::try_from(C::default()).unwrap_or_default()
}
