//! Revocation and introspection: a compromised token, caller, issuer or target is refused from
//! the moment it is revoked, on every replica, across restarts, until the revocation expires;
//! only callers a rule allows `stsbridge:revoke` / `stsbridge:introspect` may use them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stsbridge_e2e::redis::Redis;
use stsbridge_e2e::{BRIDGE_URL, BridgeProcess, TestIdp};

use crate::{BIN, GRANT, JWT, Setup, Stack};

/// Two JWT targets for services, the built-in targets for one operator, and minted tokens
/// accepted back for `other`.
const MAPPINGS: &str = r#"
version: 1
targets:
  - name: api
    jwt: { audience: billing-api, scopes: [billing:read], lifetime: 5m }
  - name: other
    jwt: { audience: other-api, lifetime: 5m }
  - name: opaque
    jwt: { audience: opaque-api, lifetime: 5m, format: reference }
  - name: brief
    jwt: { audience: brief-api, lifetime: 30s }
  - name: brief-opaque
    jwt: { audience: brief-opaque-api, lifetime: 30s, format: reference }
rules:
  - name: services
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [api, other, opaque, brief, brief-opaque]
  - name: operators
    issuer: ci
    subject: "ops:admin"
    allow: [stsbridge:revoke, stsbridge:introspect]
  - name: minted-back
    issuer: stsbridge
    subject: { glob: "*" }
    allow: [other]
"#;

async fn stack() -> Stack {
    Stack::start(Setup {
        mappings: Some(MAPPINGS),
        extra: "revocations: { file: revocations.json, max_for: 7d }",
        ..Setup::default()
    })
    .await
}

/// A JSON call with `token` as bearer: status and body.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

impl Stack {
    fn ops(&self) -> String {
        self.idp.token("ops:admin", json!({}))
    }

    async fn revoke(&self, body: Value) -> (u16, Value) {
        call(
            &self.http,
            reqwest::Method::POST,
            self.bridge.url("/v1/revocations"),
            &self.ops(),
            Some(body),
        )
        .await
    }

    async fn unrevoke(&self, id: &str) -> u16 {
        call(
            &self.http,
            reqwest::Method::DELETE,
            self.bridge.url(&format!("/v1/revocations/{id}")),
            &self.ops(),
            None,
        )
        .await
        .0
    }

    async fn revocation_count(&self) -> usize {
        let (status, body) = call(
            &self.http,
            reqwest::Method::GET,
            self.bridge.url("/v1/revocations"),
            &self.ops(),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["revocations"].as_array().unwrap().len()
    }

    async fn api(&self, token: &str) -> (u16, Value) {
        let (status, body, _) = self.credentials("api", &format!("Bearer {token}")).await;
        (status, body)
    }

    async fn other(&self, token: &str) -> (u16, Value) {
        let (status, body, _) = self.credentials("other", &format!("Bearer {token}")).await;
        (status, body)
    }

    async fn introspect(&self, caller: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.bridge.url("/oauth2/introspect"))
            .bearer_auth(caller)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// An RFC 8693 exchange of a fresh `sub` token of `idp` for `target`, on `url`: the answer.
async fn mint_on(
    http: &reqwest::Client,
    url: String,
    idp: &TestIdp,
    sub: &str,
    target: &str,
) -> Value {
    let subject = idp.token(sub, json!({}));
    let r = http
        .post(url)
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", subject.as_str()),
            ("subject_token_type", JWT),
            ("audience", target),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn assert_revoked(answer: &(u16, Value), id: &str) {
    assert_eq!(answer.0, 403, "{}", answer.1);
    assert_eq!(answer.1["error"], "access_denied", "{}", answer.1);
    let description = answer.1["error_description"].as_str().unwrap();
    assert!(description.contains(id), "{description}");
}

#[tokio::test]
async fn each_kind_refuses_what_it_names_and_spares_the_rest() {
    let stack = stack().await;
    let alice = stack.idp.token("svc:alice", json!({}));
    let bob = stack.idp.token("svc:bob", json!({}));
    let alice_jti = crate::jwt_claims(&alice)["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let digest = stsbridge::digest::hex(&stsbridge::digest::sha256(alice.as_bytes()));
    // kind, issuer, value, whether bob (same issuer, same target) is refused too.
    // The issuer's comes last: it covers the operator too (same issuer), so it is not removed
    // but left to expire.
    let kinds = [
        ("subject", Some("ci"), "svc:alice".to_owned(), false),
        ("jti", Some("ci"), alice_jti, false),
        ("token", None, digest, false),
        ("target", None, "api".to_owned(), true),
        ("issuer", None, "ci".to_owned(), true),
    ];
    for (kind, issuer, value, bob_too) in kinds {
        // Granted (and cached) before.
        assert_eq!(stack.api(&alice).await.0, 200, "{kind}: before");
        let mut body = json!({ "kind": kind, "value": value, "reason": "compromised in a test" });
        if let Some(i) = issuer {
            body["issuer"] = json!(i);
        }
        if kind == "issuer" {
            body["for"] = json!("2s");
        }
        let made = Instant::now();
        let (status, created) = stack.revoke(body).await;
        assert_eq!(status, 201, "{kind}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("rev_"), "{created}");
        assert_eq!(created["kind"], kind);
        assert_eq!(created["by"], "ci:ops:admin");
        let refused = stack.api(&alice).await;
        assert_revoked(&refused, &id);
        // The audit event names the revocation.
        let event = stack
            .bridge
            .audit_event(refused.1["decision_id"].as_str().unwrap())
            .await;
        assert_eq!(event["reason"], "revoked", "{event}");
        assert_eq!(event["revocation"], id.as_str(), "{event}");
        let spared = stack.api(&bob).await;
        if bob_too {
            assert_revoked(&spared, &id);
        } else {
            assert_eq!(
                spared.0, 200,
                "{kind}: an unrelated caller is not affected: {}",
                spared.1
            );
        }
        // The other target is unaffected by a target revocation, and the revoked one's cached
        // credential (alice's, from before) is dropped.
        if kind == "target" {
            let deadline = Instant::now() + Duration::from_secs(5);
            // alice's and bob's (both granted before): the count is whatever was cached.
            while !stack
                .bridge
                .stderr()
                .contains("cached credentials of a revoked target dropped target=api dropped=")
            {
                assert!(Instant::now() < deadline, "{}", stack.bridge.stderr());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (status, body, _) = stack.credentials("other", &format!("Bearer {alice}")).await;
            assert_eq!(status, 200, "{body}");
        }
        if kind == "issuer" {
            // The operator's own token is refused now: revoking an issuer locks out its callers,
            // the revocation API included.
            assert_eq!(stack.unrevoke(&id).await, 403);
            tokio::time::sleep(
                (made + Duration::from_millis(2_300)).saturating_duration_since(Instant::now()),
            )
            .await;
        } else {
            assert_eq!(stack.unrevoke(&id).await, 200, "{kind}");
        }
        assert_eq!(
            stack.api(&alice).await.0,
            200,
            "{kind}: after removal or expiry"
        );
    }
    // Metrics and audit events of the revocations themselves.
    let metrics = stack.get_text("/metrics").await;
    for kind in ["subject", "jti", "token", "issuer", "target"] {
        let line = format!("stsbridge_revoked_denials_total{{kind=\"{kind}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{kind}: {count}");
    }
    let events = stack.bridge.audit_events();
    let created = events
        .iter()
        .filter(|e| e["event"] == "revocation_created")
        .count();
    let removed = events
        .iter()
        .filter(|e| e["event"] == "revocation_removed")
        .count();
    assert_eq!((created, removed), (5, 4));
    assert!(events.iter().any(|e| e["event"] == "revocation_created"
        && e["caller"]["subject"] == "ops:admin"
        && e["revocation"]["reason"] == "compromised in a test"));
}

#[tokio::test]
async fn a_minted_token_is_refused_when_its_jti_or_its_subject_is_revoked() {
    let stack = stack().await;
    let alice = stack.idp.token("svc:alice", json!({}));
    let (status, minted) = stack
        .token_exchange(&[
            ("grant_type", GRANT),
            ("subject_token", &alice),
            ("subject_token_type", JWT),
            ("audience", "api"),
        ])
        .await;
    assert_eq!(status, 200, "{minted}");
    let minted = minted["access_token"].as_str().unwrap().to_owned();
    let ops = stack.ops();
    let (status, active) = stack.introspect(&ops, &minted).await;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["aud"], "billing-api");
    assert_eq!(active["scope"], "billing:read");
    assert_eq!(active["token_type"], "Bearer");
    let jti = active["jti"].as_str().unwrap().to_owned();
    let sub = active["sub"].as_str().unwrap().to_owned();
    // Presented back (rule minted-back), it is accepted until revoked.
    assert_eq!(stack.other(&minted).await.0, 200);
    for (kind, issuer, value) in [
        ("minted", None, jti.as_str()),
        ("subject", Some("stsbridge"), sub.as_str()),
    ] {
        let mut body = json!({ "kind": kind, "value": value, "reason": "minted token leaked" });
        if let Some(i) = issuer {
            body["issuer"] = json!(i);
        }
        let (status, created) = stack.revoke(body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap();
        assert_revoked(&stack.other(&minted).await, id);
        let (status, inactive) = stack.introspect(&ops, &minted).await;
        assert_eq!((status, inactive), (200, json!({ "active": false })));
        assert_eq!(stack.unrevoke(id).await, 200);
        assert_eq!(stack.introspect(&ops, &minted).await.1["active"], true);
    }
}

#[tokio::test]
async fn introspection_says_inactive_for_anything_not_a_live_minted_token() {
    let stack = stack().await;
    let ops = stack.ops();
    let other_idp = TestIdp::start().await;
    let partner_token = stack.idp.token("svc:alice", json!({}));
    let cases = [
        ("garbage", "not-a-token".to_owned()),
        (
            "a token of a trusted issuer, not minted here",
            partner_token,
        ),
        (
            "a token signed by another key under stsbridge's name",
            other_idp.sign(&json!({
                "iss": BRIDGE_URL, "sub": "x", "aud": "billing-api", "iat": stsbridge_e2e::idp::unix_now(),
                "exp": stsbridge_e2e::idp::unix_now() + 300, "jti": "forged",
            })),
        ),
        ("empty", String::new()),
    ];
    for (name, token) in cases {
        let (status, body) = stack.introspect(&ops, &token).await;
        assert_eq!((status, body), (200, json!({ "active": false })), "{name}");
    }
    // A caller not allowed stsbridge:introspect gets an error, never claims.
    let minted = {
        let (_, b) = stack
            .token_exchange(&[
                ("grant_type", GRANT),
                ("subject_token", &stack.idp.token("svc:alice", json!({}))),
                ("subject_token_type", JWT),
                ("audience", "api"),
            ])
            .await;
        b["access_token"].as_str().unwrap().to_owned()
    };
    let (status, body) = stack
        .introspect(&stack.idp.token("svc:bob", json!({})), &minted)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.get("active").is_none() && body.get("sub").is_none(),
        "{body}"
    );
    let r = stack
        .http
        .post(stack.bridge.url("/oauth2/introspect"))
        .form(&[("token", minted.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let metrics = stack.get_text("/metrics").await;
    assert!(
        metrics.contains("stsbridge_introspections_total{active=\"false\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn only_a_caller_allowed_stsbridge_revoke_may_create_list_or_delete() {
    let stack = stack().await;
    let (status, created) = stack
        .revoke(json!({ "kind": "subject", "issuer": "ci", "value": "svc:alice", "reason": "r" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let bob = stack.idp.token("svc:bob", json!({}));
    for (method, path, request) in [
        (
            reqwest::Method::POST,
            "/v1/revocations".to_owned(),
            Some(json!({ "kind": "issuer", "value": "ci", "reason": "r" })),
        ),
        (reqwest::Method::GET, "/v1/revocations".to_owned(), None),
        (
            reqwest::Method::DELETE,
            format!("/v1/revocations/{id}"),
            None,
        ),
    ] {
        let (status, body) = call(
            &stack.http,
            method.clone(),
            stack.bridge.url(&path),
            &bob,
            request.clone(),
        )
        .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"], "access_denied");
        let (status, _) = call(
            &stack.http,
            method.clone(),
            stack.bridge.url(&path),
            "",
            request,
        )
        .await;
        assert_eq!(status, 401, "{method} {path} without a token");
    }
    assert_eq!(
        stack.revocation_count().await,
        1,
        "nothing created or removed"
    );
    // Bad input: 400 naming the field, nothing stored.
    for (body, field) in [
        (
            json!({ "kind": "all", "value": "x", "reason": "r" }),
            "kind",
        ),
        (
            json!({ "kind": "subject", "issuer": "nobody", "value": "x", "reason": "r" }),
            "issuer",
        ),
        (
            json!({ "kind": "target", "value": "no-such-target", "reason": "r" }),
            "value",
        ),
        (
            json!({ "kind": "issuer", "value": "ci", "for": "8d", "reason": "r" }),
            "for",
        ),
        (
            json!({ "kind": "issuer", "value": "ci", "reason": "r", "extra": 1 }),
            "body",
        ),
        (
            json!({ "kind": "issuer", "value": "ci", "reason": "x".repeat(20_000) }),
            "body",
        ),
    ] {
        let (status, answer) = stack.revoke(body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_request");
        let description = answer["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("{field}:")),
            "{description}"
        );
    }
    assert_eq!(stack.revocation_count().await, 1, "nothing stored");
    assert_eq!(stack.unrevoke("rev_unknown").await, 404);
}

#[tokio::test]
async fn a_revocation_survives_a_restart_and_stops_applying_when_it_expires() {
    let mut stack = stack().await;
    let alice = stack.idp.token("svc:alice", json!({}));
    let (status, created) = stack
        .revoke(json!({ "kind": "subject", "issuer": "ci", "value": "svc:alice", "for": "3s", "reason": "r" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let created_at = Instant::now();
    stack.bridge.stop().await;
    stack.bridge = BridgeProcess::spawn(
        BIN,
        stack.dir.path(),
        &["serve", "--config", "stsbridge.yaml"],
        &[],
    )
    .await;
    assert_revoked(&stack.api(&alice).await, &id);
    let ready = stack.get_json("/readyz").await;
    assert_eq!(ready["revocations"]["backend"], "file", "{ready}");
    // Past its `for`, it no longer applies.
    tokio::time::sleep(
        (created_at + Duration::from_millis(3_300)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_eq!(stack.api(&alice).await.0, 200);
    assert_eq!(stack.revocation_count().await, 0);
}

/// The sum and count of `stsbridge_revocation_apply_seconds` in `metrics`.
fn apply_seconds(metrics: &str) -> (f64, u64) {
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    (
        value("stsbridge_revocation_apply_seconds_sum ")
            .parse()
            .unwrap_or(0.0),
        value("stsbridge_revocation_apply_seconds_count ")
            .parse()
            .unwrap_or(0),
    )
}

#[tokio::test]
async fn three_replicas_on_one_redis_apply_a_revocation_within_a_second() {
    let redis = Redis::start();
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    crate::write_config(
        dir.path(),
        &idp,
        &Setup {
            mappings: Some(MAPPINGS),
            extra: &format!("shared_state: {{ redis: {{ url: \"{}\" }} }}", redis.url()),
            ..Setup::default()
        },
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            BridgeProcess::spawn(
                BIN,
                dir.path(),
                &["serve", "--config", "stsbridge.yaml"],
                &[],
            )
            .await,
        );
    }
    let http = reqwest::Client::new();
    let alice = idp.token("svc:alice", json!({}));
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| r.url("/v1/credentials/api"))
        .collect();
    let ask = |i: usize| {
        let (http, url, alice) = (http.clone(), urls[i].clone(), alice.clone());
        async move {
            let r = http.get(url).bearer_auth(alice).send().await.unwrap();
            r.status().as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(ask(i).await, 200, "replica {i} before");
    }
    // Steady traffic on the other two while the revocation is made on the first.
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        replicas[0].url("/v1/revocations"),
        &idp.token("ops:admin", json!({})),
        Some(json!({ "kind": "subject", "issuer": "ci", "value": "svc:alice", "reason": "r" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let made = Instant::now();
    let mut seen = [None, None, None];
    while seen.iter().any(Option::is_none) {
        for (i, slot) in seen.iter_mut().enumerate() {
            if slot.is_none() && ask(i).await == 403 {
                *slot = Some(made.elapsed());
            }
        }
        assert!(
            made.elapsed() < Duration::from_secs(10),
            "not applied everywhere: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut largest: f64 = 0.0;
    for (i, replica) in replicas.iter().enumerate() {
        let metrics = http
            .get(replica.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (sum, count) = apply_seconds(&metrics);
        assert_eq!(count, 1, "replica {i} applied it once: {metrics}");
        largest = largest.max(sum);
        assert!(
            metrics.contains("stsbridge_revocations_active 1"),
            "replica {i}"
        );
    }
    println!(
        "revocation applied: largest stsbridge_revocation_apply_seconds {largest:.4} s; denial seen by the test after {:?}",
        seen
    );
    // A reference token minted on one replica is read on another (its claims live in Redis).
    let minted = mint_on(
        &http,
        replicas[0].url("/oauth2/token"),
        &idp,
        "svc:bob",
        "opaque",
    )
    .await;
    let reference = minted["access_token"].as_str().unwrap();
    let r = http
        .post(replicas[1].url("/oauth2/introspect"))
        .bearer_auth(idp.token("ops:admin", json!({})))
        .form(&[("token", reference)])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], "ci:svc:bob");
    // A replica restarted later still refuses.
    replicas[2].stop().await;
    replicas[2] = BridgeProcess::spawn(
        BIN,
        dir.path(),
        &["serve", "--config", "stsbridge.yaml"],
        &[],
    )
    .await;
    let r = http
        .get(replicas[2].url("/v1/credentials/api"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn a_reference_token_is_opaque_read_by_introspection_and_revocable() {
    let stack = stack().await;
    let ops = stack.ops();
    let answer = mint_on(
        &stack.http,
        stack.bridge.url("/oauth2/token"),
        &stack.idp,
        "svc:alice",
        "opaque",
    )
    .await;
    let reference = answer["access_token"].as_str().unwrap().to_owned();
    assert!(
        reference.starts_with("sbr_") && reference.len() == 4 + 43,
        "{answer}"
    );
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let (status, active) = stack.introspect(&ops, &reference).await;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["aud"], "opaque-api");
    assert_eq!(active["sub"], "ci:svc:alice");
    assert_eq!(active["iss"], BRIDGE_URL);
    let jti = active["jti"].as_str().unwrap().to_owned();
    // Anything else that looks like one is unknown.
    let forged = format!("sbr_{}", "A".repeat(43));
    assert_eq!(
        stack.introspect(&ops, &forged).await.1,
        json!({ "active": false })
    );
    // Revoked by its hash (what `stsbridge revoke --presented-token-file` sends) or by its jti:
    // effective at the next introspection.
    let digest = stsbridge::digest::hex(&stsbridge::digest::sha256(reference.as_bytes()));
    for (kind, value) in [("token", digest.as_str()), ("minted", jti.as_str())] {
        let (status, created) = stack
            .revoke(json!({ "kind": kind, "value": value, "reason": "reference leaked" }))
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(
            stack.introspect(&ops, &reference).await.1,
            json!({ "active": false }),
            "{kind}"
        );
        assert_eq!(stack.unrevoke(created["id"].as_str().unwrap()).await, 200);
        assert_eq!(
            stack.introspect(&ops, &reference).await.1["active"],
            true,
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compromised_ci_token_walkthrough_runs_as_written() {
    // 0. Dev mode, in a copy of the repository's mappings.
    let dir = tempfile::tempdir().unwrap();
    crate::copy_dir(
        &crate::repo().join("mappings"),
        &dir.path().join("mappings"),
    );
    let service =
        BridgeProcess::spawn(BIN, dir.path(), &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    let http = reqwest::Client::new();
    let dev_token = |sub: &'static str| {
        let (http, url) = (http.clone(), service.url("/dev/token"));
        async move {
            let r = http.post(url).form(&[("sub", sub)]).send().await.unwrap();
            r.text().await.unwrap().trim().to_owned()
        }
    };
    let hello = |token: String| {
        let (http, url) = (http.clone(), service.url("/v1/credentials/hello-api"));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // 1. The CI job's token works.
    let ci = dev_token("dev:ci-runner").await;
    std::fs::write(dir.path().join("ci.token"), &ci).unwrap();
    assert_eq!(hello(ci.clone()).await.0, 200);
    // 2. Revoke exactly that token, by its hash, as the dev operator.
    std::fs::write(
        dir.path().join("operator.token"),
        dev_token("dev:operator").await,
    )
    .unwrap();
    let (code, out, err) = crate::cli::run(
        dir.path(),
        &[
            "revoke",
            "--bridge",
            &service.base,
            "--token-file",
            "operator.token",
            "--presented-token-file",
            "ci.token",
            "--for",
            "24h",
            "--reason",
            "CI token printed in build 4711's log",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["kind"], "token");
    assert_eq!(created["by"], "dev:dev:operator");
    let digest = stsbridge::digest::hex(&stsbridge::digest::sha256(ci.as_bytes()));
    assert_eq!(created["value"], digest.as_str(), "only the hash was sent");
    assert!(!out.contains(&ci) && !err.contains(&ci));
    assert!(err.contains("runbook"), "{err}");
    let id = created["id"].as_str().unwrap().to_owned();
    // 3. The denials: in the answer, the audit log, /metrics.
    let (status, body) = hello(ci.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains(&id));
    let event = service
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(
        (event["reason"].as_str(), event["revocation"].as_str()),
        (Some("revoked"), Some(id.as_str()))
    );
    assert!(
        service
            .audit_events()
            .iter()
            .any(|e| e["event"] == "revocation_created"
                && e["revocation"]["reason"] == "CI token printed in build 4711's log")
    );
    let metrics = http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stsbridge_revoked_denials_total{kind=\"token\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stsbridge_revocations_active 1"),
        "{metrics}"
    );
    // 4. Rotate: a fresh token of the same runner is not covered.
    assert_eq!(hello(dev_token("dev:ci-runner").await).await.0, 200);
    // 5. List, and delete.
    let args = [
        "--bridge",
        service.base.as_str(),
        "--token-file",
        "operator.token",
    ];
    let (code, out, err) = crate::cli::run(dir.path(), &[&["revoke", "list"][..], &args].concat());
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["revocations"][0]["id"], id.as_str());
    let (code, _, err) = crate::cli::run(
        dir.path(),
        &[&["revoke", "delete", &id][..], &args].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(hello(ci).await.0, 200);
    // A caller without stsbridge:revoke is refused by the CLI's call (exit 1, the service's error).
    std::fs::write(
        dir.path().join("ci.token"),
        dev_token("dev:ci-runner").await,
    )
    .unwrap();
    let (code, _, err) = crate::cli::run(
        dir.path(),
        &[
            "revoke",
            "list",
            "--bridge",
            &service.base,
            "--token-file",
            "ci.token",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403 access_denied"), "{err}");
    // Bad arguments: exit 64 before any call.
    let (code, _, err) = crate::cli::run(
        dir.path(),
        &[
            "revoke",
            "--bridge",
            &service.base,
            "--token-file",
            "operator.token",
            "--subject",
            "no-colon",
            "--reason",
            "r",
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("TRUST:VALUE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_aws_target_prints_the_policy_that_ends_older_sessions() {
    let stack = Stack::start(Setup {
        mappings: Some(&format!(
            "{MAPPINGS}  - name: operators-revoke\n    issuer: ci\n    subject: \"ops:admin\"\n    allow: [stsbridge:revoke]\n"
        ).replace("targets:\n", "targets:\n  - name: deploy\n    aws:\n      role_arn: arn:aws:iam::111111111111:role/deploy\n      chain:\n        - role_arn: arn:aws:iam::222222222222:role/deployer\n")),
        ..Setup::default()
    })
    .await;
    std::fs::write(stack.dir.path().join("ops.token"), stack.ops()).unwrap();
    let (code, out, err) = crate::cli::run(
        stack.dir.path(),
        &[
            "revoke",
            "--bridge",
            &stack.bridge.base,
            "--token-file",
            "ops.token",
            "--target",
            "deploy",
            "--reason",
            "role misused",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        created["aws"]["roles"],
        json!([
            "arn:aws:iam::111111111111:role/deploy",
            "arn:aws:iam::222222222222:role/deployer"
        ])
    );
    let statement = &created["aws"]["policy"]["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"], created["created"],
        "sessions issued before the revocation"
    );
    assert!(
        err.contains("arn:aws:iam::222222222222:role/deployer")
            && err.contains("aws:TokenIssueTime"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_caller_gets_nothing_through_the_service_or_an_agent() {
    let sts = wiremock::MockServer::start().await;
    let expiration =
        stsbridge::audit::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(
            stsbridge_e2e::sts::web_identity_success(
                "arn:aws:sts::111111111111:assumed-role/deploy/gh-42",
                "ASIAREVOKED000000001",
                "revocation-secret-000000000000000000000",
                "revocation-session-0000000000000000000000000",
                &expiration,
            ),
        ))
        .mount(&sts)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&sts.uri()),
        mappings: Some(&format!(
            "{}  - name: operators-revoke\n    issuer: ci\n    subject: \"ops:admin\"\n    allow: [stsbridge:revoke]\n",
            crate::MAPPINGS
        )),
        ..Setup::default()
    })
    .await;
    let main = stack.main_token();
    // Granted, and cached, before the revocation.
    let (status, body, _) = stack.credentials("deploy", &format!("Bearer {main}")).await;
    assert_eq!(status, 200, "{body}");
    let (status, created) = stack
        .revoke(json!({ "kind": "subject", "issuer": "ci", "value": "repo:acme/app:ref:refs/heads/main", "reason": "runner compromised" }))
        .await;
    assert_eq!(status, 201, "{created}");
    // The service refuses it, cached credential or not.
    let (status, body, _) = stack.credentials("deploy", &format!("Bearer {main}")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        sts.received_requests().await.unwrap().len(),
        1,
        "no new upstream call either"
    );
    // An agent holding that token gets nothing to hand its SDK.
    let token_file = stack.dir.path().join("workload-token");
    std::fs::write(&token_file, &main).unwrap();
    let state = stack.dir.path().join("agent-state");
    let agent = BridgeProcess::spawn(
        BIN,
        stack.dir.path(),
        &[
            "agent",
            "--bridge",
            &stack.bridge.base,
            "--token-file",
            token_file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--aws-target",
            "deploy",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let secret = std::fs::read_to_string(state.join("aws-container-authorization-token")).unwrap();
    let r = stack
        .http
        .get(agent.url("/aws/credentials"))
        .header("Authorization", secret.trim())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_ne!(status, 200, "{text}");
    assert!(!text.contains("ASIAREVOKED"), "{text}");
    assert!(
        text.contains("revoked") || agent.stderr().contains("revoked"),
        "{text}\n{}",
        agent.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_and_a_reference_token_are_inactive_once_expired() {
    let stack = stack().await;
    let ops = stack.ops();
    let url = stack.bridge.url("/oauth2/token");
    let jwt = mint_on(&stack.http, url.clone(), &stack.idp, "svc:alice", "brief").await;
    let reference = mint_on(&stack.http, url, &stack.idp, "svc:alice", "brief-opaque").await;
    let minted = Instant::now();
    let tokens = [
        jwt["access_token"].as_str().unwrap(),
        reference["access_token"].as_str().unwrap(),
    ];
    for t in tokens {
        assert_eq!(stack.introspect(&ops, t).await.1["active"], true);
    }
    // 30 s lifetime, and exp is whole seconds: a second more and both are past it.
    tokio::time::sleep(
        (minted + Duration::from_secs(32)).saturating_duration_since(Instant::now()),
    )
    .await;
    for t in tokens {
        assert_eq!(
            stack.introspect(&ops, t).await.1,
            json!({ "active": false })
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_operator_token_calls_the_revocation_api_once() {
    let stack = Stack::start(Setup {
        mappings: Some(MAPPINGS),
        trust_extra: "    replay: reject",
        ..Setup::default()
    })
    .await;
    let ops = stack.ops();
    let list = || {
        call(
            &stack.http,
            reqwest::Method::GET,
            stack.bridge.url("/v1/revocations"),
            &ops,
            None,
        )
    };
    assert_eq!(list().await.0, 200);
    let (status, body) = list().await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .ends_with("(replayed_jti)"),
        "{body}"
    );
}
