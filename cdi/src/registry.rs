//! The devices the spec directories offer, read afresh by
//! [`Registry::load`]: later directories take precedence over earlier
//! ones (containerd's default order is `/etc/cdi`, then `/var/run/cdi`);
//! a device two files of the same directory both define is offered by
//! neither; a file that cannot be read or is invalid is skipped and
//! reported, the others still serve.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use oci_spec::runtime::Spec as OciSpec;

use crate::error::{Error, Result};
use crate::names::parse_qualified;
use crate::spec::SpecFile;

/// The devices of a set of spec directories at one moment.
#[derive(Debug, Default)]
pub struct Registry {
    /// Qualified name → its spec and its index in the spec's devices.
    devices: HashMap<String, (Arc<SpecFile>, usize)>,
    /// Spec files skipped and device names in conflict, for errors.
    problems: Vec<String>,
}

impl Registry {
    /// Reads every `*.json` and `*.yaml` file directly in `dirs` (a
    /// missing directory has none).
    pub fn load<P: AsRef<Path>>(dirs: &[P]) -> Registry {
        let mut registry = Registry::default();
        let mut conflicts = HashSet::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let dir = dir.as_ref();
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    registry.problems.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let mut paths: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json" || x == "yaml") && !p.is_dir()
                })
                .collect();
            paths.sort();
            for path in paths {
                let file = match SpecFile::read(&path, priority) {
                    Ok(file) => Arc::new(file),
                    Err(e) => {
                        tracing::warn!(error = %e, "CDI spec skipped");
                        registry.problems.push(e.to_string());
                        continue;
                    }
                };
                for (index, device) in file.spec.devices.iter().enumerate() {
                    let name = format!("{}={}", file.spec.kind, device.name);
                    match registry.devices.get(&name) {
                        Some((other, _)) if other.priority == priority => {
                            registry.problems.push(format!(
                                "device {name} is defined by both {} and {}",
                                other.path.display(),
                                path.display()
                            ));
                            conflicts.insert(name);
                            continue;
                        }
                        _ => {}
                    }
                    registry.devices.insert(name, (Arc::clone(&file), index));
                }
            }
        }
        for name in conflicts {
            registry.devices.remove(&name);
        }
        registry
    }

    /// Every device offered, by qualified name, sorted.
    pub fn devices(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.devices.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Spec files skipped and device names in conflict, each with why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Applies to `spec` the edits of each of `devices` (qualified names;
    /// a repeated one counts once), each spec's own edits once before its
    /// first device's. Nothing is changed unless all of them apply.
    pub fn inject(&self, spec: &mut OciSpec, devices: &[String]) -> Result<()> {
        let mut wanted: Vec<&str> = Vec::new();
        for device in devices {
            parse_qualified(device)?;
            if !wanted.contains(&device.as_str()) {
                wanted.push(device);
            }
        }
        let unresolved: Vec<String> = wanted
            .iter()
            .filter(|d| !self.devices.contains_key(**d))
            .map(|d| (*d).to_owned())
            .collect();
        if !unresolved.is_empty() {
            return Err(Error::Unresolvable {
                devices: unresolved,
                problems: self.problems.clone(),
            });
        }
        let mut edited = spec.clone();
        let mut specs_applied: HashSet<*const SpecFile> = HashSet::new();
        for device in wanted {
            let Some((file, index)) = self.devices.get(device) else {
                continue;
            };
            let failed = |reason: String| Error::Inject {
                device: device.to_owned(),
                reason: format!("{reason} (spec {})", file.path.display()),
            };
            if specs_applied.insert(Arc::as_ptr(file)) {
                crate::edits::apply(&file.spec.container_edits, &mut edited).map_err(failed)?;
            }
            if let Some(d) = file.spec.devices.get(*index) {
                crate::edits::apply(&d.container_edits, &mut edited).map_err(failed)?;
            }
        }
        *spec = edited;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn env_of(spec: &OciSpec) -> Vec<String> {
        spec.process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
    }

    #[test]
    fn later_directories_win_and_equal_ones_conflict() {
        let etc = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let spec = |tag: &str, devices: &[&str]| {
            let list: Vec<String> = devices
                .iter()
                .map(|d| format!("{{name: \"{d}\", containerEdits: {{env: [DEV_{tag}_{d}=1]}}}}"))
                .collect();
            format!(
                "cdiVersion: 0.6.0\nkind: v.com/gpu\ncontainerEdits: {{env: [SPEC_{tag}=1]}}\ndevices: [{}]\n",
                list.join(", ")
            )
        };
        write(etc.path(), "a.yaml", &spec("etc", &["0", "1"]));
        write(run.path(), "a.yaml", &spec("run", &["1"]));
        // Two files of one directory both define device 2: neither serves.
        write(run.path(), "b.json", &spec("b", &["2"]));
        write(run.path(), "c.yaml", &spec("c", &["2"]));
        write(run.path(), "broken.yaml", "cdiVersion: [");
        write(run.path(), "notes.txt", "not a spec");
        let registry = Registry::load(&[etc.path(), run.path(), Path::new("/nonexistent/cdi")]);
        assert_eq!(registry.devices(), ["v.com/gpu=0", "v.com/gpu=1"]);
        let problems = registry.problems().join("\n");
        assert!(problems.contains("broken.yaml"), "{problems}");
        assert!(
            problems.contains("device v.com/gpu=2 is defined by both"),
            "{problems}"
        );

        let mut oci = OciSpec::default();
        registry
            .inject(
                &mut oci,
                &[
                    "v.com/gpu=1".into(),
                    "v.com/gpu=0".into(),
                    "v.com/gpu=1".into(),
                ],
            )
            .unwrap();
        // Each spec's own edits once, before its first device's.
        let ours: Vec<String> = env_of(&oci)
            .into_iter()
            .filter(|e| e.starts_with("SPEC_") || e.starts_with("DEV_"))
            .collect();
        assert_eq!(
            ours,
            ["SPEC_run=1", "DEV_run_1=1", "SPEC_etc=1", "DEV_etc_0=1"]
        );

        let before = oci.clone();
        let err = registry
            .inject(&mut oci, &["v.com/gpu=0".into(), "v.com/gpu=2".into()])
            .unwrap_err();
        assert_eq!(oci, before, "a failed injection changes nothing");
        let text = err.to_string();
        assert!(
            text.contains("unresolvable CDI devices v.com/gpu=2"),
            "{text}"
        );
        assert!(text.contains("defined by both"), "{text}");
        let err = registry.inject(&mut oci, &["gpu0".into()]).unwrap_err();
        assert!(
            err.to_string().contains("invalid CDI device name \"gpu0\""),
            "{err}"
        );
    }

    #[test]
    fn an_edit_that_fails_on_this_host_names_device_and_spec() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "x.yaml",
            "cdiVersion: 0.6.0\nkind: v.com/x\ndevices: [{name: gone, containerEdits: {deviceNodes: [{path: /dev/gone-device}]}}]\n",
        );
        let registry = Registry::load(&[dir.path()]);
        let mut oci = OciSpec::default();
        let before = oci.clone();
        let err = registry
            .inject(&mut oci, &["v.com/x=gone".into()])
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("v.com/x=gone") && text.contains("/dev/gone-device"),
            "{text}"
        );
        assert!(text.contains("x.yaml"), "{text}");
        assert_eq!(oci, before);
    }
}
