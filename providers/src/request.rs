//! Fully rendered provider requests.
//!
//! A request holds every value that decides which cloud session comes back, so it doubles as the
//! cache key: two callers whose requests are equal share one credential. Collections are kept sorted
//! by the renderer so that equal requests compare and hash equal.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// The kinds of provider stsbridge speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    /// AWS STS.
    Aws,
    /// GCP workload identity federation.
    Gcp,
    /// Azure (Entra ID) federated credentials.
    Azure,
    /// stsbridge's own internal tokens.
    Jwt,
}

impl ProviderKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Aws,
        ProviderKind::Gcp,
        ProviderKind::Azure,
        ProviderKind::Jwt,
    ];

    /// The lower-case name used in config, metrics and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aws => "aws",
            ProviderKind::Gcp => "gcp",
            ProviderKind::Azure => "azure",
            ProviderKind::Jwt => "jwt",
        }
    }

    /// The upstream's name as operators know it.
    pub fn upstream_name(self) -> &'static str {
        match self {
            ProviderKind::Aws => "AWS STS",
            ProviderKind::Gcp => "Google Cloud",
            ProviderKind::Azure => "Entra ID",
            ProviderKind::Jwt => "stsbridge's issuer",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rendered request for any provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProviderRequest {
    /// AssumeRoleWithWebIdentity plus optional AssumeRole hops.
    Aws(AwsRequest),
    /// STS token exchange plus optional service account impersonation.
    Gcp(GcpRequest),
    /// Client-credentials grant with a federated client assertion.
    Azure(AzureRequest),
    /// An internal audience-bound JWT.
    Jwt(JwtRequest),
}

impl ProviderRequest {
    /// The provider that serves this request.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderRequest::Aws(_) => ProviderKind::Aws,
            ProviderRequest::Gcp(_) => ProviderKind::Gcp,
            ProviderRequest::Azure(_) => ProviderKind::Azure,
            ProviderRequest::Jwt(_) => ProviderKind::Jwt,
        }
    }

    /// The name of the target, shared (with the compiled target where the request holds it so).
    pub fn shared_target(&self) -> Arc<str> {
        match self {
            ProviderRequest::Aws(r) => Arc::clone(&r.target),
            other => Arc::from(other.target()),
        }
    }

    /// The name of the target this request was rendered from.
    pub fn target(&self) -> &str {
        match self {
            ProviderRequest::Aws(r) => &r.target,
            ProviderRequest::Gcp(r) => &r.target,
            ProviderRequest::Azure(r) => &r.target,
            ProviderRequest::Jwt(r) => &r.target,
        }
    }
}

/// Which token a cloud is shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssertionSource {
    /// stsbridge mints its own assertion with this `sub`.
    Mint {
        /// The assertion's `sub`.
        subject: String,
    },
    /// The caller's own token is handed on unchanged (`assertion: passthrough`).
    Passthrough(PassthroughToken),
}

/// A caller's token handed on to a cloud. Compared and hashed by its SHA-256 so that it can sit in a
/// cache key without the key ever holding or printing more than a digest.
#[derive(Clone)]
pub struct PassthroughToken {
    token: Arc<SecretString>,
    digest: [u8; 32],
}

impl PassthroughToken {
    /// Wraps a caller's token.
    pub fn new(token: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        PassthroughToken {
            token: Arc::new(SecretString::from(token)),
            digest: bytes,
        }
    }

    /// The token, for the one call that sends it upstream.
    pub fn expose(&self) -> &str {
        self.token.expose_secret()
    }
}

impl PartialEq for PassthroughToken {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for PassthroughToken {}
impl Hash for PassthroughToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}
impl fmt::Debug for PassthroughToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PassthroughToken([REDACTED])")
    }
}

/// The first AWS hop (`AssumeRoleWithWebIdentity`) and the chain that follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsRequest {
    /// Target name (shared with the compiled target).
    pub target: Arc<str>,
    /// The web identity token shown to STS.
    pub assertion: AssertionSource,
    /// Role of the first hop (shared with the compiled target: every cached credential's key
    /// would otherwise carry its own copy).
    pub role_arn: Arc<str>,
    /// `RoleSessionName`, already sanitized.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration: Duration,
    /// Inline session policy JSON for the first hop (can only narrow).
    pub session_policy: Option<Arc<str>>,
    /// Session tags, sorted by key; carried as assertion claims on the first hop.
    pub tags: Vec<(String, String)>,
    /// Tag keys that stay with the session through role chaining.
    pub transitive_tag_keys: Vec<String>,
    /// Source identity, carried as an assertion claim on the first hop.
    pub source_identity: Option<String>,
    /// Chained `AssumeRole` hops, in order.
    pub chain: Vec<AwsHop>,
}

/// One chained `AssumeRole` hop, signed with the previous hop's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsHop {
    /// Role to assume (shared with the compiled target).
    pub role_arn: Arc<str>,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds` (AWS caps chained sessions at one hour).
    pub duration: Duration,
    /// `ExternalId`.
    pub external_id: Option<String>,
    /// Inline session policy JSON.
    pub session_policy: Option<Arc<str>>,
    /// Session tags, sorted by key.
    pub tags: Vec<(String, String)>,
    /// `TransitiveTagKeys`.
    pub transitive_tag_keys: Vec<String>,
    /// `SourceIdentity` (AWS keeps the first hop's value; a different one is refused).
    pub source_identity: Option<String>,
}

/// GCP: an STS token exchange against a workload identity pool provider, then, when a service
/// account is named, `generateAccessToken` for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcpRequest {
    /// Target name.
    pub target: String,
    /// The token shown to Google's STS.
    pub assertion: AssertionSource,
    /// STS `audience`: `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/V`.
    pub audience: String,
    /// `aud` of the minted assertion (the pool provider's allowed audience).
    pub assertion_audience: String,
    /// OAuth scopes of the final token, sorted.
    pub scopes: Vec<String>,
    /// Service account to impersonate; `None` returns the federated token itself.
    pub service_account: Option<String>,
    /// Lifetime asked of `generateAccessToken`.
    pub lifetime: Duration,
    /// Delegation chain of service accounts for `generateAccessToken`.
    pub delegates: Vec<String>,
}

/// Azure: the client-credentials grant with a federated client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureRequest {
    /// Target name.
    pub target: String,
    /// The client assertion.
    pub assertion: AssertionSource,
    /// Tenant (GUID or verified domain).
    pub tenant_id: String,
    /// Application (client) id of the app registration or user-assigned identity.
    pub client_id: String,
    /// `scope`, ending in `/.default`.
    pub scope: String,
}

/// An internal token (RFC 8693), minted by stsbridge's own issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtRequest {
    /// Target name.
    pub target: String,
    /// `aud` of the minted token.
    pub audience: String,
    /// `sub` of the minted token.
    pub subject: String,
    /// Granted scopes, sorted and deduplicated.
    pub scopes: Vec<String>,
    /// Lifetime of the minted token.
    pub lifetime: Duration,
    /// The `act` claim (canonical JSON) when a caller acts for the subject.
    pub act: Option<String>,
    /// The `cnf` claim (canonical JSON) when the token is bound to its caller's key (RFC 8705's
    /// `x5t#S256`): part of the cache key, so each certificate gets its own token.
    pub cnf: Option<String>,
}
