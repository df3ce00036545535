//! AWS against moto's server: the real STS wire protocol end to end.

use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use stsbridge_e2e::moto::moto;

use crate::{Setup, Stack};

/// Who moto says the credentials belong to (GetCallerIdentity signed with them).
pub async fn caller_arn(endpoint: &str, creds: &Value) -> String {
    let credentials = Credentials::new(
        creds["AccessKeyId"].as_str().unwrap(),
        creds["SecretAccessKey"].as_str().unwrap(),
        creds["Token"]
            .as_str()
            .or(creds["SessionToken"].as_str())
            .map(str::to_owned),
        None,
        "e2e",
    );
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    let out = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    out.arn().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_maps_to_a_rule_and_returns_aws_credentials_from_moto() {
    let moto = moto();
    let stack = Stack::start(Setup {
        sts: Some(&moto.endpoint),
        ..Setup::default()
    })
    .await;
    let token = stack.main_token();

    // Raw token in Authorization, as AWS SDKs send it from AWS_CONTAINER_AUTHORIZATION_TOKEN.
    let (status, creds, headers) = stack.credentials("deploy", &token).await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(headers["cache-control"], "no-store");
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(
            creds[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing: {creds}"
        );
    }
    assert_eq!(creds["AccountId"], "111111111111");
    assert_eq!(
        caller_arn(&moto.endpoint, &creds).await,
        "arn:aws:sts::111111111111:assumed-role/deploy/gh-42"
    );

    // Cached: the same session comes back, in credential_process shape this time.
    let (status, process, _) = stack
        .credentials(
            "deploy?format=credential_process",
            &format!("Bearer {token}"),
        )
        .await;
    assert_eq!(status, 200, "{process}");
    assert_eq!(process["Version"], 1);
    assert_eq!(process["AccessKeyId"], creds["AccessKeyId"]);
    assert_eq!(process["SessionToken"], creds["Token"]);

    let events = stack.bridge.audit_events_at_least(2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["outcome"], "allow");
    assert_eq!(events[0]["rule"], "main-deploys");
    assert_eq!(events[0]["provider"], "aws");
    assert_eq!(events[0]["cache"], "miss");
    assert_eq!(events[1]["cache"], "hit");
    assert!(events[0]["assertion_jti"].is_string());
    assert_eq!(
        events[0]["caller"]["subject"],
        "repo:acme/app:ref:refs/heads/main"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_hop_lands_in_the_second_account() {
    let moto = moto();
    let stack = Stack::start(Setup {
        sts: Some(&moto.endpoint),
        ..Setup::default()
    })
    .await;
    let (status, creds, _) = stack
        .credentials("cross", &format!("Bearer {}", stack.main_token()))
        .await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["AccountId"], "222222222222");
    assert_eq!(
        caller_arn(&moto.endpoint, &creds).await,
        "arn:aws:sts::222222222222:assumed-role/deployer/repo-acme-app-ref-refs-heads-main"
    );
}
