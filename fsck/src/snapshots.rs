//! Snapshots: the namespaces' records against each snapshotter's own
//! records (`<root>/io.containerd.snapshotter.v1.<name>/metadata.sled`) and
//! its directories (`…/snapshots/<id>`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use crated_snapshotter_meta::MetaStore;

use crate::{bundles, entries, Context, Error, Report};

const PREFIX: &str = "io.containerd.snapshotter.v1.";

/// A snapshot as its snapshotter records it.
struct Backend {
    id: String,
    parent: String,
}

pub(crate) fn check(ctx: &Context<'_>, report: &mut Report) -> Result<(), Error> {
    let root = &ctx.options.root;
    let mut names: BTreeSet<String> = entries(root)?
        .into_iter()
        .filter_map(|e| e.strip_prefix(PREFIX).map(str::to_owned))
        .collect();
    names.extend(
        ctx.inventory
            .snapshots
            .iter()
            .map(|s| s.snapshotter.clone()),
    );
    let (mut records, mut backend_count, mut dirs) = (0, 0, 0);
    for name in names {
        let dir = root.join(format!("{PREFIX}{name}"));
        let ours: Vec<_> = ctx
            .inventory
            .snapshots
            .iter()
            .filter(|s| s.snapshotter == name)
            .collect();
        records += ours.len();
        let meta = dir.join("metadata.sled");
        let store = if meta.is_dir() {
            Some(MetaStore::open(&meta).map_err(|e| Error::Store {
                what: format!(
                    "open the {name} snapshotter's records at {}",
                    meta.display()
                ),
                source: e.into(),
            })?)
        } else {
            None
        };
        let backend = match &store {
            Some(store) => backends(store, &name)?,
            None => BTreeMap::new(),
        };
        backend_count += backend.len();

        for record in &ours {
            if backend.contains_key(&record.backend_key) {
                continue;
            }
            report.found(
                format!(
                    "namespace {:?} records snapshot {:?} of {name}, which the snapshotter does not have (key {:?})",
                    record.namespace, record.key, record.backend_key
                ),
                || {
                    ctx.db
                        .forget_snapshot(&record.namespace, &name, &record.key)
                        .map(|()| "record removed".to_owned())
                        .map_err(|e| e.to_string())
                },
            );
        }
        let Some(store) = store else { continue };
        let snapshots_dir = dir.join("snapshots");
        let recorded: HashSet<&str> = ours.iter().map(|r| r.backend_key.as_str()).collect();
        // Children before their parents, so each removal finds none.
        let mut orphans: Vec<(&String, &Backend)> = backend
            .iter()
            .filter(|(key, _)| !recorded.contains(key.as_str()))
            .collect();
        orphans.sort_by_key(|(key, _)| std::cmp::Reverse(depth(&backend, key)));
        for (key, snapshot) in orphans {
            let path = snapshots_dir.join(&snapshot.id);
            report.found(
                format!(
                    "{name} snapshot {key:?} ({}) is recorded in no namespace (removed before the daemon stopped and not collected yet, or left by a crash)",
                    path.display()
                ),
                || {
                    let mut change = store.change();
                    change.remove(key).map_err(|e| e.to_string())?;
                    change.apply().map_err(|e| e.to_string())?;
                    remove_tree(&path)?;
                    Ok("snapshot and its files removed".to_owned())
                },
            );
        }
        let ids: HashSet<String> = store
            .ids()
            .map_err(|e| Error::Store {
                what: format!("read the {name} snapshotter's records"),
                source: e.into(),
            })?
            .into_iter()
            .collect();
        let present = entries(&snapshots_dir)?;
        dirs += present.len();
        for entry in present {
            if ids.contains(&entry) {
                continue;
            }
            let path = snapshots_dir.join(&entry);
            let why = if entry.starts_with("new-") {
                " (left by an interrupted prepare)"
            } else if entry.starts_with("rm-") {
                " (left by an interrupted remove)"
            } else {
                ""
            };
            report.found(
                format!(
                    "directory {} belongs to no {name} snapshot{why}",
                    path.display()
                ),
                || remove_tree(&path).map(|()| "removed".to_owned()),
            );
        }
        for (key, snapshot) in &backend {
            let path = snapshots_dir.join(&snapshot.id);
            if !path.exists() && ids.contains(&snapshot.id) {
                report.found_manual(
                    format!("{name} snapshot {key:?} has no directory ({})", path.display()),
                    format!("its content is lost: remove it (`ctr snapshots --snapshotter {name} rm`) and what uses it"),
                );
            }
        }
    }
    report.checked("snapshot records", records);
    report.checked("snapshotter snapshots", backend_count);
    report.checked("snapshot directories", dirs);

    // Containers whose snapshot went.
    let known: HashSet<(&str, &str, &str)> = ctx
        .inventory
        .snapshots
        .iter()
        .map(|s| (s.namespace.as_str(), s.snapshotter.as_str(), s.key.as_str()))
        .collect();
    for c in &ctx.inventory.containers {
        if c.snapshot_key.is_empty()
            || known.contains(&(
                c.namespace.as_str(),
                c.snapshotter.as_str(),
                c.snapshot_key.as_str(),
            ))
        {
            continue;
        }
        report.found_manual(
            format!(
                "container {:?} in namespace {:?} names snapshot {:?} of {}, which does not exist",
                c.id, c.namespace, c.snapshot_key, c.snapshotter
            ),
            "remove the container, or prepare its snapshot again".to_owned(),
        );
    }
    Ok(())
}

fn backends(store: &MetaStore, name: &str) -> Result<BTreeMap<String, Backend>, Error> {
    let read = |e: crated_snapshotter_meta::Error| Error::Store {
        what: format!("read the {name} snapshotter's records"),
        source: e.into(),
    };
    let mut out = BTreeMap::new();
    let infos = store.walk(&[]).map_err(|e| Error::Store {
        what: format!("read the {name} snapshotter's records"),
        source: e,
    })?;
    for info in infos {
        let (snapshot, _) = store.get(&info.name).map_err(read)?;
        out.insert(
            info.name,
            Backend {
                id: snapshot.id,
                parent: info.parent,
            },
        );
    }
    Ok(out)
}

/// How many ancestors `key` has.
fn depth(backend: &BTreeMap<String, Backend>, key: &str) -> usize {
    let mut n = 0;
    let mut at = key;
    while let Some(b) = backend.get(at) {
        if b.parent.is_empty() || n > backend.len() {
            break;
        }
        n += 1;
        at = &b.parent;
    }
    n
}

/// Removes `path` after unmounting whatever is mounted at or under it, so
/// that no removal reaches through a mount.
pub(crate) fn remove_tree(path: &Path) -> Result<(), String> {
    for mount in bundles::mounts_under(path).map_err(|e| e.to_string())? {
        crated_core::mount::unmount_all(&mount)
            .map_err(|e| format!("unmount {}: {e}", mount.display()))?;
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", path.display())),
    }
}
