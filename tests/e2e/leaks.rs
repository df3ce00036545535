//! Nothing secret in anything the servers wrote. A full round of exchanges at debug log level, with
//! spans exported to an OTLP collector stand-in: AWS on moto behind a recording proxy (one hop and
//! a chained hop), RFC 8693 with delegation, refusals, an upstream error, GCP with impersonation
//! and Azure on their stand-ins, and the agent. Then every process is stopped (SIGTERM, exit), so
//! that buffered output and the audit summaries written at shutdown are in, and every secret is
//! searched, in every form [`Secret`] knows (whole, encoded, a JWT's claims and signature, windows
//! of 16 characters), in: stdout and stderr, the audit files, `/metrics`, every HTTP error body,
//! and every span the collector received.
//!
//! The secrets: every token the servers received (subject, actor, refused ones); every assertion
//! stsbridge minted, as the upstream received it; every credential an upstream handed out, the
//! intermediate credentials of the chained hop included (read from moto's answers, since they
//! never leave stsbridge); the agent's secret; the signing keys, whole.

use std::time::Duration;

use serde_json::json;
use stsbridge_e2e::moto::{RecordingProxy, moto};
use stsbridge_e2e::otlp::Collector;
use stsbridge_e2e::{Secret, find_secrets, sts};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{JWT, Setup, Stack};

/// Everything the servers wrote or answered, by name, and the secrets none of it may contain.
#[derive(Default)]
struct Evidence {
    secrets: Vec<Secret>,
    values: Vec<String>,
    /// (what, text)
    written: Vec<(String, String)>,
}

impl Evidence {
    /// A secret, unless the same value is already one (the agent hands out the credential the
    /// caller got, moto's answer carries it too).
    fn secret(&mut self, kind: &str, value: &str) {
        if !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.secrets.push(Secret::new(kind, value));
        }
    }

    fn written(&mut self, what: &str, text: String) {
        self.written.push((what.to_owned(), text));
    }

    /// Keeps the body of an answer that is an error.
    fn answer(&mut self, what: &str, status: u16, body: &serde_json::Value) {
        if status >= 400 {
            self.written(&format!("the {status} body of {what}"), body.to_string());
        }
    }

    /// `/metrics` and the published JWKS of a bridge; its signing keys, as secrets.
    async fn bridge(&mut self, name: &str, stack: &Stack) {
        let get = |path: &str| {
            let request = stack.http.get(stack.bridge.url(path)).send();
            async move { request.await.unwrap().text().await.unwrap() }
        };
        let metrics = get("/metrics").await;
        assert!(metrics.contains("stsbridge_exchanges_total"), "{metrics}");
        self.written(&format!("the {name} bridge's /metrics"), metrics);
        let jwks = get("/.well-known/jwks.json").await;
        let mut keys = 0;
        for entry in std::fs::read_dir(stack.dir.path().join("keys")).unwrap() {
            let pem = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            self.secrets.push(Secret::private_key(
                &format!("{name} bridge's signing key"),
                &pem,
                &[&jwks],
            ));
            keys += 1;
        }
        assert!(keys > 0, "the {name} bridge has a key file");
    }

    /// Stops the bridge and keeps its stdout, stderr and audit file.
    async fn stopped(&mut self, name: &str, stack: &mut Stack) -> Vec<serde_json::Value> {
        stack.bridge.stop().await;
        self.written(
            &format!("the {name} bridge's stdout"),
            stack.bridge.stdout(),
        );
        self.written(&format!("the {name} bridge's log"), stack.bridge.stderr());
        let audit = std::fs::read_to_string(stack.dir.path().join("audit.jsonl")).unwrap();
        let events = audit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        self.written(&format!("the {name} bridge's audit file"), audit);
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_appears_in_anything_the_servers_wrote() {
    let collector = Collector::start().await;
    let otlp = collector.endpoint();
    let env = || {
        vec![
            ("STSBRIDGE_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ]
    };
    let audit = Some("{ file: audit.jsonl }");
    let mut evidence = Evidence::default();

    // AWS on moto: one hop, a chained hop, and the same credential as credential_process.
    let proxy = RecordingProxy::start(&moto().endpoint).await;
    let mut stack = Stack::start(Setup {
        sts: Some(&proxy.endpoint),
        env: env(),
        audit,
        ..Setup::default()
    })
    .await;
    let main = stack.main_token();
    evidence.secret("subject token", &main);
    for target in ["deploy", "cross", "deploy?format=credential_process"] {
        let (status, creds, _) = stack.credentials(target, &main).await;
        assert_eq!(status, 200, "{creds}");
        evidence.secret(
            "secret access key",
            creds["SecretAccessKey"].as_str().unwrap(),
        );
        let session = creds["Token"]
            .as_str()
            .or(creds["SessionToken"].as_str())
            .unwrap();
        evidence.secret("session token", session);
    }
    // What moto was shown and what it answered: the assertions stsbridge minted for the first
    // hops, and every credential moto handed out, the chained hop's intermediate one included.
    let calls = proxy.take();
    let forms: Vec<_> = calls.iter().map(|c| c.form.clone()).collect();
    let assertions: Vec<&String> = forms
        .iter()
        .filter_map(|f| f.get("WebIdentityToken"))
        .collect();
    assert_eq!(
        assertions.len(),
        2,
        "deploy and cross's first hop: {forms:?}"
    );
    for assertion in assertions {
        evidence.secret("minted assertion", assertion);
    }
    assert!(
        forms
            .iter()
            .any(|f| f.get("Action").map(String::as_str) == Some("AssumeRole")),
        "the chained hop reached moto: {forms:?}"
    );
    let answers: Vec<String> = calls.iter().map(|c| c.response.clone()).collect();
    let handed_out: Vec<(String, String)> = answers
        .iter()
        .flat_map(|xml| {
            sts::elements(xml, "SecretAccessKey")
                .into_iter()
                .zip(sts::elements(xml, "SessionToken"))
        })
        .collect();
    assert_eq!(handed_out.len(), 3, "deploy, cross's two hops: {answers:?}");
    // The callers got deploy's and cross's last hop; the one left is what stsbridge signed the
    // chained hop with.
    let intermediate: Vec<&(String, String)> = handed_out
        .iter()
        .filter(|(secret, _)| !evidence.values.contains(secret))
        .collect();
    assert_eq!(intermediate.len(), 1, "{handed_out:?}");
    for (secret, session) in intermediate {
        evidence.secret("chained hop's intermediate secret access key", secret);
        evidence.secret("chained hop's intermediate session token", session);
    }

    let subject = stack.idp.token("svc:alice", json!({}));
    let actor = stack.idp.token("svc:gateway", json!({}));
    evidence.secret("subject token", &subject);
    evidence.secret("actor token", &actor);
    let (status, body) = stack
        .exchange(
            &subject,
            "api",
            &[("actor_token", &actor), ("actor_token_type", JWT)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    evidence.secret("minted token", body["access_token"].as_str().unwrap());

    // Refusals: a denied token, an expired one, a tampered one. The tampered token is the subject
    // token but for its last character: the subject token's claims and signature windows stand for
    // it (as a secret of its own, it would share all of them, and neither would be searched).
    let mallory = stack.idp.token("svc:mallory", json!({}));
    let expired = stack
        .idp
        .token("svc:alice", json!({ "iat": 1_000, "exp": 1_600 }));
    let tampered = format!("{}x", &subject[..subject.len() - 1]);
    for token in [&mallory, &expired, &tampered] {
        let (status, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
        assert!(status == 401 || status == 403, "{status} {body}");
        evidence.answer("a refusal", status, &body);
        if *token != tampered {
            evidence.secret("refused token", token);
        }
    }
    let (status, body) = stack.exchange(&tampered, "api", &[]).await;
    assert_eq!(status, 401);
    evidence.answer("a refused exchange", status, &body);

    // An upstream error on a second bridge: the assertion it minted must not be written either.
    let stand_in = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(sts::error("InvalidIdentityToken", "no")),
        )
        .mount(&stand_in)
        .await;
    let mut failing = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        env: env(),
        audit,
        ..Setup::default()
    })
    .await;
    let token = failing.main_token();
    let (status, body, _) = failing.credentials("deploy", &token).await;
    assert_eq!(status, 502);
    evidence.answer("an upstream error", status, &body);
    evidence.secret("subject token", &token);
    let sent = stand_in.received_requests().await.unwrap();
    evidence.secret(
        "minted assertion",
        &stsbridge_e2e::clouds::parse_form(&sent[0].body)["WebIdentityToken"],
    );

    // GCP (with impersonation) and Azure through a third bridge: the tokens the clouds returned and
    // the assertions stsbridge showed them.
    let google = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/v1/token"))
        .respond_with(stsbridge_e2e::clouds::gcp_sts_token(
            "ya29.federated-leak-canary-0123456789",
            3600,
        ))
        .mount(&google)
        .await;
    let expire =
        stsbridge::audit::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    Mock::given(wiremock::matchers::path_regex(":generateAccessToken$"))
        .respond_with(stsbridge_e2e::clouds::gcp_access_token(
            "ya29.impersonated-leak-canary-0123456789",
            &expire,
        ))
        .mount(&google)
        .await;
    let entra = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(stsbridge_e2e::clouds::entra_token(
            "eyJ.entra-leak-canary-0123456789.sig",
            3600,
        ))
        .mount(&entra)
        .await;
    let mut clouds = Stack::start(Setup {
        gcp: Some(&google.uri()),
        azure: Some(&entra.uri()),
        env: env(),
        audit,
        ..Setup::default()
    })
    .await;
    let token = clouds.main_token();
    for target in ["gcs", "blob"] {
        assert_eq!(clouds.credentials(target, &token).await.0, 200, "{target}");
    }
    evidence.secret("subject token", &token);
    evidence.secret(
        "GCP federated token",
        "ya29.federated-leak-canary-0123456789",
    );
    evidence.secret(
        "GCP service account token",
        "ya29.impersonated-leak-canary-0123456789",
    );
    evidence.secret("Entra token", "eyJ.entra-leak-canary-0123456789.sig");
    let mut shown = 0;
    for (server, field) in [(&google, "subject_token"), (&entra, "client_assertion")] {
        for request in server.received_requests().await.unwrap() {
            if let Some(assertion) = stsbridge_e2e::clouds::form_field(&request, field) {
                evidence.secret("minted assertion", &assertion);
                shown += 1;
            }
        }
    }
    assert_eq!(shown, 2, "both clouds were shown an assertion");

    // The agent in front of the first bridge, at debug level too.
    let token_file = stack.dir.path().join("agent-token");
    std::fs::write(&token_file, format!("{main}\n")).unwrap();
    let mut agent = stsbridge_e2e::BridgeProcess::spawn(
        crate::BIN,
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
            stack.dir.path().join("agent").to_str().unwrap(),
        ],
        &env(),
    )
    .await;
    let agent_secret = std::fs::read_to_string(
        stack
            .dir
            .path()
            .join("agent/aws-container-authorization-token"),
    )
    .unwrap();
    evidence.secret("agent secret", &agent_secret);
    let r = stack
        .http
        .get(agent.url("/aws/credentials"))
        .header("Authorization", &agent_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let creds: serde_json::Value = r.json().await.unwrap();
    evidence.secret(
        "secret access key",
        creds["SecretAccessKey"].as_str().unwrap(),
    );
    evidence.secret("session token", creds["Token"].as_str().unwrap());
    let r = stack
        .http
        .get(agent.url("/aws/credentials"))
        .header("Authorization", "not the agent secret")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    evidence.written("the agent's refusal", r.text().await.unwrap());
    assert!(status == 401 || status == 403, "{status}");

    // Everything the servers wrote, once they have stopped and flushed it.
    evidence.bridge("first", &stack).await;
    evidence.bridge("failing", &failing).await;
    evidence.bridge("clouds", &clouds).await;
    agent.stop().await;
    assert!(
        agent.stderr().contains("fetched a credential"),
        "the agent logged its fetch"
    );
    evidence.written("the agent's stdout", agent.stdout());
    evidence.written("the agent's log", agent.stderr());
    let events = evidence.stopped("first", &mut stack).await;
    // Eight decisions: the first refusal from this address is written in full, the two after it
    // are counted in the summary written at shutdown.
    assert_eq!(events.len(), 8, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "validation_failures_summarized"),
        "{events:?}"
    );
    assert!(
        stack.bridge.stderr().contains("DEBUG"),
        "the log level under test is debug"
    );
    assert_eq!(evidence.stopped("failing", &mut failing).await.len(), 1);
    assert_eq!(evidence.stopped("clouds", &mut clouds).await.len(), 2);
    let spans = collector.spans().await;
    for name in [
        "validate",
        "validate_actor",
        "map",
        "render",
        "upstream",
        "mint",
    ] {
        assert!(
            spans.iter().any(|s| s.name == name),
            "the collector received a {name} span"
        );
    }
    evidence.written(
        "the spans the OTLP collector received",
        // Protobuf carries strings as they are: the bytes, read as text, contain every value.
        collector
            .bodies()
            .await
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    );

    assert!(
        evidence
            .written
            .iter()
            .filter(|(w, _)| w.contains("body"))
            .count()
            >= 5,
        "the error bodies were kept"
    );
    let found: Vec<String> = evidence
        .written
        .iter()
        .flat_map(|(what, text)| find_secrets(what, text, &evidence.secrets))
        .collect();
    assert!(
        found.is_empty(),
        "{} leaks of the {} secrets:\n{}",
        found.len(),
        evidence.secrets.len(),
        found.join("\n")
    );
}
