//! The agent's HTTP endpoints, one set per cloud protocol, each refusing requests that lack the
//! header that protocol requires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Agent, Cloud};
use crate::client::ClientError;

const FLAVOR: &str = "metadata-flavor";
const IDENTITY_HEADER: &str = "x-identity-header";

/// The agent's routes, every one of them (unknown paths too) behind the `Host` check.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/aws/credentials", get(aws))
        .route("/", get(gce_root))
        .route("/computeMetadata/v1", get(gce_directory))
        .route("/computeMetadata/v1/", get(gce_directory))
        .route("/computeMetadata/v1/{*path}", get(gce))
        .route("/msi/token", get(msi))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(agent)
        .layer(axum::middleware::from_fn(super::host::require_local_host))
}

/// Ready when the workload's token file can be read.
async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    match crate::client::read_token(&agent.token_file) {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

fn secret_matches(given: Option<&HeaderValue>, secret: &SecretString) -> bool {
    given.is_some_and(|v| {
        verify_slices_are_equal(v.as_bytes(), secret.expose_secret().as_bytes()).is_ok()
    })
}

fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({ "error": code, "error_description": description })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// How a failure to get a credential is answered: the service's own refusals keep their status,
/// an unreachable service is 503.
fn failure(e: &ClientError) -> (StatusCode, String) {
    tracing::warn!("no credential: {e}");
    let status = match e {
        ClientError::Refused { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        ClientError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, e.to_string())
}

fn no_store(value: Value) -> Response {
    let mut r = axum::Json(value).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// AWS container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): `Authorization` must be the
/// agent's secret, exactly as the SDK reads it from the token file.
async fn aws(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    if !agent.targets.contains_key(&Cloud::Aws) {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this agent serves no AWS target",
        );
    }
    if !secret_matches(headers.get(header::AUTHORIZATION), &agent.aws_secret) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization must be the agent's token",
        );
    }
    match agent.credential(Cloud::Aws).await {
        Ok((body, _)) => no_store(body),
        Err(e) => {
            let (status, message) = failure(&e);
            json_error(status, "credentials_unavailable", &message)
        }
    }
}

/// Every metadata server answer carries `Metadata-Flavor: Google`.
fn gce_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(FLAVOR, HeaderValue::from_static("Google"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn gce_text(status: StatusCode, body: impl Into<String>) -> Response {
    gce_response(status, "application/text", body.into())
}

/// The metadata server's guard: the flavor header must be present, and, as on GCE, a request that
/// went through a proxy (`X-Forwarded-For`) is refused.
fn gce_refused(agent: &Agent, headers: &HeaderMap) -> Option<Response> {
    if !agent.targets.contains_key(&Cloud::Gcp) {
        return Some(gce_text(
            StatusCode::NOT_FOUND,
            "this agent serves no GCP target\n",
        ));
    }
    if headers.get(FLAVOR).is_none_or(|v| v != "Google") {
        return Some(gce_text(
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.\n",
        ));
    }
    if headers.contains_key("x-forwarded-for") {
        return Some(gce_text(
            StatusCode::FORBIDDEN,
            "Requests with X-Forwarded-For are refused.\n",
        ));
    }
    None
}

async fn gce_root(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    if let Some(refused) = gce_refused(&agent, &headers) {
        return refused;
    }
    gce_text(StatusCode::OK, "computeMetadata/\n")
}

/// `/computeMetadata/v1/`: the directory the metadata server's clients list, or request to find
/// out whether they run on GCE (google-auth-library for Node.js asks for `instance`).
async fn gce_directory(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    if let Some(refused) = gce_refused(&agent, &headers) {
        return refused;
    }
    gce_text(StatusCode::OK, "instance/\nproject/\nuniverse/\n")
}

/// `/computeMetadata/v1/...`: the directories clients probe (`instance`, `project`, `universe`,
/// with or without the trailing slash), the project id and the default service account's email, scopes
/// and token.
async fn gce(
    State(agent): State<Arc<Agent>>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gce_refused(&agent, &headers) {
        return refused;
    }
    let path = path.trim_end_matches('/');
    match path {
        "instance" => return gce_text(StatusCode::OK, "service-accounts/\n"),
        "project" => return gce_text(StatusCode::OK, "project-id\n"),
        "universe" => return gce_text(StatusCode::OK, "universe-domain\n"),
        _ => {}
    }
    if path == "project/project-id" {
        return match &agent.gcp_project {
            Some(p) => gce_text(StatusCode::OK, p.clone()),
            None => gce_text(
                StatusCode::NOT_FOUND,
                "no project id is configured (--gcp-project)\n",
            ),
        };
    }
    if path == "universe/universe-domain" {
        return gce_text(StatusCode::OK, "googleapis.com");
    }
    let Some(rest) = path.strip_prefix("instance/service-accounts") else {
        return gce_text(StatusCode::NOT_FOUND, "not found\n");
    };
    let (credential, expires_at) = match agent.credential(Cloud::Gcp).await {
        Ok(c) => c,
        Err(e) => {
            let (status, message) = failure(&e);
            return gce_text(status, format!("{message}\n"));
        }
    };
    let email = credential["service_account"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let scopes = credential_scopes(&credential);
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return gce_text(StatusCode::OK, format!("default/\n{email}/\n"));
    }
    let (account, item) = rest.split_once('/').unwrap_or((rest, ""));
    if account != "default" && account != email {
        return gce_text(StatusCode::NOT_FOUND, "no such service account\n");
    }
    match item {
        "" if query.get("recursive").is_some_and(|v| v == "true") => gce_response(
            StatusCode::OK,
            "application/json",
            json!({ "aliases": ["default"], "email": email, "scopes": scopes }).to_string(),
        ),
        "" => gce_text(StatusCode::OK, "aliases\nemail\nscopes\ntoken\n"),
        "email" => gce_text(StatusCode::OK, email),
        "aliases" => gce_text(StatusCode::OK, "default\n"),
        "scopes" => gce_text(StatusCode::OK, scopes.join("\n") + "\n"),
        "token" => {
            // The target fixes the scopes; a `scopes` query naming others cannot widen them.
            let expires_in = expires_at
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            gce_response(
                StatusCode::OK,
                "application/json",
                json!({
                    "access_token": credential["access_token"],
                    "expires_in": expires_in,
                    "token_type": credential["token_type"],
                })
                .to_string(),
            )
        }
        _ => gce_text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn credential_scopes(credential: &Value) -> Vec<String> {
    credential["scope"]
        .as_str()
        .map(|s| s.split(' ').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Azure App Service managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, api-version
/// 2019-08-01).
async fn msi(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !agent.targets.contains_key(&Cloud::Azure) {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this agent serves no Azure target",
        );
    }
    if !secret_matches(headers.get(IDENTITY_HEADER), &agent.azure_secret) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-IDENTITY-HEADER must be the agent's IDENTITY_HEADER",
        );
    }
    if !query.contains_key("api-version") {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version is required",
        );
    }
    let Some(resource) = query.get("resource") else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "resource is required",
        );
    };
    let body = match agent.credential(Cloud::Azure).await {
        Ok((b, _)) => b,
        Err(e) => {
            let (status, message) = failure(&e);
            return json_error(status, "credentials_unavailable", &message);
        }
    };
    let served = body["resource"].as_str().unwrap_or_default();
    if resource.trim_end_matches('/') != served.trim_end_matches('/') {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!("this agent serves tokens for {served}, not {resource}"),
        );
    }
    // A request for a particular user-assigned identity must name the one this agent serves.
    let client_id = body["client_id"].as_str().unwrap_or_default();
    if let Some(asked) = query
        .get("client_id")
        .filter(|c| !c.eq_ignore_ascii_case(client_id))
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_identity",
            &format!("this agent serves client_id {client_id}, not {asked}"),
        );
    }
    for other in ["object_id", "mi_res_id", "msi_res_id", "principal_id"] {
        if query.contains_key(other) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_identity",
                &format!(
                    "this agent serves client_id {client_id}; select it by client_id, not {other}"
                ),
            );
        }
    }
    no_store(body)
}
