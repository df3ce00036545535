//! AWS through a stand-in speaking STS's documented wire format: what stsbridge sends, how it maps
//! each STS error, coalescing of concurrent misses (however many callers map to one session), and
//! misses for different sessions that never wait for each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stsbridge_e2e::sts::{self, HeldSts};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Setup, Stack, verify_with_bridge_jwks};

fn form(body: &[u8]) -> HashMap<String, String> {
    url_decode_pairs(std::str::from_utf8(body).unwrap())
}

fn url_decode_pairs(s: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{s}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn success(n: usize) -> ResponseTemplate {
    let expiration =
        stsbridge::audit::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/xml")
        .set_body_string(sts::web_identity_success(
            "arn:aws:sts::111111111111:assumed-role/deploy/gh-42",
            &format!("ASIASTANDIN{n:09}"),
            &format!("stand-in-secret-access-key-{n:020}"),
            &format!("stand-in-session-token-{n:040}"),
            &expiration,
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_make_one_upstream_call() {
    let stand_in = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("Action=AssumeRoleWithWebIdentity"))
        .respond_with(success(1).set_delay(Duration::from_millis(500)))
        .expect(1)
        .mount(&stand_in)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();

    let requests = (0..40).map(|_| stack.credentials("deploy", &token));
    let answers = futures::future::join_all(requests).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["AccessKeyId"], "ASIASTANDIN000000001");
    }
    let received = stand_in.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "one upstream call for forty callers");

    let events = stack.bridge.audit_events_at_least(40).await;
    let count = |e: &str| events.iter().filter(|v| v["cache"] == e).count();
    assert_eq!((count("miss"), count("coalesced")), (1, 39), "{events:?}");

    // What went on the wire: the documented AssumeRoleWithWebIdentity parameters, and an assertion
    // minted by stsbridge that verifies against its JWKS and carries the session tags.
    let sent = form(&received[0].body);
    assert_eq!(sent["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(sent["Version"], "2011-06-15");
    assert_eq!(sent["RoleArn"], "arn:aws:iam::111111111111:role/deploy");
    assert_eq!(sent["RoleSessionName"], "gh-42");
    assert_eq!(sent["DurationSeconds"], "3600");
    assert!(
        received[0].headers.get("authorization").is_none(),
        "AssumeRoleWithWebIdentity is unsigned"
    );
    let claims =
        verify_with_bridge_jwks(&stack, &sent["WebIdentityToken"], "sts.amazonaws.com").await;
    assert_eq!(claims["sub"], "target:deploy");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(
        claims["https://aws.amazon.com/tags"],
        json!({ "principal_tags": { "repository": ["acme/app"] }, "transitive_tag_keys": ["repository"] })
    );
    assert_eq!(claims["https://aws.amazon.com/source_identity"], "octocat");
    assert_ne!(
        sent["WebIdentityToken"], token,
        "the caller's own token never goes to AWS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sts_error_becomes_a_clear_502() {
    let stand_in = MockServer::start().await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();
    // (code, HTTP status STS uses, words of the hint, attempts: the SDK's standard retry strategy
    // treats IDPCommunicationError as transient and retries it within its budget.)
    let cases = [
        ("InvalidIdentityToken", 400, "IAM OIDC provider", 1),
        ("IDPRejectedClaim", 403, "trust policy", 1),
        ("IDPCommunicationError", 400, "publicly reachable", 3),
        ("ExpiredTokenException", 400, "clock", 1),
        ("MalformedPolicyDocument", 400, "session_policy_file", 1),
        ("PackedPolicyTooLarge", 400, "packed size", 1),
        ("AccessDenied", 403, "sts:AssumeRoleWithWebIdentity", 1),
    ];
    for (code, http, hint, attempts) in cases {
        stand_in.reset().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(http)
                    .insert_header("content-type", "text/xml")
                    .set_body_string(sts::error(code, "upstream says no")),
            )
            .mount(&stand_in)
            .await;
        let (status, body, _) = stack.credentials("deploy", &token).await;
        assert_eq!(status, 502, "{code}: {body}");
        assert_eq!(body["error"], "upstream_rejected", "{code}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(code), "{code}: {description}");
        assert!(description.contains(hint), "{code}: {description}");
        let event = stack
            .bridge
            .audit_event(body["decision_id"].as_str().unwrap())
            .await;
        assert_eq!(event["outcome"], "error");
        assert_eq!(event["reason"], code);
        assert_eq!(
            stand_in.received_requests().await.unwrap().len(),
            attempts,
            "{code}"
        );
    }
    // The cloud's own message is for the operator's log, keyed by decision id.
    assert!(stack.bridge.stderr().contains("upstream says no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_reported_as_503_with_retry_after() {
    let stand_in = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "text/xml")
                .set_body_string(sts::error("Throttling", "Rate exceeded")),
        )
        .mount(&stand_in)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        ..Setup::default()
    })
    .await;
    let (status, body, headers) = stack.credentials("deploy", &stack.main_token()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        stand_in.received_requests().await.unwrap().len(),
        3,
        "retried within a bounded budget"
    );

    // Throttling that clears within the budget is invisible to the caller.
    stand_in.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(sts::error("Throttling", "Rate exceeded")),
        )
        .up_to_n_times(1)
        .mount(&stand_in)
        .await;
    Mock::given(method("POST"))
        .respond_with(success(2))
        .mount(&stand_in)
        .await;
    let (status, body, _) = stack.credentials("deploy", &stack.main_token()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sts_is_503() {
    let stack = Stack::start(Setup {
        sts: Some("http://127.0.0.1:9"),
        ..Setup::default()
    })
    .await;
    let (status, body, _) = stack.credentials("deploy", &stack.main_token()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(body["decision_id"].is_string());
    let _: Value = body;
}

/// Two targets whose provider requests are the same whoever asks (a fixed session name, no tag
/// or source identity from the token), both open to every `svc:*` of `ci`.
const SHARED_SESSIONS: &str = r#"
version: 1
targets:
  - name: shared
    aws: { role_arn: "arn:aws:iam::111111111111:role/shared", session_name: shared-builds }
  - name: other
    aws: { role_arn: "arn:aws:iam::111111111111:role/other", session_name: other-builds }
rules:
  - name: services
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [shared, other]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_callers_that_map_to_one_session_make_one_upstream_call() {
    let stand_in = MockServer::start().await;
    // Held long enough that the callers overlap; what is asserted is the count, not the time.
    Mock::given(method("POST"))
        .and(body_string_contains("Action=AssumeRoleWithWebIdentity"))
        .respond_with(success(1).set_delay(Duration::from_millis(500)))
        .mount(&stand_in)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        mappings: Some(SHARED_SESSIONS),
        ..Setup::default()
    })
    .await;
    // Forty callers: each its own subject and its own token.
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Bearer {}",
                stack.idp.token(&format!("svc:caller-{i}"), json!({}))
            )
        })
        .collect();

    let answers =
        futures::future::join_all(tokens.iter().map(|t| stack.credentials("shared", t))).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["AccessKeyId"], "ASIASTANDIN000000001");
    }
    let received = stand_in.received_requests().await.unwrap();
    assert_eq!(
        received.len(),
        1,
        "one upstream call for forty callers of one session"
    );
    assert_eq!(form(&received[0].body)["RoleSessionName"], "shared-builds");

    let events = stack.bridge.audit_events_at_least(40).await;
    let mut subjects: Vec<&str> = events
        .iter()
        .map(|e| e["caller"]["subject"].as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), 40, "{events:?}");
    let count = |e: &str| events.iter().filter(|v| v["cache"] == e).count();
    assert_eq!(count("miss"), 1, "{events:?}");
    assert_eq!(count("coalesced") + count("hit"), 39, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_never_waits_for_another_sessions_upstream_call() {
    // The first session's call is held at the stand-in until the test releases it.
    let sts = HeldSts::start("/shared").await;
    let stack = Arc::new(
        Stack::start(Setup {
            sts: Some(&sts.url),
            mappings: Some(SHARED_SESSIONS),
            ..Setup::default()
        })
        .await,
    );
    let auth = |sub: &str| format!("Bearer {}", stack.idp.token(sub, json!({})));

    let held = {
        let (stack, auth) = (Arc::clone(&stack), auth("svc:first"));
        tokio::spawn(async move { stack.credentials("shared", &auth).await })
    };
    sts.wait_for_arrivals(1, Duration::from_secs(30), "the first session")
        .await;

    // Meanwhile a caller of another session gets its credential.
    let (status, body, _) = tokio::time::timeout(
        Duration::from_secs(30),
        stack.credentials("other", &auth("svc:second")),
    )
    .await
    .expect("the second session waited for the first session's upstream call");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AccessKeyId"], "ASIASTANDIN000000002");
    assert!(
        !held.is_finished(),
        "the first session's request ended before the stand-in answered it: {:?}",
        held.await
    );

    // Released, the first session's call completes too.
    sts.release();
    let (status, body, _) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AccessKeyId"], "ASIASTANDIN000000001");
    assert_eq!(
        sts.roles(),
        [
            "arn:aws:iam::111111111111:role/shared",
            "arn:aws:iam::111111111111:role/other"
        ]
    );
}
