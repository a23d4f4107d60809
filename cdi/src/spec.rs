//! A CDI spec file: its schema (cdiVersion 0.3.0 to 1.0.0, YAML or JSON)
//! and the checks a spec must pass before any of its devices is offered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::names;

/// The `cdiVersion`s this crate reads.
pub const VERSIONS: &[&str] = &[
    "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0",
];

/// A spec: a vendor's class of devices and what each adds to a container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// The schema version, one of [`VERSIONS`].
    pub cdi_version: String,
    /// `vendor/class`.
    pub kind: String,
    /// Free-form metadata.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The devices, at least one.
    pub devices: Vec<Device>,
    /// Edits made once for any number of this spec's devices.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    /// Its name within the spec's kind.
    pub name: String,
    /// Free-form metadata.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// What it adds to a container; not empty.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// Changes to a container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerEdits {
    /// `KEY=value` variables, replacing one of the same key.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes to create, with cgroup access to them.
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    /// OCI hooks to add.
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// Mounts, replacing one at the same container path.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The Intel RDT class (0.7.0).
    #[serde(default)]
    pub intel_rdt: Option<IntelRdt>,
    /// Groups added to the process's (0.7.0); 0 is ignored.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    fn is_empty(&self) -> bool {
        self == &ContainerEdits::default()
    }
}

/// A device node in the container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    /// Its path in the container.
    pub path: String,
    /// The node on the host it is made after (default: `path`).
    #[serde(default)]
    pub host_path: String,
    /// `b`, `c`, `u` or `p`; empty: the host node's.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// 0: the host node's.
    #[serde(default)]
    pub major: i64,
    /// With `major`.
    #[serde(default)]
    pub minor: i64,
    /// Its mode bits in the container.
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// cgroup access, of `r`, `w`, `m` (default `rwm`).
    #[serde(default)]
    pub permissions: String,
    /// Its owner (default: the process's user when not root).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Its group (default: the process's group when not root).
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A mount in the container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    /// What is mounted.
    pub host_path: String,
    /// Where.
    pub container_path: String,
    /// Mount options (`bind`, `ro`, …).
    #[serde(default)]
    pub options: Vec<String>,
    /// Filesystem type (0.4.0); empty for a bind mount by its options.
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// An OCI hook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    /// Which of the OCI hook lists: `prestart`, `createRuntime`,
    /// `createContainer`, `startContainer`, `poststart`, `poststop`.
    pub hook_name: String,
    /// The program.
    pub path: String,
    /// Its arguments, `argv[0]` first.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds it may run.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The hook names a spec may use.
pub const HOOK_NAMES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Intel RDT settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelRdt {
    /// The class of service.
    #[serde(default, rename = "closID")]
    pub clos_id: String,
    /// L3 cache allocation.
    #[serde(default, rename = "l3CacheSchema")]
    pub l3_cache_schema: String,
    /// Memory bandwidth allocation.
    #[serde(default, rename = "memBwSchema")]
    pub mem_bw_schema: String,
    /// Cache monitoring.
    #[serde(default, rename = "enableCMT")]
    pub enable_cmt: bool,
    /// Memory bandwidth monitoring.
    #[serde(default, rename = "enableMBM")]
    pub enable_mbm: bool,
}

/// A spec read from a file, checked, with where it came from.
#[derive(Debug)]
pub struct SpecFile {
    /// The file.
    pub path: PathBuf,
    /// Its directory's place in the search order: a higher one wins a
    /// device name over a lower.
    pub priority: usize,
    /// What it says.
    pub spec: Spec,
}

impl SpecFile {
    /// Reads and checks the spec at `path` (YAML, of which JSON is a
    /// subset).
    pub fn read(path: &Path, priority: usize) -> Result<Self> {
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&data, path, priority)
    }

    /// Parses and checks `data`, read from `path`.
    pub fn parse(data: &[u8], path: &Path, priority: usize) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSpec {
            path: path.to_owned(),
            reason,
        };
        let spec: Spec = yaml_serde::from_slice(data).map_err(|e| invalid(e.to_string()))?;
        validate(&spec).map_err(invalid)?;
        Ok(Self {
            path: path.to_owned(),
            priority,
            spec,
        })
    }
}

/// The checks a spec must pass, as the CDI reference library makes them.
fn validate(spec: &Spec) -> std::result::Result<(), String> {
    let version = spec.cdi_version.trim_start_matches('v');
    if !VERSIONS.contains(&version) {
        return Err(format!(
            "cdiVersion {:?} is not one of {}",
            spec.cdi_version,
            VERSIONS.join(", ")
        ));
    }
    names::parse_kind(&spec.kind)?;
    validate_edits(&spec.container_edits).map_err(|e| format!("containerEdits: {e}"))?;
    if spec.devices.is_empty() {
        return Err("no devices".to_owned());
    }
    let mut seen = BTreeSet::new();
    for device in &spec.devices {
        names::validate_device_name(&device.name)?;
        if !seen.insert(device.name.as_str()) {
            return Err(format!("device {:?} is listed twice", device.name));
        }
        if device.container_edits.is_empty() {
            return Err(format!("device {:?} has no containerEdits", device.name));
        }
        validate_edits(&device.container_edits)
            .map_err(|e| format!("device {:?}: {e}", device.name))?;
    }
    Ok(())
}

fn validate_env(env: &[String]) -> std::result::Result<(), String> {
    match env.iter().find(|v| v.find('=').is_none_or(|i| i == 0)) {
        Some(bad) => Err(format!("environment variable {bad:?} is not KEY=value")),
        None => Ok(()),
    }
}

fn validate_edits(edits: &ContainerEdits) -> std::result::Result<(), String> {
    validate_env(&edits.env)?;
    for node in &edits.device_nodes {
        if node.path.is_empty() {
            return Err("a device node has no path".to_owned());
        }
        if !matches!(node.kind.as_str(), "" | "b" | "c" | "u" | "p") {
            return Err(format!(
                "device node {:?}: type {:?} is not b, c, u or p",
                node.path, node.kind
            ));
        }
        if node
            .permissions
            .chars()
            .any(|c| !matches!(c, 'r' | 'w' | 'm'))
        {
            return Err(format!(
                "device node {:?}: permissions {:?} are not of r, w, m",
                node.path, node.permissions
            ));
        }
    }
    for hook in &edits.hooks {
        if !HOOK_NAMES.contains(&hook.hook_name.as_str()) {
            return Err(format!(
                "hook name {:?} is not one of {}",
                hook.hook_name,
                HOOK_NAMES.join(", ")
            ));
        }
        if hook.path.is_empty() {
            return Err(format!("a {} hook has no path", hook.hook_name));
        }
        validate_env(&hook.env).map_err(|e| format!("{} hook: {e}", hook.hook_name))?;
    }
    for mount in &edits.mounts {
        if mount.host_path.is_empty() || mount.container_path.is_empty() {
            return Err(format!(
                "a mount needs both hostPath and containerPath (got {:?} and {:?})",
                mount.host_path, mount.container_path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SpecFile> {
        SpecFile::parse(text.as_bytes(), Path::new("/etc/cdi/test.yaml"), 0)
    }

    #[test]
    fn yaml_and_json_specs_parse() {
        let yaml = parse(
            "cdiVersion: 0.7.0\nkind: vendor.example/gpu\ncontainerEdits:\n  env: [COMMON=1]\n\
             devices:\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/gpu0\n      \
             hostPath: /dev/null\n      permissions: rw\n    mounts:\n    - hostPath: /opt/lib\n      \
             containerPath: /usr/lib/gpu\n      options: [ro, bind]\n    hooks:\n    - hookName: createContainer\n      \
             path: /bin/true\n      args: [true, x]\n    intelRdt:\n      closID: c1\n      enableCMT: true\n    \
             additionalGids: [44]\n",
        )
        .unwrap();
        let device = &yaml.spec.devices[0];
        assert_eq!(yaml.spec.container_edits.env, ["COMMON=1"]);
        assert_eq!(
            device.container_edits.device_nodes[0].host_path,
            "/dev/null"
        );
        assert_eq!(device.container_edits.mounts[0].options, ["ro", "bind"]);
        assert_eq!(device.container_edits.hooks[0].args, ["true", "x"]);
        assert!(
            device
                .container_edits
                .intel_rdt
                .as_ref()
                .unwrap()
                .enable_cmt
        );
        assert_eq!(device.container_edits.additional_gids, [44]);

        let json = parse(
            r#"{"cdiVersion":"0.5.0","kind":"v.com/c","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        )
        .unwrap();
        assert_eq!(json.spec.devices[0].name, "a");
    }

    #[test]
    fn invalid_specs_say_what_is_wrong() {
        let device = "devices: [{name: a, containerEdits: {env: [A=1]}}]";
        for (text, says) in [
            (format!("cdiVersion: 9.9.9\nkind: v.com/c\n{device}"), "cdiVersion \"9.9.9\""),
            (format!("cdiVersion: 0.6.0\nkind: nokind\n{device}"), "not vendor/class"),
            ("cdiVersion: 0.6.0\nkind: v.com/c\ndevices: []".to_owned(), "no devices"),
            (
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a}]".to_owned(),
                "has no containerEdits",
            ),
            (
                format!("cdiVersion: 0.6.0\nkind: v.com/c\n{device}\nextra: 1"),
                "unknown field `extra`",
            ),
            (
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [NOEQUALS]}}]"
                    .to_owned(),
                "\"NOEQUALS\" is not KEY=value",
            ),
            (
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, type: z}]}}]"
                    .to_owned(),
                "type \"z\"",
            ),
            (
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {hooks: [{hookName: later, path: /x}]}}]"
                    .to_owned(),
                "hook name \"later\"",
            ),
            (
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [A=1]}}, {name: a, containerEdits: {env: [A=1]}}]"
                    .to_owned(),
                "listed twice",
            ),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("/etc/cdi/test.yaml"), "{err}");
        }
    }
}
