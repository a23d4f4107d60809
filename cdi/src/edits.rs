//! Applying a spec's or a device's [`ContainerEdits`] to an OCI runtime
//! spec, as the CDI reference library does: variables and devices replace
//! those of the same name or path, device nodes get cgroup access, mounts
//! replace one at the same container path and stay sorted outer first.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook as OciHook, Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt,
    LinuxResources, Mount as OciMount, Process, Spec,
};

use crate::spec::{ContainerEdits, DeviceNode, Hook};

/// Applies `edits` to `spec`; a failure says what could not be applied.
pub fn apply(edits: &ContainerEdits, spec: &mut Spec) -> Result<(), String> {
    if !edits.env.is_empty() {
        let process = process_mut(spec);
        let mut env = process.env().clone().unwrap_or_default();
        for var in &edits.env {
            let key = var.split('=').next().unwrap_or_default();
            match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
                Some(existing) => existing.clone_from(var),
                None => env.push(var.clone()),
            }
        }
        process.set_env(Some(env));
    }
    let (uid, gid) = spec
        .process()
        .as_ref()
        .map(|p| (p.user().uid(), p.user().gid()))
        .unwrap_or_default();
    for node in &edits.device_nodes {
        let mut device = host_device(node)?;
        if device.uid().is_none() && uid > 0 {
            device.set_uid(Some(uid));
        }
        if device.gid().is_none() && gid > 0 {
            device.set_gid(Some(gid));
        }
        let linux = linux_mut(spec);
        let mut devices = linux.devices().clone().unwrap_or_default();
        devices.retain(|d| d.path() != device.path());
        devices.push(device.clone());
        linux.set_devices(Some(devices));
        if matches!(device.typ(), LinuxDeviceType::B | LinuxDeviceType::C) {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(device.typ()));
            rule.set_major(Some(device.major()));
            rule.set_minor(Some(device.minor()));
            rule.set_access(Some(if node.permissions.is_empty() {
                "rwm".to_owned()
            } else {
                node.permissions.clone()
            }));
            let resources = linux
                .resources_mut()
                .get_or_insert_with(LinuxResources::default);
            let mut rules = resources.devices().clone().unwrap_or_default();
            rules.push(rule);
            resources.set_devices(Some(rules));
        }
    }
    if !edits.mounts.is_empty() {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in &edits.mounts {
            let destination = PathBuf::from(&m.container_path);
            mounts.retain(|x| x.destination() != &destination);
            let mut mount = OciMount::default();
            mount.set_destination(destination);
            mount.set_source(Some(PathBuf::from(&m.host_path)));
            mount.set_typ((!m.kind.is_empty()).then(|| m.kind.clone()));
            mount.set_options((!m.options.is_empty()).then(|| m.options.clone()));
            mounts.push(mount);
        }
        // Outer mounts first, so an inner one is not hidden; stable, so
        // the order among equals is kept.
        mounts.sort_by_key(|m| m.destination().components().count());
        spec.set_mounts(Some(mounts));
    }
    for hook in &edits.hooks {
        add_hook(spec, hook)?;
    }
    if let Some(rdt) = &edits.intel_rdt {
        let mut oci = LinuxIntelRdt::default();
        let text = |s: &String| (!s.is_empty()).then(|| s.clone());
        oci.set_clos_id(text(&rdt.clos_id));
        oci.set_l3_cache_schema(text(&rdt.l3_cache_schema));
        oci.set_mem_bw_schema(text(&rdt.mem_bw_schema));
        oci.set_enable_cmt(rdt.enable_cmt.then_some(true));
        oci.set_enable_mbm(rdt.enable_mbm.then_some(true));
        linux_mut(spec).set_intel_rdt(Some(oci));
    }
    if edits.additional_gids.iter().any(|g| *g != 0) {
        let process = process_mut(spec);
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for gid in edits.additional_gids.iter().filter(|g| **g != 0) {
            if !gids.contains(gid) {
                gids.push(*gid);
            }
        }
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    Ok(())
}

/// The OCI device for `node`: what the node says, the rest (type, major
/// and minor) from the host node it names.
fn host_device(node: &DeviceNode) -> Result<LinuxDevice, String> {
    let host = if node.host_path.is_empty() {
        &node.path
    } else {
        &node.host_path
    };
    let given = match node.kind.as_str() {
        "b" => Some(LinuxDeviceType::B),
        "c" => Some(LinuxDeviceType::C),
        "u" => Some(LinuxDeviceType::U),
        "p" => Some(LinuxDeviceType::P),
        _ => None,
    };
    let complete = given.is_some_and(|t| node.major != 0 || t == LinuxDeviceType::P);
    let (kind, major, minor) = if complete {
        (given.unwrap_or(LinuxDeviceType::C), node.major, node.minor)
    } else {
        let (found, major, minor) = stat_device(Path::new(host))?;
        if let Some(given) = given {
            let same =
                given == found || (given == LinuxDeviceType::U && found == LinuxDeviceType::C);
            if !same {
                return Err(format!(
                    "device node {:?}: the spec says type {:?}, host node {host:?} is {:?}",
                    node.path, node.kind, found
                ));
            }
        }
        let kind = given.unwrap_or(found);
        if node.major == 0 && kind != LinuxDeviceType::P {
            (kind, major, minor)
        } else {
            (kind, node.major, node.minor)
        }
    };
    let mut device = LinuxDevice::default();
    device.set_path(PathBuf::from(&node.path));
    device.set_typ(kind);
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(node.file_mode);
    device.set_uid(node.uid);
    device.set_gid(node.gid);
    Ok(device)
}

/// The type, major and minor of the device node at `host`.
fn stat_device(host: &Path) -> Result<(LinuxDeviceType, i64, i64), String> {
    let meta =
        std::fs::metadata(host).map_err(|e| format!("host device node {}: {e}", host.display()))?;
    device_numbers(&meta).ok_or_else(|| format!("{} is not a device node", host.display()))
}

/// The OCI type, major and minor of a device node with `meta`; `None`
/// for a file that is no device node (a fifo counts, as in OCI).
pub fn device_numbers(meta: &std::fs::Metadata) -> Option<(LinuxDeviceType, i64, i64)> {
    let kind = meta.file_type();
    let typ = if kind.is_char_device() {
        LinuxDeviceType::C
    } else if kind.is_block_device() {
        LinuxDeviceType::B
    } else if kind.is_fifo() {
        LinuxDeviceType::P
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some((
        typ,
        i64::from(nix::sys::stat::major(rdev) as u32),
        i64::from(nix::sys::stat::minor(rdev) as u32),
    ))
}

fn add_hook(spec: &mut Spec, hook: &Hook) -> Result<(), String> {
    let mut oci = OciHook::default();
    oci.set_path(PathBuf::from(&hook.path));
    oci.set_args((!hook.args.is_empty()).then(|| hook.args.clone()));
    oci.set_env((!hook.env.is_empty()).then(|| hook.env.clone()));
    oci.set_timeout(hook.timeout);
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    let push = |list: &Option<Vec<OciHook>>| {
        let mut list = list.clone().unwrap_or_default();
        list.push(oci.clone());
        Some(list)
    };
    match hook.hook_name.as_str() {
        #[allow(deprecated)]
        "prestart" => hooks.set_prestart(push(hooks.prestart())),
        "createRuntime" => hooks.set_create_runtime(push(hooks.create_runtime())),
        "createContainer" => hooks.set_create_container(push(hooks.create_container())),
        "startContainer" => hooks.set_start_container(push(hooks.start_container())),
        "poststart" => hooks.set_poststart(push(hooks.poststart())),
        "poststop" => hooks.set_poststop(push(hooks.poststop())),
        other => return Err(format!("unknown hook name {other:?}")),
    };
    spec.set_hooks(Some(hooks));
    Ok(())
}

fn process_mut(spec: &mut Spec) -> &mut Process {
    if spec.process().is_none() {
        spec.set_process(Some(Process::default()));
    }
    spec.process_mut().get_or_insert_with(Process::default)
}

fn linux_mut(spec: &mut Spec) -> &mut Linux {
    if spec.linux().is_none() {
        spec.set_linux(Some(Linux::default()));
    }
    spec.linux_mut().get_or_insert_with(Linux::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Mount;

    fn empty_spec() -> Spec {
        let mut spec = Spec::default();
        spec.set_mounts(Some(vec![]));
        spec.set_hooks(None);
        spec
    }

    #[test]
    fn edits_replace_by_key_and_path_and_grant_access() {
        let mut spec = empty_spec();
        process_mut(&mut spec).set_env(Some(vec!["PATH=/bin".into(), "KEEP=1".into()]));
        let mut user = process_mut(&mut spec).user().clone();
        user.set_uid(1000);
        user.set_gid(0);
        process_mut(&mut spec).set_user(user);
        let edits = ContainerEdits {
            env: vec!["PATH=/opt/bin".into(), "NEW=2".into()],
            device_nodes: vec![DeviceNode {
                path: "/dev/gpu0".into(),
                host_path: "/dev/null".into(),
                kind: String::new(),
                major: 0,
                minor: 0,
                file_mode: Some(0o660),
                permissions: "rw".into(),
                uid: None,
                gid: None,
            }],
            mounts: vec![
                Mount {
                    host_path: "/opt/lib".into(),
                    container_path: "/usr/lib/x/y".into(),
                    options: vec!["ro".into(), "bind".into()],
                    kind: String::new(),
                },
                Mount {
                    host_path: "/opt".into(),
                    container_path: "/usr".into(),
                    options: vec![],
                    kind: "bind".into(),
                },
            ],
            additional_gids: vec![0, 44, 44],
            ..ContainerEdits::default()
        };
        apply(&edits, &mut spec).unwrap();
        apply(&edits, &mut spec).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.env().as_ref().unwrap(),
            &["PATH=/opt/bin", "KEEP=1", "NEW=2"]
        );
        assert_eq!(process.user().additional_gids().as_ref().unwrap(), &[44]);
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().as_ref().unwrap();
        assert_eq!(devices.len(), 1, "{devices:?}");
        let null = &devices[0];
        assert_eq!(
            (null.typ(), null.major(), null.minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        // Owned by the process's user (not root), group left alone.
        assert_eq!((null.uid(), null.gid()), (Some(1000), None));
        assert_eq!(null.file_mode(), Some(0o660));
        let rule = &linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[0];
        assert_eq!(rule.access().as_deref(), Some("rw"));
        let mounts: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(mounts, ["/usr", "/usr/lib/x/y"]);
    }

    #[test]
    fn device_nodes_must_match_the_host() {
        let node = |path: &str, kind: &str| DeviceNode {
            path: "/dev/x".into(),
            host_path: path.into(),
            kind: kind.into(),
            major: 0,
            minor: 0,
            file_mode: None,
            permissions: String::new(),
            uid: None,
            gid: None,
        };
        let err = host_device(&node("/dev/null", "b")).unwrap_err();
        assert!(err.contains("type \"b\""), "{err}");
        let err = host_device(&node("/etc/hostname", "")).unwrap_err();
        assert!(err.contains("not a device node"), "{err}");
        let err = host_device(&node("/dev/no-such-node", "")).unwrap_err();
        assert!(err.contains("/dev/no-such-node"), "{err}");
        // Type and numbers given: the host is not looked at.
        let given = DeviceNode {
            major: 240,
            minor: 1,
            ..node("/dev/absent", "c")
        };
        let device = host_device(&given).unwrap();
        assert_eq!((device.major(), device.minor()), (240, 1));
    }

    #[test]
    fn hooks_go_to_their_list() {
        let mut spec = empty_spec();
        let hook = |name: &str| Hook {
            hook_name: name.into(),
            path: "/bin/hook".into(),
            args: vec!["hook".into(), name.into()],
            env: vec![],
            timeout: Some(5),
        };
        for name in ["createContainer", "poststop", "createContainer"] {
            apply(
                &ContainerEdits {
                    hooks: vec![hook(name)],
                    ..ContainerEdits::default()
                },
                &mut spec,
            )
            .unwrap();
        }
        let hooks = spec.hooks().as_ref().unwrap();
        assert_eq!(hooks.create_container().as_ref().unwrap().len(), 2);
        assert_eq!(hooks.poststop().as_ref().unwrap()[0].timeout(), Some(5));
        assert!(hooks.start_container().is_none());
    }
}
