//! Single use of `jti`s, for trust entries with `replay: reject`.
//!
//! A used `jti` is remembered until its token can no longer be presented (`exp` plus the trust
//! entry's leeway). The store is bounded (`limits.replay_store_entries`) and never forgets a live
//! entry: when it is full, a new single-use token is refused (503 with `Retry-After`) until the
//! first entry expires, because admitting it unrecorded would let it be replayed.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::store::{Key, Store, key, millis};

/// When a used `jti` can be forgotten: once its token can no longer be presented. Validation
/// accepts a token while its whole second `exp + leeway` lasts, so one second past that.
pub fn forget_at(expires_at: SystemTime, leeway: Duration) -> SystemTime {
    expires_at
        .checked_add(leeway)
        .and_then(|t| t.checked_add(Duration::from_secs(1)))
        // Past the clock's range: remembered as long as anything can be.
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_millis(u64::MAX))
}

/// Why a `jti` was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// It was already used.
    Replayed,
    /// The store is full of live entries; the first leaves after `retry_after`.
    Full {
        /// When to try again.
        retry_after: Duration,
    },
}

/// The `jti`s used so far, by trust entry, while their tokens live.
pub struct ReplayGuard {
    seen: Mutex<Store<()>>,
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` live `jti`s.
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            seen: Mutex::new(Store::new(capacity)),
        }
    }

    /// Records `jti` of trust entry `trust` at `now`, remembered while a token expiring at
    /// `expires_at` is accepted (`leeway` past it). Refuses a `jti` already recorded (even when
    /// the store is full) and, when the store is full of live entries, a new one.
    pub fn first_use(
        &self,
        trust: &str,
        jti: &str,
        expires_at: SystemTime,
        leeway: Duration,
        now: SystemTime,
    ) -> Result<(), ReplayRefusal> {
        self.record(
            &key(trust, jti.as_bytes()),
            forget_at(expires_at, leeway),
            now,
        )
    }

    /// Records the `jti` whose key is `key` at `now`, remembered until `forget_at`, under the
    /// same rules as [`first_use`](Self::first_use).
    pub fn record(
        &self,
        key: &Key,
        forget_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), ReplayRefusal> {
        let (key, forget_at) = (*key, millis(forget_at));
        let now = millis(now);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.purge(now);
        if seen.contains(&key) {
            return Err(ReplayRefusal::Replayed);
        }
        seen.insert(key, (), forget_at)
            .map_err(|full| ReplayRefusal::Full {
                retry_after: full.retry_after(now),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + secs)
    }

    #[test]
    fn replayed_jti_is_refused_per_issuer() {
        let guard = ReplayGuard::new(10);
        let exp = at(60.0);
        assert_eq!(
            guard.first_use("gh", "j1", exp, Duration::ZERO, at(0.0)),
            Ok(())
        );
        assert_eq!(
            guard.first_use("gh", "j1", exp, Duration::ZERO, at(1.0)),
            Err(ReplayRefusal::Replayed)
        );
        assert_eq!(
            guard.first_use("other", "j1", exp, Duration::ZERO, at(1.0)),
            Ok(())
        );
        // Trust name and jti are length-prefixed in the key: "gh" + "xj" is not "ghx" + "j".
        assert_eq!(
            guard.first_use("gh", "xj", exp, Duration::ZERO, at(1.0)),
            Ok(())
        );
        assert_eq!(
            guard.first_use("ghx", "j", exp, Duration::ZERO, at(1.0)),
            Ok(())
        );
    }

    #[test]
    fn a_full_replay_store_refuses_new_jtis_until_an_entry_expires() {
        let guard = ReplayGuard::new(2);
        let leeway = Duration::from_secs(5);
        // Usable until 60 s + 5 s of leeway, so remembered until the second after that.
        assert_eq!(
            guard.first_use("gh", "j1", at(60.0), leeway, at(0.0)),
            Ok(())
        );
        assert_eq!(
            guard.first_use("gh", "j2", at(90.0), leeway, at(0.0)),
            Ok(())
        );
        // Full of live entries: a new jti is refused, not recorded over an old one, and told
        // when the first entry leaves.
        assert_eq!(
            guard.first_use("gh", "j3", at(90.0), leeway, at(10.0)),
            Err(ReplayRefusal::Full {
                retry_after: Duration::from_secs(56)
            })
        );
        // Both live entries are still remembered: replays are refused even while full.
        for jti in ["j1", "j2"] {
            assert_eq!(
                guard.first_use("gh", jti, at(90.0), leeway, at(10.0)),
                Err(ReplayRefusal::Replayed)
            );
        }
        // Still refused at the last second j1 can be used (60 + 5)...
        assert!(matches!(
            guard.first_use("gh", "j3", at(90.0), leeway, at(65.5)),
            Err(ReplayRefusal::Full { .. })
        ));
        // ...and once it can no longer be presented its room is free.
        assert_eq!(
            guard.first_use("gh", "j3", at(90.0), leeway, at(66.0)),
            Ok(())
        );
        assert_eq!(
            guard.first_use("gh", "j3", at(90.0), leeway, at(66.0)),
            Err(ReplayRefusal::Replayed)
        );
        assert_eq!(
            guard.first_use("gh", "j2", at(90.0), leeway, at(66.0)),
            Err(ReplayRefusal::Replayed)
        );
    }
}
