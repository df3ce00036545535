//! Rate limits, single-use `jti`s, and the budget of failed validations per client address.
//!
//! Rooms: `store` (the bounded map they all keep their state in, keyed by hash), `replay`
//! (single use), `address` (failed validations per client address); the token buckets per caller
//! and per trust entry are here. All take time as a parameter so tests are exact.
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
pub use replay::{ReplayGuard, ReplayRefusal};
use store::{Store, key, millis};

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

/// Rate limit per caller (trust entry + subject), or per target.
pub struct RateLimiter {
    rate: RateLimit,
    buckets: Mutex<Store<Bucket>>,
}

impl RateLimiter {
    /// A limiter at `rate`.
    pub fn new(rate: RateLimit) -> Self {
        Self::with_capacity(rate, MAX_TRACKED_CALLERS)
    }

    /// A limiter at `rate` holding at most `capacity` buckets that have not refilled.
    pub fn with_capacity(rate: RateLimit, capacity: usize) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(Store::new(capacity)),
        }
    }

    /// Admits one request from `(trust, subject)` at `now`, or says how long to wait.
    pub fn check(&self, trust: &str, subject: &str, now: SystemTime) -> Result<(), Duration> {
        take(
            &self.buckets,
            &self.rate,
            &key(trust, subject.as_bytes()),
            now,
        )
    }
}

/// Why a partner's request was refused by its trust entry's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerRefusal {
    /// Over `rate_limit`: retry after this long.
    Rate(Duration),
    /// `max_concurrent` exchanges already in flight.
    Busy,
}

/// The limits of one trust entry, shared by all its callers: a token bucket and a cap on
/// exchanges in flight. One partner's burst spends only its own budget.
pub struct PartnerLimit {
    rate: Option<(RateLimit, Mutex<Bucket>)>,
    slots: Option<(usize, Arc<tokio::sync::Semaphore>)>,
}

impl PartnerLimit {
    /// The limits, or `None` when neither is set.
    pub fn new(rate: Option<RateLimit>, max_concurrent: Option<usize>) -> Option<Self> {
        if rate.is_none() && max_concurrent.is_none() {
            return None;
        }
        Some(PartnerLimit {
            rate: rate.map(|r| {
                let full = Bucket {
                    tokens: f64::from(r.burst),
                    at: f64::NEG_INFINITY,
                };
                (r, Mutex::new(full))
            }),
            slots: max_concurrent.map(|n| (n, Arc::new(tokio::sync::Semaphore::new(n)))),
        })
    }

    /// Whether these are the limits `rate` and `max_concurrent` describe (a reload keeps the
    /// state of unchanged limits).
    pub fn is(&self, rate: Option<RateLimit>, max_concurrent: Option<usize>) -> bool {
        self.rate.as_ref().map(|(r, _)| *r) == rate
            && self.slots.as_ref().map(|(n, _)| *n) == max_concurrent
    }

    /// Admits one exchange at `now`. The permit, when there is a cap, must be held until the
    /// exchange ends.
    pub fn admit(
        &self,
        now: SystemTime,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, PartnerRefusal> {
        let permit = match &self.slots {
            Some((_, slots)) => Some(
                Arc::clone(slots)
                    .try_acquire_owned()
                    .map_err(|_| PartnerRefusal::Busy)?,
            ),
            None => None,
        };
        if let Some((rate, bucket)) = &self.rate {
            let now = seconds(now);
            let mut b = bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if b.at == f64::NEG_INFINITY {
                b.at = now;
            }
            b.take(now, rate).map_err(PartnerRefusal::Rate)?;
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + secs)
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("gh", "alice", at(0.0)).is_ok());
        }
        let wait = limiter.check("gh", "alice", at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Another caller has its own bucket.
        assert!(limiter.check("gh", "bob", at(0.0)).is_ok());
        // Half a second later one token is back.
        assert!(limiter.check("gh", "alice", at(0.5)).is_ok());
        assert!(limiter.check("gh", "alice", at(0.5)).is_err());
    }

    #[test]
    fn partner_limit_shares_one_bucket_and_caps_in_flight() {
        let rate = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let limit = PartnerLimit::new(Some(rate), Some(1)).unwrap();
        let first = limit.admit(at(0.0)).unwrap();
        // One in flight: the next is refused without spending a token.
        assert_eq!(limit.admit(at(0.0)).unwrap_err(), PartnerRefusal::Busy);
        drop(first);
        assert!(limit.admit(at(0.0)).is_ok());
        // The burst of 2 is spent; the refusal says when to come back.
        match limit.admit(at(0.0)) {
            Err(PartnerRefusal::Rate(wait)) => assert!((wait.as_secs_f64() - 1.0).abs() < 0.01),
            other => panic!("{other:?}"),
        }
        assert!(limit.admit(at(1.0)).is_ok());
        assert!(limit.is(Some(rate), Some(1)));
        assert!(!limit.is(Some(rate), Some(2)));
        assert!(PartnerLimit::new(None, None).is_none());
    }

    #[test]
    fn a_full_rate_limiter_refuses_new_callers_and_forgets_only_full_buckets() {
        let rate = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let limiter = RateLimiter::with_capacity(rate, 2);
        assert!(limiter.check("gh", "alice", at(0.0)).is_ok());
        assert!(limiter.check("gh", "bob", at(0.0)).is_ok());
        // Two live buckets: a third caller would need to evict one, which would hand that
        // caller a full bucket again. Refused until alice's bucket is full (1 s).
        let wait = limiter.check("gh", "carol", at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
        // Known callers keep being served from their own buckets.
        assert!(limiter.check("gh", "alice", at(0.5)).is_ok());
        assert!(limiter.check("gh", "alice", at(0.5)).is_err());
        // bob's bucket is full again at 1 s: forgetting it changes nothing, so carol gets it.
        assert!(limiter.check("gh", "carol", at(1.0)).is_ok());
        // alice was not forgotten: her bucket has refilled to one token, not a full burst.
        assert!(limiter.check("gh", "alice", at(1.0)).is_ok());
        assert!(limiter.check("gh", "alice", at(1.0)).is_err());
    }
}
