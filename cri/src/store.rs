//! What the CRI keeps in memory of pods and containers, and the names it
//! has handed out: kubelet's names must be unique, and a name stays
//! reserved until its pod or container is removed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crated_core::{Error, Result};

/// A map of ids to shared records, with id-prefix lookup as kubelet and
/// crictl use (an unambiguous prefix names one).
pub struct Records<T> {
    what: &'static str,
    items: Mutex<HashMap<String, Arc<T>>>,
}

impl<T> Records<T> {
    /// An empty map of `what`s (`"sandbox"`, `"container"`).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            items: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<T>>> {
        // A panic elsewhere does not make the map inconsistent: every
        // change is one insert or remove.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `item` under `id`.
    pub fn insert(&self, id: &str, item: Arc<T>) {
        self.lock().insert(id.to_owned(), item);
    }

    /// Removes `id`.
    pub fn remove(&self, id: &str) -> Option<Arc<T>> {
        self.lock().remove(id)
    }

    /// The record whose id is `id` or starts with it; NotFound for none,
    /// InvalidArgument for an ambiguous prefix.
    pub fn get(&self, id: &str) -> Result<Arc<T>> {
        if id.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{} id must be set",
                self.what
            )));
        }
        let items = self.lock();
        if let Some(item) = items.get(id) {
            return Ok(Arc::clone(item));
        }
        let mut matching = items.iter().filter(|(k, _)| k.starts_with(id));
        match (matching.next(), matching.next()) {
            (Some((_, item)), None) => Ok(Arc::clone(item)),
            (Some(_), Some(_)) => Err(Error::invalid_argument(format!(
                "{} id prefix {id:?} is ambiguous",
                self.what
            ))),
            (None, _) => Err(Error::not_found(format!("{} {id:?} not found", self.what))),
        }
    }

    /// Every record.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.lock().values().cloned().collect()
    }
}

/// Names handed out, each to one id.
#[derive(Default)]
pub struct Names(Mutex<HashMap<String, String>>);

impl Names {
    /// Reserves `name` for `id`; AlreadyExists naming the holder when
    /// another id has it.
    pub fn reserve(&self, name: &str, id: &str) -> Result<()> {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(name) {
            Some(holder) if holder != id => Err(Error::already_exists(format!(
                "name {name:?} is reserved for {holder:?}"
            ))),
            _ => {
                names.insert(name.to_owned(), id.to_owned());
                Ok(())
            }
        }
    }

    /// Releases `name` (if `id` holds it).
    pub fn release(&self, name: &str, id: &str) {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(name).is_some_and(|holder| holder == id) {
            names.remove(name);
        }
    }
}

/// A new id, as containerd's: 32 random bytes in hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut file =
        std::fs::File::open("/dev/urandom").map_err(|e| Error::io("open /dev/urandom", e))?;
    std::io::Read::read_exact(&mut file, &mut bytes)
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_one_record() {
        let records = Records::new("sandbox");
        records.insert("abc123", Arc::new(1));
        records.insert("abd456", Arc::new(2));
        assert_eq!(*records.get("abc").unwrap(), 1);
        assert_eq!(*records.get("abd456").unwrap(), 2);
        assert_eq!(
            records.get("ab").unwrap_err().kind(),
            crated_core::Kind::InvalidArgument
        );
        assert!(records.get("x").unwrap_err().is_not_found());
    }

    #[test]
    fn names_are_held_until_released() {
        let names = Names::default();
        names.reserve("web_default_uid_0", "a").unwrap();
        names.reserve("web_default_uid_0", "a").unwrap();
        let err = names.reserve("web_default_uid_0", "b").unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        names.release("web_default_uid_0", "b");
        assert!(names.reserve("web_default_uid_0", "b").is_err());
        names.release("web_default_uid_0", "a");
        names.reserve("web_default_uid_0", "b").unwrap();
        assert_eq!(new_id().unwrap().len(), 64);
    }
}
