//! What an exchange takes and gives: the request as the HTTP layer parsed it, and the granted
//! credential with the shape its caller expects.

use super::*;

/// Which endpoint asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/credentials/{target}`.
    Credentials,
    /// `/oauth2/token` (RFC 8693).
    TokenExchange,
}

impl Endpoint {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Credentials => "credentials",
            Endpoint::TokenExchange => "token_exchange",
        }
    }
}

/// One exchange request, as parsed by the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The subject token.
    pub token: &'a str,
    /// The target name.
    pub target: &'a str,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// Requested scopes (RFC 8693 `scope`).
    pub scopes: Option<&'a [String]>,
    /// The actor token (RFC 8693 delegation).
    pub actor_token: Option<&'a str>,
    /// The HTTP request id, for the audit event.
    pub request_id: Option<&'a str>,
    /// The DNS names of the caller's verified client certificate (mTLS); empty without one.
    pub client_names: &'a [String],
    /// RFC 8705's `x5t#S256` of the caller's verified client certificate, if it presented one.
    pub client_thumbprint: Option<&'a str>,
    /// The caller's DPoP proof, checked against this request (RFC 9449), if it sent one.
    pub dpop: Option<&'a crate::dpop::Proof>,
}

impl ExchangeRequest<'_> {
    /// What this request proves of its caller's keys.
    pub fn possession(&self) -> token::Possession<'_> {
        token::Possession {
            certificate: self.client_thumbprint,
            dpop: self.dpop,
        }
    }
}

/// How a granted credential is shown to its caller: its target's native shape, with what that
/// shape names besides the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The container-credentials shape (or `credential_process`).
    Aws,
    /// GCE metadata's token shape, naming the impersonated service account.
    Gcp {
        /// The service account, when the target impersonates one.
        service_account: Option<String>,
    },
    /// The managed-identity shape, naming the resource and the client id.
    Azure {
        /// The resource the scope is for.
        resource: String,
        /// The application (client) id.
        client_id: String,
    },
    /// RFC 8693's token-exchange shape.
    Jwt,
}

impl Answer {
    pub(super) fn of(request: &ProviderRequest) -> Answer {
        match request {
            ProviderRequest::Aws(_) => Answer::Aws,
            ProviderRequest::Gcp(r) => Answer::Gcp {
                service_account: r.service_account.clone(),
            },
            ProviderRequest::Azure(r) => Answer::Azure {
                resource: stsbridge_providers::azure::resource_of(&r.scope).to_owned(),
                client_id: r.client_id.clone(),
            },
            ProviderRequest::Jwt(_) => Answer::Jwt,
        }
    }
}

/// A granted exchange.
#[derive(Debug)]
pub struct Exchanged {
    /// The decision id.
    pub decision_id: String,
    /// The target's name (shared with the compiled target).
    pub target: std::sync::Arc<str>,
    /// The shape of the answer.
    pub answer: Answer,
    /// The credential and its cache entry.
    pub entry: Arc<Entry>,
    /// How the cache served it.
    pub cache: CacheEvent,
    /// For a `format: reference` target: the handle handed out instead of the token.
    pub reference: Option<secrecy::SecretString>,
    /// The token is bound to the caller's DPoP key (`token_type: DPoP`).
    pub dpop_bound: bool,
}
