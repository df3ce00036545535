//! One exchange, step by step: validate the token, admit it, decide, render, get the credential
//! (cached or fetched once), and record one audit event. [`Bridge`] holds everything the service
//! needs; the HTTP layer only parses requests and shapes responses. Rooms: `error` (the error
//! vocabulary), `policy` (the reloadable policy and token validation against it), `admission`
//! (limits, then single use), `types` (what goes in and comes out).

mod admission;
mod error;
mod policy;
mod revoke;
mod types;

use error::log_failure;
pub use error::{ExchangeError, Failure, StartError};
pub use policy::Policy;
pub use revoke::{Authorized, BuiltinRequest, RevokeError};
pub use types::{Answer, Endpoint, ExchangeRequest, Exchanged};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use stsbridge_providers::aws::AwsProvider;
use stsbridge_providers::azure::AzureProvider;
use stsbridge_providers::gcp::GcpProvider;
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::{AssertionSigner, ProviderError, ProviderRequest, Providers};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::audit::{Audit, AuditEvent, Caller, Shadow, rfc3339, short_hash};
use crate::breaker::Breaker;
use crate::cache::{CacheEvent, CredentialCache, Entry};
use crate::config::{Config, ConfigErrors, OWN_TRUST, TrustConfig};
use crate::issuer::{Issuer, IssuerError, random_id};
use crate::limits::{FailedValidations, PartnerSlots};
use crate::mapping::delegation::{may_act_allows, prior_chain};
use crate::mapping::{Decision, Effect, Mappings, RenderError, RenderInput, TargetKind, render};
use crate::metrics::Metrics;
use crate::revocation::reference::ReferenceStore;
use crate::revocation::{Presented, RevocationStore, Revocations};
use crate::shared::{MemoryState, RedisState, SharedState};
use crate::token::jwks::{FetchError, JwksManager};
use crate::token::{self, KeySet, KeyThumbprint, TokenError, ValidatedToken};
use crate::upstream::Upstream;

/// The service: configuration, keys, the current policy, cache, audit and metrics.
pub struct Bridge {
    config: Config,
    issuer: Arc<Issuer>,
    policy: RwLock<Arc<Policy>>,
    cache: Arc<CredentialCache>,
    audit: Arc<Audit>,
    /// Single use and rate limits: this replica's own, or Redis for all replicas.
    shared: Arc<dyn SharedState>,
    failed_validations: Option<FailedValidations>,
    /// The revocations this replica applies.
    revocations: Arc<Revocations>,
    /// The claims of the reference tokens handed out.
    references: ReferenceStore,
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
        let metrics = Arc::new(Metrics::new().map_err(StartError::Metrics)?);
        let policy = Policy::build(
            &config.trust,
            config.source.as_deref(),
            &config.mappings_dir,
            issuer.url(),
            None,
            &metrics,
        )?;
        let signer: Arc<dyn AssertionSigner> = issuer.clone();
        let providers = Providers::default()
            .aws(Arc::new(AwsProvider::new(&config.aws, Arc::clone(&signer))))
            .gcp(Arc::new(
                GcpProvider::new(&config.gcp, Arc::clone(&signer)).map_err(StartError::Provider)?,
            ))
            .azure(Arc::new(
                AzureProvider::new(&config.azure, Arc::clone(&signer))
                    .map_err(StartError::Provider)?,
            ))
            .jwt(Arc::new(JwtProvider::new(signer)));
        let (shared, revocation_store, references) = stores(&config, &metrics)?;
        let revocations = Revocations::new(revocation_store, Arc::clone(&metrics))
            .map_err(StartError::Revocations)?;
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
        if revocations.backend() == "memory" {
            tracing::warn!(
                "revocations are kept in memory only and are lost on restart: set revocations.file (one replica) or shared_state (several)"
            );
        }
        let bridge = Arc::new(Bridge {
            cache: CredentialCache::over(
                config.cache.max_entries,
                Arc::new(Upstream::new(
                    providers,
                    Some(Arc::clone(&metrics)),
                    Breaker::default,
                )),
            ),
            policy: RwLock::new(Arc::new(policy)),
            shared,
            failed_validations: config.failed_validation_limit.map(FailedValidations::new),
            revocations,
            references,
            config,
            issuer,
            audit,
            metrics,
        });
        let watched = Arc::downgrade(&bridge);
        tokio::spawn(Revocations::watch(
            Arc::downgrade(&bridge.revocations),
            move |applied| {
                if let Some(bridge) = watched.upgrade() {
                    bridge.applied(applied);
                }
            },
        ));
        Ok(bridge)
    }

    /// Reloads the trust list (from the config file, when there is one) and every mapping file,
    /// validates them in full and swaps them in at once. On any error the current policy stays,
    /// every problem is logged, and `stsbridge_config_reload_total{outcome="error"}` counts it.
    /// Settings that need a restart (listener, TLS, issuer, providers, cache, limits, audit,
    /// shared state) are not reloaded; a change to them is logged.
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
                    || fresh.shared_state != self.config.shared_state
                {
                    tracing::warn!(
                        "listen, tls, issuer, audit and shared_state changes take effect only after a restart"
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

    /// Sets the signing key gauges from the issuer's keys now (before each scrape).
    pub fn update_key_metrics(&self) {
        let issuer = self.issuer();
        if let Some(created) = issuer.active_created() {
            self.metrics
                .signing_key_created
                .set(crate::token::unix_seconds(created) as i64);
        }
        self.metrics
            .signing_keys_published
            .set(issuer.published_kids().len() as i64);
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
    pub async fn exchange(&self, req: ExchangeRequest<'_>) -> Result<Exchanged, Failure> {
        let started = std::time::Instant::now();
        let now = SystemTime::now();
        let policy = self.policy();
        let decision_id = random_id().map_err(|e| {
            tracing::error!("no exchange without a decision id: {e}");
            Failure {
                decision_id: None,
                error: e.into(),
                hint: None,
            }
        })?;
        let mut event = AuditEvent::opened(
            now,
            &decision_id,
            req.endpoint.as_str(),
            req.target,
            req.client,
            req.client_names,
            req.request_id,
        );
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
        let mut hint = None;
        match &result {
            Ok(exchanged) => {
                event.outcome = "allow";
                event.reason = "granted".into();
                event.cache = Some(exchanged.cache.as_str());
                let entry = &exchanged.entry;
                event.upstream_latency_ms = Some(entry.upstream.latency.as_millis() as u64);
                event.upstream_request_id = entry.upstream.request_id.as_deref().map(str::to_owned);
                event.assertion_jti = entry.upstream.assertion_jti.as_deref().map(str::to_owned);
                event.credential_expiry = Some(rfc3339(entry.credential.expires_at()));
                event.credential_id_hash = Some(short_hash(entry.credential.public_id()));
            }
            Err(e) => {
                event.outcome = e.outcome();
                event.reason = e.reason();
                if let ExchangeError::Token(t) = e {
                    hint = policy.hint(req.token, t);
                    event.hint = hint.as_ref().map(|h| h.operator.clone());
                }
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
            self.audit.record_unverified(&event, client_ip, now).await
        } else {
            self.audit.record(&event).await
        };
        if let Err(e) = &audited {
            self.metrics.audit_failures.inc();
            tracing::error!(decision_id = %decision_id, fail_open = self.config.audit.fail_open, "audit write failed: {e}");
        }
        // Metric labels are bounded: a target name only when the mappings know it.
        let target = policy.mappings.target(req.target);
        let outcome = if audited.is_err() && !self.config.audit.fail_open && result.is_ok() {
            "error"
        } else {
            event.outcome
        };
        match (outcome, target, event.provider) {
            // A grant, the common case: the target's own series, resolved once.
            ("allow", Some(t), Some(provider)) => t
                .grants
                .get(&self.metrics.exchanges, provider, &t.name)
                .inc(),
            _ => self
                .metrics
                .exchanges
                .with_label_values(&[
                    outcome,
                    event.provider.unwrap_or("none"),
                    target.map_or("unknown", |t| &*t.name),
                ])
                .inc(),
        }
        self.metrics
            .exchange_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(mut exchanged) => {
                if audited.is_err() && !self.config.audit.fail_open {
                    return Err(Failure {
                        decision_id: Some(decision_id),
                        error: ExchangeError::AuditFailed,
                        hint: None,
                    });
                }
                exchanged.decision_id = decision_id;
                Ok(exchanged)
            }
            Err(error) => {
                log_failure(&decision_id, &error, event.hint.as_deref());
                Err(Failure {
                    decision_id: Some(decision_id),
                    error,
                    hint: hint.and_then(|h| h.caller),
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
    ) -> Result<Exchanged, ExchangeError> {
        let token = self
            .validate(policy, req.token, now, &mut event.caller)
            .instrument(tracing::debug_span!("validate"))
            .await
            .map_err(|e| match e {
                TokenError::KeysUnavailable => ExchangeError::KeysUnavailable,
                e => ExchangeError::Token(e),
            })?;
        // A token bound to a key (`cnf`) is good only with its proof on this request.
        if !token::binding_holds(&token.claims, req.token, req.possession()) {
            return Err(ExchangeError::Token(TokenError::BindingMismatch));
        }
        let trust = policy.trust_by_iss.get(&token.issuer);
        // The subject's own delegation chain, carried on only where its issuer is trusted to
        // assert one (stsbridge itself, or `accept_act: true`).
        let prior_act = prior_chain(&token.claims, trust.is_some_and(|t| t.accept_act))
            .map_err(|e| ExchangeError::InvalidRequest(e.to_string()));
        // The actor is validated and admitted exactly like the subject (single use in any
        // position, limits), and authorized below by the rules and the subject's `may_act`.
        let actor = match (&prior_act, req.actor_token) {
            (Ok(_), Some(raw)) => {
                let mut actor_caller = Caller::default();
                let validated = self
                    .validate(policy, raw, now, &mut actor_caller)
                    .instrument(tracing::debug_span!("validate_actor"))
                    .await;
                event.actor = Some(actor_caller);
                // Keys that cannot be fetched are the service's trouble, not a bad request: the
                // caller retries, as it would for the subject.
                Some(
                    validated
                        .map_err(|e| match e {
                            TokenError::KeysUnavailable => ExchangeError::KeysUnavailable,
                            e => ExchangeError::ActorToken(e),
                        })
                        .and_then(|a| {
                            if token::binding_holds(&a.claims, raw, req.possession()) {
                                Ok(a)
                            } else {
                                Err(ExchangeError::ActorBinding)
                            }
                        }),
                )
            }
            _ => None,
        };
        let valid_actor = actor.as_ref().and_then(|a| a.as_ref().ok()).map(Arc::clone);

        // A revocation refuses before anything is spent or decided.
        self.check_revoked(
            policy,
            Presented {
                token: &token,
                raw: req.token,
                chain: prior_act.as_ref().ok().and_then(|p| p.chain()),
            },
            valid_actor
                .as_deref()
                .zip(req.actor_token)
                .map(|(a, raw)| Presented {
                    token: a,
                    raw,
                    chain: None,
                }),
            req.target,
            now,
            event,
        )?;

        // The decision is a pure function of the validated tokens: taken before admission so that
        // the target's bucket is spent only for an allowed target, and admission is one call.
        let mappings = &policy.mappings;
        let decision = match (&prior_act, &actor) {
            (Ok(_), None | Some(Ok(_))) => Some(
                tracing::debug_span!("map", target = %req.target).in_scope(|| {
                    mappings.decide_with_actor(
                        &token,
                        req.client_names,
                        req.target,
                        valid_actor.as_deref(),
                    )
                }),
            ),
            _ => None,
        };
        let allowed = match &decision {
            Some(Decision::Allow { target, .. })
                if valid_actor
                    .as_deref()
                    .is_none_or(|a| may_act_allows(&token.claims, a)) =>
            {
                Some(&*target.name)
            }
            _ => None,
        };

        // Errors are reported in the order of the steps: the subject's admission, its chain, the
        // actor's validation and admission, the decision, the target's limit.
        let candidates = admission::Candidates {
            subject: &token,
            actor: valid_actor.as_deref(),
            target: allowed,
            proof: req
                .dpop
                .map(|p| (p.jti.as_str(), p.forget_at(self.config.dpop_max_age))),
        };
        let mut refused = None;
        // Held until the exchange ends: the trust entries' `max_concurrent` count them.
        let _slots = match self.admit(policy, candidates, now).await {
            Ok(slots) => slots,
            Err((admission::Stage::Subject, e)) => return Err(e),
            Err(later) => {
                refused = Some(later);
                Vec::new()
            }
        };
        let prior_act = prior_act?;
        event.prior_act = prior_act.audit_label();
        let actor = actor.transpose()?;
        if let Some((admission::Stage::Actor, e)) = refused {
            return Err(e);
        }
        // Taken above whenever the chain and the actor are valid, which they are by now.
        let decision = match decision {
            Some(decision) => decision,
            None => {
                mappings.decide_with_actor(&token, req.client_names, req.target, actor.as_deref())
            }
        };

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
                    mappings.denial_reasons(&token, req.client_names, req.target)
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
                if allowed.is_none() {
                    return Err(ExchangeError::ActorNotAllowed {
                        rule: rule.name.clone(),
                    });
                }
                Arc::clone(target)
            }
        };
        event.provider = Some(target.kind.provider());
        if let Some((_, e)) = refused {
            return Err(e);
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
        let mut request = tracing::debug_span!("render", target = %target.name)
            .in_scope(|| render(&target, &input))
            .map_err(|e| match e {
                RenderError::ScopeNotAvailable(_) => ExchangeError::Scope(e),
                e => ExchangeError::Render(e),
            })?;
        bind(&mut request, &target, req)?;
        let provider = request.kind();
        let answer = Answer::of(&request);
        let upstream =
            tracing::debug_span!("upstream", provider = %provider, target = %target.name);
        let (entry, cache) = self
            .cache
            .get(Arc::new(request), now)
            .instrument(upstream)
            .await
            .map_err(ExchangeError::Provider)?;
        self.metrics.cache_event(cache).inc();
        if cache == CacheEvent::Miss {
            self.metrics
                .upstream_duration
                .with_label_values(&[provider.as_str()])
                .observe(entry.upstream.latency.as_secs_f64());
        }
        let reference = match &target.kind {
            TargetKind::Jwt(jwt) if jwt.reference => Some(self.reference_for(&entry, now).await?),
            _ => None,
        };
        Ok(Exchanged {
            decision_id: String::new(),
            target: std::sync::Arc::clone(&target.name),
            answer,
            entry,
            cache,
            reference,
            dpop_bound: matches!(&target.kind, TargetKind::Jwt(j) if j.bind == Some(crate::mapping::Binding::Dpop)),
        })
    }

    /// Where single use and rate limits are kept, and whether it works as configured.
    pub fn shared_state(&self) -> &dyn SharedState {
        &*self.shared
    }

    /// Readiness under `policy`: a signing key, every issuer's JWKS loaded, and the revocations
    /// read.
    pub fn ready(&self, policy: &Policy) -> bool {
        self.issuer.active_kid().is_some()
            && policy.jwks().all_loaded()
            && self.revocations.snapshot().is_some()
    }
}

/// Where this replica keeps what must outlive a request: single use and rate limits,
/// revocations, reference tokens. With `shared_state`, all three in Redis; without it, this
/// process's memory, and `revocations.file` for the revocations.
fn stores(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn SharedState>, RevocationStore, ReferenceStore), StartError> {
    let Some(redis) = &config.shared_state else {
        return Ok((
            Arc::new(MemoryState::new(config.replay_store_entries)),
            RevocationStore::local(config.revocations.file.clone())
                .map_err(StartError::Revocations)?,
            ReferenceStore::memory(),
        ));
    };
    let password = match &redis.password_file {
        None => None,
        Some(file) => Some(crate::shared::read_password(file).map_err(|e| {
            StartError::SharedState(format!(
                "shared_state.redis.password_file {}: {e}",
                file.display()
            ))
        })?),
    };
    let state = RedisState::connect(
        redis,
        password,
        config.replay_store_entries,
        Arc::clone(metrics),
    )
    .map_err(StartError::SharedState)?;
    let revocations = RevocationStore::redis(state.handle());
    let references = ReferenceStore::redis(state.handle());
    Ok((Arc::new(state), revocations, references))
}

/// Binds a minted token to its caller as its target asks (`bind: mtls`: `cnf.x5t#S256` of the
/// caller's TLS client certificate; `bind: dpop`: `cnf.jkt` of its DPoP proof's key; either is
/// then part of the cache key); a caller without one is refused (400).
fn bind(
    request: &mut ProviderRequest,
    target: &crate::mapping::Target,
    req: &ExchangeRequest<'_>,
) -> Result<(), ExchangeError> {
    let (ProviderRequest::Jwt(jwt_request), TargetKind::Jwt(jwt)) = (request, &target.kind) else {
        return Ok(());
    };
    match jwt.bind {
        None => Ok(()),
        Some(crate::mapping::Binding::Dpop) => {
            let Some(proof) = req.dpop else {
                return Err(ExchangeError::Dpop(format!(
                    "{} needs a DPoP proof: its tokens are bound to the key of the caller's proof (bind: dpop); send one in the DPoP header",
                    target.name
                )));
            };
            jwt_request.cnf = Some(serde_json::json!({ "jkt": proof.jkt }).to_string());
            Ok(())
        }
        Some(crate::mapping::Binding::Mtls) => {
            let Some(thumbprint) = req.client_thumbprint else {
                return Err(ExchangeError::InvalidRequest(format!(
                    "{} needs a client certificate: its tokens are bound to the caller's TLS client certificate (bind: mtls); connect with one",
                    target.name
                )));
            };
            jwt_request.cnf = Some(serde_json::json!({ "x5t#S256": thumbprint }).to_string());
            Ok(())
        }
    }
}
