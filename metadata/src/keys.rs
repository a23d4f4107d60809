//! The key layout of the metadata database.
//!
//! Everything lives in one sled tree, so that one API call is one atomic
//! batch however many records it touches. Keys are byte strings built from
//! components separated by `0x00`, a byte no identifier, digest or label can
//! hold, so prefixes never alias (`foo` is not a prefix of `foo.bar`'s keys):
//!
//! | key | value |
//! | --- | --- |
//! | `meta` `\0` `schema_version` | schema version, decimal ASCII |
//! | `ns` `\0` `<namespace>` | [`NamespaceRecord`](crate) as JSON: labels |
//! | `obj` `\0` `<namespace>` `\0` `<kind>` `\0` `<id…>` | the record of one object: JSON; a container's then `\0` and its spec's bytes (schema 3) |
//! | `idx` `\0` `<namespace>` `\0` `snapshot-children` `\0` `<snapshotter>` `\0` `<parent>` `\0` `<child>` | empty: `child` names `parent` |
//!
//! Object kinds, filled by later subsystems: `images` (id = image name),
//! `containers` (id), `leases` (id), `content` (id = digest: the namespace's
//! view of a shared blob), `snapshots` (id = `<snapshotter>` `\0` `<key>`).
//! All objects of a namespace share the prefix `obj\0<namespace>\0`, which is
//! how a namespace delete finds out, in one seek, whether it is empty.
//! Indexes live under `idx`, outside that prefix: they only say where to
//! look, and what they point at is read from the records.

/// Separator between key components.
pub const SEP: u8 = 0;

/// Key of the schema version.
pub const SCHEMA_VERSION: &[u8] = b"meta\0schema_version";

/// Object kinds whose presence keeps a namespace from being deleted, with
/// the word containerd uses for each in its error message.
pub const OBJECT_KINDS: &[&str] = &["images", "blobs", "containers", "snapshots", "leases"];

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut key = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

/// Prefix of every namespace record.
pub fn namespaces() -> Vec<u8> {
    join(&[b"ns", b""])
}

/// Key of the namespace record of `ns`.
pub fn namespace(ns: &str) -> Vec<u8> {
    join(&[b"ns", ns.as_bytes()])
}

/// Prefix of every object of namespace `ns`.
pub fn objects(ns: &str) -> Vec<u8> {
    join(&[b"obj", ns.as_bytes(), b""])
}

/// Prefix of objects of `kind` in namespace `ns`.
pub fn objects_of(ns: &str, kind: &str) -> Vec<u8> {
    join(&[b"obj", ns.as_bytes(), kind.as_bytes(), b""])
}

/// Key of object `id` (one or more components) of `kind` in namespace `ns`.
pub fn object(ns: &str, kind: &str, id: &[&str]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![b"obj", ns.as_bytes(), kind.as_bytes()];
    parts.extend(id.iter().map(|c| c.as_bytes()));
    join(&parts)
}

/// Prefix of the index entries of the children of snapshot `parent` of
/// `snapshotter` in namespace `ns`.
pub fn snapshot_children(ns: &str, snapshotter: &str, parent: &str) -> Vec<u8> {
    snapshot_child(ns, snapshotter, parent, "")
}

/// Index entry: snapshot `child` of `snapshotter` in `ns` has `parent`.
pub fn snapshot_child(ns: &str, snapshotter: &str, parent: &str, child: &str) -> Vec<u8> {
    join(&[
        b"idx",
        ns.as_bytes(),
        b"snapshot-children",
        snapshotter.as_bytes(),
        parent.as_bytes(),
        child.as_bytes(),
    ])
}

/// Prefix of every index entry of namespace `ns`.
pub fn indexes(ns: &str) -> Vec<u8> {
    join(&[b"idx", ns.as_bytes(), b""])
}

/// The kind component of an object key under `objects(ns)`.
pub fn kind_of<'k>(ns_prefix: &[u8], key: &'k [u8]) -> Option<&'k [u8]> {
    let rest = key.strip_prefix(ns_prefix)?;
    rest.split(|b| *b == SEP).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_do_not_alias() {
        let foo = objects("foo");
        let foobar = object("foo.bar", "images", &["x"]);
        assert!(!foobar.starts_with(&foo));
        assert!(object("foo", "images", &["x"]).starts_with(&foo));
    }

    #[test]
    fn children_of_a_parent_do_not_alias_a_longer_name() {
        let children = snapshot_children("ns", "overlayfs", "base");
        assert!(snapshot_child("ns", "overlayfs", "base", "c").starts_with(&children));
        assert!(!snapshot_child("ns", "overlayfs", "base2", "c").starts_with(&children));
        assert!(children.starts_with(&indexes("ns")));
        assert!(!children.starts_with(&objects("ns")));
    }

    #[test]
    fn kind_is_read_back() {
        let key = object("ns1", "snapshots", &["overlayfs", "k"]);
        assert_eq!(kind_of(&objects("ns1"), &key), Some(&b"snapshots"[..]));
    }
}
