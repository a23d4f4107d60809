//! Leases in the metadata database: `obj\0<ns>\0leases\0<id>`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crated_core::filters::{self, Adaptor};
use crated_core::leases::{self, Lease, LeaseStore, Resource};
use crated_core::{labels, Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode, WriteTx};
use crate::{keys, Db, Error};

pub(crate) const KIND: &str = "leases";

#[derive(Serialize, Deserialize)]
struct Record {
    created_at: SystemTime,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `(type, id)` pairs; a set, so adding twice holds once.
    #[serde(default)]
    resources: BTreeSet<(String, String)>,
}

fn key(ns: &Namespace, id: &str) -> Vec<u8> {
    keys::object(ns.as_str(), KIND, &[id])
}

fn not_found(ns: &Namespace, id: &str) -> Error {
    Error::LeaseNotFound {
        namespace: ns.to_string(),
        id: id.to_owned(),
    }
}

fn load(tx: &WriteTx<'_>, ns: &Namespace, id: &str) -> Result<Record> {
    let raw = tx.get(&key(ns, id))?.ok_or_else(|| not_found(ns, id))?;
    Ok(decode(&format!("lease {id:?}"), &raw)?)
}

/// Adds `(type, id)` to lease `lease` of `ns` within `tx`: what a write
/// under a lease (the `containerd-lease` header) does. NotFound if the lease
/// does not exist.
pub(crate) fn hold(
    tx: &mut WriteTx<'_>,
    ns: &Namespace,
    lease: &str,
    r#type: &str,
    id: &str,
) -> Result<()> {
    let mut record = load(tx, ns, lease)?;
    if record.resources.insert((r#type.to_owned(), id.to_owned())) {
        tx.put(
            key(ns, lease),
            encode(&format!("lease {lease:?}"), &record)?,
        );
    }
    Ok(())
}

/// Drops a resource from `lease` in `tx` (nothing if it does not hold it);
/// NotFound if the lease does not exist.
pub(crate) fn release(
    tx: &mut WriteTx<'_>,
    ns: &Namespace,
    lease: &str,
    r#type: &str,
    id: &str,
) -> Result<()> {
    let mut record = load(tx, ns, lease)?;
    if record.resources.remove(&(r#type.to_owned(), id.to_owned())) {
        tx.put(
            key(ns, lease),
            encode(&format!("lease {lease:?}"), &record)?,
        );
    }
    Ok(())
}

fn to_lease(id: String, record: Record) -> Lease {
    Lease {
        id,
        created_at: record.created_at,
        labels: record.labels,
    }
}

struct Fields<'a>(&'a Lease);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["id"] => Some(self.0.id.clone()),
            ["labels", key @ ..] => filters::map_value(&self.0.labels, key),
            _ => None,
        }
    }
}

/// A random lease id like containerd's: `<nanoseconds>-<4 base64url chars>`.
pub(crate) fn random_id() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let bits = now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let tail: String = (0..4)
        .map(|i| ALPHABET[((bits >> (i * 6 + 7)) & 63) as usize] as char)
        .collect();
    format!("{}-{tail}", now.subsec_nanos())
}

/// Creates lease `id` in `tx`; AlreadyExists if it is there.
fn create_in(
    tx: &mut WriteTx<'_>,
    ns: &Namespace,
    id: String,
    labels: BTreeMap<String, String>,
) -> Result<Lease> {
    let key = key(ns, &id);
    if tx.get(&key)?.is_some() {
        return Err(Error::LeaseExists { id }.into());
    }
    tx.ensure_namespace(ns)?;
    let record = Record {
        created_at: SystemTime::now(),
        labels,
        resources: BTreeSet::new(),
    };
    tx.put(key, encode(&format!("lease {id:?}"), &record)?);
    Ok(to_lease(id, record))
}

/// Deletes lease `id` in `tx` (what it held is the collector's to judge);
/// NotFound if absent.
fn delete_in(tx: &mut WriteTx<'_>, ns: &Namespace, id: &str) -> Result<()> {
    load(tx, ns, id)?;
    tx.delete(key(ns, id));
    tx.mark_dirty();
    Ok(())
}

#[async_trait::async_trait]
impl LeaseStore for Db {
    async fn create(
        &self,
        ns: &Namespace,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        let id = if id.is_empty() {
            random_id()
        } else {
            id.to_owned()
        };
        leases::validate_id(&id)?;
        labels::validate_all(&labels)?;
        self.write(|tx| create_in(tx, ns, id, labels))
    }

    async fn delete(&self, ns: &Namespace, id: &str, _sync: bool) -> Result<()> {
        self.write(|tx| delete_in(tx, ns, id))
    }

    async fn create_transient(
        &self,
        ns: &Namespace,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        labels::validate_all(&labels)?;
        self.write_unflushed(|tx| create_in(tx, ns, random_id(), labels))
    }

    async fn delete_transient(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.write_unflushed(|tx| delete_in(tx, ns, id))
    }

    async fn list(&self, ns: &Namespace, filter_strings: &[String]) -> Result<Vec<Lease>> {
        let filter = filters::parse_all(filter_strings)?;
        let prefix = keys::objects_of(ns.as_str(), KIND);
        let mut out = Vec::new();
        for (key, raw) in self.read(|tx| tx.scan(&prefix))? {
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let lease = to_lease(id.clone(), decode(&format!("lease {id:?}"), &raw)?);
            if filter.matches(&Fields(&lease)) {
                out.push(lease);
            }
        }
        Ok(out)
    }

    async fn add_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        resource.validate()?;
        self.write(|tx| {
            let mut record = load(tx, ns, id)?;
            record
                .resources
                .insert((resource.r#type.clone(), resource.id.clone()));
            tx.put(key(ns, id), encode(&format!("lease {id:?}"), &record)?);
            Ok(())
        })
    }

    async fn delete_resource(&self, ns: &Namespace, id: &str, resource: Resource) -> Result<()> {
        resource.validate()?;
        self.write(|tx| {
            let mut record = load(tx, ns, id)?;
            record
                .resources
                .remove(&(resource.r#type.clone(), resource.id.clone()));
            tx.put(key(ns, id), encode(&format!("lease {id:?}"), &record)?);
            tx.mark_dirty();
            Ok(())
        })
    }

    async fn list_resources(&self, ns: &Namespace, id: &str) -> Result<Vec<Resource>> {
        let raw = self
            .read(|tx| tx.get(&key(ns, id)))?
            .ok_or_else(|| not_found(ns, id))?;
        let record: Record = decode(&format!("lease {id:?}"), &raw)?;
        Ok(record
            .resources
            .into_iter()
            .map(|(r#type, id)| Resource { id, r#type })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_core::Kind;

    fn setup() -> (tempfile::TempDir, Db, Namespace) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db, Namespace::new("default").unwrap())
    }

    #[tokio::test]
    async fn a_transient_lease_holds_like_any_and_reopens_with_the_writes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::new("default").unwrap();
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let id = {
            let db = Db::open(dir.path()).unwrap();
            let lease = db.create_transient(&ns, labels.clone()).await.unwrap();
            assert!(!lease.id.is_empty());
            assert_eq!(lease.labels, labels);
            let res = Resource {
                id: format!("sha256:{}", "c".repeat(64)),
                r#type: "content".into(),
            };
            // A write under it (flushed) is what takes it to disk.
            db.add_resource(&ns, &lease.id, res.clone()).await.unwrap();
            assert_eq!(db.list_resources(&ns, &lease.id).await.unwrap(), vec![res]);
            lease.id
        };
        let db = Db::open(dir.path()).unwrap();
        let ids: Vec<_> = db
            .list(&ns, &[])
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, std::slice::from_ref(&id));
        db.delete_transient(&ns, &id).await.unwrap();
        assert!(db.list(&ns, &[]).await.unwrap().is_empty());
        assert_eq!(
            db.delete_transient(&ns, &id).await.unwrap_err().kind(),
            Kind::NotFound
        );
        let bad: BTreeMap<String, String> = [(String::new(), "v".to_string())].into();
        assert_eq!(
            db.create_transient(&ns, bad).await.unwrap_err().kind(),
            Kind::InvalidArgument
        );
    }

    #[tokio::test]
    async fn lifecycle_and_resources() {
        let (_d, db, ns) = setup();
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let lease = db.create(&ns, "l1", labels.clone()).await.unwrap();
        assert_eq!(lease.labels, labels);
        assert_eq!(
            db.create(&ns, "l1", BTreeMap::new())
                .await
                .unwrap_err()
                .kind(),
            Kind::AlreadyExists
        );
        let generated = db.create(&ns, "", BTreeMap::new()).await.unwrap();
        assert!(!generated.id.is_empty());
        let digest = format!("sha256:{}", "b".repeat(64));
        let res = Resource {
            id: digest.clone(),
            r#type: "content".into(),
        };
        db.add_resource(&ns, "l1", res.clone()).await.unwrap();
        db.add_resource(&ns, "l1", res.clone()).await.unwrap();
        assert_eq!(
            db.list_resources(&ns, "l1").await.unwrap(),
            vec![res.clone()]
        );
        let bad = Resource {
            id: "x".into(),
            r#type: "content".into(),
        };
        assert_eq!(
            db.add_resource(&ns, "l1", bad).await.unwrap_err().kind(),
            Kind::InvalidArgument
        );
        assert_eq!(
            db.add_resource(&ns, "nope", res.clone())
                .await
                .unwrap_err()
                .kind(),
            Kind::NotFound
        );
        db.delete_resource(&ns, "l1", res).await.unwrap();
        assert!(db.list_resources(&ns, "l1").await.unwrap().is_empty());
        let ids: Vec<_> = db
            .list(&ns, &["labels.a==1".into()])
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, ["l1"]);
        db.delete(&ns, "l1", false).await.unwrap();
        assert_eq!(
            db.delete(&ns, "l1", false).await.unwrap_err().kind(),
            Kind::NotFound
        );
    }

    #[tokio::test]
    async fn a_dotted_label_key_filters_unquoted() {
        let (_d, db, ns) = setup();
        for (id, key) in [("dotted", "a.b"), ("plain", "a")] {
            let labels = [(key.to_owned(), "x".to_owned())].into();
            LeaseStore::create(&db, &ns, id, labels).await.unwrap();
        }
        for filter in ["labels.a.b==x", r#"labels."a.b"==x"#] {
            let ids: Vec<_> = LeaseStore::list(&db, &ns, &[filter.into()])
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect();
            assert_eq!(ids, ["dotted"], "{filter}");
        }
    }

    #[tokio::test]
    async fn a_namespace_with_a_lease_is_not_empty() {
        let (_d, db, ns) = setup();
        LeaseStore::create(&db, &ns, "hold", BTreeMap::new())
            .await
            .unwrap();
        let err = crated_core::namespaces::NamespaceStore::delete(&db, &ns)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("still has leases"), "{err}");
    }
}
