//! One exchange, step by step: validate the token, decide, render, get the credential (cached or
//! fetched once), and record one audit event. [`Bridge`] holds everything the service needs; the
//! HTTP layer only parses requests and shapes responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use stsbridge_providers::aws::AwsProvider;
use stsbridge_providers::azure::AzureProvider;
use stsbridge_providers::gcp::GcpProvider;
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::{AssertionSigner, Provider, ProviderError};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::audit::{Audit, AuditEvent, Caller, Shadow, rfc3339, short_hash};
use crate::breaker::Breaker;
use crate::cache::{CacheEvent, CredentialCache, Entry};
use crate::config::{Config, ConfigErrors, OWN_TRUST, TrustConfig};
use crate::issuer::{Issuer, IssuerError, random_id};
use crate::limits::{
    FailedValidations, PartnerLimit, PartnerRefusal, RateLimiter, ReplayGuard, ReplayRefusal,
};
use crate::mapping::delegation::{may_act_allows, prior_chain};
use crate::mapping::{
    Decision, Effect, Mappings, RenderError, RenderInput, RuleMode, Target, TargetKind, render,
};
use crate::metrics::Metrics;
use crate::token::jwks::{FetchError, JwksManager};
use crate::token::{self, KeySet, KeyThumbprint, TokenError, ValidatedToken};

/// Which endpoint asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/credentials/{target}`.
    Credentials,
    /// `/oauth2/token` (RFC 8693).
    TokenExchange,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Credentials => "credentials",
            Endpoint::TokenExchange => "token_exchange",
        }
    }
}

/// One exchange request, as parsed by the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The subject token.
    pub token: &'a str,
    /// The target name.
    pub target: &'a str,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// Requested scopes (RFC 8693 `scope`).
    pub scopes: Option<&'a [String]>,
    /// The actor token (RFC 8693 delegation).
    pub actor_token: Option<&'a str>,
    /// The HTTP request id, for the audit event.
    pub request_id: Option<&'a str>,
    /// The DNS names of the caller's verified client certificate (mTLS); empty without one.
    pub client_names: &'a [String],
}

/// A granted exchange.
#[derive(Debug)]
pub struct Exchanged {
    /// The decision id.
    pub decision_id: String,
    /// The credential and its cache entry.
    pub entry: Arc<Entry>,
    /// How the cache served it.
    pub cache: CacheEvent,
}

/// Why an exchange gave no credential. Mapped to HTTP in exactly one place (`http::error`).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request itself is wrong (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The subject token was refused (401).
    #[error("subject token: {0}")]
    Token(TokenError),
    /// The actor token was refused (400).
    #[error("actor token: {0}")]
    ActorToken(TokenError),
    /// The issuer's keys cannot be fetched and were never loaded (503).
    #[error("the keys of the token's issuer could not be fetched")]
    KeysUnavailable,
    /// No such target (404).
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    /// An allow rule matched the subject, but the actor is not one it lists in `actors:`, or
    /// the subject token's `may_act` does not name it (403).
    #[error("the actor may not act for this subject (rule {rule})")]
    ActorNotAllowed {
        /// The first allow rule that matched the subject.
        rule: String,
    },
    /// A deny rule refuses it, or no allow rule matches (403).
    #[error("{}", denial(rule.as_deref(), target))]
    Denied {
        /// The deny rule, or `None` when no allow rule matched.
        rule: Option<String>,
        /// The target.
        target: String,
        /// For issuers with `explain_denials`: each rule of that issuer for the target, with
        /// the tests the token failed.
        explanation: Vec<String>,
    },
    /// A requested scope is not available (400 `invalid_scope`).
    #[error(transparent)]
    Scope(RenderError),
    /// The provider request could not be rendered from the token (403).
    #[error(transparent)]
    Render(RenderError),
    /// Too many requests from this caller (429).
    #[error("rate limited")]
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// The callers of one trust entry together are over its `rate_limit` or `max_concurrent`
    /// (429).
    #[error("issuer {trust} is over its {}", if *.busy { "max_concurrent" } else { "rate_limit" })]
    PartnerLimited {
        /// The trust entry.
        trust: String,
        /// Over `max_concurrent` rather than `rate_limit`.
        busy: bool,
        /// When to retry.
        retry_after: Duration,
    },
    /// The client's address is out of failed validations: refused before validation (429).
    #[error("too many requests with invalid tokens from this address")]
    TooManyFailures {
        /// When to retry.
        retry_after: Duration,
    },
    /// The single-use `jti` store is full of live entries, so this token's `jti` cannot be
    /// recorded and it is refused rather than left replayable (503).
    #[error("the single-use token store is full")]
    ReplayStoreFull {
        /// When the first entry leaves.
        retry_after: Duration,
    },
    /// The provider failed (502/503).
    #[error(transparent)]
    Provider(Arc<ProviderError>),
    /// The audit event could not be written, so no credential is handed out (500).
    #[error("the audit record could not be written")]
    AuditFailed,
    /// No decision id could be drawn, so nothing is decided (500).
    #[error(transparent)]
    Random(#[from] crate::issuer::RandomError),
}

fn denial(rule: Option<&str>, target: &str) -> String {
    match rule {
        Some(rule) => format!("denied by rule {rule}"),
        None => format!("no rule allows this token to obtain {target}"),
    }
}

impl ExchangeError {
    fn reason(&self) -> String {
        match self {
            ExchangeError::InvalidRequest(_) => "invalid_request".into(),
            ExchangeError::Token(e) | ExchangeError::ActorToken(e) => e.code().into(),
            ExchangeError::KeysUnavailable => "jwks_unavailable".into(),
            ExchangeError::UnknownTarget(_) => "unknown_target".into(),
            ExchangeError::Denied { rule: Some(_), .. } => "deny_rule".into(),
            ExchangeError::Denied { rule: None, .. } => "no_matching_rule".into(),
            ExchangeError::ActorNotAllowed { .. } => "actor_not_allowed".into(),
            ExchangeError::Scope(_) => "invalid_scope".into(),
            ExchangeError::Render(e) => match e {
                RenderError::DelegationTooDeep => "delegation_too_deep".into(),
                RenderError::ReservedSubject => "reserved_subject".into(),
                _ => "render_failed".into(),
            },
            ExchangeError::RateLimited { .. } => "rate_limited".into(),
            ExchangeError::PartnerLimited { busy: false, .. } => "issuer_rate_limited".into(),
            ExchangeError::PartnerLimited { busy: true, .. } => "issuer_busy".into(),
            ExchangeError::TooManyFailures { .. } => "too_many_failed_validations".into(),
            ExchangeError::ReplayStoreFull { .. } => "replay_store_full".into(),
            ExchangeError::Provider(e) => e.reason().to_owned(),
            ExchangeError::AuditFailed => "audit_failed".into(),
            ExchangeError::Random(_) => "random_failed".into(),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            ExchangeError::Denied { .. }
            | ExchangeError::ActorNotAllowed { .. }
            | ExchangeError::Render(_)
            | ExchangeError::RateLimited { .. }
            | ExchangeError::PartnerLimited { .. }
            | ExchangeError::TooManyFailures { .. } => "deny",
            _ => "error",
        }
    }
}

/// A failed exchange with its decision id.
#[derive(Debug)]
pub struct Failure {
    /// The decision id (in the audit event and the response); `None` when none could be drawn.
    pub decision_id: Option<String>,
    /// What went wrong.
    pub error: ExchangeError,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The mapping files are invalid.
    #[error("{0}")]
    Mappings(ConfigErrors),
    /// The signing keys could not be loaded.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The audit sink could not be opened.
    #[error("cannot open the audit sink: {0}")]
    Audit(std::io::Error),
    /// The JWKS client could not be built.
    #[error(transparent)]
    Jwks(#[from] FetchError),
    /// A provider's HTTP client could not be built.
    #[error(transparent)]
    Provider(ProviderError),
    /// The metrics registry could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
}

/// What a reload swaps as one: the trust list, its key sets, and the mappings. An exchange takes
/// one snapshot at its start and finishes on it.
pub struct Policy {
    trust_by_iss: HashMap<String, TrustConfig>,
    /// The limits of trust entries that set them, by name; kept across reloads while unchanged.
    limits: HashMap<String, Arc<PartnerLimit>>,
    jwks: Arc<JwksManager>,
    mappings: Arc<Mappings>,
    refreshers: Vec<JoinHandle<()>>,
    /// Tokens that passed validation under this policy, by the SHA-256 of the whole token. A
    /// reload starts a new one, so a changed trust entry never honours an old result.
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

/// Most validated tokens remembered per policy. Enough for the callers that repeat a token (an
/// SDK or agent presents the same one for its whole life), small enough to stay a fixed cost
/// (about 3 KiB each with a Kubernetes token's claims, so about 12 MiB); a token that is not
/// remembered is only verified again.
const VERIFIED_TOKENS: u64 = 4_096;
/// The longest a validated token is remembered, whatever its own expiry.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A token that passed every check, as remembered for its next presentation.
struct Verified {
    token: Arc<ValidatedToken>,
    /// The key that verified it, by its material: when the issuer withdraws that key, the token
    /// is checked again (a `kid` may be absent, or reused for another key).
    key: KeyThumbprint,
    /// `exp` plus the trust entry's leeway, unix seconds: the last second it may be used.
    usable_until: u64,
    /// For the audit event.
    jti_hash: Option<String>,
}

impl Drop for Policy {
    fn drop(&mut self) {
        for t in &self.refreshers {
            t.abort();
        }
    }
}

impl Policy {
    /// Loads the mappings for `trust` and starts fetching its keys, taking over the key sets of
    /// `previous` where a trust entry is unchanged.
    fn build(
        trust: &[TrustConfig],
        config_file: Option<&std::path::Path>,
        mappings_dir: &std::path::Path,
        own_url: &str,
        previous: Option<&Policy>,
        metrics: &Arc<Metrics>,
    ) -> Result<Policy, StartError> {
        let config_file = config_file.unwrap_or(mappings_dir);
        let (mappings, trust) = Mappings::load_with_trust(mappings_dir, trust, config_file)
            .map_err(StartError::Mappings)?;
        let own_errors = mappings.own_issuer_errors(own_url);
        if !own_errors.is_empty() {
            return Err(StartError::Mappings(ConfigErrors(own_errors)));
        }
        let trust = &trust;
        let jwks = Arc::new(JwksManager::new(trust, Some(Arc::clone(metrics)))?);
        if let Some(previous) = previous {
            jwks.adopt(&previous.jwks);
        }
        let refreshers = jwks.spawn_refreshers();
        let limits = trust
            .iter()
            .filter_map(|t| {
                let kept = previous
                    .and_then(|p| p.limits.get(&t.name))
                    .filter(|l| l.is(t.rate_limit, t.max_concurrent));
                let limit = match kept {
                    Some(l) => Arc::clone(l),
                    None => Arc::new(PartnerLimit::new(t.rate_limit, t.max_concurrent)?),
                };
                Some((t.name.clone(), limit))
            })
            .collect();
        Ok(Policy {
            limits,
            // stsbridge's own tokens come back under the built-in entry; its keys are the
            // issuer's own, never fetched (it is not in `jwks`).
            trust_by_iss: trust
                .iter()
                .cloned()
                .chain(std::iter::once(crate::config::own_trust(
                    own_url,
                    mappings.jwt_audiences(),
                )))
                .map(|t| (t.issuer.clone(), t))
                .collect(),
            jwks,
            mappings: Arc::new(mappings),
            refreshers,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build(),
        })
    }

    /// The mappings.
    pub fn mappings(&self) -> &Arc<Mappings> {
        &self.mappings
    }

    /// The key sets.
    pub fn jwks(&self) -> &Arc<JwksManager> {
        &self.jwks
    }
}

/// The service: configuration, keys, the current policy, cache, audit and metrics.
pub struct Bridge {
    config: Config,
    issuer: Arc<Issuer>,
    policy: RwLock<Arc<Policy>>,
    cache: Arc<CredentialCache>,
    audit: Arc<Audit>,
    limiter: Option<RateLimiter>,
    target_limiter: Option<RateLimiter>,
    replay: ReplayGuard,
    failed_validations: Option<FailedValidations>,
    metrics: Arc<Metrics>,
}

impl Bridge {
    /// Loads keys and mappings, opens the audit sink and starts the JWKS refreshers. Must run
    /// inside a tokio runtime.
    pub fn start(config: Config) -> Result<Arc<Bridge>, StartError> {
        let issuer = Arc::new(Issuer::load(&config.issuer)?);
        Self::start_with_issuer(config, issuer)
    }

    /// As [`start`](Self::start), with an issuer built by the caller (dev mode).
    pub fn start_with_issuer(
        config: Config,
        issuer: Arc<Issuer>,
    ) -> Result<Arc<Bridge>, StartError> {
        let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?);
        let policy = Policy::build(
            &config.trust,
            config.source.as_deref(),
            &config.mappings_dir,
            issuer.url(),
            None,
            &metrics,
        )?;
        let signer: Arc<dyn AssertionSigner> = issuer.clone();
        let providers: Vec<Arc<dyn Provider>> = vec![
            Arc::new(AwsProvider::new(&config.aws, Arc::clone(&signer))),
            Arc::new(
                GcpProvider::new(&config.gcp, Arc::clone(&signer)).map_err(StartError::Provider)?,
            ),
            Arc::new(
                AzureProvider::new(&config.azure, Arc::clone(&signer))
                    .map_err(StartError::Provider)?,
            ),
            Arc::new(JwtProvider::new(signer)),
        ];
        let audit = Arc::new(Audit::open(&config.audit.sink).map_err(StartError::Audit)?);
        let counted = Arc::clone(&metrics);
        crate::audit::spawn_summary_writer(Arc::downgrade(&audit), move |e| {
            counted.audit_failures.inc();
            tracing::error!("could not write a summary of refused validations: {e}");
        });
        tracing::info!(
            issuer = %issuer.url(),
            kid = issuer.active_kid().unwrap_or_default(),
            trusted_issuers = policy.trust_by_iss.len(),
            targets = policy.mappings.target_count(),
            rules = policy.mappings.rule_count(),
            "stsbridge started"
        );
        Ok(Arc::new(Bridge {
            cache: CredentialCache::with_breakers(
                config.cache.max_entries,
                providers,
                Some(Arc::clone(&metrics)),
                Breaker::default,
            ),
            limiter: config.rate_limit.map(RateLimiter::new),
            target_limiter: config.target_rate_limit.map(RateLimiter::new),
            policy: RwLock::new(Arc::new(policy)),
            replay: ReplayGuard::new(config.replay_store_entries),
            failed_validations: config.failed_validation_limit.map(FailedValidations::new),
            config,
            issuer,
            audit,
            metrics,
        }))
    }

    /// Reloads the trust list (from the config file, when there is one) and every mapping file,
    /// validates them in full and swaps them in at once. On any error the current policy stays,
    /// every problem is logged, and `stsbridge_config_reload_total{outcome="error"}` counts it.
    /// Settings that need a restart (listener, TLS, issuer, providers, cache, limits, audit) are
    /// not reloaded; a change to them is logged.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let result = self.try_reload();
        let outcome = if result.is_ok() { "success" } else { "error" };
        self.metrics
            .config_reload
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(()) => {
                let policy = self.policy();
                tracing::info!(
                    trusted_issuers = policy.trust_by_iss.len(),
                    targets = policy.mappings.target_count(),
                    rules = policy.mappings.rule_count(),
                    "configuration reloaded"
                );
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("reload refused, the previous configuration stays: {e}");
                }
            }
        }
        result
    }

    fn try_reload(&self) -> Result<(), ConfigErrors> {
        let (trust, mappings_dir) = match &self.config.source {
            Some(path) => {
                let fresh = crate::config::load(path)?;
                if fresh.listen != self.config.listen
                    || fresh.tls != self.config.tls
                    || fresh.issuer.url != self.config.issuer.url
                    || fresh.audit != self.config.audit
                {
                    tracing::warn!(
                        "listen, tls, issuer and audit changes take effect only after a restart"
                    );
                }
                (fresh.trust, fresh.mappings_dir)
            }
            None => (self.config.trust.clone(), self.config.mappings_dir.clone()),
        };
        let current = self.policy();
        let policy = Policy::build(
            &trust,
            self.config.source.as_deref(),
            &mappings_dir,
            self.issuer.url(),
            Some(&current),
            &self.metrics,
        )
        .map_err(|e| match e {
            StartError::Mappings(errors) => errors,
            other => ConfigErrors(vec![crate::config::ConfigError::new(
                &mappings_dir,
                ".",
                other.to_string(),
            )]),
        })?;
        if let Ok(mut slot) = self.policy.write() {
            *slot = Arc::new(policy);
        }
        Ok(())
    }

    /// The configuration the service started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// stsbridge's own issuer.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// The policy in use now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The key sets in use now.
    pub fn jwks(&self) -> Arc<JwksManager> {
        Arc::clone(&self.policy().jwks)
    }

    /// The mappings in use now.
    pub fn mappings(&self) -> Arc<Mappings> {
        Arc::clone(&self.policy().mappings)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Flushes the audit sink (at shutdown).
    pub fn flush_audit(&self) {
        if let Err(e) = self.audit.flush(SystemTime::now()) {
            tracing::error!("could not flush the audit sink: {e}");
        }
    }

    /// Runs one exchange at the current time and writes its audit event.
    pub async fn exchange(
        &self,
        req: ExchangeRequest<'_>,
    ) -> Result<(Exchanged, Arc<Target>), Failure> {
        let started = std::time::Instant::now();
        let now = SystemTime::now();
        let policy = self.policy();
        let decision_id = random_id().map_err(|e| {
            tracing::error!("no exchange without a decision id: {e}");
            Failure {
                decision_id: None,
                error: e.into(),
            }
        })?;
        let mut event = AuditEvent {
            time: rfc3339(now),
            decision_id: decision_id.clone(),
            endpoint: req.endpoint.as_str(),
            target: Some(req.target.to_owned()),
            caller: Caller {
                client_addr: req.client.map(|a| a.to_string()),
                client_certificate: req.client_names.first().cloned(),
                ..Caller::default()
            },
            request_id: req.request_id.map(str::to_owned),
            ..AuditEvent::default()
        };
        let client_ip = req.client.map(|a| a.ip());
        let admitted = match &self.failed_validations {
            Some(budget) => budget.admit(client_ip, now),
            None => Ok(()),
        };
        let result = match admitted {
            Ok(()) => self.run(&policy, &req, now, &mut event).await,
            Err(retry_after) => {
                self.metrics.rate_limited.inc();
                Err(ExchangeError::TooManyFailures { retry_after })
            }
        };
        match &result {
            Ok((exchanged, _)) => {
                event.outcome = "allow";
                event.reason = "granted".into();
                event.cache = Some(exchanged.cache.as_str());
                let entry = &exchanged.entry;
                event.upstream_latency_ms = Some(entry.upstream.latency.as_millis() as u64);
                event.upstream_request_id = entry.upstream.request_id.clone();
                event.assertion_jti = entry.upstream.assertion_jti.clone();
                event.credential_expiry = Some(rfc3339(entry.credential.expires_at()));
                event.credential_id_hash = Some(short_hash(entry.credential.public_id()));
            }
            Err(e) => {
                event.outcome = e.outcome();
                event.reason = e.reason();
            }
        }
        // A token that never validated cannot have yielded a credential: its event is
        // summarized per address, and a failed validation spends the address's budget. Every
        // other exchange has its own event.
        let audited = if result.is_err() && !event.caller.verified {
            if let (Some(budget), Err(ExchangeError::Token(_))) =
                (&self.failed_validations, &result)
            {
                budget.spend(client_ip, now);
            }
            self.audit.record_unverified(&event, client_ip, now)
        } else {
            self.audit.record(&event)
        };
        if let Err(e) = &audited {
            self.metrics.audit_failures.inc();
            tracing::error!(decision_id = %decision_id, fail_open = self.config.audit.fail_open, "audit write failed: {e}");
        }
        // Metric labels are bounded: a target name only when the mappings know it.
        let target_label = if policy.mappings.target(req.target).is_some() {
            req.target
        } else {
            "unknown"
        };
        let outcome = if audited.is_err() && !self.config.audit.fail_open && result.is_ok() {
            "error"
        } else {
            event.outcome
        };
        self.metrics
            .exchanges
            .with_label_values(&[outcome, event.provider.unwrap_or("none"), target_label])
            .inc();
        self.metrics
            .exchange_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok((mut exchanged, target)) => {
                if audited.is_err() && !self.config.audit.fail_open {
                    return Err(Failure {
                        decision_id: Some(decision_id),
                        error: ExchangeError::AuditFailed,
                    });
                }
                exchanged.decision_id = decision_id;
                Ok((exchanged, target))
            }
            Err(error) => {
                log_failure(&decision_id, &error);
                Err(Failure {
                    decision_id: Some(decision_id),
                    error,
                })
            }
        }
    }

    async fn run(
        &self,
        policy: &Policy,
        req: &ExchangeRequest<'_>,
        now: SystemTime,
        event: &mut AuditEvent,
    ) -> Result<(Exchanged, Arc<Target>), ExchangeError> {
        let token = self
            .validate(policy, req.token, now, &mut event.caller)
            .instrument(tracing::debug_span!("validate"))
            .await
            .map_err(|e| match e {
                TokenError::KeysUnavailable => ExchangeError::KeysUnavailable,
                e => ExchangeError::Token(e),
            })?;
        let trust = policy.trust_by_iss.get(&token.issuer);
        // Held until the exchange ends: the trust entry's `max_concurrent` counts it.
        let _slot = self.admit(policy, &token, now)?;
        // The subject's own delegation chain, carried on only where its issuer is trusted to
        // assert one (stsbridge itself, or `accept_act: true`).
        let prior_act = prior_chain(&token.claims, trust.is_some_and(|t| t.accept_act))
            .map_err(|e| ExchangeError::InvalidRequest(e.to_string()))?;
        event.prior_act = prior_act.audit_label();
        // The actor is validated and admitted exactly like the subject (single use in any
        // position, limits), and authorized below by the rules and the subject's `may_act`.
        let (actor, _actor_slot) = match req.actor_token {
            None => (None, None),
            Some(raw) => {
                let mut actor_caller = Caller::default();
                let validated = self
                    .validate(policy, raw, now, &mut actor_caller)
                    .instrument(tracing::debug_span!("validate_actor"))
                    .await;
                event.actor = Some(actor_caller);
                // Keys that cannot be fetched are the service's trouble, not a bad request: the
                // caller retries, as it would for the subject.
                let actor = validated.map_err(|e| match e {
                    TokenError::KeysUnavailable => ExchangeError::KeysUnavailable,
                    e => ExchangeError::ActorToken(e),
                })?;
                let slot = self.admit(policy, &actor, now).map_err(|e| match e {
                    ExchangeError::Token(t) => ExchangeError::ActorToken(t),
                    other => other,
                })?;
                (Some(actor), slot)
            }
        };

        let mappings = &policy.mappings;
        let decision = tracing::debug_span!("map", target = %req.target).in_scope(|| {
            mappings.decide_with_actor(&token, req.client_names, req.target, actor.as_deref())
        });
        for rule in mappings.shadow_for(&token, req.client_names, req.target) {
            let would = match rule.effect {
                Effect::Allow => "allow",
                Effect::Deny => "deny",
            };
            self.metrics
                .shadow_decisions
                .with_label_values(&[&rule.name, would])
                .inc();
            event.shadow.push(Shadow {
                rule: rule.name.clone(),
                would,
            });
        }
        let target = match decision {
            Decision::UnknownTarget => {
                return Err(ExchangeError::UnknownTarget(req.target.to_owned()));
            }
            Decision::Deny { rule } => {
                event.rule = rule.map(|r| r.name.clone());
                let explanation = if rule.is_none() && trust.is_some_and(|t| t.explain_denials) {
                    explain_denial(mappings, &token, req.client_names, req.target)
                } else {
                    Vec::new()
                };
                return Err(ExchangeError::Denied {
                    rule: event.rule.clone(),
                    target: req.target.to_owned(),
                    explanation,
                });
            }
            Decision::ActorNotAllowed { rule } => {
                event.rule = Some(rule.name.clone());
                return Err(ExchangeError::ActorNotAllowed {
                    rule: rule.name.clone(),
                });
            }
            Decision::Allow { rule, target } => {
                event.rule = Some(rule.name.clone());
                if actor
                    .as_deref()
                    .is_some_and(|a| !may_act_allows(&token.claims, a))
                {
                    return Err(ExchangeError::ActorNotAllowed {
                        rule: rule.name.clone(),
                    });
                }
                Arc::clone(target)
            }
        };
        event.provider = Some(target.kind.provider());
        if let Some(limiter) = &self.target_limiter {
            // One bucket per target, shared by every caller: a burst from one partner cannot
            // spend a shared account's STS quota for everyone.
            limiter
                .check("target", &target.name, now)
                .map_err(|retry_after| {
                    self.metrics.rate_limited.inc();
                    ExchangeError::RateLimited { retry_after }
                })?;
        }
        if req.endpoint == Endpoint::TokenExchange && !matches!(target.kind, TargetKind::Jwt(_)) {
            return Err(ExchangeError::InvalidRequest(format!(
                "{} is an {} target: ask /v1/credentials/{} for it",
                target.name,
                target.kind.provider(),
                target.name
            )));
        }
        let input = RenderInput {
            token: &token,
            raw_token: req.token,
            requested_scopes: req.scopes,
            actor: actor.as_deref(),
            prior_act: &prior_act,
        };
        let request = tracing::debug_span!("render", target = %target.name)
            .in_scope(|| render(&target, &input))
            .map_err(|e| match e {
                RenderError::ScopeNotAvailable(_) => ExchangeError::Scope(e),
                e => ExchangeError::Render(e),
            })?;
        let provider = request.kind();
        let upstream =
            tracing::debug_span!("upstream", provider = %provider, target = %target.name);
        let (entry, cache) = self
            .cache
            .get(Arc::new(request), now)
            .instrument(upstream)
            .await
            .map_err(ExchangeError::Provider)?;
        self.metrics
            .cache_events
            .with_label_values(&[cache.as_str()])
            .inc();
        if cache == CacheEvent::Miss {
            self.metrics
                .upstream_duration
                .with_label_values(&[provider.as_str()])
                .observe(entry.upstream.latency.as_secs_f64());
        }
        Ok((
            Exchanged {
                decision_id: String::new(),
                entry,
                cache,
            },
            target,
        ))
    }

    /// Admits a validated token (subject or actor) before anything is decided: its single use
    /// where its issuer requires it, the per-caller rate limit, and its trust entry's own limits.
    /// The permit, when the entry caps exchanges in flight, must be held until the exchange ends.
    fn admit(
        &self,
        policy: &Policy,
        token: &ValidatedToken,
        now: SystemTime,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ExchangeError> {
        let trust = policy.trust_by_iss.get(&token.issuer);
        if let Some(limiter) = &self.limiter {
            limiter
                .check(&token.trust, &token.subject, now)
                .map_err(|retry_after| {
                    self.metrics.rate_limited.inc();
                    ExchangeError::RateLimited { retry_after }
                })?;
        }
        let slot = match policy.limits.get(&token.trust) {
            None => None,
            Some(limit) => limit.admit(now).map_err(|refusal| {
                let (busy, retry_after, label) = match refusal {
                    PartnerRefusal::Busy => (true, Duration::from_secs(1), "concurrency"),
                    PartnerRefusal::Rate(wait) => (false, wait, "rate"),
                };
                self.metrics.rate_limited.inc();
                self.metrics
                    .partner_limited
                    .with_label_values(&[&token.trust, label])
                    .inc();
                ExchangeError::PartnerLimited {
                    trust: token.trust.clone(),
                    busy,
                    retry_after,
                }
            })?,
        };
        // Recorded only once the caller's and its issuer's limits admit it: a partner over its
        // limits spends no room in the store shared by every issuer.
        if let (Some(trust), Some(jti)) = (trust.filter(|t| t.replay_reject), &token.jti) {
            self.replay
                .first_use(
                    &trust.name,
                    jti,
                    token::from_unix_seconds(token.expires_at),
                    trust.leeway,
                    now,
                )
                .map_err(|refusal| match refusal {
                    ReplayRefusal::Replayed => ExchangeError::Token(TokenError::Replayed),
                    ReplayRefusal::Full { retry_after } => {
                        self.metrics.replay_store_full.inc();
                        ExchangeError::ReplayStoreFull { retry_after }
                    }
                })?;
        }
        Ok(slot)
    }

    /// Validates a token, refreshing its issuer's keys when it names a key not yet known.
    /// Fills `caller` with what is known of the token as soon as it is known.
    ///
    /// A token presented again (the same bytes) while it is still usable, under the same policy
    /// and while the key that verified it is still published, is not verified again: SDKs and
    /// agents present one token for its whole life. Only validation is remembered; the decision
    /// is made afresh for every request.
    pub async fn validate(
        &self,
        policy: &Policy,
        raw: &str,
        now: SystemTime,
        caller: &mut Caller,
    ) -> Result<Arc<ValidatedToken>, TokenError> {
        let digest: [u8; 32] = {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw.as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        };
        if let Some(hit) = policy.verified.get(&digest) {
            let key_published = self
                .keys_of(policy, &hit.token.trust)
                .is_some_and(|k| k.has_thumbprint(&hit.key));
            if key_published && token::unix_seconds(now) <= hit.usable_until {
                caller.subject = Some(hit.token.subject.chars().take(256).collect());
                caller.jti_hash.clone_from(&hit.jti_hash);
                caller.issuer = Some(hit.token.trust.clone());
                caller.verified = true;
                return Ok(Arc::clone(&hit.token));
            }
            policy.verified.invalidate(&digest);
        }
        let parsed = token::parse(raw)?;
        caller.subject = parsed
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .map(|s| s.chars().take(256).collect());
        caller.jti_hash = parsed
            .claims
            .get("jti")
            .and_then(|s| s.as_str())
            .map(short_hash);
        let Some(trust) = policy.trust_by_iss.get(&parsed.issuer) else {
            caller.issuer = Some(format!(
                "untrusted:{}",
                parsed.issuer.chars().take(128).collect::<String>()
            ));
            return Err(TokenError::UnknownIssuer);
        };
        caller.issuer = Some(trust.name.clone());
        if !trust.algorithms.contains(&parsed.alg) {
            return Err(TokenError::AlgNotAllowed);
        }
        let mut keys = self.keys_of(policy, &trust.name);
        let missing = match (&keys, &parsed.kid) {
            (None, _) => true,
            (Some(k), Some(kid)) => !k.has_kid(kid),
            (Some(_), None) => false,
        };
        // stsbridge's own keys are never fetched: they are the ones it publishes.
        if missing
            && trust.name != OWN_TRUST
            && policy
                .jwks
                .refresh_for(&trust.name, parsed.kid.as_deref())
                .await
        {
            keys = policy.jwks.keys(&trust.name);
        }
        let (token, key) = token::verify_with_key(parsed, trust, keys.as_deref(), now)?;
        let token = Arc::new(token);
        caller.verified = true;
        policy.verified.insert(
            digest,
            Arc::new(Verified {
                token: Arc::clone(&token),
                key,
                usable_until: token.expires_at.saturating_add(trust.leeway.as_secs()),
                jti_hash: caller.jti_hash.clone(),
            }),
        );
        Ok(token)
    }

    /// The verification keys of trust entry `name`: stsbridge's own published keys for
    /// [`OWN_TRUST`], else the fetched set (`None` before the first fetch).
    fn keys_of(&self, policy: &Policy, name: &str) -> Option<Arc<KeySet>> {
        if name == OWN_TRUST {
            Some(self.issuer.verifying_keys())
        } else {
            policy.jwks.keys(name)
        }
    }

    /// Readiness: keys, mappings and every issuer's JWKS loaded.
    pub fn ready(&self) -> bool {
        self.issuer.active_kid().is_some() && self.policy().jwks.all_loaded()
    }
}

/// Most rules a caller's denial explains.
const MAX_EXPLAINED_RULES: usize = 5;

/// For a caller refused because no allow rule matched: each enforced allow rule of the caller's
/// issuer for the target and the tests its token failed. The rules are those of the caller's own
/// trust entry; the token's values are not repeated.
fn explain_denial(
    mappings: &Mappings,
    token: &ValidatedToken,
    client_names: &[String],
    target: &str,
) -> Vec<String> {
    let rules: Vec<_> = mappings
        .explain_for(token, client_names, target)
        .into_iter()
        .filter(|r| r.effect == Effect::Allow && r.mode == RuleMode::Enforce)
        .collect();
    let mut out: Vec<String> = rules
        .iter()
        .take(MAX_EXPLAINED_RULES)
        .map(|r| format!("rule {}: failed {}", r.rule, r.failures().join("; ")))
        .collect();
    if rules.len() > MAX_EXPLAINED_RULES {
        out.push(format!(
            "and {} more rule(s)",
            rules.len() - MAX_EXPLAINED_RULES
        ));
    }
    if out.is_empty() {
        out.push(format!("no rule of this issuer allows {target}"));
    }
    out
}

fn log_failure(decision_id: &str, error: &ExchangeError) {
    match error {
        ExchangeError::Provider(e) => match e.as_ref() {
            ProviderError::Rejected {
                code,
                upstream_message,
                request_id,
                ..
            } => tracing::warn!(
                decision_id,
                code = %code,
                upstream_message = upstream_message.as_deref().unwrap_or(""),
                upstream_request_id = request_id.as_deref().unwrap_or(""),
                "upstream rejected the exchange: {e}"
            ),
            _ => tracing::warn!(decision_id, "exchange failed upstream: {e}"),
        },
        ExchangeError::AuditFailed | ExchangeError::KeysUnavailable => {
            tracing::error!(decision_id, "{error}")
        }
        _ => tracing::info!(decision_id, reason = %error.reason(), "exchange refused: {error}"),
    }
}
