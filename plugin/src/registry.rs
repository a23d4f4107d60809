//! Loading: init order by `requires`, one init per plugin, the record of
//! what loaded, and the typed lookups over it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crated_core::{Error, Kind};

use crate::context::InitContext;
use crate::error::Error as PluginError;
use crate::{CloseFn, Id, InitError, PluginInfo, PluginStatus, Registration, Type, Value};

/// The daemon's settings every init may read.
pub(crate) struct Settings {
    pub(crate) root: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) grpc_address: PathBuf,
    pub(crate) ttrpc_address: PathBuf,
    pub(crate) timeouts: BTreeMap<String, Duration>,
}

impl Settings {
    pub(crate) fn timeout(&self, key: &str, default: Duration) -> Duration {
        self.timeouts.get(key).copied().unwrap_or(default)
    }
}

/// What the registry needs from the daemon's config.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The daemon's persistent root; plugin roots go under it.
    pub root: PathBuf,
    /// The daemon's state directory; plugin state goes under it.
    pub state: PathBuf,
    /// The gRPC socket the daemon will serve.
    pub grpc_address: PathBuf,
    /// The ttrpc socket the daemon will serve.
    pub ttrpc_address: PathBuf,
    /// `[plugins."type.id"]` sections.
    pub sections: BTreeMap<String, toml::Table>,
    /// `disabled_plugins`: not loaded, not listed.
    pub disabled: Vec<String>,
    /// `required_plugins`: the load fails unless each of these loaded.
    pub required: Vec<String>,
    /// `[timeouts]`, parsed.
    pub timeouts: BTreeMap<String, Duration>,
}

impl LoadOptions {
    /// Options for a daemon with `root` and `state`, sockets under
    /// `state`, no config sections.
    pub fn new(root: &Path, state: &Path) -> Self {
        Self {
            root: root.to_owned(),
            state: state.to_owned(),
            grpc_address: state.join("crated.sock"),
            ttrpc_address: state.join("crated.sock.ttrpc"),
            ..Self::default()
        }
    }
}

/// The values of loaded plugins, with their type and id, and the outcome
/// of those that did not load (to say why a dependent cannot have them).
#[derive(Clone, Default)]
pub(crate) struct Instances(Vec<(&'static str, String, Value)>, Vec<PluginInfo>);

impl Instances {
    fn of_type<'a, T: 'static>(
        &'a self,
        r#type: &'a str,
    ) -> impl DoubleEndedIterator<Item = (&'a str, &'a T)> + 'a {
        self.0
            .iter()
            .filter(move |(t, _, _)| *t == r#type)
            .filter_map(|(_, id, value)| value.downcast_ref::<T>().map(|v| (id.as_str(), v)))
    }

    pub(crate) fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error> {
        self.of_type::<T>(r#type.name())
            .next_back()
            .map(|(_, v)| v.clone())
            .ok_or_else(|| PluginError::TypeNotLoaded(r#type.name().to_owned()).into())
    }

    pub(crate) fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error> {
        let (type_name, id) = (id.r#type().name(), id.id());
        self.of_type::<T>(type_name)
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                let why = self
                    .1
                    .iter()
                    .find(|p| p.r#type == type_name && p.id == id)
                    .and_then(|p| match &p.status {
                        PluginStatus::Skipped(reason) => Some(format!(": skipped: {reason}")),
                        PluginStatus::Failed(_, message) => Some(format!(": {message}")),
                        PluginStatus::Ok => None,
                    })
                    .unwrap_or_default();
                PluginError::NotLoaded {
                    plugin: format!("{type_name}.{id}"),
                    why,
                }
                .into()
            })
    }

    pub(crate) fn get_all<T: Clone + 'static>(&self, r#type: Type<T>) -> Vec<(String, T)> {
        self.of_type::<T>(r#type.name())
            .map(|(id, v)| (id.to_owned(), v.clone()))
            .collect()
    }
}

/// The outcome of a load: every plugin's record and the values of those
/// that loaded.
pub struct Registry {
    instances: Instances,
    infos: Arc<OnceLock<Vec<PluginInfo>>>,
    closers: Vec<(String, CloseFn)>,
}

impl Registry {
    /// Every plugin's outcome, in load order.
    pub fn infos(&self) -> &[PluginInfo] {
        self.infos.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// The value of the last loaded plugin of `type`.
    pub fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error> {
        self.instances.get(r#type)
    }

    /// The value of plugin `id`.
    pub fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error> {
        self.instances.get_by_id(id)
    }

    /// Every loaded plugin of `type`, by id, in load order.
    pub fn get_all<T: Clone + 'static>(&self, r#type: Type<T>) -> Vec<(String, T)> {
        self.instances.get_all(r#type)
    }

    /// Closes the plugins that asked to be, the last loaded first.
    pub async fn close(mut self) {
        while let Some((uri, close)) = self.closers.pop() {
            tracing::debug!(plugin = %uri, "closing plugin");
            close().await;
        }
    }
}

/// Orders `registrations` so that each comes after the plugin types it
/// requires, keeping list order otherwise. A cycle is a programming error
/// in the builtins list and is reported as such.
pub fn order(registrations: &[Registration]) -> Result<Vec<usize>, Error> {
    fn visit(
        i: usize,
        regs: &[Registration],
        done: &mut HashSet<usize>,
        active: &mut HashSet<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), Error> {
        if done.contains(&i) {
            return Ok(());
        }
        if !active.insert(i) {
            return Err(PluginError::Cycle(regs[i].uri()).into());
        }
        let reg = &regs[i];
        let wildcard = reg.requires.contains(&"*");
        for (j, other) in regs.iter().enumerate() {
            if j == i {
                continue;
            }
            if (wildcard && !other.requires.contains(&"*")) || reg.requires.contains(&other.r#type)
            {
                visit(j, regs, done, active, out)?;
            }
        }
        active.remove(&i);
        done.insert(i);
        out.push(i);
        Ok(())
    }
    let mut out = Vec::with_capacity(registrations.len());
    let (mut done, mut active) = (HashSet::new(), HashSet::new());
    for i in 0..registrations.len() {
        visit(i, registrations, &mut done, &mut active, &mut out)?;
    }
    Ok(out)
}

/// Initialises every registration not disabled, in dependency order, each
/// init awaited before the next starts.
///
/// Fails only when a required plugin did not load (naming it and why) or
/// the registrations are inconsistent (a requires cycle, two plugins with
/// one `type.id`).
pub async fn load(registrations: Vec<Registration>, opts: LoadOptions) -> Result<Registry, Error> {
    let disabled: HashSet<&str> = opts.disabled.iter().map(String::as_str).collect();
    let enabled: Vec<Registration> = registrations
        .into_iter()
        .filter(|r| !disabled.contains(r.uri().as_str()))
        .collect();
    let mut seen = HashSet::new();
    for reg in &enabled {
        if !seen.insert(reg.uri()) {
            return Err(PluginError::Duplicate(reg.uri()).into());
        }
    }
    for uri in opts.sections.keys() {
        if !seen.contains(uri) && !disabled.contains(uri.as_str()) {
            tracing::warn!(section = %uri, "config section names no plugin of this build; ignored");
        }
    }
    let settings = Arc::new(Settings {
        root: opts.root.clone(),
        state: opts.state.clone(),
        grpc_address: opts.grpc_address.clone(),
        ttrpc_address: opts.ttrpc_address.clone(),
        timeouts: opts.timeouts.clone(),
    });
    let infos_cell = Arc::new(OnceLock::new());
    let mut instances = Instances::default();
    let mut infos: Vec<PluginInfo> = Vec::new();
    let mut closers = Vec::new();
    for i in order(&enabled)? {
        let reg = &enabled[i];
        let uri = reg.uri();
        let mut info = PluginInfo {
            r#type: reg.r#type.to_owned(),
            id: reg.id.clone(),
            requires: reg.requires.iter().map(|s| s.to_string()).collect(),
            exports: BTreeMap::new(),
            capabilities: Vec::new(),
            status: PluginStatus::Ok,
        };
        if let Some(missing) = missing_requirement(reg, &infos) {
            tracing::warn!(r#type = reg.r#type, id = %reg.id, reason = %missing, "failed to load plugin");
            info.status = PluginStatus::Failed(Kind::FailedPrecondition, missing);
            infos.push(info);
            continue;
        }
        let ctx = InitContext {
            r#type: reg.r#type,
            id: reg.id.clone(),
            root: opts.root.join(&uri),
            state: opts.state.join(&uri),
            settings: Arc::clone(&settings),
            section: opts.sections.get(&uri).cloned(),
            loaded: Instances(instances.0.clone(), infos.clone()),
            infos: Arc::clone(&infos_cell),
        };
        match (reg.init)(ctx).await {
            Ok(loaded) => {
                tracing::info!(r#type = reg.r#type, id = %reg.id, "loaded plugin");
                info.exports = loaded.exports;
                info.capabilities = loaded.capabilities;
                instances.0.push((reg.r#type, reg.id.clone(), loaded.value));
                if let Some(close) = loaded.close {
                    closers.push((uri, close));
                }
            }
            Err(InitError::Skip(reason)) => {
                tracing::info!(r#type = reg.r#type, id = %reg.id, %reason, "skip loading plugin");
                info.status = PluginStatus::Skipped(reason);
            }
            Err(InitError::Failed(err)) => {
                tracing::warn!(r#type = reg.r#type, id = %reg.id, error = %err, "failed to load plugin");
                info.status = PluginStatus::Failed(err.kind(), err.message().to_owned());
            }
        }
        infos.push(info);
    }
    let registry = Registry {
        instances,
        infos: Arc::clone(&infos_cell),
        closers,
    };
    if let Err(err) = check_required(&opts.required, &infos) {
        registry_set(&infos_cell, infos);
        registry.close().await;
        return Err(err);
    }
    registry_set(&infos_cell, infos);
    Ok(registry)
}

fn registry_set(cell: &OnceLock<Vec<PluginInfo>>, infos: Vec<PluginInfo>) {
    // The cell is made by `load` and set exactly once, at its end.
    let _ = cell.set(infos);
}

fn check_required(required: &[String], infos: &[PluginInfo]) -> Result<(), Error> {
    for uri in required {
        let found = infos
            .iter()
            .find(|p| format!("{}.{}", p.r#type, p.id) == *uri);
        match found.map(|p| &p.status) {
            None => return Err(PluginError::RequiredMissing(uri.clone()).into()),
            Some(PluginStatus::Ok) => {}
            Some(PluginStatus::Skipped(reason)) => {
                return Err(PluginError::RequiredSkipped {
                    plugin: uri.clone(),
                    reason: reason.clone(),
                }
                .into())
            }
            Some(PluginStatus::Failed(_, msg)) => {
                return Err(PluginError::RequiredFailed {
                    plugin: uri.clone(),
                    message: msg.clone(),
                }
                .into())
            }
        }
    }
    Ok(())
}

/// A required plugin type of which nothing loaded, described for the error.
fn missing_requirement(reg: &Registration, loaded: &[PluginInfo]) -> Option<String> {
    for required in reg.requires.iter().filter(|r| **r != "*") {
        let of_type: Vec<&PluginInfo> = loaded.iter().filter(|p| p.r#type == *required).collect();
        if of_type.iter().any(|p| p.status == PluginStatus::Ok) {
            continue;
        }
        let why: Vec<String> = of_type
            .iter()
            .filter_map(|p| match &p.status {
                PluginStatus::Skipped(r) => Some(format!("{}.{} skipped: {r}", p.r#type, p.id)),
                PluginStatus::Failed(_, m) => Some(format!("{}.{}: {m}", p.r#type, p.id)),
                PluginStatus::Ok => None,
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
    use crate::Plugin;

    const A: Type<u32> = Type::new("t.a");
    const B: Type<u32> = Type::new("t.b");
    const INTRO: Type<usize> = Type::new("t.intro");

    fn ok(r#type: Type<u32>, id: &str, value: u32) -> Registration {
        Registration::new(r#type, id, move |_| async move { Ok(Plugin::new(value)) })
    }

    fn fail(r#type: Type<u32>, id: &str) -> Registration {
        Registration::new(r#type, id, |_| async {
            Err::<Plugin<u32>, _>(InitError::Failed(Error::invalid_argument("bad setting")))
        })
    }

    async fn run(regs: Vec<Registration>, required: &[&str]) -> Result<Registry, Error> {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = LoadOptions::new(dir.path(), dir.path());
        opts.required = required.iter().map(|s| s.to_string()).collect();
        load(regs, opts).await
    }

    fn status(registry: &Registry, id: &str) -> PluginStatus {
        registry
            .infos()
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .status
            .clone()
    }

    #[test]
    fn requires_order_init() {
        let regs = [
            ok(B, "b", 1).requires(&["t.a"]),
            Registration::new(INTRO, "i", |_| async { Ok(Plugin::new(0)) }).requires(&["*"]),
            ok(A, "a", 2),
        ];
        let ids: Vec<_> = order(&regs)
            .unwrap()
            .into_iter()
            .map(|i| regs[i].id().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "i"]);
    }

    #[test]
    fn cycle_is_reported() {
        let regs = [
            ok(A, "a", 1).requires(&["t.b"]),
            ok(B, "b", 1).requires(&["t.a"]),
        ];
        let err = order(&regs).expect_err("a cycle is an error");
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[tokio::test]
    async fn dependents_get_typed_values_in_order() {
        let regs = vec![
            Registration::new(B, "sum", |ctx| async move {
                let all = ctx.get_all(A);
                Ok(Plugin::new(all.iter().map(|(_, v)| v).sum::<u32>()).export("n", all.len()))
            })
            .requires(&["t.a"]),
            ok(A, "one", 1),
            ok(A, "two", 2),
        ];
        let registry = run(regs, &[]).await.unwrap();
        assert_eq!(registry.get(B).unwrap(), 3);
        assert_eq!(registry.get(A).unwrap(), 2, "the last of a type wins");
        assert_eq!(registry.get_by_id(Id::<u32>::new("t.a", "one")).unwrap(), 1);
        let sum = registry.infos().iter().find(|p| p.id == "sum").unwrap();
        assert_eq!(sum.exports["n"], "2");
    }

    #[tokio::test]
    async fn failure_propagates_to_dependents_but_not_others() {
        let regs = vec![
            fail(A, "m"),
            ok(B, "a", 1).requires(&["t.a"]),
            ok(B, "b", 1),
        ];
        let registry = run(regs, &[]).await.unwrap();
        assert_eq!(
            status(&registry, "m"),
            PluginStatus::Failed(Kind::InvalidArgument, "bad setting".into())
        );
        assert!(
            matches!(status(&registry, "a"), PluginStatus::Failed(_, m) if m.contains("t.a.m: bad setting"))
        );
        assert_eq!(status(&registry, "b"), PluginStatus::Ok);
    }

    #[tokio::test]
    async fn required_plugin_failure_stops_load() {
        let regs = || vec![Registration::compiled_out("t", "s", "x"), fail(A, "f")];
        let err = run(regs(), &["t.a.f"]).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "required plugin t.a.f failed to load: bad setting"
        );
        let err = run(regs(), &["t.s"]).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "required plugin t.s was skipped: not compiled in: build crated with the \"x\" feature"
        );
        let err = run(regs(), &["t.nope"]).await.err().unwrap();
        assert!(err.to_string().contains("not registered"));
    }

    #[tokio::test]
    async fn duplicate_registrations_are_refused() {
        let err = run(vec![ok(A, "a", 1), ok(A, "a", 2)], &[])
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("registered twice"), "{err}");
    }

    #[tokio::test]
    async fn config_decodes_with_defaults_and_names_bad_values() {
        #[derive(serde::Deserialize, Default, Debug)]
        #[serde(default)]
        struct C {
            size: u32,
        }
        let dir = tempfile::tempdir().unwrap();
        let mut opts = LoadOptions::new(dir.path(), dir.path());
        let section: toml::Table = toml::from_str("size = \"big\"").unwrap();
        opts.sections.insert("t.a.a".into(), section);
        let section: toml::Table = toml::from_str("size = 3\nunknown = 1").unwrap();
        opts.sections.insert("t.a.b".into(), section);
        let reg = |id: &str| {
            Registration::new(A, id, |ctx| async move {
                Ok(Plugin::new(ctx.config::<C>()?.size))
            })
        };
        let registry = load(vec![reg("a"), reg("b"), reg("c")], opts)
            .await
            .unwrap();
        assert!(
            matches!(status(&registry, "a"), PluginStatus::Failed(Kind::InvalidArgument, m) if m.starts_with("invalid config for plugin t.a.a"))
        );
        assert_eq!(registry.get_by_id(Id::<u32>::new("t.a", "b")).unwrap(), 3);
        assert_eq!(registry.get_by_id(Id::<u32>::new("t.a", "c")).unwrap(), 0);
    }

    #[tokio::test]
    async fn close_runs_in_reverse_load_order() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let closing = |id: &'static str, log: Arc<std::sync::Mutex<Vec<&'static str>>>| {
            Registration::new(A, id, move |_| {
                let log = Arc::clone(&log);
                async move {
                    Ok(Plugin::new(0).on_close(move || async move {
                        log.lock().unwrap().push(id);
                    }))
                }
            })
        };
        let regs = vec![
            closing("second", log.clone()).requires(&["t.b"]),
            Registration::new(B, "first", {
                let log = log.clone();
                move |_| {
                    let log = Arc::clone(&log);
                    async move {
                        Ok(Plugin::new(0).on_close(move || async move {
                            log.lock().unwrap().push("first");
                        }))
                    }
                }
            }),
        ];
        run(regs, &[]).await.unwrap().close().await;
        assert_eq!(*log.lock().unwrap(), ["second", "first"]);
    }
}
