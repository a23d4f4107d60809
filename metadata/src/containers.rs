//! Containers in the metadata database: `obj\0<ns>\0containers\0<id>`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crated_core::containers::{Container, ContainerStore, Runtime};
use crated_core::descriptor::Any;
use crated_core::filters::{self, Adaptor};
use crated_core::{identifiers, labels, Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode, split_payload, with_payload};
use crate::records::{non_empty, set_entry, StoredAny};
use crate::{keys, Db, Error};

pub(crate) const KIND: &str = "containers";

/// The snapshotter and snapshot key a stored container record (`what`,
/// for errors) names.
pub(crate) fn snapshot_of(what: &str, raw: &[u8]) -> Result<(String, String), Error> {
    let record: Record = decode(what, raw)?;
    Ok((record.snapshotter, record.snapshot_key))
}

#[derive(Serialize, Deserialize)]
struct Record {
    labels: BTreeMap<String, String>,
    image: String,
    runtime_name: String,
    runtime_options: Option<StoredAny>,
    /// The spec in the JSON, as hex: records written before schema 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<StoredAny>,
    /// The spec's type; its bytes are the record's payload (schema 3 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec_type: Option<String>,
    snapshotter: String,
    snapshot_key: String,
    created_at: SystemTime,
    updated_at: SystemTime,
    extensions: BTreeMap<String, StoredAny>,
    #[serde(default)]
    sandbox: String,
}

impl Record {
    fn of(c: &Container) -> Self {
        Self {
            labels: non_empty(&c.labels),
            image: c.image.clone(),
            runtime_name: c.runtime.name.clone(),
            runtime_options: c.runtime.options.as_ref().map(StoredAny::from),
            spec: None,
            spec_type: c.spec.as_ref().map(|spec| spec.type_url.clone()),
            snapshotter: c.snapshotter.clone(),
            snapshot_key: c.snapshot_key.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            extensions: c
                .extensions
                .iter()
                .map(|(k, v)| (k.clone(), StoredAny::from(v)))
                .collect(),
            sandbox: c.sandbox.clone(),
        }
    }

    /// The stored form of `c`: its record, the spec's bytes as payload.
    fn encode(c: &Container) -> Result<Vec<u8>, Error> {
        let json = encode(&format!("container {:?}", c.id), &Self::of(c))?;
        Ok(match &c.spec {
            Some(spec) => with_payload(json, &spec.value),
            None => json,
        })
    }

    /// Reads a stored container back (either form of its spec).
    fn decode(id: String, raw: &[u8]) -> Result<Container, Error> {
        let mut record: Self = decode(&format!("container {id:?}"), raw)?;
        let spec = match record.spec_type.take() {
            Some(type_url) => Some(Any {
                type_url,
                value: split_payload(raw).1.unwrap_or_default().to_vec(),
            }),
            None => record.spec.take().map(StoredAny::into_any),
        };
        Ok(record.into_container(id, spec))
    }

    fn into_container(self, id: String, spec: Option<Any>) -> Container {
        Container {
            id,
            labels: self.labels,
            image: self.image,
            runtime: Runtime {
                name: self.runtime_name,
                options: self.runtime_options.map(StoredAny::into_any),
            },
            spec,
            snapshotter: self.snapshotter,
            snapshot_key: self.snapshot_key,
            created_at: self.created_at,
            updated_at: self.updated_at,
            extensions: self
                .extensions
                .into_iter()
                .map(|(k, v)| (k, v.into_any()))
                .collect(),
            sandbox: self.sandbox,
        }
    }
}

fn key(ns: &Namespace, id: &str) -> Vec<u8> {
    keys::object(ns.as_str(), KIND, &[id])
}

fn not_found(ns: &Namespace, id: &str) -> Error {
    Error::ContainerNotFound {
        namespace: ns.to_string(),
        id: id.to_owned(),
    }
}

/// containerd's checks, with its messages.
fn validate(c: &Container) -> Result<()> {
    identifiers::validate(&c.id).map_err(|e| e.context("container.ID"))?;
    let id = || c.id.clone();
    if c.extensions.keys().any(String::is_empty) {
        return Err(Error::ExtensionKeyEmpty { id: id() }.into());
    }
    labels::validate_all(&c.labels).map_err(|e| e.context("containers.Labels"))?;
    if c.runtime.name.is_empty() {
        return Err(Error::RuntimeNameMissing { id: id() }.into());
    }
    if c.spec.is_none() {
        return Err(Error::SpecMissing { id: id() }.into());
    }
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(Error::SnapshotterMissing { id: id() }.into());
    }
    Ok(())
}

struct Fields<'a>(&'a Container);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        let c = self.0;
        match path {
            ["id"] => Some(c.id.clone()),
            ["runtime", "name"] => Some(c.runtime.name.clone()).filter(|s| !s.is_empty()),
            ["image"] => Some(c.image.clone()).filter(|s| !s.is_empty()),
            ["labels", key @ ..] => filters::map_value(&c.labels, key),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl ContainerStore for Db {
    async fn get(&self, ns: &Namespace, id: &str) -> Result<Container> {
        identifiers::validate(id).map_err(|e| e.context("container.ID"))?;
        let raw = self
            .read(|tx| tx.get(&key(ns, id)))?
            .ok_or_else(|| not_found(ns, id))?;
        Ok(Record::decode(id.to_owned(), &raw)?)
    }

    async fn list(&self, ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Container>> {
        let filter = filters::parse_all(filter_strings)?;
        let prefix = keys::objects_of(ns.as_str(), KIND);
        let mut out = Vec::new();
        self.read(|tx| {
            tx.visit(&prefix, |k, raw| {
                let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let container = Record::decode(id, raw)?;
                if filter.matches(&Fields(&container)) {
                    out.push(container);
                }
                Ok(())
            })
        })?;
        Ok(out)
    }

    async fn create(&self, ns: &Namespace, mut container: Container) -> Result<Container> {
        validate(&container)?;
        let now = SystemTime::now();
        container.created_at = now;
        container.updated_at = now;
        container.labels = non_empty(&container.labels);
        self.write(|tx| {
            let k = key(ns, &container.id);
            if tx.get(&k)?.is_some() {
                return Err(Error::ContainerExists {
                    id: container.id.clone(),
                }
                .into());
            }
            tx.ensure_namespace(ns)?;
            tx.put(k, Record::encode(&container)?);
            Ok(container.clone())
        })
    }

    async fn update(
        &self,
        ns: &Namespace,
        container: Container,
        fieldpaths: &[String],
    ) -> Result<Container> {
        identifiers::validate(&container.id).map_err(|e| e.context("container.ID"))?;
        self.write(|tx| {
            let k = key(ns, &container.id);
            let raw = tx.get(&k)?.ok_or_else(|| not_found(ns, &container.id))?;
            let mut updated = Record::decode(container.id.clone(), &raw)?;
            let default_paths =
                ["labels", "spec", "extensions", "image", "snapshotkey"].map(String::from);
            let paths: &[String] = if fieldpaths.is_empty() {
                // A full replace may not change what is immutable.
                if container.runtime.name != updated.runtime.name {
                    return Err(Error::Immutable {
                        field: "container.Runtime.Name",
                        id: container.id.clone(),
                    }
                    .into());
                }
                if container.snapshotter != updated.snapshotter {
                    return Err(Error::Immutable {
                        field: "container.Snapshotter",
                        id: container.id.clone(),
                    }
                    .into());
                }
                &default_paths
            } else {
                fieldpaths
            };
            for path in paths {
                if let Some(label) = path.strip_prefix("labels.") {
                    set_entry(&mut updated.labels, &container.labels, label);
                } else if let Some(ext) = path.strip_prefix("extensions.") {
                    match container.extensions.get(ext) {
                        Some(v) => updated.extensions.insert(ext.to_owned(), v.clone()),
                        None => updated.extensions.remove(ext),
                    };
                } else {
                    match path.as_str() {
                        "labels" => updated.labels = non_empty(&container.labels),
                        "spec" => updated.spec = container.spec.clone(),
                        "extensions" => updated.extensions = container.extensions.clone(),
                        "image" => updated.image = container.image.clone(),
                        "snapshotkey" => updated.snapshot_key = container.snapshot_key.clone(),
                        _ => {
                            return Err(Error::ContainerField {
                                id: container.id.clone(),
                                path: path.clone(),
                            }
                            .into())
                        }
                    }
                }
            }
            validate(&updated)?;
            updated.updated_at = SystemTime::now();
            tx.put(k, Record::encode(&updated)?);
            Ok(updated)
        })
    }

    async fn delete(&self, ns: &Namespace, id: &str) -> Result<()> {
        identifiers::validate(id).map_err(|e| e.context("container.ID"))?;
        self.write(|tx| {
            let k = key(ns, id);
            if tx.get(&k)?.is_none() {
                return Err(not_found(ns, id).into());
            }
            tx.delete(k);
            tx.mark_dirty();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::Kind;

    fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            image: "docker.io/library/busybox:latest".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            },
            spec: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: id.into(),
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            extensions: BTreeMap::new(),
            sandbox: String::new(),
        }
    }

    #[tokio::test]
    async fn crud_with_validation() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ns = Namespace::new("default").unwrap();
        let created = db.create(&ns, container("web-1")).await.unwrap();
        assert!(created.created_at > SystemTime::UNIX_EPOCH);
        assert_eq!(
            db.create(&ns, container("web-1")).await.unwrap_err().kind(),
            Kind::AlreadyExists
        );
        let mut bad = container("bad/id");
        assert_eq!(
            db.create(&ns, bad.clone()).await.unwrap_err().kind(),
            Kind::InvalidArgument
        );
        bad.id = "nospec".into();
        bad.spec = None;
        assert!(db
            .create(&ns, bad)
            .await
            .unwrap_err()
            .to_string()
            .contains("container.Spec must be set"));
        let mut change = container("web-1");
        change.labels = [("app".to_string(), "api".to_string())].into();
        change.image = "other".into();
        let updated = db
            .update(&ns, change.clone(), &["labels.app".into()])
            .await
            .unwrap();
        assert_eq!(
            (updated.labels["app"].as_str(), updated.image.as_str()),
            ("api", "docker.io/library/busybox:latest")
        );
        change.runtime.name = "io.containerd.other".into();
        assert!(db
            .update(&ns, change, &[])
            .await
            .unwrap_err()
            .to_string()
            .contains("immutable"));
        assert_eq!(
            db.list(&ns, &["labels.app==api".into()])
                .await
                .unwrap()
                .len(),
            1
        );
        db.delete(&ns, "web-1").await.unwrap();
        assert_eq!(
            db.get(&ns, "web-1").await.unwrap_err().kind(),
            Kind::NotFound
        );
    }

    #[tokio::test]
    async fn a_dotted_label_key_filters_unquoted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ns = Namespace::new("default").unwrap();
        for (id, key) in [("dotted", "a.b"), ("plain", "a")] {
            let mut c = container(id);
            c.labels = [(key.to_owned(), "x".to_owned())].into();
            db.create(&ns, c).await.unwrap();
        }
        for filter in ["labels.a.b==x", r#"labels."a.b"==x"#] {
            let ids: Vec<_> = db
                .list(&ns, &[filter.into()])
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert_eq!(ids, ["dotted"], "{filter}");
        }
    }

    /// A spec with every byte value, NULs and non-UTF-8 included.
    fn binary_spec() -> Any {
        Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: (0..=255u8).cycle().take(1000).collect(),
        }
    }

    #[tokio::test]
    async fn a_spec_is_stored_as_its_bytes_after_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ns = Namespace::new("default").unwrap();
        let mut c = container("raw");
        c.spec = Some(binary_spec());
        c.extensions = [("ext".to_string(), binary_spec())].into();
        db.create(&ns, c.clone()).await.unwrap();

        let raw = db.tree().get(key(&ns, "raw")).unwrap().unwrap();
        let (json, payload) = split_payload(&raw);
        assert_eq!(payload, Some(&binary_spec().value[..]));
        let text = std::str::from_utf8(json).unwrap();
        assert!(
            text.contains(r#""spec_type":"types.containerd.io"#),
            "{text}"
        );

        for read in [
            db.get(&ns, "raw").await.unwrap(),
            db.list(&ns, &[]).await.unwrap().remove(0),
        ] {
            assert_eq!(read.spec, c.spec);
            assert_eq!(read.extensions, c.extensions);
        }
        // Readers of the JSON alone (the collector, fsck's inventory) still
        // find the container's snapshot.
        let inventory = db.inventory().unwrap();
        assert_eq!(inventory.containers.len(), 1);
        assert_eq!(inventory.containers[0].snapshot_key, "raw");
    }

    #[tokio::test]
    async fn a_record_of_schema_two_is_read_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ns = Namespace::new("default").unwrap();
        db.create(&ns, container("old")).await.unwrap();
        // The record as schema 2 wrote it: the spec as hex in the JSON.
        let old = serde_json::json!({
            "labels": {"a": "1"},
            "image": "docker.io/library/busybox:latest",
            "runtime_name": "io.containerd.runc.v2",
            "runtime_options": null,
            "spec": {"type_url": "types.containerd.io/opencontainers/runtime-spec/1/Spec", "value": "7b2278223a317d"},
            "snapshotter": "overlayfs",
            "snapshot_key": "old",
            "created_at": {"secs_since_epoch": 1, "nanos_since_epoch": 0},
            "updated_at": {"secs_since_epoch": 1, "nanos_since_epoch": 0},
            "extensions": {},
        });
        db.tree()
            .insert(key(&ns, "old"), serde_json::to_vec(&old).unwrap())
            .unwrap();

        let read = db.get(&ns, "old").await.unwrap();
        assert_eq!(read.spec.as_ref().unwrap().value, br#"{"x":1}"#);
        assert_eq!(read.labels["a"], "1");

        let mut change = read.clone();
        change.labels = [("a".to_string(), "2".to_string())].into();
        db.update(&ns, change, &["labels.a".into()]).await.unwrap();
        let raw = db.tree().get(key(&ns, "old")).unwrap().unwrap();
        assert_eq!(split_payload(&raw).1, Some(&br#"{"x":1}"#[..]));
        let again = db.get(&ns, "old").await.unwrap();
        assert_eq!((again.labels["a"].as_str(), again.spec), ("2", read.spec));
    }
}
