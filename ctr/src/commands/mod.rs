//! One module per ctr command group.

pub mod checkpoint;
pub mod containers;
pub mod content;
pub mod events;
pub mod images;
pub mod install;
pub mod leases;
pub mod namespaces;
pub mod oci;
pub mod plugins;
pub mod run;
pub mod snapshot_diff;
pub mod snapshots;
pub mod tasks;
pub mod version;

use std::collections::BTreeMap;

/// `key=value` arguments as containerd's ctr reads them: a bare `key` means
/// `key=true`, and `key=` means an empty value (which clears a label).
pub fn label_args(args: &[String]) -> BTreeMap<String, String> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (arg.clone(), "true".to_owned()),
        })
        .collect()
}

/// Labels as ctr prints them: `k=v`, sorted, joined by commas (containerd's
/// ctr prints them in Go's random map order; sorted is one of those orders
/// and the only one a script can rely on).
pub fn labels_line<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// The `LABELS` column of a table: [`labels_line`], or `-` when there are none.
pub fn labels_column<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let line = labels_line(labels);
    if line.is_empty() {
        "-".to_owned()
    } else {
        line
    }
}
