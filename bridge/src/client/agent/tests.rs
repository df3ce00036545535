use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

fn options(dir: &Path) -> AgentOptions {
    let token = dir.join("token");
    std::fs::write(&token, "eyJ.token.sig\n").unwrap();
    AgentOptions {
        bridge: "http://127.0.0.1:9".into(),
        token_file: token,
        listen: "127.0.0.1:0".parse().unwrap(),
        aws_target: Some("deploy".into()),
        gcp_target: None,
        azure_target: Some("blob".into()),
        tls: crate::client::ClientTls::default(),
        state_dir: Some(dir.join("state")),
        gcp_project: None,
        azure_identity_header_file: None,
    }
}

#[test]
fn prints_the_environment_of_the_configured_protocols_only() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, env) = Agent::new(&options(dir.path()), 8090).unwrap();
    let names: Vec<&str> = env.iter().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "export AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "export IDENTITY_ENDPOINT",
            "export IDENTITY_HEADER"
        ]
    );
    assert!(env[0].ends_with("=http://127.0.0.1:8090/aws/credentials"));
    assert!(env[2].ends_with("=http://127.0.0.1:8090/msi/token"));
    // The two protocols get different secrets.
    assert_ne!(
        agent.aws_secret.expose_secret(),
        agent.azure_secret.expose_secret()
    );
    assert_eq!(agent.aws_secret.expose_secret().len(), 43);
}

#[test]
fn the_aws_secret_file_is_private_and_has_no_newline() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = Agent::new(&options(dir.path()), 1).unwrap();
    let file = dir.path().join("state/aws-container-authorization-token");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        agent.aws_secret.expose_secret()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // A restart writes a new secret over the old file.
    let (again, _) = Agent::new(&options(dir.path()), 1).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        again.aws_secret.expose_secret()
    );
    assert_ne!(
        agent.aws_secret.expose_secret(),
        again.aws_secret.expose_secret()
    );
}

#[test]
fn refuses_to_listen_beyond_loopback_or_serve_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.listen = "0.0.0.0:8090".parse().unwrap();
    assert!(matches!(Agent::new(&o, 8090), Err(AgentError::Options(m)) if m.contains("loopback")));
    let mut o = options(dir.path());
    (o.aws_target, o.azure_target) = (None, None);
    assert!(
        matches!(Agent::new(&o, 8090), Err(AgentError::Options(m)) if m.contains("at least one"))
    );
    let mut o = options(dir.path());
    o.token_file = dir.path().join("missing");
    assert!(matches!(
        Agent::new(&o, 8090),
        Err(AgentError::Client(ClientError::TokenFile { .. }))
    ));
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    o.token_file = dir.path().join("empty");
    assert!(matches!(
        Agent::new(&o, 8090),
        Err(AgentError::Client(ClientError::TokenFile { .. }))
    ));
}

#[test]
fn expiry_comes_from_each_protocols_own_field() {
    let fetched = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let aws = json!({ "Expiration": "2027-01-15T08:00:00Z" });
    // 2027-01-15T08:00:00Z is 1,800,000,000 seconds after the epoch.
    assert_eq!(
        expiry(Cloud::Aws, &aws, fetched).unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    );
    assert_eq!(
        expiry(Cloud::Gcp, &json!({ "expires_in": 600 }), fetched).unwrap(),
        fetched + Duration::from_secs(600)
    );
    assert_eq!(
        expiry(
            Cloud::Azure,
            &json!({ "expires_on": "1800003600" }),
            fetched
        )
        .unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_003_600)
    );
    assert!(expiry(Cloud::Aws, &json!({ "Expiration": "soon" }), fetched).is_err());
    assert!(expiry(Cloud::Azure, &json!({ "expires_on": 5 }), fetched).is_err());
}

#[test]
fn the_identity_header_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    let file = dir.path().join("identity-header");
    std::fs::write(&file, "a-shared-secret-from-a-k8s-secret\n").unwrap();
    o.azure_identity_header_file = Some(file.clone());
    let (agent, env) = Agent::new(&o, 1).unwrap();
    assert_eq!(
        agent.azure_secret.expose_secret(),
        "a-shared-secret-from-a-k8s-secret"
    );
    assert!(env.contains(&"export IDENTITY_HEADER=a-shared-secret-from-a-k8s-secret".to_owned()));
    std::fs::write(&file, "short").unwrap();
    assert!(matches!(Agent::new(&o, 1), Err(AgentError::Options(_))));
}
