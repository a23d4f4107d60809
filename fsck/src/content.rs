//! Blobs: the namespaces' records against the content store's files
//! (`<root>/io.containerd.content.v1.content/blobs/<algorithm>/<hex>`,
//! containerd's layout).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use crate::{entries, Context, Error, Report};

const CONTENT_DIR: &str = "io.containerd.content.v1.content";

pub(crate) fn check(ctx: &Context<'_>, report: &mut Report) -> Result<(), Error> {
    let blobs = ctx.options.root.join(CONTENT_DIR).join("blobs");
    let mut on_disk: BTreeMap<String, PathBuf> = BTreeMap::new();
    for algorithm in entries(&blobs)? {
        let dir = blobs.join(&algorithm);
        if !dir.is_dir() {
            continue;
        }
        for hex in entries(&dir)? {
            on_disk.insert(format!("{algorithm}:{hex}"), dir.join(hex));
        }
    }
    let records = &ctx.inventory.blobs;
    report.checked("blob records", records.len());
    report.checked("blob files", on_disk.len());

    for (ns, digest) in records {
        if on_disk.contains_key(digest) {
            continue;
        }
        report.found(
            format!("namespace {ns:?} records blob {digest}, whose file is missing"),
            || {
                ctx.db
                    .forget_blob(ns, digest)
                    .map(|()| "record removed (pulling the image again fetches it)".to_owned())
                    .map_err(|e| e.to_string())
            },
        );
    }
    let recorded: HashSet<&str> = records.iter().map(|(_, d)| d.as_str()).collect();
    for (digest, path) in &on_disk {
        if recorded.contains(digest.as_str()) {
            continue;
        }
        let size = std::fs::symlink_metadata(path)
            .map(|m| m.len())
            .unwrap_or(0);
        report.found(
            format!(
                "blob {digest} ({size} bytes, {}) is recorded in no namespace (deleted before the daemon stopped and not collected yet, or left by a crash)",
                path.display()
            ),
            || {
                std::fs::remove_file(path)
                    .map(|()| "file removed".to_owned())
                    .map_err(|e| format!("remove {}: {e}", path.display()))
            },
        );
    }
    Ok(())
}
