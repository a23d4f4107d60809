//! The schema version and its migrations.
//!
//! The version lives at [`keys::SCHEMA_VERSION`]. A new database is stamped
//! with [`SCHEMA_VERSION`]; an older one is migrated step by step, each step
//! one atomic batch; a newer one is refused, so that an old binary never
//! rewrites records it does not understand.

use crate::{keys, Error};

type Result<T, E = Error> = std::result::Result<T, E>;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 3;

/// One migration: reads the tree and stages the changes that take it from
/// version `from` to `from + 1`.
struct Migration {
    from: u32,
    apply: fn(&sled::Tree, &mut sled::Batch) -> Result<()>,
}

/// The migrations, in order. Version 0 is a database written before the
/// version key existed; it had the same layout, so the step only stamps it.
/// Version 2 added the index of snapshot children. Version 3 writes a
/// container's spec as raw bytes after its JSON record instead of as hex in
/// it; records of either form are read, so the step only stamps the
/// version (which keeps an older build, that could not read the new form,
/// from opening the database).
const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 0,
        apply: |_, _| Ok(()),
    },
    Migration {
        from: 1,
        apply: crate::snapshots::index_children,
    },
    Migration {
        from: 2,
        apply: |_, _| Ok(()),
    },
];

fn read_version(tree: &sled::Tree) -> Result<Option<u32>> {
    let Some(raw) = tree.get(keys::SCHEMA_VERSION).map_err(Error::Storage)? else {
        return Ok(None);
    };
    let version = std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or_else(|| Error::SchemaUnreadable {
            raw: String::from_utf8_lossy(&raw).into_owned(),
        })?;
    Ok(Some(version))
}

/// Brings `tree` to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn upgrade(tree: &sled::Tree) -> Result<()> {
    upgrade_with(tree, SCHEMA_VERSION, MIGRATIONS)
}

fn upgrade_with(tree: &sled::Tree, target: u32, migrations: &[Migration]) -> Result<()> {
    let mut version = match read_version(tree)? {
        Some(v) => v,
        // An empty database is new: stamp it. Records without a version
        // stamp are version 0.
        None if tree.is_empty() => target,
        None => 0,
    };
    if version > target {
        return Err(Error::SchemaTooNew {
            version,
            newest: target,
        });
    }
    while version < target {
        let step = migrations
            .iter()
            .find(|m| m.from == version)
            .ok_or(Error::NoMigration { from: version })?;
        let mut batch = sled::Batch::default();
        (step.apply)(tree, &mut batch)?;
        version += 1;
        batch.insert(keys::SCHEMA_VERSION, version.to_string().as_bytes());
        tree.apply_batch(batch).map_err(Error::Storage)?;
    }
    if read_version(tree)?.is_none() {
        tree.insert(keys::SCHEMA_VERSION, version.to_string().as_bytes())
            .map_err(Error::Storage)?;
    }
    tree.flush().map_err(Error::Storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("t").unwrap();
        (dir, tree)
    }

    #[test]
    fn new_database_is_stamped() {
        let (_d, t) = tree();
        upgrade(&t).unwrap();
        assert_eq!(read_version(&t).unwrap(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn unstamped_records_are_migrated_from_zero() {
        let (_d, t) = tree();
        t.insert(keys::namespace("old"), b"{}").unwrap();
        upgrade(&t).unwrap();
        assert_eq!(read_version(&t).unwrap(), Some(SCHEMA_VERSION));
        assert!(t.get(keys::namespace("old")).unwrap().is_some());
    }

    #[test]
    fn migrations_run_in_order_and_transform_records() {
        // A two-step chain: v1 renames key a to b, v2 uppercases b's value.
        const CHAIN: &[Migration] = &[
            Migration {
                from: 1,
                apply: |t, b| {
                    if let Some(v) = t.get("a").unwrap() {
                        b.remove("a");
                        b.insert("b", v);
                    }
                    Ok(())
                },
            },
            Migration {
                from: 2,
                apply: |t, b| {
                    // Runs after step one has been applied.
                    let v = t.get("b").unwrap().expect("step one ran first");
                    b.insert("b", v.to_ascii_uppercase());
                    Ok(())
                },
            },
        ];
        let (_d, t) = tree();
        t.insert(keys::SCHEMA_VERSION, b"1").unwrap();
        t.insert("a", b"x").unwrap();
        upgrade_with(&t, 3, CHAIN).unwrap();
        assert_eq!(read_version(&t).unwrap(), Some(3));
        assert_eq!(t.get("b").unwrap().as_deref(), Some(&b"X"[..]));
        assert!(t.get("a").unwrap().is_none());
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_d, t) = tree();
        t.insert(keys::SCHEMA_VERSION, b"99").unwrap();
        let err = upgrade(&t).unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { version: 99, .. }),
            "{err}"
        );
        let err = crated_core::Error::from(err);
        assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition);
        assert!(err.to_string().contains("version 99 is newer"), "{err}");
    }
}
