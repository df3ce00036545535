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
        publish_before_use: Duration::from_secs(3600),
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
}

#[test]
fn no_published_key_carries_a_private_member() {
    // RFC 7518 §6.3.2 (RSA: d, p, q, dp, dq, qi, oth) and §6.2.2 (EC: d); `k` is a symmetric key.
    const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(Some(tmp.path().join("keys")), algorithm);
        // The key in use and a staged one: every key in the set, not only the first.
        rotate(&cfg, false, SystemTime::now()).unwrap();
        let issuer = Issuer::load(&cfg).unwrap();
        let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{algorithm:?}: {jwks}");
        for key in keys {
            let members: Vec<&String> = key.as_object().unwrap().keys().collect();
            let private: Vec<&&String> = members
                .iter()
                .filter(|m| PRIVATE.contains(&m.as_str()))
                .collect();
            assert!(
                private.is_empty(),
                "{algorithm:?}: key {} publishes {private:?}",
                key["kid"]
            );
        }
    }
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

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

#[test]
fn a_staged_key_is_published_before_it_signs_and_the_old_one_retires_after_its_tokens() {
    let lead = Duration::from_secs(3600);
    let retention = Duration::from_secs(3660);
    // Key 0 alone signs even before its lead has passed: something must sign.
    assert_eq!(
        plan_keys(&[t(0)], t(1), lead, retention),
        KeyPlan {
            active: 0,
            published: vec![0]
        }
    );
    let keys = [t(0), t(10_000)];
    // Just after staging: the old key signs, both are published.
    assert_eq!(
        plan_keys(&keys, t(10_001), lead, retention),
        KeyPlan {
            active: 0,
            published: vec![0, 1]
        }
    );
    // After the lead: the new key signs; the old one is still published for its tokens.
    assert_eq!(
        plan_keys(&keys, t(13_600), lead, retention),
        KeyPlan {
            active: 1,
            published: vec![0, 1]
        }
    );
    assert_eq!(
        plan_keys(&keys, t(13_600 + 3_659), lead, retention).published,
        vec![0, 1]
    );
    // After the retention: only the new key.
    assert_eq!(
        plan_keys(&keys, t(13_600 + 3_660), lead, retention),
        KeyPlan {
            active: 1,
            published: vec![1]
        }
    );
}

#[test]
fn rotate_writes_a_new_private_key_file_and_prunes_retired_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let cfg = IssuerConfig {
        publish_before_use: Duration::from_secs(5),
        ..config(Some(dir.clone()), SigningAlgorithm::Es256)
    };
    let now = SystemTime::now();
    let (first, _) = rotate(&cfg, false, now).unwrap();
    let files = || {
        let mut f: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        f
    };
    assert_eq!(
        files().len(),
        2,
        "the generated first key and the staged one"
    );
    for f in files() {
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let issuer = Issuer::load(&cfg).unwrap();
    assert!(
        issuer.published_kids().contains(&first),
        "published at once"
    );
    assert_ne!(
        issuer.active_kid().as_deref(),
        Some(first.as_str()),
        "not signing yet"
    );
    issuer.refresh(now + Duration::from_secs(10));
    assert_eq!(
        issuer.active_kid().as_deref(),
        Some(first.as_str()),
        "signing after the lead"
    );
    // Two hours on, the first key is past its retention and is pruned by the next rotation.
    let later = now + Duration::from_secs(2 * 3600 + 120);
    let (_, pruned) = rotate(&cfg, true, later).unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(files().len(), 2);
}

#[test]
fn export_writes_what_the_service_serves_and_never_creates_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let out = tmp.path().join("site");
    let cfg = config(Some(dir.clone()), SigningAlgorithm::Es256);
    assert!(matches!(export(&cfg, &out), Err(IssuerError::NoKeys(_))));
    assert!(!dir.exists(), "export must not create the key directory");
    assert!(!out.exists());

    let issuer = Issuer::load(&cfg).unwrap();
    let exported = export(&cfg, &out).unwrap();
    assert_eq!(exported.kids, issuer.published_kids());
    let discovery = fs::read_to_string(out.join(".well-known/openid-configuration")).unwrap();
    let jwks = fs::read_to_string(out.join(".well-known/jwks.json")).unwrap();
    assert_eq!(discovery, &*issuer.discovery_json());
    assert_eq!(jwks, &*issuer.jwks_json());
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], "https://sts.example.com");
    assert_eq!(
        discovery["jwks_uri"],
        "https://sts.example.com/.well-known/jwks.json"
    );
}

#[test]
fn the_system_generator_gives_ids_that_differ_and_are_never_zero() {
    // The pool around the generator is tested in `id`: failures give no id, each id once.
    let ids: Vec<String> = (0..100).map(|_| random_id().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    assert!(!ids.contains(&URL_SAFE_NO_PAD.encode([0u8; ID_BYTES])));
}

#[test]
fn a_key_file_readable_by_the_processs_own_group_is_accepted_as_kubernetes_mounts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Es256)).unwrap();
    let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    // The file's group is this process's own (it created it): 0440 and 0640 are fine.
    for mode in [0o440, 0o640] {
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Es256))
            .unwrap_or_else(|e| panic!("{mode:o}: {e}"));
    }
    // Group-writable, or readable by anyone else: refused.
    for mode in [0o660, 0o604] {
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let err = Issuer::load(&config(Some(dir.clone()), SigningAlgorithm::Es256)).unwrap_err();
        assert!(
            matches!(err, IssuerError::Permissions { .. }),
            "{mode:o}: {err}"
        );
    }
}
