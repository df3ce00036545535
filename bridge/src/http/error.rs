//! The one place where failures become HTTP responses.
//!
//! Bodies are RFC 6749 style: `{"error", "error_description", "decision_id"}` with stable codes.
//! Descriptions say what is wrong in terms the caller can act on; internal detail (the cloud's own
//! message, file paths) goes to the log, keyed by the decision id, not to the caller.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stsbridge_providers::ProviderError;

use crate::exchange::{ExchangeError, Failure};
use crate::issuer::RandomError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
    decision_id: Option<String>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_token` for a request without a token.
    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "send the subject token in the Authorization header",
        )
    }

    /// 413 for a body over the limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            ),
        )
    }

    /// 404 for paths that do not exist.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// With the decision id of the request it answers.
    pub fn with_decision_id(mut self, decision_id: &str) -> Self {
        self.decision_id = Some(decision_id.to_owned());
        self
    }

    /// With a `Retry-After`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
            decision_id: None,
            retry_after: None,
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        let e = &f.error;
        let (status, code, description) = match e {
            ExchangeError::InvalidRequest(m) => {
                (StatusCode::BAD_REQUEST, "invalid_request", m.clone())
            }
            // The reason code stays last, in parentheses: clients read it there.
            ExchangeError::Token(t) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                match f.hint {
                    Some(hint) => format!("{t}; {hint} ({})", t.code()),
                    None => format!("{} ({})", t, t.code()),
                },
            ),
            ExchangeError::Dpop(m) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", m.clone()),
            ExchangeError::ActorBinding => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                format!("{e} ({})", crate::token::TokenError::BindingMismatch.code()),
            ),
            ExchangeError::ActorToken(t) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("actor token: {} ({})", t, t.code()),
            ),
            ExchangeError::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "the keys of the token's issuer could not be fetched; try again shortly".into(),
            ),
            ExchangeError::UnknownTarget(t) => (
                StatusCode::NOT_FOUND,
                "unknown_target",
                format!("there is no target named {t:?}"),
            ),
            ExchangeError::Denied { explanation, .. } if !explanation.is_empty() => (
                StatusCode::FORBIDDEN,
                "access_denied",
                format!("{e}: {}", explanation.join(" | ")),
            ),
            ExchangeError::Denied { .. } => (
                StatusCode::FORBIDDEN,
                "access_denied",
                format!(
                    "{e}; the operator can see why with stsbridge explain or the audit event of this decision id"
                ),
            ),
            ExchangeError::Revoked { .. } => (
                StatusCode::FORBIDDEN,
                "access_denied",
                format!("{e}: the token, its caller, its issuer or the target has been revoked"),
            ),
            ExchangeError::RevocationsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation list cannot be read yet; retry after Retry-After (revocations_unavailable)".into(),
            ),
            ExchangeError::ActorNotAllowed { .. } => (
                StatusCode::FORBIDDEN,
                "access_denied",
                format!(
                    "{e}; an allow rule's actors: and the subject token's may_act decide who may"
                ),
            ),
            ExchangeError::Scope(r) => (StatusCode::BAD_REQUEST, "invalid_scope", r.to_string()),
            ExchangeError::Render(r) => (StatusCode::FORBIDDEN, "access_denied", r.to_string()),
            ExchangeError::RateLimited { target: None, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this caller".into(),
            ),
            ExchangeError::RateLimited {
                target: Some(target),
                ..
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for target {target} from all callers together"),
            ),
            ExchangeError::PartnerLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests: {e}"),
            ),
            ExchangeError::TooManyFailures { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests with invalid tokens from this address; retry after Retry-After"
                    .into(),
            ),
            ExchangeError::ReplayStoreFull { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "this single-use token cannot be recorded now (too many are live); retry after Retry-After"
                    .into(),
            ),
            ExchangeError::SharedStateUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "this single-use token cannot be recorded now; retry after Retry-After \
                 (shared_state_unavailable)"
                    .into(),
            ),
            ExchangeError::Provider(p) => match p.as_ref() {
                ProviderError::Rejected { code, hint, .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_rejected",
                    format!("{} refused with {code}: {hint}", provider_name(p)),
                ),
                ProviderError::InvalidResponse { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_rejected",
                    format!(
                        "{} returned a response stsbridge could not use",
                        provider_name(p)
                    ),
                ),
                ProviderError::Throttled { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::CircuitOpen { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream_unavailable",
                    p.to_string(),
                ),
                ProviderError::Assertion(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "stsbridge could not complete the exchange".into(),
                ),
            },
            ExchangeError::AuditFailed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the exchange could not be recorded, so no credential was issued".into(),
            ),
            ExchangeError::Random(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "stsbridge could not complete the exchange".into(),
            ),
        };
        let retry_after = match e {
            ExchangeError::RateLimited { retry_after, .. }
            | ExchangeError::PartnerLimited { retry_after, .. }
            | ExchangeError::TooManyFailures { retry_after }
            | ExchangeError::ReplayStoreFull { retry_after }
            | ExchangeError::SharedStateUnavailable { retry_after } => Some(*retry_after),
            ExchangeError::Provider(p) => match p.as_ref() {
                ProviderError::Throttled { retry_after, .. }
                | ProviderError::CircuitOpen { retry_after, .. } => Some(*retry_after),
                ProviderError::Unavailable { .. } => Some(Duration::from_secs(1)),
                _ => None,
            },
            ExchangeError::KeysUnavailable => Some(Duration::from_secs(5)),
            ExchangeError::RevocationsUnavailable => Some(Duration::from_secs(1)),
            _ => None,
        };
        ApiError {
            status,
            code,
            description,
            decision_id: f.decision_id,
            retry_after,
        }
    }
}

/// 500 for a request that needed a random id the system's generator could not give.
impl From<RandomError> for ApiError {
    fn from(_: RandomError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "stsbridge could not complete the request",
        )
    }
}

fn provider_name(p: &ProviderError) -> &'static str {
    p.provider().map_or("the provider", |k| k.upstream_name())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::api::ErrorBody {
            error: self.code,
            error_description: &self.description,
            decision_id: self.decision_id.as_deref(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
