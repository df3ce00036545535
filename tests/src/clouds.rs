//! Wire-exact stand-ins for Google's STS and IAM credentials APIs and Entra ID's token endpoint,
//! built from their documented request and response formats. Each matcher checks every header and
//! field the real service requires; a request that misses one matches no mock, gets wiremock's 404,
//! and fails the test (the matcher prints which check failed).

use std::collections::HashMap;

use serde_json::{Value, json};
use wiremock::{Match, Request, ResponseTemplate};

pub(crate) fn form(request: &Request) -> HashMap<String, String> {
    parse_form(&request.body)
}

/// An `application/x-www-form-urlencoded` body as a map (empty when it is not one).
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let body = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Runs named checks; prints the first that fails.
pub(crate) fn all(what: &str, checks: &[(&str, bool)]) -> bool {
    match checks.iter().find(|(_, ok)| !ok) {
        None => true,
        Some((name, _)) => {
            eprintln!("{what} stand-in: request refused: {name}");
            false
        }
    }
}

pub(crate) fn is_jwt(token: Option<&String>) -> bool {
    token.is_some_and(|t| t.split('.').count() == 3 && t.starts_with("ey"))
}

/// The form of a value that is a compact JWT, from a request's form.
pub fn form_field(request: &Request, name: &str) -> Option<String> {
    form(request).remove(name)
}

/// `POST /v1/token` of Google's STS, as the token exchange documents it.
pub struct GcpStsExchange {
    /// Expected `audience`.
    pub audience: String,
    /// Expected `scope`.
    pub scope: String,
}

impl Match for GcpStsExchange {
    fn matches(&self, request: &Request) -> bool {
        let f = form(request);
        let field = |k: &str| f.get(k).map(String::as_str);
        all(
            "GCP STS",
            &[
                ("method POST", request.method.as_str() == "POST"),
                ("path /v1/token", request.url.path() == "/v1/token"),
                (
                    "content type",
                    header(request, "content-type") == Some("application/x-www-form-urlencoded"),
                ),
                (
                    "grant_type",
                    field("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange"),
                ),
                (
                    "requested_token_type",
                    field("requested_token_type")
                        == Some("urn:ietf:params:oauth:token-type:access_token"),
                ),
                (
                    "subject_token_type",
                    field("subject_token_type") == Some("urn:ietf:params:oauth:token-type:jwt"),
                ),
                (
                    "audience",
                    field("audience") == Some(self.audience.as_str()),
                ),
                ("scope", field("scope") == Some(self.scope.as_str())),
                ("subject_token is a JWT", is_jwt(f.get("subject_token"))),
            ],
        )
    }
}

/// `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken` of the IAM credentials API.
pub struct GenerateAccessToken {
    /// The service account.
    pub email: String,
    /// The federated token expected as Bearer.
    pub bearer: String,
    /// Expected `scope`.
    pub scopes: Vec<String>,
    /// Expected `lifetime` (`"1800s"`).
    pub lifetime: String,
}

impl Match for GenerateAccessToken {
    fn matches(&self, request: &Request) -> bool {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        all(
            "IAM credentials",
            &[
                ("method POST", request.method.as_str() == "POST"),
                (
                    "path",
                    request.url.path()
                        == format!(
                            "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                            self.email
                        ),
                ),
                (
                    "Bearer federated token",
                    header(request, "authorization") == Some(&format!("Bearer {}", self.bearer)),
                ),
                (
                    "content type",
                    header(request, "content-type") == Some("application/json"),
                ),
                ("scope", body["scope"] == json!(self.scopes)),
                ("lifetime", body["lifetime"] == json!(self.lifetime)),
                (
                    "no unknown fields",
                    body.as_object().is_some_and(|o| {
                        o.keys()
                            .all(|k| ["scope", "lifetime", "delegates"].contains(&k.as_str()))
                    }),
                ),
            ],
        )
    }
}

/// `POST /{tenant}/oauth2/v2.0/token` with a federated client assertion.
pub struct EntraClientAssertion {
    /// Tenant.
    pub tenant: String,
    /// Expected `client_id`.
    pub client_id: String,
    /// Expected `scope`.
    pub scope: String,
}

impl Match for EntraClientAssertion {
    fn matches(&self, request: &Request) -> bool {
        let f = form(request);
        let field = |k: &str| f.get(k).map(String::as_str);
        all(
            "Entra ID",
            &[
                ("method POST", request.method.as_str() == "POST"),
                (
                    "path",
                    request.url.path() == format!("/{}/oauth2/v2.0/token", self.tenant),
                ),
                (
                    "content type",
                    header(request, "content-type") == Some("application/x-www-form-urlencoded"),
                ),
                (
                    "grant_type",
                    field("grant_type") == Some("client_credentials"),
                ),
                (
                    "client_id",
                    field("client_id") == Some(self.client_id.as_str()),
                ),
                ("scope", field("scope") == Some(self.scope.as_str())),
                (
                    "client_assertion_type",
                    field("client_assertion_type")
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ),
                (
                    "client_assertion is a JWT",
                    is_jwt(f.get("client_assertion")),
                ),
                ("no client_secret", !f.contains_key("client_secret")),
            ],
        )
    }
}

/// Google STS success (RFC 8693 response).
pub fn gcp_sts_token(access_token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access_token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
}

/// Google STS error (OAuth style).
pub fn gcp_sts_error(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({ "error": error, "error_description": description }))
}

/// `generateAccessToken` success.
pub fn gcp_access_token(token: &str, expire_time: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({ "accessToken": token, "expireTime": expire_time }))
}

/// Google API error (`{"error": {"code", "message", "status"}}`).
pub fn google_api_error(code: u16, status: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({ "error": { "code": code, "message": message, "status": status } }))
}

/// Entra ID token success. `ext_expires_in` (the extended lifetime Entra may grant for outages)
/// is an hour longer than `expires_in`, so that reading the wrong field shows.
pub fn entra_token(access_token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in + 3600,
        "access_token": access_token,
    }))
}

/// Entra ID error, as it answers a refused client assertion.
pub fn entra_error(status: u16, error: &str, number: u64, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!("AADSTS{number}: {text} Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333 Correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd Timestamp: 2026-11-22 02:02:12Z"),
        "error_codes": [number],
        "timestamp": "2026-11-22 02:02:12Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={number}"),
    }))
}
