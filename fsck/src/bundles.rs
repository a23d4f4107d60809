//! Task bundles (`<state>/io.containerd.runtime.v2.task/<ns>/<id>`, and
//! their work directories under the root) against the containers that own
//! them, and the mounts under the daemon's task and scratch directories.

use std::path::{Path, PathBuf};

use crate::{entries, Context, Error, Report};

const TASKS: &str = "io.containerd.runtime.v2.task";
const DIFFER_SCRATCH: &str = "io.containerd.differ.v1.walking/mounts";

/// Every mount point on the machine (this process's view), deepest last
/// as the kernel lists them, with its filesystem type.
fn mount_table() -> Result<Vec<(PathBuf, String)>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            Some((PathBuf::from(unescape(point)), (*fstype).to_owned()))
        })
        .collect())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `path`, deepest first, each once.
pub(crate) fn mounts_under(path: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found: Vec<PathBuf> = mount_table()?
        .into_iter()
        .map(|(point, _)| point)
        .filter(|point| point.starts_with(path))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Whether the shim of bundle `<state>/…/<ns>/<id>` still answers on the
/// address it wrote.
fn shim_answers(state: &Path, ns: &str, id: &str) -> Option<String> {
    let address =
        std::fs::read_to_string(state.join(TASKS).join(ns).join(id).join("address")).ok()?;
    let address = address.trim();
    let path = address.trim_start_matches("unix://");
    std::os::unix::net::UnixStream::connect(path)
        .ok()
        .map(|_| address.to_owned())
}

/// `(ns, id)` of the bundle or work directory `path` is in, if any.
fn bundle_of(tasks_dirs: &[PathBuf], path: &Path) -> Option<(String, String)> {
    tasks_dirs.iter().find_map(|tasks| {
        let rest = path.strip_prefix(tasks).ok()?;
        let mut parts = rest.components();
        let ns = parts.next()?.as_os_str().to_string_lossy().into_owned();
        let id = parts.next()?.as_os_str().to_string_lossy().into_owned();
        Some((ns, id))
    })
}

/// The canonical form of `path` (mountinfo shows resolved paths), or
/// `path` itself if it does not exist.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

pub(crate) fn check_mounts(ctx: &Context<'_>, report: &mut Report) -> Result<(), Error> {
    let (root, state) = (canonical(&ctx.options.root), canonical(&ctx.options.state));
    let tasks_dirs = [state.join(TASKS), root.join(TASKS)];
    let watched = [
        tasks_dirs[0].clone(),
        tasks_dirs[1].clone(),
        state.join(DIFFER_SCRATCH),
    ];
    let table = mount_table().map_err(|e| Error::Io {
        path: "/proc/self/mountinfo".into(),
        source: std::io::Error::other(e),
    })?;
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut checked = 0;
    // Deepest first, so nothing is unmounted from under another mount.
    let mut candidates: Vec<(PathBuf, String)> = table
        .into_iter()
        .filter(|(point, _)| watched.iter().any(|w| point.starts_with(w)))
        .collect();
    candidates.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (point, fstype) in candidates {
        if seen.contains(&point) {
            continue;
        }
        seen.push(point.clone());
        checked += 1;
        let owner = bundle_of(&tasks_dirs, &point);
        let legit = owner.as_ref().is_some_and(|(ns, id)| {
            point == tasks_dirs[0].join(ns).join(id).join("rootfs") && ctx.has_container(ns, id)
        });
        if legit {
            continue;
        }
        let live = owner
            .as_ref()
            .and_then(|(ns, id)| shim_answers(&state, ns, id));
        report.found(
            format!(
                "{fstype} mounted at {} belongs to no container's bundle",
                point.display()
            ),
            || {
                if let Some(address) = live {
                    return Err(format!(
                        "the bundle's shim still answers at {address}: stop it first"
                    ));
                }
                crated_core::mount::unmount_all(&point)
                    .map(|()| "unmounted".to_owned())
                    .map_err(|e| e.to_string())
            },
        );
    }
    report.checked("mounts", checked);
    Ok(())
}

pub(crate) fn check_bundles(ctx: &Context<'_>, report: &mut Report) -> Result<(), Error> {
    let state = &ctx.options.state;
    let mut checked = 0;
    for base in [state.join(TASKS), ctx.options.root.join(TASKS)] {
        for ns in entries(&base)? {
            let ns_dir = base.join(&ns);
            if !ns_dir.is_dir() {
                continue;
            }
            for id in entries(&ns_dir)? {
                checked += 1;
                if ctx.has_container(&ns, &id) {
                    continue;
                }
                let path = ns_dir.join(&id);
                let live = shim_answers(state, &ns, &id);
                report.found(
                    format!(
                        "task directory {} belongs to no container (namespace {ns:?})",
                        path.display()
                    ),
                    || {
                        if let Some(address) = live {
                            return Err(format!(
                                "its shim still answers at {address}: stop it first"
                            ));
                        }
                        if !mounts_under(&path)?.is_empty() {
                            return Err("something is still mounted in it".to_owned());
                        }
                        std::fs::remove_dir_all(&path)
                            .map(|()| "removed".to_owned())
                            .map_err(|e| format!("remove {}: {e}", path.display()))
                    },
                );
            }
        }
    }
    report.checked("task directories", checked);
    Ok(())
}
