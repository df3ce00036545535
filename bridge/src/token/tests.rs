//! Every validation failure has its own test and its own code; time is injected.

use serde_json::json;

use super::*;
use crate::testutil::*;

fn check(
    token: &str,
    keys: &KeySet,
    trust: &TrustConfig,
    now: SystemTime,
) -> Result<ValidatedToken, TokenError> {
    verify(parse(token)?, trust, Some(keys), now)
}

fn rs() -> (crate::issuer::SigningKey, KeySet) {
    let key = rsa_key();
    let set = keyset(&[&key]);
    (key, set)
}

fn expect(token: &str, keys: &KeySet, want: TokenError) {
    assert_eq!(check(token, keys, &trust(), now()).unwrap_err(), want);
}

fn with(
    mut claims: serde_json::Value,
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> serde_json::Value {
    f(claims.as_object_mut().unwrap());
    claims
}

#[test]
fn a_valid_rs256_token_passes() {
    let (key, keys) = rs();
    let t = check(&sign(&key, &claims()), &keys, &trust(), now()).unwrap();
    assert_eq!(t.subject, "alice");
    assert_eq!(t.trust, "idp");
    assert_eq!(t.jti.as_deref(), Some("j-1"));
    assert_eq!(t.expires_at, NOW + 600);
}

#[test]
fn a_valid_es256_token_passes_where_allowed() {
    let key = ec_key();
    let keys = keyset(&[&key]);
    let mut trust = trust();
    trust.algorithms = vec![crate::jose::Algorithm::ES256];
    assert!(check(&sign(&key, &claims()), &keys, &trust, now()).is_ok());
}

#[test]
fn audience_may_be_an_array_holding_ours() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.insert("aud".into(), json!(["other", AUDIENCE]));
    });
    assert!(check(&sign(&key, &c), &keys, &trust(), now()).is_ok());
}

#[test]
fn too_large() {
    let (_, keys) = rs();
    expect(
        &"a".repeat(MAX_TOKEN_BYTES + 1),
        &keys,
        TokenError::TooLarge,
    );
}

#[test]
fn malformed_shapes() {
    let (key, keys) = rs();
    let good = sign(&key, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "".to_owned(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        expect(&bad, &keys, TokenError::Malformed);
    }
}

#[test]
fn malformed_header() {
    let (key, keys) = rs();
    let c = claims().to_string();
    for h in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":256}"#,
        r#"not json"#,
        r#"["RS256"]"#,
        r#"{"alg":"RS256","kid":7}"#,
    ] {
        expect(&sign_raw(&key, h, &c), &keys, TokenError::MalformedHeader);
    }
}

#[test]
fn malformed_claims() {
    let (key, keys) = rs();
    let h = header(&key).to_string();
    for c in ["not json", "[1,2]", "{\"iss\":", "\"string\""] {
        expect(&sign_raw(&key, &h, c), &keys, TokenError::MalformedClaims);
    }
    // Non-UTF-8 bytes inside a claim.
    let input = format!("{}.{}", b64(&h), b64(b"{\"iss\":\"\xff\"}"));
    let sig = key.sign(input.as_bytes()).unwrap();
    expect(
        &format!("{input}.{}", b64(sig)),
        &keys,
        TokenError::MalformedClaims,
    );
}

#[test]
fn duplicate_json_keys_in_claims_or_header() {
    let (key, keys) = rs();
    let c = format!(
        r#"{{"iss":"{ISSUER}","sub":"alice","sub":"admin","aud":"{AUDIENCE}","exp":{}}}"#,
        NOW + 60
    );
    expect(
        &sign_raw(&key, &header(&key).to_string(), &c),
        &keys,
        TokenError::DuplicateKey,
    );
    let h = format!(r#"{{"alg":"RS256","alg":"none","kid":"{}"}}"#, key.kid());
    expect(
        &sign_raw(&key, &h, &claims().to_string()),
        &keys,
        TokenError::DuplicateKey,
    );
}

#[test]
fn deeply_nested_claims() {
    let (key, keys) = rs();
    let deep = format!(
        r#"{{"iss":"{ISSUER}","x":{}1{}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    expect(
        &sign_raw(&key, &header(&key).to_string(), &deep),
        &keys,
        TokenError::TooDeep,
    );
}

#[test]
fn alg_none_in_every_spelling() {
    let (key, keys) = rs();
    for alg in ["none", "None", "NONE", "nOnE", " none"] {
        let h = json!({ "alg": alg, "typ": "JWT" }).to_string();
        let unsigned = format!("{}.{}.", b64(&h), b64(claims().to_string()));
        expect(&unsigned, &keys, TokenError::AlgNone);
        expect(
            &sign_raw(&key, &h, &claims().to_string()),
            &keys,
            TokenError::AlgNone,
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key() {
    let (key, keys) = rs();
    let public = key.public_jwk()["n"].as_str().unwrap().as_bytes().to_vec();
    for alg in ["HS256", "HS384", "HS512", "hs256"] {
        let h = json!({ "alg": alg, "kid": key.kid() }).to_string();
        let input = format!("{}.{}", b64(&h), b64(claims().to_string()));
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public),
            input.as_bytes(),
        );
        expect(
            &format!("{input}.{}", b64(mac.as_ref())),
            &keys,
            TokenError::AlgHmac,
        );
    }
}

#[test]
fn unsupported_algorithm() {
    let (key, keys) = rs();
    for alg in ["RS1", "ES512K", "", "RSA-OAEP"] {
        let h = json!({ "alg": alg, "kid": key.kid() }).to_string();
        expect(
            &sign_raw(&key, &h, &claims().to_string()),
            &keys,
            TokenError::AlgUnsupported,
        );
    }
}

#[test]
fn es256_token_for_an_rs256_only_issuer() {
    let key = ec_key();
    let keys = keyset(&[&key]);
    expect(&sign(&key, &claims()), &keys, TokenError::AlgNotAllowed);
}

#[test]
fn unknown_crit() {
    let (key, keys) = rs();
    for crit in [json!(["exp"]), json!([]), json!("b64")] {
        let h = json!({ "alg": "RS256", "kid": key.kid(), "crit": crit }).to_string();
        expect(
            &sign_raw(&key, &h, &claims().to_string()),
            &keys,
            TokenError::CritUnsupported,
        );
    }
}

#[test]
fn missing_iss() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.remove("iss");
    });
    expect(&sign(&key, &c), &keys, TokenError::MissingIssuer);
}

#[test]
fn issuer_must_match_exactly() {
    let (key, keys) = rs();
    for iss in [
        format!("{ISSUER}/"),
        ISSUER.to_uppercase(),
        "https://idp.example.com.evil".into(),
        "idp".into(),
    ] {
        let c = with(claims(), |c| {
            c.insert("iss".into(), json!(iss));
        });
        expect(&sign(&key, &c), &keys, TokenError::UnknownIssuer);
    }
}

#[test]
fn keys_not_loaded_yet() {
    let (key, _) = rs();
    let token = sign(&key, &claims());
    let parsed = parse(&token).unwrap();
    assert_eq!(
        verify(parsed, &trust(), None, now()).unwrap_err(),
        TokenError::KeysUnavailable
    );
}

#[test]
fn unknown_kid_including_injection_attempts() {
    let (key, keys) = rs();
    for kid in [
        "other",
        "../../etc/passwd",
        "' OR 1=1 --",
        "\u{0}",
        "http://evil.example/jwks.json",
    ] {
        let h = json!({ "alg": "RS256", "kid": kid }).to_string();
        expect(
            &sign_raw(&key, &h, &claims().to_string()),
            &keys,
            TokenError::UnknownKid,
        );
    }
}

#[test]
fn keys_in_headers_are_ignored() {
    // An attacker signs with their own key and points at it every way a header can.
    let (_, keys) = rs();
    let attacker = rsa_key();
    for extra in ["jku", "x5u"] {
        let mut h = header(&attacker);
        h.as_object_mut().unwrap().remove("kid");
        h[extra] = json!("https://evil.example/keys");
        expect(
            &sign_raw(&attacker, &h.to_string(), &claims().to_string()),
            &keys,
            TokenError::BadSignature,
        );
    }
    let mut h = header(&attacker);
    h.as_object_mut().unwrap().remove("kid");
    h["jwk"] = attacker.public_jwk().clone();
    expect(
        &sign_raw(&attacker, &h.to_string(), &claims().to_string()),
        &keys,
        TokenError::BadSignature,
    );
}

#[test]
fn no_key_fits_the_algorithm() {
    let ec = ec_key();
    let keys = keyset(&[&ec]);
    let rsa = rsa_key();
    let mut h = header(&rsa);
    h.as_object_mut().unwrap().remove("kid");
    expect(
        &sign_raw(&rsa, &h.to_string(), &claims().to_string()),
        &keys,
        TokenError::NoMatchingKey,
    );
}

#[test]
fn tampered_payload_and_stripped_signature() {
    let (key, keys) = rs();
    let good = sign(&key, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let evil = with(claims(), |c| {
        c.insert("sub".into(), json!("admin"));
    });
    expect(
        &format!("{}.{}.{}", parts[0], b64(evil.to_string()), parts[2]),
        &keys,
        TokenError::BadSignature,
    );
    expect(
        &format!("{}.{}.", parts[0], parts[1]),
        &keys,
        TokenError::BadSignature,
    );
    expect(
        &format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() / 2]
        ),
        &keys,
        TokenError::BadSignature,
    );
    expect(
        &format!("{}.{}.!!!", parts[0], parts[1]),
        &keys,
        TokenError::BadSignature,
    );
}

#[test]
fn registered_claims_of_the_wrong_type() {
    let (key, keys) = rs();
    for (claim, value) in [
        ("exp", json!("tomorrow")),
        ("nbf", json!(-5)),
        ("iat", json!(true)),
        ("aud", json!(7)),
        ("sub", json!(1)),
        ("jti", json!({})),
    ] {
        let c = with(claims(), |c| {
            c.insert(claim.into(), value);
        });
        match check(&sign(&key, &c), &keys, &trust(), now()).unwrap_err() {
            TokenError::InvalidClaim(name) => assert_eq!(name, claim),
            other => panic!("{claim}: {other:?}"),
        }
    }
    let c = with(claims(), |c| {
        c.insert("iss".into(), json!(5));
    });
    expect(&sign(&key, &c), &keys, TokenError::InvalidClaim("iss"));
}

#[test]
fn missing_exp() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.remove("exp");
    });
    expect(&sign(&key, &c), &keys, TokenError::MissingExp);
}

#[test]
fn expired_counts_leeway() {
    let (key, keys) = rs();
    let token = sign(&key, &claims());
    assert!(
        check(&token, &keys, &trust(), at(600 + 30)).is_ok(),
        "within leeway"
    );
    assert_eq!(
        check(&token, &keys, &trust(), at(600 + 31)).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn not_yet_valid() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.insert("nbf".into(), json!(NOW + 31));
    });
    expect(&sign(&key, &c), &keys, TokenError::NotYetValid);
    let c = with(claims(), |c| {
        c.insert("nbf".into(), json!(NOW + 30));
    });
    assert!(check(&sign(&key, &c), &keys, &trust(), now()).is_ok());
}

#[test]
fn issued_in_the_future() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.insert("iat".into(), json!(NOW + 120));
    });
    expect(&sign(&key, &c), &keys, TokenError::IssuedInFuture);
}

#[test]
fn lifetime_too_long() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.insert("iat".into(), json!(NOW));
        c.insert("exp".into(), json!(NOW + 3600 + 31));
    });
    expect(&sign(&key, &c), &keys, TokenError::LifetimeTooLong);
    // Without iat the true lifetime is unknown: refused unless the issuer opts out, and then
    // the remaining lifetime counts.
    let c = with(claims(), |c| {
        c.remove("iat");
        c.insert("exp".into(), json!(NOW + 600));
    });
    expect(&sign(&key, &c), &keys, TokenError::MissingIat);
    let mut lenient = trust();
    lenient.require_iat = false;
    assert!(check(&sign(&key, &c), &keys, &lenient, now()).is_ok());
    let c = with(claims(), |c| {
        c.remove("iat");
        c.insert("exp".into(), json!(NOW + 86_400));
    });
    assert_eq!(
        check(&sign(&key, &c), &keys, &lenient, now()).unwrap_err(),
        TokenError::LifetimeTooLong
    );
}

#[test]
fn missing_audience() {
    let (key, keys) = rs();
    let c = with(claims(), |c| {
        c.remove("aud");
    });
    expect(&sign(&key, &c), &keys, TokenError::MissingAudience);
    let c = with(claims(), |c| {
        c.insert("aud".into(), json!([]));
    });
    expect(&sign(&key, &c), &keys, TokenError::MissingAudience);
}

#[test]
fn audience_mismatch() {
    let (key, keys) = rs();
    for aud in [
        json!("https://other.example.com"),
        json!(["a", "b"]),
        json!(format!("{AUDIENCE}/")),
    ] {
        let c = with(claims(), |c| {
            c.insert("aud".into(), aud);
        });
        expect(&sign(&key, &c), &keys, TokenError::AudienceMismatch);
    }
}

#[test]
fn missing_subject() {
    let (key, keys) = rs();
    for sub in [
        None,
        Some(json!("")),
        Some(json!("x".repeat(MAX_SUBJECT_BYTES + 1))),
    ] {
        let c = with(claims(), |c| match sub {
            None => {
                c.remove("sub");
            }
            Some(s) => {
                c.insert("sub".into(), s);
            }
        });
        expect(&sign(&key, &c), &keys, TokenError::MissingSubject);
    }
}

#[test]
fn missing_jti_where_replay_is_rejected() {
    let (key, keys) = rs();
    let mut trust = trust();
    trust.replay_reject = true;
    let c = with(claims(), |c| {
        c.remove("jti");
    });
    assert_eq!(
        check(&sign(&key, &c), &keys, &trust, now()).unwrap_err(),
        TokenError::MissingJti
    );
    assert!(check(&sign(&key, &claims()), &keys, &trust, now()).is_ok());
}

#[test]
fn every_error_has_its_own_code() {
    let all = [
        TokenError::TooLarge,
        TokenError::Malformed,
        TokenError::MalformedHeader,
        TokenError::MalformedClaims,
        TokenError::DuplicateKey,
        TokenError::TooDeep,
        TokenError::AlgNone,
        TokenError::AlgHmac,
        TokenError::AlgUnsupported,
        TokenError::AlgNotAllowed,
        TokenError::CritUnsupported,
        TokenError::MissingIssuer,
        TokenError::UnknownIssuer,
        TokenError::KeysUnavailable,
        TokenError::UnknownKid,
        TokenError::NoMatchingKey,
        TokenError::BadSignature,
        TokenError::InvalidClaim("exp"),
        TokenError::MissingExp,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::LifetimeTooLong,
        TokenError::MissingAudience,
        TokenError::AudienceMismatch,
        TokenError::MissingSubject,
        TokenError::MissingJti,
        TokenError::Replayed,
        TokenError::BindingMismatch,
    ];
    let codes: std::collections::HashSet<&str> = all.iter().map(TokenError::code).collect();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn jwks_parsing_skips_what_it_cannot_use() {
    let rsa = rsa_key();
    let doc = json!({ "keys": [
        { "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB" },
        { "kty": "oct", "k": "c2VjcmV0" },
        { "kty": "RSA", "n": b64([0xffu8; 128]), "e": "AQAB", "kid": "short" },
        { "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA" },
        rsa.public_jwk(),
    ]});
    let (set, skipped) = keys::parse_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(
        skipped.iter().any(|s| s.contains("1024 bits")),
        "{skipped:?}"
    );
    assert!(keys::parse_jwks(br#"{"keys":[]}"#).is_err());
    assert!(keys::parse_jwks(b"[]").is_err());
    assert_eq!(
        keys::parse_jwks(&vec![b' '; keys::MAX_JWKS_BYTES + 1]).unwrap_err(),
        keys::JwksError::TooLarge
    );
}

#[tokio::test]
async fn lazy_partner_keys_are_fetched_on_first_use_only() {
    let key = rsa_key();
    let jwks = json!({ "keys": [key.public_jwk().clone()] }).to_string();
    let mut eager = trust();
    eager.jwks = crate::config::JwksSource::Inline(jwks.clone());
    let mut lazy = trust();
    lazy.name = "partner".into();
    lazy.issuer = "https://partner.example".into();
    lazy.jwks = crate::config::JwksSource::Inline(jwks);
    lazy.lazy_jwks = true;
    let manager = std::sync::Arc::new(jwks::JwksManager::new(&[eager, lazy], None).unwrap());
    let tasks = manager.spawn_refreshers();
    // The eager entry loads at start; readiness does not wait for the lazy one.
    for _ in 0..100 {
        if manager.all_loaded() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(manager.all_loaded());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(manager.keys("partner").is_none(), "not fetched before use");
    let status = manager.status();
    let partner = status.iter().find(|s| s.name == "partner").unwrap();
    assert!(partner.lazy && !partner.loaded);
    // A token's need loads it.
    assert!(manager.refresh_for("partner", Some(key.kid())).await);
    assert_eq!(manager.keys("partner").unwrap().len(), 1);
    for t in tasks {
        t.abort();
    }
}

#[test]
fn an_rsa_key_verifies_each_algorithm_with_its_own_parsed_form_and_nothing_else() {
    let key = rsa_key();
    let set = keyset(&[&key]);
    let message = b"header.claims";
    let signature = key.sign(message).unwrap();
    let candidates = set.candidates(Some(key.kid()), Algorithm::RS256).unwrap();
    assert_eq!(candidates.len(), 1);
    let k = candidates[0];
    assert!(k.verify(Algorithm::RS256, message, &signature));
    // The same key parsed for PSS on first use: a PKCS#1 signature is not a PSS one.
    assert!(!k.verify(Algorithm::PS256, message, &signature));
    assert!(!k.verify(Algorithm::RS384, message, &signature));
    assert!(!k.verify(Algorithm::ES256, message, &signature));
    assert!(!k.verify(Algorithm::RS256, b"header.other", &signature));
    assert!(k.verify(Algorithm::RS256, message, &signature));
}

#[test]
fn a_bound_token_holds_only_with_its_certificate() {
    let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
    let bound = claims(json!({ "sub": "x", "cnf": { "x5t#S256": "abc" } }));
    let cert = |t: Option<&'static str>| Possession {
        certificate: t,
        dpop: None,
    };
    assert!(binding_holds(
        &claims(json!({ "sub": "x" })),
        "raw",
        cert(None)
    ));
    assert!(binding_holds(&bound, "raw", cert(Some("abc"))));
    assert!(!binding_holds(&bound, "raw", cert(Some("abd"))));
    assert!(!binding_holds(&bound, "raw", cert(None)));
    assert!(!binding_holds(&bound, "raw", cert(Some(""))));
    // Anything this service cannot check fails: other members, an empty or non-object cnf.
    for cnf in [
        json!({ "x5t#S256": "abc", "jkt": "k" }),
        json!({ "jkt": "k" }),
        json!({}),
        json!("abc"),
    ] {
        assert!(
            !binding_holds(
                &claims(json!({ "sub": "x", "cnf": cnf })),
                "raw",
                cert(Some("abc"))
            ),
            "{cnf}"
        );
    }
}
