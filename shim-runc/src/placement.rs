//! Where a new long-lived shim runs, as containerd's runc shim places it:
//! in the cgroup its runtime options' `ShimCgroup` names, and with an OOM
//! score adjustment one above its parent's (the daemon's), so that under
//! memory pressure the kernel takes a shim before the daemon that
//! supervises all of them.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Moves process `pid` into the cgroup `path` (cgroupfs form, from the
/// hierarchies' roots under `root`): on a unified hierarchy that cgroup;
/// on cgroup v1 the cgroup of that path in each hierarchy that has it, as
/// containerd's shim loads a static path. The cgroup must exist: it is
/// the operator's, not the shim's to make (or remove).
pub fn join_cgroup(root: &Path, path: &str, pid: u32) -> Result<()> {
    let rel = relative(path)?;
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(&rel);
        if !dir.is_dir() {
            return Err(Error::ShimCgroupNotFound {
                path: path.to_owned(),
            });
        }
        return add(&dir, path, pid);
    }
    let entries = std::fs::read_dir(root).map_err(|e| Error::io("read", root, e))?;
    let mut joined: Vec<PathBuf> = Vec::new();
    for entry in entries.flatten() {
        // The v2 hierarchy of a hybrid host is not a v1 controller's.
        if entry.file_name() == "unified" {
            continue;
        }
        // `cpu` and `cpuacct` are often links to one `cpu,cpuacct`.
        let Ok(hierarchy) = std::fs::canonicalize(entry.path()) else {
            continue;
        };
        let dir = hierarchy.join(&rel);
        if joined.contains(&hierarchy) || !dir.is_dir() {
            continue;
        }
        add(&dir, path, pid)?;
        joined.push(hierarchy);
    }
    if joined.is_empty() {
        return Err(Error::ShimCgroupNotFound {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// `path` below a hierarchy's root; refused when it would leave it.
fn relative(path: &str) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::ShimCgroupPath {
                    path: path.to_owned(),
                })
            }
        }
    }
    Ok(rel)
}

fn add(dir: &Path, path: &str, pid: u32) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .map_err(|source| Error::ShimCgroup {
            path: path.to_owned(),
            procs,
            source,
        })
}

/// Gives process `pid` the OOM score adjustment of process `parent` plus
/// one (at most 1000). A lower adjustment than a process has needs
/// CAP_SYS_RESOURCE; a higher one never does, so this only fails where
/// `/proc` is not writable to us, which leaves the shim as protected as
/// its parent: not worth refusing a container for.
pub fn score_above(parent: u32, pid: u32) -> Result<()> {
    let at = |pid: u32| PathBuf::from(format!("/proc/{pid}/oom_score_adj"));
    let read = at(parent);
    let text = std::fs::read_to_string(&read).map_err(|e| Error::io("read", &read, e))?;
    let score: i32 = text.trim().parse().map_err(|_| Error::OomScore {
        path: read.clone(),
        text: text.trim().to_owned(),
    })?;
    let shim = (score + 1).clamp(-1000, 1000);
    let write = at(pid);
    match std::fs::write(&write, shim.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(Error::io("write", &write, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::error::KindError as _;

    #[test]
    fn paths_stay_below_the_hierarchy() {
        assert_eq!(relative("/").unwrap(), PathBuf::new());
        assert_eq!(relative("/a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("a/b/").unwrap(), PathBuf::from("a/b"));
        for bad in ["/../etc", "/a/../../b", ".."] {
            let err = relative(bad).unwrap_err();
            assert_eq!(err.kind(), crated_core::Kind::InvalidArgument, "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// A v1 layout of plain directories: the path joined where it exists,
    /// once per hierarchy behind links; nowhere is an error naming it.
    #[test]
    fn a_v1_path_is_joined_in_each_hierarchy_that_has_it() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu,cpuacct", "pids", "unified"] {
            std::fs::create_dir_all(root.path().join(h).join("shims")).unwrap();
            std::fs::write(root.path().join(h).join("shims/cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        std::fs::remove_dir_all(root.path().join("pids/shims")).unwrap();
        join_cgroup(root.path(), "/shims", 4242).unwrap();
        let procs =
            |h: &str| std::fs::read_to_string(root.path().join(h).join("shims/cgroup.procs"));
        assert_eq!(procs("memory").unwrap(), "4242");
        assert_eq!(procs("cpu,cpuacct").unwrap(), "4242");
        assert_eq!(procs("unified").unwrap(), "", "not a v1 hierarchy");
        let err = join_cgroup(root.path(), "/elsewhere", 4242).unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::NotFound);
        assert!(err.to_string().contains("\"/elsewhere\""), "{err}");
    }
}
