//! The config file as users write it. Every struct rejects unknown keys, so a typo is an error rather
//! than a silently ignored setting.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigDuration;

/// The top of a config file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Format version; must be 1.
    pub version: u32,
    /// `host:port` to listen on.
    pub listen: Option<String>,
    /// TLS for the listener.
    pub tls: Option<TlsFile>,
    /// stsbridge's own issuer.
    pub issuer: IssuerFile,
    /// Trusted token issuers.
    #[serde(default)]
    pub trust: Vec<TrustFile>,
    /// Mapping directory, relative to this file.
    pub mappings: Option<PathBuf>,
    /// Provider settings.
    #[serde(default)]
    pub providers: ProvidersFile,
    /// Credential cache.
    pub cache: Option<CacheFile>,
    /// Rate limits.
    pub limits: Option<LimitsFile>,
    /// Audit sink.
    pub audit: Option<AuditFile>,
    /// State shared by every replica (single use, rate limits), in Redis.
    pub shared_state: Option<SharedStateFile>,
    /// Revocations: where a single replica keeps them, and the longest one accepted.
    pub revocations: Option<RevocationsFile>,
    /// DPoP proofs (RFC 9449).
    pub dpop: Option<DpopFile>,
    /// The operations listener (plain HTTP: metrics and probes).
    pub ops: Option<OpsFile>,
}

/// `ops:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpsFile {
    /// `host:port` of the operations listener.
    pub listen: String,
}

/// `dpop:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpopFile {
    /// The oldest proof accepted, by its `iat` (default 60s).
    pub max_age: Option<ConfigDuration>,
}

/// `revocations:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationsFile {
    /// Where revocations are kept without `shared_state` (written atomically, reloaded on
    /// change), relative to this file.
    pub file: Option<PathBuf>,
    /// The longest `for` a revocation may ask (default 30d).
    pub max_for: Option<ConfigDuration>,
}

/// `tls:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
    /// CA bundle for client certificates (turns on mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// `required` (default with a CA bundle): no TLS session without a certificate;
    /// `optional`: callers without one are served too (targets with `bind: mtls` refuse them).
    pub client_auth: Option<String>,
}

/// `issuer:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// The URL clouds trust.
    pub url: String,
    /// Signing keys.
    pub keys: KeysFile,
    /// Lifetime of minted assertions.
    pub assertion_lifetime: Option<ConfigDuration>,
}

/// `issuer.keys:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Key directory; an empty one gets a new key on first start.
    pub dir: PathBuf,
    /// RS256 (default) or ES256.
    pub algorithm: Option<String>,
    /// How long a key staged by `stsbridge keys rotate` is published before it signs (default 1h).
    pub publish_before_use: Option<ConfigDuration>,
}

/// One `trust:` entry.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// Name used by rules.
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Key source.
    pub jwks: JwksFile,
    /// Plain http to loopback for discovery and JWKS (tests).
    #[serde(default)]
    pub allow_insecure_loopback: bool,
    /// Accepted algorithms (default RS256).
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowance (default 30s).
    pub leeway: Option<ConfigDuration>,
    /// Longest accepted token lifetime (default 1h).
    pub max_token_lifetime: Option<ConfigDuration>,
    /// `reject`: `jti` required and single use.
    pub replay: Option<String>,
    /// Refused callers of this issuer learn which of its rules' conditions failed.
    #[serde(default)]
    pub explain_denials: bool,
    /// Rate for all callers of this issuer together, like `50/s`.
    pub rate_limit: Option<String>,
    /// Bucket size of `rate_limit`.
    pub burst: Option<u32>,
    /// Most exchanges of this issuer's callers in flight at once.
    pub max_concurrent: Option<usize>,
    /// Keep a subject token's own `act` claim as the prior delegation chain (default false).
    #[serde(default)]
    pub accept_act: bool,
    /// Require `iat` (default true).
    pub require_iat: Option<bool>,
}

/// `trust[].jwks:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksFile {
    /// Use OIDC discovery.
    pub discovery: Option<bool>,
    /// JWKS URL.
    pub uri: Option<String>,
    /// JWKS file.
    pub file: Option<PathBuf>,
    /// Refetch interval (default 1h).
    pub refresh_interval: Option<ConfigDuration>,
    /// How long the last good key set stays in use while the IdP cannot be reached (default 24h).
    pub max_staleness: Option<ConfigDuration>,
}

/// `providers:`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    /// AWS.
    pub aws: Option<AwsFile>,
    /// GCP.
    pub gcp: Option<GcpFile>,
    /// Azure.
    pub azure: Option<AzureFile>,
}

/// `providers.aws:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    /// STS signing region.
    pub region: Option<String>,
    /// STS endpoint override.
    pub endpoint: Option<String>,
    /// Timeout of one STS call, retries included.
    pub timeout: Option<ConfigDuration>,
    /// Most exchanges in flight to AWS at once.
    pub max_concurrent: Option<usize>,
}

/// `providers.gcp:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpFile {
    /// STS endpoint override.
    pub sts_endpoint: Option<String>,
    /// IAM credentials endpoint override.
    pub iamcredentials_endpoint: Option<String>,
    /// Timeout of one HTTP attempt.
    pub timeout: Option<ConfigDuration>,
    /// Most calls in flight to GCP at once.
    pub max_concurrent: Option<usize>,
}

/// `providers.azure:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureFile {
    /// Entra ID authority host override.
    pub authority_host: Option<String>,
    /// Timeout of one HTTP attempt.
    pub timeout: Option<ConfigDuration>,
    /// Most calls in flight to Entra ID at once.
    pub max_concurrent: Option<usize>,
}

/// `cache:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// Most entries kept.
    pub max_entries: Option<u64>,
}

/// `limits:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Rate per caller (issuer + subject), like `20/s`.
    pub per_subject: Option<String>,
    /// Bucket size.
    pub burst: Option<u32>,
    /// Rate per target, across all callers, like `200/s`.
    pub per_target: Option<String>,
    /// Bucket size per target.
    pub target_burst: Option<u32>,
    /// Most single-use `jti`s remembered at once (default 1,000,000).
    pub replay_store_entries: Option<usize>,
    /// Failed validations allowed per client address, like `10/s` (the default), or `off`.
    pub failed_validations_per_address: Option<String>,
    /// Bucket size of `failed_validations_per_address` (default 50).
    pub failed_validations_burst: Option<u32>,
}

/// `audit:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// `closed` (default): no credential without an audit record; `open`: serve anyway.
    pub on_failure: Option<String>,
    /// `stdout`.
    pub sink: Option<String>,
    /// A file to append JSON lines to.
    pub file: Option<PathBuf>,
}

/// `shared_state:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedStateFile {
    /// A Redis-protocol server.
    pub redis: RedisFile,
}

/// `shared_state.redis:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// `rediss://host:port/db`, or `redis://` to a loopback host.
    pub url: String,
    /// A file holding the password (`AUTH`), read at start.
    pub password_file: Option<PathBuf>,
    /// Prefix of every key stsbridge writes (default `stsbridge:`).
    pub key_prefix: Option<String>,
    /// Longest wait for one round trip, connecting included (default 250ms).
    pub timeout: Option<ConfigDuration>,
}
