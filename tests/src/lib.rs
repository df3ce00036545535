//! The harness of the end-to-end suite (kanidm's testkit, rustls-test in spirit): a test IdP with
//! discovery and JWKS on loopback, the real `stsbridge` binary started on a port from the OS,
//! moto's STS server (with a recording proxy and a SigV4 checker), the STS wire formats for
//! wiremock stubs, IAM's evaluation of the policies terraform/ writes, an OTLP collector
//! stand-in, a real Redis server for the shared state (`redis`), and the leak check (`secrets`). The tests themselves are in `e2e/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a setup that fails must fail the test, loudly and at once"
)]

pub mod bridge;
pub mod clouds;
pub mod iam;
pub mod idp;
pub mod moto;
pub mod otlp;
pub mod redis;
pub mod secrets;
pub mod sigv4;
pub mod sts;
pub mod tls;

pub use bridge::BridgeProcess;
pub use idp::TestIdp;
pub use secrets::{Secret, assert_no_secrets, find_secrets};

/// The audience every test token carries, and the issuer URL the bridge under test presents.
pub const BRIDGE_URL: &str = "https://stsbridge.test";

/// Sends `request` and reads the answer as JSON (`null` when it is not JSON); the request itself
/// must go through.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .expect("the request went through")
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Sends `request` and reads the answer as text; the request itself must go through.
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    request
        .send()
        .await
        .expect("the request went through")
        .text()
        .await
        .unwrap_or_default()
}

/// Runs `command`, which must start and succeed (the test fails with its stdout and stderr
/// otherwise): its stdout and stderr.
pub fn run_ok(command: &mut std::process::Command) -> (String, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (tests/run.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A port nobody listens on now: bound by the OS, read, released (for servers that take no
/// `:0`, such as redis-server and prometheus).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("addr").port()
}
