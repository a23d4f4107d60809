//! Where a container's cgroup is, found as containerd's shim finds it:
//! from the cgroups its init runs in (`/proc/<pid>/cgroup`), whichever
//! driver runc placed it with. The spec's `cgroupsPath` names the
//! directory only for the cgroupfs driver (`/ns/id`); the systemd
//! driver's `slice:prefix:name` names a unit, whose directory
//! (`/kubepods.slice/…/cri-containerd-<id>.scope`) only systemd knows —
//! and that driver is the usual one on Kubernetes nodes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A container's cgroup, relative to the hierarchies' roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cgroup {
    /// Not known (no process to read it from, a systemd path unexpanded).
    #[default]
    Unknown,
    /// The path on a unified (v2) hierarchy.
    Unified(String),
    /// cgroup v1: the path in each controller's hierarchy (`cpu` and
    /// `cpuacct` apart even where they share one).
    Legacy(HashMap<String, String>),
}

impl Cgroup {
    /// The cgroup process `pid` runs in, on the host whose hierarchies
    /// are under `root`.
    pub fn of_pid(root: &Path, pid: i32) -> Self {
        match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) => Self::parse(&text, unified(root)),
            Err(_) => Self::Unknown,
        }
    }

    /// The cgroup a cgroupfs-driver `cgroupsPath` names (for a container
    /// with no process yet, restored at its start); unknown for the
    /// systemd driver's form or none.
    pub fn of_spec_path(root: &Path, path: &str) -> Self {
        if path.is_empty() || path.contains(':') {
            return Self::Unknown;
        }
        if unified(root) {
            return Self::Unified(path.to_owned());
        }
        // The cgroupfs driver puts every controller at that path, which
        // `dir` takes from memory's for the ones not listed.
        Self::Legacy(HashMap::from([("memory".to_owned(), path.to_owned())]))
    }

    /// A `/proc/<pid>/cgroup` table: its `0::` line on a unified host;
    /// else each controller of each v1 line (named hierarchies such as
    /// `name=systemd` are no controller's).
    pub fn parse(text: &str, unified: bool) -> Self {
        let lines = text.lines().filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            Some((fields.next()?, fields.next()?, fields.next()?))
        });
        if unified {
            return lines
                .filter(|(id, controllers, _)| *id == "0" && controllers.is_empty())
                .map(|(_, _, path)| Self::Unified(path.to_owned()))
                .next()
                .unwrap_or_default();
        }
        let mut paths = HashMap::new();
        for (_, controllers, path) in lines {
            for controller in controllers.split(',') {
                if !controller.is_empty() && !controller.starts_with("name=") {
                    paths.insert(controller.to_owned(), path.to_owned());
                }
            }
        }
        if paths.is_empty() {
            return Self::Unknown;
        }
        Self::Legacy(paths)
    }

    /// The directory of `controller` (any, on a unified hierarchy) under
    /// `root`; on v1 a controller the table does not list is taken at
    /// the memory controller's path, as runc places all of them alike.
    pub fn dir(&self, root: &Path, controller: &str) -> Option<PathBuf> {
        match self {
            Self::Unknown => None,
            Self::Unified(path) => Some(root.join(path.trim_start_matches('/'))),
            Self::Legacy(paths) => {
                let path = paths.get(controller).or_else(|| paths.get("memory"))?;
                Some(root.join(controller).join(path.trim_start_matches('/')))
            }
        }
    }

    /// How errors name it.
    pub fn describe(&self) -> String {
        match self {
            Self::Unknown => "(unknown)".to_owned(),
            Self::Unified(path) => path.clone(),
            Self::Legacy(paths) => paths
                .get("memory")
                .or_else(|| paths.values().next())
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// Whether the hierarchy under `root` is unified (cgroup v2).
pub fn unified(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Kubernetes node's systemd driver on a v1 host: the unit's path
    /// per controller, the named hierarchy and the hybrid `0::` left out.
    #[test]
    fn a_v1_table_gives_each_controller_its_path() {
        let scope = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope";
        let text = format!(
            "12:pids:{scope}\n5:cpu,cpuacct:{scope}\n3:memory:{scope}\n1:name=systemd:{scope}\n0::/\n"
        );
        let cgroup = Cgroup::parse(&text, false);
        let Cgroup::Legacy(paths) = &cgroup else {
            panic!("{cgroup:?}");
        };
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "pids"]);
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup.dir(root, "cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpuacct").join(&scope[1..])
        );
        // blkio is not in the table: at memory's path.
        assert_eq!(
            cgroup.dir(root, "blkio").unwrap(),
            Path::new("/sys/fs/cgroup/blkio").join(&scope[1..])
        );
        assert_eq!(cgroup.describe(), scope);
    }

    #[test]
    fn a_unified_table_gives_its_one_path() {
        let text = "0::/system.slice/crated-x.scope\n";
        let cgroup = Cgroup::parse(text, true);
        assert_eq!(
            cgroup,
            Cgroup::Unified("/system.slice/crated-x.scope".into())
        );
        assert_eq!(
            cgroup.dir(Path::new("/sys/fs/cgroup"), "memory").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/crated-x.scope")
        );
        assert_eq!(Cgroup::parse("", true), Cgroup::Unknown);
        assert_eq!(Cgroup::parse("1:name=systemd:/x\n", false), Cgroup::Unknown);
        assert_eq!(Cgroup::Unknown.dir(Path::new("/"), "memory"), None);
    }

    #[test]
    fn a_spec_path_is_taken_only_in_cgroupfs_form() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu", "unified"] {
            std::fs::create_dir(root.path().join(h)).unwrap();
        }
        let cgroup = Cgroup::of_spec_path(root.path(), "/ns/id");
        assert_eq!(
            cgroup.dir(root.path(), "cpu").unwrap(),
            root.path().join("cpu/ns/id")
        );
        assert_eq!(
            cgroup.dir(root.path(), "memory").unwrap(),
            root.path().join("memory/ns/id")
        );
        assert!(matches!(cgroup, Cgroup::Legacy(_)), "{cgroup:?}");
        assert_eq!(
            Cgroup::of_spec_path(root.path(), "kubepods.slice:cri-containerd:id"),
            Cgroup::Unknown
        );
        assert_eq!(Cgroup::of_spec_path(root.path(), ""), Cgroup::Unknown);
    }
}
