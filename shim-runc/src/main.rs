//! `containerd-shim-runc-v2`: the runtime v2 shim for runc, as containerd's
//! daemons (crated and containerd) start it:
//!
//! - `… -namespace NS -address DAEMON_SOCK -publish-binary BIN -id ID start`
//!   in the bundle: starts the long-lived shim, prints its ttrpc address
//!   `unix://<dir of DAEMON_SOCK>/s/<sha256>` (a socket file in a 0700
//!   directory, never an abstract socket) and writes it to `address`.
//!   Containers of one group share a shim, as with containerd's: the group
//!   is the spec's `io.containerd.runc.v2.group` annotation, else
//!   `io.kubernetes.cri.sandbox-id` (every container of a pod), else the
//!   id; a `start` whose group's shim already serves prints that shim's
//!   address and starts nothing;
//! - `… -id ID -bundle DIR delete`: cleans up after a shim that is gone
//!   (force-deletes the container, unmounts its rootfs) and prints the
//!   `DeleteResponse`;
//! - no action: serves `containerd.task.v2.Task` on that socket, as the
//!   child subreaper of the container, publishing events to
//!   `TTRPC_ADDRESS`.

/// Writes a line to the shim's log: its stderr, the bundle's `log` fifo
/// the daemon reads. While the daemon is down that fifo has no reader and a
/// write fails with EPIPE; that must cost the line, never the shim, so no
/// `eprintln!` (which panics on a failed write) anywhere in it.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log_line(format_args!($($arg)*))
    };
}

/// See [`log!`].
pub(crate) fn log_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Where the host's cgroup hierarchies are mounted: runc's cgroupfs
/// driver puts a container's cgroups beneath it (its stats, OOM events and
/// removal are read and done there).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

mod cgroup;
mod destroy;
mod error;
mod events;
mod exec_fifo;
mod idmapped;
mod io;
mod memory;
mod oom;
mod placement;
mod reaper;
mod relay;
mod runc;
mod service;
mod stats;

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crated_api::containerd::runc::v1::Options as RuncOptions;
use crated_core::Namespace;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

struct Args {
    namespace: String,
    address: String,
    publish_binary: String,
    id: String,
    bundle: Option<PathBuf>,
    /// The socket `start` listens on, inherited as this descriptor.
    listen_fd: Option<i32>,
    action: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        namespace: String::new(),
        address: String::new(),
        publish_binary: String::new(),
        id: String::new(),
        bundle: None,
        listen_fd: None,
        action: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let flag = arg.trim_start_matches('-');
        if !arg.starts_with('-') {
            args.action = Some(arg);
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.to_owned(), None),
        };
        if name == "debug" || name == "v" {
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| Error::MissingFlagValue { flag: name.clone() })?,
        };
        match name.as_str() {
            "namespace" => args.namespace = value,
            "address" => args.address = value,
            "publish-binary" => args.publish_binary = value,
            "id" => args.id = value,
            "bundle" => args.bundle = Some(value.into()),
            "listen-fd" => {
                let fd = value.parse().map_err(|_| Error::InvalidFlagValue {
                    flag: name.clone(),
                    value: value.clone(),
                })?;
                args.listen_fd = Some(fd);
            }
            // Accepted for compatibility with containerd's shim flags.
            "socket" | "criu" | "systemd-cgroup" => {}
            other => {
                return Err(Error::UnknownFlag {
                    flag: other.to_owned(),
                })
            }
        }
    }
    if args.namespace.is_empty() {
        return Err(Error::NoNamespace);
    }
    Ok(args)
}

/// The shim's socket for `group`: under the daemon socket's directory,
/// named by a hash of daemon, namespace and group (as containerd's
/// `SocketAddress`).
fn socket_path(args: &Args, group: &str) -> PathBuf {
    let address = args.address.trim_start_matches("unix://");
    let base = Path::new(address)
        .parent()
        .unwrap_or(Path::new("/run/containerd"));
    let digest = Sha256::digest(format!("{address}/{}/{group}", args.namespace).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    base.join("s").join(hex)
}

/// The group of the container whose bundle `config.json` is `spec` (the
/// bundle's spec, absent only outside a daemon's bundle): its first group
/// annotation, else its own `id`.
fn group_of(spec: Option<&[u8]>, id: &str) -> Result<String> {
    let group = match spec {
        Some(spec) => crated_core::tasks::runc_shim_group(spec)
            .map_err(|source| Error::BundleSpec { source })?,
        None => None,
    };
    Ok(group.unwrap_or_else(|| id.to_owned()))
}

/// The descriptor the long-lived shim gets its listening socket on.
const LISTEN_FD: i32 = 3;

/// Binds `socket`; when it is taken, reuses the shim listening there
/// (`Ok(None)`: one of the group serves), or replaces a stale file no shim
/// listens on.
fn bind_or_join(socket: &Path) -> Result<Option<std::os::unix::net::UnixListener>> {
    let bind = || std::os::unix::net::UnixListener::bind(socket);
    match bind() {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Ok(None);
            }
            std::fs::remove_file(socket).map_err(|e| Error::io("remove stale", socket, e))?;
            bind()
                .map(Some)
                .map_err(|e| Error::io("listen on", socket, e))
        }
        Err(e) => Err(Error::io("listen on", socket, e)),
    }
}

/// The runc options `start` reads on stdin (the task's runtime options,
/// else the container's): an encoded `Any`, or nothing.
fn start_options(input: &[u8]) -> Result<RuncOptions> {
    if input.is_empty() {
        return Ok(RuncOptions::default());
    }
    let any = prost_types::Any::decode(input).map_err(|source| Error::RuntimeOptions {
        type_url: "on stdin".to_owned(),
        source,
    })?;
    service::runc_options(Some(&any))
}

/// Places the long-lived shim `pid` as its runtime options ask
/// (`placement`).
fn place(pid: u32, options: &RuncOptions) -> Result<()> {
    if !options.shim_cgroup.is_empty() {
        placement::join_cgroup(Path::new(CGROUP_ROOT), &options.shim_cgroup, pid)?;
    }
    placement::score_above(std::os::unix::process::parent_id(), pid)
}

fn start(args: &Args) -> Result<()> {
    // The runtime options come on stdin: they place the shim; Create
    // takes the rest from its own request.
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    let options = start_options(&input)?;
    let spec = match std::fs::read("config.json") {
        Ok(spec) => Some(spec),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("read", "config.json", e)),
    };
    let group = group_of(spec.as_deref(), &args.id)?;
    let socket = socket_path(args, &group);
    let address = format!("unix://{}", socket.display());
    if let Some(dir) = socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create", dir, e))?;
    }
    // Listening here, before the shim even runs (as containerd's shim
    // does): the daemon's first connect waits in the backlog while the
    // shim starts, instead of this process polling until it listens.
    let Some(listener) = bind_or_join(&socket)? else {
        // The group's shim serves: this container joins it.
        std::fs::write("address", &address).map_err(|e| Error::io("write", "address", e))?;
        println!("{address}");
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(|source| Error::Setup {
        what: "own executable",
        source,
    })?;
    let mut command = std::process::Command::new(&exe);
    command
        .args([
            "-namespace",
            &args.namespace,
            "-id",
            &group,
            "-address",
            &args.address,
            "-publish-binary",
            &args.publish_binary,
            "-listen-fd",
            &LISTEN_FD.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    // The shim idles for as long as its container runs: its allocator
    // tuned as the daemon's, it gives freed heap and stack back after
    // each lifecycle call (`memory`).
    crated_core::allocator::tune(&mut command, "shim");
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec the closure only makes the
    // async-signal-safe dup2 and fcntl calls.
    unsafe {
        command.pre_exec(move || {
            // dup2 clears close-on-exec on the copy; a socket that already
            // is that descriptor needs it cleared by hand.
            let rc = if fd == LISTEN_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LISTEN_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut shim = command
        .spawn()
        .map_err(|e| Error::io("start shim", &exe, e))?;
    if let Err(e) = place(shim.id(), &options) {
        // Not left serving where the daemon will never look.
        let _ = shim.kill();
        let _ = shim.wait();
        let _ = std::fs::remove_file(&socket);
        return Err(e);
    }
    std::fs::write("address", &address).map_err(|e| Error::io("write", "address", e))?;
    println!("{address}");
    Ok(())
}

fn delete(args: &Args) -> Result<()> {
    let bundle = args.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let namespace =
        Namespace::new(args.namespace.clone()).map_err(|e| Error::InvalidNamespace {
            namespace: args.namespace.clone(),
            source: Box::new(e),
        })?;
    // The runc (binary, root, cgroup driver) the container was created
    // with: another root or binary holds it elsewhere. Unreadable, the
    // defaults are the best guess left: giving up would leave the
    // container running with no owner.
    let options = service::saved_options(&bundle).unwrap_or_else(|e| {
        log!("{e}; deleting {} with runc's defaults", args.id);
        Default::default()
    });
    let runc = service::runc_with(&namespace, &bundle, options, reaper::Reaper::default());
    let out = runc
        .command(&["delete", "--force", &args.id])
        .output()
        .map_err(|source| Error::RuntimeIo {
            binary: runc.binary.clone(),
            command: "delete",
            source,
        })?;
    if !out.status.success() {
        log!(
            "runc delete {}: {}",
            args.id,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let rootfs = bundle.join("rootfs");
    if crated_core::mount::is_mountpoint(&rootfs).unwrap_or(false) {
        crated_core::mount::unmount_all(&rootfs).map_err(|e| Error::Rootfs {
            op: "unmount",
            path: rootfs.clone(),
            source: Box::new(e),
        })?;
    }
    let response = crated_api::containerd::task::v2::DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    use std::io::Write as _;
    std::io::stdout()
        .write_all(&response.encode_to_vec())
        .map_err(|source| Error::Setup {
            what: "write response",
            source,
        })
}

/// Sends our stderr to the bundle's `log` fifo, which the daemon reads.
fn log_to_fifo() {
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open("log")
    else {
        return;
    };
    let _ = nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let _ = nix::unistd::dup2(file.as_raw_fd(), libc::STDERR_FILENO);
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// Closes descriptors inherited from whoever started the daemon (a lock
/// held by a build tool, a terminal): a long-lived shim must not keep them.
fn close_inherited_fds(keep: Option<i32>) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .filter(|fd| *fd > 2 && Some(*fd) != keep)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// How long a started shim waits for its task's `Create` before giving up.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// The listening socket `start` handed over as `fd`.
fn inherited_listener(fd: i32) -> Result<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `fd` was inherited across exec and nothing else in this
    // process has taken it (`close_inherited_fds` kept it for this).
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn);
    if listening != Ok(true) {
        return Err(Error::NotAListener { fd });
    }
    let listener = std::os::unix::net::UnixListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Setup {
            what: "inherited socket",
            source,
        })?;
    Ok(listener)
}

/// SIGCHLD as a descriptor: blocked in the shim's only thread before any
/// other exists (every thread inherits the mask, so none takes the signal
/// instead) and read from a signalfd. (tokio's signal support is left out
/// of the build: it costs every shim 22 KiB, see `crated_core::signals`.)
/// Children start with an empty mask (std's `Command` resets it), so runc
/// and the containers see no difference.
fn child_exits() -> Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let setup = |source: nix::errno::Errno| Error::Setup {
        what: "SIGCHLD",
        source: source.into(),
    };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(setup)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(setup)
}

/// Reaps every exited child now and after each SIGCHLD, for the life of
/// the shim. A pending SIGCHLD stays readable until read, so an exit
/// between a reap and the wait is not missed.
async fn reap_on_sigchld(
    reaper: reaper::Reaper,
    mut sigchld: tokio::io::unix::AsyncFd<nix::sys::signalfd::SignalFd>,
) {
    loop {
        reaper.reap();
        let Ok(mut ready) = sigchld.readable_mut().await else {
            return;
        };
        loop {
            match ready.get_inner_mut().read_signal() {
                Ok(Some(_)) | Err(nix::errno::Errno::EINTR) => {}
                Ok(None) => {
                    ready.clear_ready();
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

fn serve(args: Args) -> Result<()> {
    // First, while the shim has one thread: runc and hooks get the
    // environment the daemon gave the shim.
    crated_core::allocator::forget_tuning();
    close_inherited_fds(args.listen_fd);
    log_to_fifo();
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| Error::Subreaper { source })?;
    let namespace =
        Namespace::new(args.namespace.clone()).map_err(|e| Error::InvalidNamespace {
            namespace: args.namespace.clone(),
            source: Box::new(e),
        })?;
    // `start` passes the group as the id.
    let socket = socket_path(&args, &args.id);
    let sigchld = child_exits()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // One shim serves one container (or one pod): a handful of
        // descriptors, not the 1,024 events a tick tokio makes room for.
        .max_io_events_per_tick(64)
        .build()
        .map_err(|source| Error::Setup {
            what: "runtime",
            source,
        })?;
    runtime.block_on(async move {
        let reaper = reaper::Reaper::default();
        let sigchld = crated_core::child::registered(sigchld, tokio::io::Interest::READABLE)
            .map_err(|source| Error::Setup {
                what: "SIGCHLD",
                source,
            })?;
        tokio::spawn(reap_on_sigchld(reaper.clone(), sigchld));
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let publisher = events::Publisher::new(&ttrpc_address, &args.address, namespace.clone());
        let listener = match args.listen_fd {
            Some(fd) => tokio::net::UnixListener::from_std(inherited_listener(fd)?)
                .map_err(|e| Error::io("listen on", &socket, e))?,
            None => tokio::net::UnixListener::bind(&socket)
                .map_err(|e| Error::io("listen on", &socket, e))?,
        };
        let service = service::Service::new(namespace, publisher, reaper, socket.clone());
        let shutdown = service.shutdown.clone();
        // A shim whose daemon never created its task (it failed to reach
        // it) must not linger.
        let idle = service.clone();
        tokio::spawn(async move {
            tokio::time::sleep(IDLE_LIMIT).await;
            idle.exit_if_unused();
        });
        let services = crated_api::containerd::task::v2::task_ttrpc::create_task(Arc::new(
            service::ServiceHandle(service),
        ));
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener.into())
            .register_service(services);
        server.start().await.map_err(|e| Error::Serve {
            source: Box::new(e),
        })?;
        shutdown.notified().await;
        // Let the Shutdown reply go out first. The socket file is already
        // gone (the handler removed it): a new shim for the same id may
        // own that path by now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            log!("containerd-shim-runc-v2: {e}");
            std::process::exit(1);
        }
    };
    let result = match args.action.as_deref() {
        Some("start") => start(&args),
        Some("delete") => delete(&args),
        Some(other) => Err(Error::UnknownAction {
            action: other.to_owned(),
        }),
        None => serve(args),
    };
    if let Err(e) = result {
        log!("containerd-shim-runc-v2: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_group_is_the_first_group_annotation_else_the_id() {
        let spec = |annotations: &str| {
            format!(r#"{{"ociVersion":"1.0.2","annotations":{{{annotations}}}}}"#)
        };
        let pod = spec(r#""io.kubernetes.cri.sandbox-id":"pod1""#);
        assert_eq!(group_of(Some(pod.as_bytes()), "c1").unwrap(), "pod1");
        let both =
            spec(r#""io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g""#);
        assert_eq!(group_of(Some(both.as_bytes()), "c1").unwrap(), "g");
        let empty = spec(r#""io.containerd.runc.v2.group":"""#);
        assert_eq!(group_of(Some(empty.as_bytes()), "c1").unwrap(), "c1");
        assert_eq!(
            group_of(Some(br#"{"ociVersion":"1.0.2"}"#), "c1").unwrap(),
            "c1"
        );
        assert_eq!(group_of(None, "c1").unwrap(), "c1");
        let err = group_of(Some(b"{not json"), "c1").unwrap_err();
        assert!(err.to_string().starts_with("bundle config.json: "), "{err}");
    }

    #[test]
    fn a_socket_is_joined_while_served_and_replaced_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let first = bind_or_join(&socket).unwrap().unwrap();
        // Its shim serves: a second start joins it.
        assert!(bind_or_join(&socket).unwrap().is_none());
        // Its shim died without removing the file: a new one takes over.
        drop(first);
        assert!(socket.exists());
        let second = bind_or_join(&socket).unwrap();
        assert!(second.is_some());
        // Anything else in the way is an error naming the path.
        let dir_in_the_way = dir.path().join("d");
        std::fs::create_dir(&dir_in_the_way).unwrap();
        std::fs::create_dir(dir_in_the_way.join("x")).unwrap();
        let err = bind_or_join(&dir_in_the_way.join("x")).unwrap_err();
        assert!(err.to_string().contains("x"), "{err}");
    }
}
