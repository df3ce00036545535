use std::os::unix::fs::PermissionsExt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;

use super::*;
use crate::testutil::now;

fn config(dir: Option<PathBuf>, algorithm: SigningAlgorithm) -> IssuerConfig {
    IssuerConfig {
        url: "https://sts.example.com".into(),
        key_dir: dir,
        algorithm,
        assertion_lifetime: Duration::from_secs(300),
    }
}

#[test]
fn an_empty_directory_gets_one_private_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let first = Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Rs256)).unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Loading again reuses the key.
    let second = Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Rs256)).unwrap();
    assert_eq!(first.active_kid(), second.active_kid());
    assert_eq!(check_key_dir(&dir).unwrap(), 1);
}

#[test]
fn readable_key_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Es256)).unwrap();
    let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Issuer::load(&config(Some(dir), SigningAlgorithm::Es256)).unwrap_err();
    assert!(
        matches!(err, IssuerError::Permissions { mode: 0o644, .. }),
        "{err}"
    );
}

#[test]
fn garbage_key_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("key-1.pem");
    write_key_file(&path, b"not a key").unwrap();
    assert!(matches!(
        Issuer::load(&config(Some(tmp.path().into()), SigningAlgorithm::Rs256)),
        Err(IssuerError::BadKey { .. })
    ));
}

fn verify_minted(alg: SigningAlgorithm, jwa: Algorithm) {
    let issuer = Issuer::load(&config(None, alg)).unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("scope".into(), json!("a b"));
    let minted = issuer
        .mint(
            MintSpec {
                subject: "target:t",
                audience: "sts.amazonaws.com",
                lifetime: None,
                extra,
            },
            now(),
        )
        .unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&issuer.jwks_json()).unwrap();
    let header = jsonwebtoken::decode_header(minted.token.expose_secret()).unwrap();
    assert_eq!(header.kid.as_deref(), issuer.active_kid().as_deref());
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = Validation::new(jwa);
    v.set_audience(&["sts.amazonaws.com"]);
    v.set_issuer(&["https://sts.example.com"]);
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(
        minted.token.expose_secret(),
        &DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["sub"], "target:t");
    assert_eq!(c["scope"], "a b");
    assert_eq!(c["jti"], json!(minted.jti));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
}

#[test]
fn minted_rs256_tokens_verify_against_the_published_jwks() {
    verify_minted(SigningAlgorithm::Rs256, Algorithm::RS256);
}

#[test]
fn minted_es256_tokens_verify_against_the_published_jwks() {
    verify_minted(SigningAlgorithm::Es256, Algorithm::ES256);
}

#[test]
fn reserved_claims_cannot_be_overridden() {
    let issuer = Issuer::load(&config(None, SigningAlgorithm::Es256)).unwrap();
    for claim in RESERVED_CLAIMS {
        let mut extra = serde_json::Map::new();
        extra.insert(claim.into(), json!("x"));
        let err = issuer
            .mint(
                MintSpec {
                    subject: "s",
                    audience: "a",
                    lifetime: None,
                    extra,
                },
                now(),
            )
            .unwrap_err();
        assert!(matches!(err, SignError::ReservedClaim(_)), "{claim}");
    }
}

#[test]
fn discovery_names_the_issuer_and_its_jwks() {
    let issuer = Issuer::load(&config(None, SigningAlgorithm::Rs256)).unwrap();
    let doc: Value = serde_json::from_str(&issuer.discovery_json()).unwrap();
    assert_eq!(doc["issuer"], "https://sts.example.com");
    assert_eq!(
        doc["jwks_uri"],
        "https://sts.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part is published"
    );
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    // RFC 7638 section 3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB"
    });
    assert_eq!(
        thumbprint(&jwk),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}
