//! The clouds' real SDKs as clients: boto3 and the AWS CLI, google-auth, azure-identity, the
//! Node.js SDKs (AWS SDK v3, google-auth-library, @azure/identity), and the Rust SDKs (aws-config's ECS provider, google-cloud-auth's metadata-server credentials,
//! azure_identity's managed identity credential), each against the service or the agent exactly as
//! a workload is configured, with no hand-written client in their place. AWS calls end with a real
//! `GetCallerIdentity` against moto's server using the credentials stsbridge vended.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use stsbridge_e2e::BridgeProcess;
use stsbridge_e2e::clouds::*;
use stsbridge_e2e::moto::{moto, python, venv_program};
use wiremock::{Mock, MockServer};

use crate::{BIN, Setup, Stack};

const PROBE: &str = env!("CARGO_BIN_EXE_sdk-probe");
const SA: &str = "writer@shop-prod.iam.gserviceaccount.com";
const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge";
const MGMT: &str = "https://management.azure.com/.default";
const DEPLOY_ARN: &str = "arn:aws:sts::111111111111:assumed-role/deploy/gh-42";

/// The service, its GCP and Entra stand-ins, and an agent in front of it for all three clouds.
struct AgentStack {
    stack: Stack,
    agent: BridgeProcess,
    env: Vec<(String, String)>,
    token_file: PathBuf,
    google: MockServer,
    entra: MockServer,
}

impl AgentStack {
    /// The value of `name` among the env lines the agent printed.
    fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the agent printed no {name}"))
    }

    /// The AWS container credentials secret the agent wrote for its workload.
    fn aws_secret(&self) -> String {
        std::fs::read_to_string(self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")).unwrap()
    }
}

async fn agent_stack() -> AgentStack {
    agent_stack_with_sts(&moto().endpoint).await
}

/// [`agent_stack`] with AWS STS at `sts` (moto's server, or a stand-in for tests without Python).
async fn agent_stack_with_sts(sts: &str) -> AgentStack {
    let google = MockServer::start().await;
    Mock::given(GcpStsExchange {
        audience: AUDIENCE.into(),
        scope: "https://www.googleapis.com/auth/cloud-platform".into(),
    })
    .respond_with(gcp_sts_token("federated-token-0123456789", 3599))
    .mount(&google)
    .await;
    let expire = stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(1800));
    Mock::given(GenerateAccessToken {
        email: SA.into(),
        bearer: "federated-token-0123456789".into(),
        scopes: vec!["https://www.googleapis.com/auth/devstorage.read_write".into()],
        lifetime: "1800s".into(),
    })
    .respond_with(gcp_access_token("ya29.agent-served-token", &expire))
    .mount(&google)
    .await;
    let entra = MockServer::start().await;
    Mock::given(EntraClientAssertion {
        tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        client_id: "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c".into(),
        scope: MGMT.into(),
    })
    .respond_with(entra_token("eyJ.entra-agent-token.sig", 3599))
    .mount(&entra)
    .await;
    let stack = Stack::start(Setup {
        sts: Some(sts),
        gcp: Some(&google.uri()),
        azure: Some(&entra.uri()),
        ..Setup::default()
    })
    .await;
    // The agent's own reads must cope with the trailing newline most tools write.
    let token_file = stack.dir.path().join("workload-token");
    std::fs::write(&token_file, format!("{}\n", stack.main_token())).unwrap();
    let token_arg = token_file.to_str().unwrap().to_owned();
    let state = stack.dir.path().join("agent-state");
    let agent = BridgeProcess::spawn(
        BIN,
        stack.dir.path(),
        &[
            "agent",
            "--bridge",
            &stack.bridge.base,
            "--token-file",
            &token_arg,
            "--listen",
            "127.0.0.1:0",
            "--aws-target",
            "deploy",
            "--gcp-target",
            "gcs",
            "--azure-target",
            "mgmt",
            "--gcp-project",
            "shop-prod",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let env = agent
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    AgentStack {
        stack,
        agent,
        env,
        token_file,
        google,
        entra,
    }
}

/// Runs a program with only the environment given (and a private HOME), the way a workload starts;
/// returns its JSON output.
fn run_json(program: &Path, args: &[&str], env: &[(String, String)], home: &Path) -> Value {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{stderr}\n{stdout}",
        program.display()
    );
    serde_json::from_str(stdout.trim())
        .or_else(|_| serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()))
        .unwrap_or_else(|_| panic!("not JSON: {stdout}\n{stderr}"))
}

/// The Azure token's `expires_on` (unix seconds) is Entra's `expires_in` (3599 s) after `before`.
fn assert_expires_with_entra(before: u64, out: &Value) {
    let expires_on = out["expires_on"].as_u64().unwrap();
    assert!(
        (before + 3590..=before + 3610).contains(&expires_on),
        "{expires_on}"
    );
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_gets_container_credentials_from_the_service_and_from_the_agent() {
    let s = agent_stack().await;
    let home = tempfile::tempdir().unwrap();
    let moto = moto();

    // Straight from the service: the subject token is the authorization token (no newline).
    let subject = s.stack.dir.path().join("subject-token");
    std::fs::write(&subject, s.stack.main_token()).unwrap();
    let direct = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
            s.stack.bridge.url("/v1/credentials/deploy"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_owned(),
            subject.to_str().unwrap().to_owned(),
        ),
    ];
    let out = run_json(
        &python(),
        &[&script("boto3_container.py"), &moto.endpoint],
        &direct,
        home.path(),
    );
    assert_eq!(out["method"], "container-role");
    assert_eq!(out["arn"], DEPLOY_ARN);

    // Through the agent, with only the lines it printed.
    let out = run_json(
        &python(),
        &[&script("boto3_container.py"), &moto.endpoint],
        &s.env,
        home.path(),
    );
    assert_eq!(out["method"], "container-role");
    assert_eq!(out["arn"], DEPLOY_ARN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_uses_credential_process() {
    let stack = Stack::start(Setup {
        sts: Some(&moto().endpoint),
        ..Setup::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, format!("{}\n", stack.main_token())).unwrap();
    let config = home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile stsbridge]\nregion = us-east-1\ncredential_process = {BIN} credential-process --bridge {} --target deploy --token-file {}\n",
            stack.bridge.base,
            token.display()
        ),
    )
    .unwrap();
    let env = vec![
        (
            "AWS_CONFIG_FILE".to_owned(),
            config.to_str().unwrap().to_owned(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            home.path().join("none").to_str().unwrap().to_owned(),
        ),
        ("AWS_PROFILE".to_owned(), "stsbridge".to_owned()),
    ];
    let out = run_json(
        &venv_program("aws"),
        &[
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &moto().endpoint,
            "--output",
            "json",
        ],
        &env,
        home.path(),
    );
    assert_eq!(out["Arn"], DEPLOY_ARN);

    // A refusal is one line on stderr and a non-zero exit, which the CLI reports.
    let out = Command::new(BIN)
        .args([
            "credential-process",
            "--bridge",
            &stack.bridge.base,
            "--target",
            "api",
            "--token-file",
            token.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an AWS target"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_finds_the_agent_as_a_metadata_server() {
    let s = agent_stack().await;
    let home = tempfile::tempdir().unwrap();
    let out = run_json(
        &python(),
        &[&script("google_auth_default.py")],
        &s.env,
        home.path(),
    );
    assert_eq!(
        out["type"],
        "google.auth.compute_engine.credentials.Credentials"
    );
    assert_eq!(out["project"], "shop-prod");
    assert_eq!(out["email"], SA);
    assert_eq!(out["token"], "ya29.agent-served-token");
    assert!(out["expiry"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_finds_the_agent_as_an_app_service_identity() {
    let s = agent_stack().await;
    let home = tempfile::tempdir().unwrap();
    let before = stsbridge::token::unix_seconds(SystemTime::now());
    let out = run_json(
        &python(),
        &[&script("azure_identity_mi.py"), MGMT],
        &s.env,
        home.path(),
    );
    assert_eq!(out["token"], "eyJ.entra-agent-token.sig");
    assert_expires_with_entra(before, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdks_use_the_agent() {
    let s = agent_stack().await;
    let home = tempfile::tempdir().unwrap();
    let probe = Path::new(PROBE);
    let out = run_json(probe, &["aws", &moto().endpoint], &s.env, home.path());
    assert_eq!(out["arn"], DEPLOY_ARN);
    let out = run_json(probe, &["gcp"], &s.env, home.path());
    assert_eq!(out["token"], "ya29.agent-served-token");
    let out = run_json(probe, &["azure", MGMT], &s.env, home.path());
    assert_eq!(out["token"], "eyJ.entra-agent-token.sig");
}

/// `tests/node/sdks.mjs` with the pinned Node.js SDKs `tests/run.sh` installs (`npm ci`).
fn node_sdks() -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    assert!(
        dir.join("node_modules/google-auth-library").is_dir(),
        "the Node.js SDKs are not installed: run `npm ci --prefix tests/node` (tests/run.sh does)"
    );
    let script = dir.join("sdks.mjs").to_str().unwrap().to_owned();
    (PathBuf::from("node"), script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodejs_sdks_use_the_agent_through_their_default_chains() {
    let s = agent_stack().await;
    let home = tempfile::tempdir().unwrap();
    let (node, script) = node_sdks();
    let out = run_json(
        &node,
        &[&script, "aws", &moto().endpoint],
        &s.env,
        home.path(),
    );
    assert_eq!(out["arn"], DEPLOY_ARN);
    assert!(out["expiration"].is_string(), "{out}");
    // google-auth-library decides it runs on GCE from `GET /computeMetadata/v1/instance`.
    let out = run_json(&node, &[&script, "gcp"], &s.env, home.path());
    assert_eq!(out["type"], "Compute", "{out}");
    assert_eq!(out["project"], "shop-prod");
    assert_eq!(out["email"], SA);
    assert_eq!(out["token"], "ya29.agent-served-token");
    let before = stsbridge::token::unix_seconds(SystemTime::now());
    let out = run_json(&node, &[&script, "azure", MGMT], &s.env, home.path());
    assert_eq!(out["token"], "eyJ.entra-agent-token.sig");
    assert_expires_with_entra(before, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_the_metadata_directories_detection_probes_read() {
    let s = agent_stack().await;
    let http = reqwest::Client::new();
    for path in [
        "/computeMetadata/v1",
        "/computeMetadata/v1/",
        "/computeMetadata/v1/instance",
        "/computeMetadata/v1/instance/",
        "/computeMetadata/v1/project/",
        "/computeMetadata/v1/universe/",
    ] {
        let r = http
            .get(s.agent.url(path))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["metadata-flavor"], "Google", "{path}");
        assert!(r.text().await.unwrap().ends_with('\n'), "{path}: a listing");
        let r = http.get(s.agent.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path} without the flavor header");
    }
    let r = http
        .get(s.agent.url("/computeMetadata/v1/instance/"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "service-accounts/\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_requests_without_each_protocols_header_or_with_a_wrong_value() {
    let s = agent_stack().await;
    let http = reqwest::Client::new();
    let url = |p: &str| s.agent.url(p);
    let aws_secret = s.aws_secret();
    assert!(
        !aws_secret.ends_with('\n'),
        "botocore refuses a token file with a trailing newline"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(http.get(url("/aws/credentials")).send().await.unwrap()),
        401
    );
    assert_eq!(
        status(
            http.get(url("/aws/credentials"))
                .header("Authorization", "guess")
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            http.get(url("/aws/credentials"))
                .header("Authorization", &aws_secret)
                .send()
                .await
                .unwrap()
        ),
        200
    );

    let gce = url("/computeMetadata/v1/instance/service-accounts/default/token");
    let r = http.get(&gce).send().await.unwrap();
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    assert_eq!(status(r), 403);
    let proxied = http
        .get(&gce)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(status(proxied), 403);
    let r = http
        .get(&gce)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(status(r), 200);

    let msi = url("/msi/token?api-version=2019-08-01&resource=https://management.azure.com");
    assert_eq!(status(http.get(&msi).send().await.unwrap()), 401);

    // Present but wrong: near misses of each protocol's value, and the other protocol's secret.
    let identity = s.var("IDENTITY_HEADER");
    let changed = |v: &str| {
        let mut v = v.to_owned();
        let last = if v.ends_with('A') { "B" } else { "A" };
        v.replace_range(v.len() - 1.., last);
        v
    };
    let aws = url("/aws/credentials");
    let but_last = |v: &str| v[..v.len() - 1].to_owned();
    // (endpoint, header, what the value is, the value, the refusal); values are not printed.
    let wrong: Vec<(&str, &str, &str, String, u16)> = vec![
        (
            &aws,
            "Authorization",
            "last character changed",
            changed(&aws_secret),
            401,
        ),
        (
            &aws,
            "Authorization",
            "as a Bearer token",
            format!("Bearer {aws_secret}"),
            401,
        ),
        (
            &aws,
            "Authorization",
            "one character more",
            format!("{aws_secret}x"),
            401,
        ),
        (
            &aws,
            "Authorization",
            "one character less",
            but_last(&aws_secret),
            401,
        ),
        (
            &aws,
            "Authorization",
            "the Azure secret",
            identity.clone(),
            401,
        ),
        (&gce, "Metadata-Flavor", "google", "google".to_owned(), 403),
        (
            &gce,
            "Metadata-Flavor",
            "Google2",
            "Google2".to_owned(),
            403,
        ),
        (&gce, "Metadata-Flavor", "Goog", "Goog".to_owned(), 403),
        (&gce, "Metadata-Flavor", "true", "true".to_owned(), 403),
        (
            &msi,
            "X-IDENTITY-HEADER",
            "last character changed",
            changed(&identity),
            401,
        ),
        (
            &msi,
            "X-IDENTITY-HEADER",
            "one character more",
            format!("{identity}x"),
            401,
        ),
        (
            &msi,
            "X-IDENTITY-HEADER",
            "one character less",
            but_last(&identity),
            401,
        ),
        (
            &msi,
            "X-IDENTITY-HEADER",
            "the AWS secret",
            aws_secret.clone(),
            401,
        ),
    ];
    let mut accepted = Vec::new();
    for (endpoint, name, what, value, want) in &wrong {
        let got = status(
            http.get(*endpoint)
                .header(*name, value)
                .send()
                .await
                .unwrap(),
        );
        if got != *want {
            accepted.push(format!(
                "{endpoint} with {name}: {what}: got {got}, not {want}"
            ));
        }
    }
    assert!(
        accepted.is_empty(),
        "wrong values:\n{}",
        accepted.join("\n")
    );

    assert_eq!(
        status(
            http.get(&msi)
                .header("X-IDENTITY-HEADER", s.var("IDENTITY_HEADER"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let other = url("/msi/token?api-version=2019-08-01&resource=https://vault.azure.net");
    assert_eq!(
        status(
            http.get(&other)
                .header("X-IDENTITY-HEADER", s.var("IDENTITY_HEADER"))
                .send()
                .await
                .unwrap()
        ),
        400
    );
}

/// A request written by hand on a fresh connection to `addr` (for what reqwest will not send: no
/// `Host`, an absolute-form target); returns the status line.
async fn raw_status_line(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// DNS rebinding: a browser page whose name now resolves to 127.0.0.1 sends the agent every header
/// a protocol asks for (the metadata server's has no secret at all), but with its own name in
/// `Host`. The agent refuses that on every endpoint before fetching anything, and still answers
/// the same requests addressed by a loopback address or `localhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_requests_addressed_to_another_host() {
    let sts_stand_in = MockServer::start().await;
    let expiration = stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(
            stsbridge_e2e::sts::web_identity_success(
                DEPLOY_ARN,
                "ASIAREBINDING0000001",
                "rebinding-secret-access-key-000000000000",
                "rebinding-session-token-0000000000000000",
                &expiration,
            ),
        ))
        .mount(&sts_stand_in)
        .await;
    let s = agent_stack_with_sts(&sts_stand_in.uri()).await;
    let aws_secret = s.aws_secret();
    let addr = s.agent.base.trim_start_matches("http://").to_owned();
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    // Each endpoint with the headers its protocol requires.
    let gce_token = "/computeMetadata/v1/instance/service-accounts/default/token";
    let msi = "/msi/token?api-version=2019-08-01&resource=https://management.azure.com";
    let endpoints: [(&str, &str, String); 3] = [
        ("/aws/credentials", "Authorization", aws_secret),
        (gce_token, "Metadata-Flavor", "Google".to_owned()),
        (msi, "X-IDENTITY-HEADER", s.var("IDENTITY_HEADER")),
    ];
    let get = |path: &str, name: &str, value: &str, host: &str| {
        http.get(s.agent.url(path))
            .header(name, value)
            .header("Host", host)
            .send()
    };

    for (path, name, value) in &endpoints {
        for host in [
            format!("attacker.example:{port}"),
            "attacker.example".to_owned(),
            format!("localhost.attacker.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
        ] {
            let r = get(path, name, value, &host).await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_eq!(status, 403, "{path} with Host {host}: {body}");
        }
    }
    // What reqwest will not send: no Host at all (HTTP/1.0 allows that, the agent does not), and
    // an absolute-form target naming another host beside a loopback Host.
    let no_host = format!("GET {gce_token} HTTP/1.0\r\nMetadata-Flavor: Google\r\n\r\n");
    let line = raw_status_line(&addr, &no_host).await;
    assert!(line.contains(" 403"), "no Host: {line}");
    let absolute = format!(
        "GET http://attacker.example:{port}{gce_token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
    );
    let line = raw_status_line(&addr, &absolute).await;
    assert!(line.contains(" 403"), "absolute-form target: {line}");
    // Nothing was fetched for them: no cloud was asked (the agent answers only after its fetch).
    for (cloud, stand_in) in [
        ("AWS", &sts_stand_in),
        ("GCP", &s.google),
        ("Azure", &s.entra),
    ] {
        let asked = stand_in.received_requests().await.unwrap().len();
        assert_eq!(asked, 0, "{cloud} was asked for a credential");
    }

    // Addressed to the agent by a loopback address or localhost, the same requests are answered.
    for (path, name, value) in &endpoints {
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LOCALHOST:{port}"),
        ] {
            let r = get(path, name, value, &host).await.unwrap();
            let status = r.status().as_u16();
            assert_eq!(
                status,
                200,
                "{path} with Host {host}: {}",
                r.text().await.unwrap()
            );
        }
    }
    // The refusal is logged, with the Host it named.
    let mut logged = false;
    for _ in 0..100 {
        let log = s.agent.stderr();
        if log.contains("attacker.example") && log.contains("refused") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged, "the refusal is logged:\n{}", s.agent.stderr());
}

/// Exchanges the service granted for `target`, from its metrics (counted before it answers).
async fn granted(stack: &Stack, target: &str) -> u64 {
    let text = stack.get_text("/metrics").await;
    let series = "stsbridge_exchanges_total{outcome=\"allow\",";
    let label = format!("target=\"{target}\"}}");
    text.lines()
        .filter(|l| l.starts_with(series) && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Many SDK processes asking the agent at once, for each cloud: the agent asks the service once
/// per target and serves every caller from that one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sdk_requests_to_the_agent_make_one_request_to_the_service() {
    let sts_stand_in = MockServer::start().await;
    let expiration = stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    // Slow enough that the callers overlap at the agent; what is asserted is the count.
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_string(stsbridge_e2e::sts::web_identity_success(
                    DEPLOY_ARN,
                    "ASIACONCURRENT000001",
                    "concurrent-secret-access-key-0000000000",
                    "concurrent-session-token-00000000000000",
                    &expiration,
                ))
                .set_delay(Duration::from_millis(500)),
        )
        .mount(&sts_stand_in)
        .await;
    let s = agent_stack_with_sts(&sts_stand_in.uri()).await;
    let aws_secret = s.aws_secret();
    let identity = s.var("IDENTITY_HEADER");
    let http = reqwest::Client::new();
    // What botocore, google-auth and azure-identity each send.
    let requests = [
        ("/aws/credentials", "Authorization", aws_secret.as_str()),
        (
            "/computeMetadata/v1/instance/service-accounts/default/token",
            "Metadata-Flavor",
            "Google",
        ),
        (
            "/msi/token?api-version=2019-08-01&resource=https://management.azure.com",
            "X-IDENTITY-HEADER",
            identity.as_str(),
        ),
    ];
    let calls = (0..30).map(|i| {
        let (path, name, value) = requests[i % 3];
        let request = http.get(s.agent.url(path)).header(name, value).send();
        async move {
            let r = request.await.unwrap();
            let status = r.status().as_u16();
            (path, status, r.json::<Value>().await.unwrap())
        }
    });
    for (path, status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{path}: {body}");
        let served = &body[if path.starts_with("/aws") {
            "AccessKeyId"
        } else {
            "access_token"
        }];
        let want = match path {
            "/aws/credentials" => "ASIACONCURRENT000001",
            p if p.starts_with("/msi") => "eyJ.entra-agent-token.sig",
            _ => "ya29.agent-served-token",
        };
        assert_eq!(served, want, "{path}");
    }
    for target in ["deploy", "gcs", "mgmt"] {
        assert_eq!(
            granted(&s.stack, target).await,
            1,
            "the agent asked the service more than once for {target}"
        );
    }
    assert_eq!(sts_stand_in.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_picks_up_a_rotated_token_file_without_restart() {
    let s = agent_stack().await;
    let http = reqwest::Client::new();
    let secret = s.aws_secret();
    // The workload's token is replaced by one stsbridge refuses: the agent reports the refusal...
    let expired = s.stack.idp.token(
        "repo:acme/app:ref:refs/heads/main",
        serde_json::json!({ "iat": 1_000, "exp": 1_600 }),
    );
    std::fs::write(&s.token_file, format!("{expired}\n")).unwrap();
    let r = http
        .get(s.agent.url("/aws/credentials"))
        .header("Authorization", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // ...and the next rotation, written in place as the kubelet does, works without a restart.
    std::fs::write(&s.token_file, format!("{}\n", s.stack.main_token())).unwrap();
    let r = http
        .get(s.agent.url("/aws/credentials"))
        .header("Authorization", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["AccountId"], "111111111111");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_rust_aws_sdk_credential_process_and_the_agent_trust_the_services_ca() {
    let pki = stsbridge_e2e::tls::localhost_pki();
    let pem_dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = pem_dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca_pem),
        write("cert.pem", &pki.cert_pem),
        write("key.pem", &pki.key_pem),
    );
    let tls = format!("tls: {{ cert_file: \"{cert}\", key_file: \"{key}\" }}");
    let stack = Stack::start(Setup {
        sts: Some(&moto().endpoint),
        extra: &tls,
        ..Setup::default()
    })
    .await;
    assert!(
        stack.bridge.base.starts_with("https://127.0.0.1:"),
        "{}",
        stack.bridge.base
    );

    // Only a client that trusts the CA gets through.
    let trusting = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        trusting
            .get(stack.bridge.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        reqwest::Client::new()
            .get(stack.bridge.url("/healthz"))
            .send()
            .await
            .is_err(),
        "an unknown CA is refused"
    );

    // aws-config's container provider with an https FULL_URI on another "host", trusting the CA
    // through SSL_CERT_FILE as any rustls-native-certs client does.
    let home = tempfile::tempdir().unwrap();
    let subject = home.path().join("subject-token");
    std::fs::write(&subject, stack.main_token()).unwrap();
    let env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
            stack.bridge.url("/v1/credentials/deploy"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_owned(),
            subject.to_str().unwrap().to_owned(),
        ),
        ("SSL_CERT_FILE".to_owned(), ca.clone()),
    ];
    let out = run_json(
        Path::new(PROBE),
        &["aws", &moto().endpoint],
        &env,
        home.path(),
    );
    assert_eq!(out["arn"], DEPLOY_ARN);

    // credential-process with --ca-file, and a clear failure without it.
    let args = |with_ca: bool| {
        let mut a = vec![
            "credential-process".to_owned(),
            "--bridge".into(),
            stack.bridge.base.clone(),
            "--target".into(),
            "deploy".into(),
        ];
        a.extend(["--token-file".into(), subject.to_str().unwrap().to_owned()]);
        if with_ca {
            a.extend(["--ca-file".into(), ca.clone()]);
        }
        a
    };
    let out = Command::new(BIN).args(args(true)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let process: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(process["Version"], 1);
    let out = Command::new(BIN).args(args(false)).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach stsbridge") && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );

    // The agent in front of the https service, trusting the CA bundle it was given.
    let agent = BridgeProcess::spawn(
        BIN,
        home.path(),
        &[
            "agent",
            "--bridge",
            &stack.bridge.base,
            "--token-file",
            subject.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--aws-target",
            "deploy",
            "--ca-file",
            &ca,
        ],
        &[],
    )
    .await;
    let agent_env: Vec<(String, String)> = agent
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let out = run_json(
        &python(),
        &[&script("boto3_container.py"), &moto().endpoint],
        &agent_env,
        home.path(),
    );
    assert_eq!(out["arn"], DEPLOY_ARN);
}
