//! The plugin registry: containerd's plugin model, with typed handles.
//!
//! A plugin is a [`Registration`]: its type and id (containerd's, e.g.
//! `io.containerd.grpc.v1 namespaces`), the plugin types it requires, an
//! optional default config section, and an `init` function. The registry
//! orders init by `requires`, runs each init once, and records every plugin
//! as ok, skipped or failed, with its exports; introspection reports exactly
//! that record.
//!
//! What a plugin provides to others is a typed [`Handles`] field (the
//! metadata database, the opt directory, …) rather than a `dyn Any`, so a
//! dependent asks for what it needs by name and the compiler checks it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crated_core::{Error, Kind};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// containerd's plugin types used by crated.
pub mod types {
    /// Internal plugins (`opt`, …).
    pub const INTERNAL: &str = "io.containerd.internal.v1";
    /// The metadata database.
    pub const METADATA: &str = "io.containerd.metadata.v1";
    /// Content stores.
    pub const CONTENT: &str = "io.containerd.content.v1";
    /// The events exchange.
    pub const EVENT: &str = "io.containerd.event.v1";
    /// gRPC services.
    pub const GRPC: &str = "io.containerd.grpc.v1";
    /// ttrpc services.
    pub const TTRPC: &str = "io.containerd.ttrpc.v1";
    /// The garbage collection scheduler.
    pub const GC: &str = "io.containerd.gc.v1";
    /// Snapshotters.
    pub const SNAPSHOTTER: &str = "io.containerd.snapshotter.v1";
    /// Differs (layer appliers).
    pub const DIFFER: &str = "io.containerd.differ.v1";
    /// Runtime v2 task managers.
    pub const RUNTIME_V2: &str = "io.containerd.runtime.v2";
}

/// Why an init did not produce a plugin.
#[derive(Debug)]
pub enum InitError {
    /// The plugin does not apply here; it is listed as `skip` with the reason.
    Skip(String),
    /// The plugin failed; it is listed as `error` with the message.
    Failed(Error),
}

impl From<Error> for InitError {
    fn from(err: Error) -> Self {
        InitError::Failed(err)
    }
}

/// The init function of a plugin.
pub type InitFn = fn(&mut InitContext<'_>) -> Result<(), InitError>;

/// A plugin known to the daemon.
#[derive(Clone, Copy)]
pub struct Registration {
    /// containerd plugin type, e.g. `io.containerd.grpc.v1`.
    pub r#type: &'static str,
    /// Plugin id, unique within its type.
    pub id: &'static str,
    /// Plugin types that must be initialised first; `"*"` means every other.
    pub requires: &'static [&'static str],
    /// The default config section, printed by `crated config default`.
    pub config: Option<fn() -> toml::Table>,
    /// Builds the plugin.
    pub init: InitFn,
}

impl Registration {
    /// `type.id`, the name used in config sections and plugin lists.
    pub fn uri(&self) -> String {
        format!("{}.{}", self.r#type, self.id)
    }
}

/// Serialises a plugin's default config struct into its TOML section.
pub fn config_table<T: Serialize + Default>() -> toml::Table {
    toml::Table::try_from(T::default()).unwrap_or_default()
}

/// One plugin's outcome, as introspection reports it.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Plugin type.
    pub r#type: String,
    /// Plugin id.
    pub id: String,
    /// Required plugin types.
    pub requires: Vec<String>,
    /// What the plugin exports (paths, …).
    pub exports: BTreeMap<String, String>,
    /// Capabilities it announces.
    pub capabilities: Vec<String>,
    /// Ok, skipped or failed.
    pub status: Status,
}

/// Outcome of an init.
#[derive(Debug, Clone)]
pub enum Status {
    /// Loaded.
    Ok,
    /// Skipped, with the reason.
    Skipped(String),
    /// Failed, with the error kind and message.
    Failed(Kind, String),
}

/// Message size limits of the gRPC server (`[grpc] max_*_message_size`).
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Largest message accepted.
    pub max_recv: usize,
    /// Largest message sent.
    pub max_send: usize,
}

/// A gRPC service ready to be mounted on the server.
pub type GrpcService =
    Box<dyn FnOnce(tonic::service::Routes, GrpcLimits) -> tonic::service::Routes + Send>;

/// What loaded plugins provide to later ones and to the servers.
#[derive(Default)]
pub struct Handles {
    /// The metadata database (`io.containerd.metadata.v1`).
    pub metadata: Option<crated_metadata::Db>,
    /// The events exchange (`io.containerd.event.v1`).
    pub exchange: Option<crated_core::events::Exchange>,
    /// The blob store shared by all namespaces (`io.containerd.content.v1`).
    pub content_backend: Option<Arc<dyn crated_core::content::ContentStore>>,
    /// The namespaced content store the services serve (built by the
    /// metadata plugin over `content_backend`).
    pub content: Option<Arc<dyn crated_core::content::ContentStore>>,
    /// The garbage collector over the metadata database and the blob store
    /// (built by the metadata plugin).
    pub collector: Option<Arc<dyn crated_core::gc::Collector>>,
    /// Runs a collection on request (`io.containerd.gc.v1`).
    pub gc: Option<Arc<dyn crated_core::gc::Trigger>>,
    /// The loaded snapshotters by id (`io.containerd.snapshotter.v1`).
    pub snapshotters: Vec<(String, Arc<dyn crated_core::snapshots::Snapshotter>)>,
    /// The snapshotters through namespaces, as the service serves them
    /// (built by the metadata plugin over `snapshotters`).
    pub snapshots: Option<Arc<dyn crated_core::snapshots::Snapshotters>>,
    /// The loaded differs, in load order (`io.containerd.differ.v1`).
    pub differs: Vec<Arc<dyn crated_core::diff::Differ>>,
    /// The directory of installed binaries (`io.containerd.internal.v1 opt`).
    pub opt: Option<PathBuf>,
    /// The runtime v2 task manager (`io.containerd.runtime.v2 task`).
    pub tasks: Option<Arc<crated_runtime_v2::TaskManager>>,
    /// Every plugin's outcome, set once all inits have run.
    pub plugins: Arc<OnceLock<Vec<PluginInfo>>>,
    /// gRPC services to serve.
    pub grpc: Vec<GrpcService>,
    /// ttrpc services to serve.
    pub ttrpc: HashMap<String, ttrpc::r#async::Service>,
}

/// What an init function sees.
pub struct InitContext<'a> {
    /// This plugin's registration.
    pub registration: &'a Registration,
    /// Persistent root of this plugin: `<root>/<type>.<id>`.
    pub root: PathBuf,
    /// State root of this plugin: `<state>/<type>.<id>`.
    pub state: PathBuf,
    /// The daemon's root.
    pub daemon_root: PathBuf,
    /// The daemon's state.
    pub daemon_state: PathBuf,
    /// The daemon's gRPC socket.
    pub grpc_address: PathBuf,
    /// The daemon's ttrpc socket.
    pub ttrpc_address: PathBuf,
    /// Exports to report in introspection.
    pub exports: BTreeMap<String, String>,
    /// Capabilities to report.
    pub capabilities: Vec<String>,
    config: Option<&'a toml::Table>,
    /// Provided by loaded plugins.
    pub handles: &'a mut Handles,
}

impl InitContext<'_> {
    /// This plugin's config section decoded into `T`; missing keys take `T`'s
    /// defaults, and a bad value is an InvalidArgument naming the section.
    pub fn config<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        match self.config {
            None => Ok(T::default()),
            Some(table) => table.clone().try_into().map_err(|e: toml::de::Error| {
                Error::invalid_argument(format!(
                    "invalid config for plugin {}: {}",
                    self.registration.uri(),
                    e.message().trim()
                ))
            }),
        }
    }

    /// The namespaced content store; fails if the metadata plugin did not load.
    pub fn content(&self) -> Result<Arc<dyn crated_core::content::ContentStore>, Error> {
        self.handles.content.clone().ok_or_else(|| {
            Error::failed_precondition(format!("plugin type {} is not loaded", types::METADATA))
        })
    }

    /// The events exchange; fails if its plugin did not load.
    pub fn exchange(&self) -> Result<crated_core::events::Exchange, Error> {
        self.handles.exchange.clone().ok_or_else(|| {
            Error::failed_precondition(format!("plugin type {} is not loaded", types::EVENT))
        })
    }

    /// The collection trigger; fails if the scheduler did not load.
    pub fn gc(&self) -> Result<Arc<dyn crated_core::gc::Trigger>, Error> {
        self.handles.gc.clone().ok_or_else(|| {
            Error::failed_precondition(format!("plugin type {} is not loaded", types::GC))
        })
    }

    /// The metadata database; fails if its plugin did not load.
    pub fn metadata(&self) -> Result<crated_metadata::Db, Error> {
        self.handles.metadata.clone().ok_or_else(|| {
            Error::failed_precondition(format!("plugin type {} is not loaded", types::METADATA))
        })
    }
}

/// Orders `registrations` so that each comes after the plugin types it
/// requires, keeping list order otherwise. A cycle is a programming error in
/// the builtins list and is reported as such.
pub fn order(registrations: &[Registration]) -> Result<Vec<Registration>, Error> {
    fn visit(
        i: usize,
        regs: &[Registration],
        done: &mut HashSet<usize>,
        active: &mut HashSet<usize>,
        out: &mut Vec<Registration>,
    ) -> Result<(), Error> {
        if done.contains(&i) {
            return Ok(());
        }
        if !active.insert(i) {
            return Err(Error::failed_precondition(format!(
                "plugin {} is part of a requires cycle",
                regs[i].uri()
            )));
        }
        let reg = regs[i];
        for (j, other) in regs.iter().enumerate() {
            if j == i {
                continue;
            }
            let wildcard = reg.requires.contains(&"*") && !other.requires.contains(&"*");
            if wildcard || reg.requires.contains(&other.r#type) {
                visit(j, regs, done, active, out)?;
            }
        }
        active.remove(&i);
        done.insert(i);
        out.push(reg);
        Ok(())
    }
    let mut out = Vec::with_capacity(registrations.len());
    let (mut done, mut active) = (HashSet::new(), HashSet::new());
    for i in 0..registrations.len() {
        visit(i, registrations, &mut done, &mut active, &mut out)?;
    }
    Ok(out)
}

/// Settings the registry needs from the daemon config.
pub struct LoadOptions<'a> {
    /// Daemon root.
    pub root: PathBuf,
    /// Daemon state.
    pub state: PathBuf,
    /// The gRPC socket the daemon will serve.
    pub grpc_address: PathBuf,
    /// The ttrpc socket the daemon will serve.
    pub ttrpc_address: PathBuf,
    /// `[plugins."type.id"]` sections.
    pub sections: &'a BTreeMap<String, toml::Table>,
    /// `disabled_plugins`.
    pub disabled: &'a [String],
    /// `required_plugins`.
    pub required: &'a [String],
}

/// Initialises every registration in dependency order.
///
/// Returns the handles of what loaded. Fails only when a required plugin
/// did not load (naming it and why), or the builtins list is inconsistent.
pub fn load(registrations: &[Registration], opts: LoadOptions<'_>) -> Result<Handles, Error> {
    let disabled: HashSet<&str> = opts.disabled.iter().map(String::as_str).collect();
    let enabled: Vec<Registration> = registrations
        .iter()
        .copied()
        .filter(|r| !disabled.contains(r.uri().as_str()))
        .collect();
    let mut handles = Handles::default();
    let mut infos: Vec<PluginInfo> = Vec::new();
    for reg in order(&enabled)? {
        let uri = reg.uri();
        let status = match missing_requirement(&reg, &infos) {
            Some(err) => Status::Failed(Kind::FailedPrecondition, err),
            None => {
                let mut ctx = InitContext {
                    registration: &reg,
                    root: opts.root.join(&uri),
                    state: opts.state.join(&uri),
                    daemon_root: opts.root.clone(),
                    daemon_state: opts.state.clone(),
                    grpc_address: opts.grpc_address.clone(),
                    ttrpc_address: opts.ttrpc_address.clone(),
                    exports: BTreeMap::new(),
                    capabilities: Vec::new(),
                    config: opts.sections.get(&uri),
                    handles: &mut handles,
                };
                let result = (reg.init)(&mut ctx);
                let (exports, capabilities) = (ctx.exports, ctx.capabilities);
                let status = match result {
                    Ok(()) => Status::Ok,
                    Err(InitError::Skip(reason)) => Status::Skipped(reason),
                    Err(InitError::Failed(err)) => {
                        Status::Failed(err.kind(), err.message().to_owned())
                    }
                };
                match &status {
                    Status::Ok => tracing::info!(r#type = reg.r#type, id = reg.id, "loaded plugin"),
                    Status::Skipped(reason) => {
                        tracing::info!(r#type = reg.r#type, id = reg.id, %reason, "skip loading plugin")
                    }
                    Status::Failed(_, msg) => {
                        tracing::warn!(r#type = reg.r#type, id = reg.id, error = %msg, "failed to load plugin")
                    }
                }
                infos.push(PluginInfo {
                    r#type: reg.r#type.into(),
                    id: reg.id.into(),
                    requires: reg.requires.iter().map(|s| s.to_string()).collect(),
                    exports,
                    capabilities,
                    status,
                });
                continue;
            }
        };
        tracing::warn!(
            r#type = reg.r#type,
            id = reg.id,
            "failed to load plugin: required plugins are missing"
        );
        infos.push(PluginInfo {
            r#type: reg.r#type.into(),
            id: reg.id.into(),
            requires: reg.requires.iter().map(|s| s.to_string()).collect(),
            exports: BTreeMap::new(),
            capabilities: Vec::new(),
            status,
        });
    }
    for uri in opts.required {
        match infos
            .iter()
            .find(|p| format!("{}.{}", p.r#type, p.id) == *uri)
        {
            None => {
                return Err(Error::failed_precondition(format!(
                    "required plugin {uri} is not registered or is disabled"
                )))
            }
            Some(p) => match &p.status {
                Status::Ok => {}
                Status::Skipped(reason) => {
                    return Err(Error::failed_precondition(format!(
                        "required plugin {uri} was skipped: {reason}"
                    )))
                }
                Status::Failed(_, msg) => {
                    return Err(Error::failed_precondition(format!(
                        "required plugin {uri} failed to load: {msg}"
                    )))
                }
            },
        }
    }
    // The cell is fresh and set exactly once, here.
    let _ = handles.plugins.set(infos);
    Ok(handles)
}

/// A required plugin type of which nothing loaded, described for the error.
fn missing_requirement(reg: &Registration, loaded: &[PluginInfo]) -> Option<String> {
    for required in reg.requires.iter().filter(|r| **r != "*") {
        let of_type: Vec<&PluginInfo> = loaded.iter().filter(|p| p.r#type == *required).collect();
        if of_type.iter().any(|p| matches!(p.status, Status::Ok)) {
            continue;
        }
        let why: Vec<String> = of_type
            .iter()
            .map(|p| match &p.status {
                Status::Skipped(r) => format!("{}.{} skipped: {r}", p.r#type, p.id),
                Status::Failed(_, m) => format!("{}.{}: {m}", p.r#type, p.id),
                Status::Ok => String::new(),
            })
            .collect();
        return Some(if why.is_empty() {
            format!("no plugin of required type {required} is loaded")
        } else {
            format!(
                "no plugin of required type {required} is loaded ({})",
                why.join("; ")
            )
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &mut InitContext<'_>) -> Result<(), InitError> {
        Ok(())
    }
    fn fail(_: &mut InitContext<'_>) -> Result<(), InitError> {
        Err(InitError::Failed(Error::invalid_argument("bad setting")))
    }
    fn skip(_: &mut InitContext<'_>) -> Result<(), InitError> {
        Err(InitError::Skip("not here".into()))
    }

    const fn reg(
        r#type: &'static str,
        id: &'static str,
        requires: &'static [&'static str],
        init: InitFn,
    ) -> Registration {
        Registration {
            r#type,
            id,
            requires,
            config: None,
            init,
        }
    }

    fn run(regs: &[Registration], required: &[String]) -> Result<Vec<PluginInfo>, Error> {
        let dir = tempfile::tempdir().unwrap();
        let sections = BTreeMap::new();
        let handles = load(
            regs,
            LoadOptions {
                root: dir.path().into(),
                state: dir.path().into(),
                grpc_address: dir.path().join("crated.sock"),
                ttrpc_address: dir.path().join("crated.sock.ttrpc"),
                sections: &sections,
                disabled: &[],
                required,
            },
        )?;
        Ok(handles.plugins.get().cloned().unwrap())
    }

    #[test]
    fn requires_order_init() {
        let regs = [
            reg("t.grpc", "a", &["t.meta"], ok),
            reg("t.intro", "i", &["*"], ok),
            reg("t.meta", "m", &[], ok),
        ];
        let ids: Vec<_> = order(&regs).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, ["m", "a", "i"]);
    }

    #[test]
    fn cycle_is_reported() {
        let regs = [reg("x", "a", &["y"], ok), reg("y", "b", &["x"], ok)];
        let err = order(&regs).err().expect("a cycle is an error");
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn failure_propagates_to_dependents_but_not_others() {
        let regs = [
            reg("t.meta", "m", &[], fail),
            reg("t.grpc", "a", &["t.meta"], ok),
            reg("t.grpc", "b", &[], ok),
        ];
        let infos = run(&regs, &[]).unwrap();
        let status = |id: &str| infos.iter().find(|p| p.id == id).unwrap().status.clone();
        assert!(
            matches!(status("m"), Status::Failed(Kind::InvalidArgument, m) if m == "bad setting")
        );
        assert!(matches!(status("a"), Status::Failed(_, m) if m.contains("t.meta.m: bad setting")));
        assert!(matches!(status("b"), Status::Ok));
    }

    #[test]
    fn required_plugin_failure_stops_load() {
        let regs = [reg("t", "s", &[], skip), reg("t", "f", &[], fail)];
        let err = run(&regs, &["t.f".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required plugin t.f failed to load: bad setting"
        );
        let err = run(&regs, &["t.s".into()]).unwrap_err();
        assert_eq!(err.to_string(), "required plugin t.s was skipped: not here");
        let err = run(&regs, &["t.nope".into()]).unwrap_err();
        assert!(err.to_string().contains("not registered"));
    }
}
