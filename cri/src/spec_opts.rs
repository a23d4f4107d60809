//! Spec options of the CRI: what kubelet's pod and container configs say
//! (mounts, devices, capabilities, privileges, resources, users, security
//! profiles, the pod's namespaces), as containerd's CRI turns them into an
//! OCI spec. Sandboxes and containers share them.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use crated_client::spec::{self, linux_mut, opt, process_mut, Opt};
use crated_core::{Error, Result};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxHugepageLimit,
    LinuxMemory, LinuxNamespaceType, LinuxResources, Mount, Spec,
};

use crate::runtime::v1 as pb;

/// containerd's `WithoutDefaultSecuritySettings`: no AppArmor profile, no
/// seccomp and no rlimits from the default spec; the CRI decides those.
pub fn without_default_security() -> Opt {
    opt(|spec, _| {
        let process = process_mut(spec);
        process.set_apparmor_profile(None);
        process.set_rlimits(None);
        linux_mut(spec).set_seccomp(None);
        Ok(())
    })
}

/// Removes the default mount on `destination` (`/run`: the CRI leaves it
/// to the image).
pub fn without_mount(destination: &'static str) -> Opt {
    opt(move |spec, _| {
        if let Some(mounts) = spec.mounts_mut() {
            mounts.retain(|m| m.destination() != Path::new(destination));
        }
        Ok(())
    })
}

/// Adds `groups`, and the user's own gid, to the process's additional
/// gids (sorted, each once); with `strict`, the groups the image's
/// `/etc/group` gave the user are dropped first (SupplementalGroupsPolicy
/// Strict).
pub fn with_supplemental_groups(groups: &[i64], strict: bool) -> Result<Opt> {
    let groups = groups
        .iter()
        .map(|g| {
            u32::try_from(*g).map_err(|_| {
                Error::invalid_argument(format!("supplemental group {g} is not a valid gid"))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(opt(move |spec, _| {
        let user = process_mut(spec).user_mut();
        let mut all: BTreeSet<u32> = if strict {
            BTreeSet::new()
        } else {
            user.additional_gids()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        all.insert(user.gid());
        all.extend(groups.iter().copied());
        user.set_additional_gids((!all.is_empty()).then(|| all.into_iter().collect()));
        Ok(())
    }))
}

/// The OCI user string of a CRI security context: `name` or `uid`, with
/// `:gid` when a group is given; a group without a user is an error.
pub fn user_string(username: &str, uid: Option<i64>, gid: Option<i64>) -> Result<String> {
    let user = if !username.is_empty() {
        username.to_owned()
    } else {
        uid.map(|u| u.to_string()).unwrap_or_default()
    };
    match (user.is_empty(), gid) {
        (true, Some(gid)) => Err(Error::invalid_argument(format!(
            "user group {gid} is specified without user"
        ))),
        (true, None) => Ok(String::new()),
        (false, Some(gid)) => Ok(format!("{user}:{gid}")),
        (false, None) => Ok(user),
    }
}

/// The cgroup of `id` under kubelet's `parent`: `slice:cri-containerd:id`
/// for a systemd slice, `parent/id` otherwise (containerd's names, so
/// kubelet finds them).
pub fn cgroups_path(parent: &str, id: &str) -> String {
    let base = Path::new(parent)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.ends_with(".slice") {
        format!("{base}:cri-containerd:{id}")
    } else {
        Path::new(parent).join(id).display().to_string()
    }
}

/// The OOM score adjustment `adj`, raised to the daemon's own when
/// `restrict` (a process cannot lower its score without
/// CAP_SYS_RESOURCE).
pub fn restricted_oom_score_adj(adj: i32, restrict: bool) -> Result<i32> {
    if !restrict {
        return Ok(adj);
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .map_err(|e| Error::io("read /proc/self/oom_score_adj", e))?;
    let own: i32 = own
        .trim()
        .parse()
        .map_err(|_| Error::unknown(format!("/proc/self/oom_score_adj holds {:?}", own.trim())))?;
    Ok(adj.max(own))
}

/// Every capability, by number (`capability.h`).
const CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The capabilities the daemon itself holds (its effective set in
/// `/proc/self/status`), as containerd's: "ALL" and privileged containers
/// get these, since runc cannot grant a capability its caller lacks (a
/// daemon in a container without CAP_SYS_RESOURCE, say). Falls back to
/// what the kernel knows (`cap_last_cap`).
pub fn all_capabilities() -> Capabilities {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    if let Some(mask) = effective {
        return CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| *bit < 64 && mask & (1u64 << bit) != 0)
            .map(|(_, c)| *c)
            .collect();
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(CAPABILITIES.len() - 1);
    CAPABILITIES.iter().take(last + 1).copied().collect()
}

/// A CRI capability name (`NET_ADMIN`, `CAP_NET_ADMIN`, any case).
fn capability(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare)
        .map_err(|_| Error::invalid_argument(format!("unknown capability {name:?}")))
}

/// The security context's capability changes: `ALL` added means every
/// capability, `ALL` dropped none, then the named ones added and dropped.
pub fn with_cri_capabilities(caps: Option<&pb::Capability>) -> Result<Opt> {
    let Some(caps) = caps else {
        return Ok(opt(|_, _| Ok(())));
    };
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let add_all = caps.add_capabilities.iter().any(is_all);
    let drop_all = caps.drop_capabilities.iter().any(is_all);
    let named = |list: &[String]| -> Result<Capabilities> {
        list.iter()
            .filter(|c| !is_all(c))
            .map(|c| capability(c))
            .collect()
    };
    let add = named(&caps.add_capabilities)?;
    let drop = named(&caps.drop_capabilities)?;
    Ok(opt(move |spec, ctx| {
        if add_all {
            spec::with_capabilities(all_capabilities()).apply(spec, ctx)?;
        }
        if drop_all {
            spec::with_capabilities(Capabilities::new()).apply(spec, ctx)?;
        }
        spec::with_capability_changes(add.clone(), drop.clone()).apply(spec, ctx)
    }))
}

/// Clears ambient capabilities (what non-root plus capabilities means is
/// undefined in Kubernetes; Docker's behaviour).
pub fn without_ambient_capabilities() -> Opt {
    opt(|spec, _| {
        let process = process_mut(spec);
        let mut caps = process.capabilities().clone().unwrap_or_default();
        caps.set_ambient(None);
        process.set_capabilities(Some(caps));
        Ok(())
    })
}

/// containerd's `WithPrivileged`: every capability, no masked or read-only
/// paths, writable sysfs and cgroupfs, no seccomp or AppArmor; with
/// `host_devices` the host's device nodes (`WithHostDevices`), with
/// `all_devices_allowed` cgroup access to every device.
pub fn with_privileged(host_devices: bool, all_devices_allowed: bool) -> Opt {
    opt(move |spec, ctx| {
        spec::with_capabilities(all_capabilities()).apply(spec, ctx)?;
        let linux = linux_mut(spec);
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        linux.set_seccomp(None);
        process_mut(spec).set_apparmor_profile(None);
        if let Some(mounts) = spec.mounts_mut() {
            for m in mounts.iter_mut() {
                let writable = matches!(m.typ().as_deref(), Some("sysfs") | Some("cgroup"));
                if writable {
                    if let Some(options) = m.options_mut() {
                        options.retain(|o| o != "ro");
                        if !options.iter().any(|o| o == "rw") {
                            options.push("rw".to_owned());
                        }
                    }
                }
            }
        }
        if host_devices {
            let devices = host_device_nodes(Path::new("/dev"));
            let linux = linux_mut(spec);
            let mut list = linux.devices().clone().unwrap_or_default();
            for d in devices {
                if !list.iter().any(|e| e.path() == d.path()) {
                    list.push(d);
                }
            }
            linux.set_devices(Some(list));
        }
        if all_devices_allowed {
            let linux = linux_mut(spec);
            let resources = linux
                .resources_mut()
                .get_or_insert_with(LinuxResources::default);
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_access(Some("rwm".to_owned()));
            resources.set_devices(Some(vec![rule]));
        }
        Ok(())
    })
}

/// The device nodes under `dir`, skipping what a container must not share
/// (ptys, shm, mqueue, the console) and what cannot be read.
fn host_device_nodes(dir: &Path) -> Vec<LinuxDevice> {
    const SKIP: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let name = entry.file_name();
            if !SKIP.iter().any(|s| name == *s) {
                out.extend(host_device_nodes(&path));
            }
            continue;
        }
        if path == Path::new("/dev/console") {
            continue;
        }
        if let Some(device) = device_of(&path, &path, &meta) {
            out.push(device);
        }
    }
    out
}

/// The device at `host` (with `meta`) as it appears at `container`;
/// `None` if it is not a device node.
fn device_of(host: &Path, container: &Path, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let (typ, major, minor) = crated_cdi::edits::device_numbers(meta)?;
    let _ = host;
    let mut device = LinuxDevice::default();
    device.set_path(container.to_owned());
    device.set_typ(typ);
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(Some(meta.mode() & 0o777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    Some(device)
}

/// The devices a container asks for (`host_path` may be a directory of
/// them), with a cgroup rule granting `permissions` on each; a path that
/// is no device is an error naming it.
pub fn with_cri_devices(devices: &[pb::Device], owner: Option<(u32, u32)>) -> Result<Opt> {
    let mut found: Vec<(LinuxDevice, String)> = Vec::new();
    for d in devices {
        let host = std::fs::canonicalize(&d.host_path)
            .map_err(|e| Error::invalid_argument(format!("device {:?}: {e}", d.host_path)))?;
        let container = if d.container_path.is_empty() {
            host.clone()
        } else {
            PathBuf::from(&d.container_path)
        };
        let meta = std::fs::metadata(&host)
            .map_err(|e| Error::invalid_argument(format!("device {:?}: {e}", d.host_path)))?;
        if meta.is_dir() {
            for node in host_device_nodes(&host) {
                let rel = node
                    .path()
                    .strip_prefix(&host)
                    .unwrap_or(node.path())
                    .to_owned();
                let mut node = node;
                node.set_path(container.join(rel));
                found.push((node, d.permissions.clone()));
            }
            continue;
        }
        let device = device_of(&host, &container, &meta).ok_or_else(|| {
            Error::invalid_argument(format!("{:?} is not a device node", d.host_path))
        })?;
        found.push((device, d.permissions.clone()));
    }
    Ok(opt(move |spec, _| {
        let linux = linux_mut(spec);
        let mut list = linux.devices().clone().unwrap_or_default();
        let mut rules = Vec::new();
        for (device, permissions) in &found {
            let mut device = device.clone();
            if let Some((uid, gid)) = owner {
                if uid != 0 {
                    device.set_uid(Some(uid));
                }
                if gid != 0 {
                    device.set_gid(Some(gid));
                }
            }
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(device.typ()));
            rule.set_major(Some(device.major()));
            rule.set_minor(Some(device.minor()));
            rule.set_access(Some(permissions.clone()));
            rules.push(rule);
            list.retain(|e| e.path() != device.path());
            list.push(device);
        }
        linux.set_devices(Some(list));
        let resources = linux
            .resources_mut()
            .get_or_insert_with(LinuxResources::default);
        let mut all = resources.devices().clone().unwrap_or_default();
        all.extend(rules.iter().cloned());
        resources.set_devices(Some(all));
        Ok(())
    }))
}

/// Whether the kernel has the hugetlb cgroup controller.
fn hugetlb_controller() -> bool {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
    }
    Path::new("/sys/fs/cgroup/hugetlb").is_dir()
}

/// Whether memory+swap can be limited (cgroup v1 `memsw`, v2
/// `memory.swap.max`).
fn swap_controller() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || own_unified_cgroup().is_some_and(|dir| dir.join("memory.swap.max").exists())
}

fn own_unified_cgroup() -> Option<PathBuf> {
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return None;
    }
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
}

/// What to do with huge page limits (containerd's
/// `tolerate_missing_hugetlb_controller`, `disable_hugetlb_controller`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hugetlb {
    /// Limits asked for on a host without the hugetlb controller are
    /// skipped with a warning rather than refused.
    pub tolerate_missing: bool,
    /// Limits are never applied (a cgroup tree without hugetlb delegated).
    pub disabled: bool,
}

/// A CRI resources message as OCI resources. Huge page limits follow
/// `hugetlb`; a missing controller not tolerated is an error.
pub fn linux_resources(
    r: &pb::LinuxContainerResources,
    hugetlb: Hugetlb,
) -> Result<LinuxResources> {
    resources_on(r, hugetlb, hugetlb_controller)
}

/// [`linux_resources`] on a host whose hugetlb controller `present` says.
fn resources_on(
    r: &pb::LinuxContainerResources,
    hugetlb: Hugetlb,
    present: fn() -> bool,
) -> Result<LinuxResources> {
    let mut cpu = LinuxCpu::default();
    if r.cpu_period != 0 {
        cpu.set_period(u64::try_from(r.cpu_period).ok());
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_shares != 0 {
        cpu.set_shares(u64::try_from(r.cpu_shares).ok());
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    let mut memory = LinuxMemory::default();
    if r.memory_limit_in_bytes != 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        // Memory and memory+swap equal: no swapping unless asked.
        if r.memory_swap_limit_in_bytes == 0 && swap_controller() {
            memory.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 {
        memory.set_swap(Some(r.memory_swap_limit_in_bytes));
    }
    let mut resources = LinuxResources::default();
    resources.set_cpu(Some(cpu));
    resources.set_memory(Some(memory));
    if !r.hugepage_limits.is_empty() && !hugetlb.disabled {
        if present() {
            let limits = r
                .hugepage_limits
                .iter()
                .map(|h| {
                    let mut l = LinuxHugepageLimit::default();
                    l.set_page_size(h.page_size.clone());
                    l.set_limit(i64::try_from(h.limit).unwrap_or(i64::MAX));
                    l
                })
                .collect();
            resources.set_hugepage_limits(Some(limits));
        } else if hugetlb.tolerate_missing {
            tracing::warn!("hugetlb cgroup controller is absent: huge page limits skipped");
        } else {
            return Err(Error::failed_precondition(
                "huge page limits are asked for but the hugetlb cgroup controller is missing: \
                 set tolerate_missing_hugetlb_controller to true to skip them",
            ));
        }
    }
    if !r.unified.is_empty() {
        resources.set_unified(Some(r.unified.clone()));
    }
    Ok(resources)
}

/// The container's CRI resources over the spec's (its device rules kept).
pub fn with_cri_resources(
    resources: Option<&pb::LinuxContainerResources>,
    hugetlb: Hugetlb,
) -> Result<Opt> {
    let resources = resources.map(|r| linux_resources(r, hugetlb)).transpose()?;
    Ok(opt(move |spec, ctx| match &resources {
        Some(r) => spec::with_resources(r.clone()).apply(spec, ctx),
        None => Ok(()),
    }))
}

/// containerd's `WithDisabledCgroups` (`disable_cgroup`): no cgroup path,
/// so the runtime makes none of its own choosing either.
pub fn without_cgroups() -> Opt {
    opt(|spec, _| {
        linux_mut(spec).set_cgroups_path(None);
        Ok(())
    })
}

/// The pod's user namespace (`hostUsers: false`): joined at `path` if
/// given (the pause container joins the one its network namespace was made
/// in; containers the pause container's), else made, with the pod's
/// mappings either way (runc reads them to know who the pod's root is).
pub fn with_user_namespace(
    path: Option<PathBuf>,
    userns: &crate::userns::PodUserns,
) -> Result<Opt> {
    let (uids, gids) = userns.oci_mappings()?;
    Ok(opt(move |spec, ctx| {
        match &path {
            Some(path) => spec::with_namespace_path(LinuxNamespaceType::User, path.clone())
                .apply(spec, ctx)?,
            None => {
                let list = linux_mut(spec)
                    .namespaces_mut()
                    .get_or_insert_with(Vec::new);
                if !list.iter().any(|ns| ns.typ() == LinuxNamespaceType::User) {
                    let mut ns = oci_spec::runtime::LinuxNamespace::default();
                    ns.set_typ(LinuxNamespaceType::User);
                    list.push(ns);
                }
            }
        }
        let linux = linux_mut(spec);
        linux.set_uid_mappings(Some(uids.clone()));
        linux.set_gid_mappings(Some(gids.clone()));
        Ok(())
    }))
}

/// Joins the sandbox's network, ipc and uts namespaces (through its pause
/// process), its user namespace when the pod has its own, and its pid
/// namespace (or a target container's) unless the container has its own.
pub fn with_pod_namespaces(
    options: &pb::NamespaceOption,
    sandbox_pid: u32,
    target_pid: u32,
    userns: Option<&crate::userns::PodUserns>,
) -> Result<Opt> {
    let own_pid = options.pid == pb::NamespaceMode::Container as i32;
    let userns = userns
        .map(|u| with_user_namespace(Some(format!("/proc/{sandbox_pid}/ns/user").into()), u))
        .transpose()?;
    Ok(opt(move |spec, ctx| {
        if let Some(userns) = &userns {
            userns.apply(spec, ctx)?;
        }
        let join = |typ, pid: u32, name: &str| {
            spec::with_namespace_path(typ, format!("/proc/{pid}/ns/{name}"))
        };
        join(LinuxNamespaceType::Network, sandbox_pid, "net").apply(spec, ctx)?;
        join(LinuxNamespaceType::Ipc, sandbox_pid, "ipc").apply(spec, ctx)?;
        join(LinuxNamespaceType::Uts, sandbox_pid, "uts").apply(spec, ctx)?;
        if !own_pid {
            join(LinuxNamespaceType::Pid, target_pid, "pid").apply(spec, ctx)?;
        }
        Ok(())
    }))
}

/// Masked and read-only paths: empty (kubelet sends the defaults it
/// wants), then those of the security context.
pub fn with_proc_paths(masked: &[String], readonly: &[String]) -> Opt {
    let masked = masked.to_vec();
    let readonly = readonly.to_vec();
    opt(move |spec, _| {
        let linux = linux_mut(spec);
        linux.set_masked_paths(Some(masked.clone()));
        linux.set_readonly_paths(Some(readonly.clone()));
        Ok(())
    })
}

/// Where a mount point comes from in `/proc/self/mountinfo`: its
/// optional fields (`shared:N`, `master:N`).
fn mount_propagation(path: &Path) -> Result<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = Path::new(point);
        if path.starts_with(point) {
            let depth = point.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                let optional = fields
                    .iter()
                    .skip(6)
                    .take_while(|f| **f != "-")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                best = Some((depth, optional));
            }
        }
    }
    best.map(|(_, o)| o)
        .ok_or_else(|| Error::not_found(format!("no mount holds {}", path.display())))
}

/// A CRI mount as a bind mount, its host path made if missing and its
/// symbolic links resolved; propagation checked against the host mount.
fn bind_mount(
    m: &pb::Mount,
    root_propagation: &mut Option<String>,
    rro_supported: bool,
) -> Result<Mount> {
    if m.image.is_some() && m.host_path.is_empty() {
        // The CRI mounts the image and fills in the host path first.
        return Err(Error::invalid_argument(format!(
            "the image mount on {:?} was not resolved to a mounted image",
            m.container_path
        )));
    }
    if m.recursive_read_only {
        if !m.readonly {
            return Err(Error::invalid_argument(format!(
                "recursive read-only mount on {:?} must be read-only",
                m.container_path
            )));
        }
        if m.propagation != pb::MountPropagation::PropagationPrivate as i32 {
            return Err(Error::invalid_argument(format!(
                "recursive read-only mount on {:?} must have private propagation",
                m.container_path
            )));
        }
        if !rro_supported {
            return Err(Error::failed_precondition(format!(
                "recursive read-only mount on {:?}: the runtime does not support them",
                m.container_path
            )));
        }
    }
    let source = PathBuf::from(&m.host_path);
    if let Err(e) = std::fs::symlink_metadata(&source) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io(format!("stat {}", source.display()), e));
        }
        std::fs::create_dir_all(&source)
            .map_err(|e| Error::io(format!("create {}", source.display()), e))?;
    }
    let source = std::fs::canonicalize(&source)
        .map_err(|e| Error::io(format!("resolve {}", source.display()), e))?;
    let mut options = vec!["rbind".to_owned()];
    match pb::MountPropagation::try_from(m.propagation) {
        Ok(pb::MountPropagation::PropagationBidirectional) => {
            if !mount_propagation(&source)?.contains("shared:") {
                return Err(Error::failed_precondition(format!(
                    "path {:?} is mounted on a mount that is not shared",
                    m.host_path
                )));
            }
            options.push("rshared".to_owned());
            *root_propagation = Some("rshared".to_owned());
        }
        Ok(pb::MountPropagation::PropagationHostToContainer) => {
            let propagation = mount_propagation(&source)?;
            if !propagation.contains("shared:") && !propagation.contains("master:") {
                return Err(Error::failed_precondition(format!(
                    "path {:?} is mounted on a mount that is neither shared nor slave",
                    m.host_path
                )));
            }
            options.push("rslave".to_owned());
            if root_propagation.as_deref() != Some("rshared") {
                *root_propagation = Some("rslave".to_owned());
            }
        }
        _ => options.push("rprivate".to_owned()),
    }
    options.push(if m.readonly { "ro" } else { "rw" }.to_owned());
    if m.recursive_read_only {
        // runc makes every submount read-only too (mount_setattr).
        options.push("rro".to_owned());
    }
    let mut mount = Mount::default();
    mount.set_source(Some(source));
    mount.set_destination(PathBuf::from(&m.container_path));
    mount.set_typ(Some("bind".to_owned()));
    mount.set_options(Some(options));
    // An ID-mapped bind (a `hostUsers: false` pod's volume): runtime-spec
    // 1.1's fields, which the shim performs whatever the runc.
    if let Some((uids, gids)) = crate::userns::oci_mount_mappings(m)? {
        mount.set_uid_mappings(Some(uids));
        mount.set_gid_mappings(Some(gids));
    }
    Ok(mount)
}

fn clean(path: &str) -> PathBuf {
    Path::new(path).components().collect()
}

/// containerd's CRI `WithMounts`: the container's mounts, then `extra`
/// ones it does not override, sorted so that outer mounts come first; a
/// read-only cgroup mount; the default mounts the container overrides
/// (all of `/dev/…` when it mounts `/dev`) dropped.
pub fn with_cri_mounts(
    config: &[pb::Mount],
    extra: &[pb::Mount],
    rro_supported: bool,
) -> Result<Opt> {
    let mut mounts: Vec<pb::Mount> = config.to_vec();
    for e in extra {
        if !config
            .iter()
            .any(|c| clean(&c.container_path) == clean(&e.container_path))
        {
            mounts.push(e.clone());
        }
    }
    mounts.sort_by_key(|m| clean(&m.container_path).components().count());
    for m in &mounts {
        if !m.container_path.starts_with('/') {
            return Err(Error::invalid_argument(format!(
                "mount destination {:?} is not absolute",
                m.container_path
            )));
        }
        if m.host_path.is_empty() {
            return Err(Error::invalid_argument(format!(
                "mount on {:?} has no host path",
                m.container_path
            )));
        }
    }
    let mut root_propagation = None;
    let binds = mounts
        .iter()
        .map(|m| bind_mount(m, &mut root_propagation, rro_supported))
        .collect::<Result<Vec<Mount>>>()?;
    let targets: HashMap<PathBuf, ()> = mounts
        .iter()
        .map(|m| (clean(&m.container_path), ()))
        .collect();
    Ok(opt(move |spec: &mut Spec, _| {
        let mut list = spec.mounts().clone().unwrap_or_default();
        let mut cgroup = Mount::default();
        cgroup.set_source(Some(PathBuf::from("cgroup")));
        cgroup.set_destination(PathBuf::from("/sys/fs/cgroup"));
        cgroup.set_typ(Some("cgroup".to_owned()));
        cgroup.set_options(Some(
            ["nosuid", "noexec", "nodev", "relatime", "ro"]
                .map(str::to_owned)
                .to_vec(),
        ));
        list.push(cgroup);
        let mounts_dev = targets.contains_key(Path::new("/dev"));
        list.retain(|m| {
            let dst: PathBuf = m.destination().components().collect();
            let under_dev = mounts_dev && dst.starts_with("/dev") && dst != Path::new("/dev");
            !(targets.contains_key(&dst) || under_dev)
        });
        list.extend(binds.iter().cloned());
        spec.set_mounts(Some(list));
        if let Some(p) = &root_propagation {
            linux_mut(spec).set_rootfs_propagation(Some(p.clone()));
        }
        Ok(())
    }))
}

/// Whether the kernel filters system calls.
fn seccomp_supported() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("\nSeccomp:"))
}

/// A security profile named the old way (`runtime/default`,
/// `unconfined`, `localhost/<path>`).
fn legacy_profile(name: &str) -> Result<Option<pb::SecurityProfile>> {
    let profile = |t: pb::security_profile::ProfileType, r: &str| pb::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.to_owned(),
    };
    Ok(Some(match name {
        "" => return Ok(None),
        "runtime/default" | "docker/default" => {
            profile(pb::security_profile::ProfileType::RuntimeDefault, "")
        }
        "unconfined" => profile(pb::security_profile::ProfileType::Unconfined, ""),
        other => match other.strip_prefix("localhost/") {
            Some(path) => profile(pb::security_profile::ProfileType::Localhost, path),
            None => {
                return Err(Error::invalid_argument(format!(
                    "invalid security profile {other:?}"
                )))
            }
        },
    }))
}

/// The seccomp option of a security context: the runtime default
/// profile, a profile file on the node, or none (unconfined, privileged,
/// or not asked for).
pub fn with_cri_seccomp(
    profile: Option<&pb::SecurityProfile>,
    legacy: &str,
    privileged: bool,
) -> Result<Option<Opt>> {
    use pb::security_profile::ProfileType;
    let profile = match profile {
        Some(p) => Some(p.clone()),
        None => legacy_profile(legacy)?,
    };
    if privileged {
        return Ok(None);
    }
    let Some(profile) = profile else {
        return Ok(None);
    };
    let typ = ProfileType::try_from(profile.profile_type).map_err(|_| {
        Error::invalid_argument(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))
    })?;
    if !seccomp_supported() {
        if typ == ProfileType::Unconfined {
            return Ok(None);
        }
        return Err(Error::failed_precondition(
            "seccomp is not supported by this kernel",
        ));
    }
    if typ != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(Error::invalid_argument(
            "a seccomp localhost_ref is only valid with profile type Localhost",
        ));
    }
    match typ {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(opt(|spec, _| {
            let profile = crate::seccomp::default_profile(spec);
            linux_mut(spec).set_seccomp(Some(profile));
            Ok(())
        }))),
        ProfileType::Localhost => {
            let path = profile.localhost_ref.trim_start_matches("localhost/");
            let loaded = crate::seccomp::load_profile(Path::new(path))?;
            Ok(Some(spec::with_seccomp(loaded)))
        }
    }
}

/// Whether the kernel enforces AppArmor.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// The AppArmor option of a security context. Without AppArmor on the
/// host only "unconfined" may be asked for; with it, a named
/// (`localhost/…`) profile must be loaded. The runtime default profile is
/// not generated by crated yet: a container asking for it (or for nothing)
/// runs without one, and a warning says so.
pub fn with_cri_apparmor(
    profile: Option<&pb::SecurityProfile>,
    legacy: &str,
    privileged: bool,
) -> Result<Option<Opt>> {
    use pb::security_profile::ProfileType;
    let profile = match profile {
        Some(p) => Some(p.clone()),
        None => legacy_profile(legacy)?,
    };
    let typ = profile
        .as_ref()
        .map(|p| {
            ProfileType::try_from(p.profile_type).map_err(|_| {
                Error::invalid_argument(format!("unknown apparmor profile type {}", p.profile_type))
            })
        })
        .transpose()?;
    if !apparmor_enabled() {
        return match typ {
            None | Some(ProfileType::Unconfined) => Ok(None),
            Some(_) => Err(Error::failed_precondition(
                "apparmor is not supported on this host",
            )),
        };
    }
    match (typ, profile) {
        (Some(ProfileType::Localhost), Some(p)) => {
            let name = p.localhost_ref.trim_start_matches("localhost/").to_owned();
            let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
                .map_err(|e| Error::io("read the loaded apparmor profiles", e))?;
            if !loaded.lines().any(|l| l.starts_with(&format!("{name} ("))) {
                return Err(Error::not_found(format!(
                    "apparmor profile {name:?} is not loaded"
                )));
            }
            Ok(Some(opt(move |spec, _| {
                process_mut(spec).set_apparmor_profile(Some(name.clone()));
                Ok(())
            })))
        }
        (Some(ProfileType::Unconfined), _) => Ok(None),
        _ if privileged => Ok(None),
        _ => {
            tracing::warn!(
                "the runtime default apparmor profile is not generated by crated yet: the container runs without one"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_limits_follow_the_hugetlb_settings() {
        let r = pb::LinuxContainerResources {
            hugepage_limits: vec![pb::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        };
        let limits = |hugetlb, present| {
            resources_on(&r, hugetlb, present).map(|res| res.hugepage_limits().clone())
        };
        fn yes() -> bool {
            true
        }
        fn no() -> bool {
            false
        }
        let default = Hugetlb {
            tolerate_missing: true,
            disabled: false,
        };
        assert_eq!(limits(default, yes).unwrap().map(|l| l.len()), Some(1));
        // Disabled: none, controller or not.
        let disabled = Hugetlb {
            disabled: true,
            ..default
        };
        assert!(limits(disabled, yes).unwrap().is_none());
        // Missing controller: skipped when tolerated, else refused.
        assert!(limits(default, no).unwrap().is_none());
        let strict = Hugetlb {
            tolerate_missing: false,
            ..default
        };
        let err = limits(strict, no).unwrap_err().to_string();
        assert!(err.contains("tolerate_missing_hugetlb_controller"), "{err}");
    }

    #[test]
    fn user_strings_follow_the_cri_rules() {
        assert_eq!(user_string("", None, None).unwrap(), "");
        assert_eq!(user_string("", Some(1000), None).unwrap(), "1000");
        assert_eq!(user_string("", Some(1000), Some(50)).unwrap(), "1000:50");
        assert_eq!(user_string("web", Some(1000), Some(50)).unwrap(), "web:50");
        assert_eq!(user_string("web", Some(1000), None).unwrap(), "web");
        let err = user_string("", None, Some(50)).unwrap_err();
        assert!(err.to_string().contains("without user"), "{err}");
    }

    #[test]
    fn cgroup_paths_follow_the_driver() {
        assert_eq!(
            cgroups_path("/kubepods/besteffort/pod1", "abc"),
            "/kubepods/besteffort/pod1/abc"
        );
        assert_eq!(
            cgroups_path("/kubepods.slice/kubepods-pod1.slice", "abc"),
            "kubepods-pod1.slice:cri-containerd:abc"
        );
    }

    #[test]
    fn capabilities_are_named_without_prefix_and_all_means_all() {
        assert_eq!(capability("net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(capability("CAP_SYS_ADMIN").unwrap(), Capability::SysAdmin);
        assert!(capability("FLY").unwrap_err().to_string().contains("FLY"));
        let ns = crated_core::Namespace::new("k8s.io").unwrap();
        let ctx = spec::SpecContext::new(&ns, "c");
        let caps = pb::Capability {
            add_capabilities: vec!["ALL".into()],
            drop_capabilities: vec!["CHOWN".into()],
            add_ambient_capabilities: vec![],
        };
        let spec = spec::generate(&ctx, &[with_cri_capabilities(Some(&caps)).unwrap()]).unwrap();
        let bounding = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(bounding.contains(&Capability::SysAdmin));
        assert!(!bounding.contains(&Capability::Chown));
        let caps = pb::Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["ALL".into()],
            add_ambient_capabilities: vec![],
        };
        let spec = spec::generate(&ctx, &[with_cri_capabilities(Some(&caps)).unwrap()]).unwrap();
        let bounding = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert_eq!(bounding.len(), 1);
    }

    #[test]
    fn mounts_replace_defaults_and_sort_outer_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let ns = crated_core::Namespace::new("k8s.io").unwrap();
        let ctx = spec::SpecContext::new(&ns, "c");
        let m = |host: &Path, dst: &str, ro: bool| pb::Mount {
            container_path: dst.into(),
            host_path: host.display().to_string(),
            readonly: ro,
            ..Default::default()
        };
        let config = [m(&a, "/data/inner", true), m(dir.path(), "/data", false)];
        let extra = [
            m(dir.path(), "/data", true),
            m(dir.path(), "/dev/shm", false),
        ];
        let spec =
            spec::generate(&ctx, &[with_cri_mounts(&config, &extra, false).unwrap()]).unwrap();
        assert!(a.is_dir(), "a missing host path is made");
        let mounts = spec.mounts().clone().unwrap();
        let dsts: Vec<_> = mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        let data = dsts.iter().position(|d| d == "/data").unwrap();
        let inner = dsts.iter().position(|d| d == "/data/inner").unwrap();
        assert!(data < inner, "{dsts:?}");
        assert_eq!(
            dsts.iter().filter(|d| *d == "/dev/shm").count(),
            1,
            "{dsts:?}"
        );
        assert_eq!(dsts.iter().filter(|d| *d == "/data").count(), 1, "{dsts:?}");
        let options = mounts[data].options().clone().unwrap();
        assert!(
            options.contains(&"rw".to_owned()),
            "config beats extra: {options:?}"
        );
        assert!(dsts.contains(&"/sys/fs/cgroup".to_owned()));
        let bad = [pb::Mount {
            container_path: "rel".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        }];
        assert!(with_cri_mounts(&bad, &[], false).is_err());
    }

    #[test]
    fn devices_must_be_device_nodes() {
        let ns = crated_core::Namespace::new("k8s.io").unwrap();
        let ctx = spec::SpecContext::new(&ns, "c");
        let d = pb::Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        };
        let spec = spec::generate(&ctx, &[with_cri_devices(&[d], None).unwrap()]).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let dev = linux
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .find(|x| x.path() == Path::new("/dev/mynull"))
            .unwrap();
        assert_eq!((dev.major(), dev.minor()), (1, 3));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(rules.iter().any(|r| r.allow()
            && r.major() == Some(1)
            && r.minor() == Some(3)
            && r.access().as_deref() == Some("rw")));
        let not = pb::Device {
            container_path: "/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: "r".into(),
        };
        let Err(err) = with_cri_devices(&[not], None) else {
            panic!("a regular file is not a device");
        };
        assert!(err.to_string().contains("not a device"), "{err}");
    }

    #[test]
    fn legacy_profile_names_are_understood() {
        assert!(legacy_profile("").unwrap().is_none());
        assert_eq!(
            legacy_profile("localhost/tmp/p.json")
                .unwrap()
                .unwrap()
                .localhost_ref,
            "tmp/p.json"
        );
        assert!(legacy_profile("bogus").is_err());
        assert!(with_cri_seccomp(None, "unconfined", false)
            .unwrap()
            .is_none());
        assert!(with_cri_seccomp(None, "runtime/default", true)
            .unwrap()
            .is_none());
    }

    #[test]
    fn recursive_read_only_mounts_must_be_read_only_private_and_supported() {
        let dir = tempfile::tempdir().unwrap();
        let m = |readonly: bool, propagation: pb::MountPropagation| pb::Mount {
            container_path: "/mnt".into(),
            host_path: dir.path().display().to_string(),
            readonly,
            recursive_read_only: true,
            propagation: propagation as i32,
            ..Default::default()
        };
        let private = pb::MountPropagation::PropagationPrivate;
        let msg = |r: Result<Opt>| match r {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        assert!(msg(with_cri_mounts(&[m(false, private)], &[], true)).contains("must be read-only"));
        let host = pb::MountPropagation::PropagationHostToContainer;
        assert!(msg(with_cri_mounts(&[m(true, host)], &[], true)).contains("private propagation"));
        assert!(msg(with_cri_mounts(&[m(true, private)], &[], false)).contains("does not support"));
        let ns = crated_core::Namespace::new("k8s.io").unwrap();
        let ctx = spec::SpecContext::new(&ns, "c");
        let opt = with_cri_mounts(&[m(true, private)], &[], true).unwrap();
        let spec = spec::generate(&ctx, &[opt]).unwrap();
        let mounts = spec.mounts().clone().unwrap();
        let mnt = mounts
            .iter()
            .find(|x| x.destination() == Path::new("/mnt"))
            .unwrap();
        let options = mnt.options().clone().unwrap();
        assert!(
            options.contains(&"ro".to_owned()) && options.contains(&"rro".to_owned()),
            "{options:?}"
        );
    }

    #[test]
    fn strict_supplemental_groups_drop_the_image_groups() {
        let ns = crated_core::Namespace::new("k8s.io").unwrap();
        let ctx = spec::SpecContext::new(&ns, "c");
        let image_groups = || {
            opt(|spec, _| {
                let user = process_mut(spec).user_mut();
                user.set_gid(1000);
                user.set_additional_gids(Some(vec![50000]));
                Ok(())
            })
        };
        let groups = |strict| {
            let opts = [
                image_groups(),
                with_supplemental_groups(&[1234], strict).unwrap(),
            ];
            let spec = spec::generate(&ctx, &opts).unwrap();
            spec.process()
                .as_ref()
                .unwrap()
                .user()
                .additional_gids()
                .clone()
                .unwrap()
        };
        assert_eq!(groups(false), [1000, 1234, 50000]);
        assert_eq!(groups(true), [1000, 1234]);
        assert!(with_supplemental_groups(&[-1], false).is_err());
    }
}
