//! The HTTP API: credentials in each SDK's native shape, RFC 8693 token exchange, the issuer's
//! discovery documents, and health.
//!
//! Handlers only parse requests and shape responses; the exchange itself is
//! [`Bridge::exchange`](crate::exchange::Bridge::exchange), and every failure becomes a response
//! in [`error`].

mod api;
pub mod error;
pub mod openapi;
mod revocations;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
use serde_json::json;
use stsbridge_providers::Credential;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::rfc3339;
use crate::exchange::{Answer, Bridge, Endpoint, ExchangeRequest, Exchanged, Failure};
use error::ApiError;

/// Largest request body (a token exchange form with two tokens fits many times over).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request taking longer than this is answered 503 (upstream calls have their own, shorter,
/// timeouts).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 8693's token type of an opaque access token (what a reference token is).
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Subject and actor token types accepted: every one of them must be a JWT.
const ACCEPTED_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// The service's routes, each registered with its description: the router and the OpenAPI
/// document ([`openapi::document`]) come from this one list.
fn api_routes() -> OpenApiRouter<Arc<Bridge>> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(credentials))
        .routes(routes!(token_exchange))
        .routes(routes!(revocations::introspect))
        .routes(routes!(revocations::list, revocations::create))
        .routes(routes!(revocations::delete))
        .routes(routes!(discovery))
        .routes(routes!(jwks))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
}

/// The service's routes over `bridge`, with `extra` merged in (dev mode adds its token minting).
pub fn router(bridge: Arc<Bridge>, extra: Option<Router>) -> Router {
    let (app, _) = api_routes().split_for_parts();
    let mut app = app.with_state(bridge);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    app.fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(request_id))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

/// The id of one HTTP request: the caller's `X-Request-Id` when it is a sane value, else a new one.
/// It is echoed in the response, set on the request's tracing span, and recorded in the audit event.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Records the OpenTelemetry trace id on the request's span while spans are exported, so that
/// every log line of the request (JSON lines show the span's fields) names its trace.
#[cfg(feature = "otlp")]
fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

#[cfg(not(feature = "otlp"))]
fn record_trace_id(_: &tracing::Span) {}

/// Header names stsbridge reads or writes on every request, parsed once.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_DECISION_ID: HeaderName = HeaderName::from_static("x-stsbridge-decision-id");
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Longest `X-Request-Id` taken from a caller.
const MAX_REQUEST_ID: usize = 128;

async fn request_id(mut request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let given = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned);
    let id = match given.map_or_else(crate::issuer::random_id, Ok) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("no request id, so no answer: {e}");
            return ApiError::from(e).into_response();
        }
    };
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path(), trace_id = tracing::field::Empty);
    record_trace_id(&span);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    response
}

/// 400 `invalid_dpop_proof`.
fn invalid_dpop(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", message)
}

/// The request's `DPoP` proof (RFC 9449), checked against this request (its method, and the
/// URL the caller addressed: this listener's scheme, the Host header, `path`); `None` without
/// the header. A proof is never logged.
fn dpop_proof(
    bridge: &Bridge,
    headers: &HeaderMap,
    path: &str,
    method: &axum::http::Method,
) -> Result<Option<crate::dpop::Proof>, ApiError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid_dpop("send exactly one DPoP header"));
    }
    let proof = value
        .to_str()
        .map_err(|_| invalid_dpop("the DPoP header is not a JWS"))?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| invalid_dpop("the request has no Host header to check htu against"))?;
    let scheme = if bridge.config().tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{host}{path}");
    crate::dpop::check(
        proof,
        &crate::dpop::Expected {
            method: method.as_str(),
            url: &url,
            max_age: bridge.config().dpop_max_age,
            now: SystemTime::now(),
        },
    )
    .map(Some)
    .map_err(|e| invalid_dpop(e.0))
}

/// The subject token from `Authorization`: `Bearer <token>`, or the raw token (what AWS SDKs send
/// from `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop") =>
        {
            rest.trim()
        }
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

#[derive(serde::Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// A path parameter, or a JSON 400 naming it (axum's own rejection is plain text).
fn path_param(path: Result<Path<String>, PathRejection>, name: &str) -> Result<String, ApiError> {
    path.map(|Path(v)| v)
        .map_err(|e| ApiError::invalid_request(format!("{name}: {}", e.body_text())))
}

/// A credential for `target`, in the target's native shape.
///
/// The subject token rides in `Authorization`. AWS targets answer in the container-credentials
/// shape (`AWS_CONTAINER_CREDENTIALS_FULL_URI` can point here), or AWS's `credential_process`
/// Version 1 shape with `?format=credential_process`; GCP targets as the GCE metadata server's
/// token; Azure targets as the managed-identity endpoint's token; JWT targets in RFC 8693's shape.
/// Credentials are cached and shared until shortly before they expire.
#[utoipa::path(
    method(get, post),
    path = "/v1/credentials/{target}",
    tag = "exchange",
    params(
        ("target" = String, Path, description = "The target's name, as the mapping files declare it.", example = "deploy"),
        ("format" = Option<String>, Query, description = "`credential_process` for AWS's Version 1 JSON (AWS targets only).", pattern = "^credential_process$"),
        ("DPoP" = Option<String>, Header, description = "A DPoP proof (RFC 9449) for this request, with `ath` the hash of the token in `Authorization`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The credential. Not to be cached by intermediaries (`Cache-Control: no-store`).", body = api::Credentials,
            headers(("X-Stsbridge-Decision-Id" = String, description = "The decision's id, the key of its audit event."))),
        openapi::CredentialRefusals,
    )
)]
async fn credentials(
    State(bridge): State<Arc<Bridge>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    identity: Option<axum::Extension<crate::tls::ClientIdentity>>,
    target: Result<Path<String>, PathRejection>,
    query: Result<Query<FormatQuery>, QueryRejection>,
    // The request itself, not its `Parts` (that extractor clones the headers).
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let target = path_param(target, "target")?;
    let Query(query) = query
        .map_err(|e| ApiError::invalid_request(format!("bad query string: {}", e.body_text())))?;
    let credential_process = match query.format.as_deref() {
        None => false,
        Some("credential_process") => true,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "unknown format {other:?}; the only format is credential_process"
            )));
        }
    };
    let token = bearer(&parts.headers).ok_or_else(ApiError::missing_token)?;
    // The token rides in Authorization as an access token: a proof sent with it must cover it.
    let proof = dpop_proof(&bridge, &parts.headers, parts.uri.path(), &parts.method)?;
    if let Some(p) = &proof
        && !p.covers(token)
    {
        return Err(invalid_dpop(if p.ath.is_none() {
            "ath is missing: a proof sent with an access token carries its hash"
        } else {
            "ath is not the hash of the token in Authorization"
        }));
    }
    let request = ExchangeRequest {
        token,
        target: &target,
        endpoint: Endpoint::Credentials,
        client: Some(client),
        scopes: None,
        actor_token: None,
        request_id: Some(&request_id),
        client_names: identity.as_ref().map_or(&[][..], |i| &i.0.names),
        client_thumbprint: identity
            .as_ref()
            .map(|i| i.0.thumbprint.as_str())
            .filter(|t| !t.is_empty()),
        dpop: proof.as_ref(),
    };
    let exchanged = bridge
        .exchange(request)
        .await
        .map_err(|f| refused(&bridge, f))?;
    // Written straight from the credential, without a JSON tree.
    let body = match (&exchanged.entry.credential, credential_process) {
        // The hot path: the body the credential was kept as since it arrived (the same bytes
        // for every caller until it is refreshed; `api::AwsCredentials` describes it).
        (Credential::Aws(_), false) => {
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                axum::body::Bytes::from_owner(ContainerBody(Arc::clone(&exchanged.entry))),
            )
                .into_response();
            no_store(&mut response, &exchanged.decision_id);
            return Ok(response);
        }
        (Credential::Aws(c), true) => api::Credentials::CredentialProcess(api::CredentialProcess {
            version: 1,
            access_key_id: c.access_key_id(),
            secret_access_key: c.expose_secret_access_key(),
            session_token: c.expose_session_token(),
            expiration: rfc3339(c.expiration),
            account_id: c.account_id(),
        }),
        (Credential::Token(_), true) => {
            return Err(ApiError::invalid_request(format!(
                "{} is not an AWS target; credential_process is for AWS targets",
                exchanged.target
            )));
        }
        (Credential::Token(t), false) => token_body(&exchanged, t),
    };
    Ok(credential_response(body, &exchanged.decision_id))
}

/// An AWS credential's kept body as the answer's bytes: the cache entry itself, shared with the
/// answer until it is written, so the secrets are neither copied nor left behind in a freed copy.
struct ContainerBody(Arc<crate::cache::Entry>);

impl AsRef<[u8]> for ContainerBody {
    fn as_ref(&self) -> &[u8] {
        match &self.0.credential {
            Credential::Aws(c) => c.expose_container_body().as_bytes(),
            // Never: made only for an AWS credential's answer.
            Credential::Token(_) => b"",
        }
    }
}

/// A token credential in its target's native shape: GCP's
/// `{access_token, expires_in, token_type, service_account, scope}`, the Azure managed-identity
/// `{access_token, expires_on, resource, token_type, client_id}`, or RFC 8693's for JWT targets.
fn token_body<'a>(
    exchanged: &'a Exchanged,
    t: &'a stsbridge_providers::AccessToken,
) -> api::Credentials<'a> {
    match &exchanged.answer {
        Answer::Gcp { service_account } => api::Credentials::Gcp(api::GcpToken {
            access_token: t.token.expose_secret(),
            expires_in: seconds_left(t),
            token_type: &t.token_type,
            service_account: service_account.as_deref(),
            scope: t.scope.as_deref(),
        }),
        Answer::Azure {
            resource,
            client_id,
        } => api::Credentials::Azure(api::AzureToken {
            access_token: t.token.expose_secret(),
            expires_on: crate::token::unix_seconds(t.expires_at).to_string(),
            resource,
            token_type: &t.token_type,
            client_id,
        }),
        Answer::Jwt | Answer::Aws => api::Credentials::Issued(issued_token(exchanged, t)),
    }
}

/// A minted token in RFC 8693's shape.
fn issued_token<'a>(
    exchanged: &'a Exchanged,
    t: &'a stsbridge_providers::AccessToken,
) -> api::IssuedToken<'a> {
    // A reference token stands for the JWT: an opaque access token, read by introspection.
    let (access_token, issued_token_type) = match &exchanged.reference {
        Some(r) => (r.expose_secret(), ACCESS_TOKEN_TYPE),
        None => (t.token.expose_secret(), t.issued_token_type.as_str()),
    };
    api::IssuedToken {
        access_token,
        issued_token_type,
        token_type: if exchanged.dpop_bound {
            "DPoP"
        } else {
            &t.token_type
        },
        expires_in: seconds_left(t),
        scope: t.scope.as_deref(),
    }
}

/// Whole seconds until `t` expires (0 once it has).
fn seconds_left(t: &stsbridge_providers::AccessToken) -> u64 {
    t.expires_at
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs())
}

fn credential_response(body: impl serde::Serialize, decision_id: &str) -> Response {
    let mut response = axum::Json(body).into_response();
    no_store(&mut response, decision_id);
    response
}

/// A credential's answer is never cached by intermediaries, and names its decision.
fn no_store(response: &mut Response, decision_id: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(decision_id) {
        headers.insert(X_DECISION_ID, v);
    }
}

/// RFC 8693 token exchange, for JWT targets: the minted token is audience-bound to the target.
///
/// With `actor_token` the minted token carries an `act` claim naming the actor (delegation; the
/// chain's depth is limited). A DPoP proof binds the minted token to the proof's key
/// (`token_type` `DPoP`).
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "exchange",
    request_body(content = api::TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    params(
        ("DPoP" = Option<String>, Header, description = "A DPoP proof (RFC 9449) to bind the minted token to."),
    ),
    responses(
        (status = 200, description = "The minted token (`Cache-Control: no-store`).", body = api::IssuedToken,
            headers(("X-Stsbridge-Decision-Id" = String, description = "The decision's id, the key of its audit event."))),
        openapi::ExchangeRefusals,
    )
)]
async fn token_exchange(
    State(bridge): State<Arc<Bridge>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    identity: Option<axum::Extension<crate::tls::ClientIdentity>>,
    parts: axum::http::request::Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(pairs) = form.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large()
        } else {
            ApiError::invalid_request(format!(
                "the body must be application/x-www-form-urlencoded: {}",
                e.body_text()
            ))
        }
    })?;
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for (k, v) in &pairs {
        // RFC 6749 §3.1: request parameters must not be included more than once.
        if fields.insert(k.as_str(), v.as_str()).is_some() {
            return Err(ApiError::invalid_request(format!(
                "parameter {k} appears more than once"
            )));
        }
    }
    let field = |name: &str| fields.get(name).copied().filter(|v| !v.is_empty());
    match field("grant_type") {
        Some(TOKEN_EXCHANGE_GRANT) => {}
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "unsupported grant_type {other:?}; use {TOKEN_EXCHANGE_GRANT}"
            )));
        }
        None => return Err(ApiError::invalid_request("grant_type is required")),
    }
    let subject_token = field("subject_token")
        .ok_or_else(|| ApiError::invalid_request("subject_token is required"))?;
    check_token_type(field("subject_token_type"), "subject_token_type")?;
    let target = field("audience")
        .ok_or_else(|| ApiError::invalid_request("audience (the target name) is required"))?;
    if let Some(t) = field("requested_token_type")
        && t != "urn:ietf:params:oauth:token-type:jwt"
        && t != "urn:ietf:params:oauth:token-type:access_token"
    {
        return Err(ApiError::invalid_request(format!(
            "requested_token_type {t:?} cannot be issued; stsbridge issues JWTs"
        )));
    }
    let actor_token = field("actor_token");
    if actor_token.is_some() {
        check_token_type(field("actor_token_type"), "actor_token_type")?;
    } else if field("actor_token_type").is_some() {
        return Err(ApiError::invalid_request(
            "actor_token_type is given without actor_token",
        ));
    }
    let scopes: Option<Vec<String>> = field("scope").map(|s| {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let proof = dpop_proof(&bridge, &parts.headers, parts.uri.path(), &parts.method)?;
    if let Some(p) = &proof
        && p.ath.is_some()
        && !p.covers(subject_token)
    {
        return Err(invalid_dpop("ath is not the hash of the subject token"));
    }
    let request = ExchangeRequest {
        token: subject_token,
        target,
        endpoint: Endpoint::TokenExchange,
        client: Some(client),
        scopes: scopes.as_deref(),
        actor_token,
        request_id: Some(&request_id),
        client_names: identity.as_ref().map_or(&[][..], |i| &i.0.names),
        client_thumbprint: identity
            .as_ref()
            .map(|i| i.0.thumbprint.as_str())
            .filter(|t| !t.is_empty()),
        dpop: proof.as_ref(),
    };
    let exchanged = bridge
        .exchange(request)
        .await
        .map_err(|f| refused(&bridge, f))?;
    let Credential::Token(t) = &exchanged.entry.credential else {
        // The exchange answers token exchange for JWT targets only.
        tracing::error!(target = %exchanged.target, "token exchange answered with an AWS credential");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "stsbridge could not complete the exchange",
        ));
    };
    Ok(credential_response(
        issued_token(&exchanged, t),
        &exchanged.decision_id,
    ))
}

fn check_token_type(value: Option<&str>, name: &str) -> Result<(), ApiError> {
    match value {
        Some(t) if ACCEPTED_TOKEN_TYPES.contains(&t) => Ok(()),
        Some(t) => Err(ApiError::invalid_request(format!(
            "{name} {t:?} is not accepted; send a JWT ({})",
            ACCEPTED_TOKEN_TYPES[0]
        ))),
        None => Err(ApiError::invalid_request(format!("{name} is required"))),
    }
}

/// This document: the OpenAPI 3.1 description of the HTTP API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
async fn openapi_document() -> Response {
    json_document(openapi::document_json())
}

fn json_document(body: Arc<str>) -> Response {
    let mut response = body.to_string().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// stsbridge's OIDC discovery document, for relying parties of the JWTs it mints.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "issuer",
    responses((status = 200, description = "The discovery document.", body = api::Discovery)))]
async fn discovery(State(bridge): State<Arc<Bridge>>) -> Response {
    json_document(bridge.issuer().discovery_json())
}

/// The keys that verify the JWTs stsbridge mints (the next key is published before it signs).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "issuer",
    responses((status = 200, description = "The key set.", body = api::Jwks)))]
async fn jwks(State(bridge): State<Arc<Bridge>>) -> Response {
    json_document(bridge.issuer().jwks_json())
}

/// The answer to a failed exchange, counted by its reason and HTTP status
/// (`stsbridge_refusals_total`).
fn refused(bridge: &Bridge, failure: Failure) -> ApiError {
    let reason = failure.error.metric_reason();
    let answer = ApiError::from(failure);
    bridge
        .metrics()
        .refusals
        .with_label_values(&[reason.as_str(), answer.status().as_str()])
        .inc();
    answer
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`.", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The metrics, in Prometheus's text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain")))]
async fn metrics(State(bridge): State<Arc<Bridge>>) -> Response {
    bridge.update_key_metrics();
    let mut response = bridge.metrics().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Readiness, for anyone who asks: what is wrong is named (the signing key, an issuer's keys),
/// never described with an upstream's error text, which goes to the log instead (and to the
/// operations listener's `/readyz`).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = api::Readiness),
        (status = 503, description = "Not ready: `problems` names what is missing.", body = api::Readiness),
    ))]
async fn readyz(State(bridge): State<Arc<Bridge>>) -> Response {
    readiness(&bridge, false)
}

/// The operations listener's routes (plain HTTP, for probes and scrapes when the main listener
/// requires client certificates): `/metrics`, `/healthz`, and `/readyz` with each issuer's last
/// fetch error (`last_error`), which the main listener's `/readyz` never shows.
pub fn ops_router(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(|State(bridge): State<Arc<Bridge>>| async move { readiness(&bridge, true) }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found() })
        .with_state(bridge)
}

/// `/readyz`'s answer; `detailed` adds the upstream error texts (the operations listener only).
fn readiness(bridge: &Bridge, detailed: bool) -> Response {
    // One snapshot of the policy for the whole answer: a reload in between cannot make it
    // describe two different policies.
    let policy = bridge.policy();
    let mappings = policy.mappings();
    let signing_key = bridge.issuer().active_kid();
    let ready = bridge.ready(&policy);
    let mut issuers = policy.jwks().status();
    let mut problems = problems(signing_key.as_deref(), &issuers);
    if bridge.revocations().snapshot().is_none() {
        problems.push("revocations not loaded".to_owned());
    }
    // Partner entries nobody has used yet are counted, not listed: there may be thousands.
    let lazy = issuers.iter().filter(|i| i.lazy).count();
    issuers.retain(|i| !i.lazy || i.loaded || i.fetch_failing);
    let lazy_listed = issuers.iter().filter(|i| i.lazy).count();
    // Degraded: still serving, on key sets an IdP has not refreshed lately.
    let degraded: Vec<&str> = issuers
        .iter()
        .filter(|i| i.degraded)
        .map(|i| i.name.as_str())
        .collect();
    let last_errors: Vec<Option<String>> = issuers.iter().map(|i| i.last_error.clone()).collect();
    let mut body = json!({
        "ready": ready,
        "problems": problems,
        "degraded": degraded,
        "signing_key": signing_key,
        "mappings": { "files": mappings.files().len(), "targets": mappings.target_count(), "rules": mappings.rule_count() },
        "issuers": issuers,
        "partner_issuers": { "total": lazy, "unused": lazy - lazy_listed },
        // Degraded, not unready: a replica without its shared state still serves every issuer
        // but the single-use ones, so taking it out of the load balancer would only add an
        // outage.
        "revocations": json!({
            "backend": bridge.revocations().backend(),
            "loaded": bridge.revocations().snapshot().is_some(),
            "active": bridge.revocations().snapshot().map_or(0, |s| s.all().len()),
        }),
        "shared_state": match bridge.shared_state().degraded() {
            None => json!({ "backend": bridge.shared_state().backend(), "status": "ok" }),
            Some(reason) => json!({ "backend": bridge.shared_state().backend(), "status": "degraded", "reason": reason }),
        },
    });
    if let (true, Some(list)) = (detailed, body["issuers"].as_array_mut()) {
        for (issuer, error) in list.iter_mut().zip(last_errors) {
            issuer["last_error"] = json!(error);
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// What `/readyz` names as wrong: a missing signing key, issuers (partners' included once used)
/// whose keys are not loaded or whose last key fetch failed.
fn problems(
    signing_key: Option<&str>,
    issuers: &[crate::token::jwks::IssuerStatus],
) -> Vec<String> {
    let mut out = Vec::new();
    if signing_key.is_none() {
        out.push("no signing key".to_owned());
    }
    for i in issuers {
        if !i.loaded && !i.lazy {
            out.push(format!("issuer {}: keys not loaded", i.name));
        }
        if i.fetch_failing {
            out.push(format!("issuer {}: key fetch failing", i.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jwks::IssuerStatus;

    fn issuer(name: &str, loaded: bool, fetch_failing: bool, lazy: bool) -> IssuerStatus {
        IssuerStatus {
            name: name.into(),
            loaded,
            keys: usize::from(loaded),
            last_success: loaded.then_some(1_800_000_000),
            fetch_failing,
            degraded: false,
            lazy,
            last_error: fetch_failing.then(|| "request to http://10.0.0.1:8080/jwks failed".into()),
        }
    }

    #[test]
    fn the_aws_body_a_credential_is_kept_as_is_what_the_document_describes() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let doc = serde_json::to_value(openapi::document()).unwrap();
        let schema = &doc["components"]["schemas"]["AwsCredentials"];
        let members = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        for account in [Some("123456789012"), None] {
            let c =
                stsbridge_providers::AwsCredential::new("ASIAX", "secret", "token", at, account)
                    .unwrap();
            let body: serde_json::Value = serde_json::from_str(c.expose_container_body()).unwrap();
            assert_eq!(members(&body), members(&schema["properties"]));
            assert_eq!(body["Expiration"], rfc3339(at));
            for required in schema["required"].as_array().unwrap() {
                assert!(body[required.as_str().unwrap()].is_string(), "{required}");
            }
        }
    }

    #[test]
    fn readiness_problems_are_named_not_described() {
        assert!(problems(Some("kid-1"), &[issuer("ci", true, false, false)]).is_empty());
        assert_eq!(
            problems(
                None,
                &[
                    issuer("ci", false, true, false),
                    issuer("hr", true, true, false),
                    issuer("partner", false, true, true),
                    issuer("unused", false, false, true),
                ]
            ),
            [
                "no signing key",
                "issuer ci: keys not loaded",
                "issuer ci: key fetch failing",
                "issuer hr: key fetch failing",
                "issuer partner: key fetch failing",
            ]
        );
    }
}
