//! Network configuration lists: read from a directory as libcni reads
//! them (a single-plugin `.conf` becomes a list of one), and each plugin's
//! stdin config built from its list.

use std::path::Path;

use crated_core::Result;
use serde_json::{json, Map, Value};

use crate::error::Error;

/// A network configuration list.
#[derive(Debug, Clone)]
pub struct NetworkList {
    /// The network's name.
    pub name: String,
    /// Its CNI version.
    pub cni_version: String,
    /// Its plugins' configs, in order.
    pub plugins: Vec<Map<String, Value>>,
    /// The list as JSON (what the result cache keeps).
    pub bytes: Vec<u8>,
}

/// A plugin config's `type`.
pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn bad(path: &Path, message: impl Into<String>) -> crated_core::Error {
    Error::CniConfig {
        path: path.to_owned(),
        message: message.into(),
    }
    .into()
}

/// `major.minor.patch` as numbers, for version comparisons.
fn version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

impl NetworkList {
    /// The loopback network containerd's CRI adds before the node's.
    pub fn loopback() -> NetworkList {
        let list = json!({
            "cniVersion": "0.3.1",
            "name": "cni-loopback",
            "plugins": [{"type": "loopback"}],
        });
        NetworkList {
            name: "cni-loopback".into(),
            cni_version: "0.3.1".into(),
            plugins: vec![Map::from_iter([("type".to_owned(), json!("loopback"))])],
            bytes: list.to_string().into_bytes(),
        }
    }

    /// Parses a `.conflist` (`list = true`) or a single `.conf`/`.json`.
    pub fn parse(path: &Path, data: &[u8], list: bool) -> Result<NetworkList> {
        let value: Value =
            serde_json::from_slice(data).map_err(|e| bad(path, format!("not JSON: {e}")))?;
        let mut object = match value {
            Value::Object(o) => o,
            _ => return Err(bad(path, "not a JSON object")),
        };
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(path, "no \"name\""))?
            .to_owned();
        let cni_version = object
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_owned();
        let plugins = if list {
            let plugins = object
                .remove("plugins")
                .and_then(|p| match p {
                    Value::Array(a) => Some(a),
                    _ => None,
                })
                .ok_or_else(|| bad(path, "no \"plugins\" list"))?;
            if plugins.is_empty() {
                return Err(bad(path, "the \"plugins\" list is empty"));
            }
            plugins
                .into_iter()
                .map(|p| match p {
                    Value::Object(o) => Ok(o),
                    _ => Err(bad(path, "a plugin config is not an object")),
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![object.clone()]
        };
        for plugin in &plugins {
            if plugin_type(plugin).is_empty() {
                return Err(bad(
                    path,
                    format!("network {name:?}: a plugin has no \"type\""),
                ));
            }
        }
        let bytes = if list {
            data.to_vec()
        } else {
            json!({"cniVersion": cni_version, "name": name, "plugins": [Value::Object(object)]})
                .to_string()
                .into_bytes()
        };
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
            bytes,
        })
    }

    /// CHECK exists from CNI 0.4.0 on.
    pub fn supports_check(&self) -> bool {
        version(&self.cni_version) >= (0, 4, 0)
    }

    /// What `plugin` reads on stdin: its own config with the list's name
    /// and version, the previous plugin's result, and `runtimeConfig` with
    /// the capabilities it declares that the runtime can fill.
    pub fn plugin_config(
        &self,
        plugin: &Map<String, Value>,
        prev: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Value {
        let mut config = plugin.clone();
        config.insert("name".into(), json!(self.name));
        config.insert("cniVersion".into(), json!(self.cni_version));
        if let Some(prev) = prev {
            config.insert("prevResult".into(), prev.clone());
        }
        let wanted = plugin
            .get("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut runtime = Map::new();
        for (capability, enabled) in wanted {
            if enabled.as_bool() == Some(true) {
                if let Some(value) = capability_args.get(&capability) {
                    runtime.insert(capability, value.clone());
                }
            }
        }
        if !runtime.is_empty() {
            config.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        Value::Object(config)
    }
}

/// The first `max` network lists of `dir`, in file-name order; empty
/// when the directory is missing or holds none.
pub fn load_dir(dir: &Path, max: usize) -> Result<Vec<NetworkList>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crated_core::Error::io(format!("read {}", dir.display()), e)),
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            ) && p.is_file()
        })
        .collect();
    files.sort();
    let mut lists = Vec::new();
    for path in files.into_iter().take(max) {
        let data = std::fs::read(&path)
            .map_err(|e| crated_core::Error::io(format!("read {}", path.display()), e))?;
        let list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
        lists.push(NetworkList::parse(&path, &data, list)?);
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_in_name_order_is_the_network() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load_dir(&dir.path().join("missing"), 1)
            .expect("missing")
            .is_empty());
        assert!(load_dir(dir.path(), 1).expect("empty").is_empty());
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"bridge","bridge":"x0"}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("README"), "not a config").expect("write");
        let lists = load_dir(dir.path(), 1).expect("load");
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].name, "a");
        assert_eq!(lists[0].plugins.len(), 1);
        assert!(lists[0].supports_check());
        let both = load_dir(dir.path(), 5).expect("load");
        assert_eq!(both[1].name, "b");
        // Only the capabilities a plugin declares reach it.
        let caps = Map::from_iter([
            ("portMappings".to_owned(), json!([{"hostPort": 80}])),
            ("dns".to_owned(), json!({"servers": ["1.1.1.1"]})),
        ]);
        let bridge = both[1].plugin_config(&both[1].plugins[0], None, &caps);
        assert!(bridge.get("runtimeConfig").is_none(), "{bridge}");
        let prev = json!({"cniVersion": "1.0.0"});
        let portmap = both[1].plugin_config(&both[1].plugins[1], Some(&prev), &caps);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        assert_eq!(portmap["name"], "b");
        assert_eq!(portmap["prevResult"], prev);
        std::fs::write(dir.path().join("05-bad.conflist"), "{").expect("write");
        let e = load_dir(dir.path(), 1).expect_err("bad file");
        assert!(e.to_string().contains("05-bad.conflist"), "{e}");
    }
}
