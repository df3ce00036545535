//! `trust:` entries: compiled one by one (from the config or a partner file), then checked
//! together (unique names and issuers, reserved names, never stsbridge's own URL); and the
//! built-in entry for stsbridge's own tokens.

use super::*;

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
        max_token_lifetime: stsbridge_providers::jwt::MAX_JWT_LIFETIME,
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
