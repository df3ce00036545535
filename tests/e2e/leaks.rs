//! Nothing secret in anything the server wrote: a full round of exchanges (AWS on moto, a chained
//! hop, RFC 8693 with delegation, refusals, an upstream error) at debug log level, then every line
//! of stdout (audit) and stderr (logs) is searched for every token received and every secret
//! handed out.

use std::time::Duration;

use serde_json::json;
use stsbridge_e2e::moto::moto;
use stsbridge_e2e::{assert_no_secrets, sts};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{JWT, Setup, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_appears_in_anything_the_server_wrote() {
    let moto = moto();
    let stack = Stack::start(Setup {
        sts: Some(&moto.endpoint),
        env: vec![("STSBRIDGE_LOG", "debug")],
        ..Setup::default()
    })
    .await;
    let mut secrets: Vec<(&str, String)> = Vec::new();

    let main = stack.main_token();
    secrets.push(("subject token", main.clone()));
    for target in ["deploy", "cross", "deploy?format=credential_process"] {
        let (status, creds, _) = stack.credentials(target, &main).await;
        assert_eq!(status, 200, "{creds}");
        secrets.push((
            "secret access key",
            creds["SecretAccessKey"].as_str().unwrap().to_owned(),
        ));
        let session = creds["Token"]
            .as_str()
            .or(creds["SessionToken"].as_str())
            .unwrap();
        secrets.push(("session token", session.to_owned()));
    }

    let subject = stack.idp.token("svc:alice", json!({}));
    let actor = stack.idp.token("svc:gateway", json!({}));
    secrets.push(("subject token", subject.clone()));
    secrets.push(("actor token", actor.clone()));
    let (status, body) = stack
        .exchange(
            &subject,
            "api",
            &[("actor_token", &actor), ("actor_token_type", JWT)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    secrets.push((
        "minted token",
        body["access_token"].as_str().unwrap().to_owned(),
    ));

    // Refusals: a denied token, an expired one, a tampered one.
    let mallory = stack.idp.token("svc:mallory", json!({}));
    let expired = stack
        .idp
        .token("svc:alice", json!({ "iat": 1_000, "exp": 1_600 }));
    let tampered = format!("{}x", &subject[..subject.len() - 1]);
    for token in [&mallory, &expired, &tampered] {
        let (status, _, _) = stack.credentials("api", &format!("Bearer {token}")).await;
        assert!(status == 401 || status == 403);
        secrets.push(("refused token", token.to_string()));
    }
    let (status, _) = stack.exchange(&tampered, "api", &[]).await;
    assert_eq!(status, 401);

    // An upstream error on a second bridge: the assertion it minted must not be logged either.
    let stand_in = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(sts::error("InvalidIdentityToken", "no")),
        )
        .mount(&stand_in)
        .await;
    let failing = Stack::start(Setup {
        sts: Some(&stand_in.uri()),
        env: vec![("STSBRIDGE_LOG", "debug")],
        ..Setup::default()
    })
    .await;
    let token = failing.main_token();
    assert_eq!(failing.credentials("deploy", &token).await.0, 502);
    let sent =
        String::from_utf8(stand_in.received_requests().await.unwrap()[0].body.clone()).unwrap();
    let assertion = reqwest::Url::parse(&format!("http://x/?{sent}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "WebIdentityToken")
        .unwrap()
        .1
        .into_owned();
    let mut failing_secrets = vec![("subject token", token), ("minted assertion", assertion)];

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
    let clouds = Stack::start(Setup {
        gcp: Some(&google.uri()),
        azure: Some(&entra.uri()),
        env: vec![("STSBRIDGE_LOG", "debug")],
        ..Setup::default()
    })
    .await;
    let token = clouds.main_token();
    for target in ["gcs", "blob"] {
        assert_eq!(clouds.credentials(target, &token).await.0, 200, "{target}");
    }
    let mut cloud_secrets = vec![
        ("subject token", token),
        (
            "GCP federated token",
            "ya29.federated-leak-canary-0123456789".to_owned(),
        ),
        (
            "GCP service account token",
            "ya29.impersonated-leak-canary-0123456789".to_owned(),
        ),
        (
            "Entra token",
            "eyJ.entra-leak-canary-0123456789.sig".to_owned(),
        ),
    ];
    for (server, field) in [(&google, "subject_token"), (&entra, "client_assertion")] {
        for request in server.received_requests().await.unwrap() {
            if let Some(assertion) = stsbridge_e2e::clouds::form_field(&request, field) {
                cloud_secrets.push(("minted assertion", assertion));
            }
        }
    }
    assert!(
        cloud_secrets.len() >= 6,
        "both clouds were shown an assertion"
    );

    // The agent in front of the first bridge, at debug level too.
    let token_file = stack.dir.path().join("agent-token");
    std::fs::write(&token_file, format!("{main}\n")).unwrap();
    let agent = stsbridge_e2e::BridgeProcess::spawn(
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
        &[("STSBRIDGE_LOG", "debug")],
    )
    .await;
    let agent_secret = std::fs::read_to_string(
        stack
            .dir
            .path()
            .join("agent/aws-container-authorization-token"),
    )
    .unwrap();
    let r = stack
        .http
        .get(agent.url("/aws/credentials"))
        .header("Authorization", &agent_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let creds: serde_json::Value = r.json().await.unwrap();
    let agent_secrets = vec![
        ("subject token", main.clone()),
        ("agent secret", agent_secret.clone()),
        (
            "secret access key",
            creds["SecretAccessKey"].as_str().unwrap().to_owned(),
        ),
        ("session token", creds["Token"].as_str().unwrap().to_owned()),
    ];

    // The signing keys themselves.
    for stack in [&stack, &failing] {
        for entry in std::fs::read_dir(stack.dir.path().join("keys")).unwrap() {
            let pem = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in pem.lines().filter(|l| !l.starts_with("-----")).take(3) {
                failing_secrets.push(("signing key material", line.to_owned()));
                secrets.push(("signing key material", line.to_owned()));
            }
        }
    }

    // Everything the servers wrote has been captured: every decision's audit line is in.
    // Eight decisions; the two refusals after the first from this address are counted in a
    // summary, written at the end of its interval.
    stack.bridge.audit_events_at_least(6).await;
    failing.bridge.audit_events_at_least(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        stack.bridge.stderr().contains("DEBUG"),
        "the log level under test is debug"
    );
    assert_no_secrets("the audit stream", &stack.bridge.stdout(), &secrets);
    assert_no_secrets("the log", &stack.bridge.stderr(), &secrets);
    assert_no_secrets(
        "the audit stream",
        &failing.bridge.stdout(),
        &failing_secrets,
    );
    assert_no_secrets("the log", &failing.bridge.stderr(), &failing_secrets);
    clouds.bridge.audit_events_at_least(2).await;
    assert_no_secrets("the audit stream", &clouds.bridge.stdout(), &cloud_secrets);
    assert_no_secrets("the log", &clouds.bridge.stderr(), &cloud_secrets);
    assert_no_secrets("the agent's output", &agent.stdout(), &agent_secrets);
    assert_no_secrets("the agent's log", &agent.stderr(), &agent_secrets);
    assert!(
        agent.stderr().contains("fetched a credential"),
        "the agent logged its fetch"
    );
}
