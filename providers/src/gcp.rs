//! GCP workload identity federation on Google's documented REST protocol.
//!
//! 1. `POST {sts}/v1/token` (RFC 8693 form): the minted assertion for a federated access token.
//! 2. When the target names a service account: `POST {iamcredentials}/v1/projects/-/serviceAccounts/
//!    {email}:generateAccessToken` with the federated token as Bearer, for a token of that account.
//!
//! The expiry always comes from Google's answers (`expires_in`, `expireTime`). The
//! `google-cloud-auth` crate is not used: it hides token expiry and fixes the impersonation host.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::credential::{AccessToken, Credential};
use crate::error::ProviderError;
use crate::request::{GcpRequest, ProviderKind};
use crate::rest::{RestClient, RestSettings, excerpt, fingerprint};
use crate::signer::{AssertionSigner, assertion_for};
use crate::{Issued, Provider, UpstreamInfo};

/// Google's STS endpoint.
pub const DEFAULT_STS: &str = "https://sts.googleapis.com";
/// Google's IAM credentials endpoint.
pub const DEFAULT_IAMCREDENTIALS: &str = "https://iamcredentials.googleapis.com";
/// The scope a federated token needs to impersonate a service account.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `generateAccessToken` grants at most an hour unless the organization policy
/// `constraints/iam.allowServiceAccountCredentialLifetimeExtension` allows up to 12.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime with the organization policy extension.
pub const MAX_EXTENDED_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Google's limit on the `sub` of a federated token.
pub const MAX_SUBJECT_BYTES: usize = 127;
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Settings of the GCP provider.
#[derive(Debug, Clone)]
pub struct GcpSettings {
    /// STS endpoint (no trailing slash).
    pub sts_endpoint: String,
    /// IAM credentials endpoint (no trailing slash).
    pub iamcredentials_endpoint: String,
    /// Timeouts, retries, concurrency.
    pub rest: RestSettings,
}

impl Default for GcpSettings {
    fn default() -> Self {
        GcpSettings {
            sts_endpoint: DEFAULT_STS.into(),
            iamcredentials_endpoint: DEFAULT_IAMCREDENTIALS.into(),
            rest: RestSettings::default(),
        }
    }
}

/// The GCP provider.
pub struct GcpProvider {
    client: RestClient,
    sts: String,
    iam: String,
    signer: Arc<dyn AssertionSigner>,
}

impl GcpProvider {
    /// Builds the provider; no call is made until the first fetch.
    pub fn new(
        settings: &GcpSettings,
        signer: Arc<dyn AssertionSigner>,
    ) -> Result<Self, ProviderError> {
        Ok(GcpProvider {
            client: RestClient::new(ProviderKind::Gcp, settings.rest.clone())?,
            sts: settings.sts_endpoint.trim_end_matches('/').to_owned(),
            iam: settings
                .iamcredentials_endpoint
                .trim_end_matches('/')
                .to_owned(),
            signer,
        })
    }

    async fn fetch_gcp(
        &self,
        request: &GcpRequest,
        now: SystemTime,
    ) -> Result<Issued, ProviderError> {
        let started = Instant::now();
        let mut upstream = UpstreamInfo::default();
        let assertion = assertion_for(
            self.signer.as_ref(),
            &request.assertion,
            &request.assertion_audience,
            Default::default(),
            now,
            &mut upstream,
        )?;

        let sts_scope = if request.service_account.is_some() {
            CLOUD_PLATFORM.to_owned()
        } else {
            request.scopes.join(" ")
        };
        let form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("audience", request.audience.as_str()),
            ("scope", sts_scope.as_str()),
            ("subject_token", assertion.expose_secret()),
        ];
        let url = format!("{}/v1/token", self.sts);
        let answer = self
            .client
            .send("the GCP STS token exchange", || {
                self.client.http().post(&url).form(&form)
            })
            .await?;
        let body = json_body(&answer.body);
        if !answer.status.is_success() {
            return Err(sts_error(answer.status.as_u16(), &body, request));
        }
        let federated = body["access_token"]
            .as_str()
            .ok_or_else(|| invalid("the STS answer has no access_token"))?;
        let expires_in = body["expires_in"]
            .as_u64()
            .ok_or_else(|| invalid("the STS answer has no expires_in"))?;

        let token = match &request.service_account {
            None => AccessToken {
                id: fingerprint(federated),
                token: SecretString::from(federated.to_owned()),
                issued_token_type: ACCESS_TOKEN_TYPE.into(),
                token_type: "Bearer".into(),
                expires_at: now + Duration::from_secs(expires_in),
                scope: Some(request.scopes.join(" ")),
            },
            Some(email) => self.impersonate(email, federated, request).await?,
        };
        upstream.latency = started.elapsed();
        Ok(Issued {
            credential: Credential::Token(Box::new(token)),
            upstream,
        })
    }

    async fn impersonate(
        &self,
        email: &str,
        federated: &str,
        request: &GcpRequest,
    ) -> Result<AccessToken, ProviderError> {
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            self.iam
        );
        let mut payload = json!({ "scope": request.scopes, "lifetime": format!("{}s", request.lifetime.as_secs()) });
        if !request.delegates.is_empty() {
            let delegates: Vec<String> = request
                .delegates
                .iter()
                .map(|d| format!("projects/-/serviceAccounts/{d}"))
                .collect();
            payload["delegates"] = json!(delegates);
        }
        let answer = self
            .client
            .send("generateAccessToken", || {
                self.client
                    .http()
                    .post(&url)
                    .bearer_auth(federated)
                    .json(&payload)
            })
            .await?;
        let body = json_body(&answer.body);
        if !answer.status.is_success() {
            return Err(iam_error(answer.status.as_u16(), &body, email));
        }
        let token = body["accessToken"]
            .as_str()
            .ok_or_else(|| invalid("generateAccessToken answered no accessToken"))?;
        let expire_time = body["expireTime"]
            .as_str()
            .ok_or_else(|| invalid("generateAccessToken answered no expireTime"))?;
        let expires_at = time::OffsetDateTime::parse(
            expire_time,
            &time::format_description::well_known::Rfc3339,
        )
        .map(SystemTime::from)
        .map_err(|_| invalid("expireTime is not an RFC 3339 time"))?;
        Ok(AccessToken {
            id: fingerprint(token),
            token: SecretString::from(token.to_owned()),
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_at,
            scope: Some(request.scopes.join(" ")),
        })
    }
}

impl Provider<GcpRequest> for GcpProvider {
    fn fetch<'a>(
        &'a self,
        request: &'a GcpRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(self.fetch_gcp(request, now))
    }
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn invalid(detail: &str) -> ProviderError {
    ProviderError::InvalidResponse {
        provider: ProviderKind::Gcp,
        detail: detail.to_owned(),
    }
}

/// Errors of the STS token exchange: OAuth style, `{"error", "error_description"}`.
fn sts_error(status: u16, body: &Value, request: &GcpRequest) -> ProviderError {
    let code = body["error"]
        .as_str()
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    let audience = &request.audience;
    let hint = match code.as_str() {
        "invalid_grant" => format!(
            "the workload identity pool provider {audience} rejected stsbridge's assertion: check the provider's issuer URI \
             (stsbridge's issuer URL), its allowed audiences ({}), its attribute mapping and attribute condition, and that \
             Google can fetch the issuer's JWKS",
            request.assertion_audience
        ),
        "invalid_target" => format!(
            "{audience} is not an existing, enabled workload identity pool provider: check the target's audience"
        ),
        "invalid_request" => {
            "Google's STS refused the request's form: see the upstream message in the log"
                .to_owned()
        }
        "unauthorized_client" => {
            format!("the pool provider {audience} is disabled or does not allow this token type")
        }
        "invalid_scope" => {
            "a requested scope is not valid for a federated token: check the target's scopes"
                .to_owned()
        }
        _ => "Google's STS refused the exchange: see the upstream message in the log".to_owned(),
    };
    ProviderError::Rejected {
        provider: ProviderKind::Gcp,
        code,
        hint,
        upstream_message: body["error_description"].as_str().map(excerpt),
        request_id: None,
    }
}

/// Errors of `generateAccessToken`: Google API style, `{"error": {"code", "message", "status"}}`.
fn iam_error(status: u16, body: &Value, email: &str) -> ProviderError {
    let code = body["error"]["status"]
        .as_str()
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    let hint = match code.as_str() {
        "PERMISSION_DENIED" => format!(
            "the federated principal may not impersonate {email}: grant it roles/iam.workloadIdentityUser on the service \
             account (principal://iam.googleapis.com/.../subject/<assertion sub>), and check that the IAM Service Account \
             Credentials API is enabled"
        ),
        "NOT_FOUND" => format!("the service account {email} does not exist or is deleted: check the target's service_account"),
        "INVALID_ARGUMENT" => "generateAccessToken refused an argument: a lifetime over 1h needs the organization policy \
             constraints/iam.allowServiceAccountCredentialLifetimeExtension; check scopes and delegates"
            .to_owned(),
        "UNAUTHENTICATED" => "the federated token was not accepted by the IAM credentials API: check the STS exchange's scope".to_owned(),
        "FAILED_PRECONDITION" => format!("the service account {email} is disabled"),
        _ => format!("generateAccessToken for {email} failed: see the upstream message in the log"),
    };
    ProviderError::Rejected {
        provider: ProviderKind::Gcp,
        code,
        hint,
        upstream_message: body["error"]["message"].as_str().map(excerpt),
        request_id: None,
    }
}

/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID`,
/// pool and provider ids being 4-32 lowercase letters, digits and hyphens.
pub fn valid_pool_provider_audience(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("//iam.googleapis.com/projects/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let id = |s: &str| {
        (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    parts.len() == 7
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "locations"
        && parts[2] == "global"
        && parts[3] == "workloadIdentityPools"
        && id(parts[4])
        && parts[5] == "providers"
        && id(parts[6])
}

/// `name@project.iam.gserviceaccount.com` and Google's other service account domains.
pub fn valid_service_account(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    (6..=63).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !local.starts_with('-')
        && domain.ends_with(".gserviceaccount.com")
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::AssertionSource;

    fn request() -> GcpRequest {
        GcpRequest {
            target: "t".into(),
            assertion: AssertionSource::Mint { subject: "target:t".into() },
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/v".into(),
            assertion_audience: "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/v".into(),
            scopes: vec![CLOUD_PLATFORM.into()],
            service_account: Some("sa@p.iam.gserviceaccount.com".into()),
            lifetime: Duration::from_secs(3600),
            delegates: vec![],
        }
    }

    #[test]
    fn sts_errors_keep_the_oauth_code_and_say_what_to_check() {
        let body = json!({"error": "invalid_grant", "error_description": "The audience in ID Token does not match"});
        match sts_error(400, &body, &request()) {
            ProviderError::Rejected {
                code,
                hint,
                upstream_message,
                ..
            } => {
                assert_eq!(code, "invalid_grant");
                assert!(hint.contains("attribute condition"), "{hint}");
                assert_eq!(
                    upstream_message.as_deref(),
                    Some("The audience in ID Token does not match")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permission_denied_names_the_missing_binding() {
        let body = json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied", "status": "PERMISSION_DENIED"}});
        match iam_error(403, &body, "sa@p.iam.gserviceaccount.com") {
            ProviderError::Rejected { code, hint, .. } => {
                assert_eq!(code, "PERMISSION_DENIED");
                assert!(hint.contains("roles/iam.workloadIdentityUser"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unparseable_errors_still_carry_the_status() {
        match iam_error(418, &Value::Null, "x") {
            ProviderError::Rejected { code, .. } => assert_eq!(code, "HTTP 418"),
            other => panic!("{other:?}"),
        }
    }
}
