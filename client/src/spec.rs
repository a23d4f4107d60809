//! OCI runtime specs, typed (`oci-spec`), built as containerd's client
//! builds them: containerd's default Unix spec, then composable options
//! applied in order ([`SpecOpt`]) — the image's config, a user resolved
//! in the image's own `/etc/passwd` and `/etc/group`, environment, mounts,
//! namespaces, capabilities, the host's network, seccomp, rlimits,
//! resources. The CRI plugin builds its specs from the same options.
//!
//! ```
//! use crated_client::spec::{self, SpecContext};
//!
//! let ns = crated_core::Namespace::new("default").unwrap();
//! let ctx = SpecContext::new(&ns, "web");
//! let config = br#"{"config":{"Cmd":["/bin/sh"],"Env":["A=1"]}}"#;
//! let spec = spec::generate(
//!     &ctx,
//!     &[
//!         spec::with_image_config(config).unwrap(),
//!         spec::with_env(vec!["B=2".into()]),
//!         spec::with_tty(),
//!     ],
//! )
//! .unwrap();
//! let process = spec.process().as_ref().unwrap();
//! assert_eq!(process.args().as_deref(), Some(&["/bin/sh".to_owned()][..]));
//! assert!(process.env().as_ref().unwrap().contains(&"B=2".to_owned()));
//! ```

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use crated_core::descriptor::Any;
use crated_core::{Namespace, Result};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Mount, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

pub use oci_spec::runtime;

use crate::Error;

/// The type URL containerd stores specs under.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The type URL of an exec process's spec.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// The `PATH` a process gets when its image names none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The most of `/etc/passwd` or `/etc/group` read from an image: more is a
/// hostile or broken image, not a user database.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// What options see while they build a spec.
pub struct SpecContext<'a> {
    /// The namespace of the container.
    pub namespace: &'a Namespace,
    /// The container's id.
    pub id: &'a str,
    /// The container's root filesystem, mounted, when an option must read
    /// it (a user name looked up in its `/etc/passwd`).
    pub rootfs: Option<&'a Path>,
    /// The image's account files, read before: options use these instead
    /// of reading `rootfs`.
    pub accounts: Option<&'a Accounts>,
}

impl<'a> SpecContext<'a> {
    /// The context of container `id` in `namespace`, with no root
    /// filesystem to read.
    pub fn new(namespace: &'a Namespace, id: &'a str) -> Self {
        Self {
            namespace,
            id,
            rootfs: None,
            accounts: None,
        }
    }

    /// The same, able to read `rootfs`.
    #[must_use]
    pub fn with_rootfs(mut self, rootfs: &'a Path) -> Self {
        self.rootfs = Some(rootfs);
        self
    }

    /// The same, with the image's account files already read (no root
    /// filesystem needs mounting for a user name).
    #[must_use]
    pub fn with_accounts(mut self, accounts: &'a Accounts) -> Self {
        self.accounts = Some(accounts);
        self
    }
}

/// The files of an image's root filesystem that a spec's user comes from:
/// `/etc/passwd` and `/etc/group`, each empty when the image has none.
///
/// An image's committed layers never change, so a caller that builds many
/// specs from one image may read these once (from a mounted view) and keep
/// them, rather than mount the image for every container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/group`.
    pub group: String,
}

impl Accounts {
    /// Reads both files inside the mounted `rootfs` (as [`read_in_root`]:
    /// confined to the root, bounded).
    pub fn read(rootfs: &Path) -> Result<Self> {
        Ok(Self {
            passwd: read_in_root(rootfs, "/etc/passwd")?.unwrap_or_default(),
            group: read_in_root(rootfs, "/etc/group")?.unwrap_or_default(),
        })
    }

    /// The bytes they hold (for a cache's bound).
    pub fn len(&self) -> usize {
        self.passwd.len() + self.group.len()
    }

    /// Whether both files are empty or absent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One change to a spec, as containerd's `oci.SpecOpts`.
pub trait SpecOpt: Send + Sync {
    /// Applies the change.
    fn apply(&self, spec: &mut Spec, ctx: &SpecContext<'_>) -> Result<()>;
}

impl<F> SpecOpt for F
where
    F: Fn(&mut Spec, &SpecContext<'_>) -> Result<()> + Send + Sync,
{
    fn apply(&self, spec: &mut Spec, ctx: &SpecContext<'_>) -> Result<()> {
        self(spec, ctx)
    }
}

/// A boxed option.
pub type Opt = Box<dyn SpecOpt>;

/// Boxes a closure as an option.
pub fn opt(f: impl Fn(&mut Spec, &SpecContext<'_>) -> Result<()> + Send + Sync + 'static) -> Opt {
    Box::new(f)
}

/// containerd's default Unix spec for `ctx`, then each of `opts` in order.
pub fn generate(ctx: &SpecContext<'_>, opts: &[Opt]) -> Result<Spec> {
    let mut spec = default_unix(ctx.namespace, ctx.id)?;
    apply(&mut spec, ctx, opts)?;
    Ok(spec)
}

/// Applies `opts` to `spec` in order.
pub fn apply(spec: &mut Spec, ctx: &SpecContext<'_>, opts: &[Opt]) -> Result<()> {
    for o in opts {
        o.apply(spec, ctx)?;
    }
    Ok(())
}

/// The capabilities containerd grants by default.
pub fn default_capabilities() -> Capabilities {
    [
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
    ]
    .into_iter()
    .collect()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(kind.to_owned()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()));
    m
}

fn device_rule(allow: bool, major: Option<i64>, minor: Option<i64>) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    if allow {
        rule.set_typ(Some(LinuxDeviceType::C));
    }
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some("rwm".to_owned()));
    rule
}

fn rlimit(typ: PosixRlimitType, hard: u64, soft: u64) -> Result<PosixRlimit> {
    let rlimit = PosixRlimitBuilder::default()
        .typ(typ)
        .hard(hard)
        .soft(soft)
        .build()
        .map_err(|source| Error::BuildSpec {
            part: "rlimit",
            source,
        })?;
    Ok(rlimit)
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns
}

/// containerd's `populateDefaultUnixSpec` with `WithDefaultUnixDevices`:
/// cgroup `/<ns>/<id>`, the pid, ipc, uts, mount and network namespaces,
/// the default mounts, capabilities, masked and read-only paths,
/// RLIMIT_NOFILE 1024, the device cgroup rules.
pub fn default_unix(ns: &Namespace, id: &str) -> Result<Spec> {
    let caps = default_capabilities();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    let rlimit = rlimit(PosixRlimitType::RlimitNofile, 1024, 1024)?;
    let mut process = Process::default();
    process.set_terminal(None);
    process.set_user(User::default());
    process.set_args(None);
    process.set_env(None);
    process.set_cwd(PathBuf::from("/"));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(Some(vec![rlimit]));
    process.set_no_new_privileges(Some(true));
    let mut devices = vec![device_rule(false, None, None)];
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(8)),
        (1, Some(7)),
        (5, Some(0)),
        (1, Some(5)),
        (1, Some(9)),
        (5, Some(1)),
        (136, None),
        (5, Some(2)),
    ] {
        devices.push(device_rule(true, Some(major), minor));
    }
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(devices));
    let linux = LinuxBuilder::default()
        .resources(resources)
        // Joined as containerd joins it: no trailing slash without an id.
        .cgroups_path(PathBuf::from(if id.is_empty() {
            format!("/{ns}")
        } else {
            format!("/{ns}/{id}")
        }))
        .namespaces(vec![
            namespace(LinuxNamespaceType::Pid),
            namespace(LinuxNamespaceType::Ipc),
            namespace(LinuxNamespaceType::Uts),
            namespace(LinuxNamespaceType::Mount),
            namespace(LinuxNamespaceType::Network),
        ])
        .masked_paths(
            [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .readonly_paths(
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .build()
        .map_err(|source| Error::BuildSpec {
            part: "linux section",
            source,
        })?;
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(None);
    let mut spec = Spec::default();
    spec.set_version("1.0.2-dev".to_owned());
    spec.set_root(Some(root));
    spec.set_mounts(Some(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ]));
    spec.set_process(Some(process));
    spec.set_hostname(None);
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The spec as containerd stores it in a container record.
pub fn to_any(spec: &Spec) -> Result<Any> {
    Ok(Any {
        type_url: SPEC_TYPE_URL.to_owned(),
        value: serde_json::to_vec(spec).map_err(|source| Error::EncodeSpec {
            what: "spec",
            source,
        })?,
    })
}

/// A container record's spec; InvalidArgument for another type or bad
/// JSON.
pub fn from_any(any: &Any) -> Result<Spec> {
    if any.type_url != SPEC_TYPE_URL {
        return Err(Error::SpecType {
            type_url: any.type_url.clone(),
        }
        .into());
    }
    let spec = serde_json::from_slice(&any.value).map_err(|source| Error::DecodeSpec { source })?;
    Ok(spec)
}

/// An exec process's spec as the tasks service takes it.
pub fn process_to_any(process: &Process) -> Result<Any> {
    Ok(Any {
        type_url: PROCESS_TYPE_URL.to_owned(),
        value: serde_json::to_vec(process).map_err(|source| Error::EncodeSpec {
            what: "process spec",
            source,
        })?,
    })
}

/// The spec's process, made if it has none.
pub fn process_mut(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(Process::default)
}

/// The spec's Linux section, made if it has none.
pub fn linux_mut(spec: &mut Spec) -> &mut oci_spec::runtime::Linux {
    spec.linux_mut()
        .get_or_insert_with(oci_spec::runtime::Linux::default)
}

/// containerd's `replaceOrAppendEnvValues`: `overrides` replace the
/// variables of `defaults` with the same key, or are appended; `KEY`
/// alone (no `=`) removes it.
pub fn replace_or_append_env(defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split('=').next().unwrap_or(kv).to_owned();
    let mut out = defaults;
    for o in overrides {
        let k = key(o);
        let existing = out.iter().position(|d| key(d) == k);
        match (existing, o.contains('=')) {
            (Some(i), true) => out[i] = o.clone(),
            (Some(i), false) => {
                out.remove(i);
            }
            (None, true) => out.push(o.clone()),
            (None, false) => {}
        }
    }
    out
}

/// The parts of an image's config a spec takes.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `config.User`.
    #[serde(rename = "User")]
    pub user: String,
    /// `config.Env`.
    #[serde(rename = "Env")]
    pub env: Option<Vec<String>>,
    /// `config.Entrypoint`.
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    /// `config.Cmd`.
    #[serde(rename = "Cmd")]
    pub cmd: Option<Vec<String>>,
    /// `config.WorkingDir`.
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
    /// `config.StopSignal`.
    #[serde(rename = "StopSignal")]
    pub stop_signal: String,
    /// `config.Volumes`: paths the image wants kept out of its layers.
    #[serde(rename = "Volumes")]
    pub volumes: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// `config.Labels`.
    #[serde(rename = "Labels")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

impl ImageConfig {
    /// The `config` object of an image config document (OCI or Docker).
    pub fn parse(document: &[u8]) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            config: Option<ImageConfig>,
        }
        let doc: Doc =
            serde_json::from_slice(document).map_err(|source| Error::ImageConfig { source })?;
        Ok(doc.config.unwrap_or_default())
    }
}

/// containerd's `WithImageConfigArgs` without the user (apply
/// [`with_user`] with [`ImageConfig::user`], which needs the root
/// filesystem): the image's env (or the default `PATH`) under the spec's,
/// entrypoint + cmd as args, and its working directory.
pub fn with_image_config(document: &[u8]) -> Result<Opt> {
    let config = ImageConfig::parse(document)?;
    Ok(with_image_config_args(config, Vec::new()))
}

/// [`with_image_config`] with `args` in place of the image's cmd (kept
/// after its entrypoint), as `ctr run IMAGE ID ARGS…`.
pub fn with_image_config_args(config: ImageConfig, args: Vec<String>) -> Opt {
    opt(move |spec, _| {
        let mut env = config.env.clone().unwrap_or_default();
        if env.is_empty() {
            env.push(DEFAULT_PATH.to_owned());
        }
        let process = process_mut(spec);
        let existing = process.env().clone().unwrap_or_default();
        process.set_env(Some(replace_or_append_env(env, &existing)));
        let mut argv = config.entrypoint.clone().unwrap_or_default();
        if args.is_empty() {
            argv.extend(config.cmd.clone().unwrap_or_default());
        } else {
            argv.extend(args.iter().cloned());
        }
        process.set_args(Some(argv));
        let cwd = if config.working_dir.is_empty() {
            "/"
        } else {
            &config.working_dir
        };
        process.set_cwd(PathBuf::from(cwd));
        Ok(())
    })
}

/// The process's arguments.
pub fn with_process_args(args: Vec<String>) -> Opt {
    opt(move |spec, _| {
        process_mut(spec).set_args(Some(args.clone()));
        Ok(())
    })
}

/// Sets `KEY=value` variables, replacing those of the same key.
pub fn with_env(vars: Vec<String>) -> Opt {
    opt(move |spec, _| {
        let process = process_mut(spec);
        let existing = process.env().clone().unwrap_or_default();
        process.set_env(Some(replace_or_append_env(existing, &vars)));
        Ok(())
    })
}

/// The working directory.
pub fn with_process_cwd(cwd: impl Into<PathBuf>) -> Opt {
    let cwd = cwd.into();
    opt(move |spec, _| {
        process_mut(spec).set_cwd(cwd.clone());
        Ok(())
    })
}

/// `WithTTY`: a terminal and `TERM=xterm`.
pub fn with_tty() -> Opt {
    opt(|spec, ctx| {
        process_mut(spec).set_terminal(Some(true));
        with_env(vec!["TERM=xterm".to_owned()]).apply(spec, ctx)
    })
}

/// The hostname.
pub fn with_hostname(hostname: impl Into<String>) -> Opt {
    let hostname = hostname.into();
    opt(move |spec, _| {
        spec.set_hostname(Some(hostname.clone()));
        Ok(())
    })
}

/// Annotations, added to those there.
pub fn with_annotations(annotations: HashMap<String, String>) -> Opt {
    opt(move |spec, _| {
        spec.annotations_mut()
            .get_or_insert_with(HashMap::new)
            .extend(annotations.clone());
        Ok(())
    })
}

/// Extra mounts, after the default ones; a mount on a destination the
/// spec already mounts replaces it.
pub fn with_mounts(mounts: Vec<Mount>) -> Opt {
    opt(move |spec, _| {
        let list = spec.mounts_mut().get_or_insert_with(Vec::new);
        for m in &mounts {
            list.retain(|existing| existing.destination() != m.destination());
            list.push(m.clone());
        }
        Ok(())
    })
}

/// A mount of `kind` from `source` on `destination` with `options`.
pub fn mount_of(kind: &str, source: &str, destination: &str, options: &[String]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(kind.to_owned()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.to_vec()));
    m
}

/// `WithHostNamespace(network)` with the host's `/etc/hosts` and
/// `/etc/resolv.conf`, as `ctr run --net-host`.
pub fn with_host_network() -> Opt {
    opt(|spec, ctx| {
        without_namespace(LinuxNamespaceType::Network).apply(spec, ctx)?;
        let files = ["/etc/hosts", "/etc/resolv.conf"]
            .map(|f| mount_of("bind", f, f, &["rbind".to_owned(), "ro".to_owned()]));
        with_mounts(files.to_vec()).apply(spec, ctx)
    })
}

/// Shares the host's namespace of `typ` (removes it from the spec).
pub fn without_namespace(typ: LinuxNamespaceType) -> Opt {
    opt(move |spec, _| {
        if let Some(list) = linux_mut(spec).namespaces_mut() {
            list.retain(|ns| ns.typ() != typ);
        }
        Ok(())
    })
}

/// Joins the namespace of `typ` at `path` (a pod's network namespace, a
/// sandbox's ipc), adding it if the spec has none of that type.
pub fn with_namespace_path(typ: LinuxNamespaceType, path: impl Into<PathBuf>) -> Opt {
    let path = path.into();
    opt(move |spec, _| {
        let list = linux_mut(spec)
            .namespaces_mut()
            .get_or_insert_with(Vec::new);
        list.retain(|ns| ns.typ() != typ);
        let mut ns = namespace(typ);
        ns.set_path(Some(path.clone()));
        list.push(ns);
        Ok(())
    })
}

/// The capabilities of the process (bounding, effective, permitted), in
/// place of the defaults.
pub fn with_capabilities(caps: Capabilities) -> Opt {
    opt(move |spec, _| {
        let mut capabilities = LinuxCapabilities::default();
        capabilities.set_bounding(Some(caps.clone()));
        capabilities.set_effective(Some(caps.clone()));
        capabilities.set_permitted(Some(caps.clone()));
        capabilities.set_inheritable(None);
        capabilities.set_ambient(None);
        process_mut(spec).set_capabilities(Some(capabilities));
        Ok(())
    })
}

/// Adds `add` to and removes `drop` from the process's capabilities.
pub fn with_capability_changes(add: Capabilities, drop: Capabilities) -> Opt {
    opt(move |spec, ctx| {
        let mut caps = process_mut(spec)
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default();
        caps.extend(add.iter().copied());
        caps.retain(|c| !drop.contains(c));
        with_capabilities(caps).apply(spec, ctx)
    })
}

/// A seccomp profile.
pub fn with_seccomp(profile: LinuxSeccomp) -> Opt {
    opt(move |spec, _| {
        linux_mut(spec).set_seccomp(Some(profile.clone()));
        Ok(())
    })
}

/// Sets rlimit `typ`, replacing one of that type.
pub fn with_rlimit(typ: PosixRlimitType, hard: u64, soft: u64) -> Opt {
    opt(move |spec, _| {
        let process = process_mut(spec);
        let mut rlimits = process.rlimits().clone().unwrap_or_default();
        rlimits.retain(|r| r.typ() != typ);
        rlimits.push(rlimit(typ, hard, soft)?);
        process.set_rlimits(Some(rlimits));
        Ok(())
    })
}

/// Resources (memory, cpu, pids, …), keeping the spec's device rules when
/// `resources` has none.
pub fn with_resources(resources: LinuxResources) -> Opt {
    opt(move |spec, _| {
        let linux = linux_mut(spec);
        let devices = linux.resources().as_ref().and_then(|r| r.devices().clone());
        let mut resources = resources.clone();
        if resources.devices().is_none() {
            resources.set_devices(devices);
        }
        linux.set_resources(Some(resources));
        Ok(())
    })
}

/// The cgroup the container runs in.
pub fn with_cgroup_path(path: impl Into<PathBuf>) -> Opt {
    let path = path.into();
    opt(move |spec, _| {
        linux_mut(spec).set_cgroups_path(Some(path.clone()));
        Ok(())
    })
}

/// Kernel parameters of the container's namespaces.
pub fn with_sysctls(sysctls: HashMap<String, String>) -> Opt {
    opt(move |spec, _| {
        linux_mut(spec)
            .sysctl_mut()
            .get_or_insert_with(HashMap::new)
            .extend(sysctls.clone());
        Ok(())
    })
}

/// A read-only root filesystem.
pub fn with_readonly_rootfs(readonly: bool) -> Opt {
    opt(move |spec, _| {
        let root = spec.root_mut().get_or_insert_with(Root::default);
        root.set_readonly(readonly.then_some(true));
        Ok(())
    })
}

/// The process's OOM score adjustment.
pub fn with_oom_score_adj(score: i32) -> Opt {
    opt(move |spec, _| {
        process_mut(spec).set_oom_score_adj(Some(score));
        Ok(())
    })
}

/// Whether the process may gain privileges (setuid binaries).
pub fn with_no_new_privileges(no_new_privileges: bool) -> Opt {
    opt(move |spec, _| {
        process_mut(spec).set_no_new_privileges(Some(no_new_privileges));
        Ok(())
    })
}

/// Reads `path` (absolute, as the image sees it) inside `root`: every
/// component, symbolic links included, resolves within the root, and at
/// most 4 MiB are read. `None` if it does not exist.
pub fn read_in_root(root: &Path, path: &str) -> Result<Option<String>> {
    let dir = std::fs::File::open(root).map_err(|e| Error::io("open root", root, e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    use std::os::fd::AsRawFd as _;
    let fd =
        match crated_core::fs::openat2_retrying(dir.as_raw_fd(), path.trim_start_matches('/'), how)
        {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => return Ok(None),
            Err(source) => {
                return Err(Error::OpenImageFile {
                    path: path.to_owned(),
                    source,
                }
                .into())
            }
        };
    // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let image_file = |op, source| Error::ImageFile {
        op,
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(|e| image_file("stat", e))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            path: path.to_owned(),
        }
        .into());
    }
    let mut text = String::new();
    file.take(MAX_ACCOUNT_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| image_file("read", e))?;
    if text.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(Error::ImageFileTooLarge {
            path: path.to_owned(),
            limit: MAX_ACCOUNT_FILE,
        }
        .into());
    }
    Ok(Some(text))
}

/// One `name:x:id:…` line of `/etc/passwd` or `/etc/group` whose name or
/// id is `key`.
fn entry<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == key || f[2] == key))
}

/// `WithUser` and `WithAdditionalGIDs`: `uid[:gid]`, or `name[:group]`
/// looked up in the root filesystem's `/etc/passwd` and `/etc/group`
/// (read inside the root, bounded), with the user's supplementary groups
/// from `/etc/group`. An empty user is root.
pub fn with_user(user: impl Into<String>) -> Opt {
    let user = user.into();
    opt(move |spec, ctx| {
        let read;
        let accounts = match (ctx.accounts, ctx.rootfs) {
            (Some(accounts), _) => Some(accounts),
            (None, Some(rootfs)) => {
                read = Accounts::read(rootfs)?;
                Some(&read)
            }
            (None, None) => None,
        };
        let resolved = resolve_user(&user, accounts)?;
        process_mut(spec).set_user(resolved);
        Ok(())
    })
}

/// The process user `user` means in an image with `accounts` (`None`: no
/// root filesystem to look names up in, so only numeric ids and root).
pub fn resolve_user(user: &str, accounts: Option<&Accounts>) -> Result<User> {
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (if user.is_empty() { "root" } else { user }, None),
    };
    let numeric = name.parse::<u32>().is_ok() && group.is_none_or(|g| g.parse::<u32>().is_ok());
    if accounts.is_none() && !numeric && name != "root" {
        return Err(Error::UserNeedsRootfs {
            user: user.to_owned(),
        }
        .into());
    }
    let none = Accounts::default();
    let Accounts {
        passwd,
        group: groups,
    } = accounts.unwrap_or(&none);
    let (uid, mut gid, username) = match name.parse::<u32>() {
        Ok(uid) => {
            let found = entry(passwd, name);
            let gid = found.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0);
            (uid, gid, found.map(|f| f[0].to_owned()).unwrap_or_default())
        }
        // No user (or root) in an image without /etc/passwd: 0:0.
        Err(_) if name == "root" && entry(passwd, name).is_none() => (0, 0, "root".to_owned()),
        Err(_) => {
            let f = entry(passwd, name).ok_or_else(|| Error::UserNotFound {
                name: name.to_owned(),
            })?;
            let uid = f[2].parse().map_err(|source| Error::BadUid {
                name: name.to_owned(),
                source,
            })?;
            (uid, f[3].parse().unwrap_or(0), f[0].to_owned())
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => entry(groups, group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Error::GroupNotFound {
                    group: group.to_owned(),
                })?,
        };
    }
    let additional: Vec<u32> = groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && !username.is_empty() && f[3].split(',').any(|m| m == username))
        .filter_map(|f| f[2].parse().ok())
        .filter(|g| *g != gid)
        .collect();
    let mut resolved = User::default();
    resolved.set_uid(uid);
    resolved.set_gid(gid);
    resolved.set_additional_gids((!additional.is_empty()).then_some(additional));
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_spec(opts: &[Opt], rootfs: Option<&Path>) -> Result<Spec> {
        let ns = Namespace::new("default").unwrap();
        let mut ctx = SpecContext::new(&ns, "t1");
        ctx.rootfs = rootfs;
        generate(&ctx, opts)
    }

    #[test]
    fn default_spec_is_containerds() {
        let spec = ctx_spec(&[], None).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ociVersion"], "1.0.2-dev");
        assert_eq!(json["linux"]["cgroupsPath"], "/default/t1");
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(json["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(json["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        let back = from_any(&to_any(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn env_is_replaced_or_appended_and_removed() {
        let out = replace_or_append_env(
            vec!["PATH=/bin".into(), "A=1".into(), "B=2".into()],
            &["A=3".into(), "C=4".into(), "B".into()],
        );
        assert_eq!(out, ["PATH=/bin", "A=3", "C=4"]);
    }

    #[test]
    fn image_config_sets_args_env_and_cwd() {
        let config = br#"{"config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["A=1"],"WorkingDir":"/srv","User":"daemon"}}"#;
        let parsed = ImageConfig::parse(config).unwrap();
        assert_eq!(parsed.user, "daemon");
        let spec = ctx_spec(&[with_image_config_args(parsed, vec!["true".into()])], None).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.args().as_deref().unwrap(),
            ["/bin/sh", "-c", "true"]
        );
        assert_eq!(process.env().as_deref().unwrap(), ["A=1"]);
        assert_eq!(process.cwd(), Path::new("/srv"));
        let spec = ctx_spec(&[with_image_config(b"{}").unwrap()], None).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.env().as_deref().unwrap(), [DEFAULT_PATH]);
    }

    /// A root filesystem with root and `web` (1000) in `/etc/passwd` and
    /// `group` as its `/etc/group`.
    fn root_with_accounts(group: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), group).unwrap();
        root
    }

    #[test]
    fn users_resolve_inside_the_root() {
        let root =
            root_with_accounts("root:x:0:\nweb:x:1000:\nvideo:x:44:web,other\naudio:x:29:other\n");
        let accounts = Accounts::read(root.path()).unwrap();
        let user = resolve_user("web", Some(&accounts)).unwrap();
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
        assert_eq!(user.additional_gids().as_deref(), Some(&[44][..]));
        let user = resolve_user("web:audio", Some(&accounts)).unwrap();
        assert_eq!((user.uid(), user.gid()), (1000, 29));
        let user = resolve_user("7:8", None).unwrap();
        assert_eq!((user.uid(), user.gid()), (7, 8));
        let err = resolve_user("nobody", Some(&accounts)).unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::NotFound);
        assert!(resolve_user("web", None).is_err());
    }

    #[test]
    fn a_user_resolves_alike_from_the_root_or_its_accounts_read_before() {
        let root = root_with_accounts("web:x:1000:\nvideo:x:44:web\n");
        let ns = Namespace::new("default").unwrap();
        let from_root = generate(
            &SpecContext::new(&ns, "c").with_rootfs(root.path()),
            &[with_user("web")],
        )
        .unwrap();
        let accounts = Accounts::read(root.path()).unwrap();
        // The root is gone: the accounts read before are all it takes.
        drop(root);
        let from_accounts = generate(
            &SpecContext::new(&ns, "c").with_accounts(&accounts),
            &[with_user("web")],
        )
        .unwrap();
        let user = |spec: &Spec| spec.process().as_ref().unwrap().user().clone();
        assert_eq!(user(&from_root), user(&from_accounts));
        assert_eq!(user(&from_accounts).uid(), 1000);
        assert_eq!(
            user(&from_accounts).additional_gids().as_deref(),
            Some(&[44][..])
        );
        // An image without the files: root alone resolves.
        let empty = Accounts::default();
        let spec = generate(
            &SpecContext::new(&ns, "c").with_accounts(&empty),
            &[with_user("")],
        )
        .unwrap();
        assert_eq!(user(&spec).uid(), 0);
        let err = generate(
            &SpecContext::new(&ns, "c").with_accounts(&empty),
            &[with_user("web")],
        )
        .unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::NotFound);
    }

    #[test]
    fn account_files_cannot_escape_or_be_huge() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // An absolute link resolves inside the root, not to the host.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        assert_eq!(read_in_root(root.path(), "/etc/passwd").unwrap(), None);
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../dev/zero", root.path().join("etc/passwd")).unwrap();
        assert!(read_in_root(root.path(), "/etc/passwd").unwrap().is_none());
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            vec![b'a'; (MAX_ACCOUNT_FILE + 1) as usize],
        )
        .unwrap();
        let err = read_in_root(root.path(), "/etc/passwd").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn host_network_and_namespace_paths() {
        let spec = ctx_spec(
            &[
                with_host_network(),
                with_namespace_path(LinuxNamespaceType::Ipc, "/proc/1/ns/ipc"),
            ],
            None,
        )
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        assert!(!namespaces.iter().any(|n| n["type"] == "network"));
        assert!(namespaces
            .iter()
            .any(|n| n["type"] == "ipc" && n["path"] == "/proc/1/ns/ipc"));
        assert!(json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf"));
    }
}
