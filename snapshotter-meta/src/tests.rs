use super::*;

/// Opens the store; a reopen waits for the previous handle's writes still
/// in flight on sled's IO threads, which hold its file lock a moment after
/// the drop.
fn open(dir: &Path) -> MetaStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match MetaStore::open(&dir.join("meta.sled")) {
            Ok(store) => return store,
            Err(e @ Error::StillOpen { .. }) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn records_survive_reopen_and_keep_ids_through_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (base_id, child_id);
    {
        let store = open(dir.path());
        let mut change = store.change();
        base_id = change
            .create(Kind::Active, "a", "", Labels::new())
            .unwrap()
            .id;
        change.apply().unwrap();
        let mut change = store.change();
        let usage = Usage {
            size: 10,
            inodes: 2,
        };
        change.commit("base", "a", Labels::new(), usage).unwrap();
        change.apply().unwrap();
        let mut change = store.change();
        let child = change
            .create(Kind::Active, "child", "base", Labels::new())
            .unwrap();
        assert_eq!(child.parent_ids, std::slice::from_ref(&base_id));
        child_id = child.id;
        change.apply().unwrap();
    }
    let store = open(dir.path());
    let (base, usage) = store.get("base").unwrap();
    assert_eq!(
        (base.id, base.info.kind),
        (base_id.clone(), Kind::Committed)
    );
    assert_eq!(
        usage,
        Usage {
            size: 10,
            inodes: 2
        }
    );
    assert_ne!(child_id, base_id, "ids are never reused");
    assert_eq!(store.get("child").unwrap().0.parent_ids, [base_id]);
    assert!(matches!(store.get("a"), Err(Error::NotFound { key }) if key == "a"));
}

#[test]
fn a_dropped_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    {
        let mut change = store.change();
        change.create(Kind::Active, "a", "", Labels::new()).unwrap();
    }
    assert!(store.walk(&[]).unwrap().is_empty());
    let mut change = store.change();
    change.create(Kind::Active, "a", "", Labels::new()).unwrap();
    change.apply().unwrap();
    assert_eq!(store.ids().unwrap().len(), 1);
}

#[test]
fn parents_with_children_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut change = store.change();
    change.create(Kind::Active, "a", "", Labels::new()).unwrap();
    change.apply().unwrap();
    let mut change = store.change();
    change
        .commit("base", "a", Labels::new(), Usage::default())
        .unwrap();
    change.apply().unwrap();
    let mut change = store.change();
    change
        .create(Kind::View, "v", "base", Labels::new())
        .unwrap();
    change.apply().unwrap();
    let err = store.change().remove("base").unwrap_err();
    assert!(matches!(&err, Error::HasChildren { key } if key == "base"));
    assert_eq!(
        crated_core::Error::from(err).kind(),
        crated_core::Kind::FailedPrecondition
    );
    let mut change = store.change();
    change.remove("v").unwrap();
    change.apply().unwrap();
    let mut change = store.change();
    change.remove("base").unwrap();
    change.apply().unwrap();
    assert!(store.walk(&[]).unwrap().is_empty());
}

#[test]
fn a_busy_store_is_unavailable_and_says_who_holds_it() {
    use crated_core::error::KindError as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sled");
    // sled's own lock, held by another handle of this process (as a
    // dropped store's in-flight writes hold it for a moment).
    let sled_handle = sled::open(&path).unwrap();
    let err = MetaStore::open(&path).err().expect("sled's lock is held");
    assert!(matches!(err, Error::StillOpen { .. }), "{err}");
    assert_eq!(err.kind(), crated_core::Kind::Unavailable);
    drop(sled_handle);

    let _store = open(dir.path());
    let err = MetaStore::open(&path).err().expect("the store is open");
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert_eq!(err.kind(), crated_core::Kind::Unavailable);
}
