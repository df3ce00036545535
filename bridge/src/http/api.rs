//! The bodies of the HTTP API as types: what the handlers write, and what `GET /openapi.json`
//! describes ([`super::openapi`]), so the two cannot drift apart.
//!
//! The answers borrow from the credential they carry: a cached credential is written straight
//! into the response, without a JSON tree or copies of its secrets.

use serde::Serialize;
use utoipa::ToSchema;

/// An error, in RFC 6749's shape. `error` is a stable code; `error_description` says what to
/// fix in the caller's terms; internal detail (an upstream's message, file paths) goes to the log
/// under the same `decision_id`, never here.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody<'a> {
    /// `invalid_request`, `invalid_token`, `invalid_dpop_proof`, `invalid_scope`,
    /// `access_denied`, `unknown_target`, `not_found`, `request_too_large`, `too_many_revocations`,
    /// `rate_limited`, `upstream_rejected`, `upstream_unavailable`, `temporarily_unavailable` or
    /// `server_error`.
    #[schema(example = "invalid_token")]
    pub error: &'a str,
    /// What is wrong, and where it is safe, what to do about it.
    pub error_description: &'a str,
    /// The decision this answers (it keys the audit event and the log lines); null when the
    /// request was refused before a decision was taken.
    pub decision_id: Option<&'a str>,
}

/// An AWS credential in the container-credentials shape every AWS SDK reads
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` can point at `/v1/credentials/{target}`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AwsCredentials<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The session token.
    pub token: &'a str,
    /// When the credential expires (RFC 3339, UTC), as STS said.
    pub expiration: String,
    /// The account the credential acts in.
    pub account_id: Option<&'a str>,
}

/// An AWS credential in `credential_process`'s Version 1 shape (`?format=credential_process`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CredentialProcess<'a> {
    /// Always 1.
    #[schema(minimum = 1, maximum = 1)]
    pub version: u8,
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The session token.
    pub session_token: &'a str,
    /// When the credential expires (RFC 3339, UTC).
    pub expiration: String,
    /// The account the credential acts in.
    pub account_id: Option<&'a str>,
}

/// A GCP access token in the shape of the GCE metadata server's token answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpToken<'a> {
    /// The access token.
    pub access_token: &'a str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// `Bearer`.
    pub token_type: &'a str,
    /// The impersonated service account's email (served by the agent as the metadata server's
    /// `email`); null when the target does not impersonate one.
    pub service_account: Option<&'a str>,
    /// The scopes granted, space-separated.
    pub scope: Option<&'a str>,
}

/// An Azure access token in the managed-identity endpoint's shape.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureToken<'a> {
    /// The access token.
    pub access_token: &'a str,
    /// When it expires, Unix seconds as a string (as the managed-identity endpoint writes it).
    #[schema(pattern = "^[0-9]+$")]
    pub expires_on: String,
    /// The resource the token is for.
    pub resource: &'a str,
    /// `Bearer`.
    pub token_type: &'a str,
    /// The application (client) id.
    pub client_id: &'a str,
}

/// A token minted by stsbridge, in RFC 8693's token-exchange answer shape (JWT targets).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuedToken<'a> {
    /// The JWT, or for a target that issues reference tokens an opaque token read by
    /// introspection.
    pub access_token: &'a str,
    /// `urn:ietf:params:oauth:token-type:jwt`, or `urn:ietf:params:oauth:token-type:access_token`
    /// for a reference token.
    pub issued_token_type: &'a str,
    /// `Bearer`, `N_A`, or `DPoP` for a token bound to the caller's DPoP key.
    pub token_type: &'a str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The scopes granted, space-separated (absent when none were asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
}

/// What `GET|POST /v1/credentials/{target}` answers: the target's native shape.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Credentials<'a> {
    /// An AWS target. Written as the body the credential is kept as
    /// (`AwsCredential::expose_container_body`); a test keeps its members these.
    #[allow(dead_code)]
    Aws(AwsCredentials<'a>),
    /// An AWS target with `?format=credential_process`.
    CredentialProcess(CredentialProcess<'a>),
    /// A GCP target.
    Gcp(GcpToken<'a>),
    /// An Azure target.
    Azure(AzureToken<'a>),
    /// A JWT target.
    Issued(IssuedToken<'a>),
}

/// The form of `POST /oauth2/token` (RFC 8693 token exchange). Each parameter at most once.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form; the handler reads its fields by name, checking duplicates.
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[schema(example = "urn:ietf:params:oauth:grant-type:token-exchange")]
    grant_type: String,
    /// The token the caller already has.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`, `...:id_token` or `...:access_token`; the token
    /// must be a JWT whatever the type says.
    subject_token_type: String,
    /// The target's name.
    audience: String,
    /// Scopes asked for, space-separated.
    scope: Option<String>,
    /// `urn:ietf:params:oauth:token-type:jwt` or `...:access_token`.
    requested_token_type: Option<String>,
    /// The token of the party acting for the subject (delegation: the minted token carries an
    /// `act` claim).
    actor_token: Option<String>,
    /// Required with `actor_token`; the types `subject_token_type` accepts.
    actor_token_type: Option<String>,
}

/// The form of `POST /oauth2/introspect` (RFC 7662).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form; the handler reads `token` by name, exactly once.
pub struct IntrospectionForm {
    /// The token to introspect.
    token: String,
    /// Accepted and ignored.
    token_type_hint: Option<String>,
}

/// RFC 7662's answer: `{"active": false}` for anything that is not an active token stsbridge
/// minted (never saying why); for an active one, its claims (`iss`, `sub`, `aud`, `exp`, `iat`,
/// `jti`, `scope`, `act`, `cnf`, ...) and `token_type`.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the answer, which carries the token's own claims.
pub struct Introspection {
    /// Whether the token is active.
    active: bool,
}

/// An AWS target's recall of sessions already issued, answered with a `target` revocation:
/// the deny policy to attach to the target's roles, which cuts off every session issued before
/// the revocation.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the `aws` member of a revocation's answer.
pub struct AwsRecall {
    /// The roles of the target's chain.
    roles: Vec<String>,
    /// The inline policy's name.
    policy_name: String,
    /// The IAM policy document.
    #[schema(value_type = Object)]
    policy: serde_json::Value,
}

/// A revocation.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `Revocation::view`.
pub struct Revocation {
    /// Its id, for `DELETE /v1/revocations/{id}`.
    id: String,
    /// `token`, `subject`, `jti`, `issuer` or `target`.
    kind: String,
    /// What is revoked.
    value: String,
    /// When it was made (RFC 3339).
    created: String,
    /// When it lapses (RFC 3339).
    expires: String,
    /// Why.
    reason: String,
    /// Who made it (the caller's subject).
    by: String,
    /// The trust entry, for `subject` and `jti`.
    #[schema(nullable = false)]
    issuer: Option<String>,
    /// For a `target` revocation of an AWS target (`POST` only).
    #[schema(nullable = false)]
    aws: Option<AwsRecall>,
}

/// `GET /v1/revocations`: the live revocations, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RevocationList {
    /// The revocations.
    #[schema(value_type = Vec<Revocation>)]
    pub revocations: Vec<serde_json::Value>,
}

/// stsbridge's OIDC discovery document.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the issuer's document, made once per key ring.
pub struct Discovery {
    /// The issuer URL.
    issuer: String,
    /// Where the keys are.
    jwks_uri: String,
    /// The token-exchange endpoint.
    token_endpoint: String,
}

/// stsbridge's signing keys (RFC 7517).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the issuer's key set, made once per key ring.
pub struct Jwks {
    /// The published keys.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

/// `GET /readyz`: whether this replica can serve, and what is wrong when it cannot.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `readiness`'s answer.
pub struct Readiness {
    /// Whether every issuer's keys, the signing key, the mappings and the revocation list are
    /// loaded.
    ready: bool,
    /// What is wrong, named (never an upstream's error text).
    problems: Vec<String>,
    /// Issuers served on keys their IdP has not refreshed lately.
    degraded: Vec<String>,
    /// The key id that signs now.
    signing_key: Option<String>,
}
