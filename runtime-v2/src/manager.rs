//! The task manager: creates tasks (bundle, shim start, `Create`), finds
//! them, deletes them, notices shims that die and cleans up after them,
//! and after a daemon restart reconnects to the shims still running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crated_api::containerd::events as ev;
use crated_api::containerd::task::v2 as pb;
use crated_api::convert::{any_to_pb, mount_to_pb, optional_timestamp};
use crated_core::descriptor::Any;
use crated_core::events::{Exchange, Payload};
use crated_core::mount::Mount;
use crated_core::tasks::{Exit, Stdio};
use crated_core::{Namespace, Result};
use futures::StreamExt as _;
use prost::Message as _;

use crate::binary::{self, ShimCommand};
use crate::bundle::Bundle;
use crate::error::Error;
use crate::shim::{open_log, Shim};
use crate::timeouts::Timeouts;

/// The runtime whose shims group containers (see [`TaskManager::join_group`]).
const RUNC_V2: &str = "io.containerd.runc.v2";

/// The shim group a container of OCI spec `spec` (JSON) names, if any (as
/// the shim reads it: a spec it cannot read names none).
fn shim_group(spec: &[u8]) -> Option<String> {
    crated_core::tasks::runc_shim_group(spec).ok().flatten()
}

/// How many shims a restarted daemon reconnects to at once.
const RECOVER_PARALLEL: usize = 16;

/// Where the manager keeps bundles and how it starts shims.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The daemon's root (work dirs go under it).
    pub root: PathBuf,
    /// The daemon's state dir (bundles go under it).
    pub state: PathBuf,
    /// The daemon's gRPC socket.
    pub address: PathBuf,
    /// The daemon's ttrpc socket, where shims publish events.
    pub ttrpc_address: PathBuf,
    /// The daemon's executable, passed as `-publish-binary`.
    pub publish_binary: PathBuf,
    /// The opt plugin's directory: its `bin/` is searched first for shim
    /// binaries and leads the PATH shims get (so they find an installed
    /// runc), its `lib/` their LD_LIBRARY_PATH.
    pub opt: Option<PathBuf>,
    /// How long to wait for shims.
    pub timeouts: Timeouts,
}

/// Where a task's checkpoint images are.
#[derive(Debug)]
pub enum RestoreFrom {
    /// Extracted for this task: moved into the bundle, which then owns it.
    Scratch(crate::checkpoint::ScratchDir),
    /// A directory the caller keeps (the runc options' `criu_image_path`).
    Path(PathBuf),
}

/// What a task is created with.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The OCI spec (`config.json`), as the container record holds it.
    pub spec: Vec<u8>,
    /// Root filesystem mounts, which the shim mounts on `rootfs/`.
    pub rootfs: Vec<Mount>,
    /// Stdio paths (fifos, files, `binary://`/`file://` URIs).
    pub stdio: Stdio,
    /// A tty for the process.
    pub terminal: bool,
    /// The runtime name (`io.containerd.runc.v2`) or a shim's absolute path.
    pub runtime: String,
    /// Options for the shim: the task's, else the container's runtime options.
    pub options: Option<Any>,
    /// A checkpoint image directory to restore the task from (at its
    /// Start).
    pub checkpoint: Option<RestoreFrom>,
}

type Key = (String, String);

/// The tasks of every namespace, each with its shim.
pub struct TaskManager {
    config: ManagerConfig,
    exchange: Exchange,
    tasks: Mutex<HashMap<Key, Arc<Shim>>>,
    /// Ids being created or deleted, so two calls for one id do not race.
    busy: Mutex<std::collections::HashSet<Key>>,
}

/// Releases a busy id on drop.
struct Busy<'a>(&'a TaskManager, Key);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.0.busy.lock() {
            busy.remove(&self.1);
        }
    }
}

fn key(ns: &Namespace, id: &str) -> Key {
    (ns.as_str().to_owned(), id.to_owned())
}

impl TaskManager {
    /// A manager publishing its own events (for shims that died) on
    /// `exchange`.
    pub fn new(config: ManagerConfig, exchange: Exchange) -> Arc<Self> {
        Arc::new(Self {
            config,
            exchange,
            tasks: Mutex::default(),
            busy: Mutex::default(),
        })
    }

    fn reserve(&self, ns: &Namespace, id: &str) -> crate::error::Result<Busy<'_>> {
        let k = key(ns, id);
        let mut busy = self.busy.lock().map_err(|_| Error::Poisoned)?;
        if !busy.insert(k.clone()) {
            return Err(Error::TaskBusy {
                id: id.to_owned(),
                namespace: ns.to_string(),
            });
        }
        Ok(Busy(self, k))
    }

    fn command(&self, binary: PathBuf) -> ShimCommand {
        ShimCommand {
            binary,
            address: self.config.address.clone(),
            ttrpc_address: self.config.ttrpc_address.clone(),
            publish_binary: self.config.publish_binary.clone(),
            opt: self.config.opt.clone(),
            timeouts: self.config.timeouts,
        }
    }

    /// The task `id`; NotFound if there is none.
    pub fn get(&self, ns: &Namespace, id: &str) -> Result<Arc<Shim>> {
        self.tasks
            .lock()
            .ok()
            .and_then(|t| t.get(&key(ns, id)).cloned())
            .ok_or_else(|| {
                Error::TaskNotFound {
                    id: id.to_owned(),
                    namespace: ns.to_string(),
                }
                .into()
            })
    }

    /// The tasks of `ns`.
    pub fn list(&self, ns: &Namespace) -> Vec<Arc<Shim>> {
        let mut out: Vec<Arc<Shim>> = self
            .tasks
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|((n, _), _)| n == ns.as_str())
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.id().cmp(b.id()));
        out
    }

    /// Creates task `id`: its bundle, its shim, and the shim's `Create`.
    /// Anything that fails leaves no bundle, mount or shim behind.
    pub async fn create(
        self: &Arc<Self>,
        ns: &Namespace,
        id: &str,
        opts: CreateOptions,
    ) -> Result<(Arc<Shim>, u32)> {
        let began = Instant::now();
        let _busy = self.reserve(ns, id)?;
        if self.get(ns, id).is_ok() {
            return Err(Error::TaskExists {
                id: id.to_owned(),
                namespace: ns.to_string(),
            }
            .into());
        }
        let opt_bin = self.config.opt.as_ref().map(|opt| opt.join("bin"));
        let binary = binary::resolve(&opts.runtime, opt_bin.as_deref())?;
        let bundle = Bundle::create(&self.config.root, &self.config.state, ns, id, &opts.spec)?;
        let checkpoint = match opts.checkpoint {
            Some(RestoreFrom::Path(path)) => path.display().to_string(),
            Some(RestoreFrom::Scratch(dir)) => {
                let inside = bundle.path.join("checkpoint");
                if let Err(e) = std::fs::rename(dir.path(), &inside) {
                    let _ = bundle.delete();
                    return Err(Error::io("move checkpoint into", inside, e).into());
                }
                inside.display().to_string()
            }
            None => String::new(),
        };
        let command = self.command(binary.clone());
        let bundled = began.elapsed();
        let started = async {
            // Before the shim starts (or is joined): a daemon killed while
            // it starts leaves a bundle that the next one recognises as a
            // shim's (and shuts that shim down, or reconnects to it) rather
            // than as an empty one.
            let binary_path = bundle.path.join("shim-binary-path");
            std::fs::write(&binary_path, binary.as_os_str().as_encoded_bytes())
                .map_err(|e| Error::io("write", binary_path, e))?;
            let joined = self.join_group(
                ns,
                id,
                (&opts.runtime, &opts.spec),
                &binary,
                &bundle,
                &command,
            );
            if let Some(shim) = joined.await {
                return Ok((shim, began.elapsed()));
            }
            let log = open_log(&bundle)?;
            let options = opts.options.clone().map(|o| any_to_pb(o).encode_to_vec());
            let address = match command.start(&bundle, options).await {
                Ok(address) => address,
                Err(err) => {
                    log.abort();
                    return Err(err);
                }
            };
            let printed = began.elapsed();
            let shim = Shim::connect(bundle.clone(), address, command.clone(), Some(log)).await;
            Ok((shim?, printed))
        }
        .await;
        let (shim, printed) = match started {
            Ok((shim, printed)) => (Arc::new(shim), printed),
            Err(err) => {
                // A shim that started but could not be reached: its
                // `delete` cleans up; then the bundle goes.
                if bundle.address().is_some() {
                    let _ = command.delete(&bundle).await;
                }
                let _ = bundle.delete();
                return Err(err.into());
            }
        };
        let request = pb::CreateTaskRequest {
            id: id.to_owned(),
            bundle: bundle.path.display().to_string(),
            rootfs: opts.rootfs.into_iter().map(mount_to_pb).collect(),
            terminal: opts.terminal,
            stdin: opts.stdio.stdin,
            stdout: opts.stdio.stdout,
            stderr: opts.stdio.stderr,
            checkpoint,
            parent_checkpoint: String::new(),
            options: opts.options.map(any_to_pb),
        };
        let connected = began.elapsed();
        match shim.create(&request).await {
            Ok(pid) => {
                // Where a task create goes: the shim binary's `start`, the
                // first connection, the runtime's create.
                tracing::debug!(
                    id,
                    bundle_micros = bundled.as_micros() as u64,
                    shim_start_micros = (printed - bundled).as_micros() as u64,
                    connect_micros = (connected - printed).as_micros() as u64,
                    create_micros = (began.elapsed() - connected).as_micros() as u64,
                    "task created"
                );
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(key(ns, id), shim.clone());
                }
                self.monitor(shim.clone());
                Ok((shim, pid))
            }
            Err(err) => {
                let _ = shim.delete("").await;
                shim.shutdown().await;
                if let Err(e) = command.delete(&bundle).await {
                    tracing::debug!(id, error = %e, "shim delete after a failed create");
                }
                let _ = bundle.delete();
                Err(Error::CreateTask {
                    id: id.to_owned(),
                    source: Box::new(err),
                }
                .into())
            }
        }
    }

    /// The running shim a new task joins without its binary's `start`.
    ///
    /// The runc v2 shims (containerd's and crated's) serve every container
    /// of a group from one process: the group is the spec's
    /// `io.containerd.runc.v2.group` annotation, else its
    /// `io.kubernetes.cri.sandbox-id` (all the containers of a pod). For
    /// a container whose group's shim already runs, `start` only finds that
    /// shim's socket, writes its address in the bundle and prints it — a
    /// process started and waited for to say what this daemon knows when
    /// it started the group's shim itself, as the task named by the group
    /// (a pod's sandbox), with the same binary. Then the task joins it
    /// directly (as containerd 2's sandboxed tasks do); otherwise, or if
    /// the shim cannot be reached, `start` runs as always.
    async fn join_group(
        &self,
        ns: &Namespace,
        id: &str,
        (runtime, spec): (&str, &[u8]),
        binary: &std::path::Path,
        bundle: &Bundle,
        command: &ShimCommand,
    ) -> Option<Shim> {
        if runtime != RUNC_V2 {
            return None;
        }
        let group = shim_group(spec).filter(|group| group != id)?;
        let leader = self.get(ns, &group).ok()?;
        if leader.command.binary != binary || !leader.socket_exists() {
            return None;
        }
        // The leader's shim serves the group only if the leader is in it
        // (a task named like the group may have joined another).
        let leader_group = std::fs::read(leader.bundle_path().join("config.json"))
            .ok()
            .map(|spec| shim_group(&spec).unwrap_or_else(|| group.clone()))?;
        if leader_group != group {
            return None;
        }
        let address = leader.address.clone();
        let file = bundle.path.join("address");
        if let Err(e) = std::fs::write(&file, &address) {
            tracing::debug!(id, error = %e, "write the group shim's address");
            return None;
        }
        match Shim::connect(bundle.clone(), address, command.clone(), None).await {
            Ok(shim) => Some(shim),
            Err(e) => {
                tracing::debug!(id, group, error = %e, "join the group's shim; starting one");
                let _ = std::fs::remove_file(&file);
                None
            }
        }
    }

    /// A scratch directory for a checkpoint image, in the daemon's state
    /// (so it can be moved into a bundle).
    pub fn checkpoint_scratch(&self) -> crate::error::Result<crate::checkpoint::ScratchDir> {
        crate::checkpoint::ScratchDir::new(&self.checkpoint_scratch_root())
    }

    /// Where scratch checkpoints go. Namespaces cannot start with a dot:
    /// no bundle directory meets it.
    fn checkpoint_scratch_root(&self) -> PathBuf {
        self.config
            .state
            .join(crate::bundle::PLUGIN_DIR)
            .join(".checkpoints")
    }

    /// Deletes task `id` (which must have exited): the shim's `Delete`,
    /// its shutdown, the bundle. Returns the exit.
    pub async fn delete(&self, ns: &Namespace, id: &str) -> Result<Exit> {
        let _busy = self.reserve(ns, id)?;
        let shim = self.get(ns, id)?;
        let began = Instant::now();
        let deleted = shim.delete("").await?;
        let shim_deleted = began.elapsed();
        shim.shutdown().await;
        let shut_down = began.elapsed();
        if let Err(e) = shim.bundle.delete() {
            tracing::warn!(id, error = %e, "remove bundle");
        }
        // Where a task delete goes: the shim's Delete (the runtime's
        // delete, the rootfs unmounted), its shutdown, the bundle.
        tracing::debug!(
            id,
            shim_delete_micros = shim_deleted.as_micros() as u64,
            shutdown_micros = (shut_down - shim_deleted).as_micros() as u64,
            bundle_micros = (began.elapsed() - shut_down).as_micros() as u64,
            "task deleted"
        );
        // Listed until its bundle is gone: a task missing from the listing
        // has left nothing behind. The reservation keeps the monitor's
        // cleanup away meanwhile.
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.remove(&key(ns, id));
        }
        Ok(deleted)
    }

    /// Whether `shim` still serves its task: not deleted, and not replaced
    /// by a new task of the same id (whose bundle is at the same path).
    fn is_current(&self, shim: &Arc<Shim>) -> bool {
        self.get(&shim.bundle.namespace, shim.id())
            .is_ok_and(|current| Arc::ptr_eq(&current, shim))
    }

    /// Watches a shim: when its connection fails while the task is still
    /// registered, the shim died and is cleaned up after.
    fn monitor(self: &Arc<Self>, shim: Arc<Shim>) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match shim.wait_raw().await {
                    // The task exited: the shim lives on until deleted;
                    // watch that it does.
                    Ok(_) => loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let Some(manager) = manager.upgrade() else {
                            return;
                        };
                        if !manager.is_current(&shim) {
                            return;
                        }
                        if shim.probe().await.is_err() {
                            manager.cleanup_if_current(&shim).await;
                            return;
                        }
                    },
                    Err(ttrpc::Error::RpcStatus(status)) => {
                        // The shim answered but not with an exit (the task
                        // went away under it): watch on while it is ours.
                        tracing::debug!(id = shim.id(), ?status, "wait");
                        let Some(manager) = manager.upgrade() else {
                            return;
                        };
                        if !manager.is_current(&shim) {
                            return;
                        }
                        drop(manager);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(_) => {
                        let Some(manager) = manager.upgrade() else {
                            return;
                        };
                        if manager.is_current(&shim) && shim.probe().await.is_err() {
                            manager.cleanup_if_current(&shim).await;
                        }
                        return;
                    }
                }
            }
        });
    }

    /// [`TaskManager::cleanup_dead`] for a shim the monitor found gone,
    /// unless its task was deleted or replaced meanwhile, or a create or
    /// delete of that id is under way.
    async fn cleanup_if_current(&self, shim: &Arc<Shim>) {
        let Ok(_busy) = self.reserve(&shim.bundle.namespace, shim.id()) else {
            return;
        };
        if self.is_current(shim) {
            self.cleanup_dead(&shim.bundle, &shim.command).await;
        }
    }

    fn publish<M: prost::Message>(&self, ns: &Namespace, topic: &str, name: &str, event: &M) {
        let payload = Payload {
            type_url: format!("containerd.events.{name}"),
            value: event.encode_to_vec(),
        };
        if let Err(e) = self.exchange.publish(ns, topic, payload) {
            tracing::warn!(topic, error = %e, "publish");
        }
    }

    /// After a shim died: its `delete` command kills and removes what is
    /// left of the container, the exit and delete are published, the
    /// bundle goes.
    async fn cleanup_dead(&self, bundle: &Bundle, command: &ShimCommand) {
        let (ns, id) = (&bundle.namespace, bundle.id.as_str());
        tracing::warn!(namespace = %ns, id, "shim is gone: cleaning up its task");
        let exit = match command.delete(bundle).await {
            Ok(deleted) => deleted,
            Err(e) => {
                tracing::warn!(id, error = %e, "shim delete");
                Exit {
                    pid: 0,
                    // containerd reports 255 when nothing better is known.
                    exit_status: 255,
                    exited_at: Some(SystemTime::now()),
                }
            }
        };
        // The bundle goes before the task leaves the listing and before
        // the events: whoever sees the task gone must find nothing left.
        if let Err(e) = bundle.delete() {
            tracing::warn!(id, error = %e, "remove bundle");
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.remove(&key(ns, id));
        }
        let exited_at = optional_timestamp(exit.exited_at.or_else(|| Some(SystemTime::now())));
        self.publish(
            ns,
            "/tasks/exit",
            "TaskExit",
            &ev::TaskExit {
                container_id: id.to_owned(),
                id: id.to_owned(),
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at,
            },
        );
        self.publish(
            ns,
            "/tasks/delete",
            "TaskDelete",
            &ev::TaskDelete {
                container_id: id.to_owned(),
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at,
                id: String::new(),
            },
        );
    }

    /// After a daemon restart: reconnects to every bundle's shim, several
    /// at once, each within the shim load timeout; those that are gone are
    /// cleaned up after (their exits published). Returns once every bundle
    /// is either served again or cleaned up.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        // Scratch checkpoints of calls the last daemon did not finish.
        let scratch = self.checkpoint_scratch_root();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(scratch)).await;
        let bundles = Bundle::list(&self.config.state)?;
        futures::stream::iter(bundles)
            .for_each_concurrent(RECOVER_PARALLEL, |(ns, id)| async move {
                self.recover_one(ns, id).await;
            })
            .await;
        Ok(())
    }

    async fn recover_one(self: &Arc<Self>, ns: Namespace, id: String) {
        let bundle = Bundle::locate(&self.config.root, &self.config.state, &ns, &id);
        let Some(binary) = bundle.shim_binary() else {
            // Never got as far as a shim: nothing runs.
            tracing::info!(namespace = %ns, id, "removing a bundle without a shim");
            let _ = bundle.delete();
            return;
        };
        let command = self.command(binary);
        let connected = match bundle.address() {
            Some(address) => {
                let log = open_log(&bundle).ok();
                match Shim::connect(bundle.clone(), address, command.clone(), log).await {
                    Ok(shim) => {
                        let shim = Arc::new(shim);
                        shim.probe().await.map(|_| shim)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None => Err(Error::NoAddress {
                id: id.clone(),
                bundle: bundle.path.clone(),
            }
            .into()),
        };
        match connected {
            Ok(shim) => {
                // A shim without a task: the last daemon died after the
                // task's Delete and before the shim's Shutdown, or between
                // starting the shim and its Create. Finish what it began,
                // or the shim would wait forever for a daemon that does
                // not know it.
                if let Err(e) = shim.list_state().await {
                    // A shim that stays (its socket kept) is still creating
                    // the task the last daemon asked for: it is served
                    // like any other, and lists the task once created.
                    if e.is_not_found() {
                        shim.shutdown().await;
                        if !shim.socket_exists() {
                            tracing::info!(namespace = %ns, id, "shim served no task: shut down");
                            if let Err(e) = bundle.delete() {
                                tracing::warn!(id, error = %e, "remove bundle");
                            }
                            return;
                        }
                    }
                }
                tracing::info!(namespace = %ns, id, "reconnected to shim");
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(key(&ns, &id), shim.clone());
                }
                self.monitor(shim);
            }
            Err(e) => {
                tracing::info!(namespace = %ns, id, error = %e, "shim is gone");
                self.cleanup_dead(&bundle, &command).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shim_group;

    #[test]
    fn the_group_is_the_runc_group_annotation_else_the_pod() {
        let spec = |annotations: &str| {
            format!(r#"{{"ociVersion":"1.0.2","annotations":{{{annotations}}}}}"#)
        };
        assert_eq!(
            shim_group(spec(r#""io.kubernetes.cri.sandbox-id":"pod1""#).as_bytes()).as_deref(),
            Some("pod1")
        );
        assert_eq!(
            shim_group(
                spec(r#""io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g""#)
                    .as_bytes()
            )
            .as_deref(),
            Some("g")
        );
        // The first annotation present decides, empty or not (as the shim
        // reads it): an empty one names no group.
        assert_eq!(
            shim_group(
                spec(r#""io.containerd.runc.v2.group":"","io.kubernetes.cri.sandbox-id":"p""#)
                    .as_bytes()
            ),
            None
        );
        assert_eq!(shim_group(spec(r#""other":"x""#).as_bytes()), None);
        assert_eq!(shim_group(br#"{"ociVersion":"1.0.2"}"#), None);
        assert_eq!(shim_group(b"not json"), None);
    }
}
