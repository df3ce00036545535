//! Rate limits, single-use `jti`s, and the budget of failed validations per client address.
//!
//! Rooms: `store` (the bounded map they all keep their state in, keyed by hash), `replay`
//! (single use), `address` (failed validations per client address); the token buckets (per
//! caller, per target, per trust entry: one replica's own, which `shared::memory` holds) and a
//! trust entry's cap on exchanges in flight are here. All take time as a parameter so tests are
//! exact.
//!
//! Bounded state fails closed: nothing here forgets a live entry to make room. A bucket leaves the
//! store once it has refilled, when a fresh one would be identical; until then a new caller that
//! does not fit is refused (429), and a single-use token that does not fit is refused (503).

mod address;
mod replay;
mod store;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use address::{ClientPrefix, FailedValidations, client_prefix};
pub use replay::{ReplayGuard, ReplayRefusal, forget_at};
pub use store::Key;
use store::{Store, millis};

use crate::config::RateLimit;

/// Most callers (or targets, or client addresses) with a bucket that has not refilled yet. A
/// bucket refills within `burst / rate` seconds of its caller's last request (two seconds when
/// `burst` is left to its default), so a million means a million distinct callers within that
/// time: far past what one replica serves. Past it, new callers are refused until one refills.
const MAX_TRACKED_CALLERS: usize = 1_000_000;

/// Seconds since the epoch, as the buckets count time.
fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: f64,
}

impl Bucket {
    /// A full bucket at time `now` (seconds).
    fn full(now: f64, rate: &RateLimit) -> Self {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Adds what has dripped in since the last call.
    fn refill(&mut self, now: f64, rate: &RateLimit) {
        let burst = f64::from(rate.burst);
        self.tokens = (self.tokens + (now - self.at).max(0.0) * rate.per_second).min(burst);
        self.at = self.at.max(now);
    }

    /// How long until one token is there, or `None` when one is.
    fn wait(&self, rate: &RateLimit) -> Option<Duration> {
        (self.tokens < 1.0)
            .then(|| Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_second).max(0.001)))
    }

    /// Takes one token at time `now` (seconds); on refusal, how long until one is available.
    fn take(&mut self, now: f64, rate: &RateLimit) -> Result<(), Duration> {
        self.refill(now, rate);
        match self.wait(rate) {
            Some(wait) => Err(wait),
            None => {
                self.tokens -= 1.0;
                Ok(())
            }
        }
    }

    /// When it is full again if nothing more is taken, in milliseconds (rounded up, so a bucket
    /// is never dropped from a store before a fresh one would be identical to it).
    fn full_at(&self, rate: &RateLimit) -> u64 {
        let missing = (f64::from(rate.burst) - self.tokens).max(0.0);
        // A float to integer cast saturates: a time past u64 milliseconds is "never".
        ((self.at + missing / rate.per_second) * 1000.0).ceil() as u64
    }
}

/// Takes one token from `key`'s bucket in `buckets`, adding a full bucket for a new key; a new
/// key that does not fit is refused until the first bucket is full again.
fn take(
    buckets: &Mutex<Store<Bucket>>,
    rate: &RateLimit,
    key: &store::Key,
    now: SystemTime,
) -> Result<(), Duration> {
    let (secs, now) = (seconds(now), millis(now));
    let mut buckets = buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    buckets.purge(now);
    if let Some(taken) = buckets.update(key, |b| (b.take(secs, rate), b.full_at(rate))) {
        return taken;
    }
    let mut bucket = Bucket::full(secs, rate);
    bucket.take(secs, rate)?;
    buckets
        .insert(*key, bucket, bucket.full_at(rate))
        .map_err(|full| full.retry_after(now).max(Duration::from_millis(1)))
}

/// Token buckets by key, each taken at the rate its caller names (the key carries the rate, so a
/// key always meets the same one): per caller, per target, or per trust entry.
pub struct Buckets {
    buckets: Mutex<Store<Bucket>>,
}

impl Buckets {
    /// Buckets for at most [`MAX_TRACKED_CALLERS`] keys that have not refilled.
    pub fn new() -> Self {
        Self::with_capacity(MAX_TRACKED_CALLERS)
    }

    /// Buckets for at most `capacity` keys that have not refilled.
    pub fn with_capacity(capacity: usize) -> Self {
        Buckets {
            buckets: Mutex::new(Store::new(capacity)),
        }
    }

    /// Takes one token from `key`'s bucket at `rate` at `now`, or says how long to wait (also
    /// when `key` is new and no bucket fits).
    pub fn take(&self, key: &Key, rate: &RateLimit, now: SystemTime) -> Result<(), Duration> {
        take(&self.buckets, rate, key, now)
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self::new()
    }
}

/// A trust entry's `max_concurrent`: exchanges of its callers in flight at once, on this replica.
/// One partner's burst holds only its own slots. (Its `rate_limit` is a bucket like the others.)
pub struct PartnerSlots {
    max: usize,
    slots: Arc<tokio::sync::Semaphore>,
}

impl PartnerSlots {
    /// A cap of `max` exchanges in flight.
    pub fn new(max: usize) -> Self {
        PartnerSlots {
            max,
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
        }
    }

    /// Whether this is the cap `max` describes (a reload keeps the slots of an unchanged cap).
    pub fn is(&self, max: usize) -> bool {
        self.max == max
    }

    /// One slot, held until the exchange ends, or `None` when all are taken.
    pub fn try_acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + secs)
    }

    fn rate(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let buckets = Buckets::new();
        let r = rate(2.0, 3);
        let (alice, bob) = (store::key("gh", b"alice"), store::key("gh", b"bob"));
        for _ in 0..3 {
            assert!(buckets.take(&alice, &r, at(0.0)).is_ok());
        }
        let wait = buckets.take(&alice, &r, at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Another caller has its own bucket.
        assert!(buckets.take(&bob, &r, at(0.0)).is_ok());
        // Half a second later one token is back.
        assert!(buckets.take(&alice, &r, at(0.5)).is_ok());
        assert!(buckets.take(&alice, &r, at(0.5)).is_err());
    }

    #[test]
    fn partner_slots_cap_exchanges_in_flight() {
        let slots = PartnerSlots::new(1);
        let first = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(first);
        assert!(slots.try_acquire().is_some());
        assert!(slots.is(1) && !slots.is(2));
    }

    #[test]
    fn a_full_set_of_buckets_refuses_new_callers_and_forgets_only_full_buckets() {
        let r = rate(1.0, 2);
        let buckets = Buckets::with_capacity(2);
        let [alice, bob, carol] = ["alice", "bob", "carol"].map(|s| store::key("gh", s.as_bytes()));
        assert!(buckets.take(&alice, &r, at(0.0)).is_ok());
        assert!(buckets.take(&bob, &r, at(0.0)).is_ok());
        // Two live buckets: a third caller would need to evict one, which would hand that
        // caller a full bucket again. Refused until alice's bucket is full (1 s).
        let wait = buckets.take(&carol, &r, at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
        // Known callers keep being served from their own buckets.
        assert!(buckets.take(&alice, &r, at(0.5)).is_ok());
        assert!(buckets.take(&alice, &r, at(0.5)).is_err());
        // bob's bucket is full again at 1 s: forgetting it changes nothing, so carol gets it.
        assert!(buckets.take(&carol, &r, at(1.0)).is_ok());
        // alice was not forgotten: her bucket has refilled to one token, not a full burst.
        assert!(buckets.take(&alice, &r, at(1.0)).is_ok());
        assert!(buckets.take(&alice, &r, at(1.0)).is_err());
    }
}
