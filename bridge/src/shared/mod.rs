//! State that must hold across replicas: single use of `jti`s and the rate-limit buckets (per
//! caller, per target, per trust entry), behind one small trait, [`SharedState`].
//!
//! Rooms: `memory` (one replica's own bounded stores: what runs without `shared_state`, and what
//! the Redis store falls back to for rate limits), `redis` (a Redis-protocol server: one script
//! call per exchange). What an exchange needs is one [`Step`] list, applied in order in one call,
//! so an exchange costs at most one round trip whatever it checks.
//!
//! Not here, on purpose: the credential cache (secrets stay in the process) and a trust entry's
//! `max_concurrent` (exchanges in flight are a property of one process).

mod memory;
mod redis;

pub use memory::MemoryState;
pub use redis::{RedisHandle, RedisState, read_password};

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::config::RateLimit;
use crate::limits::Key;

/// What a bucket limits: also the namespace of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// One caller (trust entry + subject): `limits.per_subject`.
    Caller,
    /// All callers of one trust entry: its `rate_limit`.
    Partner,
    /// All callers of one target: `limits.per_target`.
    Target,
}

impl BucketKind {
    /// The name in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketKind::Caller => "caller",
            BucketKind::Partner => "partner",
            BucketKind::Target => "target",
        }
    }
}

/// One check of an admission. Each is keyed by a SHA-256 of its length-prefixed parts, never by
/// the subject or `jti` itself.
#[derive(Debug, Clone)]
pub enum Step {
    /// Take one token from a bucket.
    Take {
        /// What it limits.
        kind: BucketKind,
        /// Its key (which carries the rate: a changed limit starts a fresh bucket).
        key: Key,
        /// Its rate and burst.
        rate: RateLimit,
    },
    /// Record the first use of a `jti`, remembered until `forget_at`.
    FirstUse {
        /// Its key (trust entry + `jti`).
        key: Key,
        /// When its token can no longer be presented.
        forget_at: SystemTime,
    },
}

impl Step {
    /// A bucket of `kind` for `parts` (a trust name and subject, a target name, a trust name).
    pub fn take(kind: BucketKind, parts: &[&str], rate: RateLimit) -> Step {
        let limit = format!("{}/{}", rate.per_second, rate.burst);
        let mut all: Vec<&[u8]> = vec![kind.as_str().as_bytes()];
        all.extend(parts.iter().map(|p| p.as_bytes()));
        all.push(limit.as_bytes());
        Step::Take {
            kind,
            key: crate::digest::sha256_parts(&all),
            rate,
        }
    }

    /// The single use of `jti` of trust entry `trust`, remembered until `forget_at`. The key is
    /// the one a replica's own store has always used (trust name and `jti`, length-prefixed).
    pub fn first_use(trust: &str, jti: &str, forget_at: SystemTime) -> Step {
        Step::FirstUse {
            key: crate::digest::sha256_parts(&[trust.as_bytes(), jti.as_bytes()]),
            forget_at,
        }
    }
}

/// Why an admission stopped: at which step (an index into the list), and why. Steps before it
/// were applied; none after it were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bucket of step `step` is empty (or a new bucket found no room): retry after this long.
    Limited {
        /// The step that refused.
        step: usize,
        /// When a token is back.
        retry_after: Duration,
    },
    /// The `jti` of step `step` was already used.
    Replayed {
        /// The step that refused.
        step: usize,
    },
    /// The `jti` of step `step` cannot be recorded: this replica's store is full of live entries.
    Full {
        /// The step that refused.
        step: usize,
        /// When the first entry leaves.
        retry_after: Duration,
    },
    /// The `jti` of step `step` cannot be recorded: the shared state cannot be reached (or
    /// answered something it should not), and admitting the token unrecorded would let another
    /// replica admit it again.
    Unavailable {
        /// The step that refused.
        step: usize,
        /// When to try again.
        retry_after: Duration,
    },
}

/// Where single use and rate limits are kept.
pub trait SharedState: Send + Sync {
    /// Applies `steps` in order at `now`, stopping at the first that refuses, in one round trip.
    /// On failure: the [`Refusal`] naming the step. An error of the store itself never admits a
    /// single-use token ([`Refusal::Unavailable`]); rate limits then use this replica's own
    /// buckets.
    fn admit<'a>(
        &'a self,
        steps: &'a [Step],
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), Refusal>>;

    /// `None` while the store works as configured, else why not (`/readyz`: `degraded`).
    fn degraded(&self) -> Option<&'static str>;

    /// What the store is (`memory`, `redis`), for `/readyz`.
    fn backend(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_kinds_parts_and_rates() {
        let rate = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let key = |step: Step| match step {
            Step::Take { key, .. } | Step::FirstUse { key, .. } => key,
        };
        let caller = key(Step::take(BucketKind::Caller, &["gh", "alice"], rate));
        assert_eq!(
            caller,
            key(Step::take(BucketKind::Caller, &["gh", "alice"], rate))
        );
        for other in [
            Step::take(BucketKind::Partner, &["gh", "alice"], rate),
            Step::take(BucketKind::Caller, &["gha", "lice"], rate),
            Step::take(
                BucketKind::Caller,
                &["gh", "alice"],
                RateLimit { burst: 3, ..rate },
            ),
        ] {
            assert_ne!(caller, key(other));
        }
        // A jti's key is the one the replica's own store has always used.
        assert_eq!(
            key(Step::first_use("gh", "j1", SystemTime::UNIX_EPOCH)),
            crate::digest::sha256_parts(&[b"gh", b"j1"])
        );
    }
}
