//! The harness of the end-to-end suite (kanidm's testkit, rustls-test in spirit): a test IdP with
//! discovery and JWKS on loopback, the real `stsbridge` binary started on a port from the OS,
//! moto's STS server, and the STS wire formats for wiremock stubs. The tests themselves are in
//! `e2e/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a setup that fails must fail the test, loudly and at once"
)]

pub mod bridge;
pub mod clouds;
pub mod idp;
pub mod moto;
pub mod otlp;
pub mod sts;
pub mod tls;

pub use bridge::BridgeProcess;
pub use idp::TestIdp;

/// The audience every test token carries, and the issuer URL the bridge under test presents.
pub const BRIDGE_URL: &str = "https://stsbridge.test";

/// Fails the test if any of `secrets` occurs in `haystack`; `what` names the haystack. Only a
/// short prefix of a leaked value is printed.
pub fn assert_no_secrets(what: &str, haystack: &str, secrets: &[(&str, String)]) {
    for (kind, secret) in secrets {
        assert!(
            secret.len() >= 8,
            "{kind} is too short to search for reliably"
        );
        if haystack.contains(secret.as_str()) {
            panic!("{what} contains a {kind} (starting {:?})", &secret[..8]);
        }
    }
}
