//! Sender-constrained tokens: a token minted for a `bind: mtls` target carries the caller's TLS
//! client certificate (RFC 8705 `cnf.x5t#S256`), and any token carrying `cnf` is accepted only
//! over a connection that proves it.

use serde_json::{Value, json};
use stsbridge_e2e::tls::{client_pki, https_client, localhost_pki, tls_config};

use crate::{GRANT, JWT, Setup, Stack};

/// `api` for services, `bound` (mTLS-bound) for them too, and minted tokens accepted back for
/// `api`; the operator may introspect.
const MAPPINGS: &str = r#"
version: 1
targets:
  - name: api
    jwt: { audience: billing-api, lifetime: 5m }
  - name: bound
    jwt: { audience: vault, lifetime: 5m, bind: mtls }
rules:
  - name: services
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [api, bound]
  - name: minted-back
    issuer: stsbridge
    subject: { glob: "*" }
    allow: [api]
  - name: operators
    issuer: ci
    subject: "ops:admin"
    allow: [stsbridge:introspect]
"#;

/// The base64url SHA-256 of a PEM certificate's DER, by the openssl command line (not stsbridge's
/// code).
fn openssl_thumbprint(cert_pem: &str) -> String {
    use std::io::Write as _;
    let mut der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    der.stdin
        .take()
        .unwrap()
        .write_all(cert_pem.as_bytes())
        .unwrap();
    let der = der.wait_with_output().unwrap();
    assert!(der.status.success());
    let mut digest = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    digest.stdin.take().unwrap().write_all(&der.stdout).unwrap();
    let digest = digest.wait_with_output().unwrap();
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        digest.stdout,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_bound_token_names_its_certificate_and_works_only_over_it() {
    let server = localhost_pki();
    let clients = client_pki(&["runner-a.ci.internal", "runner-b.ci.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_config(
        dir.path(),
        &server,
        &clients.ca_pem,
        ", client_auth: optional",
    );
    let stack = Stack::start(Setup {
        extra: &tls,
        mappings: Some(MAPPINGS),
        ..Setup::default()
    })
    .await;
    let (a, b, none) = (
        https_client(&server, Some(&clients.identities[0])),
        https_client(&server, Some(&clients.identities[1])),
        https_client(&server, None),
    );
    let exchange = |c: reqwest::Client, target: &'static str| {
        let url = stack.bridge.url("/oauth2/token");
        let subject = stack.idp.token("svc:runner", json!({}));
        async move {
            let r = c
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
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // Minted over certificate A: cnf names A, as openssl computes it.
    let (status, minted) = exchange(a.clone(), "bound").await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["access_token"].as_str().unwrap().to_owned();
    let cert_a = clients.identities[0]
        .split("-----BEGIN PRIVATE KEY-----")
        .next()
        .unwrap();
    assert_eq!(
        crate::jwt_claims(&token)["cnf"],
        json!({ "x5t#S256": openssl_thumbprint(cert_a) })
    );
    // A caller over B gets its own token (the binding is part of the cache key).
    let (status, other) = exchange(b.clone(), "bound").await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(
        crate::jwt_claims(other["access_token"].as_str().unwrap())["cnf"],
        crate::jwt_claims(&token)["cnf"]
    );
    // Without a certificate: refused, saying why. Unbound targets still work without one.
    let (status, body) = exchange(none.clone(), "bound").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("needs a client certificate"),
        "{body}"
    );
    assert_eq!(exchange(none.clone(), "api").await.0, 200);

    // Presented back as a subject token: only over certificate A.
    let present = |c: reqwest::Client| {
        let url = stack.bridge.url("/v1/credentials/api");
        let token = token.clone();
        async move {
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for (who, c) in [
        ("certificate B", b.clone()),
        ("no certificate", none.clone()),
    ] {
        let (status, body) = present(c).await;
        assert_eq!(status, 401, "{who}: {body}");
        assert_eq!(body["error"], "invalid_token");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .ends_with("(binding_mismatch)"),
            "{who}: {body}"
        );
        let event = stack
            .bridge
            .audit_event(body["decision_id"].as_str().unwrap())
            .await;
        assert_eq!(event["reason"], "binding_mismatch", "{who}");
    }
    let (status, body) = present(a.clone()).await;
    assert_eq!(status, 200, "{body}");

    // Introspection shows the binding.
    let r = none
        .post(stack.bridge.url("/oauth2/introspect"))
        .bearer_auth(stack.idp.token("ops:admin", json!({})))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["cnf"], crate::jwt_claims(&token)["cnf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_token_carrying_cnf_needs_its_proof() {
    let stack = Stack::start(Setup::default()).await;
    // A partner token bound to a certificate, presented without one; and a binding this
    // service cannot check (a DPoP key thumbprint with no proof).
    for cnf in [
        json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }),
        json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }),
        json!("not an object"),
    ] {
        let token = stack.idp.token("svc:alice", json!({ "cnf": cnf }));
        let (status, body, _) = stack.credentials("api", &format!("Bearer {token}")).await;
        assert_eq!(status, 401, "{cnf}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .ends_with("(binding_mismatch)"),
            "{body}"
        );
        // As an actor token too.
        let subject = stack.idp.token("svc:alice", json!({}));
        let (status, body) = stack.exchange_for(&subject, "api", &token).await;
        assert_eq!(status, 401, "{cnf} as actor: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("actor token:"),
            "{body}"
        );
    }
    // The same partner token without cnf is fine.
    let token = stack.idp.token("svc:alice", json!({}));
    assert_eq!(
        stack.credentials("api", &format!("Bearer {token}")).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_can_name_the_spiffe_id_of_the_callers_certificate() {
    use rcgen::SanType;
    let uri = |u: &str| SanType::URI(u.try_into().unwrap());
    let server = localhost_pki();
    let clients = stsbridge_e2e::tls::client_pki_sans(&[
        vec![uri("spiffe://acme.test/ns/payments/sa/api")],
        vec![uri("spiffe://acme.test/ns/payments/sa/batch")],
        vec![SanType::DnsName(
            "api.payments.acme.test".try_into().unwrap(),
        )],
    ]);
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_config(dir.path(), &server, &clients.ca_pem, "");
    let mappings = crate::MAPPINGS.replace(
        "targets:\n",
        "targets:\n  - name: ledger\n    jwt: { audience: ledger, lifetime: 5m }\n",
    ) + "  - name: payments-api-workload\n    issuer: ci\n    subject: { glob: \"svc:*\" }\n    client_spiffe_id: { glob: \"spiffe://acme.test/ns/payments/sa/api\" }\n    allow: [ledger]\n";
    let stack = Stack::start(Setup {
        extra: &tls,
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let token = stack.idp.token("svc:payments", json!({}));
    let ask = |identity: &str| {
        let c = https_client(&server, Some(identity));
        let url = stack.bridge.url("/v1/credentials/ledger");
        let token = token.clone();
        async move {
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask(&clients.identities[0]).await;
    assert_eq!(status, 200, "{body}");
    for (who, identity) in [
        ("another SPIFFE ID", &clients.identities[1]),
        ("DNS names only", &clients.identities[2]),
    ] {
        let (status, body) = ask(identity).await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    // The audit event carries the SPIFFE ID.
    let events = stack.bridge.audit_events();
    assert!(
        events.iter().any(|e| e["caller"]["client_spiffe_id"]
            == "spiffe://acme.test/ns/payments/sa/api"
            && e["outcome"] == "allow"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_and_the_agent_present_a_client_certificate() {
    let sts = wiremock::MockServer::start().await;
    let expiration = stsbridge::audit::rfc3339(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(
            stsbridge_e2e::sts::web_identity_success(
                "arn:aws:sts::111111111111:assumed-role/deploy/gh-42",
                "ASIAMTLSCLIENT000001",
                "mtls-client-secret-00000000000000000000",
                "mtls-client-session-000000000000000000000000",
                &expiration,
            ),
        ))
        .mount(&sts)
        .await;
    let server = localhost_pki();
    let clients = client_pki(&["deployer.acme.internal"]);
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_config(dir.path(), &server, &clients.ca_pem, "");
    let stack = Stack::start(Setup {
        sts: Some(&sts.uri()),
        extra: &tls,
        ..Setup::default()
    })
    .await;
    let files = stack.dir.path();
    let (cert, key) = clients.identities[0]
        .split_once("-----BEGIN PRIVATE KEY-----")
        .unwrap();
    std::fs::write(files.join("client.pem"), cert).unwrap();
    std::fs::write(
        files.join("client.key"),
        format!("-----BEGIN PRIVATE KEY-----{key}"),
    )
    .unwrap();
    std::fs::write(files.join("server-ca.pem"), &server.ca_pem).unwrap();
    std::fs::write(files.join("token"), stack.main_token()).unwrap();
    let base = [
        "credential-process",
        "--bridge",
        &stack.bridge.base,
        "--target",
        "deploy",
        "--token-file",
        "token",
        "--ca-file",
        "server-ca.pem",
    ];
    let (code, out, err) = crate::cli::run(
        files,
        &[
            &base[..],
            &["--client-cert", "client.pem", "--client-key", "client.key"],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let creds: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(creds["AccessKeyId"], "ASIAMTLSCLIENT000001");
    // Without the certificate the listener refuses the TLS session.
    let (code, out, err) = crate::cli::run(files, &base);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("cannot reach stsbridge"), "{err}");
    // A certificate without its key is a usage error.
    let (code, _, err) = crate::cli::run(
        files,
        &[&base[..], &["--client-cert", "client.pem"]].concat(),
    );
    assert_eq!(code, 2, "{err}");

    // The agent, with the same certificate, serves the AWS SDK's container credentials.
    let state = files.join("agent-state");
    let agent = stsbridge_e2e::BridgeProcess::spawn(
        crate::BIN,
        files,
        &[
            "agent",
            "--bridge",
            &stack.bridge.base,
            "--token-file",
            "token",
            "--listen",
            "127.0.0.1:0",
            "--aws-target",
            "deploy",
            "--ca-file",
            "server-ca.pem",
            "--client-cert",
            "client.pem",
            "--client-key",
            "client.key",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let secret = std::fs::read_to_string(state.join("aws-container-authorization-token")).unwrap();
    let r = reqwest::Client::new()
        .get(agent.url("/aws/credentials"))
        .header("Authorization", secret.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let creds: Value = r.json().await.unwrap();
    assert_eq!(creds["AccessKeyId"], "ASIAMTLSCLIENT000001");
}

/// A DPoP proof made by jwcrypto in the test venv (`tests/interop/dpop_proof.py`): `{proof, jkt,
/// key}`.
fn dpop(spec: Value) -> Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new(stsbridge_e2e::moto::python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/dpop_proof.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const DPOP_MAPPINGS: &str = r#"
version: 1
targets:
  - name: api
    jwt: { audience: billing-api, lifetime: 5m }
  - name: held
    jwt: { audience: orders-api, lifetime: 5m, bind: dpop }
rules:
  - name: services
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [api, held]
  - name: minted-back
    issuer: stsbridge
    subject: { glob: "*" }
    allow: [api]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_proofs_bind_minted_tokens_and_every_bad_proof_is_refused_with_its_reason() {
    let stack = Stack::start(Setup {
        mappings: Some(DPOP_MAPPINGS),
        ..Setup::default()
    })
    .await;
    let token_url = stack.bridge.url("/oauth2/token");
    let exchange = |target: &'static str, proof: Option<String>| {
        let (http, url) = (stack.http.clone(), token_url.clone());
        let subject = stack.idp.token("svc:runner", json!({}));
        async move {
            let mut r = http.post(url).form(&[
                ("grant_type", GRANT),
                ("subject_token", subject.as_str()),
                ("subject_token_type", JWT),
                ("audience", target),
            ]);
            if let Some(p) = proof {
                r = r.header("DPoP", p);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let proof_for = |extra: Value| {
        let mut spec = json!({ "htm": "POST", "htu": token_url });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        dpop(spec)
    };

    // A valid proof: the token is bound to its key, and says so.
    let made = proof_for(json!({}));
    let (status, minted) = exchange("held", Some(made["proof"].as_str().unwrap().into())).await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["token_type"], "DPoP");
    let held = minted["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::jwt_claims(&held)["cnf"],
        json!({ "jkt": made["jkt"] })
    );
    // Each algorithm of the allowlist.
    for alg in ["RS256", "EdDSA"] {
        let made = proof_for(json!({ "alg": alg }));
        let (status, body) = exchange("held", Some(made["proof"].as_str().unwrap().into())).await;
        assert_eq!(status, 200, "{alg}: {body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            crate::jwt_claims(token)["cnf"],
            json!({ "jkt": made["jkt"] }),
            "{alg}"
        );
    }
    // No proof where the target needs one.
    let (status, body) = exchange("held", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("needs a DPoP proof")
    );

    // Every bad proof: 400 invalid_dpop_proof, saying what was wrong.
    let reused = proof_for(json!({ "jti": "used-once" }))["proof"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(exchange("api", Some(reused.clone())).await.0, 200);
    let cases = [
        (
            "wrong htm",
            proof_for(json!({ "htm": "GET" }))["proof"].clone(),
            "htm must be POST",
        ),
        (
            "wrong htu",
            proof_for(json!({ "htu": stack.bridge.url("/oauth2/other") }))["proof"].clone(),
            "htu must be",
        ),
        (
            "stale iat",
            proof_for(json!({ "iat_offset": -3600 }))["proof"].clone(),
            "iat is older",
        ),
        (
            "future iat",
            proof_for(json!({ "iat_offset": 3600 }))["proof"].clone(),
            "iat is in the future",
        ),
        ("reused jti", json!(reused), "already used"),
        (
            "alg none",
            proof_for(json!({ "alg": "none" }))["proof"].clone(),
            "alg \"none\" is not allowed",
        ),
        (
            "HMAC",
            proof_for(json!({ "alg": "HS256" }))["proof"].clone(),
            "alg \"HS256\" is not allowed",
        ),
        (
            "private key in jwk",
            proof_for(json!({ "private_jwk": true }))["proof"].clone(),
            "private key material",
        ),
        (
            "another key signed it",
            proof_for(json!({ "signer": "other" }))["proof"].clone(),
            "does not verify",
        ),
        (
            "wrong typ",
            proof_for(json!({ "typ": "JWT" }))["proof"].clone(),
            "typ must be dpop+jwt",
        ),
        (
            "wrong ath",
            proof_for(json!({ "ath": "not-the-hash" }))["proof"].clone(),
            "ath is not the hash",
        ),
        ("not a JWS", json!("garbage"), "not a compact JWS"),
    ];
    for (what, proof, reason) in cases {
        let (status, body) = exchange("held", Some(proof.as_str().unwrap().into())).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{what}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(reason), "{what}: {description}");
    }

    // The bound token presented back: only with a proof by its key covering it (ath).
    let credentials_url = stack.bridge.url("/v1/credentials/api");
    let present = |proof: Option<Value>| {
        let (http, url, token) = (stack.http.clone(), credentials_url.clone(), held.clone());
        async move {
            let mut r = http
                .get(url)
                .header("Authorization", format!("DPoP {token}"));
            if let Some(p) = proof {
                r = r.header("DPoP", p["proof"].as_str().unwrap());
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let same_key = |ath: Option<&str>| {
        let mut spec = json!({ "htm": "GET", "htu": credentials_url, "key": made["key"] });
        if let Some(t) = ath {
            spec["ath_token"] = json!(t);
        }
        dpop(spec)
    };
    let (status, body) = present(Some(same_key(Some(&held)))).await;
    assert_eq!(status, 200, "{body}");
    let other_key = dpop(json!({ "htm": "GET", "htu": credentials_url, "ath_token": held }));
    for (what, proof, status_want, reason) in [
        ("no proof", None, 401, "binding_mismatch"),
        (
            "a proof by another key",
            Some(other_key),
            401,
            "binding_mismatch",
        ),
        (
            "a proof without ath",
            Some(same_key(None)),
            400,
            "ath is missing",
        ),
    ] {
        let (status, body) = present(proof).await;
        assert_eq!(status, status_want, "{what}: {body}");
        assert!(
            body["error_description"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
    }
}
