//! Running it in production, with injected faults: each test ends in an assertion about what
//! callers got. IdP down past the refresh interval and past `max_staleness`, throttling that clears, an upstream down with a
//! warm cache and the circuit breaker, a bad mapping file during traffic, SIGHUP, SIGTERM during
//! traffic (new connections refused while in-flight requests finish), the audit sink failing, and `/metrics` read by the Prometheus project's own parser.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use stsbridge_e2e::clouds::gcp_sts_token;
use stsbridge_e2e::moto::python;
use stsbridge_e2e::otlp::{Collector, Span, tree};
use stsbridge_e2e::sts::{self, HeldSts};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{MAPPINGS, Setup, Stack};

fn aws_success(n: usize) -> ResponseTemplate {
    let expiration =
        stsbridge::audit::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    ResponseTemplate::new(200).set_body_string(sts::web_identity_success(
        "arn:aws:sts::111111111111:assumed-role/deploy/gh-42",
        &format!("ASIAOPERATIONS{n:06}"),
        &format!("operations-secret-{n:030}"),
        &format!("operations-session-{n:040}"),
        &expiration,
    ))
}

/// `/metrics`, read by prometheus_client's parser: sample name with sorted labels to value.
pub async fn metrics(stack: &Stack) -> HashMap<String, f64> {
    let text = stack
        .http
        .get(stack.bridge.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut child = Command::new(python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_a_known_sequence() {
    let stand_in = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(aws_success(1))
        .mount(&stand_in)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();
    assert_eq!(stack.credentials("deploy", &token).await.0, 200);
    assert_eq!(stack.credentials("deploy", &token).await.0, 200);
    let mallory = stack.idp.token("svc:mallory", serde_json::json!({}));
    assert_eq!(
        stack
            .credentials("api", &format!("Bearer {mallory}"))
            .await
            .0,
        403
    );
    assert_eq!(
        stack
            .credentials("no-such-target", &format!("Bearer {token}"))
            .await
            .0,
        404
    );
    let m = metrics(&stack).await;
    assert_eq!(
        sample(
            &m,
            "stsbridge_exchanges_total{outcome=allow,provider=aws,target=deploy}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            "stsbridge_exchanges_total{outcome=deny,provider=none,target=api}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "stsbridge_exchanges_total{outcome=error,provider=none,target=unknown}"
        ),
        1.0,
        "no unbounded target labels"
    );
    assert_eq!(sample(&m, "stsbridge_cache_events_total{event=miss}"), 1.0);
    assert_eq!(sample(&m, "stsbridge_cache_events_total{event=hit}"), 1.0);
    assert_eq!(
        sample(&m, "stsbridge_exchange_duration_seconds_count{}"),
        4.0
    );
    assert_eq!(
        sample(
            &m,
            "stsbridge_upstream_duration_seconds_count{provider=aws}"
        ),
        1.0
    );
    assert!(
        sample(
            &m,
            "stsbridge_jwks_refresh_total{issuer=ci,outcome=success}"
        ) >= 1.0
    );
    assert_eq!(sample(&m, "stsbridge_rate_limited_total{}"), 0.0);
    assert_eq!(
        sample(&m, "stsbridge_config_reload_total{outcome=error}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_down_longer_than_the_refresh_interval_does_not_stop_exchanges() {
    let stack = Stack::start(Setup {
        jwks: Some("{ discovery: true, refresh_interval: 5s }"),
        ..Setup::default()
    })
    .await;
    stack.idp.set_up(false);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let token = stack.idp.token("svc:alice", serde_json::json!({}));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(status, 200, "{body}");
    let ready = stack.get_json("/readyz").await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["degraded"], serde_json::json!(["ci"]), "{ready}");
    // The IdP's failure is named, not described: its 503 is in the log only.
    assert_eq!(ready["issuers"][0]["fetch_failing"], true, "{ready}");
    assert_eq!(
        ready["problems"],
        serde_json::json!(["issuer ci: key fetch failing"]),
        "{ready}"
    );
    assert!(!ready.to_string().contains("503"), "{ready}");
    assert!(stack.bridge.stderr().contains("503"));
    assert!(
        sample(
            &metrics(&stack).await,
            "stsbridge_jwks_refresh_total{issuer=ci,outcome=error}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_not_trusted_past_max_staleness_while_the_idp_is_down() {
    // The smallest legal values: 5 s is the shortest refresh interval, and max_staleness may not
    // be shorter than it.
    let stack = Stack::start(Setup {
        jwks: Some("{ discovery: true, refresh_interval: 5s, max_staleness: 5s }"),
        ..Setup::default()
    })
    .await;
    let auth = |sub: &str| format!("Bearer {}", stack.idp.token(sub, serde_json::json!({})));
    let remembered = auth("svc:alice");
    let (status, body, _) = stack.credentials("api", &remembered).await;
    assert_eq!(status, 200, "{body}");

    stack.idp.set_up(false);
    // Wait out max_staleness from the last fetch that succeeded, as /readyz reports it (whole
    // seconds, so one more): the only wait the test needs.
    loop {
        let ready = stack.get_json("/readyz").await;
        let last = ready["issuers"][0]["last_success"]
            .as_u64()
            .unwrap_or_else(|| panic!("{ready}"));
        let due = last + 5 + 1;
        let now = stsbridge_e2e::idp::unix_now();
        if now > due {
            break;
        }
        tokio::time::sleep(Duration::from_secs(due + 1 - now)).await;
    }

    // Neither a token validated while the keys were fresh nor a new one is accepted on keys that
    // old: the caller is told to retry, and the service is not ready.
    for (which, auth) in [("remembered", remembered), ("new", auth("svc:bob"))] {
        let (status, body, headers) = stack.credentials("api", &auth).await;
        assert_eq!(status, 503, "{which} token: {body}");
        assert_eq!(body["error"], "upstream_unavailable", "{which} token");
        assert!(headers.contains_key("retry-after"), "{which} token");
    }
    let ready = stack.get_json("/readyz").await;
    assert_eq!(ready["ready"], false, "{ready}");
    assert_eq!(ready["issuers"][0]["loaded"], false, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_twice_then_success_gives_one_credential_and_no_error() {
    let stand_in = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(sts::error("Throttling", "Rate exceeded")),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&stand_in)
        .await;
    Mock::given(method("POST"))
        .respond_with(aws_success(7))
        .mount(&stand_in)
        .await;
    let stack = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        ..Setup::default()
    })
    .await;
    let (status, body, _) = stack.credentials("deploy", &stack.main_token()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AccessKeyId"], "ASIAOPERATIONS000007");
    assert_eq!(stand_in.received_requests().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_down_with_a_warm_cache_serves_hits_and_the_breaker_stops_hammering_it() {
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(gcp_sts_token("warm-federated-token", 3600))
        .mount(&google)
        .await;
    let stack = Stack::start(Setup {
        gcp: Some(&google.uri()),
        ..Setup::default()
    })
    .await;
    let main = stack.main_token();
    assert_eq!(
        stack.credentials("gcp-federated", &main).await.0,
        200,
        "the cache is warm"
    );

    google.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&google)
        .await;
    // Hits keep being served.
    let (status, body, _) = stack.credentials("gcp-federated", &main).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some("warm-federated-token"))
    );
    // Misses (another caller's session) get 503 with Retry-After, until the breaker opens...
    for i in 0..5 {
        let other = stack.idp.token(
            "repo:acme/app:ref:refs/heads/main",
            serde_json::json!({ "repository_owner": "acme", "n": i }),
        );
        let (status, _, headers) = stack.credentials("gcs", &other).await;
        assert_eq!(status, 503);
        assert!(headers.contains_key("retry-after"));
    }
    let calls = google.received_requests().await.unwrap().len();
    // ...then fail fast without calling Google at all, saying when to come back.
    let (status, body, headers) = stack.credentials("gcs", &main).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("keeps failing"),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((20..=30).contains(&retry), "{retry}");
    assert_eq!(
        google.received_requests().await.unwrap().len(),
        calls,
        "no call while the circuit is open"
    );
    assert_eq!(
        sample(
            &metrics(&stack).await,
            "stsbridge_circuit_open{provider=gcp}"
        ),
        1.0
    );
    // The warm entry is still served while the circuit is open.
    assert_eq!(stack.credentials("gcp-federated", &main).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mapping_file_during_traffic_keeps_the_previous_set() {
    let stack = Stack::start(Setup::default()).await;
    let token = stack.idp.token("svc:alice", serde_json::json!({}));
    let auth = format!("Bearer {token}");
    let file = stack.dir.path().join("mappings/test.yaml");
    let traffic = async {
        let mut statuses = Vec::new();
        for _ in 0..60 {
            statuses.push(stack.credentials("api", &auth).await.0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    };
    let breakage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(
            &file,
            "version: 1\nrules:\n  - { name: broken, issuer: ci, allow: [nowhere] }\n",
        )
        .unwrap();
    };
    let (statuses, ()) = tokio::join!(traffic, breakage);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let m = metrics(&stack).await;
    assert!(sample(&m, "stsbridge_config_reload_total{outcome=error}") >= 1.0);
    assert!(
        stack
            .bridge
            .stderr()
            .contains("rules[0].allow[0]: rule \"broken\": \"nowhere\" is not a target"),
        "the log says exactly what is wrong"
    );

    // A valid change is picked up: a new target appears, on file change...
    let extended = format!(
        "{MAPPINGS}  - {{ name: extra, issuer: ci, subject: \"svc:alice\", allow: [api-extra] }}\n"
    )
    .replace(
        "targets:\n",
        "targets:\n  - { name: api-extra, jwt: { audience: extra-api } }\n",
    );
    std::fs::write(&file, extended).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = stack.credentials("api-extra", &auth).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    // ...and on SIGHUP.
    let before = sample(
        &metrics(&stack).await,
        "stsbridge_config_reload_total{outcome=success}",
    );
    stack.bridge.signal("HUP");
    let mut after = before;
    for _ in 0..50 {
        after = sample(
            &metrics(&stack).await,
            "stsbridge_config_reload_total{outcome=success}",
        );
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after > before, "SIGHUP reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_and_cuts_no_request_off() {
    // Every answer is held at the stand-in until the test releases it.
    let stand_in = HeldSts::start("").await;
    let mut stack = Stack::start(Setup {
        sts: Some(&stand_in.url),
        ..Setup::default()
    })
    .await;
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let http = stack.http.clone();
            // Distinct run ids: distinct sessions, so ten upstream calls are in flight.
            let url = stack.bridge.url("/v1/credentials/deploy");
            let token = stack.idp.token(
                "repo:acme/app:ref:refs/heads/main",
                serde_json::json!({ "repository_owner": "acme", "repository": "acme/app", "run_id": format!("{i}"), "actor": "octocat" }),
            );
            tokio::spawn(async move {
                let r = http.get(url).header("Authorization", token).send().await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await.unwrap_or_default()))
            })
        })
        .collect();
    stand_in
        .wait_for_arrivals(10, Duration::from_secs(30), "before SIGTERM")
        .await;
    stack.bridge.signal("TERM");

    // During the drain, while all ten are still held: a new connection is refused (the signal
    // takes effect a moment after it is sent; the wait ends as soon as it has).
    let addr = stack.bridge.base.trim_start_matches("http://").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "a new connection is still accepted during the drain: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = reqwest::Client::new()
        .get(stack.bridge.url("/healthz"))
        .send()
        .await;
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a new request during the drain: {refused:?}"
    );
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "the held requests were cut off"
    );
    assert!(
        stack.bridge.wait_exit(Duration::ZERO).await.is_none(),
        "the process exited before its requests finished"
    );

    // Released, every one of them completes, and only then does the process exit.
    stand_in.release();
    for r in requests {
        let (status, body) = r.await.unwrap().expect("the request completed");
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(stand_in.roles().len(), 10);
    let status = stack
        .bridge
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process exits");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_sink_refuses_credentials_unless_configured_to_fail_open() {
    let closed = Stack::start(Setup {
        audit: Some("{ file: /dev/full }"),
        ..Setup::default()
    })
    .await;
    let token = closed.idp.token("svc:alice", serde_json::json!({}));
    let (status, body, _) = closed.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "server_error");
    assert!(body.get("access_token").is_none());
    assert_eq!(
        sample(&metrics(&closed).await, "stsbridge_audit_failures_total{}"),
        1.0
    );

    let open = Stack::start(Setup {
        audit: Some("{ file: /dev/full, on_failure: open }"),
        ..Setup::default()
    })
    .await;
    let token = open.idp.token("svc:alice", serde_json::json!({}));
    let (status, body, _) = open.credentials("api", &format!("Bearer {token}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sample(&metrics(&open).await, "stsbridge_audit_failures_total{}"),
        1.0
    );
}

/// The spans of one exchange, as the OTLP collector must receive them: the step spans under the
/// `request` span of the exchange, the assertion's `mint` under `upstream`.
const EXCHANGE_SPANS: &str = "\
request
  map
  render
  upstream
    mint
  validate
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_in_one_trace_and_the_request_id_reaches_the_audit_event() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let mut stack = Stack::start(Setup {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        ..Setup::default()
    })
    .await;
    let token = stack.idp.token("svc:alice", serde_json::json!({}));
    let response = credentials_with_request_id(&stack, &token, "req-0123456789").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-0123456789");
    let decision = response.headers()["x-stsbridge-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.bridge.audit_event(&decision).await["request_id"],
        "req-0123456789"
    );

    // Shutting down flushes the exporter.
    stack.bridge.signal("TERM");
    assert!(
        stack
            .bridge
            .wait_exit(Duration::from_secs(10))
            .await
            .is_some_and(|s| s.success())
    );
    let spans = collector.spans().await;
    assert!(
        spans.iter().all(|s| s.service == "stsbridge"),
        "every span is from service stsbridge: {spans:?}"
    );
    // The readiness probes made traces of their own; the exchange's is the one whose `request`
    // span carries its request id.
    let request = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && s.attributes.get("request_id").map(String::as_str) == Some("req-0123456789")
        })
        .unwrap_or_else(|| {
            panic!(
                "no request span with the request id among {} spans:\n{}\n{}",
                spans.len(),
                tree(&spans),
                stack.bridge.stderr()
            )
        });
    // Every step of the exchange is in that one trace, under its request: a step span detached
    // from its parent starts a trace of its own (or sits at the top of this one).
    let trace: Vec<Span> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id)
        .cloned()
        .collect();
    assert_eq!(
        tree(&trace),
        EXCHANGE_SPANS,
        "the exchange's trace; every span received:\n{}",
        tree(&spans)
    );
    assert!(
        request.parent_span_id.is_empty(),
        "the request span is the root of its trace"
    );
    let outside: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id != request.trace_id && s.name != "request")
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        outside.is_empty(),
        "spans outside any request's trace: {outside:?}"
    );
    let field = |name: &str, key: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.attributes.get(key))
            .cloned()
    };
    assert_eq!(
        field("request", "path").as_deref(),
        Some("/v1/credentials/api")
    );
    assert_eq!(field("map", "target").as_deref(), Some("api"));
    assert_eq!(field("upstream", "provider").as_deref(), Some("jwt"));
    assert_eq!(field("mint", "aud").as_deref(), Some("billing-api"));
}

/// The suite tests what users build. `stsbridge-under-test` links the `stsbridge` library with the
/// features cargo unified for the build, and `cargo test --workspace` unifies every member's
/// requests: a feature that a member turns on here would be on in the binary under test but not in
/// `cargo build -p stsbridge`. So no member asks for more than the default features, which include
/// `otlp` (the test above is then a test of the shipped binary).
#[test]
fn no_workspace_member_turns_on_features_of_stsbridge_beyond_its_defaults() {
    for manifest in [
        "Cargo.toml",
        "bridge/Cargo.toml",
        "providers/Cargo.toml",
        "tests/Cargo.toml",
    ] {
        let text = std::fs::read_to_string(crate::repo().join(manifest)).unwrap();
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("stsbridge") else {
                continue;
            };
            if rest.starts_with(['.', ' ', '=']) {
                assert!(
                    !line.contains("features"),
                    "{manifest} sets features of stsbridge: {line}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_request_id_and_the_exported_trace_id() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let mut stack = Stack::start(Setup {
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("STSBRIDGE_LOG_FORMAT", "json"),
        ],
        ..Setup::default()
    })
    .await;
    // A refusal is logged (at info) inside its request's span.
    let token = stack.idp.token("svc:mallory", serde_json::json!({}));
    let response = credentials_with_request_id(&stack, &token, "req-json-0001").await;
    assert_eq!(response.status(), 403);
    // Stopped, and every line it wrote read.
    stack.bridge.stop().await;

    let stderr = stack.bridge.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        lines.iter().all(|l| l["timestamp"].is_string()
            && l["level"].is_string()
            && l["message"].is_string())
    );
    let line = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "req-json-0001")
        .unwrap_or_else(|| panic!("no log line in the request's span:\n{stderr}"));
    let trace_id = line["span"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let spans = collector.spans().await;
    let request = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && s.attributes.get("request_id").map(String::as_str) == Some("req-json-0001")
        })
        .expect("the request's exported span");
    let hex: String = request
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(trace_id, hex, "the log line names the exported trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_listener_serves_probes_and_metrics_while_the_main_one_requires_certificates()
 {
    use stsbridge_e2e::tls::{client_pki, https_client, localhost_pki, tls_config};
    let server = localhost_pki();
    let clients = client_pki(&["prober.acme.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let extra =
        tls_config(dir.path(), &server, &clients.ca_pem, "") + "\nops: { listen: 127.0.0.1:0 }";
    // An issuer whose keys cannot be fetched: the service is not ready, and says why only on the
    // operations listener.
    let stack = Stack::start(Setup {
        extra: &extra,
        jwks: Some("{ uri: \"http://127.0.0.1:9/jwks\" }"),
        ..Setup::default()
    })
    .await;
    let stderr = stack.bridge.stderr();
    let ops = stderr
        .lines()
        .find_map(|l| l.split("operations listener on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no operations listener in the log:\n{stderr}"))
        .to_owned();
    let plain = reqwest::Client::new();
    let get = |path: &str| plain.get(format!("http://{ops}{path}")).send();

    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("stsbridge_cache_events_total"), "{text}");
    assert_eq!(get("/v1/credentials/api").await.unwrap().status(), 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let detailed = loop {
        let r = get("/readyz").await.unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        if body["issuers"][0]["last_error"].is_string() || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = detailed["issuers"][0]["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error: {detailed}"));
    assert!(error.contains("127.0.0.1:9"), "{error}");

    // The main listener: no session without a certificate; with one, /readyz names the problem
    // but never the upstream's error text.
    assert!(
        https_client(&server, None)
            .get(stack.bridge.url("/healthz"))
            .send()
            .await
            .is_err()
    );
    let public = stsbridge_e2e::json_of(
        https_client(&server, Some(&clients.identities[0])).get(stack.bridge.url("/readyz")),
    )
    .await;
    assert!(public["issuers"][0].get("last_error").is_none(), "{public}");
    assert!(!public.to_string().contains("127.0.0.1:9"), "{public}");
}

/// `GET /v1/credentials/api` with `token` and `X-Request-Id: id`.
async fn credentials_with_request_id(stack: &Stack, token: &str, id: &str) -> reqwest::Response {
    stack
        .http
        .get(stack.bridge.url("/v1/credentials/api"))
        .bearer_auth(token)
        .header("X-Request-Id", id)
        .send()
        .await
        .unwrap()
}
