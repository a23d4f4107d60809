//! The result cache, in libcni's layout and format
//! (`<cache>/results/<network>-<container id>-<ifname>`, kind
//! `cniCacheV1`), so DEL gets the result ADD gave after a daemon restart
//! and tools that read libcni's cache read ours.

use std::path::{Path, PathBuf};

use crated_core::Result;
use serde_json::{json, Value};

/// What is cached of one ADD.
pub struct Entry {
    pub container_id: String,
    pub network_name: String,
    pub ifname: String,
    /// The network list as JSON.
    pub config: Vec<u8>,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Value,
    pub result: Value,
}

/// A cached entry read back: what DEL and CHECK need of it.
pub struct Cached {
    pub result: Value,
}

fn path(dir: &Path, network: &str, id: &str, ifname: &str) -> PathBuf {
    dir.join("results").join(format!("{network}-{id}-{ifname}"))
}

/// Writes `entry` durably, 0600.
pub fn write(dir: &Path, entry: &Entry) -> Result<()> {
    let target = path(dir, &entry.network_name, &entry.container_id, &entry.ifname);
    let results = dir.join("results");
    std::fs::create_dir_all(&results)
        .map_err(|e| crated_core::Error::io(format!("create {}", results.display()), e))?;
    let doc = json!({
        "kind": "cniCacheV1",
        "containerId": entry.container_id,
        "config": crated_core::base64::encode(&entry.config),
        "ifName": entry.ifname,
        "networkName": entry.network_name,
        "cniArgs": entry.cni_args.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "capabilityArgs": entry.capability_args,
        "result": entry.result,
    });
    crated_core::fs::write_durably(&target, doc.to_string().as_bytes(), 0o600)
}

/// The cached result of ADD, if there is one.
pub fn read(dir: &Path, network: &str, id: &str, ifname: &str) -> Result<Option<Cached>> {
    let p = path(dir, network, id, ifname);
    let data = match std::fs::read(&p) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crated_core::Error::io(format!("read {}", p.display()), e)),
    };
    // A damaged entry is treated as none: DEL then runs without the
    // previous result, which plugins accept.
    let Ok(doc) = serde_json::from_slice::<Value>(&data) else {
        tracing::warn!(path = %p.display(), "unreadable CNI cache entry ignored");
        return Ok(None);
    };
    Ok(doc.get("result").cloned().map(|result| Cached { result }))
}

/// Every cached ADD of container `id`: its network's name, the interface
/// it was attached as, and the result.
pub fn results_of(dir: &Path, id: &str) -> Result<Vec<(String, String, Value)>> {
    let results = dir.join("results");
    let entries = match std::fs::read_dir(&results) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crated_core::Error::io(
                format!("read {}", results.display()),
                e,
            ))
        }
    };
    let marker = format!("-{id}-");
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().contains(&marker) {
            continue;
        }
        // Entries that vanish (a DEL) or do not parse are skipped: this
        // is a report, not the teardown.
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        if field("containerId").as_deref() != Some(id) {
            continue;
        }
        if let (Some(network), Some(ifname), Some(result)) =
            (field("networkName"), field("ifName"), doc.get("result"))
        {
            out.push((network, ifname, result.clone()));
        }
    }
    Ok(out)
}

/// Forgets the cached result; what is not there is fine.
pub fn remove(dir: &Path, network: &str, id: &str, ifname: &str) -> Result<()> {
    let p = path(dir, network, id, ifname);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crated_core::Error::io(format!("remove {}", p.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(read(dir.path(), "n", "id", "eth0").expect("read").is_none());
        write(
            dir.path(),
            &Entry {
                container_id: "id".into(),
                network_name: "n".into(),
                ifname: "eth0".into(),
                config: b"{}".to_vec(),
                cni_args: vec![("K8S_POD_NAME".into(), "p".into())],
                capability_args: json!({}),
                result: json!({"cniVersion": "1.0.0", "ips": []}),
            },
        )
        .expect("write");
        let cached = read(dir.path(), "n", "id", "eth0")
            .expect("read")
            .expect("cached");
        assert_eq!(cached.result["cniVersion"], "1.0.0");
        remove(dir.path(), "n", "id", "eth0").expect("remove");
        remove(dir.path(), "n", "id", "eth0").expect("twice");
        assert!(read(dir.path(), "n", "id", "eth0").expect("read").is_none());
    }
}
