//! The HTTP API's OpenAPI 3.1 document: the one checked into `examples/` is what the binary
//! derives from its handlers, the running service serves it, it names every endpoint of the
//! design, and schemathesis (PyPI) finds every answer of the running service documented: real
//! answers of every kind match it, and generated requests (with and without a valid token) get a
//! documented status, content type, headers and body, never a 5xx, with the service still up at
//! the end.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stsbridge_e2e::moto::{moto, python};
use stsbridge_e2e::run_ok;

use crate::{BIN, MAPPINGS, Setup, Stack, repo};

fn committed() -> String {
    std::fs::read_to_string(repo().join("examples/openapi.json")).unwrap()
}

/// Every endpoint of the design's HTTP API, with its methods.
const ENDPOINTS: [(&str, &[&str]); 11] = [
    ("/v1/credentials/{target}", &["get", "post"]),
    ("/oauth2/token", &["post"]),
    ("/oauth2/introspect", &["post"]),
    ("/v1/revocations", &["get", "post"]),
    ("/v1/revocations/{id}", &["delete"]),
    ("/.well-known/openid-configuration", &["get"]),
    ("/.well-known/jwks.json", &["get"]),
    ("/openapi.json", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
];

#[test]
fn the_checked_in_document_is_what_the_binary_derives_and_names_every_endpoint() {
    let (printed, _) = run_ok(Command::new(BIN).args(["schema", "openapi"]));
    assert!(
        printed == committed(),
        "examples/openapi.json is not what `stsbridge schema openapi` prints: regenerate it with \
         `cargo run -p stsbridge -- schema openapi > examples/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), ENDPOINTS.len(), "{:?}", paths.keys());
    for (path, methods) in ENDPOINTS {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for method in methods {
            let operation = &item[*method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            let responses = operation["responses"].as_object().unwrap();
            // Every operation that takes a token documents the refusal of a bad one, with the
            // error body and the header RFC 6750 asks for.
            if operation["security"].is_array() {
                let unauthorized = &responses["401"];
                assert_eq!(
                    unauthorized["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
                assert!(
                    unauthorized["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path}"
                );
            }
            // Every 429 and 503 that is a refusal says when to come back.
            for status in ["429", "503"] {
                if let Some(r) = responses.get(status)
                    && r["content"]["application/json"]["schema"]["$ref"]
                        == "#/components/schemas/ErrorBody"
                {
                    assert!(
                        r["headers"]["Retry-After"].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // The error body is exactly RFC 6749's three members.
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["additionalProperties"], false);
    let mut members: Vec<&str> = error["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["decision_id", "error", "error_description"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_documented_and_never_a_server_error() {
    // The main branch may also revoke and introspect, so that generated requests with its token
    // get past authentication into every handler.
    let mappings = MAPPINGS.replace(
        "allow: [deploy, cross, api, gcs, gcp-federated, blob, mgmt]",
        "allow: [deploy, cross, api, gcs, gcp-federated, blob, mgmt, \"stsbridge:revoke\", \"stsbridge:introspect\"]",
    );
    let mut stack = Stack::start(Setup {
        sts: Some(&moto().endpoint),
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let served = stack.get_text("/openapi.json").await;
    assert!(
        served == committed(),
        "/openapi.json is not examples/openapi.json"
    );

    let reports = tempfile::tempdir().unwrap();
    let script = repo().join("tests/openapi/fuzz.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .env("STSBRIDGE_URL", &stack.bridge.base)
        .env("STSBRIDGE_TOKEN", stack.main_token())
        .env("STSBRIDGE_FUZZ_REPORT", reports.path())
        .current_dir(reports.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/openapi/fuzz.py failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- stsbridge\n{}",
        stack.bridge.stderr()
    );
    println!("{stdout}");
    // Both runs happened and tested something.
    for run in ["authenticated", "unauthenticated"] {
        assert!(
            stdout.contains(&format!("== schemathesis, {run}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("real answers match the document"),
        "{stdout}"
    );

    // Still up, still answering, never panicked.
    assert!(
        stack
            .bridge
            .wait_exit(Duration::from_millis(100))
            .await
            .is_none(),
        "stsbridge exited during the run:\n{}",
        stack.bridge.stderr()
    );
    assert_eq!(stack.get_text("/healthz").await, "ok\n");
    assert!(!stack.bridge.stderr().contains("panicked"));
}
