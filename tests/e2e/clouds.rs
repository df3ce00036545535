//! GCP and Azure through the HTTP API, against wire-exact stand-ins: the shapes each SDK expects,
//! the expiry the upstream gave, caching, the assertion each cloud received, and errors.

use std::time::{Duration, SystemTime};

use stsbridge_e2e::clouds::*;
use wiremock::{Mock, MockServer};

use crate::{Setup, Stack, verify_with_bridge_jwks};

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge";
const SA: &str = "writer@shop-prod.iam.gserviceaccount.com";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c";

fn rfc3339_in(secs: u64) -> String {
    stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(secs))
}

fn sts() -> GcpStsExchange {
    GcpStsExchange {
        audience: AUDIENCE.into(),
        scope: "https://www.googleapis.com/auth/cloud-platform".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_impersonation_returns_the_service_account_token_with_its_own_expiry() {
    let google = MockServer::start().await;
    Mock::given(sts())
        .respond_with(gcp_sts_token("federated-token-0123456789", 3599))
        .expect(1)
        .mount(&google)
        .await;
    Mock::given(GenerateAccessToken {
        email: SA.into(),
        bearer: "federated-token-0123456789".into(),
        scopes: vec!["https://www.googleapis.com/auth/devstorage.read_write".into()],
        lifetime: "1800s".into(),
    })
    .respond_with(gcp_access_token(
        "ya29.impersonated-token-0123456789",
        &rfc3339_in(1800),
    ))
    .expect(1)
    .mount(&google)
    .await;
    let stack = Stack::start(Setup {
        gcp: Some(&google.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();

    let (status, body, headers) = stack.credentials("gcs", &format!("Bearer {token}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["access_token"], "ya29.impersonated-token-0123456789");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["service_account"], SA);
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(
        (1790..=1800).contains(&expires_in),
        "the expiry of generateAccessToken, not of STS: {expires_in}"
    );

    // Cached: the second call makes no upstream call (the mocks expect exactly one each).
    let (status, again, _) = stack.credentials("gcs", &format!("Bearer {token}")).await;
    assert_eq!(status, 200);
    assert_eq!(again["access_token"], body["access_token"]);
    let events = stack.bridge.audit_events_at_least(2).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e["cache"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["miss", "hit"]
    );
    assert_eq!(events[0]["provider"], "gcp");

    // The assertion Google's STS received: stsbridge's, for the pool provider's default audience.
    let received = google.received_requests().await.unwrap();
    let assertion = form_field(&received[0], "subject_token").unwrap();
    let claims = verify_with_bridge_jwks(&stack, &assertion, &format!("https:{AUDIENCE}")).await;
    assert_eq!(claims["sub"], "target:gcs");
    assert!(claims["sub"].as_str().unwrap().len() <= 127);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_without_a_service_account_returns_the_federated_token() {
    let google = MockServer::start().await;
    Mock::given(sts())
        .respond_with(gcp_sts_token("federated-token-abcdefghij", 3000))
        .expect(1)
        .mount(&google)
        .await;
    let stack = Stack::start(Setup {
        gcp: Some(&google.uri()),
        ..Setup::default()
    })
    .await;
    let (status, body, _) = stack
        .credentials("gcp-federated", &format!("Bearer {}", stack.main_token()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], "federated-token-abcdefghij");
    assert!(body["service_account"].is_null());
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!((2990..=3000).contains(&expires_in), "{expires_in}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_returns_the_managed_identity_shape_with_entras_expiry() {
    let entra = MockServer::start().await;
    Mock::given(EntraClientAssertion {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        scope: "https://storage.azure.com/.default".into(),
    })
    .respond_with(entra_token(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra.token",
        3599,
    ))
    .expect(1)
    .mount(&entra)
    .await;
    let stack = Stack::start(Setup {
        azure: Some(&entra.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();
    let before = stsbridge::token::unix_seconds(SystemTime::now());
    let (status, body, _) = stack.credentials("blob", &format!("Bearer {token}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["access_token"],
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra.token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://storage.azure.com");
    assert_eq!(body["client_id"], CLIENT);
    let expires_on: u64 = body["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .unwrap();
    assert!(
        (before + 3599..=before + 3601).contains(&expires_on),
        "{expires_on} vs {before}"
    );

    let (status, again, _) = stack.credentials("blob", &format!("Bearer {token}")).await;
    assert_eq!(status, 200);
    assert_eq!(again["expires_on"], body["expires_on"]);

    let received = entra.received_requests().await.unwrap();
    let assertion = form_field(&received[0], "client_assertion").unwrap();
    let claims = verify_with_bridge_jwks(&stack, &assertion, "api://AzureADTokenExchange").await;
    assert_eq!(claims["sub"], "target:blob");
    assert_eq!(claims["iss"], stsbridge_e2e::BRIDGE_URL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_refusals_say_what_to_check() {
    let google = MockServer::start().await;
    let entra = MockServer::start().await;
    let stack = Stack::start(Setup {
        gcp: Some(&google.uri()),
        azure: Some(&entra.uri()),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();
    let cases: Vec<(&str, &MockServer, Vec<Mock>, &str, &str)> = vec![
        (
            "gcp-federated",
            &google,
            vec![Mock::given(sts()).respond_with(gcp_sts_error(400, "invalid_grant", "The audience in ID Token [x] does not match the expected audience."))],
            "invalid_grant",
            "attribute condition",
        ),
        (
            "gcs",
            &google,
            vec![
                Mock::given(sts()).respond_with(gcp_sts_token("federated-token-0123456789", 3599)),
                Mock::given(wiremock::matchers::path_regex(":generateAccessToken$")).respond_with(google_api_error(
                    403,
                    "PERMISSION_DENIED",
                    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                )),
            ],
            "PERMISSION_DENIED",
            "roles/iam.workloadIdentityUser",
        ),
        (
            "blob",
            &entra,
            vec![Mock::given(wiremock::matchers::method("POST")).respond_with(entra_error(
                400,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion.",
            ))],
            "AADSTS70021",
            "up to a minute",
        ),
        (
            "blob",
            &entra,
            vec![Mock::given(wiremock::matchers::method("POST")).respond_with(entra_error(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ))],
            "AADSTS700024",
            "clock",
        ),
    ];
    for (target, server, mocks, code, hint) in cases {
        server.reset().await;
        for m in mocks {
            m.mount(server).await;
        }
        let (status, body, _) = stack.credentials(target, &format!("Bearer {token}")).await;
        assert_eq!(status, 502, "{code}: {body}");
        assert_eq!(body["error"], "upstream_rejected");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(code) && description.contains(hint),
            "{code}: {description}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_a_persistent_429_is_503() {
    let entra = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&entra)
        .await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(entra_token("eyJ.recovered.token", 3599))
        .mount(&entra)
        .await;
    let stack = Stack::start(Setup {
        azure: Some(&entra.uri()),
        ..Setup::default()
    })
    .await;
    let (status, body, _) = stack
        .credentials("blob", &format!("Bearer {}", stack.main_token()))
        .await;
    assert_eq!(status, 200, "recovered within the retry budget: {body}");
    assert_eq!(entra.received_requests().await.unwrap().len(), 2);

    let google = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .mount(&google)
        .await;
    let stack = Stack::start(Setup {
        gcp: Some(&google.uri()),
        ..Setup::default()
    })
    .await;
    let (status, body, headers) = stack
        .credentials("gcp-federated", &format!("Bearer {}", stack.main_token()))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        google.received_requests().await.unwrap().len(),
        3,
        "a bounded number of attempts"
    );
}
