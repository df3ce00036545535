//! The revocation API (`POST|GET /v1/revocations`, `DELETE /v1/revocations/{id}`) and RFC 7662
//! introspection (`POST /oauth2/introspect`). Callers authenticate with their own bearer token and
//! must be allowed the built-in target `stsbridge:revoke` / `stsbridge:introspect` by a rule.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection};
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{RequestId, api, bearer, openapi};
use crate::exchange::{Authorized, Bridge, BuiltinRequest, RevokeError};
use crate::mapping::{INTROSPECT_TARGET, REVOKE_TARGET};
use crate::revocation::{MAX_BODY_BYTES, NewRevocation};
use crate::tls::ClientIdentity;

/// Longest token introspected: what the exchange accepts.
const MAX_INTROSPECTED: usize = crate::token::MAX_TOKEN_BYTES;

/// A caller a rule allows the built-in target `T::TARGET`, authorized before the handler runs
/// (its refusal is the response).
pub(super) struct Operator<T>(Authorized, std::marker::PhantomData<T>);

/// Which built-in target an [`Operator`] was authorized for.
pub(super) trait Builtin {
    /// The built-in target.
    const TARGET: &'static str;
    /// The endpoint's name in the audit event.
    const ENDPOINT: &'static str;
}

/// `stsbridge:revoke`.
pub(super) struct Revoke;
impl Builtin for Revoke {
    const TARGET: &'static str = REVOKE_TARGET;
    const ENDPOINT: &'static str = "revocations";
}

/// `stsbridge:introspect`.
pub(super) struct Introspect;
impl Builtin for Introspect {
    const TARGET: &'static str = INTROSPECT_TARGET;
    const ENDPOINT: &'static str = "introspect";
}

impl<T: Builtin> FromRequestParts<Arc<Bridge>> for Operator<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, bridge: &Arc<Bridge>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::missing_token)?;
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.as_str());
        let identity = parts.extensions.get::<ClientIdentity>();
        let names = identity.map_or(&[][..], |i| &i.names[..]);
        let thumbprint = identity
            .map(|i| i.thumbprint.as_str())
            .filter(|t| !t.is_empty());
        let authorized = bridge
            .authorize(BuiltinRequest {
                token: Some(token),
                target: T::TARGET,
                endpoint: T::ENDPOINT,
                client,
                client_names: names,
                request_id,
                client_thumbprint: thumbprint,
            })
            .await?;
        Ok(Operator(authorized, std::marker::PhantomData))
    }
}

fn revoke_error(e: RevokeError, decision_id: &str) -> ApiError {
    let error = match &e {
        RevokeError::Invalid(invalid) => ApiError::invalid_request(invalid.to_string()),
        RevokeError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        RevokeError::Full(_) => {
            ApiError::new(StatusCode::CONFLICT, "too_many_revocations", e.to_string())
        }
        RevokeError::Store(cause) => {
            tracing::error!(
                decision_id,
                "revocation store: {}",
                crate::exit::chain(cause)
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation store cannot be reached; nothing was changed, retry shortly",
            )
            .retry_after(std::time::Duration::from_secs(1))
        }
        RevokeError::Random(_) => ApiError::from(crate::issuer::RandomError),
    };
    error.with_decision_id(decision_id)
}

/// Revoke a token, a subject, a `jti`, an issuer or a target until `for` lapses (default 24h).
///
/// Every replica refuses what is revoked within seconds. A `target` revocation of an AWS target
/// also answers the deny policy (`aws`) that cuts off the sessions already issued.
#[utoipa::path(
    post,
    path = "/v1/revocations",
    tag = "operators",
    request_body = crate::revocation::NewRevocation,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The revocation.", body = api::Revocation),
        openapi::RevocationRefusals,
    )
)]
pub(super) async fn create(
    State(bridge): State<Arc<Bridge>>,
    Operator(by, _): Operator<Revoke>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large()
        } else {
            ApiError::invalid_request(format!("body: {}", e.body_text()))
        }
        .with_decision_id(&by.decision_id)
    })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(
            ApiError::invalid_request(format!("body: larger than {MAX_BODY_BYTES} bytes"))
                .with_decision_id(&by.decision_id),
        );
    }
    let new: NewRevocation = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_request(format!(
            "body: not a revocation ({e}); send {{\"kind\", \"issuer\"?, \"value\", \"for\"?, \"reason\"}}"
        ))
        .with_decision_id(&by.decision_id)
    })?;
    let revocation = bridge
        .revoke(&by, new)
        .await
        .map_err(|e| revoke_error(e, &by.decision_id))?;
    let mut view = revocation.view();
    if let (Some(recall), Some(map)) = (bridge.aws_recall(&revocation), view.as_object_mut()) {
        map.insert("aws".into(), recall);
    }
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

/// The live revocations, oldest first.
#[utoipa::path(
    get,
    path = "/v1/revocations",
    tag = "operators",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The live revocations.", body = api::RevocationList),
        openapi::OperatorRefusals,
    )
)]
pub(super) async fn list(
    State(bridge): State<Arc<Bridge>>,
    Operator(by, _): Operator<Revoke>,
) -> Result<Response, ApiError> {
    let list = bridge
        .list_revocations()
        .await
        .map_err(|e| revoke_error(e, &by.decision_id))?;
    let views: Vec<_> = list
        .iter()
        .map(crate::revocation::Revocation::view)
        .collect();
    Ok(axum::Json(api::RevocationList { revocations: views }).into_response())
}

/// Lift a revocation: 200 with the removed revocation, 404 when there is none.
#[utoipa::path(
    delete,
    path = "/v1/revocations/{id}",
    tag = "operators",
    params(("id" = String, Path, description = "The revocation's id, as its creation answered it.", pattern = "^rev_[A-Za-z0-9_-]{22}$", example = "rev_h4Xo1aVNFJ3nqkS0VdT0sA")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The removed revocation.", body = api::Revocation),
        openapi::UnrevokeRefusals,
    )
)]
pub(super) async fn delete(
    State(bridge): State<Arc<Bridge>>,
    Operator(by, _): Operator<Revoke>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = super::path_param(id, "id").map_err(|e| e.with_decision_id(&by.decision_id))?;
    let removed = bridge
        .unrevoke(&by, &id)
        .await
        .map_err(|e| revoke_error(e, &by.decision_id))?;
    Ok(axum::Json(removed.view()).into_response())
}

/// Introspection (RFC 7662) of a token stsbridge minted: a JWT, or a reference token.
///
/// `{"active": false}` for anything that is not an active token stsbridge minted, never saying
/// why.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "operators",
    request_body(content = api::IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's state (`Cache-Control: no-store`).", body = api::Introspection),
        openapi::OperatorRefusals,
    )
)]
pub(super) async fn introspect(
    State(bridge): State<Arc<Bridge>>,
    Operator(by, _): Operator<Introspect>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(pairs) = form.map_err(|e| {
        ApiError::invalid_request(format!("bad form body: {}", e.body_text()))
            .with_decision_id(&by.decision_id)
    })?;
    let mut tokens = pairs.iter().filter(|(k, _)| k == "token").map(|(_, v)| v);
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return Err(
            ApiError::invalid_request("token: send exactly one token to introspect")
                .with_decision_id(&by.decision_id),
        );
    };
    let answer = if token.len() > MAX_INTROSPECTED {
        None
    } else {
        bridge.introspect(token).await
    };
    bridge
        .metrics()
        .introspections
        .with_label_values(&[if answer.is_some() { "true" } else { "false" }])
        .inc();
    let body = answer.unwrap_or_else(|| json!({ "active": false }));
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
