//! AWS against moto's server: the real STS wire protocol end to end, with what moto does not
//! check (a chained hop's parameters and signature) read from a recording proxy in front of it.

use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use std::collections::BTreeMap;

use serde_json::Value;
use stsbridge_e2e::moto::{RecordingProxy, moto};
use stsbridge_e2e::sigv4;

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

/// A target whose chain sets every parameter a hop can carry on the first chained hop, and
/// overrides the defaults on the second.
const CHAIN: &str = r#"
version: 1
targets:
  - name: cross
    aws:
      role_arn: arn:aws:iam::111111111111:role/hub
      session_name: "gh-{{ claims.run_id }}"
      source_identity: "{{ claims.actor }}"
      chain:
        - role_arn: arn:aws:iam::222222222222:role/deployer
          external_id: "stsbridge-{{ claims.repository_owner }}"
          session_policy_file: deployer-policy.json
          session_tags: { repository: "{{ claims.repository }}", stage: prod }
          transitive_tag_keys: [repository]
        - role_arn: arn:aws:iam::333333333333:role/release
          external_id: release-7
          session_name: "release-{{ claims.run_id }}"
          source_identity: "{{ claims.actor }}-release"
          duration: 15m
rules:
  - name: main-crosses
    issuer: ci
    subject: "repo:acme/app:ref:refs/heads/main"
    allow: [cross]
"#;

const DEPLOYER_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{ "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-artifacts/*" }]
}"#;

/// moto checks neither the signature of `AssumeRole` nor its `ExternalId`: the requests are
/// recorded on their way to moto, and each chained hop must carry exactly the parameters its
/// configuration renders and be SigV4-signed with the credentials moto returned for the hop
/// before it (the signature is recomputed with that hop's secret key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_hops_send_their_configured_parameters_signed_with_the_previous_hops_credentials() {
    let moto = moto();
    let proxy = RecordingProxy::start(&moto.endpoint).await;
    let stack = Stack::start_with_files(
        stsbridge_e2e::TestIdp::start().await,
        Setup {
            sts: Some(&proxy.endpoint),
            mappings: Some(CHAIN),
            ..Setup::default()
        },
        &[("mappings/deployer-policy.json", DEPLOYER_POLICY.to_owned())],
    )
    .await;
    let (status, creds, _) = stack
        .credentials("cross", &format!("Bearer {}", stack.main_token()))
        .await;
    assert_eq!(status, 200, "{creds}\n{}", stack.bridge.stderr());

    let calls = proxy.take();
    assert_eq!(
        calls
            .iter()
            .map(|c| c.form["Action"].as_str())
            .collect::<Vec<_>>(),
        ["AssumeRoleWithWebIdentity", "AssumeRole", "AssumeRole"]
    );
    assert!(
        !calls[0].headers.contains_key("authorization"),
        "AssumeRoleWithWebIdentity is unsigned: {:?}",
        calls[0].headers
    );
    let expected: [&[(&str, &str)]; 2] = [
        &[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::222222222222:role/deployer"),
            ("RoleSessionName", "gh-42"),
            ("DurationSeconds", "3600"),
            ("ExternalId", "stsbridge-acme"),
            ("Tags.member.1.Key", "repository"),
            ("Tags.member.1.Value", "acme/app"),
            ("Tags.member.2.Key", "stage"),
            ("Tags.member.2.Value", "prod"),
            ("TransitiveTagKeys.member.1", "repository"),
            ("SourceIdentity", "octocat"),
        ],
        &[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::333333333333:role/release"),
            ("RoleSessionName", "release-42"),
            ("DurationSeconds", "900"),
            ("ExternalId", "release-7"),
            ("SourceIdentity", "octocat-release"),
        ],
    ];
    let policies = [Some(DEPLOYER_POLICY), None];
    for (i, hop) in calls.iter().enumerate().skip(1) {
        let (previous, what) = (&calls[i - 1], format!("chained hop {i}"));
        let mut form: BTreeMap<String, String> = hop.form.clone().into_iter().collect();
        // The session policy is compared as JSON: stsbridge may send it without the file's spacing.
        match (form.remove("Policy"), policies[i - 1]) {
            (Some(sent), Some(file)) => assert_eq!(
                serde_json::from_str::<Value>(&sent).unwrap(),
                serde_json::from_str::<Value>(file).unwrap(),
                "{what}: Policy"
            ),
            (sent, file) => assert_eq!(sent.is_some(), file.is_some(), "{what}: Policy {sent:?}"),
        }
        let want: BTreeMap<String, String> = expected[i - 1]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(form, want, "{what}: the AssumeRole parameters");

        let previous_key = |tag| {
            previous.response_text(tag).unwrap_or_else(|| {
                panic!(
                    "moto's answer to hop {} has no {tag}: {}",
                    i - 1,
                    previous.response
                )
            })
        };
        let signature = sigv4::verify(
            "POST",
            &hop.uri,
            &hop.headers,
            &hop.body,
            previous_key("SecretAccessKey"),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            signature.access_key_id,
            previous_key("AccessKeyId"),
            "{what} is signed with the previous hop's access key"
        );
        assert!(
            signature.scope.ends_with("/us-east-1/sts/aws4_request"),
            "{what}: {signature:?}"
        );
        assert_eq!(
            hop.headers.get("x-amz-security-token").map(String::as_str),
            Some(previous_key("SessionToken")),
            "{what} carries the previous hop's session token"
        );
        assert!(
            signature
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-security-token"),
            "{what}: the session token is signed: {signature:?}"
        );
    }

    // The caller gets the last hop's session, which lands in the third account.
    let last = calls.last().unwrap();
    assert_eq!(
        Some(creds["AccessKeyId"].as_str().unwrap()),
        last.response_text("AccessKeyId")
    );
    assert_eq!(
        Some(creds["Token"].as_str().unwrap()),
        last.response_text("SessionToken")
    );
    assert_eq!(creds["AccountId"], "333333333333");
    assert_eq!(
        caller_arn(&moto.endpoint, &creds).await,
        "arn:aws:sts::333333333333:assumed-role/release/release-42"
    );
}
