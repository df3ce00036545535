//! Why an exchange gave no credential, or the service could not start: the error vocabulary,
//! with each error's stable reason code and audit outcome. `http::error` maps them to responses.

use super::*;

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
    /// The DPoP proof is missing where the target needs one, or was refused (400
    /// `invalid_dpop_proof`).
    #[error("{0}")]
    Dpop(String),
    /// The actor token is bound to a key (`cnf`) this request does not prove (401).
    #[error("actor token: the token is bound to a key this request does not prove (cnf)")]
    ActorBinding,
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
    /// Too many requests from this caller, or for this target from all callers together (429).
    #[error("rate limited")]
    RateLimited {
        /// When to retry.
        retry_after: Duration,
        /// The target whose shared budget (`limits.per_target`) is spent; `None` when it is the
        /// caller's own (`limits.per_subject`).
        target: Option<String>,
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
    /// The shared state (Redis) cannot be reached or answered something unexpected, so this
    /// token's single use cannot be recorded and it is refused rather than left replayable on
    /// other replicas (503).
    #[error("the shared state is unavailable, so single use cannot be recorded")]
    SharedStateUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// A revocation covers the subject or actor token, its issuer, a party of its chain, or the
    /// target (403 `access_denied`, reason `revoked`).
    #[error("revoked (revocation {id})")]
    Revoked {
        /// The revocation's id.
        id: String,
        /// Its kind.
        kind: crate::revocation::Kind,
    },
    /// The revocations have not been read since this replica started (the store is away), so
    /// nothing is handed out that one might cover (503).
    #[error("the revocation list is not loaded yet")]
    RevocationsUnavailable,
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
    pub(super) fn reason(&self) -> String {
        match self {
            ExchangeError::InvalidRequest(_) => "invalid_request".into(),
            ExchangeError::Token(e) | ExchangeError::ActorToken(e) => e.code().into(),
            ExchangeError::ActorBinding => TokenError::BindingMismatch.code().into(),
            ExchangeError::Dpop(_) => "invalid_dpop_proof".into(),
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
            ExchangeError::SharedStateUnavailable { .. } => "shared_state_unavailable".into(),
            ExchangeError::Revoked { .. } => "revoked".into(),
            ExchangeError::RevocationsUnavailable => "revocations_unavailable".into(),
            ExchangeError::Provider(e) => e.reason().to_owned(),
            ExchangeError::AuditFailed => "audit_failed".into(),
            ExchangeError::Random(_) => "random_failed".into(),
        }
    }

    /// [`reason`](Self::reason) as a metric label: bounded, so a cloud's own error code (which
    /// the upstream chooses) is counted as `upstream_rejected`.
    pub fn metric_reason(&self) -> String {
        match self {
            ExchangeError::Provider(e) if matches!(**e, ProviderError::Rejected { .. }) => {
                "upstream_rejected".into()
            }
            _ => self.reason(),
        }
    }

    pub(super) fn outcome(&self) -> &'static str {
        match self {
            ExchangeError::Denied { .. }
            | ExchangeError::Revoked { .. }
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
    /// What the caller may be told to fix, beyond the error itself.
    pub hint: Option<&'static str>,
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
    #[error("cannot open the audit sink")]
    Audit(#[source] std::io::Error),
    /// The JWKS client could not be built.
    #[error(transparent)]
    Jwks(#[from] FetchError),
    /// A provider's HTTP client could not be built.
    #[error(transparent)]
    Provider(ProviderError),
    /// The shared state's client could not be set up (its password file, its URL).
    #[error("{0}")]
    SharedState(String),
    /// The revocations file could not be read.
    #[error("cannot load the revocations")]
    Revocations(#[source] crate::revocation::StoreError),
    /// The metrics registry could not be built.
    #[error("cannot set up the metrics registry")]
    Metrics(#[source] prometheus::Error),
}

pub(super) fn log_failure(decision_id: &str, error: &ExchangeError, hint: Option<&str>) {
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
        _ => match hint {
            Some(hint) => {
                tracing::info!(decision_id, reason = %error.reason(), hint, "exchange refused: {error}")
            }
            None => {
                tracing::info!(decision_id, reason = %error.reason(), "exchange refused: {error}")
            }
        },
    }
}
