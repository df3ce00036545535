//! Configuration: the YAML file users write, compiled into a validated internal [`Config`].
//!
//! Two layers, as in kanidm: [`file`](mod@file) mirrors the YAML (unknown keys rejected, a `version` field), and
//! [`Config`] is what the rest of the service uses. Compiling collects every problem it finds, each
//! naming the file, the field path and the bad value, so `stsbridge check` can list them all at once.
//! Rooms: `file` (the YAML as written), `compile` (into [`Config`]), `trust` (trust entries),
//! `error` (errors and reading YAML), `duration`.

mod compile;
pub mod duration;
mod error;
pub mod file;
mod trust;

pub use compile::compile;
pub use error::{ConfigError, ConfigErrors, parse_yaml, read_text, read_yaml};
pub use trust::{check_own_issuer, check_unique_trust, compile_trust, own_trust};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jose::Algorithm;
use serde::de::DeserializeOwned;
use stsbridge_providers::aws::AwsSettings;
use stsbridge_providers::azure::AzureSettings;
use stsbridge_providers::gcp::GcpSettings;
use stsbridge_providers::rest::RestSettings;

pub use duration::{ConfigDuration, format_duration, parse_duration};

/// The only config and mapping file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;
/// Config and mapping files larger than this are refused before parsing: they are hand-written
/// YAML, and a runaway file should not take the parser's memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The longest clock skew an issuer may be allowed.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
/// Refreshing more often than this would hammer an IdP for nothing (an hour suits production; short
/// intervals are for tests).
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(5);
const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// A staged key is published this long before it signs, so that every cloud's cached JWKS has it.
const DEFAULT_PUBLISH_BEFORE_USE: Duration = Duration::from_secs(3600);
/// Shorter than a few key-directory polls would let a key sign before it is published.
const MIN_PUBLISH_BEFORE_USE: Duration = Duration::from_secs(5);
/// Clouds check an assertion once, at the exchange; a long-lived one is only a liability.
const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_CACHE_ENTRIES: u64 = 100_000;
/// Single-use `jti`s remembered at once, by default: 1,000 single-use tokens a second that live
/// 15 minutes, in at most about 200 MiB (a 32-byte hash and its expiry, indexed twice).
pub const DEFAULT_REPLAY_STORE_ENTRIES: usize = 1_000_000;
/// More than this is a typo, not a plan: up to 20 GiB of memory.
const MAX_REPLAY_STORE_ENTRIES: usize = 100_000_000;
/// Failed validations per client address, by default: more than a client with a stale or
/// misconfigured token retries (it stops at the first 401, or retries a few times a second), far
/// less than a flood; the burst lets a batch job's clients behind one address fail together.
pub const DEFAULT_FAILED_VALIDATIONS: RateLimit = RateLimit {
    per_second: 10.0,
    burst: 50,
};
const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// What every shared-state key starts with, by default: one Redis can serve other programs too.
const DEFAULT_KEY_PREFIX: &str = "stsbridge:";
/// Longest wait for one round trip to the shared state, by default: a local Redis answers in well
/// under a millisecond, so this only bounds what a sick one adds to an exchange.
const DEFAULT_SHARED_STATE_TIMEOUT: Duration = Duration::from_millis(250);
/// The shortest and longest `shared_state.redis.timeout`: shorter than a network round trip would
/// fail every call; longer would hold every exchange that long while Redis hangs.
const SHARED_STATE_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(5);
/// Longest key prefix: keys are the prefix, a kind and a 64-character hash.
const MAX_KEY_PREFIX: usize = 64;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (`None` for the embedded dev config).
    pub source: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS for the listener; plain HTTP when `None`.
    pub tls: Option<TlsConfig>,
    /// stsbridge's own issuer.
    pub issuer: IssuerConfig,
    /// Trusted token issuers.
    pub trust: Vec<TrustConfig>,
    /// Directory of mapping files.
    pub mappings_dir: PathBuf,
    /// AWS provider settings.
    pub aws: AwsSettings,
    /// GCP provider settings.
    pub gcp: GcpSettings,
    /// Azure provider settings.
    pub azure: AzureSettings,
    /// Credential cache.
    pub cache: CacheConfig,
    /// Per-caller rate limit, when configured.
    pub rate_limit: Option<RateLimit>,
    /// Per-target rate limit (all callers together), when configured.
    pub target_rate_limit: Option<RateLimit>,
    /// Most single-use `jti`s remembered at once; past it, new single-use tokens are refused.
    pub replay_store_entries: usize,
    /// Failed validations allowed per client address; `None` when turned off.
    pub failed_validation_limit: Option<RateLimit>,
    /// Where audit events go, and what happens when they cannot be written.
    pub audit: AuditConfig,
    /// State shared by every replica; `None`: every replica keeps its own.
    pub shared_state: Option<SharedStateConfig>,
    /// Where revocations are kept and how long one may last.
    pub revocations: RevocationsConfig,
    /// The oldest DPoP proof accepted, by its `iat`.
    pub dpop_max_age: Duration,
    /// The operations listener (`/metrics`, `/healthz`, the detailed `/readyz`, plain HTTP).
    pub ops_listen: Option<SocketAddr>,
}

/// The oldest DPoP proof accepted, by default: a proof is made for one request, so a minute
/// covers clock skew and a slow network, not reuse.
pub const DEFAULT_DPOP_MAX_AGE: Duration = Duration::from_secs(60);

/// `revocations:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationsConfig {
    /// The local file of a single replica (without `shared_state`); `None` with shared state, or
    /// when revocations live only in this process's memory (dev mode).
    pub file: Option<PathBuf>,
    /// The longest `for` a revocation may ask.
    pub max_for: Duration,
}

impl Default for RevocationsConfig {
    fn default() -> Self {
        RevocationsConfig {
            file: None,
            max_for: DEFAULT_MAX_REVOCATION,
        }
    }
}

/// The longest revocation, by default: longer than any token stsbridge trusts can live (a day at
/// most), short enough that the list does not only grow.
pub const DEFAULT_MAX_REVOCATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// A revocation's length when the request gives none: as long as any token it covers can live.
pub const DEFAULT_REVOCATION: Duration = Duration::from_secs(24 * 3600);

/// `shared_state.redis`: where single use of `jti`s and rate limits are kept across replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStateConfig {
    /// `rediss://` (TLS), or `redis://` to a loopback host; never with a password in it.
    pub url: String,
    /// The file holding the password, read at start (not kept in the config).
    pub password_file: Option<PathBuf>,
    /// What every key starts with.
    pub key_prefix: String,
    /// Longest wait for one round trip, connecting included.
    pub timeout: Duration,
}

/// TLS for the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA bundle for client certificates: when set, every caller must present a certificate it
    /// issued (mTLS), and rules can require the certificate's names.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: whether callers without a certificate are served too
    /// (`client_auth: optional`); a certificate they do present must still verify.
    pub client_auth_optional: bool,
}

/// stsbridge's own issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The issuer URL the clouds trust (no trailing slash).
    pub url: String,
    /// Key directory; `None` keeps a generated key in memory only (dev mode).
    pub key_dir: Option<PathBuf>,
    /// Algorithm of newly generated keys.
    pub algorithm: SigningAlgorithm,
    /// Lifetime of the assertions shown to clouds.
    pub assertion_lifetime: Duration,
    /// How long a new key is published before it signs (`issuer.keys.publish_before_use`).
    pub publish_before_use: Duration,
}

/// Algorithms stsbridge signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys: what every cloud accepts.
    Rs256,
    /// ECDSA P-256 with SHA-256: smaller and ten times faster to sign.
    Es256,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
        }
    }
}

/// A trusted token issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustConfig {
    /// Name rules refer to.
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Where its keys come from.
    pub jwks: JwksSource,
    /// Plain http to loopback allowed for discovery and JWKS (tests).
    pub allow_insecure_loopback: bool,
    /// Accepted signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// Longest accepted `exp - iat`.
    pub max_token_lifetime: Duration,
    /// `jti` required and single use.
    pub replay_reject: bool,
    /// How often the JWKS is refetched.
    pub jwks_refresh: Duration,
    /// How long the last good key set is used while fetches fail.
    pub max_staleness: Duration,
    /// Refused callers learn which of this issuer's rule conditions failed.
    pub explain_denials: bool,
    /// Rate for all of this issuer's callers together.
    pub rate_limit: Option<RateLimit>,
    /// Most exchanges of this issuer's callers in flight at once.
    pub max_concurrent: Option<usize>,
    /// Keys are fetched at the first token, not at start (partner files: thousands of issuers
    /// must not all be fetched at once, and one dead IdP must not hold up readiness).
    pub lazy_jwks: bool,
    /// A subject token's own `act` claim is kept as the prior delegation chain (well formed
    /// only); otherwise it is dropped. Off by default: an issuer is trusted for its own `iss`,
    /// not for the identities of others it might name.
    pub accept_act: bool,
    /// `iat` is required (the default): without it a token's true lifetime is unknown, and
    /// `max_token_lifetime` could only bound what is left of it.
    pub require_iat: bool,
}

/// The trust name of stsbridge's own tokens when they come back (delegation chains,
/// introspection): built in, with stsbridge's own keys; rules say `issuer: stsbridge`.
pub const OWN_TRUST: &str = "stsbridge";
/// Trust names no `trust:` entry may take: [`OWN_TRUST`], and `target`, the prefix of the
/// subjects of the assertions stsbridge presents to clouds (`target:<name>`), which a minted
/// internal token's default `<trust>:<sub>` subject must never look like.
pub const RESERVED_TRUST_NAMES: [&str; 2] = [OWN_TRUST, "target"];

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `{issuer}/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery,
    /// A JWKS URL.
    Uri(String),
    /// A JWKS file.
    File(PathBuf),
    /// A JWKS document held in memory (dev mode's built-in issuer).
    Inline(String),
}

/// Credential cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Most entries kept.
    pub max_entries: u64,
}

/// A token-bucket rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// The audit sink and its failure mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where events go.
    pub sink: AuditSinkConfig,
    /// Serve credentials even when the event cannot be written (default: refuse).
    pub fail_open: bool,
}

/// Where audit events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkConfig {
    /// JSON lines on stdout.
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
}

/// Loads and validates a config file. Mapping files are loaded separately (they need the trust list).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let raw: file::ConfigFile = read_yaml(path)?;
    compile(path, raw)
}

/// Names of trust entries, targets and rules: what metrics labels and file names can carry.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// "20/s", "600/m", "3600/h".
fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a rate like 20/s or 600/m");
    let (n, unit) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("{text:?}: a rate of 0 would refuse every caller"));
    }
    Ok(f64::from(n) / per)
}

/// A URL stsbridge talks to or publishes: https, or plain http to a loopback address when allowed.
pub fn check_url(url: &str, allow_http_loopback: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http_loopback && is_loopback_host(&parsed) => Ok(()),
        "http" => Err(format!(
            "{url:?} must use https (plain http is accepted only to loopback addresses)"
        )),
        other => Err(format!("{url:?} has scheme {other:?}; use https")),
    }
}

/// A URL fetched for keys: https, or http to loopback only where the trust entry allows it.
pub fn check_fetch_url(url: &str, allow_insecure_loopback: bool) -> Result<(), String> {
    check_url(url, allow_insecure_loopback).map_err(|m| {
        if allow_insecure_loopback {
            m
        } else {
            format!("{m}; for a local test IdP set allow_insecure_loopback: true")
        }
    })
}

/// `shared_state.redis.url`: `rediss://`, or `redis://` to a loopback host (like every other
/// endpoint), with a host, and no password (that belongs in `password_file`, not in a config file).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.host().is_none() {
        return Err(format!("{url:?} names no host"));
    }
    if parsed.password().is_some() {
        return Err("the URL carries a password: put it in password_file instead".into());
    }
    match parsed.scheme() {
        "rediss" => {}
        "redis" if is_loopback_host(&parsed) => {}
        "redis" => {
            return Err(format!(
                "{url:?} must use rediss:// (plain redis:// is accepted only to loopback addresses)"
            ));
        }
        other => return Err(format!("{url:?} has scheme {other:?}; use rediss://")),
    }
    let db = parsed.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!(
            "{url:?}: the path must be a database number, like /0"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?}: no query or fragment"));
    }
    Ok(())
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        // A URL of a scheme the URL standard does not know (`redis:`) keeps an IPv4 address as
        // a name.
        Some(url::Host::Domain(d)) => {
            d == "localhost" || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;

/// The JSON Schema (2020-12) of a file kind, `config`, `mappings` or `tests`, pretty-printed: what
/// `stsbridge schema` prints and `schemas/*.schema.json` hold (editors read them through the
/// shipped files' `yaml-language-server` modelines).
pub fn schema(kind: &str) -> String {
    let mut schema = match kind {
        "config" => schemars::schema_for!(file::ConfigFile),
        "mappings" => schemars::schema_for!(crate::mapping::file::MappingFile),
        _ => schemars::schema_for!(crate::mapping::cases::CaseFile),
    };
    schema.insert(
        "title".into(),
        serde_json::json!(format!("stsbridge {kind} file, version 1")),
    );
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
