//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`, `stsbridge schema openapi`,
//! `examples/openapi.json`).
//!
//! It is derived, not written: each handler carries its `#[utoipa::path]` (method, path,
//! parameters, answers), the bodies are the types in [`super::api`], and the router registers
//! every handler through the same description ([`super::api_routes`]), so a route cannot exist
//! without being documented. The refusals an endpoint can answer are listed once per kind of
//! endpoint here, each with the headers it carries.

use std::sync::{Arc, LazyLock};

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::api;

/// The document's fixed parts; the paths come from the router ([`super::api_routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stsbridge",
        description = "A cloud STS bridge: present a token you already have (a Kubernetes \
            service-account token, a CI OIDC token, a partner's IdP token) and get short-lived \
            cloud credentials in your SDK's native shape, or an audience-bound JWT (RFC 8693). \
            Every answer carries `X-Request-Id`; every credential `X-Stsbridge-Decision-Id`, \
            the key of its audit event.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerToken),
    components(schemas(
        api::ErrorBody,
        api::Credentials,
        api::AwsCredentials,
        api::CredentialProcess,
        api::GcpToken,
        api::AzureToken,
        api::IssuedToken,
        api::TokenExchangeForm,
        api::IntrospectionForm,
        api::Introspection,
        api::Revocation,
        api::RevocationList,
        api::AwsRecall,
        crate::revocation::NewRevocation,
        api::Discovery,
        api::Jwks,
        api::Readiness,
    )),
    tags(
        (name = "exchange", description = "Tokens in, credentials out."),
        (name = "operators", description = "Revocation and introspection, for callers a rule \
            allows the built-in targets stsbridge:revoke and stsbridge:introspect."),
        (name = "issuer", description = "stsbridge as an OIDC issuer of the JWTs it mints."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub(super) struct ApiDoc;

/// The security scheme every exchange and operator endpoint uses: the caller's own token in
/// `Authorization`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The subject token (for operator endpoints, the operator's own token). \
                         `Authorization: Bearer <token>`, `DPoP <token>` with a DPoP proof, or \
                         the bare token as AWS SDKs send AWS_CONTAINER_AUTHORIZATION_TOKEN.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The security scheme's name (the handlers' `security(...)` spell it out: the macro takes a
/// literal).
const BEARER: &str = "bearer";

/// The document, made once.
static DOCUMENT: LazyLock<Arc<str>> = LazyLock::new(|| {
    serde_json::to_string_pretty(&document())
        .map(|mut s| {
            s.push('\n');
            Arc::from(s)
        })
        .unwrap_or_else(|e| {
            tracing::error!("the OpenAPI document does not serialize: {e}");
            Arc::from("{}")
        })
});

/// The OpenAPI document of the service's HTTP API.
pub fn document() -> utoipa::openapi::OpenApi {
    super::api_routes().split_for_parts().1
}

/// The document as pretty JSON with a final newline (what `/openapi.json` serves and
/// `examples/openapi.json` holds).
pub fn document_json() -> Arc<str> {
    Arc::clone(&DOCUMENT)
}

/// A refusal: the error body, with `headers` (name, description).
fn refusal(description: &str, headers: &[(&str, &str)]) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    for (name, about) in headers {
        let schema = if *name == "Retry-After" {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
        } else {
            ObjectBuilder::new().schema_type(Type::String)
        };
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(schema)
                .description(Some(*about))
                .build(),
        );
    }
    response.build().into()
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before trying again.");
const WWW_AUTHENTICATE: (&str, &str) = (
    "WWW-Authenticate",
    "`Bearer error=\"invalid_token\"` (RFC 6750).",
);

/// Each refusal status an endpoint can answer, and what it means there.
fn refusals(statuses: &[u16]) -> std::collections::BTreeMap<String, RefOr<Response>> {
    let mut out = ResponsesBuilder::new();
    for status in statuses {
        let response = match status {
            400 => refusal(
                "`invalid_request` (a missing, repeated or malformed parameter), \
                 `invalid_dpop_proof` or `invalid_scope`.",
                &[],
            ),
            401 => refusal(
                "`invalid_token`: no token, or one that does not validate; the description ends \
                 with the reason code in parentheses.",
                &[WWW_AUTHENTICATE],
            ),
            403 => refusal(
                "`access_denied`: no rule allows this caller the target, or it is revoked.",
                &[],
            ),
            404 => refusal("`unknown_target` or `not_found`.", &[]),
            409 => refusal("`too_many_revocations`: the revocation list is full.", &[]),
            413 => refusal("`request_too_large`: the body is over 64 KiB.", &[]),
            429 => refusal(
                "`rate_limited`: this caller, this target, or this address after many invalid \
                 tokens.",
                &[RETRY_AFTER],
            ),
            500 => refusal(
                "`server_error`: the exchange could not be recorded in the audit log, so no \
                 credential was issued.",
                &[],
            ),
            502 => refusal(
                "`upstream_rejected`: the cloud said no; its error code is kept and the \
                 description says what to check.",
                &[],
            ),
            503 => refusal(
                "`upstream_unavailable` or `temporarily_unavailable`: an upstream, the issuer's \
                 keys, the revocation list or the shared state cannot be reached now.",
                &[RETRY_AFTER],
            ),
            _ => continue,
        };
        out = out.response(status.to_string(), response);
    }
    out.build().into()
}

/// A marker type whose `IntoResponses` lists the refusals `statuses` (a handler's
/// `responses(...)` names it).
macro_rules! refusals_of {
    ($(#[$doc:meta])* $name:ident: $($status:literal),+) => {
        $(#[$doc])*
        pub(super) struct $name;
        impl IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
                refusals(&[$($status),+])
            }
        }
    };
}

refusals_of!(
    /// The refusals of `/v1/credentials/{target}`.
    CredentialRefusals: 400, 401, 403, 404, 429, 500, 502, 503
);
refusals_of!(
    /// The refusals of `/oauth2/token`.
    ExchangeRefusals: 400, 401, 403, 404, 413, 429, 500, 502, 503
);
refusals_of!(
    /// The refusals of an operator endpoint (revocations, introspection).
    OperatorRefusals: 400, 401, 403, 429, 500, 503
);
refusals_of!(
    /// The refusals of `POST /v1/revocations`, which also answers a full list and a large body.
    RevocationRefusals: 400, 401, 403, 409, 413, 429, 500, 503
);
refusals_of!(
    /// The refusals of `DELETE /v1/revocations/{id}`, which also answers one that is not there.
    UnrevokeRefusals: 400, 401, 403, 404, 429, 500, 503
);
