//! Configuration: the YAML file users write, compiled into a validated internal [`Config`].
//!
//! Two layers, as in kanidm: [`file`] mirrors the YAML (unknown keys rejected, a `version` field), and
//! [`Config`] is what the rest of the service uses. Compiling collects every problem it finds, each
//! naming the file, the field path and the bad value, so `stsbridge check` can list them all at once.

pub mod duration;
pub mod file;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
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

/// One problem in a config or mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Field path inside it, like `trust[0].jwks.uri` (`.` for the whole file).
    pub path: String,
    /// What is wrong, quoting the bad value.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path` in `file`.
    pub fn new(file: &Path, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.path,
            self.message
        )
    }
}

/// Every problem found in a set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Reads a YAML file into `T`, with errors that name the file and the field path.
pub fn read_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = read_text(file)?;
    parse_yaml(file, &text)
}

/// Reads a text file no larger than [`MAX_CONFIG_FILE_BYTES`].
pub fn read_text(file: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| ConfigError::new(file, ".", format!("cannot read the file: {e}")))?;
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::new(
            file,
            ".",
            format!(
                "the file is {} bytes; the limit is {MAX_CONFIG_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, ".", format!("cannot read the file: {e}")))
}

/// Parses YAML text into `T`, with errors that name the file and the field path.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML error repeats the path it failed in ("a.b: unknown field ..."); say it once.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
            _ => message,
        };
        ConfigError::new(file, path, message)
    })
}

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

/// Compiles a parsed config file; relative paths are taken from the file's directory.
pub fn compile(path: &Path, raw: file::ConfigFile) -> Result<Config, ConfigErrors> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut errors = Vec::new();
    let mut err = |p: &str, m: String| errors.push(ConfigError::new(path, p, m));

    if raw.version != CONFIG_VERSION {
        err(
            "version",
            format!(
                "unsupported version {}; this build reads version {CONFIG_VERSION}",
                raw.version
            ),
        );
    }

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        err(
            "listen",
            format!("{listen_text:?} is not an address like 0.0.0.0:8443"),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });

    let tls = raw.tls.map(|t| TlsConfig {
        cert_file: base.join(t.cert_file),
        key_file: base.join(t.key_file),
        client_ca_file: t.client_ca_file.map(|f| base.join(f)),
    });

    // stsbridge's own issuer.
    let url = raw.issuer.url.trim_end_matches('/').to_owned();
    if let Err(m) = check_url(&url, true) {
        err("issuer.url", m);
    }
    let algorithm = match raw.issuer.keys.algorithm.as_deref().unwrap_or("RS256") {
        "RS256" => SigningAlgorithm::Rs256,
        "ES256" => SigningAlgorithm::Es256,
        other => {
            err(
                "issuer.keys.algorithm",
                format!("{other:?} is not supported; use RS256 or ES256"),
            );
            SigningAlgorithm::Rs256
        }
    };
    let assertion_lifetime = raw
        .issuer
        .assertion_lifetime
        .map_or(DEFAULT_ASSERTION_LIFETIME, |d| d.0);
    if assertion_lifetime < Duration::from_secs(30) || assertion_lifetime > MAX_ASSERTION_LIFETIME {
        err(
            "issuer.assertion_lifetime",
            format!(
                "{} is out of range; use between 30s and {}",
                format_duration(assertion_lifetime),
                format_duration(MAX_ASSERTION_LIFETIME)
            ),
        );
    }
    let publish_before_use = raw
        .issuer
        .keys
        .publish_before_use
        .map_or(DEFAULT_PUBLISH_BEFORE_USE, |d| d.0);
    if publish_before_use < MIN_PUBLISH_BEFORE_USE {
        err(
            "issuer.keys.publish_before_use",
            format!(
                "{} is shorter than {}: services check their key directory every 2s, and clouds cache JWKS",
                format_duration(publish_before_use),
                format_duration(MIN_PUBLISH_BEFORE_USE)
            ),
        );
    }
    let issuer = IssuerConfig {
        url,
        key_dir: Some(base.join(&raw.issuer.keys.dir)),
        algorithm,
        assertion_lifetime,
        publish_before_use,
    };

    // Trusted issuers.
    let mut trust = Vec::with_capacity(raw.trust.len());
    let mut trust_errors = Vec::new();
    for (i, t) in raw.trust.into_iter().enumerate() {
        trust.push(compile_trust(
            path,
            &base,
            &format!("trust[{i}]"),
            t,
            &mut trust_errors,
        ));
    }
    trust_errors.extend(check_unique_trust(&[(path, trust.as_slice())]));
    trust_errors.extend(check_own_issuer(path, &issuer.url, &trust));

    // Providers.
    let mut aws = AwsSettings::default();
    if let Some(a) = raw.providers.aws {
        if let Some(region) = a.region {
            if region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                err(
                    "providers.aws.region",
                    format!("{region:?} is not a region name like us-east-1"),
                );
            }
            aws.region = region;
        }
        if let Some(endpoint) = a.endpoint {
            if let Err(m) = check_url(&endpoint, true) {
                err("providers.aws.endpoint", m);
            }
            aws.endpoint = Some(endpoint);
        }
        if let Some(t) = a.timeout {
            aws.operation_timeout = t.0;
        }
        if let Some(n) = a.max_concurrent {
            aws.max_concurrent = n;
        }
    }
    let aws_max_concurrent = Some(aws.max_concurrent);
    let mut endpoint = |field: &str, value: Option<String>, target: &mut String| {
        if let Some(value) = value {
            match check_url(&value, true) {
                Ok(()) => *target = value.trim_end_matches('/').to_owned(),
                Err(m) => err(field, m),
            }
        }
    };
    let mut gcp = GcpSettings::default();
    let mut azure = AzureSettings::default();
    if let Some(g) = raw.providers.gcp {
        endpoint(
            "providers.gcp.sts_endpoint",
            g.sts_endpoint,
            &mut gcp.sts_endpoint,
        );
        endpoint(
            "providers.gcp.iamcredentials_endpoint",
            g.iamcredentials_endpoint,
            &mut gcp.iamcredentials_endpoint,
        );
        rest_settings(&mut gcp.rest, g.timeout, g.max_concurrent);
    }
    if let Some(a) = raw.providers.azure {
        endpoint(
            "providers.azure.authority_host",
            a.authority_host,
            &mut azure.authority_host,
        );
        rest_settings(&mut azure.rest, a.timeout, a.max_concurrent);
    }
    for (field, value) in [
        ("providers.aws.max_concurrent", aws_max_concurrent),
        (
            "providers.gcp.max_concurrent",
            Some(gcp.rest.max_concurrent),
        ),
        (
            "providers.azure.max_concurrent",
            Some(azure.rest.max_concurrent),
        ),
    ] {
        if value == Some(0) {
            err(field, "must be at least 1".into());
        }
    }

    let max_entries = raw
        .cache
        .and_then(|c| c.max_entries)
        .unwrap_or(DEFAULT_CACHE_ENTRIES);
    if max_entries == 0 {
        err("cache.max_entries", "must be at least 1".into());
    }

    let mut rate = |field: &str, rate: Option<&str>, burst: Option<u32>| -> Option<RateLimit> {
        match rate.map(parse_rate)? {
            Ok(per_second) => {
                let burst = burst.unwrap_or_else(|| (per_second * 2.0).ceil().max(1.0) as u32);
                if burst == 0 {
                    err(
                        &format!("limits.{field}"),
                        "the burst must be at least 1".into(),
                    );
                }
                Some(RateLimit {
                    per_second,
                    burst: burst.max(1),
                })
            }
            Err(m) => {
                err(&format!("limits.{field}"), m);
                None
            }
        }
    };
    let (rate_limit, target_rate_limit) = match &raw.limits {
        None => (None, None),
        Some(l) => (
            rate("per_subject", l.per_subject.as_deref(), l.burst),
            rate("per_target", l.per_target.as_deref(), l.target_burst),
        ),
    };
    let replay_store_entries = raw
        .limits
        .as_ref()
        .and_then(|l| l.replay_store_entries)
        .unwrap_or(DEFAULT_REPLAY_STORE_ENTRIES);
    if !(1..=MAX_REPLAY_STORE_ENTRIES).contains(&replay_store_entries) {
        err(
            "limits.replay_store_entries",
            format!("{replay_store_entries} is not between 1 and {MAX_REPLAY_STORE_ENTRIES}"),
        );
    }
    let failed_validation_limit = match raw.limits.as_ref() {
        None => Some(DEFAULT_FAILED_VALIDATIONS),
        Some(l) => failed_validations(
            l.failed_validations_per_address.as_deref(),
            l.failed_validations_burst,
            &mut err,
        ),
    };

    let fail_open = match raw.audit.as_ref().and_then(|a| a.on_failure.as_deref()) {
        None | Some("closed") => false,
        Some("open") => true,
        Some(other) => {
            err(
                "audit.on_failure",
                format!("{other:?} is not one of closed, open"),
            );
            false
        }
    };
    let sink = match raw.audit {
        None => AuditSinkConfig::Stdout,
        Some(a) => match (a.sink.as_deref(), a.file) {
            (Some("stdout") | None, None) => AuditSinkConfig::Stdout,
            (None, Some(file)) => AuditSinkConfig::File(base.join(file)),
            (Some(other), None) => {
                err(
                    "audit.sink",
                    format!("{other:?} is not a sink; use sink: stdout or file: PATH"),
                );
                AuditSinkConfig::Stdout
            }
            (Some(_), Some(_)) => {
                err(
                    "audit",
                    "set either sink: stdout or file: PATH, not both".into(),
                );
                AuditSinkConfig::Stdout
            }
        },
    };

    errors.extend(trust_errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        source: Some(path.to_path_buf()),
        listen,
        tls,
        issuer,
        trust,
        mappings_dir: base.join(raw.mappings.unwrap_or_else(|| PathBuf::from("mappings"))),
        aws,
        gcp,
        azure,
        cache: CacheConfig { max_entries },
        rate_limit,
        target_rate_limit,
        replay_store_entries,
        failed_validation_limit,
        audit: AuditConfig { sink, fail_open },
    })
}

/// `limits.failed_validations_per_address` and `failed_validations_burst`: a rate (default 10/s),
/// with a burst (default 50, or five seconds' worth of a rate given without one), or `off`.
fn failed_validations(
    rate: Option<&str>,
    burst: Option<u32>,
    err: &mut impl FnMut(&str, String),
) -> Option<RateLimit> {
    let per_second = match rate {
        None => DEFAULT_FAILED_VALIDATIONS.per_second,
        Some("off") => return None,
        Some(text) => match parse_rate(text) {
            Ok(per_second) => per_second,
            Err(m) => {
                err(
                    "limits.failed_validations_per_address",
                    format!("{m}, or off"),
                );
                DEFAULT_FAILED_VALIDATIONS.per_second
            }
        },
    };
    let burst = match (rate, burst) {
        (_, Some(0)) => {
            err(
                "limits.failed_validations_burst",
                "must be at least 1".into(),
            );
            1
        }
        (_, Some(burst)) => burst,
        (None, None) => DEFAULT_FAILED_VALIDATIONS.burst,
        (Some(_), None) => (per_second * 5.0).ceil().max(1.0) as u32,
    };
    Some(RateLimit { per_second, burst })
}

fn rest_settings(
    rest: &mut RestSettings,
    timeout: Option<ConfigDuration>,
    max_concurrent: Option<usize>,
) {
    if let Some(t) = timeout {
        rest.attempt_timeout = t.0;
    }
    if let Some(n) = max_concurrent {
        rest.max_concurrent = n;
    }
}

/// Compiles one trust entry (of the config file or of a partner's mapping file) at `prefix` in
/// `file`; relative paths are taken from `base`. Problems go to `errors`.
pub fn compile_trust(
    file: &Path,
    base: &Path,
    prefix: &str,
    t: file::TrustFile,
    errors: &mut Vec<ConfigError>,
) -> TrustConfig {
    let mut err = |p: &str, m: String| errors.push(ConfigError::new(file, p, m));
    let at = |field: &str| format!("{prefix}.{field}");
    if t.audiences.is_empty() || t.audiences.iter().any(String::is_empty) {
        err(
            &at("audiences"),
            "list at least one non-empty audience: aud is always checked".into(),
        );
    }
    let jwks = match (t.jwks.discovery, &t.jwks.uri, &t.jwks.file) {
        (Some(true), None, None) => {
            if let Err(m) = check_fetch_url(&t.issuer, t.allow_insecure_loopback) {
                err(
                    &at("issuer"),
                    format!("discovery needs a fetchable issuer URL: {m}"),
                );
            }
            JwksSource::Discovery
        }
        (None | Some(false), Some(uri), None) => {
            if let Err(m) = check_fetch_url(uri, t.allow_insecure_loopback) {
                err(&at("jwks.uri"), m);
            }
            JwksSource::Uri(uri.clone())
        }
        (None | Some(false), None, Some(file)) => JwksSource::File(base.join(file)),
        _ => {
            err(
                &at("jwks"),
                "set exactly one of discovery: true, uri: or file:".into(),
            );
            JwksSource::Discovery
        }
    };
    let jwks_refresh = t
        .jwks
        .refresh_interval
        .map_or(DEFAULT_JWKS_REFRESH, |d| d.0);
    if jwks_refresh < MIN_JWKS_REFRESH {
        err(
            &at("jwks.refresh_interval"),
            format!(
                "{} is too short; the minimum is {}",
                format_duration(jwks_refresh),
                format_duration(MIN_JWKS_REFRESH)
            ),
        );
    }
    let max_staleness = t.jwks.max_staleness.map_or(DEFAULT_MAX_STALENESS, |d| d.0);
    if max_staleness < jwks_refresh {
        err(
            &at("jwks.max_staleness"),
            format!(
                "{} is shorter than the refresh interval {}: keys would expire between refreshes",
                format_duration(max_staleness),
                format_duration(jwks_refresh)
            ),
        );
    }
    let mut algorithms = Vec::new();
    let names_given = t.algorithms.unwrap_or_else(|| vec!["RS256".into()]);
    if names_given.is_empty() {
        err(&at("algorithms"), "list at least one algorithm".into());
    }
    for (j, a) in names_given.iter().enumerate() {
        match parse_verify_algorithm(a) {
            Ok(alg) => algorithms.push(alg),
            Err(m) => err(&format!("{prefix}.algorithms[{j}]"), m),
        }
    }
    let leeway = t.leeway.map_or(DEFAULT_LEEWAY, |d| d.0);
    if leeway > MAX_LEEWAY {
        err(
            &at("leeway"),
            format!(
                "{} is too lenient; the maximum is {}",
                format_duration(leeway),
                format_duration(MAX_LEEWAY)
            ),
        );
    }
    let max_token_lifetime = t
        .max_token_lifetime
        .map_or(DEFAULT_MAX_TOKEN_LIFETIME, |d| d.0);
    if max_token_lifetime.is_zero() {
        err(&at("max_token_lifetime"), "must be more than 0".into());
    }
    let replay_reject = match t.replay.as_deref() {
        None | Some("allow") => false,
        Some("reject") => true,
        Some(other) => {
            err(
                &at("replay"),
                format!("{other:?} is not one of reject, allow"),
            );
            false
        }
    };
    let rate_limit = match t.rate_limit.as_deref().map(parse_rate) {
        None => None,
        Some(Ok(per_second)) => {
            let burst = t
                .burst
                .unwrap_or_else(|| (per_second * 2.0).ceil().max(1.0) as u32);
            if burst == 0 {
                err(&at("burst"), "must be at least 1".into());
            }
            Some(RateLimit {
                per_second,
                burst: burst.max(1),
            })
        }
        Some(Err(m)) => {
            err(&at("rate_limit"), m);
            None
        }
    };
    let max_concurrent = t.max_concurrent;
    if max_concurrent == Some(0) {
        err(&at("max_concurrent"), "must be at least 1".into());
    }
    TrustConfig {
        name: t.name,
        issuer: t.issuer,
        audiences: t.audiences,
        jwks,
        allow_insecure_loopback: t.allow_insecure_loopback,
        algorithms,
        leeway,
        max_token_lifetime,
        replay_reject,
        jwks_refresh,
        max_staleness,
        explain_denials: t.explain_denials,
        rate_limit,
        max_concurrent,
        lazy_jwks: false,
        accept_act: t.accept_act,
        require_iat: t.require_iat.unwrap_or(true),
    }
}

/// Trust entries from several files (`(file, entries)`) must not share a name or an issuer.
pub fn check_unique_trust(sets: &[(&Path, &[TrustConfig])]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
    let mut issuers: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
    for (file, entries) in sets {
        for (i, t) in entries.iter().enumerate() {
            if !valid_name(&t.name) {
                errors.push(ConfigError::new(
                    file,
                    format!("trust[{i}].name"),
                    format!(
                        "{:?} is not a valid name: use letters, digits, '-' and '_'",
                        t.name
                    ),
                ));
            } else if RESERVED_TRUST_NAMES.contains(&t.name.as_str()) {
                errors.push(ConfigError::new(
                    file,
                    format!("trust[{i}].name"),
                    format!(
                        "{:?} is reserved: {OWN_TRUST} names stsbridge's own tokens, and target: starts the subjects of its cloud assertions",
                        t.name
                    ),
                ));
            } else if let Some(other) = names.insert(&t.name, file) {
                errors.push(ConfigError::new(
                    file,
                    format!("trust[{i}].name"),
                    format!("{:?} is also a trust entry in {}", t.name, other.display()),
                ));
            }
            if t.issuer.is_empty() {
                errors.push(ConfigError::new(
                    file,
                    format!("trust[{i}].issuer"),
                    "must not be empty",
                ));
            } else if let Some(other) = issuers.insert(&t.issuer, file) {
                errors.push(ConfigError::new(
                    file,
                    format!("trust[{i}].issuer"),
                    format!(
                        "{:?} is also trusted in {}; each issuer has one entry",
                        t.issuer,
                        other.display()
                    ),
                ));
            }
        }
    }
    errors
}

/// The built-in trust entry for stsbridge's own tokens ([`OWN_TRUST`]): its issuer URL, the
/// audiences of its internal JWT targets (never a cloud's: assertions do not come back), its
/// own signing algorithms, `iat` required, and its delegation chains kept (it wrote them).
/// The keys are the issuer's published set, handed in by the caller, never fetched.
pub fn own_trust(url: &str, audiences: Vec<String>) -> TrustConfig {
    TrustConfig {
        name: OWN_TRUST.to_owned(),
        issuer: url.to_owned(),
        audiences,
        // Not fetched: the service verifies its own tokens with the keys it publishes.
        jwks: JwksSource::Inline(String::new()),
        allow_insecure_loopback: false,
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        leeway: DEFAULT_LEEWAY,
        max_token_lifetime: crate::mapping::MAX_JWT_LIFETIME,
        replay_reject: false,
        jwks_refresh: DEFAULT_JWKS_REFRESH,
        max_staleness: DEFAULT_MAX_STALENESS,
        explain_denials: false,
        rate_limit: None,
        max_concurrent: None,
        lazy_jwks: false,
        accept_act: true,
        require_iat: true,
    }
}

/// stsbridge's own issuer URL is not a `trust:` entry: its tokens come back under the built-in
/// name [`OWN_TRUST`], verified with its own keys (an entry would fetch them over the network
/// and could set a longer lifetime, other audiences or `accept_act`).
pub fn check_own_issuer(file: &Path, own_url: &str, entries: &[TrustConfig]) -> Vec<ConfigError> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, t)| t.issuer.trim_end_matches('/') == own_url.trim_end_matches('/'))
        .map(|(i, t)| {
            ConfigError::new(
                file,
                format!("trust[{i}].issuer"),
                format!(
                    "{:?} is stsbridge's own issuer: its tokens are trusted as built in, by rules with issuer: {OWN_TRUST}; remove this entry",
                    t.issuer
                ),
            )
        })
        .collect()
}

/// Names of trust entries, targets and rules: what metrics labels and file names can carry.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_verify_algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted: tokens must be signed".into());
    }
    if name.to_ascii_uppercase().starts_with("HS") {
        return Err(format!(
            "{name:?} is an HMAC algorithm; issuers are verified with public keys only"
        ));
    }
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!(
            "{other:?} is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
        )),
    }
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

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests;
