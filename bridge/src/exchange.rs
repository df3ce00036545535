//! One exchange, step by step: validate the token, decide, render, get the credential (cached or
//! fetched once), and record one audit event. [`Bridge`] holds everything the service needs; the
//! HTTP layer only parses requests and shapes responses.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use stsbridge_providers::aws::AwsProvider;
use stsbridge_providers::azure::AzureProvider;
use stsbridge_providers::gcp::GcpProvider;
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::{AssertionSigner, Provider, ProviderError};
use tokio::task::JoinHandle;

use crate::audit::{Audit, AuditEvent, Caller, rfc3339, short_hash};
use crate::cache::{CacheEvent, CredentialCache, Entry};
use crate::config::{Config, ConfigErrors, TrustConfig};
use crate::issuer::{Issuer, IssuerError, random_id};
use crate::limits::{RateLimiter, ReplayGuard};
use crate::mapping::{Decision, Mappings, RenderError, RenderInput, Target, TargetKind, render};
use crate::token::jwks::{FetchError, JwksManager};
use crate::token::{self, TokenError, ValidatedToken};

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
    /// A deny rule refuses it, or no allow rule matches (403).
    #[error("{}", denial(rule.as_deref(), target))]
    Denied {
        /// The deny rule, or `None` when no allow rule matched.
        rule: Option<String>,
        /// The target.
        target: String,
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
    /// The provider failed (502/503).
    #[error(transparent)]
    Provider(Arc<ProviderError>),
    /// The audit event could not be written, so no credential is handed out (500).
    #[error("the audit record could not be written")]
    AuditFailed,
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
            ExchangeError::Scope(_) => "invalid_scope".into(),
            ExchangeError::Render(e) => match e {
                RenderError::DelegationTooDeep => "delegation_too_deep".into(),
                _ => "render_failed".into(),
            },
            ExchangeError::RateLimited { .. } => "rate_limited".into(),
            ExchangeError::Provider(e) => e.reason().to_owned(),
            ExchangeError::AuditFailed => "audit_failed".into(),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            ExchangeError::Denied { .. }
            | ExchangeError::Render(_)
            | ExchangeError::RateLimited { .. } => "deny",
            _ => "error",
        }
    }
}

/// A failed exchange with its decision id.
#[derive(Debug)]
pub struct Failure {
    /// The decision id (in the audit event and the response).
    pub decision_id: String,
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
}

/// The service: configuration, keys, mappings, cache and audit.
pub struct Bridge {
    config: Config,
    issuer: Arc<Issuer>,
    jwks: Arc<JwksManager>,
    trust_by_iss: HashMap<String, TrustConfig>,
    mappings: RwLock<Arc<Mappings>>,
    cache: Arc<CredentialCache>,
    audit: Audit,
    limiter: Option<RateLimiter>,
    replay: ReplayGuard,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
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
        let names: HashSet<String> = config.trust.iter().map(|t| t.name.clone()).collect();
        let mappings =
            Mappings::load(&config.mappings_dir, &names).map_err(StartError::Mappings)?;
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
        let jwks = Arc::new(JwksManager::new(&config.trust)?);
        let tasks = jwks.spawn_refreshers();
        let audit = Audit::open(&config.audit).map_err(StartError::Audit)?;
        tracing::info!(
            issuer = %issuer.url(),
            kid = issuer.active_kid().unwrap_or_default(),
            trusted_issuers = config.trust.len(),
            targets = mappings.target_count(),
            rules = mappings.rule_count(),
            "stsbridge started"
        );
        Ok(Arc::new(Bridge {
            trust_by_iss: config
                .trust
                .iter()
                .map(|t| (t.issuer.clone(), t.clone()))
                .collect(),
            cache: CredentialCache::new(config.cache.max_entries, providers),
            limiter: config.rate_limit.map(RateLimiter::new),
            mappings: RwLock::new(Arc::new(mappings)),
            replay: ReplayGuard::default(),
            config,
            issuer,
            jwks,
            audit,
            tasks,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// stsbridge's own issuer.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// The JWKS manager.
    pub fn jwks(&self) -> &Arc<JwksManager> {
        &self.jwks
    }

    /// The mappings in use.
    pub fn mappings(&self) -> Arc<Mappings> {
        self.mappings
            .read()
            .map(|m| Arc::clone(&m))
            .unwrap_or_default()
    }

    /// Runs one exchange at the current time and writes its audit event.
    pub async fn exchange(
        &self,
        req: ExchangeRequest<'_>,
    ) -> Result<(Exchanged, Arc<Target>), Failure> {
        let now = SystemTime::now();
        let decision_id = random_id();
        let mut event = AuditEvent {
            time: rfc3339(now),
            decision_id: decision_id.clone(),
            endpoint: req.endpoint.as_str(),
            target: Some(req.target.to_owned()),
            caller: Caller {
                client_addr: req.client.map(|a| a.to_string()),
                ..Caller::default()
            },
            ..AuditEvent::default()
        };
        let result = self.run(&req, now, &mut event).await;
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
        let audited = self.audit.record(&event);
        if let Err(e) = &audited {
            tracing::error!(decision_id = %decision_id, "audit write failed: {e}");
        }
        match result {
            Ok((mut exchanged, target)) => {
                if audited.is_err() {
                    return Err(Failure {
                        decision_id,
                        error: ExchangeError::AuditFailed,
                    });
                }
                exchanged.decision_id = decision_id;
                Ok((exchanged, target))
            }
            Err(error) => {
                log_failure(&decision_id, &error);
                Err(Failure { decision_id, error })
            }
        }
    }

    async fn run(
        &self,
        req: &ExchangeRequest<'_>,
        now: SystemTime,
        event: &mut AuditEvent,
    ) -> Result<(Exchanged, Arc<Target>), ExchangeError> {
        let token = self
            .validate(req.token, now, &mut event.caller)
            .await
            .map_err(|e| match e {
                TokenError::KeysUnavailable => ExchangeError::KeysUnavailable,
                e => ExchangeError::Token(e),
            })?;
        let trust = self.trust_by_iss.get(&token.issuer);
        if let (Some(trust), Some(jti)) = (trust.filter(|t| t.replay_reject), &token.jti)
            && !self.replay.first_use(
                &trust.name,
                jti,
                token::from_unix_seconds(token.expires_at),
                trust.leeway,
                now,
            )
        {
            return Err(ExchangeError::Token(TokenError::Replayed));
        }
        if let Some(limiter) = &self.limiter {
            limiter
                .check(&token.trust, &token.subject, now)
                .map_err(|retry_after| ExchangeError::RateLimited { retry_after })?;
        }

        let mappings = self.mappings();
        let target = match mappings.decide(&token, req.target) {
            Decision::UnknownTarget => {
                return Err(ExchangeError::UnknownTarget(req.target.to_owned()));
            }
            Decision::Deny { rule } => {
                event.rule = rule.map(|r| r.name.clone());
                return Err(ExchangeError::Denied {
                    rule: event.rule.clone(),
                    target: req.target.to_owned(),
                });
            }
            Decision::Allow { rule, target } => {
                event.rule = Some(rule.name.clone());
                Arc::clone(target)
            }
        };
        event.provider = Some(target.kind.provider());
        if req.endpoint == Endpoint::TokenExchange && !matches!(target.kind, TargetKind::Jwt(_)) {
            return Err(ExchangeError::InvalidRequest(format!(
                "{} is an {} target: ask /v1/credentials/{} for it",
                target.name,
                target.kind.provider(),
                target.name
            )));
        }
        let actor = match req.actor_token {
            None => None,
            Some(raw) => {
                let mut actor_caller = Caller::default();
                let actor = self
                    .validate(raw, now, &mut actor_caller)
                    .await
                    .map_err(ExchangeError::ActorToken)?;
                event.actor = Some(actor_caller);
                Some(actor)
            }
        };
        let input = RenderInput {
            token: &token,
            raw_token: req.token,
            requested_scopes: req.scopes,
            actor: actor.as_ref(),
        };
        let request = render(&target, &input).map_err(|e| match e {
            RenderError::ScopeNotAvailable(_) => ExchangeError::Scope(e),
            e => ExchangeError::Render(e),
        })?;
        let (entry, cache) = self
            .cache
            .get(Arc::new(request), now)
            .await
            .map_err(ExchangeError::Provider)?;
        Ok((
            Exchanged {
                decision_id: String::new(),
                entry,
                cache,
            },
            target,
        ))
    }

    /// Validates a token, refreshing its issuer's keys when it names a key not yet known.
    /// Fills `caller` with what is known of the token as soon as it is known.
    pub async fn validate(
        &self,
        raw: &str,
        now: SystemTime,
        caller: &mut Caller,
    ) -> Result<ValidatedToken, TokenError> {
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
        let Some(trust) = self.trust_by_iss.get(&parsed.issuer) else {
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
        let mut keys = self.jwks.keys(&trust.name);
        let missing = match (&keys, &parsed.kid) {
            (None, _) => true,
            (Some(k), Some(kid)) => !k.has_kid(kid),
            (Some(_), None) => false,
        };
        if missing
            && self
                .jwks
                .refresh_for(&trust.name, parsed.kid.as_deref())
                .await
        {
            keys = self.jwks.keys(&trust.name);
        }
        let token = token::verify(parsed, trust, keys.as_deref(), now)?;
        caller.verified = true;
        Ok(token)
    }

    /// Readiness: keys, mappings and every issuer's JWKS loaded.
    pub fn ready(&self) -> bool {
        self.issuer.active_kid().is_some() && self.jwks.all_loaded()
    }
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
