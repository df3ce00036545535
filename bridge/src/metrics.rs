//! Prometheus metrics (text format 0.0.4 at `/metrics`), with the names of the design. Labels are
//! bounded: provider and target names from the mappings (an unknown target is counted as
//! `unknown`), never subjects or issuers' claims.

use crate::cache::CacheEvent;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets, in seconds: a cache hit is well under a millisecond, an STS call up to seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric stsbridge exports.
pub struct Metrics {
    registry: Registry,
    /// `stsbridge_exchanges_total{outcome,provider,target}`.
    pub exchanges: IntCounterVec,
    /// `stsbridge_exchange_duration_seconds`.
    pub exchange_duration: Histogram,
    /// `stsbridge_upstream_duration_seconds{provider}`.
    pub upstream_duration: HistogramVec,
    /// `stsbridge_cache_events_total{event}`.
    pub cache_events: IntCounterVec,
    /// Its four series, resolved once (hit, miss, coalesced, stale): no label hashing per request.
    cache_event_counters: [IntCounter; 4],
    /// `stsbridge_jwks_refresh_total{issuer,outcome}` (issuer = trust entry name).
    pub jwks_refresh: IntCounterVec,
    /// `stsbridge_rate_limited_total`.
    pub rate_limited: IntCounter,
    /// `stsbridge_config_reload_total{outcome}`.
    pub config_reload: IntCounterVec,
    /// `stsbridge_audit_failures_total`.
    pub audit_failures: IntCounter,
    /// `stsbridge_circuit_open{provider}`: 1 while a provider's circuit breaker is open.
    pub circuit_open: IntGaugeVec,
    /// `stsbridge_shadow_decisions_total{rule,would}`: audit-mode rules that matched, and what
    /// they would have done (`allow` or `deny`).
    pub shadow_decisions: IntCounterVec,
    /// `stsbridge_partner_limited_total{issuer,limit}`: requests a trust entry's own limits
    /// refused (`rate` or `concurrency`).
    pub partner_limited: IntCounterVec,
    /// `stsbridge_replay_store_full_total`: single-use tokens refused because the store of used
    /// `jti`s was full of live entries.
    pub replay_store_full: IntCounter,
    /// `stsbridge_shared_state_seconds{op}`: round trips to the shared state (`admit`, `ping`),
    /// failed ones included.
    pub shared_state_seconds: HistogramVec,
    /// `stsbridge_shared_state_errors_total{op}`: round trips that failed, timed out or were
    /// answered with something unexpected.
    pub shared_state_errors: IntCounterVec,
    /// `stsbridge_shared_state_fallback`: 1 while the shared state is unavailable and this
    /// replica refuses single-use tokens and limits rates with its own buckets.
    pub shared_state_fallback: IntGauge,
    /// `stsbridge_revocations_active`: revocations this replica applies now.
    pub revocations_active: IntGauge,
    /// `stsbridge_revoked_denials_total{kind}`: exchanges refused by a revocation, by its kind.
    pub revoked_denials: IntCounterVec,
    /// `stsbridge_revocation_apply_seconds`: from a revocation's creation to this replica
    /// applying it (the seed's M6).
    pub revocation_apply: Histogram,
    /// `stsbridge_introspections_total{active}`: introspection answers, `true` or `false`.
    pub introspections: IntCounterVec,
    /// `stsbridge_refusals_total{reason,status}`: exchanges answered with an error, by reason
    /// code and HTTP status (the SLIs tell the caller's mistakes, 4xx, from failures, 5xx).
    pub refusals: IntCounterVec,
    /// `stsbridge_signing_key_created_timestamp_seconds`: when the key that signs now was
    /// created (key rotation health).
    pub signing_key_created: IntGauge,
    /// `stsbridge_signing_keys_published`: keys in the JWKS (the signing one, staged and
    /// retiring ones).
    pub signing_keys_published: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A target's series of granted exchanges (`stsbridge_exchanges_total{outcome="allow",...}`),
/// resolved at its first grant and kept with the compiled target, so that a grant does not hash
/// its labels again; a reload compiles new targets, and so resolves anew.
#[derive(Debug, Default)]
pub struct GrantCounter(std::sync::OnceLock<IntCounter>);

impl GrantCounter {
    /// The series `{outcome="allow", provider, target}` of `exchanges`.
    pub fn get(&self, exchanges: &IntCounterVec, provider: &str, target: &str) -> &IntCounter {
        self.0
            .get_or_init(|| exchanges.with_label_values(&["allow", provider, target]))
    }
}

impl Metrics {
    /// The series of `stsbridge_cache_events_total` for `event`.
    pub fn cache_event(&self, event: CacheEvent) -> &IntCounter {
        &self.cache_event_counters[match event {
            CacheEvent::Hit => 0,
            CacheEvent::Miss => 1,
            CacheEvent::Coalesced => 2,
            CacheEvent::Stale => 3,
        }]
    }

    /// A fresh registry with every metric registered.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let exchanges = counter_vec(
            "stsbridge_exchanges_total",
            "Exchanges by outcome, provider and target.",
            &["outcome", "provider", "target"],
        )?;
        let cache_events = counter_vec(
            "stsbridge_cache_events_total",
            "How credential requests were served: hit, miss, coalesced, stale.",
            &["event"],
        )?;
        let jwks_refresh = counter_vec(
            "stsbridge_jwks_refresh_total",
            "JWKS fetches by trust entry and outcome.",
            &["issuer", "outcome"],
        )?;
        let config_reload = counter_vec(
            "stsbridge_config_reload_total",
            "Config and mapping reloads by outcome.",
            &["outcome"],
        )?;
        let exchange_duration = Histogram::with_opts(
            HistogramOpts::new(
                "stsbridge_exchange_duration_seconds",
                "Time to answer an exchange.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(exchange_duration.clone()))?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "stsbridge_upstream_duration_seconds",
                "Time spent in upstream calls, by provider.",
            )
            .buckets(BUCKETS.to_vec()),
            &["provider"],
        )?;
        registry.register(Box::new(upstream_duration.clone()))?;
        let shadow_decisions = counter_vec(
            "stsbridge_shadow_decisions_total",
            "Audit-mode rules that matched, by rule and the effect they would have had.",
            &["rule", "would"],
        )?;
        let partner_limited = counter_vec(
            "stsbridge_partner_limited_total",
            "Requests refused by a trust entry's own rate or concurrency limit.",
            &["issuer", "limit"],
        )?;
        let rate_limited =
            IntCounter::new("stsbridge_rate_limited_total", "Requests refused with 429.")?;
        registry.register(Box::new(rate_limited.clone()))?;
        let audit_failures = IntCounter::new(
            "stsbridge_audit_failures_total",
            "Audit events that could not be written.",
        )?;
        registry.register(Box::new(audit_failures.clone()))?;
        let replay_store_full = IntCounter::new(
            "stsbridge_replay_store_full_total",
            "Single-use tokens refused with 503 because the store of used jtis was full.",
        )?;
        registry.register(Box::new(replay_store_full.clone()))?;
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "stsbridge_circuit_open",
                "1 while a provider's circuit breaker is open.",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(circuit_open.clone()))?;
        let shared_state_seconds = HistogramVec::new(
            HistogramOpts::new(
                "stsbridge_shared_state_seconds",
                "Round trips to the shared state (Redis), by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )?;
        registry.register(Box::new(shared_state_seconds.clone()))?;
        let shared_state_errors = counter_vec(
            "stsbridge_shared_state_errors_total",
            "Round trips to the shared state that failed, timed out or had an unexpected answer.",
            &["op"],
        )?;
        let shared_state_fallback = IntGauge::new(
            "stsbridge_shared_state_fallback",
            "1 while the shared state is unavailable: single-use tokens refused, rate limits per replica.",
        )?;
        registry.register(Box::new(shared_state_fallback.clone()))?;
        let revocations_active = IntGauge::new(
            "stsbridge_revocations_active",
            "Revocations this replica applies now.",
        )?;
        registry.register(Box::new(revocations_active.clone()))?;
        let revoked_denials = counter_vec(
            "stsbridge_revoked_denials_total",
            "Exchanges refused because a revocation covers the token, its issuer or the target, by the revocation's kind.",
            &["kind"],
        )?;
        let revocation_apply = Histogram::with_opts(
            HistogramOpts::new(
                "stsbridge_revocation_apply_seconds",
                "Time from a revocation's creation (on any replica) to this replica applying it.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        registry.register(Box::new(revocation_apply.clone()))?;
        let introspections = counter_vec(
            "stsbridge_introspections_total",
            "Introspection answers, by whether the token was active.",
            &["active"],
        )?;
        let refusals = counter_vec(
            "stsbridge_refusals_total",
            "Exchanges answered with an error, by reason code and HTTP status.",
            &["reason", "status"],
        )?;
        let signing_key_created = IntGauge::new(
            "stsbridge_signing_key_created_timestamp_seconds",
            "Unix time the signing key in use was created.",
        )?;
        registry.register(Box::new(signing_key_created.clone()))?;
        let signing_keys_published = IntGauge::new(
            "stsbridge_signing_keys_published",
            "Keys published in the JWKS.",
        )?;
        registry.register(Box::new(signing_keys_published.clone()))?;
        for kind in crate::revocation::Kind::ALL {
            revoked_denials.with_label_values(&[kind.as_str()]);
        }
        for active in ["true", "false"] {
            introspections.with_label_values(&[active]);
        }
        let cache_event_counters = [
            CacheEvent::Hit,
            CacheEvent::Miss,
            CacheEvent::Coalesced,
            CacheEvent::Stale,
        ]
        .map(|e| cache_events.with_label_values(&[e.as_str()]));
        for outcome in ["success", "error"] {
            config_reload.with_label_values(&[outcome]);
        }
        Ok(Metrics {
            registry,
            exchanges,
            exchange_duration,
            upstream_duration,
            cache_events,
            cache_event_counters,
            jwks_refresh,
            rate_limited,
            config_reload,
            audit_failures,
            circuit_open,
            shadow_decisions,
            partner_limited,
            replay_store_full,
            shared_state_seconds,
            shared_state_errors,
            shared_state_fallback,
            revocations_active,
            revoked_denials,
            revocation_apply,
            introspections,
            refusals,
            signing_key_created,
            signing_keys_published,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
