//! The account files (`/etc/passwd`, `/etc/group`) of the images containers
//! are created from, kept per image root filesystem.
//!
//! A container's user is looked up in its image's account files, which
//! takes the image mounted: a view snapshot, a mount, the reads, an
//! unmount and the view's removal, with the metadata writes of each — about
//! half of a `CreateContainer`. An image's committed layers never change,
//! so the files one container's create read serve every later container of
//! that image (a node starts many of few images). The key is the chain id:
//! it names the layers' content, whichever image record or snapshotter
//! holds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crated_client::spec::Accounts;

/// Files larger than this (together) are not kept: any real user database
/// is far smaller, and a hostile image's 4 MiB files must not pin memory.
const MAX_KEPT_BYTES: usize = 64 << 10;

/// How many images' files are kept at most (so at most 16 MiB).
const MAX_IMAGES: usize = 256;

/// Account files by chain id.
#[derive(Default)]
pub(crate) struct AccountsCache {
    by_chain: Mutex<HashMap<String, Arc<Accounts>>>,
}

impl AccountsCache {
    /// The files read before from the image whose layers make `chain_id`.
    pub(crate) fn get(&self, chain_id: &str) -> Option<Arc<Accounts>> {
        self.by_chain.lock().ok()?.get(chain_id).cloned()
    }

    /// Keeps `accounts`, read from the image whose layers make `chain_id`.
    pub(crate) fn put(&self, chain_id: &str, accounts: Accounts) {
        if chain_id.is_empty() || accounts.len() > MAX_KEPT_BYTES {
            return;
        }
        let Ok(mut map) = self.by_chain.lock() else {
            return;
        };
        if map.len() >= MAX_IMAGES && !map.contains_key(chain_id) {
            // Any one goes: a removed image's entry is as likely as a live
            // one's, and a miss costs one mount.
            if let Some(evicted) = map.keys().next().cloned() {
                map.remove(&evicted);
            }
        }
        map.insert(chain_id.to_owned(), Arc::new(accounts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(passwd: &str) -> Accounts {
        Accounts {
            passwd: passwd.to_owned(),
            group: String::new(),
        }
    }

    #[test]
    fn kept_per_chain_id_and_bounded() {
        let cache = AccountsCache::default();
        assert!(cache.get("sha256:a").is_none());
        cache.put("sha256:a", accounts("root:x:0:0::/:/bin/sh\n"));
        assert_eq!(
            cache.get("sha256:a").as_deref(),
            Some(&accounts("root:x:0:0::/:/bin/sh\n"))
        );
        assert!(cache.get("sha256:b").is_none());
        // Too large to keep: asked again next time.
        cache.put("sha256:big", accounts(&"a".repeat(MAX_KEPT_BYTES + 1)));
        assert!(cache.get("sha256:big").is_none());
        // No key, nothing kept.
        cache.put("", accounts("x"));
        assert!(cache.get("").is_none());
        for n in 0..MAX_IMAGES + 10 {
            cache.put(&format!("sha256:{n}"), accounts("x"));
        }
        let kept = cache.by_chain.lock().unwrap().len();
        assert_eq!(kept, MAX_IMAGES);
        // The latest one is always kept.
        assert!(cache.get(&format!("sha256:{}", MAX_IMAGES + 9)).is_some());
    }
}
