//! The credential cache: one upstream call per cloud session, shared by every caller that maps to it.
//!
//! The key is the fully rendered provider request, held as its SHA-256 (32 bytes instead of the
//! request's own few hundred, for every cached credential). An entry is served until shortly before its
//! credential expires (for AWS never with less than 15 minutes left, because botocore refreshes
//! anything shorter on every call); in the last part of that window a hit starts a background
//! refresh, so a hot key never waits. Concurrent misses for one key share one upstream call, which
//! runs in its own task so a caller that hangs up does not cancel it for the others. When the
//! upstream fails, an entry that is past its serving window but still valid keeps being served
//! (reported as `stale`). Errors are never cached.
//!
//! The timing decisions are pure functions of the entry and `now` ([`Timing`], [`Timing::phase`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use moka::Expiry;
use stsbridge_providers::{
    Credential, Issued, ProviderError, ProviderKind, ProviderRequest, Providers, UpstreamInfo,
};
use tracing::Instrument as _;

use crate::breaker::Breaker;
use crate::token::unix_seconds;
use crate::upstream::Upstream;

/// botocore refreshes credentials with less than this left, so AWS entries are never served with
/// less (when the session is long enough to allow it).
pub const AWS_MIN_REMAINING: Duration = stsbridge_providers::aws::SDK_REFRESH_MARGIN;
/// A stale entry is not served in its last seconds: the caller could not use it anyway.
const STALE_FLOOR: Duration = Duration::from_secs(30);
/// After a failed refresh, wait this long before trying again from the hot path.
const REFRESH_RETRY: Duration = Duration::from_secs(10);

/// What the cache is asked for: the rendered provider request (kept only while its upstream call
/// runs).
pub type Key = Arc<ProviderRequest>;

/// The key entries are held by: SHA-256 of the rendered request ([`crate::digest::sha256_of_hash`]).
type Id = [u8; 32];

/// How a request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEvent {
    /// From the cache.
    Hit,
    /// This request made the upstream call.
    Miss,
    /// Another request's upstream call served this one too.
    Coalesced,
    /// The upstream failed; a still-valid older credential was served.
    Stale,
}

impl CacheEvent {
    /// Name for audit events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheEvent::Hit => "hit",
            CacheEvent::Miss => "miss",
            CacheEvent::Coalesced => "coalesced",
            CacheEvent::Stale => "stale",
        }
    }
}

/// When an entry is fresh, due for refresh, only good as a fallback, and gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From here on a hit starts a background refresh.
    pub refresh_at: SystemTime,
    /// Served normally until here.
    pub fresh_until: SystemTime,
    /// Served as a fallback (upstream failing) until here; evicted after.
    pub usable_until: SystemTime,
}

/// Where an entry stands at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serve it.
    Fresh,
    /// Serve it and refresh in the background.
    RefreshAhead,
    /// Fetch a new one; serve this only if that fails.
    Stale,
    /// Unusable.
    Dead,
}

impl Timing {
    /// The timing of a credential fetched at `fetched_at` that expires at `expires_at`.
    pub fn new(provider: ProviderKind, fetched_at: SystemTime, expires_at: SystemTime) -> Timing {
        let lifetime = expires_at.duration_since(fetched_at).unwrap_or_default();
        // Keep AWS's 15 minutes where the session leaves at least a minute of serving time after
        // them; otherwise keep the last fifth of the lifetime.
        let margin = if provider == ProviderKind::Aws
            && lifetime >= AWS_MIN_REMAINING + Duration::from_secs(60)
        {
            AWS_MIN_REMAINING
        } else {
            lifetime / 5
        };
        let fresh_until = expires_at - margin;
        let fresh_window = fresh_until.duration_since(fetched_at).unwrap_or_default();
        let refresh_at = fresh_until - fresh_window / 5;
        let usable_until = expires_at - STALE_FLOOR.min(lifetime / 10);
        Timing {
            refresh_at,
            fresh_until,
            usable_until,
        }
    }

    /// Where an entry with this timing stands at `now`.
    pub fn phase(&self, now: SystemTime) -> Phase {
        if now < self.refresh_at {
            Phase::Fresh
        } else if now < self.fresh_until {
            Phase::RefreshAhead
        } else if now < self.usable_until {
            Phase::Stale
        } else {
            Phase::Dead
        }
    }
}

/// A cached credential.
#[derive(Debug)]
pub struct Entry {
    /// The target it was issued for (shared with the compiled target for AWS).
    target: Arc<str>,
    /// The credential.
    pub credential: Credential,
    /// The upstream call that produced it.
    pub upstream: UpstreamInfo,
    /// When it is served.
    pub timing: Timing,
    /// How long the cache keeps it (to `usable_until`, from insertion), in milliseconds (a
    /// credential lives hours at most).
    ttl_ms: u32,
    /// Unix seconds of the last refresh attempt that failed (0: none).
    refresh_failed_at: AtomicU64,
    /// The reference token (`format: reference`) that stands for this credential, made the first
    /// time one is asked for; only a token (never an AWS credential) can have one.
    pub reference: Option<Box<tokio::sync::OnceCell<secrecy::SecretString>>>,
}

impl Entry {
    fn new(issued: Issued, request: &ProviderRequest, fetched_at: SystemTime) -> Entry {
        let timing = Timing::new(request.kind(), fetched_at, issued.credential.expires_at());
        let ttl = timing
            .usable_until
            .duration_since(fetched_at)
            .unwrap_or_default();
        let reference = matches!(issued.credential, Credential::Token(_)).then(Box::default);
        Entry {
            target: request.shared_target(),
            credential: issued.credential,
            upstream: issued.upstream,
            timing,
            ttl_ms: u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX),
            refresh_failed_at: AtomicU64::new(0),
            reference,
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(u64::from(self.ttl_ms))
    }

    fn recently_failed(&self, now: SystemTime) -> bool {
        let failed = self.refresh_failed_at.load(Ordering::Relaxed);
        failed != 0 && unix_seconds(now).saturating_sub(failed) < REFRESH_RETRY.as_secs()
    }
}

struct EntryExpiry;

impl Expiry<Id, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _: &Id,
        value: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
    fn expire_after_update(
        &self,
        _: &Id,
        value: &Arc<Entry>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

type FlightResult = Result<Arc<Entry>, Arc<ProviderError>>;
type Flight = Shared<BoxFuture<'static, FlightResult>>;

/// The cache, in front of the [`Upstream`] it asks on a miss.
pub struct CredentialCache {
    entries: moka::future::Cache<Id, Arc<Entry>>,
    inflight: Mutex<HashMap<Id, Flight>>,
    upstream: Arc<Upstream>,
}

impl CredentialCache {
    /// A cache of at most `max_entries` credentials over `providers` (default breakers, no
    /// metrics).
    pub fn new(max_entries: u64, providers: Providers) -> Arc<Self> {
        Self::over(
            max_entries,
            Arc::new(Upstream::new(providers, None, Breaker::default)),
        )
    }

    /// A cache of at most `max_entries` credentials in front of `upstream`.
    pub fn over(max_entries: u64, upstream: Arc<Upstream>) -> Arc<Self> {
        Arc::new(CredentialCache {
            entries: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(EntryExpiry)
                .build(),
            inflight: Mutex::new(HashMap::new()),
            upstream,
        })
    }

    /// The credential for `key` at time `now`: cached, or fetched once however many callers ask.
    ///
    /// Fails with the provider's error (shared by every coalesced caller) when there is no usable
    /// cached credential and the upstream call fails.
    pub async fn get(
        self: &Arc<Self>,
        key: Key,
        now: SystemTime,
    ) -> Result<(Arc<Entry>, CacheEvent), Arc<ProviderError>> {
        let id = crate::digest::sha256_of_hash(&*key);
        if let Some(entry) = self.entries.get(&id).await {
            match entry.timing.phase(now) {
                Phase::Fresh => return Ok((entry, CacheEvent::Hit)),
                Phase::RefreshAhead => {
                    if !entry.recently_failed(now) {
                        self.refresh_in_background(id, key, &entry, now);
                    }
                    return Ok((entry, CacheEvent::Hit));
                }
                Phase::Stale => {
                    if entry.recently_failed(now) {
                        return Ok((entry, CacheEvent::Stale));
                    }
                    let (flight, leader) = self.flight(id, key, now);
                    return match flight.await {
                        Ok(fresh) => Ok((
                            fresh,
                            if leader {
                                CacheEvent::Miss
                            } else {
                                CacheEvent::Coalesced
                            },
                        )),
                        Err(e) => {
                            entry
                                .refresh_failed_at
                                .store(unix_seconds(now), Ordering::Relaxed);
                            tracing::warn!(target_name = %entry.target, "upstream failed ({e}); serving a cached credential that is still valid");
                            Ok((entry, CacheEvent::Stale))
                        }
                    };
                }
                Phase::Dead => {}
            }
        }
        let (flight, leader) = self.flight(id, key, now);
        let entry = flight.await?;
        Ok((
            entry,
            if leader {
                CacheEvent::Miss
            } else {
                CacheEvent::Coalesced
            },
        ))
    }

    /// Number of cached entries (approximate, as moka counts).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn refresh_in_background(
        self: &Arc<Self>,
        id: Id,
        key: Key,
        entry: &Arc<Entry>,
        now: SystemTime,
    ) {
        let (flight, leader) = self.flight(id, key, now);
        if leader {
            let entry = Arc::clone(entry);
            tokio::spawn(async move {
                if let Err(e) = flight.await {
                    entry
                        .refresh_failed_at
                        .store(unix_seconds(now), Ordering::Relaxed);
                    tracing::warn!(
                        "refresh ahead failed ({e}); the cached credential stays in use"
                    );
                }
            });
        }
    }

    /// The in-flight upstream call for `key`, started if there is none; `true` when this call
    /// started it.
    fn flight(self: &Arc<Self>, id: Id, key: Key, now: SystemTime) -> (Flight, bool) {
        let mut inflight = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = inflight.get(&id) {
            return (f.clone(), false);
        }
        let me = Arc::clone(self);
        let kind = key.kind();
        // The lock is held until the flight is registered, so the task's removal below always
        // comes after its insertion. The task runs in the span of the call that started it (the
        // exchange's `upstream`), so its spans (`mint`, the cloud calls) stay in that trace.
        let task = tokio::spawn(
            async move {
                let result = me.fetch(&key, now).await;
                // The request is dropped here: the entry is held by its digest alone.
                drop(key);
                if let Ok(entry) = &result {
                    me.entries.insert(id, Arc::clone(entry)).await;
                }
                me.inflight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                result
            }
            .in_current_span(),
        );
        let flight = async move {
            task.await.unwrap_or_else(|_| {
                Err(Arc::new(ProviderError::Unavailable {
                    provider: kind,
                    detail: "the upstream call was aborted".into(),
                }))
            })
        }
        .boxed()
        .shared();
        inflight.insert(id, flight.clone());
        (flight, true)
    }

    /// Drops every cached credential of `target` (a revoked target): returns how many.
    pub async fn drop_target(&self, target: &str) -> usize {
        let keys: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, entry)| &*entry.target == target)
            .map(|(id, _)| *id)
            .collect();
        for k in &keys {
            self.entries.invalidate(k).await;
        }
        keys.len()
    }

    async fn fetch(&self, key: &ProviderRequest, now: SystemTime) -> FlightResult {
        let issued = self.upstream.fetch(key, now).await.map_err(Arc::new)?;
        Ok(Arc::new(Entry::new(issued, key, now)))
    }
}

#[cfg(test)]
mod tests;
