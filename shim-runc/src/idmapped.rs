//! ID-mapped bind mounts whatever the runc.
//!
//! A `hostUsers: false` pod's volumes come in the bundle's `config.json`
//! as bind mounts with `uidMappings`/`gidMappings` (runtime-spec 1.1, as
//! containerd 2 writes them). runc learned to ID-map mounts in 1.2; older
//! ones (Debian 12's 1.1.5) ignore the fields and would show the pod its
//! volumes owned by nobody. So the shim makes each such mount itself before
//! `runc create`: an ID-mapped copy of the source attached in the bundle,
//! which the config then names as its source, without the fields. runc
//! bind-mounts that copy into the container, and a bind of an ID-mapped
//! mount keeps the mapping, with runc of any version. Once runc has created
//! the container the copies in the bundle are detached: the container's
//! mount namespace holds its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crated_core::mount::idmap::{
    attach, idmapped_tree, IdMap, ScratchDir, TreeOptions, UserNamespace,
};
use serde_json::Value;

use crate::error::{Error, Result};

/// Where the copies are attached, inside the bundle.
const DIR: &str = "idmapped";

/// The copies made for one create; detached and removed when dropped.
pub type Staged = ScratchDir;

fn failed(e: crated_core::Error) -> Error {
    Error::IdMapped {
        source: Box::new(e),
    }
}

/// The ranges of a runtime-spec mapping list (`containerID`, `hostID`,
/// `size`).
fn ranges(value: &Value, what: &str) -> crated_core::Result<Vec<IdMap>> {
    let bad = || crated_core::Error::invalid_argument(format!("{what}: {value}"));
    let list = value.as_array().ok_or_else(bad)?;
    list.iter()
        .map(|m| {
            let field = |key: &str| {
                m[key]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(bad)
            };
            let map = IdMap {
                container: field("containerID")?,
                host: field("hostID")?,
                size: field("size")?,
            };
            map.check()
                .map_err(|why| crated_core::Error::invalid_argument(format!("{what}: {why}")))?;
            Ok(map)
        })
        .collect()
}

fn non_empty(value: &Value) -> bool {
    value.as_array().is_some_and(|a| !a.is_empty())
}

/// Makes the ID-mapped copies the bundle's mounts ask for and rewrites its
/// `config.json` to bind them instead; None when no mount asks. On failure
/// nothing stays attached and the config is as it was.
pub fn stage(bundle: &Path) -> Result<Option<Staged>> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let Ok(mut spec) = serde_json::from_slice::<Value>(&text) else {
        // runc reports a config it cannot read better than this would.
        return Ok(None);
    };
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(None);
    };
    if !mounts
        .iter()
        .any(|m| non_empty(&m["uidMappings"]) || non_empty(&m["gidMappings"]))
    {
        return Ok(None);
    }
    let mut staged = ScratchDir::create(bundle.join(DIR)).map_err(failed)?;
    // One user namespace per distinct mapping: a pod's mounts share one.
    let mut namespaces: HashMap<(Vec<IdMap>, Vec<IdMap>), UserNamespace> = HashMap::new();
    for (i, m) in mounts.iter_mut().enumerate() {
        if !non_empty(&m["uidMappings"]) && !non_empty(&m["gidMappings"]) {
            continue;
        }
        let destination = m["destination"].as_str().unwrap_or_default().to_owned();
        let what = |field: &str| format!("{field} of the mount on {destination:?}");
        let uids = ranges(&m["uidMappings"], &what("uidMappings")).map_err(failed)?;
        let gids = ranges(&m["gidMappings"], &what("gidMappings")).map_err(failed)?;
        let options: Vec<&str> = m["options"]
            .as_array()
            .map(|o| o.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let is_bind = m["type"].as_str() == Some("bind")
            || options.iter().any(|o| *o == "bind" || *o == "rbind");
        if !is_bind {
            return Err(failed(crated_core::Error::invalid_argument(format!(
                "the mount on {destination:?} asks for ID mappings, which only bind mounts take"
            ))));
        }
        let recursive = options.contains(&"rbind");
        let source = PathBuf::from(m["source"].as_str().unwrap_or_default());
        let userns = match namespaces.entry((uids.clone(), gids.clone())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(UserNamespace::with_mappings(&uids, &gids).map_err(failed)?)
            }
        };
        let how = TreeOptions {
            recursive,
            read_only: false,
        };
        let tree = idmapped_tree(&source, userns, how).map_err(failed)?;
        // The mount point is of the source's kind: a file binds on a file.
        let point = staged
            .mount_point(&i.to_string(), source.is_dir())
            .map_err(failed)?;
        attach(tree, &point).map_err(failed)?;
        let object = m.as_object_mut().ok_or_else(|| {
            failed(crated_core::Error::invalid_argument(format!(
                "the mount on {destination:?} is not an object"
            )))
        })?;
        object.insert("source".into(), Value::String(point.display().to_string()));
        object.remove("uidMappings");
        object.remove("gidMappings");
    }
    let rewritten = serde_json::to_vec(&spec).map_err(|e| {
        failed(crated_core::Error::unknown(format!(
            "encode config.json: {e}"
        )))
    })?;
    // Its mode kept: the bundle's config is owner-only (it holds the
    // container's environment, secrets included).
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o600)
    };
    crated_core::fs::write_durably(&path, &rewritten, mode).map_err(failed)?;
    Ok(Some(staged))
}
