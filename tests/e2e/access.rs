//! Who gets in: denials with decision ids, invalid tokens, replay, rate limits, and key rotation
//! at the IdP.

use std::time::Duration;

use serde_json::json;

use crate::{Setup, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_token_gets_403_with_a_decision_id_and_no_credentials() {
    let stack = Stack::start(Setup::default()).await;
    let mallory = stack.idp.token("svc:mallory", json!({}));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {mallory}")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert!(body.get("access_token").is_none() && body.get("AccessKeyId").is_none());
    let id = body["decision_id"].as_str().unwrap();
    let event = stack.bridge.audit_event(id).await;
    assert_eq!(event["outcome"], "deny");
    assert_eq!(event["reason"], "deny_rule");
    assert_eq!(event["rule"], "no-mallory");
    assert_eq!(event["caller"]["subject"], "svc:mallory");
    assert_eq!(event["caller"]["verified"], true);

    // Allowed to call the API, but not to deploy: no rule matches.
    let bob = stack.idp.token("svc:bob", json!({}));
    let (status, body, _) = stack.credentials("deploy", &format!("Bearer {bob}")).await;
    assert_eq!(status, 403, "{body}");
    let event = stack
        .bridge
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(event["reason"], "no_matching_rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401() {
    let mut stack = Stack::start(Setup::default()).await;
    let expired = stack
        .idp
        .token("svc:alice", json!({ "iat": 1_000, "exp": 1_600 }));
    let wrong_audience = stack
        .idp
        .token("svc:alice", json!({ "aud": "https://elsewhere.example" }));
    let good = stack.idp.token("svc:alice", json!({}));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        format!("{}.{}.{}", parts[0], parts[1], &parts[2][4..])
    };
    let other_idp = stsbridge_e2e::TestIdp::start()
        .await
        .token("svc:alice", json!({}));
    let codes = [
        "expired",
        "audience_mismatch",
        "bad_signature",
        "unknown_issuer",
        "malformed_token",
    ];
    let tokens = [
        expired,
        wrong_audience,
        tampered,
        other_idp,
        "not-a-jwt".to_owned(),
    ];
    let mut first = None;
    for (token, code) in tokens.iter().zip(codes) {
        let (status, body, headers) = stack.credentials("api", &format!("Bearer {token}")).await;
        assert_eq!(status, 401, "{code}: {body}");
        assert_eq!(body["error"], "invalid_token");
        assert!(
            body["error_description"].as_str().unwrap().contains(code),
            "{code}: {body}"
        );
        assert_eq!(
            headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        first.get_or_insert(body["decision_id"].as_str().unwrap().to_owned());
    }
    // The first refusal from an address is written in full at once.
    let event = stack.bridge.audit_event(first.as_deref().unwrap()).await;
    assert_eq!(event["reason"], "expired");
    let r = stack
        .http
        .get(stack.bridge.url("/v1/credentials/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no Authorization header");

    // The rest are counted in the address's summary, written at the end of its interval or at
    // shutdown: each refusal is in the trail once, in full or counted.
    stack.bridge.signal("TERM");
    assert!(
        stack
            .bridge
            .wait_exit(Duration::from_secs(10))
            .await
            .is_some()
    );
    let mut recorded: Vec<String> = Vec::new();
    for event in stack.bridge.audit_events() {
        if event["reason"] == "validation_failures_summarized" {
            for (code, n) in event["reasons"].as_object().unwrap() {
                recorded.extend(std::iter::repeat_n(
                    code.clone(),
                    n.as_u64().unwrap() as usize,
                ));
            }
        } else {
            recorded.push(event["reason"].as_str().unwrap().to_owned());
        }
    }
    recorded.sort();
    let mut expected = codes.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(recorded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_targets_and_paths_are_404() {
    let stack = Stack::start(Setup::default()).await;
    let token = stack.idp.token("svc:alice", json!({}));
    let (status, body, _) = stack.credentials("nope", &format!("Bearer {token}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "unknown_target");
    let r = stack
        .http
        .get(stack.bridge.url("/v2/whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tokens_are_refused_where_configured() {
    let stack = Stack::start(Setup {
        trust_extra: "    replay: reject",
        ..Setup::default()
    })
    .await;
    let token = stack.idp.token("svc:alice", json!({}));
    let (first, _, _) = stack.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(first, 200);
    let (second, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(second, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("replayed_jti")
    );
    let no_jti = stack.idp.token("svc:alice", json!({ "jti": null }));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {no_jti}")).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("missing_jti")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_get_429_with_retry_after() {
    let stack = Stack::start(Setup {
        extra: "limits: { per_subject: \"1/m\", burst: 2 }",
        ..Setup::default()
    })
    .await;
    let token = stack.idp.token("svc:alice", json!({}));
    for _ in 0..2 {
        assert_eq!(
            stack.credentials("api", &format!("Bearer {token}")).await.0,
            200
        );
    }
    let (status, body, headers) = stack.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another caller is not affected.
    let bob = stack.idp.token("svc:bob", json!({}));
    assert_eq!(
        stack.credentials("api", &format!("Bearer {bob}")).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_idp_key_is_fetched_and_forced_refreshes_are_rate_limited() {
    let stack = Stack::start(Setup::default()).await;
    let fetches = stack.idp.jwks_fetches();
    stack.idp.rotate();
    let token = stack.idp.token("svc:alice", json!({}));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(status, 200, "an unknown kid triggers a refresh: {body}");
    assert_eq!(stack.idp.jwks_fetches(), fetches + 1);

    // Unknown kids cannot make stsbridge hammer the IdP: forced refreshes are rate limited.
    stack.idp.rotate();
    for _ in 0..5 {
        let t = stack.idp.token("svc:alice", json!({}));
        assert_eq!(
            stack.credentials("api", &format!("Bearer {t}")).await.0,
            401
        );
    }
    assert_eq!(stack.idp.jwks_fetches(), fetches + 1);
    // An IdP outage past the refresh interval, and past max_staleness, is in operations.rs.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_is_refused_once_its_key_is_withdrawn_and_still_decided_each_time() {
    let stack = Stack::start(Setup::default()).await;
    let old = stack.idp.token("svc:alice", json!({}));
    for _ in 0..2 {
        let (status, body, _) = stack.credentials("api", &format!("Bearer {old}")).await;
        assert_eq!(status, 200, "{body}");
    }
    // The same, remembered, token for a target its rules do not allow: decided afresh.
    let (status, body, _) = stack.credentials("deploy", &format!("Bearer {old}")).await;
    assert_eq!(status, 403, "{body}");
    // The IdP withdraws the key; a token with the new key makes stsbridge fetch the new set.
    stack.idp.rotate();
    let new = stack.idp.token("svc:alice", json!({}));
    assert_eq!(
        stack.credentials("api", &format!("Bearer {new}")).await.0,
        200
    );
    let (status, body, _) = stack.credentials("api", &format!("Bearer {old}")).await;
    assert_eq!(
        status, 401,
        "a token whose key is no longer published must be refused: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_over_its_rate_gets_429_whoever_asks() {
    // A second JWT target the same callers may obtain, answered without any upstream.
    let mappings = crate::MAPPINGS.replace(
        "targets:\n",
        "targets:\n  - name: reports\n    jwt: { audience: reports, lifetime: 5m }\n",
    ) + "  - name: services-read-reports\n    issuer: ci\n    subject: { glob: \"svc:*\" }\n    allow: [reports]\n";
    let stack = Stack::start(Setup {
        extra: "limits: { per_target: \"1/m\", target_burst: 2 }",
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    for caller in ["svc:a", "svc:b"] {
        let t = stack.idp.token(caller, json!({}));
        assert_eq!(
            stack.credentials("api", &format!("Bearer {t}")).await.0,
            200
        );
    }
    let t = stack.idp.token("svc:c", json!({}));
    let (status, body, headers) = stack.credentials("api", &format!("Bearer {t}")).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    // The refusal names the target's shared budget, not the caller's own.
    assert_eq!(
        body["error_description"], "too many requests for target api from all callers together",
        "{body}"
    );
    // Another target has its own budget: the same caller gets it.
    let (status, body, _) = stack.credentials("reports", &format!("Bearer {t}")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_callers_need_a_certificate_and_rules_can_require_its_name() {
    use stsbridge_e2e::tls::{client_pki, https_client, localhost_pki, tls_config};
    let server = localhost_pki();
    let clients = client_pki(&["deployer.acme.internal", "other.acme.internal"]);
    let rogue = client_pki(&["deployer.acme.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_config(dir.path(), &server, &clients.ca_pem, "");
    // A high-risk target only a caller holding the deployer certificate may obtain.
    let mappings = crate::MAPPINGS.replace(
        "targets:\n",
        "targets:\n  - name: vault\n    jwt: { audience: vault, lifetime: 5m }\n",
    ) + "  - name: deployer-certificate-for-vault\n    issuer: ci\n    subject: { glob: \"svc:*\" }\n    client_certificate: deployer.acme.internal\n    allow: [vault]\n";
    let stack = Stack::start(Setup {
        extra: &tls,
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let client = |identity: Option<&str>| https_client(&server, identity);
    let token = stack.idp.token("svc:alice", json!({}));
    let get = |c: reqwest::Client, target: &'static str| {
        let url = stack.bridge.url(&format!("/v1/credentials/{target}"));
        let token = token.clone();
        async move { c.get(url).bearer_auth(token).send().await }
    };

    assert!(
        get(client(None), "api").await.is_err(),
        "no client certificate: no TLS session"
    );
    assert!(
        get(client(Some(&rogue.identities[0])), "api")
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );

    let r = get(client(Some(&clients.identities[0])), "vault")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let decision = r.headers()["x-stsbridge-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.bridge.audit_event(&decision).await["caller"]["client_certificate"],
        "deployer.acme.internal"
    );

    let other = client(Some(&clients.identities[1]));
    assert_eq!(
        get(other.clone(), "vault").await.unwrap().status(),
        403,
        "the rule names another certificate"
    );
    assert_eq!(
        get(other, "api").await.unwrap().status(),
        200,
        "targets without the requirement still work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_per_provider_are_capped() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A Google STS stand-in that records how many calls it has in flight at once.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (f, p, c) = (
        Arc::clone(&in_flight),
        Arc::clone(&peak),
        Arc::clone(&calls),
    );
    let app = axum::Router::new().route(
        "/v1/token",
        axum::routing::post(move || {
            let (f, p, c) = (Arc::clone(&f), Arc::clone(&p), Arc::clone(&c));
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                axum::Json(json!({
                    "access_token": "capped-token", "token_type": "Bearer", "expires_in": 3600,
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let google = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A target whose assertion carries the run id: one cloud session per run, so four callers make
    // four upstream calls rather than sharing one.
    let mappings = crate::MAPPINGS.replace(
        "targets:\n",
        "targets:\n  - name: gcp-per-run\n    assertion_subject: \"run-{{ claims.run }}\"\n    gcp: { audience: \"//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge\" }\n",
    ) + "  - { name: per-run, issuer: ci, subject: { glob: \"svc:*\" }, allow: [gcp-per-run] }\n";
    let stack = Stack::start(Setup {
        gcp: Some(&google),
        gcp_max_concurrent: Some(1),
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let tokens: Vec<String> = (0..4)
        .map(|i| stack.idp.token("svc:runner", json!({ "run": i })))
        .collect();
    let answers =
        futures::future::join_all(tokens.iter().map(|t| stack.credentials("gcp-per-run", t))).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "four sessions, four calls");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "never more than max_concurrent calls in flight"
    );
}
