#![doc = include_str!("../README.md")]

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The name of our lock file in the database directory.
pub const LOCK_FILE: &str = "crated.lock";

/// An open database and the lock that keeps other processes out of it
/// (released when this is dropped).
pub struct Opened {
    /// The database.
    pub db: sled::Db,
    /// Our lock on [`LOCK_FILE`].
    pub lock: Flock<File>,
}

/// Why [`open`] failed; the caller words it for its own store.
#[derive(Debug)]
pub enum Failure {
    /// The lock file could not be created or opened.
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds our lock: the store is in use.
    InUse,
    /// Locking failed for another reason than a holder.
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The flock error.
        source: nix::errno::Errno,
    },
    /// Our lock was free but sled's is held: an earlier handle of this
    /// process, not yet closed.
    StillOpen(sled::Error),
    /// sled could not open the database.
    Open(sled::Error),
}

/// Opens the sled database in directory `path` (which must exist) with a
/// page cache of at most `cache_capacity` bytes, taking our lock first.
pub fn open(path: &Path, cache_capacity: u64) -> Result<Opened, Failure> {
    let lock_path = path.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Failure::LockFile {
            path: lock_path.clone(),
            source,
        })?;
    let lock =
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => Failure::InUse,
            source => Failure::Lock {
                path: lock_path,
                source,
            },
        })?;
    // No background flusher: every write a caller relies on is flushed
    // before its call returns (the few that are not, leases guarding one
    // operation of the daemon, go with the next), so sled's thread flushing
    // every 500 ms would only wake the daemon twice a second per store.
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity)
        .flush_every_ms(None)
        .open()
        .map_err(|source| {
            if sled_lock_held(path) {
                Failure::StillOpen(source)
            } else {
                Failure::Open(source)
            }
        })?;
    Ok(Opened { db, lock })
}

/// Whether sled's own lock on the database's `db` file is held (by an
/// earlier handle of this process: ours was free).
fn sled_lock_held(path: &Path) -> bool {
    let Ok(file) = File::open(path.join("db")) else {
        return false;
    };
    // Taken, the probe's lock goes with it at once.
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_open_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), 1 << 20).unwrap();
        first.db.insert(b"k", b"v").unwrap();
        first.db.flush().unwrap();
        assert!(matches!(open(dir.path(), 1 << 20), Err(Failure::InUse)));
        // Our lock released but sled's still held: told apart.
        let Opened { db, lock } = first;
        drop(lock);
        match open(dir.path(), 1 << 20) {
            Err(Failure::StillOpen(_)) => {}
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("opened while sled's lock is held"),
        }
        drop(db);
        // Writes still in flight on sled's IO threads let go a moment
        // after the drop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let reopened = loop {
            match open(dir.path(), 1 << 20) {
                Ok(opened) => break opened,
                Err(Failure::StillOpen(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(other) => panic!("{other:?}"),
            }
        };
        assert_eq!(reopened.db.get(b"k").unwrap().unwrap().as_ref(), b"v");
    }

    #[test]
    fn no_background_flusher_is_started() {
        let dir = tempfile::tempdir().unwrap();
        let _opened = open(dir.path(), 1 << 20).unwrap();
        // Every open in this process goes through `open`, so none may
        // have started sled's flusher thread.
        let flushers = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "log flusher")
            .count();
        assert_eq!(flushers, 0);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        match open(&missing, 1 << 20) {
            Err(Failure::LockFile { path, source }) => {
                assert_eq!(path, missing.join(LOCK_FILE));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("opened in a missing directory"),
        }
    }
}
