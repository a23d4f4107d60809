//! The `containerd.task.v2.Task` ttrpc service of a shim: its containers
//! (one, or all of a group: a pod's), each with its init process and exec
//! processes, driven through runc, exits from the reaper, events to the
//! daemon. Every request names its container by `id`.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crated_api::containerd::events as ev;
use crated_api::containerd::runc::v1::{CheckpointOptions, Options as RuncOptions};
use crated_api::containerd::task::v2 as pb;
use crated_api::containerd::task::v2::task_ttrpc::Task;
use crated_api::containerd::v1::types::{ProcessInfo, Status};
use crated_core::mount::{mount_all, MountGuard};
use crated_core::Namespace;
use prost::Message as _;
use tokio::sync::watch;
use ttrpc::r#async::TtrpcContext;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::io::{self, ConsoleSocket};
use crate::reaper::{Exit, Reaper};
use crate::runc::{CriuOptions, ProcessIo, Runc};

fn ts(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// How long a Delete waits for a process's output relays to copy what it
/// wrote (containerd's shim waits as long).
const RELAY_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// One process (the init or an exec).
struct Process {
    pid: i32,
    /// Its exit, once reaped; waiters may subscribe before it starts.
    exit: watch::Sender<Option<Exit>>,
    started: bool,
    paused: bool,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    console: Option<Arc<OwnedFd>>,
    /// An exec's process spec, until it starts.
    spec: Option<Vec<u8>>,
    /// Its output relays, waited for by its Delete.
    relays: io::Relays,
    /// Held by a Start until its start event is out, and taken before the
    /// exit is published: a client waits for the exit that follows the
    /// start, so an exit published first (a process that ends at once)
    /// would never be seen.
    start_gate: Arc<tokio::sync::Mutex<()>>,
}

impl Process {
    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    fn status(&self) -> Status {
        if self.exited().is_some() {
            Status::Stopped
        } else if self.paused {
            Status::Paused
        } else if self.started {
            Status::Running
        } else {
            Status::Created
        }
    }
}

/// A task created from a checkpoint: restored by its Start.
struct Restore {
    criu: CriuOptions,
}

struct Container {
    bundle: PathBuf,
    /// The runtime options of the Create (criu work path, no pivot, the
    /// owner of its processes' stdio pipes).
    options: RuncOptions,
    /// Set until a task created from a checkpoint is started.
    restore: Option<Restore>,
    /// `linux.cgroupsPath` of the spec, naming the cgroup in errors.
    cgroups_path: String,
    /// Where the init runs, for stats and OOM events.
    cgroup: Cgroup,
    runc: Runc,
    rootfs: Option<MountGuard>,
    init: Process,
    execs: HashMap<String, Process>,
}

/// The service.
pub struct Service {
    publisher: Arc<Publisher>,
    reaper: Reaper,
    namespace: Namespace,
    /// The containers this shim serves, by id.
    containers: Mutex<HashMap<String, Container>>,
    /// Told when the shim may exit.
    pub shutdown: Arc<tokio::sync::Notify>,
    /// The shim's socket, removed as soon as it is shutting down so a new
    /// task of the same id starts a new shim rather than finding this one.
    socket: PathBuf,
    /// Its inode when bound, to tell it from a newer shim's.
    socket_ino: Option<u64>,
    /// Whether a task was ever created here.
    ever_created: std::sync::atomic::AtomicBool,
    /// Set, under both locks, once the shim decided to exit: a Create that
    /// comes after (a daemon that joined the group's shim just before its
    /// last container went) is refused rather than left without a shim.
    closing: std::sync::atomic::AtomicBool,
    /// The containers whose `Create` is under way: not there yet, but a
    /// `Shutdown` (from a daemon recovering after a crash mid-create) must
    /// not leave runc's container without its shim, and a second `Create`
    /// of the same id must be refused.
    creating: Mutex<HashSet<String>>,
}

/// Takes an id out of [`Service::creating`] when its `Create` ends,
/// however it ends.
struct Creating<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

/// criu's work dir: the `CriuWorkPath` option, else `criu-work` in the
/// bundle.
fn criu_work_path(options: &RuncOptions, bundle: &std::path::Path) -> PathBuf {
    if options.criu_work_path.is_empty() {
        bundle.join("criu-work")
    } else {
        PathBuf::from(&options.criu_work_path)
    }
}

/// Copies criu's `log` out of its work dir into the bundle as
/// `criu-<log>` (containerd's `criu-dump.log`), which outlives the work
/// dir; returns criu's first error and where the whole log is.
fn keep_criu_log(work: &std::path::Path, log: &str, bundle: &std::path::Path) -> String {
    let source = work.join(log);
    let kept = bundle.join(format!("criu-{log}"));
    let path = match std::fs::copy(&source, &kept) {
        Ok(_) => kept,
        // Named only where it is: criu that fails before it starts (runc's
        // version check) writes none.
        Err(_) if source.exists() => source,
        Err(_) => return "criu wrote no log".to_owned(),
    };
    // criu's first fatal error is the cause; later ones are its
    // unwinding. (It reports a failed rlimit raise and carries on.)
    let first_error = std::fs::read_to_string(&path).ok().and_then(|text| {
        text.lines()
            .filter(|l| l.contains("Error (") && !l.contains("rlimit:"))
            .map(|l| l.trim().to_owned())
            .next()
    });
    match first_error {
        Some(error) => format!("{error}; log: {}", path.display()),
        None => format!("log: {}", path.display()),
    }
}

/// The ttrpc status of an error: its kind's code and its message.
fn err(e: Error) -> ttrpc::Error {
    e.into()
}

/// Runs `work` as a task of its own and waits for it. ttrpc drops a
/// handler's future when its connection goes (a daemon killed mid-call):
/// a change half made (runc's container created but not yet recorded
/// here, so no later Shutdown knows of it) would lose its owner.
/// Detached, the change completes either way; only the answer is lost.
/// These are the calls that use most memory (a create parses the whole
/// spec and runs its whole future on the stack for a moment), so once one
/// is done what it freed is given back soon (`memory`).
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> ttrpc::Result<T> {
    let result = match tokio::spawn(work).await {
        Ok(done) => done.map_err(err),
        Err(e) => Err(ttrpc::Error::Others(format!("shim call failed: {e}"))),
    };
    crate::memory::release_soon();
    result
}

/// The runc options among runtime options (a Create's, or `start`'s
/// stdin): the defaults when there are none or they are another
/// runtime's, as containerd's shim ignores those; an error naming them
/// when they are runc's but do not decode.
pub fn runc_options(options: Option<&prost_types::Any>) -> Result<RuncOptions> {
    match options {
        Some(o) if o.type_url.ends_with("containerd.runc.v1.Options") => {
            RuncOptions::decode(o.value.as_slice()).map_err(|source| Error::RuntimeOptions {
                type_url: o.type_url.clone(),
                source,
            })
        }
        _ => Ok(RuncOptions::default()),
    }
}

/// The file in the bundle that keeps a Create's runc options, for the
/// `delete` of a shim that is gone (containerd's shim keeps the same file).
const OPTIONS_FILE: &str = "options.json";

/// Keeps the runc options `delete` needs to find the container (binary,
/// root, cgroup driver) in the bundle, as JSON with containerd's names.
fn save_options(bundle: &std::path::Path, options: &RuncOptions) -> Result<()> {
    let json = serde_json::json!({
        "binary_name": options.binary_name,
        "root": options.root,
        "systemd_cgroup": options.systemd_cgroup,
        "criu_path": options.criu_path,
    });
    let path = bundle.join(OPTIONS_FILE);
    std::fs::write(&path, json.to_string()).map_err(|e| Error::io("write", &path, e))
}

/// The runc options [`save_options`] kept in `bundle`; the defaults when
/// there are none (a Create that never got that far).
pub fn saved_options(bundle: &std::path::Path) -> Result<RuncOptions> {
    let path = bundle.join(OPTIONS_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RuncOptions::default()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| Error::SavedOptions {
            path: path.clone(),
            source,
        })?;
    let text_of = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
    Ok(RuncOptions {
        binary_name: text_of("binary_name"),
        root: text_of("root"),
        criu_path: text_of("criu_path"),
        systemd_cgroup: json["systemd_cgroup"].as_bool().unwrap_or(false),
        ..RuncOptions::default()
    })
}

/// The runc of runtime options `opts`.
pub fn runc_with(
    namespace: &Namespace,
    bundle: &std::path::Path,
    opts: RuncOptions,
    reaper: Reaper,
) -> Runc {
    let binary = if opts.binary_name.is_empty() {
        "runc".to_owned()
    } else {
        opts.binary_name
    };
    let root = if opts.root.is_empty() {
        "/run/containerd/runc".to_owned()
    } else {
        opts.root
    };
    Runc {
        binary: binary.into(),
        root: PathBuf::from(root).join(namespace.as_str()),
        systemd_cgroup: opts.systemd_cgroup,
        criu: Some(opts.criu_path)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        log: bundle.join("log.json"),
        reaper,
    }
}

impl Service {
    /// The service, serving no container yet.
    pub fn new(
        namespace: Namespace,
        publisher: Arc<Publisher>,
        reaper: Reaper,
        socket: PathBuf,
    ) -> Arc<Self> {
        Arc::new(Self {
            publisher,
            reaper,
            namespace,
            containers: Mutex::new(HashMap::new()),
            shutdown: Arc::new(tokio::sync::Notify::new()),
            socket_ino: std::fs::metadata(&socket)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok(),
            socket,
            ever_created: std::sync::atomic::AtomicBool::new(false),
            closing: std::sync::atomic::AtomicBool::new(false),
            creating: Mutex::new(HashSet::new()),
        })
    }

    /// When no task is here or being created and `wanted`, marks the shim
    /// closing, under the same locks, so no Create gets in after, and
    /// returns true. A poisoned lock counts as a task: the shim stays, it
    /// may hold one.
    fn close_if_idle(&self, wanted: bool) -> bool {
        // Both locks at once, in `create_task`'s order: a Create finishing
        // between two separate looks would be in neither.
        let Ok(containers) = self.containers.lock() else {
            return false;
        };
        let Ok(creating) = self.creating.lock() else {
            return false;
        };
        if wanted && containers.is_empty() && creating.is_empty() {
            self.closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Exits: the socket goes first, so a `start` of the group makes a new
    /// shim instead of joining this one.
    fn exit(&self) {
        self.remove_socket();
        self.shutdown.notify_one();
    }

    /// Shuts down if no task was ever created (see `IDLE_LIMIT`).
    pub fn exit_if_unused(&self) {
        let never = !self.ever_created.load(std::sync::atomic::Ordering::SeqCst);
        if self.close_if_idle(never) {
            log!("shim: no task created within the idle limit; exiting");
            self.exit();
        }
    }

    /// Removes the socket file if it is still ours (a newer shim of the
    /// same id may have bound that path since).
    fn remove_socket(&self) {
        let ino = std::fs::metadata(&self.socket)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok();
        if ino.is_some() && ino == self.socket_ino {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    /// Container `id`'s runc.
    fn runc(&self, id: &str) -> Result<Runc> {
        self.with(id, |c| Ok(c.runc.clone()))
    }

    /// `runc pause` or `resume` of container `id`, its state, and
    /// `/tasks/paused|resumed`.
    async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.runc(id)?.pause(id, paused).await?;
        self.with(id, |c| {
            c.init.paused = paused;
            Ok(())
        })?;
        let container_id = id.to_owned();
        if paused {
            self.publisher
                .publish(
                    "/tasks/paused",
                    "TaskPaused",
                    &ev::TaskPaused { container_id },
                )
                .await;
        } else {
            self.publisher
                .publish(
                    "/tasks/resumed",
                    "TaskResumed",
                    &ev::TaskResumed { container_id },
                )
                .await;
        }
        Ok(())
    }

    /// Runs `f` on container `id`, under the lock.
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut guard = self.containers.lock().map_err(|_| Error::Poisoned)?;
        let c = guard
            .get_mut(id)
            .ok_or_else(|| Error::NotCreated { id: id.to_owned() })?;
        f(c)
    }

    /// Process `exec_id` (the init when empty) of task `id`.
    fn process<'a>(c: &'a mut Container, id: &str, exec_id: &str) -> Result<&'a mut Process> {
        if exec_id.is_empty() {
            Ok(&mut c.init)
        } else {
            c.execs
                .get_mut(exec_id)
                .ok_or_else(|| Error::ProcessNotFound {
                    id: id.to_owned(),
                    exec_id: exec_id.to_owned(),
                })
        }
    }

    /// Publishes `/tasks/oom` for container `id` each time the kernel's
    /// OOM killer acts in `cgroup`.
    fn watch_oom(&self, id: &str, cgroup: &Cgroup) {
        let (publisher, id) = (self.publisher.clone(), id.to_owned());
        let runtime = tokio::runtime::Handle::current();
        crate::oom::watch(cgroup, move || {
            let (publisher, id) = (publisher.clone(), id.clone());
            runtime.spawn(async move {
                publisher
                    .publish("/tasks/oom", "TaskOOM", &ev::TaskOom { container_id: id })
                    .await;
            });
        });
    }

    /// Records the exit of a process of container `container_id` when the
    /// reaper sees it (`reaped`) into the process's own watch (`to`), then
    /// publishes it once no start of it is under way (`start_gate`).
    fn watch_exit(
        self: &Arc<Self>,
        container_id: String,
        exec_id: String,
        pid: i32,
        mut reaped: watch::Receiver<Option<Exit>>,
        (to, start_gate): (watch::Sender<Option<Exit>>, Arc<tokio::sync::Mutex<()>>),
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let exit = loop {
                if let Some(exit) = *reaped.borrow_and_update() {
                    break exit;
                }
                if reaped.changed().await.is_err() {
                    // The reaper drops its sender once it has sent.
                    match *reaped.borrow() {
                        Some(exit) => break exit,
                        None => return,
                    }
                }
            };
            to.send_replace(Some(exit));
            let started = start_gate.lock().await;
            let id = if exec_id.is_empty() {
                container_id.clone()
            } else {
                exec_id.clone()
            };
            me.publisher
                .publish(
                    "/tasks/exit",
                    "TaskExit",
                    &ev::TaskExit {
                        container_id: container_id.clone(),
                        id,
                        pid: pid as u32,
                        exit_status: exit.status,
                        exited_at: Some(ts(exit.at)),
                    },
                )
                .await;
            drop(started);
            // The init gone, its execs go too (as containerd's shim).
            if exec_id.is_empty() {
                let pids: Vec<i32> = me
                    .containers
                    .lock()
                    .map(|c| {
                        c.get(&container_id)
                            .map(|c| {
                                c.execs
                                    .values()
                                    .filter(|p| p.exited().is_none() && p.pid > 0)
                                    .map(|p| p.pid)
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        });
    }

    /// Starts a process through `launch` (runc create, exec or restore)
    /// with its stdio: pipes relayed to the fifos for a task's init (which
    /// criu can checkpoint) or for any process whose pipes have an
    /// `owner`, the fifos handed over directly for an exec, or a console
    /// socket whose pty master is then copied to and from them. Returns
    /// the pid `launch` reports, the master and the output relays.
    async fn launch<F, Fut>(
        &self,
        id: &str,
        (init, owner): (bool, Option<io::Owner>),
        terminal: bool,
        (stdin, stdout, stderr): (&str, &str, &str),
        launch: F,
    ) -> Result<(i32, Option<Arc<OwnedFd>>, io::Relays)>
    where
        F: FnOnce(Option<PathBuf>, ProcessIo) -> Fut,
        Fut: std::future::Future<Output = Result<i32>>,
    {
        let ns = self.namespace.as_str();
        let (console, (io, relays)) = if terminal {
            let io = (ProcessIo::default(), io::Relays::default());
            (Some(ConsoleSocket::new()?), io)
        } else {
            let stdio = io::stdio((stdin, stdout, stderr), id, ns, init, owner)?;
            (None, stdio)
        };
        let console_path = console.as_ref().map(|c| c.path.clone());
        let receiving = console.map(|c| tokio::task::spawn_blocking(move || c.receive()));
        let pid = match launch(console_path.clone(), io).await {
            Ok(pid) => pid,
            Err(e) => {
                // The receiving thread waits in accept: a connection of our
                // own (with no pty in it) ends it, and the socket goes.
                if let Some(path) = &console_path {
                    let _ = std::os::unix::net::UnixStream::connect(path);
                }
                if let Some(r) = receiving {
                    let _ = r.await;
                }
                return Err(e);
            }
        };
        let (master, relays) = match receiving {
            Some(r) => {
                let master = r.await.map_err(|source| Error::ConsoleTask { source })??;
                let relays = io::copy_console(&master, stdin, stdout)?;
                (Some(Arc::new(master)), relays)
            }
            None => (None, relays),
        };
        Ok((pid, master, relays))
    }

    async fn create_task(
        self: &Arc<Self>,
        req: pb::CreateTaskRequest,
    ) -> Result<pb::CreateTaskResponse> {
        // Both locks held: a Create of this id that just finished is in
        // `containers` by the time it leaves `creating`.
        {
            let containers = self.containers.lock().map_err(|_| Error::Poisoned)?;
            let mut creating = self.creating.lock().map_err(|_| Error::Poisoned)?;
            if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::ShuttingDown { id: req.id });
            }
            if containers.contains_key(&req.id) || !creating.insert(req.id.clone()) {
                return Err(Error::AlreadyCreated { id: req.id });
            }
        }
        let _creating = Creating {
            set: &self.creating,
            id: req.id.clone(),
        };
        let bundle = PathBuf::from(&req.bundle);
        let options = runc_options(req.options.as_ref())?;
        let runc = runc_with(
            &self.namespace,
            &bundle,
            options.clone(),
            self.reaper.clone(),
        );
        save_options(&bundle, &options)?;
        let mounts: Vec<_> = req
            .rootfs
            .iter()
            .cloned()
            .map(crated_api::convert::mount_from_pb)
            .collect();
        let rootfs = if mounts.is_empty() {
            None
        } else {
            let target = bundle.join("rootfs");
            let mounted = mount_all(&mounts, &target).map_err(|e| Error::Rootfs {
                op: "mount",
                path: target,
                source: Box::new(e),
            })?;
            Some(mounted)
        };
        // ID-mapped copies of the mounts that ask for them, for runc to
        // bind; detached once runc has created the container. Not for a
        // restore, which runs no runc until Start (not built there: the
        // mappings stay in the config for a runc that performs them).
        let staged = if req.checkpoint.is_empty() {
            crate::idmapped::stage(&bundle)
        } else {
            Ok(None)
        };
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => {
                if let Some(guard) = rootfs {
                    let _ = guard.unmount();
                }
                return Err(e);
            }
        };
        // From a checkpoint, nothing runs until Start restores it (as
        // containerd's createdCheckpointState): the stdio is opened then.
        let restore = (!req.checkpoint.is_empty()).then(|| Restore {
            criu: CriuOptions {
                image_path: PathBuf::from(&req.checkpoint),
                work_path: criu_work_path(&options, &bundle),
                parent_path: Some(req.parent_checkpoint.clone()).filter(|p| !p.is_empty()),
                ..Default::default()
            },
        });
        // Held until the init's pid is watched: it may exit before that.
        let _window = self.reaper.window();
        let created = if restore.is_some() {
            Ok((0, None, io::Relays::default()))
        } else {
            let stdio = (req.stdin.as_str(), req.stdout.as_str(), req.stderr.as_str());
            let (runc, id, bundle) = (&runc, &req.id, &bundle);
            let flags = crate::runc::CreateFlags {
                no_pivot: options.no_pivot_root,
                no_new_keyring: options.no_new_keyring,
            };
            self.launch(
                id,
                (true, io::Owner::of(&options)),
                req.terminal,
                stdio,
                move |console, io| async move {
                    runc.create(id, bundle, flags, console.as_deref(), io).await
                },
            )
            .await
        };
        drop(staged);
        let (pid, master, relays) = match created {
            Ok(done) => done,
            Err(e) => {
                let _ = runc.delete(&req.id, true).await;
                if let Some(guard) = rootfs {
                    let _ = guard.unmount();
                }
                return Err(e);
            }
        };
        let (exit, _) = watch::channel(None);
        let start_gate = Arc::new(tokio::sync::Mutex::new(()));
        if restore.is_none() {
            let watched = (exit.clone(), Arc::clone(&start_gate));
            self.watch_exit(
                req.id.clone(),
                String::new(),
                pid,
                self.reaper.watch(pid),
                watched,
            );
        }
        let init = Process {
            pid,
            exit,
            started: false,
            paused: false,
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            console: master,
            spec: None,
            relays,
            start_gate,
        };
        self.ever_created
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let cgroups_path = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_owned))
            .unwrap_or_default();
        // Read from the init, which waits in runc's exec fifo until the
        // start; a restore has none before its start, which reads it then.
        let root = std::path::Path::new(crate::CGROUP_ROOT);
        let cgroup = match restore {
            None => Cgroup::of_pid(root, pid),
            Some(_) => Cgroup::Unknown,
        };
        let cgroup = match cgroup {
            Cgroup::Unknown => Cgroup::of_spec_path(root, &cgroups_path),
            found => found,
        };
        if restore.is_none() {
            self.watch_oom(&req.id, &cgroup);
        }
        if let Ok(mut c) = self.containers.lock() {
            c.insert(
                req.id.clone(),
                Container {
                    bundle: bundle.clone(),
                    options,
                    restore,
                    cgroups_path,
                    cgroup,
                    runc,
                    rootfs,
                    init,
                    execs: HashMap::new(),
                },
            );
        }
        self.publisher
            .publish(
                "/tasks/create",
                "TaskCreate",
                &ev::TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: Some(ev::TaskIo {
                        stdin: req.stdin,
                        stdout: req.stdout,
                        stderr: req.stderr,
                        terminal: req.terminal,
                    }),
                    checkpoint: req.checkpoint.clone(),
                    pid: pid as u32,
                },
            )
            .await;
        Ok(pb::CreateTaskResponse { pid: pid as u32 })
    }

    /// Start of a task created from a checkpoint: `runc restore`, then
    /// the restored init is watched as a started one. A failed restore
    /// keeps the task restorable (its checkpoint stays pending).
    async fn restore(self: &Arc<Self>, id: &str, runc: &Runc, restore: Restore) -> Result<i32> {
        let (bundle, (no_pivot, owner), terminal, stdin, stdout, stderr) = self.with(id, |c| {
            Ok((
                c.bundle.clone(),
                (c.options.no_pivot_root, io::Owner::of(&c.options)),
                c.init.terminal,
                c.init.stdin.clone(),
                c.init.stdout.clone(),
                c.init.stderr.clone(),
            ))
        })?;
        let mut criu = restore.criu.clone();
        criu.terminal = terminal;
        let (bundle_ref, criu_ref) = (&bundle, &criu);
        let _window = self.reaper.window();
        let restored = self
            .launch(
                id,
                (true, owner),
                terminal,
                (&stdin, &stdout, &stderr),
                move |console, io| async move {
                    runc.restore(id, bundle_ref, criu_ref, no_pivot, console.as_deref(), io)
                        .await
                },
            )
            .await;
        let (pid, master, relays) = match restored {
            Ok(done) => done,
            Err(e) => {
                let log = keep_criu_log(&criu.work_path, "restore.log", &bundle);
                let _ = self.with(id, |c| {
                    c.restore = Some(restore);
                    Ok(())
                });
                return Err(Error::Criu {
                    action: "restore",
                    log,
                    source: Box::new(e),
                });
            }
        };
        let cgroup = Cgroup::of_pid(std::path::Path::new(crate::CGROUP_ROOT), pid);
        self.watch_oom(id, &cgroup);
        let watched = self.with(id, |c| {
            c.init.pid = pid;
            c.init.started = true;
            c.init.console = master;
            c.init.relays = relays;
            if cgroup != Cgroup::Unknown {
                c.cgroup = cgroup;
            }
            Ok((c.init.exit.clone(), Arc::clone(&c.init.start_gate)))
        })?;
        self.watch_exit(
            id.to_owned(),
            String::new(),
            pid,
            self.reaper.watch(pid),
            watched,
        );
        Ok(pid)
    }

    /// `runc checkpoint` of the init into `req.path`, with the
    /// `containerd.runc.v1.CheckpointOptions` of the request.
    async fn checkpoint_task(&self, req: pb::CheckpointTaskRequest) -> Result<()> {
        let opts = match &req.options {
            Some(any)
                if any
                    .type_url
                    .ends_with("containerd.runc.v1.CheckpointOptions") =>
            {
                CheckpointOptions::decode(any.value.as_slice())
                    .map_err(|source| Error::CheckpointOptions { source })?
            }
            Some(any) if !any.type_url.is_empty() => {
                return Err(Error::CheckpointOptionsType {
                    type_url: any.type_url.clone(),
                })
            }
            _ => CheckpointOptions::default(),
        };
        let id = req.id.as_str();
        if req.path.is_empty() {
            return Err(Error::NoImagePath { id: id.to_owned() });
        }
        let (runc, bundle, work) = self.with(id, |c| {
            if !c.init.started || c.init.exited().is_some() {
                return Err(Error::NotRunning { id: id.to_owned() });
            }
            let work = if opts.work_path.is_empty() {
                c.bundle.join("criu-work")
            } else {
                PathBuf::from(&opts.work_path)
            };
            Ok((c.runc.clone(), c.bundle.clone(), work))
        })?;
        let criu = CriuOptions {
            image_path: PathBuf::from(&req.path),
            work_path: work.clone(),
            parent_path: None,
            open_tcp: opts.open_tcp,
            external_unix_sockets: opts.external_unix_sockets,
            terminal: opts.terminal,
            file_locks: opts.file_locks,
            empty_namespaces: opts.empty_namespaces.clone(),
            cgroups_mode: opts.cgroups_mode.clone(),
        };
        let done = runc.checkpoint(id, &criu, !opts.exit).await;
        let result = done.map_err(|e| Error::Criu {
            action: "dump",
            log: keep_criu_log(&work, "dump.log", &bundle),
            source: Box::new(e),
        });
        // A work path of our own is scratch; one the caller chose is kept.
        if opts.work_path.is_empty() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result
    }

    async fn start_process(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<pb::StartResponse> {
        let runc = self.runc(id)?;
        let gate = self.with(id, |c| {
            Ok(Arc::clone(&Self::process(c, id, exec_id)?.start_gate))
        })?;
        // Until the start event is out, the exit waits (see `start_gate`).
        let _starting = gate.lock_owned().await;
        if exec_id.is_empty() {
            let pid = match self.with(id, |c| Ok(c.restore.take()))? {
                Some(restore) => self.restore(id, &runc, restore).await?,
                None => {
                    let init = self.with(id, |c| Ok(c.init.pid))?;
                    runc.start(id, init).await?;
                    self.with(id, |c| {
                        c.init.started = true;
                        Ok(c.init.pid)
                    })?
                }
            };
            self.publisher
                .publish(
                    "/tasks/start",
                    "TaskStart",
                    &ev::TaskStart {
                        container_id: id.to_owned(),
                        pid: pid as u32,
                    },
                )
                .await;
            return Ok(pb::StartResponse { pid: pid as u32 });
        }
        let (bundle, spec, stdin, stdout, stderr, (terminal, owner)) = self.with(id, |c| {
            let bundle = c.bundle.clone();
            let owner = io::Owner::of(&c.options);
            let p = Self::process(c, id, exec_id)?;
            let spec = p.spec.clone().ok_or_else(|| Error::AlreadyStarted {
                id: id.to_owned(),
                exec_id: exec_id.to_owned(),
            })?;
            Ok((
                bundle,
                spec,
                p.stdin.clone(),
                p.stdout.clone(),
                p.stderr.clone(),
                (p.terminal, owner),
            ))
        })?;
        let process_file = bundle.join(format!("{exec_id}.process.json"));
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        std::fs::write(&process_file, &spec).map_err(|e| Error::io("write", &process_file, e))?;
        let (runc_ref, process, pid_path) = (&runc, &process_file, &pid_file);
        let _window = self.reaper.window();
        let execd = self
            .launch(
                id,
                (false, owner),
                terminal,
                (&stdin, &stdout, &stderr),
                move |console, io| async move {
                    runc_ref
                        .exec(id, process, pid_path, console.as_deref(), io)
                        .await
                },
            )
            .await;
        let _ = std::fs::remove_file(&process_file);
        let (pid, master, relays) = execd?;
        let watched = self.with(id, |c| {
            let p = Self::process(c, id, exec_id)?;
            p.pid = pid;
            p.started = true;
            p.spec = None;
            p.console = master;
            p.relays = relays;
            Ok((p.exit.clone(), Arc::clone(&p.start_gate)))
        })?;
        self.watch_exit(
            id.to_owned(),
            exec_id.to_owned(),
            pid,
            self.reaper.watch(pid),
            watched,
        );
        self.publisher
            .publish(
                "/tasks/exec-started",
                "TaskExecStarted",
                &ev::TaskExecStarted {
                    container_id: id.to_owned(),
                    exec_id: exec_id.to_owned(),
                    pid: pid as u32,
                },
            )
            .await;
        Ok(pb::StartResponse { pid: pid as u32 })
    }

    async fn delete_process(
        self: &Arc<Self>,
        id: &str,
        exec_id: &str,
    ) -> Result<pb::DeleteResponse> {
        if !exec_id.is_empty() {
            let p = self.with(id, |c| {
                let p = Self::process(c, id, exec_id)?;
                if p.started && p.exited().is_none() {
                    return Err(Error::ProcessRunning {
                        id: id.to_owned(),
                        exec_id: exec_id.to_owned(),
                    });
                }
                let exit = p.exited();
                let pid = p.pid;
                let relays = std::mem::take(&mut p.relays);
                c.execs.remove(exec_id);
                Ok((pid, exit, relays))
            })?;
            p.2.drained(RELAY_DRAIN).await;
            let exit = p.1.unwrap_or(Exit {
                status: 0,
                at: SystemTime::now(),
            });
            self.publisher
                .publish(
                    "/tasks/delete",
                    "TaskDelete",
                    &ev::TaskDelete {
                        container_id: id.to_owned(),
                        pid: p.0 as u32,
                        exit_status: exit.status,
                        exited_at: Some(ts(exit.at)),
                        id: exec_id.to_owned(),
                    },
                )
                .await;
            return Ok(pb::DeleteResponse {
                pid: p.0 as u32,
                exit_status: exit.status,
                exited_at: Some(ts(exit.at)),
            });
        }
        let (runc, pid, exit, running, restorable, relays) = self.with(id, |c| {
            let exit = c.init.exited();
            let running = c.init.started && exit.is_none();
            let relays = if running {
                io::Relays::default()
            } else {
                std::mem::take(&mut c.init.relays)
            };
            Ok((
                c.runc.clone(),
                c.init.pid,
                exit,
                running,
                c.restore.is_some(),
                relays,
            ))
        })?;
        if running {
            return Err(Error::TaskRunning { id: id.to_owned() });
        }
        relays.drained(RELAY_DRAIN).await;
        // A created task that never started: runc kills its init. One
        // from a checkpoint that was never restored has nothing in runc.
        if !restorable {
            match exit {
                Some(_) => runc.delete_stopped(id).await?,
                None => runc.delete(id, true).await?,
            }
        }
        let exit = exit.unwrap_or(Exit {
            status: 137,
            at: SystemTime::now(),
        });
        let rootfs = self
            .containers
            .lock()
            .ok()
            .and_then(|mut c| c.get_mut(id).and_then(|c| c.rootfs.take()));
        if let Some(guard) = rootfs {
            let path = guard.path().to_owned();
            guard.unmount().map_err(|e| Error::Rootfs {
                op: "unmount",
                path,
                source: Box::new(e),
            })?;
        }
        if let Ok(mut c) = self.containers.lock() {
            c.remove(id);
        }
        self.publisher
            .publish(
                "/tasks/delete",
                "TaskDelete",
                &ev::TaskDelete {
                    container_id: id.to_owned(),
                    pid: pid as u32,
                    exit_status: exit.status,
                    exited_at: Some(ts(exit.at)),
                    id: String::new(),
                },
            )
            .await;
        Ok(pb::DeleteResponse {
            pid: pid as u32,
            exit_status: exit.status,
            exited_at: Some(ts(exit.at)),
        })
    }

    async fn wait_process(&self, id: &str, exec_id: &str) -> Result<pb::WaitResponse> {
        let mut rx = self.with(id, |c| Ok(Self::process(c, id, exec_id)?.exit.subscribe()))?;
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return Ok(pb::WaitResponse {
                    exit_status: exit.status,
                    exited_at: Some(ts(exit.at)),
                });
            }
            rx.changed().await.map_err(|_| Error::ExitWatchClosed {
                id: id.to_owned(),
                exec_id: exec_id.to_owned(),
            })?;
        }
    }
}

#[async_trait::async_trait]
impl Task for ServiceHandle {
    async fn state(
        &self,
        _: &TtrpcContext,
        req: pb::StateRequest,
    ) -> ttrpc::Result<pb::StateResponse> {
        self.0
            .with(&req.id, |c| {
                let bundle = c.bundle.display().to_string();
                let p = Service::process(c, &req.id, &req.exec_id)?;
                let exit = p.exited();
                Ok(pb::StateResponse {
                    id: req.id.clone(),
                    bundle,
                    pid: p.pid.max(0) as u32,
                    status: p.status() as i32,
                    stdin: p.stdin.clone(),
                    stdout: p.stdout.clone(),
                    stderr: p.stderr.clone(),
                    terminal: p.terminal,
                    exit_status: exit.map(|e| e.status).unwrap_or(0),
                    exited_at: exit.map(|e| ts(e.at)),
                    exec_id: req.exec_id.clone(),
                })
            })
            .map_err(err)
    }

    async fn create(
        &self,
        _: &TtrpcContext,
        req: pb::CreateTaskRequest,
    ) -> ttrpc::Result<pb::CreateTaskResponse> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.create_task(req).await }).await
    }

    async fn start(
        &self,
        _: &TtrpcContext,
        req: pb::StartRequest,
    ) -> ttrpc::Result<pb::StartResponse> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.start_process(&req.id, &req.exec_id).await }).await
    }

    async fn delete(
        &self,
        _: &TtrpcContext,
        req: pb::DeleteRequest,
    ) -> ttrpc::Result<pb::DeleteResponse> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.delete_process(&req.id, &req.exec_id).await }).await
    }

    async fn pids(
        &self,
        _: &TtrpcContext,
        req: pb::PidsRequest,
    ) -> ttrpc::Result<pb::PidsResponse> {
        let runc = self.0.runc(&req.id).map_err(err)?;
        let pids = runc.ps(&req.id).await.map_err(err)?;
        Ok(pb::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo { pid, info: None })
                .collect(),
        })
    }

    async fn pause(&self, _: &TtrpcContext, req: pb::PauseRequest) -> ttrpc::Result<()> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.set_paused(&req.id, true).await }).await
    }

    async fn resume(&self, _: &TtrpcContext, req: pb::ResumeRequest) -> ttrpc::Result<()> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.set_paused(&req.id, false).await }).await
    }

    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: pb::CheckpointTaskRequest,
    ) -> ttrpc::Result<()> {
        let s = Arc::clone(&self.0);
        to_completion(async move { s.checkpoint_task(req).await }).await
    }

    async fn kill(&self, _: &TtrpcContext, req: pb::KillRequest) -> ttrpc::Result<()> {
        if req.exec_id.is_empty() {
            let (restoring, exited) = self
                .0
                .with(&req.id, |c| {
                    Ok((c.restore.is_some(), c.init.exited().is_some()))
                })
                .map_err(err)?;
            if restoring {
                return Err(err(Error::NotRestored { id: req.id }));
            }
            // Its init was reaped: only `all` (what else runs in its
            // cgroup) is left for runc to find.
            if exited && !req.all {
                return Err(err(Error::TaskFinished { id: req.id }));
            }
            let runc = self.0.runc(&req.id).map_err(err)?;
            return match runc.kill(&req.id, req.signal, req.all).await {
                Ok(()) => Ok(()),
                // Deleted while runc ran (its bundle, which holds runc's
                // log, may be gone too): the task's absence is the answer.
                Err(e) => match self.0.with(&req.id, |_| Ok(())) {
                    Ok(()) => Err(err(e)),
                    Err(gone) => Err(err(gone)),
                },
            };
        }
        let (pid, exited) = self
            .0
            .with(&req.id, |c| {
                let p = Service::process(c, &req.id, &req.exec_id)?;
                Ok((p.pid, p.exit.borrow().is_some()))
            })
            .map_err(err)?;
        // Its pid was reaped and may be another process's now.
        if exited {
            return Err(err(Error::ProcessFinished {
                id: req.id,
                exec_id: req.exec_id,
            }));
        }
        if pid <= 0 {
            return Err(err(Error::NotStarted {
                id: req.id,
                exec_id: req.exec_id,
            }));
        }
        let signal = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|source| {
            err(Error::InvalidSignal {
                signal: req.signal,
                source,
            })
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|source| {
            err(Error::Signal {
                id: req.id.clone(),
                exec_id: req.exec_id,
                pid,
                source,
            })
        })
    }

    async fn exec(&self, _: &TtrpcContext, req: pb::ExecProcessRequest) -> ttrpc::Result<()> {
        let spec = req.spec.map(|s| s.value).ok_or_else(|| {
            err(Error::NoProcessSpec {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
            })
        })?;
        self.0
            .with(&req.id, |c| {
                if req.exec_id.is_empty() {
                    return Err(Error::EmptyExecId { id: req.id.clone() });
                }
                // The id names files in the bundle (`<id>.pid`): it must
                // not be a path.
                if let Err(e) = crated_core::identifiers::validate(&req.exec_id) {
                    return Err(Error::InvalidExecId {
                        id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        reason: e.to_string(),
                    });
                }
                if c.execs.contains_key(&req.exec_id) {
                    return Err(Error::ExecExists {
                        id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                    });
                }
                c.execs.insert(
                    req.exec_id.clone(),
                    Process {
                        pid: 0,
                        exit: watch::channel(None).0,
                        started: false,
                        paused: false,
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        console: None,
                        spec: Some(spec),
                        relays: io::Relays::default(),
                        start_gate: Arc::default(),
                    },
                );
                Ok(())
            })
            .map_err(err)?;
        self.0
            .publisher
            .publish(
                "/tasks/exec-added",
                "TaskExecAdded",
                &ev::TaskExecAdded {
                    container_id: req.id,
                    exec_id: req.exec_id,
                },
            )
            .await;
        Ok(())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: pb::ResizePtyRequest) -> ttrpc::Result<()> {
        let console = self
            .0
            .with(&req.id, |c| {
                Ok(Service::process(c, &req.id, &req.exec_id)?.console.clone())
            })
            .map_err(err)?;
        match console {
            Some(master) => io::resize(&master, req.width, req.height).map_err(|source| {
                err(Error::Resize {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    source,
                })
            }),
            None => Err(err(Error::NoTerminal {
                id: req.id,
                exec_id: req.exec_id,
            })),
        }
    }

    async fn close_io(&self, _: &TtrpcContext, _req: pb::CloseIoRequest) -> ttrpc::Result<()> {
        // stdin is the client's fifo, held by the process itself: closing
        // the client's end is what ends its input.
        Ok(())
    }

    async fn update(&self, _: &TtrpcContext, req: pb::UpdateTaskRequest) -> ttrpc::Result<()> {
        let runc = self.0.runc(&req.id).map_err(err)?;
        let resources = req.resources.map(|r| r.value).unwrap_or_default();
        runc.update(&req.id, resources).await.map_err(err)
    }

    async fn wait(
        &self,
        _: &TtrpcContext,
        req: pb::WaitRequest,
    ) -> ttrpc::Result<pb::WaitResponse> {
        self.0
            .wait_process(&req.id, &req.exec_id)
            .await
            .map_err(err)
    }

    async fn stats(
        &self,
        _: &TtrpcContext,
        req: pb::StatsRequest,
    ) -> ttrpc::Result<pb::StatsResponse> {
        let (cgroup, path) = self
            .0
            .with(&req.id, |c| Ok((c.cgroup.clone(), c.cgroups_path.clone())))
            .map_err(err)?;
        let stats = crate::stats::collect(&cgroup, &path).map_err(err)?;
        Ok(pb::StatsResponse { stats: Some(stats) })
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: pb::ConnectRequest,
    ) -> ttrpc::Result<pb::ConnectResponse> {
        let task_pid = self
            .0
            .with(&req.id, |c| Ok(c.init.pid.max(0) as u32))
            .unwrap_or(0);
        Ok(pb::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: "2".to_owned(),
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _req: pb::ShutdownRequest) -> ttrpc::Result<()> {
        if self.0.close_if_idle(true) {
            self.0.exit();
        }
        Ok(())
    }
}

/// The service as the ttrpc server holds it.
pub struct ServiceHandle(pub Arc<Service>);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_create_after_the_shim_decided_to_exit_is_refused() {
        use crated_core::error::KindError as _;
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::new("ns1".to_owned()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let service = Service::new(
                ns.clone(),
                Publisher::new("", "", ns),
                Reaper::default(),
                dir.path().join("socket"),
            );
            assert!(service.close_if_idle(true));
            let err = service
                .create_task(pb::CreateTaskRequest {
                    id: "late".into(),
                    bundle: dir.path().display().to_string(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.kind(), crated_core::Kind::Unavailable);
            assert_eq!(
                err.to_string(),
                "container \"late\": the shim is shutting down"
            );
            // Nothing of it was kept.
            assert!(!dir.path().join(OPTIONS_FILE).exists());
        });
    }

    #[test]
    fn the_runc_options_of_a_create_are_kept_for_delete() {
        let bundle = tempfile::tempdir().unwrap();
        // None kept: runc's defaults.
        let none = saved_options(bundle.path()).unwrap();
        assert_eq!(none, RuncOptions::default());
        let options = RuncOptions {
            binary_name: "crun".into(),
            root: "/run/other".into(),
            systemd_cgroup: true,
            criu_path: "/opt/criu".into(),
            no_pivot_root: true,
            ..RuncOptions::default()
        };
        save_options(bundle.path(), &options).unwrap();
        let kept = saved_options(bundle.path()).unwrap();
        assert_eq!(
            kept,
            RuncOptions {
                no_pivot_root: false,
                ..options
            }
        );
        let ns = Namespace::new("ns1".to_owned()).unwrap();
        let runc = runc_with(&ns, bundle.path(), kept, Reaper::default());
        assert_eq!(runc.binary, PathBuf::from("crun"));
        assert_eq!(runc.root, PathBuf::from("/run/other/ns1"));
        assert!(runc.systemd_cgroup);

        std::fs::write(bundle.path().join(OPTIONS_FILE), "{broken").unwrap();
        let err = saved_options(bundle.path()).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "saved runc options {}: ",
                bundle.path().join(OPTIONS_FILE).display()
            )),
            "{err}"
        );
    }
}
