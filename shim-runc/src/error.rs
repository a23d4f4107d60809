//! The shim's errors, each with its containerd kind, which the task
//! service sends to the daemon as the ttrpc status code.
//!
//! A runc that ran and failed is classified once, where its error is
//! built from its log ([`Error::runc`]): the shim branches on the variant,
//! never on runc's wording. File operations and system calls take their
//! kind from core's one I/O mapping ([`io_kind`]).

use std::io;
use std::num::ParseIntError;
use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use nix::errno::Errno;

/// What can go wrong in the shim. Every variant names the task, exec id,
/// runc command, bundle, fifo or cgroup path involved and keeps the
/// underlying error as its source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime binary (runc, or the `BinaryName` option) is not on the
    /// shim's PATH.
    #[error(
        "{} not found: no runtime binary {binary:?} on the shim's PATH {path:?}; install it, \
         or `ctr install` an image that holds it",
        binary.display()
    )]
    RuntimeNotFound {
        /// The binary.
        binary: PathBuf,
        /// The shim's PATH.
        path: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// The runtime binary could not be run.
    #[error("run {} {command}: {source}", binary.display())]
    RuntimeIo {
        /// The binary.
        binary: PathBuf,
        /// The runc command (`"create"`, `"delete"`, …).
        command: &'static str,
        /// The spawn or wait error.
        #[source]
        source: io::Error,
    },
    /// runc does not know the container: it was never created, or runc
    /// dropped its state (a checkpoint that stopped it).
    #[error("OCI runtime {command} failed: {message}")]
    RuncNotExist {
        /// The runc command.
        command: &'static str,
        /// The container.
        id: String,
        /// runc's exit status.
        status: i32,
        /// The last error runc logged, else its stderr.
        message: String,
    },
    /// `runc kill` of a container whose process has already exited
    /// (containerd's shim answers NotFound for these too).
    #[error("OCI runtime {command} failed: {message}")]
    RuncNotRunning {
        /// The runc command.
        command: &'static str,
        /// The container.
        id: String,
        /// runc's exit status.
        status: i32,
        /// The last error runc logged, else its stderr.
        message: String,
    },
    /// runc ran and failed for any other reason.
    #[error("OCI runtime {command} failed: {message}")]
    RuncFailed {
        /// The runc command.
        command: &'static str,
        /// The container.
        id: String,
        /// runc's exit status.
        status: i32,
        /// The last error runc logged, else its stderr.
        message: String,
    },
    /// What a runc command printed does not parse.
    #[error("runc {command} output for container {id:?}: {source}")]
    RuncOutput {
        /// The runc command.
        command: &'static str,
        /// The container.
        id: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The pid file runc was told to write could not be read.
    #[error("read pid file {}: {source}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The pid file holds no pid.
    #[error("no pid in {}: {source}", path.display())]
    BadPid {
        /// The pid file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: ParseIntError,
    },
    /// runc's checkpoint or restore failed; `log` says where criu's log is
    /// and its first error.
    #[error("criu {action} failed ({log}): {source}")]
    Criu {
        /// `"dump"` or `"restore"`.
        action: &'static str,
        /// criu's first error and the path of its log.
        log: String,
        /// The runc failure.
        #[source]
        source: Box<Error>,
    },
    /// No task of that id was created in this shim (or it was deleted).
    #[error("container {id:?}: not created")]
    NotCreated {
        /// The task asked for.
        id: String,
    },
    /// The shim is exiting (its last container went): a new task needs a
    /// new shim.
    #[error("container {id:?}: the shim is shutting down")]
    ShuttingDown {
        /// The task asked for.
        id: String,
    },
    /// A task of that id is in this shim already.
    #[error("container {id:?}: already created")]
    AlreadyCreated {
        /// The task asked for.
        id: String,
    },
    /// No exec process of that id.
    #[error("process {exec_id:?} of task {id:?}: not found")]
    ProcessNotFound {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// An exec process of that id exists.
    #[error("process {exec_id:?} of task {id:?}: already exists")]
    ExecExists {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// An exec without an exec id (the empty id is the init's).
    #[error("exec in task {id:?}: exec id must be set")]
    EmptyExecId {
        /// The task.
        id: String,
    },
    /// An exec without a process spec.
    #[error("exec {exec_id:?} in task {id:?}: process spec must be set")]
    NoProcessSpec {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// A Start of an exec process that started before.
    #[error("process {exec_id:?} of task {id:?} already started")]
    AlreadyStarted {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// A Kill of an exec process that has exited: its pid may belong to
    /// another process by now, so nothing is signalled.
    #[error("process {exec_id:?} of task {id:?} already finished")]
    ProcessFinished {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// A Kill of a task whose init has exited (not of all its
    /// processes): nothing is left to signal, and its bundle may be
    /// going away with a concurrent Delete.
    #[error("task {id:?} already finished")]
    TaskFinished {
        /// The task.
        id: String,
    },
    /// An exec id that is not an identifier (it names files in the bundle).
    #[error("exec id {exec_id:?} of task {id:?}: {reason}")]
    InvalidExecId {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Kill of an exec process that did not start.
    #[error("process {exec_id:?} of task {id:?} not started")]
    NotStarted {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// A Start of a task whose init ended after its create (killed, or
    /// out of memory): runc's "cannot start a container that has stopped".
    #[error("task {id:?} cannot start: its init process ended after the create (the container has stopped)")]
    InitGone {
        /// The task.
        id: String,
    },
    /// A Delete of a task whose init still runs.
    #[error("task {id:?} must be stopped before deletion: running")]
    TaskRunning {
        /// The task.
        id: String,
    },
    /// A Delete of an exec process that still runs.
    #[error("process {exec_id:?} of task {id:?} must be stopped before deletion")]
    ProcessRunning {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// A Kill of a task created from a checkpoint and not started (so not
    /// restored) yet.
    #[error("task {id:?} is created from a checkpoint and not restored yet: no process to signal")]
    NotRestored {
        /// The task.
        id: String,
    },
    /// A Checkpoint of a task that does not run.
    #[error("task {id:?} is not running: only a running task can be checkpointed")]
    NotRunning {
        /// The task.
        id: String,
    },
    /// A signal number Linux does not have.
    #[error("invalid signal {signal}")]
    InvalidSignal {
        /// The number.
        signal: u32,
        /// nix's conversion error.
        #[source]
        source: Errno,
    },
    /// An exec process could not be signalled.
    #[error("signal process {exec_id:?} of task {id:?} (pid {pid}): {source}")]
    Signal {
        /// The task.
        id: String,
        /// The exec id.
        exec_id: String,
        /// Its pid.
        pid: i32,
        /// The errno of kill(2).
        #[source]
        source: Errno,
    },
    /// A ResizePty of a process without a terminal.
    #[error("process {exec_id:?} of task {id:?} has no terminal")]
    NoTerminal {
        /// The task.
        id: String,
        /// The exec id (empty for the init).
        exec_id: String,
    },
    /// A Wait whose process's exit can no longer come.
    #[error("exit watch of process {exec_id:?} of task {id:?} closed")]
    ExitWatchClosed {
        /// The task.
        id: String,
        /// The exec id (empty for the init).
        exec_id: String,
    },
    /// The shim's state lock was poisoned by a panic.
    #[error("shim state lock poisoned")]
    Poisoned,
    /// Checkpoint options that do not decode.
    #[error("checkpoint options: {source}")]
    CheckpointOptions {
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
    /// Checkpoint options of another type.
    #[error(
        "checkpoint options of type {type_url:?}: expected containerd.runc.v1.CheckpointOptions"
    )]
    CheckpointOptionsType {
        /// Their type.
        type_url: String,
    },
    /// A Checkpoint without an image path.
    #[error("checkpoint of task {id:?} has no image path")]
    NoImagePath {
        /// The task.
        id: String,
    },
    /// The rootfs mounts could not be mounted or unmounted.
    #[error("{op} rootfs {}: {source}", path.display())]
    Rootfs {
        /// `"mount"` or `"unmount"`.
        op: &'static str,
        /// The bundle's `rootfs`.
        path: PathBuf,
        /// core's mount error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// The ID-mapped copies of the bundle's mounts could not be made.
    #[error("ID-mapped mounts: {source}")]
    IdMapped {
        /// core's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A file operation on a fifo, log file, bundle file or socket.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open stdio"`, `"write"`, …).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A system call on an opened fifo or file failed.
    #[error("{op} {}: {source}", path.display())]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path it was opened from.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A step of the shim's own setup that concerns no path (its runtime,
    /// its signal handler, its executable, its stdout).
    #[error("{what}: {source}")]
    Setup {
        /// The step.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A pipe for a process's stdio could not be made.
    #[error("pipe: {source}")]
    Pipe {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A stdio relay thread could not be started.
    #[error("start {stream} relay: {source}")]
    RelayThread {
        /// `"stdin"` or `"stdout"`.
        stream: &'static str,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// A `binary://` log URI without a path.
    #[error("log uri {uri:?}: no binary path")]
    LogUri {
        /// The URI.
        uri: String,
    },
    /// The pipes for a logging binary could not be moved out of the way
    /// of its descriptors 3, 4 and 5.
    #[error("dup for the logging binary {}: {source}", path.display())]
    LogFd {
        /// The logging binary.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A logging binary could not be started.
    #[error("start logging binary {}: {source}", path.display())]
    LogBinary {
        /// The logging binary.
        path: PathBuf,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// The console socket runc sends a pty master to failed.
    #[error("console socket {}: {op}: {source}", path.display())]
    Console {
        /// `"bind"`, `"accept"`, `"receive"`, …
        op: &'static str,
        /// The socket.
        path: PathBuf,
        /// The I/O error (errnos of recvmsg(2) as I/O errors).
        #[source]
        source: io::Error,
    },
    /// runc connected to the console socket but sent no pty master.
    #[error("runc sent no pty master on the console socket {}", path.display())]
    NoPtyMaster {
        /// The socket.
        path: PathBuf,
    },
    /// The blocking receive of a pty master panicked or was cancelled.
    #[error("console: {source}")]
    ConsoleTask {
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A pty master could not be duplicated for its copy threads.
    #[error("dup pty: {source}")]
    DupPty {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A pty's window size could not be set.
    #[error("resize pty of process {exec_id:?} of task {id:?}: {source}")]
    Resize {
        /// The task.
        id: String,
        /// The exec id (empty for the init).
        exec_id: String,
        /// The ioctl's error.
        #[source]
        source: io::Error,
    },
    /// The container's cgroup is not known: it had no process to read
    /// it from, and its spec's path is not a directory's (systemd's form).
    #[error(
        "the cgroup of cgroup path {cgroups_path:?} is not known: no process of the container ran"
    )]
    CgroupUnknown {
        /// The spec's `cgroupsPath`.
        cgroups_path: String,
    },
    /// The container's cgroup is gone.
    #[error("cgroup {cgroups_path:?} not found")]
    CgroupNotFound {
        /// The spec's `cgroupsPath`.
        cgroups_path: String,
    },
    /// A command-line flag without its value.
    #[error("flag -{flag} needs a value")]
    MissingFlagValue {
        /// The flag.
        flag: String,
    },
    /// A command-line flag the shim does not know.
    #[error("unknown flag -{flag}")]
    UnknownFlag {
        /// The flag.
        flag: String,
    },
    /// A command-line action the shim does not know.
    #[error("unknown action {action:?}")]
    UnknownAction {
        /// The action.
        action: String,
    },
    /// No `-namespace`.
    #[error("shim namespace cannot be empty")]
    NoNamespace,
    /// A `-namespace` that is not a valid namespace.
    #[error("{source}")]
    InvalidNamespace {
        /// The namespace.
        namespace: String,
        /// core's validation error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A command-line flag with a value it cannot take.
    #[error("flag -{flag}: invalid value {value:?}")]
    InvalidFlagValue {
        /// The flag.
        flag: String,
        /// What it was given.
        value: String,
    },
    /// `-listen-fd` named a descriptor that is not a listening socket.
    #[error("descriptor {fd} is not a listening socket")]
    NotAListener {
        /// The descriptor.
        fd: i32,
    },
    /// The runc options a Create kept in the bundle are not JSON.
    #[error("saved runc options {path}: {source}")]
    SavedOptions {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// The pipes of a process's stdio could not be given to their owner.
    #[error("give stdio pipes to {}:{}: {source}", owner.uid, owner.gid)]
    PipeOwner {
        /// The owner (the runtime options' IoUid and IoGid).
        owner: crate::io::Owner,
        /// The failure of fchown(2).
        #[source]
        source: std::io::Error,
    },
    /// Runtime options of runc's type that do not decode.
    #[error("runtime options {type_url}: {source}")]
    RuntimeOptions {
        /// Their type.
        type_url: String,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
    /// The runtime options' `ShimCgroup` would leave the cgroup hierarchy.
    #[error("shim cgroup {path:?}: a cgroup path may not leave its hierarchy with \"..\"")]
    ShimCgroupPath {
        /// The path asked for.
        path: String,
    },
    /// No cgroup hierarchy has the runtime options' `ShimCgroup`.
    #[error("shim cgroup {path:?} does not exist: create it before starting containers in it")]
    ShimCgroupNotFound {
        /// The path asked for.
        path: String,
    },
    /// The shim could not be moved into its `ShimCgroup`.
    #[error("join shim cgroup {path:?} ({}): {source}", procs.display())]
    ShimCgroup {
        /// The path asked for.
        path: String,
        /// The `cgroup.procs` written.
        procs: PathBuf,
        /// The write's failure.
        #[source]
        source: std::io::Error,
    },
    /// A process's `oom_score_adj` that is not a number.
    #[error("{}: {text:?} is not an OOM score adjustment", path.display())]
    OomScore {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// The bundle's `config.json`, read by `start` for the container's
    /// group, is not JSON.
    #[error("bundle config.json: {source}")]
    BundleSpec {
        /// The parse failure.
        source: serde_json::Error,
    },
    /// The shim could not become the child subreaper of its containers.
    #[error("become subreaper: {source}")]
    Subreaper {
        /// The errno of prctl(2).
        #[source]
        source: Errno,
    },
    /// The ttrpc server could not start.
    #[error("serve ttrpc: {source}")]
    Serve {
        /// The server's error.
        #[source]
        source: Box<ttrpc::Error>,
    },
}

/// Result with the shim's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A file operation `op` on `path` failed.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// runc's `command` for container `id` exited with `status`, saying
    /// `message`. This is the one place runc's wording is read: a
    /// container runc does not know (libcontainer's `ErrNotExist`,
    /// "container does not exist"; older runc names the container) is
    /// [`Error::RuncNotExist`], anything else [`Error::RuncFailed`].
    pub fn runc(command: &'static str, id: &str, status: i32, message: String) -> Self {
        let not_exist = message.contains("container does not exist")
            || message.contains(&format!("container {id:?} does not exist"))
            || message.contains(&format!("container {id} does not exist"));
        // A signal for a process that has just exited: the race every
        // stop has with the container's own exit. `kill --all` freezes
        // the cgroup first, which runc refuses for a container that has
        // just stopped ("invalid state transition from stopped to paused").
        let not_running = command == "kill"
            && (message.contains("container not running")
                || message.contains("process already finished")
                || message.contains("no such process")
                || message.contains("from stopped to paused"));
        let id = id.to_owned();
        if not_running {
            return Self::RuncNotRunning {
                command,
                id,
                status,
                message,
            };
        }
        if not_exist {
            Self::RuncNotExist {
                command,
                id,
                status,
                message,
            }
        } else {
            Self::RuncFailed {
                command,
                id,
                status,
                message,
            }
        }
    }
}

fn errno_kind(errno: Errno) -> Kind {
    io_kind(&io::Error::from(errno))
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            // Unknown, as containerd's shim reports a runc it cannot run.
            // A kill's NotFound reads as "the process is gone already" to
            // clients (containerd's WithProcessKill, under `ctr tasks rm
            // -f`), which then wait for an exit that never comes, and its
            // FailedPrecondition as "stopped already", which drops this
            // message for a vaguer one of the delete after.
            Error::RuntimeNotFound { .. } => Kind::Unknown,
            Error::RuncNotExist { .. }
            | Error::RuncNotRunning { .. }
            | Error::NotCreated { .. }
            | Error::ProcessNotFound { .. }
            | Error::ProcessFinished { .. }
            | Error::TaskFinished { .. }
            | Error::CgroupNotFound { .. }
            | Error::CgroupUnknown { .. }
            | Error::ShimCgroupNotFound { .. } => Kind::NotFound,
            Error::RuntimeIo { source, .. }
            | Error::PidFile { source, .. }
            | Error::Io { source, .. }
            | Error::Setup { source, .. }
            | Error::RelayThread { source, .. }
            | Error::LogBinary { source, .. }
            | Error::Console { source, .. }
            | Error::DupPty { source }
            | Error::Resize { source, .. }
            | Error::ShimCgroup { source, .. }
            | Error::PipeOwner { source, .. } => io_kind(source),
            Error::Sys { source, .. }
            | Error::Pipe { source }
            | Error::LogFd { source, .. }
            | Error::Subreaper { source } => errno_kind(*source),
            // The process is gone (as containerd's shim: "process already
            // finished" is NotFound); ESRCH has no io kind of its own.
            Error::Signal { source, .. } if *source == Errno::ESRCH => Kind::NotFound,
            Error::Signal { source, .. } => errno_kind(*source),
            Error::RuncFailed { .. }
            | Error::RuncOutput { .. }
            | Error::BadPid { .. }
            | Error::ExitWatchClosed { .. }
            | Error::Poisoned
            | Error::NoPtyMaster { .. }
            | Error::SavedOptions { .. }
            | Error::OomScore { .. }
            | Error::ConsoleTask { .. } => Kind::Unknown,
            Error::Criu { source, .. } => source.kind(),
            Error::Rootfs { source, .. }
            | Error::IdMapped { source, .. }
            | Error::InvalidNamespace { source, .. } => source.kind(),
            Error::AlreadyCreated { .. } | Error::ExecExists { .. } => Kind::AlreadyExists,
            Error::EmptyExecId { .. }
            | Error::InvalidExecId { .. }
            | Error::NoProcessSpec { .. }
            | Error::InvalidSignal { .. }
            | Error::CheckpointOptions { .. }
            | Error::CheckpointOptionsType { .. }
            | Error::RuntimeOptions { .. }
            | Error::ShimCgroupPath { .. }
            | Error::NoImagePath { .. }
            | Error::LogUri { .. }
            | Error::MissingFlagValue { .. }
            | Error::InvalidFlagValue { .. }
            | Error::NotAListener { .. }
            | Error::BundleSpec { .. }
            | Error::UnknownFlag { .. }
            | Error::UnknownAction { .. }
            | Error::NoNamespace => Kind::InvalidArgument,
            Error::AlreadyStarted { .. }
            | Error::NotStarted { .. }
            | Error::InitGone { .. }
            | Error::TaskRunning { .. }
            | Error::ProcessRunning { .. }
            | Error::NotRestored { .. }
            | Error::NotRunning { .. }
            | Error::NoTerminal { .. } => Kind::FailedPrecondition,
            // The daemon may retry once the socket can be served.
            Error::Serve { .. } | Error::ShuttingDown { .. } => Kind::Unavailable,
        }
    }
}

impl From<Error> for ttrpc::Error {
    /// The status the daemon sees: the kind's code and the message.
    fn from(err: Error) -> Self {
        crated_api::to_ttrpc(err.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_failures_are_classified_once() {
        let gone = Error::runc("delete", "t1", 1, "container does not exist".into());
        assert!(matches!(gone, Error::RuncNotExist { status: 1, .. }));
        assert_eq!(gone.kind(), Kind::NotFound);
        assert_eq!(
            gone.to_string(),
            "OCI runtime delete failed: container does not exist"
        );
        let named = Error::runc("kill", "t1", 1, "container \"t1\" does not exist".into());
        assert!(matches!(named, Error::RuncNotExist { .. }));
        let other = Error::runc("create", "t1", 1, "rootfs (\"/x\") does not exist".into());
        assert!(matches!(other, Error::RuncFailed { .. }));
        let exited = Error::runc("kill", "t1", 1, "container not running".into());
        assert!(matches!(exited, Error::RuncNotRunning { .. }));
        assert_eq!(exited.kind(), Kind::NotFound);
        let frozen = Error::runc(
            "kill",
            "t1",
            1,
            "invalid state transition from stopped to paused".into(),
        );
        assert_eq!(frozen.kind(), Kind::NotFound);
        let start = Error::runc("start", "t1", 1, "container not running".into());
        assert!(matches!(start, Error::RuncFailed { .. }));
        assert_eq!(other.kind(), Kind::Unknown);
    }

    #[test]
    fn kinds_and_sources_survive_into_core_and_ttrpc() {
        let err = Error::io(
            "open stdio",
            "/run/fifo",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(err.kind(), Kind::NotFound);
        let core: crated_core::Error = err.into();
        assert!(
            core.message().starts_with("open stdio /run/fifo: "),
            "{core}"
        );
        assert!(std::error::Error::source(&core)
            .and_then(|s| s.downcast_ref::<Error>())
            .is_some());
        let status = ttrpc::Error::from(Error::TaskRunning { id: "t1".into() });
        let back = crated_api::from_ttrpc(status);
        assert_eq!(back.kind(), Kind::FailedPrecondition);
        assert_eq!(
            back.message(),
            "task \"t1\" must be stopped before deletion: running"
        );
    }

    #[test]
    fn a_process_already_gone_is_not_found() {
        let err = Error::Signal {
            id: "t1".into(),
            exec_id: "e1".into(),
            pid: 42,
            source: Errno::ESRCH,
        };
        assert_eq!(err.kind(), Kind::NotFound);
        let err = Error::Signal {
            id: "t1".into(),
            exec_id: "e1".into(),
            pid: 42,
            source: Errno::EPERM,
        };
        assert_eq!(err.kind(), Kind::FailedPrecondition);
    }
}
