//! RFC 8693 token exchange: internal audience-bound JWTs, narrowed scopes, delegation.

use crate::{GRANT, JWT, Setup, Stack, verify_with_bridge_jwks, verify_with_jwks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_discovery_and_jwks_verify_a_token_stsbridge_signed() {
    let stack = Stack::start(Setup::default()).await;
    let subject = stack.idp.token("svc:alice", serde_json::json!({}));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (code, out, err) = crate::cli::run(
        stack.dir.path(),
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
    assert!(out.contains("keys rotate"), "{out}");
    let site = stack.dir.path().join("site");
    let discovery: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join(".well-known/openid-configuration")).unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], stsbridge_e2e::BRIDGE_URL);
    // The JWKS is where the discovery document says, relative to the issuer URL.
    let jwks_path = discovery["jwks_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(stsbridge_e2e::BRIDGE_URL)
        .unwrap()
        .trim_start_matches('/');
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&std::fs::read(site.join(jwks_path)).unwrap()).unwrap();
    let claims = verify_with_jwks(&jwks, body["access_token"].as_str().unwrap(), "billing-api");
    assert_eq!(claims["sub"], "ci:svc:alice");
    // The same documents as the service serves.
    assert_eq!(
        stack.get_json("/.well-known/openid-configuration").await,
        discovery
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minted_token_verifies_against_stsbridge_jwks() {
    let stack = Stack::start(Setup::default()).await;
    let subject = stack.idp.token("svc:alice", serde_json::json!({}));
    let (status, body) = stack
        .exchange(&subject, "api", &[("scope", "billing:read")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "billing:read");
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!((290..=300).contains(&expires_in), "{expires_in}");
    let claims = verify_with_bridge_jwks(
        &stack,
        body["access_token"].as_str().unwrap(),
        "billing-api",
    )
    .await;
    assert_eq!(claims["sub"], "ci:svc:alice");
    assert_eq!(claims["scope"], "billing:read");
    assert!(claims.get("act").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_token_becomes_act_and_scopes_never_widen() {
    let stack = Stack::start(Setup::default()).await;
    let subject = stack.idp.token("svc:alice", serde_json::json!({}));
    let actor = stack.idp.token("svc:gateway", serde_json::json!({}));
    let (status, body) = stack.exchange_for(&subject, "api", &actor).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_bridge_jwks(
        &stack,
        body["access_token"].as_str().unwrap(),
        "billing-api",
    )
    .await;
    assert_eq!(claims["act"]["sub"], "svc:gateway");
    assert_eq!(claims["act"]["iss"], stack.idp.issuer);
    assert_eq!(claims["scope"], "billing:read billing:write");

    let (status, body) = stack
        .exchange(&subject, "api", &[("scope", "billing:admin")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exchange_requests_are_400() {
    let stack = Stack::start(Setup::default()).await;
    let subject = stack.idp.token("svc:alice", serde_json::json!({}));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "api"),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "api"),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token_type", JWT),
            ("audience", "api"),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("audience", "api"),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
        ],
        vec![
            ("grant_type", GRANT),
            ("grant_type", GRANT),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "api"),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "api"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ],
    ];
    for fields in cases {
        let (status, body) = stack.token_exchange(&fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
        assert_eq!(body["error"], "invalid_request", "{fields:?}");
    }
    // AWS targets are served in their own shape, not as RFC 8693 tokens.
    let main = stack.main_token();
    let (status, body) = stack.exchange(&main, "deploy", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("/v1/credentials/deploy")
    );
}
