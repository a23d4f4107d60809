//! Seccomp profiles of the CRI plugin.
//!
//! Two sources, as in containerd 1.6:
//!
//! - [`default_profile`]: the profile containerd applies when a pod asks for
//!   `RuntimeDefault` (containerd's `contrib/seccomp` default). It refuses
//!   every syscall with `SCMP_ACT_ERRNO` except an allow list, and widens
//!   that list by the capabilities in the process's bounding set, by the host
//!   architecture and by the kernel version.
//! - [`load_profile`]: a `localhost/<path>` profile, a JSON file holding an
//!   OCI `LinuxSeccomp` object.
//!
//! The syscall names and argument rules below are containerd's, name for
//! name: critest and workloads observe them, so a change here is a
//! behaviour change.

use std::path::Path;

use crated_core::{Error, Result};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall, Spec,
};

/// Syscalls every container may make, whatever its capabilities.
///
/// Whitespace-separated so the table stays compact; names that do not exist
/// on the host architecture are ignored by the runtime (runc, libseccomp).
const ALWAYS_ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup
    dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
    epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat
    faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown
    fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
    fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
    futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32
    geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid
    getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
    getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
    gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
    inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
    ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc
    kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
    lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat
    lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
    mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
    mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
    msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat _newselect open openat
    openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
    poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat
    renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
    rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
    rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
    sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
    sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
    semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
    sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
    setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
    set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack
    signalfd signalfd4 sigprocmask sigreturn socket socketcall socketpair splice stat stat64
    statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
";

/// Values of `personality(2)`'s first argument a container may pass:
/// `PER_LINUX`, `UNAME26`, `PER_LINUX32`, `PER_LINUX32 | UNAME26`, and the
/// all-ones value that only queries the current persona.
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// From this kernel (major, minor) on, `ptrace` can no longer be used to
/// escape seccomp, so the profile allows it without `CAP_SYS_PTRACE`.
const PTRACE_SAFE_KERNEL: (u64, u64) = (4, 8);

/// Syscalls allowed only on some architectures, keyed by Go's `GOARCH`
/// spelling (see [`host_goarch`]).
const ARCH_ALLOWED: &[(&str, &str)] = &[
    ("ppc64le", "sync_file_range2 swapcontext"),
    (
        "arm",
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    (
        "arm64",
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    ("amd64", "arch_prctl modify_ldt"),
    ("386", "modify_ldt"),
    (
        "s390",
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ),
    (
        "s390x",
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ),
    ("riscv64", "riscv_flush_icache"),
];

/// Syscalls a capability in the bounding set unlocks. The rules are emitted
/// in this order, whatever the order of the spec's capability set.
const CAP_ALLOWED: &[(Capability, &str)] = &[
    (Capability::DacReadSearch, "open_by_handle_at"),
    (
        Capability::SysAdmin,
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount \
         mount_setattr move_mount name_to_handle_at open_tree perf_event_open quotactl \
         quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
    ),
    (Capability::SysBoot, "reboot"),
    (Capability::SysChroot, "chroot"),
    (
        Capability::SysModule,
        "delete_module init_module finit_module",
    ),
    (Capability::SysPacct, "acct"),
    (
        Capability::SysPtrace,
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    (Capability::SysRawio, "iopl ioperm"),
    (
        Capability::SysTime,
        "settimeofday stime clock_settime clock_settime64",
    ),
    (Capability::SysTtyConfig, "vhangup"),
    (Capability::SysNice, "get_mempolicy mbind set_mempolicy"),
    (Capability::Syslog, "syslog"),
    (Capability::Bpf, "bpf"),
    (Capability::Perfmon, "perf_event_open"),
];

/// The namespace flags `clone(2)` must not carry without `CAP_SYS_ADMIN`:
/// NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET and NEWCGROUP.
const NEW_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// containerd's `RuntimeDefault` seccomp profile for a container whose spec
/// is `spec`, on this host.
///
/// Call it after the spec's capabilities are final: the allow list depends
/// on the bounding set of `spec.process.capabilities`. A spec without a
/// process or capabilities is treated as having no capabilities.
///
/// The default action is `SCMP_ACT_ERRNO` without a `defaultErrnoRet`, as
/// in containerd 1.6, so refused syscalls fail with the runtime's default
/// errno, `EPERM`.
pub fn default_profile(spec: &Spec) -> LinuxSeccomp {
    profile_for(spec, host_goarch(), crated_core::kernel::release())
}

/// Reads a `localhost` seccomp profile: a JSON file holding an OCI
/// `LinuxSeccomp` object, used as is (containerd's `seccomp.WithProfile`).
///
/// Both an unreadable file and a file that is not such a JSON object are
/// [`crated_core::Kind::InvalidArgument`] errors naming the path.
pub fn load_profile(path: &Path) -> Result<LinuxSeccomp> {
    let data = std::fs::read(path).map_err(|err| {
        Error::invalid_argument(format!("cannot load seccomp profile {path:?}: {err}"))
            .with_source(err)
    })?;
    serde_json::from_slice(&data).map_err(|err| {
        Error::invalid_argument(format!("decoding seccomp profile failed {path:?}: {err}"))
            .with_source(err)
    })
}

/// The default profile for a host of architecture `goarch` (Go's spelling)
/// running kernel `kernel` (major, minor), `None` when unknown.
fn profile_for(spec: &Spec, goarch: &str, kernel: Option<(u64, u64)>) -> LinuxSeccomp {
    let mut rules = vec![allow(ALWAYS_ALLOWED)];

    rules.extend(PERSONALITIES.iter().map(|&persona| {
        let mut rule = allow("personality");
        rule.set_args(Some(vec![arg(0, persona, LinuxSeccompOperator::ScmpCmpEq)]));
        rule
    }));

    if kernel.is_some_and(|version| version >= PTRACE_SAFE_KERNEL) {
        rules.push(allow("ptrace"));
    }

    rules.extend(
        ARCH_ALLOWED
            .iter()
            .filter(|(arch, _)| *arch == goarch)
            .map(|(_, names)| allow(names)),
    );

    let bounding = spec
        .process()
        .as_ref()
        .and_then(|process| process.capabilities().as_ref())
        .and_then(|caps| caps.bounding().as_ref());
    let has = |cap: &Capability| bounding.is_some_and(|set| set.contains(cap));

    rules.extend(
        CAP_ALLOWED
            .iter()
            .filter(|(cap, _)| has(cap))
            .map(|(_, names)| allow(names)),
    );

    if !has(&Capability::SysAdmin) {
        // Plain fork-style clones only: the mask of namespace flags must be
        // all zero (an absent valueTwo is 0). The flags are the first
        // argument everywhere but on s390, whose clone swaps the first two.
        let flags_index = if matches!(goarch, "s390" | "s390x") {
            1
        } else {
            0
        };
        let mut clone = allow("clone");
        clone.set_args(Some(vec![arg(
            flags_index,
            NEW_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )]));
        rules.push(clone);

        // clone3 passes its flags in a struct seccomp cannot inspect, so it
        // is refused -- with ENOSYS, which makes libcs fall back to clone.
        let mut clone3 = syscalls("clone3", LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    let arches = architectures(goarch);
    if !arches.is_empty() {
        profile.set_architectures(Some(arches.to_vec()));
    }
    profile.set_syscalls(Some(rules));
    profile
}

/// The seccomp architectures a profile names for a host of `goarch`: the
/// native one plus the compat ABIs its binaries may use. Hosts not listed
/// get none (the runtime then filters the native architecture only); that
/// includes ppc64le and the little-endian mips64, as in containerd.
fn architectures(goarch: &str) -> &'static [Arch] {
    match goarch {
        "amd64" => &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "arm64" => &[Arch::ScmpArchArm, Arch::ScmpArchAarch64],
        "mips64" => &[
            Arch::ScmpArchMips,
            Arch::ScmpArchMips64,
            Arch::ScmpArchMips64n32,
        ],
        "s390x" => &[Arch::ScmpArchS390, Arch::ScmpArchS390x],
        "riscv64" => &[Arch::ScmpArchRiscv64],
        _ => &[],
    }
}

/// This build's architecture under the name Go gives it (`GOARCH`), the key
/// of containerd's per-architecture choices.
fn host_goarch() -> &'static str {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// A rule applying `action` to the whitespace-separated syscall `names`.
fn syscalls(names: &str, action: LinuxSeccompAction) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.split_ascii_whitespace().map(String::from).collect());
    rule.set_action(action);
    rule
}

/// A rule allowing the whitespace-separated syscall `names` unconditionally.
fn allow(names: &str) -> LinuxSyscall {
    syscalls(names, LinuxSeccompAction::ScmpActAllow)
}

/// A condition on argument `index` of a syscall.
fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    // `LinuxSeccompArg` has no setters, only a builder; the builder defaults
    // every field it is not given, so building cannot fail.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .expect("LinuxSeccompArgBuilder defaults every field")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use oci_spec::runtime::{LinuxCapabilities, Process};

    use super::*;

    /// containerd's default capability set for containers (`oci.WithDefaultSpec`).
    const CONTAINERD_CAPS: [Capability; 14] = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ];

    /// A kernel old enough that ptrace is not allowed by version alone.
    const OLD_KERNEL: Option<(u64, u64)> = Some((4, 4));
    const NEW_KERNEL: Option<(u64, u64)> = Some((6, 1));

    fn spec_with(bounding: &[Capability]) -> Spec {
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(bounding.iter().copied().collect()));
        let mut process = Process::default();
        process.set_capabilities(Some(caps));
        let mut spec = Spec::default();
        spec.set_process(Some(process));
        spec
    }

    fn rules(profile: &LinuxSeccomp) -> &[LinuxSyscall] {
        profile.syscalls().as_deref().unwrap()
    }

    /// The rules naming `name`.
    fn rules_for<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        rules(profile)
            .iter()
            .filter(|rule| rule.names().iter().any(|n| n == name))
            .collect()
    }

    /// Whether `name` is allowed whatever its arguments.
    fn allowed(profile: &LinuxSeccomp, name: &str) -> bool {
        rules_for(profile, name).iter().any(|rule| {
            rule.action() == LinuxSeccompAction::ScmpActAllow
                && rule.args().as_ref().is_none_or(|args| args.is_empty())
        })
    }

    #[test]
    fn containerd_defaults_allow_the_base_list_only() {
        let profile = profile_for(&spec_with(&CONTAINERD_CAPS), "amd64", OLD_KERNEL);
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), None);
        for name in [
            "read",
            "write",
            "execve",
            "openat2",
            "io_uring_setup",
            "_llseek",
            "_newselect",
            "landlock_restrict_self",
            "futex_waitv",
            "memfd_secret",
            "process_mrelease",
            "chroot", // CAP_SYS_CHROOT is in containerd's defaults
            "arch_prctl",
        ] {
            assert!(allowed(&profile, name), "{name} should be allowed");
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "ptrace",
            "process_vm_readv",
            "bpf",
            "perf_event_open",
            "reboot",
            "init_module",
            "open_by_handle_at",
            "clock_settime",
            "syslog",
            "personality",
            "clone",
            "clone3",
            "keyctl",
            "add_key",
            "kexec_load",
            "userfaultfd",
        ] {
            assert!(!allowed(&profile, name), "{name} should not be allowed");
        }
    }

    #[test]
    fn base_list_is_containerds() {
        let names: Vec<&str> = ALWAYS_ALLOWED.split_ascii_whitespace().collect();
        assert_eq!(names.len(), 349);
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names");
        assert_eq!(names.first(), Some(&"accept"));
        assert_eq!(names.last(), Some(&"writev"));
    }

    #[test]
    fn clone_without_sys_admin_is_restricted() {
        let profile = profile_for(&spec_with(&CONTAINERD_CAPS), "amd64", OLD_KERNEL);

        let clone = rules_for(&profile, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action(), LinuxSeccompAction::ScmpActAllow);
        let args = clone[0].args().as_ref().unwrap();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), 0x7e02_0000);
        assert_eq!(args[0].value_two(), None);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);

        let clone3 = rules_for(&profile, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38)); // ENOSYS

        // On s390 the flags are clone's second argument.
        let s390 = profile_for(&spec_with(&CONTAINERD_CAPS), "s390x", OLD_KERNEL);
        let args = rules_for(&s390, "clone")[0].args().clone().unwrap();
        assert_eq!(args[0].index(), 1);
        assert_eq!(args[0].value(), 0x7e02_0000);
    }

    #[test]
    fn sys_admin_allows_mount_and_free_clone() {
        let mut caps = CONTAINERD_CAPS.to_vec();
        caps.push(Capability::SysAdmin);
        let profile = profile_for(&spec_with(&caps), "amd64", OLD_KERNEL);
        for name in [
            "mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf", "syslog",
        ] {
            assert!(allowed(&profile, name), "{name} should be allowed");
        }
        // No restricted clone nor ENOSYS clone3 next to the free ones.
        assert_eq!(rules_for(&profile, "clone").len(), 1);
        assert_eq!(rules_for(&profile, "clone3").len(), 1);
        assert!(rules(&profile)
            .iter()
            .all(|rule| rule.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let cases: [(Capability, &[&str]); 13] = [
            (Capability::DacReadSearch, &["open_by_handle_at"]),
            (Capability::SysBoot, &["reboot"]),
            (Capability::SysChroot, &["chroot"]),
            (
                Capability::SysModule,
                &["delete_module", "init_module", "finit_module"],
            ),
            (Capability::SysPacct, &["acct"]),
            (
                Capability::SysPtrace,
                &["ptrace", "kcmp", "pidfd_getfd", "process_vm_writev"],
            ),
            (Capability::SysRawio, &["iopl", "ioperm"]),
            (
                Capability::SysTime,
                &["settimeofday", "stime", "clock_settime", "clock_settime64"],
            ),
            (Capability::SysTtyConfig, &["vhangup"]),
            (
                Capability::SysNice,
                &["get_mempolicy", "mbind", "set_mempolicy"],
            ),
            (Capability::Syslog, &["syslog"]),
            (Capability::Bpf, &["bpf"]),
            (Capability::Perfmon, &["perf_event_open"]),
        ];
        let none = profile_for(&spec_with(&[]), "amd64", OLD_KERNEL);
        for (cap, names) in cases {
            let profile = profile_for(&spec_with(&[cap]), "amd64", OLD_KERNEL);
            for name in names {
                assert!(allowed(&profile, name), "{cap}: {name} should be allowed");
                assert!(!allowed(&none, name), "{name} allowed without {cap}");
            }
            // Only CAP_SYS_ADMIN lifts the clone restriction.
            assert_eq!(rules_for(&profile, "clone3").len(), 1);
            assert!(!allowed(&profile, "clone"));
            assert!(!allowed(&profile, "mount"));
        }
    }

    #[test]
    fn ptrace_follows_the_kernel_version() {
        let spec = spec_with(&CONTAINERD_CAPS);
        assert!(!allowed(
            &profile_for(&spec, "amd64", Some((4, 7))),
            "ptrace"
        ));
        assert!(allowed(
            &profile_for(&spec, "amd64", Some((4, 8))),
            "ptrace"
        ));
        assert!(allowed(&profile_for(&spec, "amd64", NEW_KERNEL), "ptrace"));
        assert!(!allowed(&profile_for(&spec, "amd64", None), "ptrace"));
        // The other CAP_SYS_PTRACE syscalls stay refused.
        assert!(!allowed(
            &profile_for(&spec, "amd64", NEW_KERNEL),
            "process_vm_readv"
        ));

        let host = default_profile(&spec);
        let expected = crated_core::kernel::at_least(4, 8);
        assert_eq!(allowed(&host, "ptrace"), expected);
    }

    #[test]
    fn personality_is_limited_to_known_personas() {
        let profile = profile_for(&spec_with(&[]), "amd64", OLD_KERNEL);
        let mut values: Vec<u64> = rules_for(&profile, "personality")
            .iter()
            .map(|rule| {
                let args = rule.args().as_ref().unwrap();
                assert_eq!(args.len(), 1);
                assert_eq!(args[0].index(), 0);
                assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpEq);
                args[0].value()
            })
            .collect();
        values.sort_unstable();
        assert_eq!(values, [0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn architectures_per_host() {
        let spec = spec_with(&[]);
        let arches = |goarch| {
            profile_for(&spec, goarch, OLD_KERNEL)
                .architectures()
                .clone()
        };
        assert_eq!(
            arches("amd64"),
            Some(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32
            ])
        );
        assert_eq!(
            arches("arm64"),
            Some(vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64])
        );
        assert_eq!(
            arches("s390x"),
            Some(vec![Arch::ScmpArchS390, Arch::ScmpArchS390x])
        );
        assert_eq!(arches("riscv64"), Some(vec![Arch::ScmpArchRiscv64]));
        assert_eq!(arches("ppc64le"), None);

        let host = default_profile(&spec).architectures().clone();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host, arches("amd64"));
        } else if cfg!(target_arch = "aarch64") {
            assert_eq!(host, arches("arm64"));
        }
    }

    #[test]
    fn architecture_specific_syscalls() {
        let spec = spec_with(&[]);
        let profile = |goarch| profile_for(&spec, goarch, OLD_KERNEL);
        assert!(allowed(&profile("amd64"), "arch_prctl"));
        assert!(allowed(&profile("amd64"), "modify_ldt"));
        assert!(!allowed(&profile("amd64"), "set_tls"));
        assert!(allowed(&profile("arm64"), "set_tls"));
        assert!(allowed(&profile("arm64"), "sync_file_range2"));
        assert!(!allowed(&profile("arm64"), "arch_prctl"));
        assert!(allowed(&profile("ppc64le"), "swapcontext"));
        assert!(allowed(&profile("s390x"), "s390_runtime_instr"));
        assert!(allowed(&profile("riscv64"), "riscv_flush_icache"));
        assert!(allowed(&profile("386"), "modify_ldt"));
        assert!(!allowed(&profile("386"), "arch_prctl"));
    }

    #[test]
    fn spec_without_capabilities_gets_the_restricted_profile() {
        let profile = profile_for(&Spec::default(), "amd64", OLD_KERNEL);
        // Spec::default() bounds AUDIT_WRITE, KILL and NET_BIND_SERVICE only.
        assert!(allowed(&profile, "read"));
        assert!(!allowed(&profile, "chroot"));
        let mut spec = Spec::default();
        spec.set_process(None);
        let profile = profile_for(&spec, "amd64", OLD_KERNEL);
        assert!(!allowed(&profile, "mount"));
        assert_eq!(rules_for(&profile, "clone3").len(), 1);
    }

    #[test]
    fn json_has_containerds_shape() {
        let profile = profile_for(&spec_with(&CONTAINERD_CAPS), "amd64", OLD_KERNEL);
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(json.get("defaultErrnoRet").is_none());
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let syscalls = json["syscalls"].as_array().unwrap();
        assert_eq!(syscalls[0]["action"], "SCMP_ACT_ALLOW");
        assert_eq!(syscalls[0]["names"][0], "accept");
        assert!(syscalls[0].get("args").is_none());
        let clone = syscalls
            .iter()
            .find(|rule| rule["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(
            clone["args"],
            serde_json::json!([{"index": 0, "value": 2_114_060_288_u64, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = syscalls.last().unwrap();
        assert_eq!(
            *clone3,
            serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
        );

        let host = serde_json::to_value(default_profile(&spec_with(&[]))).unwrap();
        assert_eq!(host["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn load_profile_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        let profile = profile_for(&spec_with(&CONTAINERD_CAPS), "amd64", NEW_KERNEL);
        std::fs::write(&path, serde_json::to_vec(&profile).unwrap()).unwrap();
        assert_eq!(load_profile(&path).unwrap(), profile);

        // A hand-written profile as kubelet users write them.
        std::fs::write(
            &path,
            r#"{
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["sethostname", "chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]
            }"#,
        )
        .unwrap();
        let loaded = load_profile(&path).unwrap();
        assert_eq!(loaded.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(loaded.architectures(), &None);
        let rules = loaded.syscalls().as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].names(), &["sethostname", "chmod"]);
        assert_eq!(rules[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(rules[0].errno_ret(), Some(1));
    }

    #[test]
    fn load_profile_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json");
        let err = load_profile(&path).unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::InvalidArgument);
        let message = err.to_string();
        assert!(message.contains("cannot load seccomp profile"), "{message}");
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn load_profile_bad_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        for content in ["{not json", "", r#"{"defaultAction": "SCMP_ACT_NOPE"}"#] {
            std::fs::write(&path, content).unwrap();
            let err = load_profile(&path).unwrap_err();
            assert_eq!(err.kind(), crated_core::Kind::InvalidArgument, "{content}");
            let message = err.to_string();
            assert!(
                message.contains("decoding seccomp profile failed"),
                "{message}"
            );
            assert!(message.contains(&*path.to_string_lossy()), "{message}");
        }
    }
}
