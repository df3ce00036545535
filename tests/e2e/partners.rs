//! Partners onboarded by files: `stsbridge test` and `partner init`, audit-mode rules, per-partner
//! limits under a burst, a dead partner IdP that must not hold anyone else up, and denials the
//! caller can read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use stsbridge_e2e::sts::HeldSts;
use stsbridge_e2e::{BridgeProcess, TestIdp};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::cli::run;
use crate::operations::{metrics, sample};
use crate::{BIN, MAPPINGS, Setup, Stack, copy_dir, repo};

#[test]
fn mapping_tests_pass_on_the_shipped_mappings_and_explain_a_wrong_expectation() {
    let (code, out, err) = run(&repo(), &["test"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(" 0 failed, in 6 file(s)"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    // The production-shaped config runs the same tests against its own trust list.
    let (code, out, err) = run(
        &repo(),
        &["test", "--config", "examples/production/stsbridge.yaml"],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    // A deliberately wrong expectation: a feature branch expected to deploy prod.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("mappings"), &dir.path().join("mappings"));
    std::fs::write(
        dir.path().join("mappings/tests/wrong.yaml"),
        r#"version: 1
cases:
  - name: a feature branch deploys prod (wrong)
    issuer: github
    claims: { sub: "repo:acme/payments:environment:prod", repository_owner: acme, ref: refs/heads/feature }
    target: payments-prod-deploy
    expect: allow
  - name: the right session name is rendered (wrong name)
    issuer: dev
    claims: { sub: "dev:alice" }
    target: sandbox-aws
    expect: allow
    session_name: someone-else
"#,
    )
    .unwrap();
    let (code, out, _) = run(dir.path(), &["test"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("36 passed, 2 failed"), "{out}");
    assert!(
        out.contains("FAIL  a feature branch deploys prod (wrong)")
            && out.contains("expected allow, but no allow rule matches"),
        "{out}"
    );
    // The per-condition explanation: which test of which rule failed, and the token's value.
    assert!(
        out.contains(
            "rule payments-main-deploys-prod (allow, mappings/ci-deploy.yaml): does not match"
        ) && out.contains("[FAIL] ref == \"refs/heads/main\" (token: \"refs/heads/feature\")")
            && out.contains("[pass] repository_owner == \"acme\""),
        "{out}"
    );
    assert!(
        out.contains("session name: expected \"someone-else\", rendered \"dev-dev-alice\""),
        "{out}"
    );

    // A broken test file is a usage error (64), not a failed case.
    std::fs::write(
        dir.path().join("mappings/tests/wrong.yaml"),
        "version: 1\ncases:\n  - { name: x, issuer: nobody, claims: { sub: a }, target: hello-api, expect: allow }\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["test"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("wrong.yaml: cases[0].issuer: \"nobody\" is not a trust entry"),
        "{err}"
    );
}

#[test]
fn partner_init_writes_a_partner_file_whose_tests_pass_and_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("mappings"), &dir.path().join("mappings"));
    let (code, out, err) = run(
        dir.path(),
        &[
            "partner",
            "init",
            "--name",
            "initech",
            "--issuer",
            "https://idp.initech.example",
            "--audience",
            "https://sts.example.com",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote mappings/partner-initech.yaml"), "{out}");
    assert!(
        out.contains("wrote mappings/tests/partner-initech.yaml"),
        "{out}"
    );
    let (code, out, err) = run(dir.path(), &["test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("37 passed, 0 failed, in 7 file(s)"), "{out}");

    // The production config picks the partner up with no edit of its own.
    copy_dir(
        &repo().join("examples/production"),
        &dir.path().join("examples/production"),
    );
    let (code, out, err) = run(
        dir.path(),
        &["check", "--config", "examples/production/stsbridge.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("6 trusted issuer(s)"), "{out}");

    // Onboarding twice, or the same issuer under another name, is refused and leaves nothing.
    let (code, _, err) = run(
        dir.path(),
        &[
            "partner",
            "init",
            "--name",
            "initech",
            "--issuer",
            "https://x.example",
            "--audience",
            "a",
        ],
    );
    assert_eq!(code, 64);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = run(
        dir.path(),
        &[
            "partner",
            "init",
            "--name",
            "initech2",
            "--issuer",
            "https://idp.initech.example",
            "--audience",
            "a",
        ],
    );
    assert_eq!(code, 64);
    assert!(err.contains("is also trusted"), "{err}");
    assert!(!dir.path().join("mappings/partner-initech2.yaml").exists());
}

/// A partner file for `idp`, with `extra` lines in its trust entry and a jwt target and rule.
fn partner_file(name: &str, issuer: &str, extra: &str, target: &str) -> String {
    format!(
        r#"version: 1
trust:
  - name: {name}
    issuer: {issuer}
    audiences: ["{aud}"]
    jwks: {{ discovery: true }}
    allow_insecure_loopback: true
{extra}
targets:
  - {{ name: {name}-api, jwt: {{ audience: {name}-api }} }}
rules:
  - name: {name}-clients
    issuer: {name}
    subject: {{ glob: "client-*" }}
    allow: [{name}-api{target}]
"#,
        aud = stsbridge_e2e::BRIDGE_URL,
    )
}

async fn credentials(stack: &Stack, target: &str, token: &str) -> (u16, Value, Option<String>) {
    let (status, body, headers) = stack.credentials(target, &format!("Bearer {token}")).await;
    let retry = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, body, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partner_limits_hold_under_a_burst_while_other_partners_keep_succeeding() {
    // The slow partner's target is an AWS role behind an STS stand-in that holds every answer
    // until the test releases it, so its exchanges stay in flight; each client gets its own
    // session (no shared cache entry).
    let sts_stand_in = HeldSts::start("").await;
    let bursty = TestIdp::start().await;
    let slow = TestIdp::start().await;
    let slow_file = partner_file(
        "partner-slow",
        &slow.issuer,
        "    max_concurrent: 2",
        ", partner-slow-aws",
    )
    .replace(
        "targets:\n",
        "targets:\n  - { name: partner-slow-aws, aws: { role_arn: \"arn:aws:iam::444444444444:role/partner\", session_name: \"{{ subject }}\" } }\n",
    );
    let sts = sts_stand_in.url.clone();
    let stack = Stack::start_with_files(
        TestIdp::start().await,
        Setup {
            sts: Some(&sts),
            ..Setup::default()
        },
        &[
            (
                "mappings/partner-bursty.yaml",
                partner_file(
                    "partner-bursty",
                    &bursty.issuer,
                    "    rate_limit: 3/h\n    burst: 3",
                    "",
                ),
            ),
            ("mappings/partner-slow.yaml", slow_file),
        ],
    )
    .await;
    let other = stack.idp.token("svc:alice", json!({}));

    // Rate: 20 requests from the bursty partner's clients; its bucket holds 3 (one more an hour
    // later, so the count does not depend on how fast this machine is).
    let mut granted = 0;
    let mut limited = 0;
    for i in 0..20 {
        let token = bursty.token(&format!("client-{i}"), json!({}));
        let (status, body, retry) = credentials(&stack, "partner-bursty-api", &token).await;
        match status {
            200 => granted += 1,
            429 => {
                limited += 1;
                assert_eq!(body["error"], "rate_limited");
                assert!(
                    body["error_description"]
                        .as_str()
                        .unwrap()
                        .contains("issuer partner-bursty is over its rate_limit"),
                    "{body}"
                );
                let retry: u64 = retry.expect("Retry-After").parse().unwrap();
                assert!((1..=3600).contains(&retry), "{retry}");
            }
            other => panic!("{other}: {body}"),
        }
        // Interleaved, the other partner's callers are untouched.
        assert_eq!(credentials(&stack, "api", &other).await.0, 200);
    }
    assert_eq!((granted, limited), (3, 17));

    // Concurrency: 8 clients of the slow partner at once; 2 may be in flight.
    let slow = Arc::new(slow);
    let stack = Arc::new(stack);
    let burst: Vec<_> = (0..8)
        .map(|i| {
            let stack = Arc::clone(&stack);
            let token = slow.token(&format!("client-{i}"), json!({}));
            tokio::spawn(async move { credentials(&stack, "partner-slow-aws", &token).await })
        })
        .collect();
    // Each is either held at the stand-in or already answered: exactly 2 reached it, the other 6
    // were refused at once.
    sts_stand_in
        .wait_for_arrivals(2, Duration::from_secs(30), "the slow partner's first two")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sts_stand_in.roles().len() + burst.iter().filter(|h| h.is_finished()).count() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} held at the stand-in, {} answered",
            sts_stand_in.roles().len(),
            burst.iter().filter(|h| h.is_finished()).count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sts_stand_in.roles().len(),
        2,
        "exchanges of the slow partner in flight at the upstream"
    );
    // While those two are in flight, the other partner keeps getting answers.
    for _ in 0..10 {
        assert_eq!(credentials(&stack, "api", &other).await.0, 200);
    }
    let mut busy = 0;
    let mut held = Vec::new();
    for handle in burst {
        if !handle.is_finished() {
            held.push(handle);
            continue;
        }
        let (status, body, retry) = handle.await.unwrap();
        assert_eq!(status, 429, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("issuer partner-slow is over its max_concurrent"),
            "{body}"
        );
        assert_eq!(retry.as_deref(), Some("1"));
        busy += 1;
    }
    assert_eq!((held.len(), busy), (2, 6));
    // Released, the two in flight get their credentials.
    sts_stand_in.release();
    for handle in held {
        let (status, body, _) = handle.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(sts_stand_in.roles().len(), 2);
    let m = metrics(&stack).await;
    assert_eq!(
        sample(
            &m,
            "stsbridge_partner_limited_total{issuer=partner-bursty,limit=rate}"
        ),
        17.0
    );
    assert_eq!(
        sample(
            &m,
            "stsbridge_partner_limited_total{issuer=partner-slow,limit=concurrency}"
        ),
        busy as f64
    );
}

/// A partner IdP that accepts connections and never answers.
async fn dead_idp() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_partner_idp_does_not_hold_up_other_partners() {
    let (dead_url, accepted) = dead_idp().await;
    let live = TestIdp::start().await;
    let stack = Arc::new(
        Stack::start_with_files(
            TestIdp::start().await,
            Setup::default(),
            &[
                (
                    "mappings/partner-dead.yaml",
                    partner_file("partner-dead", &dead_url, "", ""),
                ),
                (
                    "mappings/partner-live.yaml",
                    partner_file("partner-live", &live.issuer, "", ""),
                ),
            ],
        )
        .await,
    );
    // Lazy: the service is ready, and nothing has been asked of either partner IdP yet.
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(live.jwks_fetches(), 0);
    let ready = stack.get_json("/readyz").await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["partner_issuers"], json!({ "total": 2, "unused": 2 }));

    // A token claiming the dead partner's issuer (signed by some key: it is never checked, the
    // keys cannot be fetched).
    let mut claims = live.claims("client-1");
    claims["iss"] = json!(dead_url);
    let dead_token = live.sign(&claims);
    let finished = Arc::new(AtomicBool::new(false));
    let dead_request = {
        let stack = Arc::clone(&stack);
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            let r = credentials(&stack, "partner-dead-api", &dead_token).await;
            finished.store(true, Ordering::SeqCst);
            r
        })
    };
    while accepted.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While the dead partner's key fetch hangs, the live partner (first use: its keys are fetched
    // now) and the config's own issuer complete every request.
    let other = stack.idp.token("svc:alice", json!({}));
    let mut completed_while_waiting = 0;
    for i in 0..20 {
        let token = live.token(&format!("client-{i}"), json!({}));
        assert_eq!(credentials(&stack, "partner-live-api", &token).await.0, 200);
        assert_eq!(credentials(&stack, "api", &other).await.0, 200);
        if !finished.load(Ordering::SeqCst) {
            completed_while_waiting += 1;
        }
    }
    assert_eq!(
        completed_while_waiting, 20,
        "the live partner waited for the dead one"
    );
    assert_eq!(live.jwks_fetches(), 1, "fetched once, on first use");

    // The dead partner's caller gets a clear, retryable answer once the fetch times out; a second
    // caller within the forced-refresh interval gets it at once, with no new connection.
    let (status, body, retry) = dead_request.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(retry.is_some());
    let mut claims = live.claims("client-2");
    claims["iss"] = json!(dead_url);
    let (status, _, _) = credentials(&stack, "partner-dead-api", &live.sign(&claims)).await;
    assert_eq!(status, 503);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// `/readyz` answers anyone, and an IdP's discovery document chooses where stsbridge connects
/// next: printing the fetch error there would make it a port scanner that reports back. It names
/// the issuers whose keys cannot be fetched; the why (address, port, "connection refused", the
/// URL the IdP gave) is in the log only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_issuer_whose_keys_cannot_be_fetched_but_not_the_upstream_error() {
    // Two ports on 127.0.0.1 that nothing listens on (given by the OS, then released).
    let (probed_port, dead_port) = {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    };
    let marker = "internal-marker-q7";
    // An IdP whose discovery document points its JWKS at a port of the IdP's choosing.
    let probing_idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path(
            "/.well-known/openid-configuration",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": probing_idp.uri(),
            "jwks_uri": format!("http://127.0.0.1:{probed_port}/{marker}"),
        })))
        .mount(&probing_idp)
        .await;
    let dead_url = format!("http://127.0.0.1:{dead_port}");
    let stack = Stack::start_with_files(
        TestIdp::start().await,
        Setup::default(),
        &[
            (
                "mappings/partner-probe.yaml",
                partner_file("partner-probe", &probing_idp.uri(), "", ""),
            ),
            (
                "mappings/partner-dead.yaml",
                partner_file("partner-dead", &dead_url, "", ""),
            ),
        ],
    )
    .await;
    // A token claiming each issuer makes stsbridge fetch its keys (the signature is never checked:
    // there are no keys to check it with).
    for (issuer, target) in [
        (probing_idp.uri(), "partner-probe-api"),
        (dead_url.clone(), "partner-dead-api"),
    ] {
        let mut claims = stack.idp.claims("client-1");
        claims["iss"] = json!(issuer);
        let (status, body, _) = credentials(&stack, target, &stack.idp.sign(&claims)).await;
        assert_eq!(status, 503, "{body}");
    }

    let r = stack
        .http
        .get(stack.bridge.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "partners' keys do not hold up readiness");
    let text = r.text().await.unwrap();
    for leak in [
        marker.to_owned(),
        probed_port.to_string(),
        dead_port.to_string(),
        "127.0.0.1".to_owned(),
        "refused".to_owned(),
        "connect".to_owned(),
    ] {
        assert!(!text.contains(&leak), "/readyz shows {leak:?}: {text}");
    }
    let ready: Value = serde_json::from_str(&text).unwrap();
    for name in ["partner-dead", "partner-probe"] {
        let issuer = ready["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("/readyz does not name {name}: {text}"));
        assert_eq!(issuer["loaded"], false, "{text}");
        assert_eq!(issuer["fetch_failing"], true, "{text}");
    }
    // The operator finds the why in the log.
    let mut logged = false;
    for _ in 0..100 {
        let log = stack.bridge.stderr();
        if log.contains(marker) && log.contains(&dead_port.to_string()) {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        logged,
        "the fetch errors are logged:\n{}",
        stack.bridge.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_mode_rule_grants_nothing_and_is_recorded_as_would_allow() {
    let staged = |mode: &str| {
        format!(
            "{MAPPINGS}  - {{ name: staged-reports, issuer: ci, subject: \"svc:bob\", allow: [reports], mode: {mode} }}\n"
        )
        .replace(
            "targets:\n",
            "targets:\n  - { name: reports, jwt: { audience: reports-api } }\n",
        )
    };
    let mappings = staged("audit");
    let stack = Stack::start(Setup {
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let bob = stack.idp.token("svc:bob", json!({}));
    let (status, body, _) = credentials(&stack, "reports", &bob).await;
    assert_eq!(status, 403, "{body}");
    let event = stack
        .bridge
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(event["outcome"], "deny");
    assert_eq!(event["reason"], "no_matching_rule");
    assert_eq!(
        event["shadow"],
        json!([{ "rule": "staged-reports", "would": "allow" }])
    );
    // An enforced grant is unaffected, and records no shadow when no audit rule matches.
    let (status, _, headers) = stack.credentials("api", &format!("Bearer {bob}")).await;
    assert_eq!(status, 200);
    let event = stack
        .bridge
        .audit_event(headers["x-stsbridge-decision-id"].to_str().unwrap())
        .await;
    assert!(event.get("shadow").is_none(), "{event}");
    let m = metrics(&stack).await;
    assert_eq!(
        sample(
            &m,
            "stsbridge_shadow_decisions_total{rule=staged-reports,would=allow}"
        ),
        1.0
    );

    // Going live is a one-word change, picked up by hot reload.
    std::fs::write(
        stack.dir.path().join("mappings/test.yaml"),
        staged("enforce"),
    )
    .unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = credentials(&stack, "reports", &bob).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_denials_tells_the_caller_which_conditions_failed_and_nothing_else() {
    let stack = Stack::start(Setup {
        trust_extra: "    explain_denials: true",
        ..Setup::default()
    })
    .await;
    // Right repository, wrong branch, wrong owner claim.
    let token = stack.idp.token(
        "repo:acme/app:ref:refs/heads/feature",
        json!({ "repository_owner": "evil" }),
    );
    let (status, body, _) = credentials(&stack, "deploy", &token).await;
    assert_eq!(status, 403);
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("no rule allows this token to obtain deploy")
            && description.contains("rule main-deploys: failed subject == \"repo:acme/app:ref:refs/heads/main\"; repository_owner == \"acme\""),
        "{description}"
    );
    // The token's own values are not echoed, and rules for other targets are not listed.
    assert!(!description.contains("evil") && !description.contains("services-call-api"));
    assert!(body["decision_id"].is_string());

    // Without explain_denials the caller gets the decision id and where the operator looks.
    let plain = Stack::start(Setup::default()).await;
    let token = plain.idp.token(
        "repo:acme/app:ref:refs/heads/feature",
        json!({ "repository_owner": "evil" }),
    );
    let (status, body, _) = credentials(&plain, "deploy", &token).await;
    assert_eq!(status, 403);
    let description = body["error_description"].as_str().unwrap();
    assert!(!description.contains("main-deploys"), "{description}");
    assert!(description.contains("stsbridge explain"), "{description}");
}

/// A token of the stand-in partner IdP (a dev-mode service): its own issuer's JWT for `sub`.
async fn partner_idp_token(http: &reqwest::Client, idp: &BridgeProcess, sub: &str) -> String {
    let dev = http
        .post(idp.url("/dev/token"))
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let issued: Value = http
        .get(idp.url("/v1/credentials/hello-api"))
        .bearer_auth(dev.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    issued["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_onboarding_walkthrough_runs_as_written() {
    // 0. The partner's IdP: a dev-mode service in an empty directory (built-in mappings).
    let idp_dir = tempfile::tempdir().unwrap();
    let partner_idp = BridgeProcess::spawn(
        BIN,
        idp_dir.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let partner_token = partner_idp_token(&http, &partner_idp, "dev:alice").await;

    // 1. partner init, in a copy of the repository's mappings.
    let ours = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("mappings"), &ours.path().join("mappings"));
    let (code, out, err) = run(
        ours.path(),
        &[
            "partner",
            "init",
            "--name",
            "acme",
            "--issuer",
            &partner_idp.base,
            "--audience",
            "hello-api",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // 2. Narrow the rule, run the tests.
    let file = ours.path().join("mappings/partner-acme.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("subject: { any: true }"), "{text}");
    std::fs::write(
        &file,
        text.replace(
            "subject: { any: true }",
            "subject: { one_of: [\"dev:alice\", \"dev:carol\"] }",
        ),
    )
    .unwrap();
    let tests = ours.path().join("mappings/tests/partner-acme.yaml");
    let cases = std::fs::read_to_string(&tests)
        .unwrap()
        .replace("sub: client-1", "sub: \"dev:alice\"");
    std::fs::write(&tests, &cases).unwrap();
    let (code, out, _) = run(ours.path(), &["test"]);
    assert_eq!(code, 0, "{out}");

    // 3. Audit mode: 403, recorded as would-allow; the partner's keys are fetched on first use.
    let service =
        BridgeProcess::spawn(BIN, ours.path(), &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    let get = |token: String| {
        let http = http.clone();
        let url = service.url("/v1/credentials/partner-acme-api");
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get(partner_token.clone()).await;
    assert_eq!(status, 403, "{body}");
    let event = service
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(event["caller"]["issuer"], "partner-acme");
    assert_eq!(event["caller"]["verified"], true);
    assert_eq!(
        event["shadow"],
        json!([{ "rule": "partner-acme-clients", "would": "allow" }])
    );

    // 4. One word, and the test case flipped: live on reload.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("mode: audit", "mode: enforce")).unwrap();
    let (code, out, _) = run(ours.path(), &["test"]);
    assert_eq!(
        code, 1,
        "the audit-mode expectation no longer holds:\n{out}"
    );
    std::fs::write(
        &tests,
        cases
            .replace("expect: deny", "expect: allow")
            .replace("    shadow: [partner-acme-clients]\n", ""),
    )
    .unwrap();
    let (code, out, _) = run(ours.path(), &["test"]);
    assert_eq!(code, 0, "{out}");
    let mut answer = (0, Value::Null);
    for _ in 0..50 {
        answer = get(partner_token.clone()).await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1["access_token"].as_str().unwrap().starts_with("ey"));

    // 5. A client the rule does not cover is told which condition failed (explain_denials).
    let bob = partner_idp_token(&http, &partner_idp, "dev:bob").await;
    let (status, body) = get(bob).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error_description"],
        "no rule allows this token to obtain partner-acme-api: rule partner-acme-clients: failed subject one of [\"dev:alice\", \"dev:carol\"]"
    );
}
