//! The clouds' Rust SDKs as clients of the agent, each in its own process so that it reads its
//! configuration from the real environment exactly as a workload would:
//!
//! - `sdk-probe aws STS_ENDPOINT`: `aws-config`'s ECS (container credentials) provider, then
//!   `GetCallerIdentity` signed with the credentials it got; prints the caller ARN.
//! - `sdk-probe gcp`: `google-cloud-auth`'s metadata-server credentials; prints the token.
//! - `sdk-probe azure SCOPE`: `azure_identity`'s managed identity credential; prints the token.
//!
//! Prints one JSON line; exits non-zero with the error on stderr.

use std::process::ExitCode;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use azure_core::credentials::TokenCredential;
use serde_json::json;

async fn aws(endpoint: &str) -> Result<serde_json::Value, String> {
    let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let credentials = aws_credential_types_provide(&provider).await?;
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(
            RegionProviderChain::first_try(aws_sdk_sts::config::Region::new("us-east-1"))
                .region()
                .await,
        )
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    let out = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(json!({ "arn": out.arn() }))
}

async fn aws_credential_types_provide(
    provider: &aws_config::ecs::EcsCredentialsProvider,
) -> Result<aws_sdk_sts::config::Credentials, String> {
    use aws_sdk_sts::config::ProvideCredentials;
    provider
        .provide_credentials()
        .await
        .map_err(|e| format!("ECS provider: {e:?}"))
}

async fn gcp() -> Result<serde_json::Value, String> {
    let credentials = google_cloud_auth::credentials::mds::Builder::default()
        .build_access_token_credentials()
        .map_err(|e| format!("{e:?}"))?;
    let token = credentials
        .access_token()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(json!({ "token": token.token }))
}

async fn azure(scope: &str) -> Result<serde_json::Value, String> {
    let credential =
        azure_identity::ManagedIdentityCredential::new(None).map_err(|e| format!("{e:?}"))?;
    let token = credential
        .get_token(&[scope], None)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(json!({ "token": token.token.secret(), "expires_on": token.expires_on.unix_timestamp() }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("aws") => aws(args.get(2).map_or("", String::as_str)).await,
        Some("gcp") => gcp().await,
        Some("azure") => azure(args.get(2).map_or("", String::as_str)).await,
        _ => Err("usage: sdk-probe aws STS_ENDPOINT | gcp | azure SCOPE".into()),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
