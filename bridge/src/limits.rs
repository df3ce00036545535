//! Per-caller rate limits and single-use `jti`s.
//!
//! Both are bounded in memory: state lives in `moka` caches that evict idle callers and expired
//! `jti`s. Both take time as a parameter so tests are exact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use moka::Expiry;

use crate::config::RateLimit;

/// Most callers tracked at once; idle ones are evicted first.
const MAX_TRACKED_CALLERS: u64 = 1_000_000;
/// A caller idle this long starts again with a full bucket.
const CALLER_IDLE: Duration = Duration::from_secs(600);
/// Most `jti`s remembered. Past this, the oldest are evicted and could be replayed: sized for
/// 1,000 single-use tokens a second living 15 minutes.
const MAX_REMEMBERED_JTIS: u64 = 1_000_000;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: f64,
}

impl Bucket {
    /// Takes one token at time `now` (seconds); on refusal, how long until one is available.
    fn take(&mut self, now: f64, rate: &RateLimit) -> Result<(), Duration> {
        let burst = f64::from(rate.burst);
        self.tokens = (self.tokens + (now - self.at).max(0.0) * rate.per_second).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / rate.per_second).max(0.001),
            ))
        }
    }
}

/// Rate limit per caller (trust entry + subject).
pub struct RateLimiter {
    rate: RateLimit,
    buckets: moka::sync::Cache<(String, String), Arc<Mutex<Bucket>>>,
}

impl RateLimiter {
    /// A limiter at `rate`.
    pub fn new(rate: RateLimit) -> Self {
        RateLimiter {
            rate,
            buckets: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_CALLERS)
                .time_to_idle(CALLER_IDLE)
                .build(),
        }
    }

    /// Admits one request from `(trust, subject)` at `now`, or says how long to wait.
    pub fn check(&self, trust: &str, subject: &str, now: SystemTime) -> Result<(), Duration> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let burst = f64::from(self.rate.burst);
        let bucket = self
            .buckets
            .get_with((trust.to_owned(), subject.to_owned()), || {
                Arc::new(Mutex::new(Bucket {
                    tokens: burst,
                    at: now,
                }))
            });
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        b.take(now, &self.rate)
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
            let now = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
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

struct UntilExpiry;

impl Expiry<(String, String), Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &(String, String),
        ttl: &Duration,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

/// Remembers `jti`s until their tokens expire, for issuers with `replay: reject`.
pub struct ReplayGuard {
    seen: moka::sync::Cache<(String, String), Duration>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard {
            seen: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED_JTIS)
                .expire_after(UntilExpiry)
                .build(),
        }
    }
}

impl ReplayGuard {
    /// Records `jti` of trust entry `trust`, remembered until `expires_at` (+ `leeway`); false when
    /// it was already recorded.
    pub fn first_use(
        &self,
        trust: &str,
        jti: &str,
        expires_at: SystemTime,
        leeway: Duration,
        now: SystemTime,
    ) -> bool {
        let ttl = expires_at.duration_since(now).unwrap_or_default() + leeway;
        let entry = self
            .seen
            .entry((trust.to_owned(), jti.to_owned()))
            .or_insert(ttl);
        entry.is_fresh()
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
    fn replayed_jti_is_refused_per_issuer() {
        let guard = ReplayGuard::default();
        let exp = at(60.0);
        assert!(guard.first_use("gh", "j1", exp, Duration::ZERO, at(0.0)));
        assert!(!guard.first_use("gh", "j1", exp, Duration::ZERO, at(1.0)));
        assert!(guard.first_use("other", "j1", exp, Duration::ZERO, at(1.0)));
    }
}
