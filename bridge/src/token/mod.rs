//! Token validation: a pure function of (token, the issuer's keys, now).
//!
//! [`parse`] reads the compact JWS without trusting it (size, segments, strict JSON, algorithm
//! family, `crit`); [`verify`] then checks it against one trusted issuer's policy and keys. The
//! async parts (fetching and refreshing JWKS) live in [`jwks`] and only hand keys in.
//!
//! Every failure has its own [`TokenError`] variant and stable code; the codes are what callers see
//! in `error_description` and what audit events record.

pub mod json;
pub mod jwks;
pub mod keys;

pub use crate::clock::{from_unix_seconds, unix_seconds};
use std::time::SystemTime;

use crate::jose::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::config::TrustConfig;
use json::{JsonFault, parse_object};
pub use keys::{KeySet, KeyThumbprint};

/// Largest token accepted. Real tokens (Kubernetes, GitHub, Entra) are 1-4 KiB; a partner token
/// with large group claims stays well under this.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Deepest JSON nesting in a header or claims set (Kubernetes tokens nest three levels).
pub const MAX_CLAIM_DEPTH: usize = 8;
/// Longest accepted `sub`.
pub const MAX_SUBJECT_BYTES: usize = 1024;

/// Why a token was refused. Each variant has a stable [`code`](TokenError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url segments.
    #[error("the token is not a compact JWS")]
    Malformed,
    /// The header is not a JSON object with a string `alg`.
    #[error("the token header is malformed")]
    MalformedHeader,
    /// The claims are not a JSON object.
    #[error("the token claims are malformed")]
    MalformedClaims,
    /// A JSON object in the header or claims repeats a key.
    #[error("the token repeats a JSON key")]
    DuplicateKey,
    /// The header or claims nest deeper than [`MAX_CLAIM_DEPTH`].
    #[error("the token's JSON nests deeper than {MAX_CLAIM_DEPTH} levels")]
    TooDeep,
    /// `alg: none` in any spelling.
    #[error("unsigned tokens (alg none) are never accepted")]
    AlgNone,
    /// An HMAC algorithm (HS256/384/512).
    #[error("HMAC-signed tokens are never accepted")]
    AlgHmac,
    /// An `alg` this build does not know.
    #[error("the token's signature algorithm is not supported")]
    AlgUnsupported,
    /// An `alg` the issuer is not configured for.
    #[error("the token's signature algorithm is not allowed for its issuer")]
    AlgNotAllowed,
    /// The header lists `crit` extensions (none are supported).
    #[error("the token requires header extensions (crit) that are not supported")]
    CritUnsupported,
    /// No `iss` claim.
    #[error("the token has no iss claim")]
    MissingIssuer,
    /// `iss` is not a trusted issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// The issuer's keys have never been fetched.
    #[error("the keys of the token's issuer are not available yet")]
    KeysUnavailable,
    /// The `kid` is not in the issuer's key set.
    #[error("the token's key id is not in its issuer's key set")]
    UnknownKid,
    /// No key of the issuer fits the token's algorithm.
    #[error("no key of the issuer fits the token's algorithm")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// A registered claim has the wrong JSON type.
    #[error("the token's {0} claim has the wrong type")]
    InvalidClaim(&'static str),
    /// No `exp`.
    #[error("the token has no exp claim")]
    MissingExp,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// No `iat`, where the issuer's entry requires it (the default).
    #[error("the token has no iat claim, which its issuer requires")]
    MissingIat,
    /// `exp - iat` is longer than the issuer allows.
    #[error("the token's lifetime is longer than its issuer allows")]
    LifetimeTooLong,
    /// No `aud`.
    #[error("the token has no aud claim")]
    MissingAudience,
    /// `aud` does not include an accepted audience.
    #[error("the token's audience is not accepted")]
    AudienceMismatch,
    /// No usable `sub`.
    #[error("the token has no usable sub claim")]
    MissingSubject,
    /// No `jti` where the issuer requires single use.
    #[error("the token has no jti claim, which its issuer requires")]
    MissingJti,
    /// The `jti` was seen before.
    #[error("the token was already used")]
    Replayed,
    /// The token carries `cnf` (it is bound to a key) and the request does not prove that key:
    /// not the same TLS client certificate, or a binding this service cannot check.
    #[error("the token is bound to a key this request does not prove (cnf)")]
    BindingMismatch,
}

impl TokenError {
    /// Stable code for responses, audit events and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed => "malformed_token",
            TokenError::MalformedHeader => "malformed_header",
            TokenError::MalformedClaims => "malformed_claims",
            TokenError::DuplicateKey => "duplicate_json_key",
            TokenError::TooDeep => "json_too_deep",
            TokenError::AlgNone => "alg_none",
            TokenError::AlgHmac => "alg_hmac",
            TokenError::AlgUnsupported => "alg_unsupported",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::CritUnsupported => "crit_unsupported",
            TokenError::MissingIssuer => "missing_iss",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::KeysUnavailable => "jwks_unavailable",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::NoMatchingKey => "no_matching_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::MissingExp => "missing_exp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::MissingIat => "missing_iat",
            TokenError::BindingMismatch => "binding_mismatch",
            TokenError::MissingAudience => "missing_aud",
            TokenError::AudienceMismatch => "audience_mismatch",
            TokenError::MissingSubject => "missing_sub",
            TokenError::MissingJti => "missing_jti",
            TokenError::Replayed => "replayed_jti",
        }
    }
}

/// A token read but not yet trusted.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// Header `alg`, known to be an asymmetric algorithm.
    pub alg: Algorithm,
    /// Header `kid`.
    pub kid: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `iss`.
    pub issuer: String,
    signing_input: &'a str,
    signature: &'a str,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct ValidatedToken {
    /// Name of the trust entry it matched.
    pub trust: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// All claims.
    pub claims: Map<String, Value>,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `exp`, unix seconds.
    pub expires_at: u64,
}

/// Reads a compact JWS without trusting anything in it.
///
/// Fails on size, shape, strict JSON, `alg: none`, HMAC, unknown algorithms, any `crit`, and a
/// missing `iss`. `jku`, `x5u`, `jwk` and `x5c` headers are ignored: keys come from configuration.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || c.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    let header = parse_object(&header_bytes, MAX_CLAIM_DEPTH)
        .map_err(|f| json_error(f, TokenError::MalformedHeader))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::MalformedHeader)?;
    let alg = classify_alg(alg_name)?;
    if header.contains_key("crit") {
        return Err(TokenError::CritUnsupported);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::MalformedHeader),
    };
    let claims_bytes = URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| TokenError::Malformed)?;
    let claims = parse_object(&claims_bytes, MAX_CLAIM_DEPTH)
        .map_err(|f| json_error(f, TokenError::MalformedClaims))?;
    let issuer = match claims.get("iss") {
        None => return Err(TokenError::MissingIssuer),
        Some(Value::String(i)) if !i.is_empty() => i.clone(),
        Some(_) => return Err(TokenError::InvalidClaim("iss")),
    };
    let signing_input = &token[..h.len() + 1 + c.len()];
    Ok(Parsed {
        alg,
        kid,
        claims,
        issuer,
        signing_input,
        signature: s,
    })
}

fn json_error(fault: JsonFault, otherwise: TokenError) -> TokenError {
    match fault {
        JsonFault::DuplicateKey => TokenError::DuplicateKey,
        JsonFault::TooDeep => TokenError::TooDeep,
        JsonFault::Invalid => otherwise,
    }
}

fn classify_alg(name: &str) -> Result<Algorithm, TokenError> {
    if name.trim().eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(TokenError::AlgHmac);
    }
    match name.parse::<Algorithm>() {
        Ok(a) => Ok(a),
        _ => Err(TokenError::AlgUnsupported),
    }
}

/// Checks a parsed token against one trusted issuer's policy and key set, at time `now`.
///
/// The caller has matched `parsed.issuer` to `trust.issuer` exactly; this checks it again so that a
/// wrong lookup can never pass a token. `keys` is `None` when the issuer's keys were never fetched.
pub fn verify(
    parsed: Parsed<'_>,
    trust: &TrustConfig,
    keys: Option<&KeySet>,
    now: SystemTime,
) -> Result<ValidatedToken, TokenError> {
    verify_with_key(parsed, trust, keys, now).map(|(token, _)| token)
}

/// As [`verify`], also returning the thumbprint of the key whose signature verified, so a caller
/// that remembers the result can tell when that exact key is withdrawn (with or without `kid`).
pub fn verify_with_key(
    parsed: Parsed<'_>,
    trust: &TrustConfig,
    keys: Option<&KeySet>,
    now: SystemTime,
) -> Result<(ValidatedToken, KeyThumbprint), TokenError> {
    if parsed.issuer != trust.issuer {
        return Err(TokenError::UnknownIssuer);
    }
    if !trust.algorithms.contains(&parsed.alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let keys = keys.ok_or(TokenError::KeysUnavailable)?;
    let candidates = keys
        .candidates(parsed.kid.as_deref(), parsed.alg)
        .ok_or(TokenError::UnknownKid)?;
    if candidates.is_empty() {
        return Err(TokenError::NoMatchingKey);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(parsed.signature)
        .map_err(|_| TokenError::BadSignature)?;
    let Some(key) = candidates
        .iter()
        .find(|k| k.verify(parsed.alg, parsed.signing_input.as_bytes(), &signature))
    else {
        return Err(TokenError::BadSignature);
    };
    let thumbprint = key.thumbprint();
    Ok((check_claims(parsed, trust, now)?, thumbprint))
}

fn check_claims(
    parsed: Parsed<'_>,
    trust: &TrustConfig,
    now: SystemTime,
) -> Result<ValidatedToken, TokenError> {
    let claims = parsed.claims;
    let now = unix_seconds(now);
    let leeway = trust.leeway.as_secs();

    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingExp)?;
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let nbf = numeric_date(&claims, "nbf")?;
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    let iat = numeric_date(&claims, "iat")?;
    if iat.is_none() && trust.require_iat {
        return Err(TokenError::MissingIat);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    let start = iat.or(nbf).unwrap_or(now);
    if exp.saturating_sub(start) > trust.max_token_lifetime.as_secs().saturating_add(leeway) {
        return Err(TokenError::LifetimeTooLong);
    }

    let audience_ok = match claims.get("aud") {
        None => return Err(TokenError::MissingAudience),
        Some(Value::String(a)) => trust.audiences.iter().any(|t| t == a),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(TokenError::MissingAudience);
            }
            let mut any = false;
            for a in list {
                let a = a.as_str().ok_or(TokenError::InvalidClaim("aud"))?;
                any |= trust.audiences.iter().any(|t| t == a);
            }
            any
        }
        Some(_) => return Err(TokenError::InvalidClaim("aud")),
    };
    if !audience_ok {
        return Err(TokenError::AudienceMismatch);
    }

    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES => s.clone(),
        Some(Value::String(_)) | None => return Err(TokenError::MissingSubject),
        Some(_) => return Err(TokenError::InvalidClaim("sub")),
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => Some(j.clone()),
        Some(_) => return Err(TokenError::InvalidClaim("jti")),
    };
    if trust.replay_reject && jti.is_none() {
        return Err(TokenError::MissingJti);
    }
    Ok(ValidatedToken {
        trust: trust.name.clone(),
        issuer: parsed.issuer,
        subject,
        claims,
        jti,
        expires_at: exp,
    })
}

/// For offline dry runs (`stsbridge explain`): every check of [`verify`] except the signature.
/// Returns the token as rules would see it and, when a check fails, why it would be refused.
pub fn inspect(
    parsed: Parsed<'_>,
    trust: &TrustConfig,
    now: SystemTime,
) -> (ValidatedToken, Option<TokenError>) {
    let fallback = ValidatedToken {
        trust: trust.name.clone(),
        issuer: parsed.issuer.clone(),
        subject: parsed
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        claims: parsed.claims.clone(),
        jti: parsed
            .claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_owned),
        expires_at: parsed
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    let refused = if trust.algorithms.contains(&parsed.alg) {
        None
    } else {
        Some(TokenError::AlgNotAllowed)
    };
    match check_claims(parsed, trust, now) {
        Ok(token) => (token, refused),
        Err(e) => (fallback, Some(refused.unwrap_or(e))),
    }
}

/// A NumericDate claim as whole seconds (fractions truncated); `None` when absent.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
                    _ => Err(TokenError::InvalidClaim(name)),
                }
            }
        }
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests;

/// What a request proves of its caller's keys: the `x5t#S256` of its TLS client certificate, and
/// the key of its DPoP proof with the raw token the proof must cover (`ath`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Possession<'a> {
    /// RFC 8705's thumbprint of the connection's client certificate.
    pub certificate: Option<&'a str>,
    /// A checked DPoP proof.
    pub dpop: Option<&'a crate::dpop::Proof>,
}

/// Whether `claims` (of token `raw`) are proven by a request that proves `possession`: `true`
/// for a token without `cnf`; for one with `cnf`, only when every binding it names is proven:
/// `x5t#S256` equal to the certificate's, `jkt` equal to the DPoP proof's key with the proof's
/// `ath` the hash of `raw`. A `cnf` this service cannot check (`jwk`, `kid`, anything else) fails.
pub fn binding_holds(claims: &Map<String, Value>, raw: &str, possession: Possession<'_>) -> bool {
    let thumbprint = possession.certificate;
    let Some(cnf) = claims.get("cnf") else {
        return true;
    };
    let Value::Object(members) = cnf else {
        return false;
    };
    !members.is_empty()
        && members.iter().all(|(name, value)| match name.as_str() {
            "x5t#S256" => thumbprint
                .filter(|t| !t.is_empty())
                .is_some_and(|t| value.as_str() == Some(t)),
            "jkt" => possession
                .dpop
                .is_some_and(|p| value.as_str() == Some(p.jkt.as_str()) && p.covers(raw)),
            _ => false,
        })
}
