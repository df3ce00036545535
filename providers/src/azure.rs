//! Azure: Entra ID's client-credentials grant with a federated client assertion, on the documented
//! REST protocol: `POST {authority}/{tenant}/oauth2/v2.0/token`.
//!
//! `azure_identity`'s `ClientAssertionCredential` is not used: it requires an https authority (so
//! no loopback stand-in in tests) and caches tokens by scope only, which would hand one target's
//! token to another target of the same scope. The expiry comes from Entra's `expires_in`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::credential::{AccessToken, Credential};
use crate::error::ProviderError;
use crate::request::{AzureRequest, ProviderKind};
use crate::rest::{RestClient, RestSettings, excerpt, fingerprint};
use crate::signer::{AssertionSigner, assertion_for};
use crate::{Issued, Provider, UpstreamInfo};

/// Entra ID's public-cloud authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The `aud` Entra expects in a federated client assertion.
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The resource a `<resource>/.default` scope is for, as managed identity endpoints report it.
pub fn resource_of(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Settings of the Azure provider.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Authority host (no trailing slash).
    pub authority_host: String,
    /// Timeouts, retries, concurrency.
    pub rest: RestSettings,
}

impl Default for AzureSettings {
    fn default() -> Self {
        AzureSettings {
            authority_host: DEFAULT_AUTHORITY.into(),
            rest: RestSettings::default(),
        }
    }
}

/// The Azure provider.
pub struct AzureProvider {
    client: RestClient,
    authority: String,
    signer: Arc<dyn AssertionSigner>,
}

impl AzureProvider {
    /// Builds the provider; no call is made until the first fetch.
    pub fn new(
        settings: &AzureSettings,
        signer: Arc<dyn AssertionSigner>,
    ) -> Result<Self, ProviderError> {
        Ok(AzureProvider {
            client: RestClient::new(ProviderKind::Azure, settings.rest.clone())?,
            authority: settings.authority_host.trim_end_matches('/').to_owned(),
            signer,
        })
    }

    async fn fetch_azure(
        &self,
        request: &AzureRequest,
        now: SystemTime,
    ) -> Result<Issued, ProviderError> {
        let started = Instant::now();
        let mut upstream = UpstreamInfo::default();
        let assertion = assertion_for(
            self.signer.as_ref(),
            &request.assertion,
            AZURE_AUDIENCE,
            Default::default(),
            now,
            &mut upstream,
        )?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", request.client_id.as_str()),
            ("scope", request.scope.as_str()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion.expose_secret()),
        ];
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority, request.tenant_id);
        let answer = self
            .client
            .send("the Entra ID token request", || {
                self.client.http().post(&url).form(&form)
            })
            .await?;
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !answer.status.is_success() {
            return Err(entra_error(answer.status.as_u16(), &body, request));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| invalid("the answer has no access_token"))?;
        let expires_in = body["expires_in"]
            .as_u64()
            .ok_or_else(|| invalid("the answer has no expires_in"))?;
        upstream.latency = started.elapsed();
        upstream.request_id = body["correlation_id"].as_str().map(Box::from);
        Ok(Issued {
            credential: Credential::Token(Box::new(AccessToken {
                id: fingerprint(token),
                token: SecretString::from(token.to_owned()),
                issued_token_type: ACCESS_TOKEN_TYPE.into(),
                token_type: body["token_type"].as_str().unwrap_or("Bearer").to_owned(),
                expires_at: now + Duration::from_secs(expires_in),
                scope: Some(request.scope.clone()),
            })),
            upstream,
        })
    }
}

impl Provider<AzureRequest> for AzureProvider {
    fn fetch<'a>(
        &'a self,
        request: &'a AzureRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(self.fetch_azure(request, now))
    }
}

fn invalid(detail: &str) -> ProviderError {
    ProviderError::InvalidResponse {
        provider: ProviderKind::Azure,
        detail: detail.to_owned(),
    }
}

/// Entra's errors: `{"error", "error_description": "AADSTS70021: ...", "error_codes": [70021], ...}`.
/// The code kept is `AADSTS<n>` when Entra gives one, else the OAuth `error`.
fn entra_error(status: u16, body: &Value, request: &AzureRequest) -> ProviderError {
    let number = body["error_codes"]
        .as_array()
        .and_then(|c| c.first())
        .and_then(Value::as_u64);
    let code = match (number, body["error"].as_str()) {
        (Some(n), _) => format!("AADSTS{n}"),
        (None, Some(e)) => e.to_owned(),
        (None, None) => format!("HTTP {status}"),
    };
    let app = &request.client_id;
    let tenant = &request.tenant_id;
    let propagation = "(federated credential changes take up to a minute to take effect)";
    let hint = match number {
        Some(70021) => format!(
            "no federated identity credential on application {app} matches the assertion: check its issuer (stsbridge's \
             issuer URL), subject (the target's assertion sub) and audience ({AZURE_AUDIENCE}) {propagation}"
        ),
        Some(700211) => format!("no federated identity credential on {app} has stsbridge's issuer URL as its issuer {propagation}"),
        Some(700212) => format!("no federated identity credential on {app} has the audience {AZURE_AUDIENCE} {propagation}"),
        Some(700213) | Some(7002138) => format!(
            "no federated identity credential on {app} has the assertion's subject; matching is case sensitive {propagation}"
        ),
        Some(700024) => "the client assertion was outside its validity window when Entra checked it: check this host's clock \
             and issuer.assertion_lifetime"
            .to_owned(),
        Some(70023) => format!(
            "Entra refused the client assertion for {app}: check that the federated credential's issuer is stsbridge's issuer \
             URL and that Entra can fetch its discovery document and JWKS over HTTPS"
        ),
        Some(7000215) => format!(
            "Entra treated the request as a client-secret login: check that {app} is the application or user-assigned \
             identity that holds the federated credential"
        ),
        Some(700016) => format!("application {app} was not found in tenant {tenant}: check the target's client_id and tenant_id"),
        Some(90002) => format!("tenant {tenant} does not exist: check the target's tenant_id"),
        Some(70011) | Some(1002012) => format!("the scope {} is not valid: it must be a resource's /.default", request.scope),
        Some(500011) => format!("the resource of scope {} is not in tenant {tenant}", request.scope),
        _ => format!("Entra ID refused the token request for {app}: see the upstream message in the log"),
    };
    ProviderError::Rejected {
        provider: ProviderKind::Azure,
        code,
        hint,
        upstream_message: body["error_description"].as_str().map(excerpt),
        request_id: body["correlation_id"].as_str().map(str::to_owned),
    }
}

/// Whether `s` is a GUID (8-4-4-4-12 hex digits), as Entra tenant and client ids are.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` is a DNS domain name (a verified tenant domain).
pub fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::AssertionSource;
    use serde_json::json;

    fn request() -> AzureRequest {
        AzureRequest {
            target: "t".into(),
            assertion: AssertionSource::Mint {
                subject: "target:t".into(),
            },
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            scope: "https://storage.azure.com/.default".into(),
        }
    }

    #[test]
    fn each_listed_aadsts_code_gets_its_own_hint() {
        let mut hints = std::collections::HashSet::new();
        for n in [70021, 700024, 70023, 7000215] {
            let body = json!({"error": "invalid_client", "error_description": format!("AADSTS{n}: nope"), "error_codes": [n], "correlation_id": "c-1"});
            match entra_error(401, &body, &request()) {
                ProviderError::Rejected {
                    code,
                    hint,
                    request_id,
                    ..
                } => {
                    assert_eq!(code, format!("AADSTS{n}"));
                    assert_eq!(request_id.as_deref(), Some("c-1"));
                    assert!(hints.insert(hint));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn fic_mismatch_mentions_propagation() {
        let body = json!({"error": "invalid_client", "error_codes": [70021]});
        match entra_error(400, &body, &request()) {
            ProviderError::Rejected { hint, .. } => {
                assert!(hint.contains("up to a minute"), "{hint}")
            }
            other => panic!("{other:?}"),
        }
    }
}
