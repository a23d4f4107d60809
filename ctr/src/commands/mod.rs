//! One module per ctr command group.

pub mod content;
pub mod events;
pub mod leases;
pub mod namespaces;
pub mod plugins;
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
