//! Test helpers: keys generated at test time and hand-built tokens (including hostile ones).

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::config::{JwksSource, SigningAlgorithm, TrustConfig};
use crate::issuer::SigningKey;
use crate::token::KeySet;
use crate::token::keys::parse_jwks;

/// A fixed "now" for deterministic tests: 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;
pub const ISSUER: &str = "https://idp.example.com";
pub const AUDIENCE: &str = "https://sts.example.com";

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

pub fn at(offset: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.saturating_add_signed(offset))
}

pub fn rsa_key() -> SigningKey {
    SigningKey::generate(SigningAlgorithm::Rs256).unwrap().0
}

pub fn ec_key() -> SigningKey {
    SigningKey::generate(SigningAlgorithm::Es256).unwrap().0
}

pub fn keyset(keys: &[&SigningKey]) -> KeySet {
    let jwks = json!({ "keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>() });
    parse_jwks(jwks.to_string().as_bytes()).unwrap().0
}

pub fn trust() -> TrustConfig {
    TrustConfig {
        name: "idp".into(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks: JwksSource::Inline(String::new()),
        allow_insecure_loopback: false,
        algorithms: vec![crate::jose::Algorithm::RS256],
        leeway: Duration::from_secs(30),
        max_token_lifetime: Duration::from_secs(3600),
        replay_reject: false,
        jwks_refresh: Duration::from_secs(3600),
        max_staleness: Duration::from_secs(24 * 3600),
        explain_denials: false,
        rate_limit: None,
        max_concurrent: None,
        lazy_jwks: false,
        accept_act: false,
        require_iat: true,
    }
}

/// Valid claims at [`NOW`].
pub fn claims() -> Value {
    json!({ "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": NOW - 10, "exp": NOW + 600, "jti": "j-1" })
}

/// A standard header for `key`.
pub fn header(key: &SigningKey) -> Value {
    json!({ "alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT" })
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs raw header and claims text with `key` (so tests can build tokens no library would).
pub fn sign_raw(key: &SigningKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig))
}

pub fn sign(key: &SigningKey, claims: &Value) -> String {
    sign_raw(key, &header(key).to_string(), &claims.to_string())
}
