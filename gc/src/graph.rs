//! The resource graph and its tricolor mark.

use std::collections::{BTreeMap, HashSet};

use crated_core::gc::{content_ref, snapshot_ref};

/// What kind of resource a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// A content record; the key is its digest.
    Content,
    /// A snapshot; the key is `<snapshotter>/<key>`.
    Snapshot,
    /// A container; the key is its id.
    Container,
    /// An image; the key is its name.
    Image,
    /// A lease; the key is its id.
    Lease,
    /// An ingest; the key is its ref.
    Ingest,
}

/// One resource of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// Its kind.
    pub kind: ResourceKind,
    /// The namespace holding it.
    pub namespace: String,
    /// Its key within kind and namespace.
    pub key: String,
    /// Held by a `containerd.io/gc.flat` lease: kept itself, but what it
    /// references is not followed through it. Never set in a marked set.
    pub flat: bool,
}

impl Node {
    /// A node that is followed normally.
    pub fn new(kind: ResourceKind, namespace: &str, key: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            key: key.into(),
            flat: false,
        }
    }

    /// The same resource, flat (see [`Node::flat`]).
    pub fn into_flat(self) -> Self {
        Self { flat: true, ..self }
    }

    /// A snapshot node.
    pub fn snapshot(namespace: &str, snapshotter: &str, key: &str) -> Self {
        Self::new(
            ResourceKind::Snapshot,
            namespace,
            format!("{snapshotter}/{key}"),
        )
    }
}

/// Calls `emit` with every resource the labels reference:
/// `containerd.io/gc.ref.content*` and `containerd.io/gc.ref.snapshot.*`.
pub fn label_refs(namespace: &str, labels: &BTreeMap<String, String>, mut emit: impl FnMut(Node)) {
    for (key, value) in labels {
        if let Some(digest) = content_ref(key, value) {
            emit(Node::new(ResourceKind::Content, namespace, digest));
        } else if let Some((snapshotter, snapshot)) = snapshot_ref(key, value) {
            emit(Node::snapshot(namespace, snapshotter, snapshot));
        }
    }
}

/// Every node reachable from `roots` through `refs` (roots included), with
/// the flat marks cleared: a resource is kept if its node is in the set.
///
/// `refs` is called once per distinct node (flat and normal are distinct: a
/// resource held flat by a lease and normally by an image is followed).
///
/// ```
/// use crated_gc::{tricolor, Node, ResourceKind::Content};
///
/// let a = Node::new(Content, "ns", "a");
/// let b = Node::new(Content, "ns", "b");
/// let c = Node::new(Content, "ns", "c");
/// let (a2, b2) = (a.clone(), b.clone());
/// let marked = tricolor([a.clone()], |n| -> Result<_, ()> {
///     Ok(if *n == a2 { vec![b2.clone()] } else { vec![] })
/// })
/// .unwrap();
/// assert!(marked.contains(&a) && marked.contains(&b) && !marked.contains(&c));
/// ```
pub fn tricolor<E>(
    roots: impl IntoIterator<Item = Node>,
    mut refs: impl FnMut(&Node) -> Result<Vec<Node>, E>,
) -> Result<HashSet<Node>, E> {
    let mut grays: Vec<Node> = roots.into_iter().collect();
    let mut seen: HashSet<Node> = grays.iter().cloned().collect();
    let mut black = HashSet::new();
    while let Some(node) = grays.pop() {
        for target in refs(&node)? {
            if seen.insert(target.clone()) {
                grays.push(target);
            }
        }
        black.insert(Node {
            flat: false,
            ..node
        });
    }
    Ok(black)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn content(key: &str) -> Node {
        Node::new(ResourceKind::Content, "ns", key)
    }

    fn mark(roots: Vec<Node>, edges: &[(&str, &str)]) -> HashSet<Node> {
        let mut map: HashMap<String, Vec<Node>> = HashMap::new();
        for (from, to) in edges {
            map.entry((*from).into()).or_default().push(content(to));
        }
        let mut calls = HashSet::new();
        tricolor(roots, |n| -> Result<_, ()> {
            assert!(calls.insert(n.clone()), "{n:?} expanded twice");
            // Flat nodes hold only themselves.
            Ok(if n.flat {
                vec![]
            } else {
                map.get(&n.key).cloned().unwrap_or_default()
            })
        })
        .unwrap()
    }

    #[test]
    fn chains_and_cycles_are_followed_once() {
        let marked = mark(
            vec![content("a")],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("x", "y")],
        );
        let keys: std::collections::BTreeSet<_> = marked.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"].into());
    }

    #[test]
    fn flat_roots_keep_only_themselves_and_are_marked_normal() {
        let marked = mark(vec![content("a").into_flat()], &[("a", "b")]);
        assert_eq!(marked, [content("a")].into());
        // Held flat by one root and normally by another: followed.
        let marked = mark(vec![content("a").into_flat(), content("a")], &[("a", "b")]);
        assert_eq!(marked, [content("a"), content("b")].into());
    }

    #[test]
    fn errors_stop_the_mark() {
        let r = tricolor([content("a")], |_| Err::<Vec<Node>, _>("boom"));
        assert_eq!(r.unwrap_err(), "boom");
    }

    #[test]
    fn labels_name_content_and_snapshots() {
        let labels: BTreeMap<String, String> = [
            ("containerd.io/gc.ref.content.m.0", "sha256:1"),
            ("containerd.io/gc.ref.content", "sha256:2"),
            ("containerd.io/gc.ref.snapshot.overlayfs", "layer"),
            ("containerd.io/gc.root", "x"),
            ("other", "sha256:3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let mut found = Vec::new();
        label_refs("ns", &labels, |n| found.push(n));
        found.sort();
        assert_eq!(
            found,
            vec![
                content("sha256:1"),
                content("sha256:2"),
                Node::snapshot("ns", "overlayfs", "layer"),
            ]
        );
    }
}
