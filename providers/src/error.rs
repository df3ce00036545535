//! Provider errors.
//!
//! Every variant is safe to show an operator: none carries a token or a credential. `Rejected` keeps
//! the cloud's own error code and adds what to check, because a 3 a.m. "AccessDenied" alone sends
//! people to the wrong console.

use std::time::Duration;

use crate::request::ProviderKind;
use crate::signer::SignError;

/// Why a provider could not issue a credential.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The upstream refused the request. Maps to 502 `upstream_rejected`.
    #[error("{} rejected the request with {code}: {hint}", provider.upstream_name())]
    Rejected {
        /// Which provider.
        provider: ProviderKind,
        /// The cloud's own error code, verbatim (`AccessDenied`, `InvalidIdentityToken`...).
        code: String,
        /// What the operator should check.
        hint: String,
        /// The cloud's own message, for the operator's log.
        upstream_message: Option<String>,
        /// The cloud's request id, when it gave one.
        request_id: Option<String>,
    },
    /// The upstream throttled us and retries within budget did not help. Maps to 503 with
    /// `Retry-After`.
    #[error("{} is throttling requests", provider.upstream_name())]
    Throttled {
        /// Which provider.
        provider: ProviderKind,
        /// How long the caller should wait.
        retry_after: Duration,
    },
    /// The upstream could not be reached or did not answer in time. Maps to 503.
    #[error("{} is unavailable: {detail}", provider.upstream_name())]
    Unavailable {
        /// Which provider.
        provider: ProviderKind,
        /// What went wrong (connection refused, timeout...).
        detail: String,
    },
    /// The provider's circuit breaker is open after repeated failures to reach it; no call was
    /// made. Maps to 503 with `Retry-After`.
    #[error("{} keeps failing; calls are paused", provider.upstream_name())]
    CircuitOpen {
        /// Which provider.
        provider: ProviderKind,
        /// When the next probe may go through.
        retry_after: Duration,
    },
    /// The upstream answered something we could not use. Maps to 502.
    #[error("{} returned an unusable response: {detail}", provider.upstream_name())]
    InvalidResponse {
        /// Which provider.
        provider: ProviderKind,
        /// What was wrong with it.
        detail: String,
    },
    /// stsbridge could not mint the assertion. Maps to 500.
    #[error("could not mint the assertion: {0}")]
    Assertion(#[from] SignError),
}

impl ProviderError {
    /// The provider concerned, when known.
    pub fn provider(&self) -> Option<ProviderKind> {
        match self {
            ProviderError::Rejected { provider, .. }
            | ProviderError::Throttled { provider, .. }
            | ProviderError::Unavailable { provider, .. }
            | ProviderError::CircuitOpen { provider, .. }
            | ProviderError::InvalidResponse { provider, .. } => Some(*provider),
            ProviderError::Assertion(_) => None,
        }
    }

    /// Whether the upstream could not be reached or kept throttling (what trips a circuit
    /// breaker), as opposed to answering.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable { .. } | ProviderError::Throttled { .. }
        )
    }

    /// A short stable reason code for audit events and metrics.
    pub fn reason(&self) -> &str {
        match self {
            ProviderError::Rejected { code, .. } => code,
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::Unavailable { .. } => "upstream_unavailable",
            ProviderError::CircuitOpen { .. } => "circuit_open",
            ProviderError::InvalidResponse { .. } => "invalid_upstream_response",
            ProviderError::Assertion(_) => "assertion_failed",
        }
    }
}
