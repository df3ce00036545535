//! Bounded state that fails closed: a full single-use `jti` store refuses new tokens (503) rather
//! than forgetting, a partner over its own limits records nothing, and a flood of invalid tokens
//! from one address is refused before validation and summarized in the audit trail.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use stsbridge_e2e::{BRIDGE_URL, TestIdp};

use crate::cli::run;
use crate::{MAPPINGS, Setup, Stack, write_config};

/// The audit file's events, one JSON object a line.
fn audit_file(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `Retry-After` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
}

/// Stops the bridge with SIGTERM (which flushes the audit sink) and waits for it.
async fn stop(stack: &mut Stack) {
    stack.bridge.signal("TERM");
    let status = stack.bridge.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replay_store_refuses_new_single_use_tokens_and_still_refuses_replays() {
    let stack = Stack::start(Setup {
        trust_extra: "    replay: reject",
        extra: "limits: { replay_store_entries: 2 }",
        ..Setup::default()
    })
    .await;
    let first = format!("Bearer {}", stack.idp.token("svc:alice", json!({})));
    let second = format!("Bearer {}", stack.idp.token("svc:alice", json!({})));
    for auth in [&first, &second] {
        let (status, body, _) = stack.credentials("api", auth).await;
        assert_eq!(status, 200, "{body}");
    }

    // A third distinct jti while both are live: no room, and forgetting one would let it be
    // replayed, so the new token is refused until an entry expires.
    let third = format!("Bearer {}", stack.idp.token("svc:alice", json!({})));
    let (status, body, headers) = stack.credentials("api", &third).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    // The first entry leaves when its token expires (10 minutes, plus 30 s of leeway).
    assert!((1..=700).contains(&retry_after(&headers)), "{headers:?}");
    let event = stack
        .bridge
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(event["reason"], "replay_store_full");
    assert_eq!(event["caller"]["verified"], true);

    // A replay is still a replay while the store is full.
    let (status, body, _) = stack.credentials("api", &first).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .ends_with("(replayed_jti)"),
        "{body}"
    );
    let metrics = stack.get_text("/metrics").await;
    assert!(
        metrics.contains("\nstsbridge_replay_store_full_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_over_its_rate_limit_records_no_jti() {
    // Two single-use issuers share a store of two entries. `ci` may make one exchange an hour.
    let partner = TestIdp::start().await;
    let trust_extra = format!(
        "    replay: reject\n    rate_limit: 1/h\n    burst: 1\n  - {{ name: partner, issuer: \"{}\", audiences: [\"{BRIDGE_URL}\"], jwks: {{ discovery: true }}, allow_insecure_loopback: true, replay: reject }}",
        partner.issuer
    );
    let mappings = format!(
        "{MAPPINGS}  - {{ name: partner-api, issuer: partner, subject: {{ any: true }}, allow: [api] }}\n"
    );
    let stack = Stack::start(Setup {
        trust_extra: &trust_extra,
        mappings: Some(&mappings),
        extra: "limits: { replay_store_entries: 2 }",
        ..Setup::default()
    })
    .await;
    let token = |idp: &TestIdp| format!("Bearer {}", idp.token("svc:alice", json!({})));

    let (status, body, _) = stack.credentials("api", &token(&stack.idp)).await;
    assert_eq!(status, 200, "{body}");
    // Over `ci`'s rate: refused before its jti is recorded, so the same token presented again is
    // refused for the rate again, not as a replay.
    let over = token(&stack.idp);
    for _ in 0..2 {
        let (status, body, _) = stack.credentials("api", &over).await;
        assert_eq!(status, 429, "{body}");
        let event = stack
            .bridge
            .audit_event(body["decision_id"].as_str().unwrap())
            .await;
        assert_eq!(event["reason"], "issuer_rate_limited");
    }
    for _ in 0..5 {
        assert_eq!(stack.credentials("api", &token(&stack.idp)).await.0, 429);
    }

    // The refused tokens took no room: the other partner's first token takes the second entry,
    // and only then is the store full.
    let (status, body, _) = stack.credentials("api", &token(&partner)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = stack.credentials("api", &token(&partner)).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_tokens_is_limited_per_address_and_summarized() {
    let mut stack = Stack::start(Setup {
        extra: "limits: { failed_validations_per_address: \"1/h\", failed_validations_burst: 3 }",
        audit: Some("{ file: audit.jsonl }"),
        ..Setup::default()
    })
    .await;
    let audit = stack.dir.path().join("audit.jsonl");
    let valid = format!("Bearer {}", stack.idp.token("svc:alice", json!({})));
    let bad = {
        let good = stack.idp.token("svc:alice", json!({}));
        format!("Bearer {}x", &good[..good.len() - 1])
    };

    // Valid exchanges never spend the failure budget: more of them than its burst.
    for _ in 0..5 {
        let (status, body, _) = stack.credentials("api", &valid).await;
        assert_eq!(status, 200, "{body}");
    }
    // Three failures spend the burst; the first of them is written in full at once.
    for _ in 0..3 {
        let (status, body, _) = stack.credentials("api", &bad).await;
        assert_eq!(status, 401, "{body}");
    }
    let full: Vec<Value> = audit_file(&audit)
        .into_iter()
        .filter(|e| e["reason"] == "bad_signature")
        .collect();
    assert_eq!(full.len(), 1, "{full:?}");
    assert_eq!(full[0]["caller"]["verified"], false);

    // Over budget: refused before validation, whatever the token, until the budget refills.
    for auth in [&bad, &valid] {
        let (status, body, headers) = stack.credentials("api", auth).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "rate_limited");
        assert!((1..=3600).contains(&retry_after(&headers)), "{headers:?}");
    }

    // Shutting down writes the summary of the interval.
    stop(&mut stack).await;
    let events = audit_file(&audit);
    let requests = 5 + 3 + 2;
    assert!(events.len() < requests, "{events:#?}");
    let granted: Vec<&Value> = events.iter().filter(|e| e["reason"] == "granted").collect();
    assert_eq!(granted.len(), 5, "each valid exchange has its own event");
    let mut ids: Vec<&str> = granted
        .iter()
        .map(|e| e["decision_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    let summaries: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "validation_failures_summarized")
        .collect();
    assert_eq!(summaries.len(), 1, "{events:#?}");
    let summary = summaries[0];
    assert_eq!(summary["caller"]["client_addr"], "127.0.0.1");
    assert_eq!(
        summary["reasons"],
        json!({ "bad_signature": 2, "too_many_failed_validations": 2 })
    );
    assert_eq!(summary["first_decision_id"], full[0]["decision_id"]);
    let refused_in_full = events
        .iter()
        .filter(|e| e["reason"] != "granted" && e["reason"] != "validation_failures_summarized")
        .count();
    assert_eq!(refused_in_full, 1, "{events:#?}");
    assert_eq!(
        refused_in_full as u64 + summary["count"].as_u64().unwrap(),
        5,
        "every refused request is counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_the_state_and_failure_limits() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let setup = |extra| Setup {
        extra,
        ..Setup::default()
    };
    write_config(
        dir.path(),
        &idp,
        &setup("limits: { replay_store_entries: 10, failed_validations_per_address: off }"),
    );
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 0, "{err}");
    write_config(
        dir.path(),
        &idp,
        &setup("limits: { replay_store_entries: 0, failed_validations_per_address: \"ten/s\" }"),
    );
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("stsbridge.yaml: limits.replay_store_entries: 0 is not between 1 and"),
        "{err}"
    );
    assert!(
        err.contains(
            "stsbridge.yaml: limits.failed_validations_per_address: \"ten/s\" is not a rate"
        ),
        "{err}"
    );
}
