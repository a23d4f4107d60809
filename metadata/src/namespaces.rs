//! Namespaces in the metadata database.

use std::collections::BTreeMap;

use crated_core::namespaces::{NamespaceInfo, NamespaceStore};
use crated_core::{labels, Namespace, Result};

use crate::db::{decode, encode, WriteTx};
use crate::{keys, Db, Error};

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct NamespaceRecord {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    labels::validate_all(labels).map_err(|e| e.context("namespace.Labels"))
}

fn load(tx: &WriteTx<'_>, name: &Namespace) -> Result<Option<NamespaceRecord>> {
    Ok(tx
        .get(&keys::namespace(name.as_str()))?
        .map(|raw| decode(&format!("namespace {name:?}"), &raw))
        .transpose()?)
}

fn store(tx: &mut WriteTx<'_>, name: &Namespace, record: &NamespaceRecord) -> Result<()> {
    let value = encode(&format!("namespace {name:?}"), record)?;
    tx.put(keys::namespace(name.as_str()), value);
    Ok(())
}

impl WriteTx<'_> {
    /// Creates `ns` if it does not exist yet: namespaced objects call this so
    /// that namespaces come into being on first use, as in containerd.
    pub fn ensure_namespace(&mut self, ns: &Namespace) -> Result<()> {
        if load(self, ns)?.is_none() {
            store(self, ns, &NamespaceRecord::default())?;
        }
        Ok(())
    }
}

fn info(name: Namespace, record: NamespaceRecord) -> NamespaceInfo {
    NamespaceInfo {
        name,
        labels: record.labels,
    }
}

impl Db {
    fn create_namespace(
        &self,
        name: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        validate_labels(&labels)?;
        self.write(|tx| {
            if load(tx, name)?.is_some() {
                return Err(Error::NamespaceExists {
                    namespace: name.to_string(),
                }
                .into());
            }
            let record = NamespaceRecord { labels };
            store(tx, name, &record)?;
            Ok(info(name.clone(), record))
        })
    }

    fn get_namespace(&self, name: &Namespace) -> Result<NamespaceInfo> {
        let raw = self
            .read(|tx| tx.get(&keys::namespace(name.as_str())))?
            .ok_or_else(|| Error::NamespaceNotFound {
                namespace: name.to_string(),
            })?;
        Ok(info(
            name.clone(),
            decode(&format!("namespace {name:?}"), &raw)?,
        ))
    }

    fn list_namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        let prefix = keys::namespaces();
        self.read(|tx| tx.scan(&prefix))?
            .into_iter()
            .map(|(key, raw)| {
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let record = decode(&format!("namespace {name:?}"), &raw)?;
                Ok(info(Namespace::new(name)?, record))
            })
            .collect()
    }

    fn update_namespace(
        &self,
        update: NamespaceInfo,
        fieldpaths: &[String],
    ) -> Result<NamespaceInfo> {
        // Validate everything before touching anything.
        let mut changes: Vec<(&str, Option<&String>)> = Vec::new();
        for path in fieldpaths {
            let key = path
                .strip_prefix("labels.")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| Error::NamespaceField {
                    namespace: update.name.to_string(),
                    path: path.clone(),
                })?;
            let value = update.labels.get(key).filter(|v| !v.is_empty());
            if let Some(v) = value {
                labels::validate(key, v).map_err(|e| e.context("namespace.Labels"))?;
            }
            changes.push((key, value));
        }
        if fieldpaths.is_empty() {
            validate_labels(&update.labels)?;
        }
        let name = &update.name;
        self.write(|tx| {
            let mut record = load(tx, name)?.unwrap_or_default();
            if fieldpaths.is_empty() {
                record.labels = update
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            } else {
                for (key, value) in &changes {
                    match value {
                        Some(v) => record.labels.insert((*key).to_owned(), (*v).clone()),
                        None => record.labels.remove(*key),
                    };
                }
            }
            store(tx, name, &record)?;
            Ok(info(name.clone(), record))
        })
    }

    fn delete_namespace(&self, name: &Namespace) -> Result<()> {
        self.write(|tx| {
            let key = keys::namespace(name.as_str());
            if tx.get(&key)?.is_none() {
                return Err(Error::NamespaceNotFound {
                    namespace: name.to_string(),
                }
                .into());
            }
            let prefix = keys::objects(name.as_str());
            let mut held: Vec<&'static str> = Vec::new();
            for kind in keys::OBJECT_KINDS {
                if !tx.scan(&keys::objects_of(name.as_str(), kind))?.is_empty() {
                    held.push(kind);
                }
            }
            // Any object of a kind this build does not know still counts.
            if held.is_empty() && !tx.scan(&prefix)?.is_empty() {
                held.push("objects");
            }
            if !held.is_empty() {
                return Err(Error::NamespaceNotEmpty {
                    namespace: name.to_string(),
                    held,
                }
                .into());
            }
            // With no objects left an index entry would point at nothing.
            for (entry, _) in tx.scan(&keys::indexes(name.as_str()))? {
                tx.delete(entry);
            }
            tx.delete(key);
            Ok(())
        })
    }
}

#[async_trait::async_trait]
impl NamespaceStore for Db {
    async fn create(
        &self,
        name: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        self.create_namespace(name, labels)
    }

    async fn get(&self, name: &Namespace) -> Result<NamespaceInfo> {
        self.get_namespace(name)
    }

    async fn list(&self, filters: &[String]) -> Result<Vec<NamespaceInfo>> {
        let filter = crated_core::filters::parse_all(filters)?;
        let mut namespaces = self.list_namespaces()?;
        namespaces.retain(|info| filter.matches(&crated_core::namespaces::InfoFields(info)));
        Ok(namespaces)
    }

    async fn update(&self, info: NamespaceInfo, fieldpaths: &[String]) -> Result<NamespaceInfo> {
        self.update_namespace(info, fieldpaths)
    }

    async fn delete(&self, name: &Namespace) -> Result<()> {
        self.delete_namespace(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::Kind;

    fn ns(s: &str) -> Namespace {
        Namespace::new(s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn create_get_list_delete() {
        let (_d, db) = db();
        db.create(&ns("foo"), labels(&[("mylabel", "bar")]))
            .await
            .unwrap();
        db.create(&ns("a"), BTreeMap::new()).await.unwrap();
        assert_eq!(
            db.get(&ns("foo")).await.unwrap().labels,
            labels(&[("mylabel", "bar")])
        );
        let names: Vec<_> = db
            .list(&[])
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name.to_string())
            .collect();
        assert_eq!(names, ["a", "foo"]);
        let err = db.create(&ns("foo"), BTreeMap::new()).await.unwrap_err();
        assert_eq!(err.kind(), Kind::AlreadyExists);
        assert_eq!(err.to_string(), "namespace \"foo\" already exists");
        db.delete(&ns("foo")).await.unwrap();
        let err = db.get(&ns("foo")).await.unwrap_err();
        assert_eq!(err.kind(), Kind::NotFound);
        let err = db.delete(&ns("foo")).await.unwrap_err();
        assert_eq!(err.to_string(), "namespace \"foo\" not found");
    }

    #[tokio::test]
    async fn update_with_fieldpaths() {
        let (_d, db) = db();
        db.create(&ns("foo"), labels(&[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        let update = NamespaceInfo {
            name: ns("foo"),
            labels: labels(&[("a", "9"), ("c", "3")]),
        };
        let got = db
            .update(update, &["labels.a".into(), "labels.b".into()])
            .await
            .unwrap();
        assert_eq!(got.labels, labels(&[("a", "9")]));
        // Empty mask replaces all.
        let update = NamespaceInfo {
            name: ns("foo"),
            labels: labels(&[("z", "26")]),
        };
        assert_eq!(
            db.update(update, &[]).await.unwrap().labels,
            labels(&[("z", "26")])
        );
        // Unknown path: refused, nothing changed.
        let update = NamespaceInfo {
            name: ns("foo"),
            labels: BTreeMap::new(),
        };
        let err = db.update(update, &["name".into()]).await.unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert_eq!(
            db.get(&ns("foo")).await.unwrap().labels,
            labels(&[("z", "26")])
        );
    }

    #[tokio::test]
    async fn bad_labels_change_nothing() {
        let (_d, db) = db();
        let big = "v".repeat(5000);
        let err = db
            .create(&ns("foo"), labels(&[("k", &big)]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert!(db.list(&[]).await.unwrap().is_empty());
        db.create(&ns("foo"), labels(&[("k", "v")])).await.unwrap();
        let update = NamespaceInfo {
            name: ns("foo"),
            labels: labels(&[("k", &big)]),
        };
        assert!(db.update(update, &["labels.k".into()]).await.is_err());
        assert_eq!(
            db.get(&ns("foo")).await.unwrap().labels,
            labels(&[("k", "v")])
        );
    }

    #[tokio::test]
    async fn delete_refuses_non_empty_namespace() {
        let (_d, db) = db();
        db.create(&ns("foo"), BTreeMap::new()).await.unwrap();
        db.write(|tx| {
            tx.put(
                keys::object("foo", "images", &["docker.io/library/busybox:latest"]),
                b"{}".to_vec(),
            );
            tx.put(keys::object("foo", "leases", &["l1"]), b"{}".to_vec());
            Ok(())
        })
        .unwrap();
        let err = db.delete(&ns("foo")).await.unwrap_err();
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert_eq!(
            err.to_string(),
            "namespace \"foo\" must be empty, but it still has images, leases"
        );
        assert!(db.get(&ns("foo")).await.is_ok());
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.create(&ns("persist"), labels(&[("x", "y")]))
                .await
                .unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(
            db.get(&ns("persist")).await.unwrap().labels,
            labels(&[("x", "y")])
        );
    }
}
