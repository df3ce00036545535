//! Hostile tokens: parse, then the full verification against a real key set, then the offline
//! inspection `explain` uses. None of it may panic.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use stsbridge::config::{JwksSource, SigningAlgorithm, TrustConfig};
use stsbridge::issuer::SigningKey;
use stsbridge::token::{self, KeySet};

fn fixtures() -> &'static (TrustConfig, KeySet) {
    static FIXTURES: OnceLock<(TrustConfig, KeySet)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let rsa = SigningKey::generate(SigningAlgorithm::Rs256).unwrap().0;
        let ec = SigningKey::generate(SigningAlgorithm::Es256).unwrap().0;
        let jwks = serde_json::json!({ "keys": [rsa.public_jwk(), ec.public_jwk()] }).to_string();
        let keys = token::keys::parse_jwks(jwks.as_bytes()).unwrap().0;
        let trust = TrustConfig {
            name: "fuzz".into(),
            issuer: "https://idp.example.com".into(),
            audiences: vec!["https://sts.example.com".into()],
            jwks: JwksSource::Inline(jwks),
            allow_insecure_loopback: false,
            algorithms: vec![stsbridge::jose::Algorithm::RS256, stsbridge::jose::Algorithm::ES256],
            leeway: Duration::from_secs(30),
            max_token_lifetime: Duration::from_secs(3600),
            replay_reject: true,
            jwks_refresh: Duration::from_secs(3600),
            max_staleness: Duration::from_secs(86_400),
            explain_denials: false,
            rate_limit: None,
            max_concurrent: None,
            lazy_jwks: false,
            accept_act: false,
            require_iat: true,
        };
        (trust, keys)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (trust, keys) = fixtures();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    if let Ok(parsed) = token::parse(text) {
        let _ = token::inspect(parsed.clone(), trust, now);
        let _ = token::verify(parsed, trust, Some(keys), now);
    }
    // The JWKS parser takes hostile input too (an IdP's answer).
    let _ = token::keys::parse_jwks(data);
});
