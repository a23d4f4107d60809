#![doc = include_str!("../README.md")]

mod bundles;
mod content;
mod report;
mod snapshots;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crated_metadata::{Db, Inventory};

pub use report::{Finding, Outcome, Report};

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon's root directory (`root` in its config).
    pub root: PathBuf,
    /// The daemon's state directory (`state` in its config).
    pub state: PathBuf,
    /// Repair what is safe to repair, instead of only reporting.
    pub repair: bool,
}

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No metadata database under the root.
    #[error("no crated metadata database at {}: is {} a crated root?", path.display(), root.display())]
    NoDatabase {
        /// Where it was looked for.
        path: PathBuf,
        /// The root given.
        root: PathBuf,
    },
    /// A daemon (or another fsck) has the database open.
    #[error("the metadata database at {} is in use: stop the daemon before checking it", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// A store could not be read.
    #[error("{what}: {source}")]
    Store {
        /// What was being read.
        what: String,
        /// The store's error.
        #[source]
        source: crated_core::Error,
    },
    /// A directory could not be listed.
    #[error("read {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn store(what: impl Into<String>) -> impl FnOnce(crated_core::Error) -> Self {
        let what = what.into();
        move |source| Error::Store { what, source }
    }
}

/// What every check sees: the options, the database and what it records.
struct Context<'a> {
    options: &'a Options,
    db: &'a Db,
    inventory: Inventory,
    /// `(namespace, id)` of every container.
    containers: HashSet<(String, String)>,
}

impl Context<'_> {
    fn has_container(&self, ns: &str, id: &str) -> bool {
        self.containers.contains(&(ns.to_owned(), id.to_owned()))
    }
}

/// Checks the stopped daemon's root and state (and repairs, if asked).
pub fn check(options: &Options) -> Result<Report, Error> {
    let db_path = options.root.join(crated_metadata::DIR_NAME);
    if !db_path.is_dir() {
        return Err(Error::NoDatabase {
            path: db_path,
            root: options.root.clone(),
        });
    }
    let db = Db::open(&options.root).map_err(|e| match e {
        crated_metadata::Error::InUse { .. } | crated_metadata::Error::StillOpen { .. } => {
            Error::InUse {
                path: db_path.clone(),
            }
        }
        other => Error::Store {
            what: format!("open the metadata database at {}", db_path.display()),
            source: other.into(),
        },
    })?;
    let inventory = db
        .inventory()
        .map_err(Error::store("read the metadata database"))?;
    let containers = inventory
        .containers
        .iter()
        .map(|c| (c.namespace.clone(), c.id.clone()))
        .collect();
    let ctx = Context {
        options,
        db: &db,
        inventory,
        containers,
    };
    let mut report = Report::new(options, ctx.inventory.schema_version);
    content::check(&ctx, &mut report)?;
    snapshots::check(&ctx, &mut report)?;
    // Mounts first: a stray bundle's rootfs must be unmounted before the
    // bundle can go.
    bundles::check_mounts(&ctx, &mut report)?;
    bundles::check_bundles(&ctx, &mut report)?;
    Ok(report)
}

/// The names of the entries of `dir`, none if it does not exist.
fn entries(dir: &Path) -> Result<Vec<String>, Error> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|source| Error::Io {
                        path: dir.to_owned(),
                        source,
                    })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}
