//! DPoP (RFC 9449): the proof of possession a caller sends in the `DPoP` header, checked against
//! the request it came with. A valid proof yields the key's RFC 7638 thumbprint (`jkt`), to bind a
//! minted token to (`cnf.jkt`) or to prove a bound token presented to stsbridge. Proofs are never
//! logged; a refusal names what was wrong.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jose::Algorithm;

/// The signature algorithms a proof may use: asymmetric only.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];
/// Largest proof read.
const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` kept.
const MAX_JTI_BYTES: usize = 256;
/// How far in the future a proof's `iat` may be (clock skew between caller and service).
pub const FUTURE_SKEW: Duration = Duration::from_secs(5);
/// JWK members that only a private key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of its key (base64url SHA-256): the `cnf.jkt` it proves.
    pub jkt: String,
    /// Its `jti`, to be used once.
    pub jti: String,
    /// Its `iat`, unix seconds.
    pub iat: u64,
    /// Its `ath`, if any (checked against the access token by [`Proof::covers`]).
    pub ath: Option<String>,
}

impl Proof {
    /// Whether this proof was made for `token`: its `ath` is the token's hash.
    pub fn covers(&self, token: &str) -> bool {
        self.ath.as_deref() == Some(token_hash(token).as_str())
    }

    /// Until when its `jti` must be remembered: past that, `iat` is too old anyway.
    pub fn forget_at(&self, max_age: Duration) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.iat) + max_age + FUTURE_SKEW
    }
}

/// What the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URL as the caller addressed it: scheme, host (and port), path.
    pub url: &'a str,
    /// The oldest `iat` accepted, as an age.
    pub max_age: Duration,
    /// Now.
    pub now: SystemTime,
}

/// Why a proof was refused (400 `invalid_dpop_proof`); the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub String);

fn refuse(message: impl Into<String>) -> ProofError {
    ProofError(message.into())
}

/// Checks `proof` (the `DPoP` header's value) for the request `expected` describes.
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(refuse(format!(
            "the proof is larger than {MAX_PROOF_BYTES} bytes"
        )));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse("the proof is not a compact JWS"));
    };
    let object = |part: &str, what: &str| -> Result<Map<String, Value>, ProofError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| refuse(format!("the proof's {what} is not base64url")))?;
        crate::token::json::parse_object(&bytes, 8)
            .map_err(|_| refuse(format!("the proof's {what} is not a JSON object")))
    };
    let header = object(h, "header")?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(refuse("typ must be dpop+jwt"));
    }
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = alg_name
        .parse::<Algorithm>()
        .ok()
        .filter(|a| ALGORITHMS.contains(a))
        .ok_or_else(|| {
            refuse(format!(
                "alg {:?} is not allowed; use ES256, RS256 or EdDSA",
                alg_name.chars().take(16).collect::<String>()
            ))
        })?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(refuse("the header has no jwk (the public key)"));
    };
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(refuse(format!(
            "the jwk holds private key material ({member})"
        )));
    }
    let key = crate::token::keys::parse_jwk(&Value::Object(jwk.clone()))
        .map_err(|e| refuse(format!("the jwk is not a usable public key: {e}")))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| refuse("the signature is not base64url"))?;
    let signed = &proof[..h.len() + 1 + c.len()];
    if !key.verify(alg, signed.as_bytes(), &signature) {
        return Err(refuse("the signature does not verify with the jwk"));
    }
    let claims = object(c, "claims")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or_else(|| {
            refuse(format!(
                "jti must be a string of 1 to {MAX_JTI_BYTES} bytes"
            ))
        })?;
    if text("htm") != Some(expected.method) {
        return Err(refuse(format!("htm must be {}", expected.method)));
    }
    if !same_target(text("htu").unwrap_or(""), expected.url) {
        return Err(refuse(format!(
            "htu must be {} (scheme, host and path of this request)",
            expected.url
        )));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or_else(|| refuse("iat must be a number of seconds"))?;
    let now = crate::clock::unix_seconds(expected.now);
    if iat > now + FUTURE_SKEW.as_secs() {
        return Err(refuse("iat is in the future"));
    }
    if now.saturating_sub(iat) > expected.max_age.as_secs() {
        return Err(refuse(format!(
            "iat is older than {} s; make a fresh proof",
            expected.max_age.as_secs()
        )));
    }
    let ath = match claims.get("ath") {
        None => None,
        Some(Value::String(a)) => Some(a.clone()),
        Some(_) => return Err(refuse("ath must be a string")),
    };
    let jkt =
        thumbprint(jwk).ok_or_else(|| refuse("the jwk lacks a member its thumbprint needs"))?;
    Ok(Proof {
        jkt,
        jti: jti.to_owned(),
        iat,
        ath,
    })
}

/// Whether `htu` names the same resource as `url`: scheme, host, port and path equal after
/// normalization; query and fragment ignored (RFC 9449 section 4.3).
fn same_target(htu: &str, url: &str) -> bool {
    match (url::Url::parse(htu), url::Url::parse(url)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
        }
        _ => false,
    }
}

/// RFC 7638 thumbprint of a public JWK: base64url SHA-256 of its required members, sorted, as
/// JSON without whitespace.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let value = jwk.get(*m)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::String((*m).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Some(crate::digest::sha256_b64url(canonical.as_bytes()))
}

/// RFC 9449's `ath`: base64url SHA-256 of the access token.
pub fn token_hash(token: &str) -> String {
    crate::digest::sha256_b64url(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn htu_ignores_query_and_fragment_and_normalizes() {
        assert!(same_target(
            "https://STS.example.com:443/oauth2/token?x=1#f",
            "https://sts.example.com/oauth2/token"
        ));
        assert!(!same_target(
            "https://sts.example.com/oauth2/token/",
            "https://sts.example.com/oauth2/token"
        ));
        assert!(!same_target(
            "http://sts.example.com/oauth2/token",
            "https://sts.example.com/oauth2/token"
        ));
        assert!(!same_target(
            "not a url",
            "https://sts.example.com/oauth2/token"
        ));
    }
}
