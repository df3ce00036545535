//! Bounded state that fails closed: a full single-use `jti` store refuses new tokens (503) rather
//! than forgetting.

use serde_json::json;

use crate::{Setup, Stack};

/// `Retry-After` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
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
    let metrics = stack
        .http
        .get(stack.bridge.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nstsbridge_replay_store_full_total 1\n"),
        "{metrics}"
    );
}
