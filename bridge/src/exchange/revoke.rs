//! The revocation side of the service: the check every exchange makes, the callers of the built-in
//! targets (`stsbridge:revoke`, `stsbridge:introspect`) authorized by the ordinary rules, and the
//! revocation API's operations with their audit events.

use super::*;
use crate::audit::RevocationEvent;
use crate::revocation::{
    Applied, CreateError, Invalid, Known, NewRevocation, Revocation, StoreError,
};

/// A caller of a built-in target, authorized.
#[derive(Debug)]
pub struct Authorized {
    /// The decision id of the request.
    pub decision_id: String,
    /// Who, as the audit events name them.
    pub caller: Caller,
    /// The caller's validated token.
    pub token: Arc<ValidatedToken>,
}

/// Why a revocation request failed after its caller was authorized.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The request is wrong (400, the field named).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No revocation has this id (404).
    #[error("no revocation has this id")]
    NotFound,
    /// Too many are live (409).
    #[error(transparent)]
    Full(CreateError),
    /// The store cannot be read or written (503): nothing was stored.
    #[error("the revocation store is unavailable")]
    Store(#[source] StoreError),
    /// No id could be drawn (500).
    #[error(transparent)]
    Random(#[from] crate::issuer::RandomError),
}

impl From<CreateError> for RevokeError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Store(s) => RevokeError::Store(s),
            full @ CreateError::Full => RevokeError::Full(full),
        }
    }
}

/// Where a caller of a built-in target asked.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRequest<'a> {
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// `stsbridge:revoke` or `stsbridge:introspect`.
    pub target: &'static str,
    /// The endpoint's name in the audit event (`revocations`, `introspect`).
    pub endpoint: &'static str,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// The DNS names of the caller's verified client certificate.
    pub client_names: &'a [String],
    /// The HTTP request id.
    pub request_id: Option<&'a str>,
    /// RFC 8705's `x5t#S256` of the caller's client certificate, if it presented one.
    pub client_thumbprint: Option<&'a str>,
}

impl Bridge {
    /// The revocations this replica applies.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Refuses the exchange when a live revocation covers the subject token (its issuer,
    /// subject, `jti`, bytes, minted `jti`, or a party of its kept chain), the actor token, or
    /// the target. Refuses everything while the revocations were never read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_revoked(
        &self,
        policy: &Policy,
        subject: Presented<'_>,
        actor: Option<Presented<'_>>,
        target: &str,
        now: SystemTime,
        event: &mut AuditEvent,
    ) -> Result<(), ExchangeError> {
        let Some(set) = self.revocations.snapshot() else {
            return Err(ExchangeError::RevocationsUnavailable);
        };
        if set.is_empty() {
            return Ok(());
        }
        let trust_of = |iss: &str| policy.trust_by_iss.get(iss).map(|t| t.name.clone());
        let found = set
            .covering(&subject, OWN_TRUST, &trust_of, now)
            .or_else(|| {
                actor
                    .as_ref()
                    .and_then(|a| set.covering(a, OWN_TRUST, &trust_of, now))
            })
            .or_else(|| set.of_target(target, now));
        match found {
            None => Ok(()),
            Some(r) => {
                self.metrics
                    .revoked_denials
                    .with_label_values(&[r.kind.as_str()])
                    .inc();
                event.revocation = Some(r.id.clone());
                Err(ExchangeError::Revoked {
                    id: r.id.clone(),
                    kind: r.kind,
                })
            }
        }
    }

    /// What a re-read changed: each new revocation is logged and audited, and a target's
    /// revocation drops that target's cached credentials.
    pub(super) fn applied(&self, applied: &Applied) {
        let now = SystemTime::now();
        for r in &applied.added {
            tracing::info!(revocation = %r.id, kind = r.kind.as_str(), "revocation applied");
            self.audit_revocation("revocation_applied", r, None);
            if r.kind == crate::revocation::Kind::Target && r.live(now) {
                self.drop_cached(&r.value);
            }
        }
        for r in &applied.dropped {
            tracing::info!(revocation = %r.id, kind = r.kind.as_str(), "revocation no longer applies (removed or expired)");
        }
    }

    fn drop_cached(&self, target: &str) {
        let cache = Arc::clone(&self.cache);
        let target = target.to_owned();
        tokio::spawn(async move {
            let dropped = cache.drop_target(&target).await;
            tracing::info!(target = %target, dropped, "cached credentials of a revoked target dropped");
        });
    }

    fn audit_revocation(&self, kind: &'static str, r: &Revocation, by: Option<&Authorized>) {
        let event = RevocationEvent {
            time: rfc3339(SystemTime::now()),
            event: kind,
            decision_id: by.map(|a| a.decision_id.as_str()),
            revocation: r.view(),
            caller: by.map(|a| &a.caller),
            request_id: None,
        };
        if let Err(e) = self.audit.record_revocation(&event) {
            self.metrics.audit_failures.inc();
            tracing::error!(revocation = %r.id, "audit write failed: {e}");
        }
    }

    /// Authorizes a caller of a built-in target: a valid token from a trusted issuer, not
    /// revoked, that an enforced rule allows `req.target`. A refusal is audited (like an
    /// exchange's) and returned with its decision id.
    pub async fn authorize(&self, req: BuiltinRequest<'_>) -> Result<Authorized, Failure> {
        let now = SystemTime::now();
        let policy = self.policy();
        let decision_id = random_id().map_err(|e| Failure {
            decision_id: None,
            error: e.into(),
            hint: None,
        })?;
        let mut event = AuditEvent::opened(
            now,
            &decision_id,
            req.endpoint,
            req.target,
            req.client,
            req.client_names,
            req.request_id,
        );
        let result = self.authorize_in(&policy, &req, now, &mut event).await;
        match result {
            Ok(token) => Ok(Authorized {
                decision_id,
                caller: event.caller,
                token,
            }),
            Err(error) => {
                event.outcome = error.outcome();
                event.reason = error.reason();
                let client_ip = req.client.map(|a| a.ip());
                let audited = if event.caller.verified {
                    self.audit.record(&event).await
                } else {
                    self.audit.record_unverified(&event, client_ip, now).await
                };
                if let Err(e) = audited {
                    self.metrics.audit_failures.inc();
                    tracing::error!(decision_id = %decision_id, "audit write failed: {e}");
                }
                log_failure(&decision_id, &error, None);
                Err(Failure {
                    decision_id: Some(decision_id),
                    error,
                    hint: None,
                })
            }
        }
    }

    async fn authorize_in(
        &self,
        policy: &Policy,
        req: &BuiltinRequest<'_>,
        now: SystemTime,
        event: &mut AuditEvent,
    ) -> Result<Arc<ValidatedToken>, ExchangeError> {
        let client_ip = req.client.map(|a| a.ip());
        if let Some(budget) = &self.failed_validations
            && let Err(retry_after) = budget.admit(client_ip, now)
        {
            self.metrics.rate_limited.inc();
            return Err(ExchangeError::TooManyFailures { retry_after });
        }
        let Some(raw) = req.token else {
            return Err(ExchangeError::Token(TokenError::Malformed));
        };
        let token = match self.validate(policy, raw, now, &mut event.caller).await {
            Ok(t) => t,
            Err(TokenError::KeysUnavailable) => return Err(ExchangeError::KeysUnavailable),
            Err(e) => {
                if let Some(budget) = &self.failed_validations {
                    budget.spend(client_ip, now);
                }
                return Err(ExchangeError::Token(e));
            }
        };
        // A bound caller proves its key here too.
        let possession = crate::token::Possession {
            certificate: req.client_thumbprint,
            dpop: None,
        };
        if !crate::token::binding_holds(&token.claims, raw, possession) {
            return Err(ExchangeError::Token(TokenError::BindingMismatch));
        }
        let chain = match prior_chain(
            &token.claims,
            policy
                .trust_by_iss
                .get(&token.issuer)
                .is_some_and(|t| t.accept_act),
        ) {
            Ok(crate::mapping::delegation::PriorAct::Kept(v)) => Some(v),
            _ => None,
        };
        self.check_revoked(
            policy,
            Presented {
                token: &token,
                raw,
                chain: chain.as_ref(),
            },
            None,
            req.target,
            now,
            event,
        )?;
        match policy
            .mappings
            .permits(&token, req.client_names, req.target)
        {
            Ok(rule) => {
                event.rule = Some(rule.name.clone());
                // Admitted like an exchange's subject: its limits, and the single use of its
                // `jti` where its issuer says `replay: reject`.
                let candidates = super::admission::Candidates {
                    subject: &token,
                    actor: None,
                    target: None,
                    proof: None,
                };
                self.admit(policy, candidates, now)
                    .await
                    .map_err(|(_, e)| e)?;
                Ok(token)
            }
            Err(rule) => {
                event.rule = rule.map(|r| r.name.clone());
                Err(ExchangeError::Denied {
                    rule: event.rule.clone(),
                    target: req.target.to_owned(),
                    explanation: Vec::new(),
                })
            }
        }
    }

    /// Creates the revocation `body` asks for, on behalf of `by`: checked against the trust
    /// entries and targets in use now, stored (every replica is told), applied here at once,
    /// and audited.
    pub async fn revoke(
        &self,
        by: &Authorized,
        body: NewRevocation,
    ) -> Result<Revocation, RevokeError> {
        let now = SystemTime::now();
        let id = format!("rev_{}", random_id()?);
        let who = format!(
            "{}:{}",
            by.token.trust,
            by.token.subject.chars().take(256).collect::<String>()
        );
        // Checked against the names in use now; nothing of it is held across the store's call.
        let revocation = {
            let policy = self.policy();
            let trust = |name: &str| {
                name == OWN_TRUST || policy.trust_by_iss.values().any(|t| t.name == name)
            };
            let target = |name: &str| policy.mappings.target(name).is_some();
            let known = Known {
                trust: &trust,
                target: &target,
                max_for: self.config.revocations.max_for,
            };
            body.check(&known, id, who, now)?
        };
        let applied = self.revocations.create(&revocation, now).await?;
        self.audit_revocation("revocation_created", &revocation, Some(by));
        tracing::warn!(
            revocation = %revocation.id,
            kind = revocation.kind.as_str(),
            by = %revocation.by,
            "revocation created"
        );
        self.applied(&applied);
        Ok(revocation)
    }

    /// Removes revocation `id` on behalf of `by`, audited.
    pub async fn unrevoke(&self, by: &Authorized, id: &str) -> Result<Revocation, RevokeError> {
        let (removed, applied) = self
            .revocations
            .remove(id, SystemTime::now())
            .await
            .map_err(RevokeError::Store)?;
        let removed = removed.ok_or(RevokeError::NotFound)?;
        self.audit_revocation("revocation_removed", &removed, Some(by));
        tracing::warn!(revocation = %removed.id, by = %by.token.subject, "revocation removed");
        self.applied(&applied);
        Ok(removed)
    }

    /// The reference token of `entry` (a minted JWT), made and stored the first time it is
    /// asked for: every caller served that cached token is handed the same handle.
    pub(super) async fn reference_for(
        &self,
        entry: &Entry,
        now: SystemTime,
    ) -> Result<secrecy::SecretString, ExchangeError> {
        let (stsbridge_providers::Credential::Token(t), Some(cell)) =
            (&entry.credential, entry.reference.as_deref())
        else {
            return Err(ExchangeError::InvalidRequest("not a token target".into()));
        };
        cell.get_or_try_init(|| async {
            let claims = crate::token::parse(secrecy::ExposeSecret::expose_secret(&t.token))
                .map(|p| serde_json::Value::Object(p.claims))
                .map_err(|e| ExchangeError::InvalidRequest(format!("minted token: {e}")))?;
            self.references
                .mint(&claims, t.expires_at, now)
                .await
                .map_err(|e| {
                    tracing::error!("no reference token: {}", crate::exit::chain(&e));
                    ExchangeError::SharedStateUnavailable {
                        retry_after: Duration::from_secs(1),
                    }
                })
        })
        .await
        .cloned()
    }

    /// RFC 7662's answer for `raw`: its claims when it is a token stsbridge minted, valid now,
    /// and no revocation covers it (its `jti`, subject or a party of its chain); else `None`
    /// (`{"active": false}`), whatever the reason.
    pub async fn introspect(&self, raw: &str) -> Option<serde_json::Value> {
        let now = SystemTime::now();
        let policy = self.policy();
        let token = if raw.starts_with(crate::revocation::reference::REFERENCE_PREFIX) {
            let claims = match self.references.claims(raw, now).await {
                Ok(c) => c?,
                Err(e) => {
                    tracing::warn!("reference token store: {}", crate::exit::chain(&e));
                    return None;
                }
            };
            Arc::new(reference_token(claims, self.issuer.url(), now)?)
        } else {
            let mut caller = Caller::default();
            let token = self.validate(&policy, raw, now, &mut caller).await.ok()?;
            if token.trust != OWN_TRUST {
                return None;
            }
            token
        };
        // stsbridge issued it, so no clock skew to allow for: inactive from the second of `exp`
        // (validation alone would allow the trust entry's leeway).
        if crate::token::unix_seconds(now) >= token.expires_at {
            return None;
        }
        let chain = prior_chain(&token.claims, true).ok()?;
        let set = self.revocations.snapshot()?;
        let trust_of = |iss: &str| policy.trust_by_iss.get(iss).map(|t| t.name.clone());
        let presented = Presented {
            token: &token,
            raw,
            chain: chain.chain(),
        };
        if set
            .covering(&presented, OWN_TRUST, &trust_of, now)
            .is_some()
        {
            return None;
        }
        let mut answer = serde_json::Map::new();
        answer.insert("active".into(), serde_json::Value::Bool(true));
        for name in [
            "iss", "sub", "aud", "scope", "exp", "iat", "nbf", "jti", "act", "cnf",
        ] {
            if let Some(v) = token.claims.get(name) {
                answer.insert(name.into(), v.clone());
            }
        }
        let token_type = if token
            .claims
            .get("cnf")
            .is_some_and(|c| c.get("jkt").is_some())
        {
            "DPoP"
        } else {
            "Bearer"
        };
        answer.insert("token_type".into(), token_type.into());
        Some(serde_json::Value::Object(answer))
    }

    /// For a revocation of an AWS target: the roles it assumes and the inline role policy that
    /// denies every session of them issued before `since` (AWS's own way to revoke sessions,
    /// `aws:TokenIssueTime`), since credentials already issued cannot be recalled.
    pub fn aws_recall(&self, revocation: &Revocation) -> Option<serde_json::Value> {
        if revocation.kind != crate::revocation::Kind::Target {
            return None;
        }
        let policy = self.policy();
        let target = policy.mappings.target(&revocation.value)?;
        let TargetKind::Aws(aws) = &target.kind else {
            return None;
        };
        Some(serde_json::json!({
            "roles": aws.roles(),
            "policy_name": "stsbridge-revoke-older-sessions",
            "policy": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Deny",
                    "Action": ["*"],
                    "Resource": ["*"],
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": rfc3339(revocation.created())}},
                }],
            },
        }))
    }

    /// The live revocations, from the store.
    pub async fn list_revocations(&self) -> Result<Vec<Revocation>, RevokeError> {
        self.revocations
            .list(SystemTime::now())
            .await
            .map_err(RevokeError::Store)
    }
}

/// The token a reference stands for, from its stored claims: stsbridge's own, unexpired at `now`.
fn reference_token(
    claims: serde_json::Value,
    own_url: &str,
    now: SystemTime,
) -> Option<ValidatedToken> {
    let serde_json::Value::Object(claims) = claims else {
        return None;
    };
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let expires_at = claims.get("exp").and_then(serde_json::Value::as_u64)?;
    if text("iss").as_deref() != Some(own_url) || crate::token::unix_seconds(now) >= expires_at {
        return None;
    }
    Some(ValidatedToken {
        trust: OWN_TRUST.to_owned(),
        issuer: own_url.to_owned(),
        subject: text("sub")?,
        jti: text("jti"),
        expires_at,
        claims,
    })
}
