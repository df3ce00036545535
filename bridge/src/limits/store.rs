//! The bounded map under single-use `jti`s and rate-limit buckets: fixed-size hashed keys, an
//! expiry per entry, and a hard bound that refuses a new key rather than evicting a live one.
//!
//! A cache with an admission or eviction policy is the wrong tool here: forgetting a used `jti`
//! lets it be replayed, and forgetting a spent bucket hands its caller a full burst again. So an
//! entry leaves only when it expires, which is when forgetting it changes no answer (the token can
//! no longer be presented; the bucket has refilled). One `Mutex` per store is enough: the critical
//! section is a hash lookup and a tree update, well under a microsecond, next to the tens of
//! microseconds of the signature check every exchange has already paid.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

/// A store key: 32 bytes whatever the size of the claim it came from.
pub type Key = [u8; 32];

/// The key of `value` in `scope` (a trust entry's name, `target`, `address`): SHA-256 over both,
/// each prefixed by its length, so that no two pairs share a key (`gh` + `xj` is not `ghx` + `j`).
pub fn key(scope: &str, value: &[u8]) -> Key {
    crate::digest::sha256_parts(&[scope.as_bytes(), value])
}

/// Milliseconds since the epoch (0 before it): the stores' clock.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every entry is live: the first of them expires at `frees_at` (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    frees_at: u64,
}

impl Full {
    /// How long from `now` (milliseconds) until an entry leaves.
    pub fn retry_after(self, now: u64) -> Duration {
        Duration::from_millis(self.frees_at.saturating_sub(now))
    }
}

/// At most `capacity` live entries, each with an expiry in milliseconds; an entry is live while
/// `now < expiry`.
pub struct Store<V> {
    capacity: usize,
    entries: HashMap<Key, (V, u64)>,
    /// The same entries, by expiry, so expired ones are found without a scan.
    by_expiry: BTreeSet<(u64, Key)>,
}

impl<V> Store<V> {
    /// An empty store holding at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Store {
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Drops the entries expired at `now`. Every operation of the stores' users starts with it,
    /// so memory holds only live entries and a full store is full of live ones.
    pub fn purge(&mut self, now: u64) {
        while let Some(&(expiry, key)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&key);
        }
    }

    /// Whether `key` is in the store.
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// `Some(Full)` when no new key fits.
    pub fn full(&self) -> Option<Full> {
        if self.entries.len() < self.capacity {
            return None;
        }
        Some(Full {
            frees_at: self.by_expiry.first().map_or(0, |(expiry, _)| *expiry),
        })
    }

    /// Adds `key`, or refuses when the store is full. The caller has checked it is not there.
    pub fn insert(&mut self, key: Key, value: V, expiry: u64) -> Result<(), Full> {
        if let Some(full) = self.full() {
            return Err(full);
        }
        self.by_expiry.insert((expiry, key));
        if let Some((_, old)) = self.entries.insert(key, (value, expiry)) {
            self.by_expiry.remove(&(old, key));
        }
        Ok(())
    }

    /// Applies `f` to the entry under `key`, if there is one; `f` returns its answer and the
    /// entry's new expiry.
    pub fn update<R>(&mut self, key: &Key, f: impl FnOnce(&mut V) -> (R, u64)) -> Option<R> {
        let (value, expiry) = self.entries.get_mut(key)?;
        let (answer, new) = f(value);
        if new != *expiry {
            self.by_expiry.remove(&(*expiry, *key));
            self.by_expiry.insert((new, *key));
            *expiry = new;
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_size_and_unambiguous() {
        assert_ne!(key("gh", b"xj"), key("ghx", b"j"));
        assert_ne!(key("", b"ab"), key("a", b"b"));
        assert_eq!(key("gh", b"j"), key("gh", b"j"));
        let long = vec![b'x'; 1024];
        assert_eq!(key("gh", &long).len(), 32);
    }

    #[test]
    fn a_full_store_refuses_until_an_entry_expires_and_updates_move_expiry() {
        let mut store: Store<u32> = Store::new(2);
        let (a, b, c) = (key("t", b"a"), key("t", b"b"), key("t", b"c"));
        store.insert(a, 1, 100).unwrap();
        store.insert(b, 2, 200).unwrap();
        assert_eq!(
            store.insert(c, 3, 300).unwrap_err().retry_after(40),
            Duration::from_millis(60)
        );
        // `a` lives on to 250 now: `b` is the first to go.
        assert_eq!(store.update(&a, |v| (*v, 250)), Some(1));
        assert_eq!(store.update(&c, |v| (*v, 1)), None);
        store.purge(199);
        assert!(store.contains(&a) && store.contains(&b));
        assert!(store.insert(c, 3, 300).is_err());
        store.purge(200);
        assert!(!store.contains(&b));
        store.insert(c, 3, 300).unwrap();
        store.purge(260);
        assert!(!store.contains(&a) && store.contains(&c));
        assert_eq!(store.full(), None);
    }
}
