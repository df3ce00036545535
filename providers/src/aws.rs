//! AWS: `AssumeRoleWithWebIdentity`, then chained `AssumeRole` hops, on `aws-sdk-sts`.
//!
//! The client is built from an explicit config: no ambient credentials, no profile files, endpoint
//! overridable (moto's server in tests, a VPC endpoint in production). The first hop is unsigned; its
//! session tags and source identity cannot be parameters of that API, so they travel as claims of the
//! assertion stsbridge mints. Each chained hop is signed with the previous hop's credentials.
//!
//! Throttling and transient failures are retried by the SDK's standard retry strategy (jittered
//! exponential backoff, bounded attempts); everything else fails at once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, IdentityCache, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use aws_sdk_sts::types::Tag;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;

use crate::credential::{AwsCredential, Credential, account_of_arn};
use crate::error::ProviderError;
use crate::request::{AwsHop, AwsRequest, ProviderKind};
use crate::signer::{AssertionSigner, assertion_for};
use crate::{Issued, Provider, UpstreamInfo};

/// The `aud` AWS expects in a web identity token for an IAM OIDC provider.
pub const AWS_AUDIENCE: &str = "sts.amazonaws.com";
/// Assertion claim that carries session tags on the first hop.
pub const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// Assertion claim that carries the source identity on the first hop.
pub const SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";
/// AWS caps a session obtained by role chaining at one hour.
pub const MAX_CHAINED_DURATION: Duration = Duration::from_secs(3600);
/// The longest session any role can allow.
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);
/// The shortest session STS grants.
pub const MIN_DURATION: Duration = Duration::from_secs(900);
/// botocore (and the other AWS SDKs) refresh credentials that have less than this left, so
/// credentials served with less make every SDK call come back for new ones.
pub const SDK_REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);
/// Attempts per STS call, first included: enough to ride out a throttling burst, bounded so a caller
/// is not held for long.
const MAX_ATTEMPTS: u32 = 3;
/// What a caller is told to wait when STS throttles us beyond the retry budget.
const THROTTLED_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Settings of the AWS provider.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Signing region of STS.
    pub region: String,
    /// STS endpoint override (moto's server, a VPC endpoint).
    pub endpoint: Option<String>,
    /// Timeout of one STS call, retries included.
    pub operation_timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
    /// Most exchanges in flight at once (each may make several STS calls).
    pub max_concurrent: usize,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: "us-east-1".into(),
            endpoint: None,
            operation_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_concurrent: 64,
        }
    }
}

/// The AWS provider.
pub struct AwsProvider {
    limiter: tokio::sync::Semaphore,
    base: aws_sdk_sts::Config,
    first_hop: aws_sdk_sts::Client,
    signer: Arc<dyn AssertionSigner>,
}

impl AwsProvider {
    /// Builds the provider; no network call is made until the first fetch.
    pub fn new(settings: &AwsSettings, signer: Arc<dyn AssertionSigner>) -> Self {
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(settings.operation_timeout)
            .connect_timeout(settings.connect_timeout)
            .build();
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(timeouts)
            // Each hop's credentials are used for exactly one call: caching them is pointless.
            .identity_cache(IdentityCache::no_cache());
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        let base = builder.build();
        let first_hop = aws_sdk_sts::Client::from_conf(base.clone());
        AwsProvider {
            limiter: tokio::sync::Semaphore::new(settings.max_concurrent.max(1)),
            base,
            first_hop,
            signer,
        }
    }

    async fn fetch_aws(
        &self,
        request: &AwsRequest,
        now: SystemTime,
    ) -> Result<Issued, ProviderError> {
        let _permit = self
            .limiter
            .acquire()
            .await
            .map_err(|_| ProviderError::Unavailable {
                provider: ProviderKind::Aws,
                detail: "the provider is shutting down".into(),
            })?;
        let started = Instant::now();
        let mut upstream = UpstreamInfo::default();
        let token = assertion_for(
            self.signer.as_ref(),
            &request.assertion,
            AWS_AUDIENCE,
            first_hop_claims(request),
            now,
            &mut upstream,
        )?;

        let response = self
            .first_hop
            .assume_role_with_web_identity()
            .role_arn(&*request.role_arn)
            .role_session_name(&request.session_name)
            .web_identity_token(token.expose_secret())
            .duration_seconds(seconds(request.duration))
            .set_policy(request.session_policy.as_deref().map(str::to_owned))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &request.role_arn, Hop::WebIdentity))?;
        upstream.request_id = response.request_id().map(Box::from);
        let mut current = to_credential(
            response.credentials(),
            response.assumed_role_user().map(|u| u.arn()),
        )?;

        for hop in &request.chain {
            let (next, request_id) = self.assume_role(&current, hop).await?;
            upstream.request_id = request_id;
            current = next;
        }
        upstream.latency = started.elapsed();
        Ok(Issued {
            credential: Credential::Aws(current),
            upstream,
        })
    }

    async fn assume_role(
        &self,
        previous: &AwsCredential,
        hop: &AwsHop,
    ) -> Result<(AwsCredential, Option<Box<str>>), ProviderError> {
        let credentials = Credentials::new(
            previous.access_key_id().to_owned(),
            previous.expose_secret_access_key().to_owned(),
            Some(previous.expose_session_token().to_owned()),
            Some(previous.expiration),
            "stsbridge-chain",
        );
        let config = self
            .base
            .to_builder()
            .credentials_provider(credentials)
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        let mut tags = Vec::with_capacity(hop.tags.len());
        for (key, value) in &hop.tags {
            let tag = Tag::builder().key(key).value(value).build().map_err(|e| {
                ProviderError::InvalidResponse {
                    provider: ProviderKind::Aws,
                    detail: format!("session tag {key} could not be built: {e}"),
                }
            })?;
            tags.push(tag);
        }
        let response = client
            .assume_role()
            .role_arn(&*hop.role_arn)
            .role_session_name(&hop.session_name)
            .duration_seconds(seconds(hop.duration))
            .set_external_id(hop.external_id.clone())
            .set_policy(hop.session_policy.as_deref().map(str::to_owned))
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!hop.transitive_tag_keys.is_empty()).then(|| hop.transitive_tag_keys.clone()),
            )
            .set_source_identity(hop.source_identity.clone())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &hop.role_arn, Hop::Chained))?;
        let request_id = response.request_id().map(Box::from);
        let credential = to_credential(
            response.credentials(),
            response.assumed_role_user().map(|u| u.arn()),
        )?;
        Ok((credential, request_id))
    }
}

impl Provider<AwsRequest> for AwsProvider {
    fn fetch<'a>(
        &'a self,
        request: &'a AwsRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(self.fetch_aws(request, now))
    }
}

/// The AWS-defined claims that carry session tags and source identity into the first hop.
pub fn first_hop_claims(request: &AwsRequest) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let mut extra = serde_json::Map::new();
    if !request.tags.is_empty() {
        let principal_tags: serde_json::Map<String, Value> = request
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        let mut tags = json!({ "principal_tags": principal_tags });
        if !request.transitive_tag_keys.is_empty() {
            tags["transitive_tag_keys"] = json!(request.transitive_tag_keys);
        }
        extra.insert(TAGS_CLAIM.into(), tags);
    }
    if let Some(source_identity) = &request.source_identity {
        extra.insert(
            SOURCE_IDENTITY_CLAIM.into(),
            Value::String(source_identity.clone()),
        );
    }
    extra
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn to_credential(
    credentials: Option<&aws_sdk_sts::types::Credentials>,
    arn: Option<&str>,
) -> Result<AwsCredential, ProviderError> {
    let invalid = |detail: &str| ProviderError::InvalidResponse {
        provider: ProviderKind::Aws,
        detail: detail.to_owned(),
    };
    let c = credentials.ok_or_else(|| invalid("the response carried no Credentials"))?;
    let arn = arn.ok_or_else(|| invalid("the response carried no AssumedRoleUser"))?;
    let expiration = SystemTime::try_from(*c.expiration())
        .map_err(|_| invalid("Expiration is not a representable time"))?;
    AwsCredential::new(
        c.access_key_id(),
        c.secret_access_key(),
        c.session_token(),
        expiration,
        account_of_arn(arn).as_deref(),
    )
    .map_err(|e| invalid(&e.to_string()))
}

/// Which STS call failed, for the hint.
#[derive(Clone, Copy)]
enum Hop {
    WebIdentity,
    Chained,
}

fn map_sdk_error<E, R>(err: SdkError<E, R>, role_arn: &str, hop: Hop) -> ProviderError
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            rejected(code, e.message(), e.request_id(), role_arn, hop)
        }
        SdkError::TimeoutError(_) => ProviderError::Unavailable {
            provider: ProviderKind::Aws,
            detail: "STS did not answer within the timeout".into(),
        },
        SdkError::DispatchFailure(failure) => ProviderError::Unavailable {
            provider: ProviderKind::Aws,
            detail: match failure.as_connector_error() {
                Some(c) if c.is_timeout() => "timed out connecting to STS".into(),
                Some(c) if c.is_io() => "could not connect to STS".into(),
                _ => "the request to STS could not be sent".into(),
            },
        },
        SdkError::ResponseError(_) => ProviderError::InvalidResponse {
            provider: ProviderKind::Aws,
            detail: "the STS response could not be parsed".into(),
        },
        _ => ProviderError::InvalidResponse {
            provider: ProviderKind::Aws,
            detail: "the STS request could not be built".into(),
        },
    }
}

fn rejected(
    code: String,
    message: Option<&str>,
    request_id: Option<&str>,
    role_arn: &str,
    hop: Hop,
) -> ProviderError {
    let first_hop = matches!(hop, Hop::WebIdentity);
    let hint = match code.as_str() {
        "InvalidIdentityToken" => format!(
            "AWS did not accept stsbridge's assertion for {role_arn}: check that an IAM OIDC provider \
             exists for stsbridge's issuer URL with audience {AWS_AUDIENCE}, and that AWS can fetch the \
             issuer's discovery document and JWKS"
        ),
        "IDPRejectedClaim" => format!(
            "the trust policy of {role_arn} rejected the assertion's claims: check its \
             sub/aud conditions against the values `stsbridge terraform-vars` prints"
        ),
        "IDPCommunicationError" => "AWS could not reach stsbridge's issuer to fetch its JWKS: check \
             that the issuer URL is publicly reachable over HTTPS, or host the exported discovery \
             documents (stsbridge issuer export)"
            .to_owned(),
        "ExpiredTokenException" | "ExpiredToken" if first_hop => "the assertion had expired when AWS \
             checked it: check this host's clock and issuer.assertion_lifetime"
            .to_owned(),
        "ExpiredTokenException" | "ExpiredToken" => {
            "the previous hop's session expired before the chained AssumeRole: check the chain's durations"
                .to_owned()
        }
        "MalformedPolicyDocument" => format!(
            "the session policy sent for {role_arn} is not a valid IAM policy: check the target's \
             session_policy_file"
        ),
        "PackedPolicyTooLarge" => format!(
            "the session policy and session tags for {role_arn} exceed AWS's packed size limit: shorten \
             the policy or send fewer or shorter tags"
        ),
        "AccessDenied" if first_hop => format!(
            "{role_arn} does not allow this web identity: check that its trust policy allows \
             sts:AssumeRoleWithWebIdentity for stsbridge's OIDC provider, plus sts:TagSession and \
             sts:SetSourceIdentity when the target sets tags or a source identity"
        ),
        "AccessDenied" => format!(
            "{role_arn} does not trust the previous hop's role: check its trust policy (principal and \
             sts:ExternalId condition), and sts:TagSession / sts:SetSourceIdentity where used"
        ),
        "RegionDisabledException" => {
            "STS is not activated in the configured region: activate it or change providers.aws.region"
                .to_owned()
        }
        "ValidationError" => format!("STS refused a parameter sent for {role_arn}: check the target's values"),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
            return ProviderError::Throttled {
                provider: ProviderKind::Aws,
                retry_after: THROTTLED_RETRY_AFTER,
            };
        }
        _ => format!("STS refused the request for {role_arn}: see the upstream message in the log"),
    };
    ProviderError::Rejected {
        provider: ProviderKind::Aws,
        code,
        hint,
        upstream_message: message.map(|m| m.chars().take(512).collect()),
        request_id: request_id.map(str::to_owned),
    }
}

/// Whether `arn` is an IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path and name>`.
pub fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests;
