//! Dev mode: `stsbridge serve` without a config.
//!
//! Like `vault server -dev`: loopback only, an in-memory signing key, the repo's `mappings/` (or a
//! copy built into the binary when run elsewhere), and built-in test issuers, one for each issuer
//! name the mappings use, so every shipped rule can be tried without an IdP. It prints a ready
//! subject token and the commands for a complete exchange. Never for production: anyone who can
//! reach the port can mint tokens for the test issuers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Form, State};
use axum::routing::post;
use secrecy::ExposeSecret;
use stsbridge_providers::aws::AwsSettings;
use stsbridge_providers::{AssertionSigner, MintSpec};

use crate::config::{
    AuditConfig, AuditSinkConfig, CacheConfig, Config, ConfigErrors, IssuerConfig, JwksSource,
    SigningAlgorithm, TrustConfig, check_url, parse_duration,
};
use crate::exchange::{Bridge, StartError};
use crate::exit::{EXIT_CONFIG, EXIT_FAILURE, config_errors};
use crate::http::error::ApiError;
use crate::issuer::Issuer;
use crate::mapping::{Mappings, referenced_issuers};
use crate::server;

/// Dev mode's default listen address.
pub const DEV_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The issuer dev mode's printed token comes from.
pub const DEV_ISSUER: &str = "dev";
/// Longest lifetime of a dev token.
const MAX_DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The shipped mapping files, built in for when `stsbridge serve` runs outside the repo.
const EMBEDDED_MAPPINGS: [(&str, &str); 6] = [
    (
        "quickstart.yaml",
        include_str!("../../mappings/quickstart.yaml"),
    ),
    (
        "ci-deploy.yaml",
        include_str!("../../mappings/ci-deploy.yaml"),
    ),
    (
        "serverless.yaml",
        include_str!("../../mappings/serverless.yaml"),
    ),
    (
        "cross-account.yaml",
        include_str!("../../mappings/cross-account.yaml"),
    ),
    (
        "partner-globex.yaml",
        include_str!("../../mappings/partner-globex.yaml"),
    ),
    (
        "policies/deploy.json",
        include_str!("../../mappings/policies/deploy.json"),
    ),
];

struct DevState {
    issuers: BTreeMap<String, Arc<Issuer>>,
    audience: String,
}

/// Runs dev mode until SIGTERM or Ctrl-C.
pub async fn serve(listen: Option<SocketAddr>, aws_endpoint: Option<String>) -> ExitCode {
    let listen = listen.unwrap_or(DEV_LISTEN);
    if !listen.ip().is_loopback() {
        eprintln!(
            "error: dev mode mints test tokens for anyone who can reach it, so it listens on loopback only (got {listen})"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(endpoint) = &aws_endpoint
        && let Err(m) = check_url(endpoint, true)
    {
        eprintln!("error: --aws-endpoint: {m}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {listen}: {e} (pick another port with --listen 127.0.0.1:PORT)"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let base = format!("http://{addr}");
    let (mappings_dir, _embedded) = match mappings_dir() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: cannot prepare the built-in mappings: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut names = match referenced_issuers(&mappings_dir) {
        Ok(n) => n,
        Err(errors) => return config_errors(&errors),
    };
    names.insert(DEV_ISSUER.to_owned());

    let mut issuers = BTreeMap::new();
    let mut trust = Vec::new();
    for name in names {
        let config = IssuerConfig {
            url: format!("{base}/dev/{name}"),
            key_dir: None,
            algorithm: SigningAlgorithm::Es256,
            assertion_lifetime: Duration::from_secs(3600),
            publish_before_use: Duration::from_secs(3600),
        };
        let issuer = match Issuer::load(&config) {
            Ok(i) => Arc::new(i),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        trust.push(dev_trust(
            &name,
            &config.url,
            &base,
            issuer.jwks_json().to_string(),
        ));
        issuers.insert(name, issuer);
    }
    let config = Config {
        source: None,
        listen: addr,
        tls: None,
        issuer: IssuerConfig {
            url: base.clone(),
            key_dir: None,
            algorithm: SigningAlgorithm::Rs256,
            assertion_lifetime: Duration::from_secs(300),
            publish_before_use: Duration::from_secs(3600),
        },
        trust,
        mappings_dir: mappings_dir.clone(),
        aws: AwsSettings {
            endpoint: aws_endpoint.clone(),
            ..AwsSettings::default()
        },
        gcp: Default::default(),
        azure: Default::default(),
        cache: CacheConfig {
            max_entries: 10_000,
        },
        rate_limit: None,
        target_rate_limit: None,
        replay_store_entries: crate::config::DEFAULT_REPLAY_STORE_ENTRIES,
        failed_validation_limit: Some(crate::config::DEFAULT_FAILED_VALIDATIONS),
        audit: AuditConfig {
            sink: AuditSinkConfig::Stdout,
            fail_open: false,
        },
        shared_state: None,
        revocations: crate::config::RevocationsConfig::default(),
        dpop_max_age: crate::config::DEFAULT_DPOP_MAX_AGE,
        ops_listen: None,
    };
    let bridge = match Bridge::start(config) {
        Ok(b) => b,
        Err(StartError::Mappings(errors)) => return config_errors(&errors),
        Err(e) => {
            eprintln!("error: {}", crate::exit::chain(&e));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let state = Arc::new(DevState {
        issuers,
        audience: base.clone(),
    });
    let token = match mint(
        &state,
        DEV_ISSUER,
        "dev:alice",
        serde_json::Map::new(),
        Duration::from_secs(3600),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot mint the banner's token: {}", e.description());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mappings = bridge.mappings();
    print_banner(
        &base,
        &mappings_dir,
        &state,
        &token,
        mappings.target_count(),
        mappings.rule_count(),
        aws_endpoint.as_deref(),
    );
    tracing::info!("listening on {addr}");
    let watcher = tokio::spawn(server::watch_and_reload(Arc::clone(&bridge)));
    let extra = Router::new()
        .route("/dev/token", post(mint_handler))
        .with_state(state);
    let served = server::run(listener, bridge, Some(extra), server::shutdown_signal()).await;
    watcher.abort();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The trust entry of built-in issuer `name`.
fn dev_trust(name: &str, url: &str, audience: &str, jwks: String) -> TrustConfig {
    TrustConfig {
        name: name.to_owned(),
        issuer: url.to_owned(),
        audiences: vec![audience.to_owned()],
        jwks: JwksSource::Inline(jwks),
        allow_insecure_loopback: true,
        algorithms: vec![crate::jose::Algorithm::ES256],
        leeway: Duration::from_secs(30),
        max_token_lifetime: MAX_DEV_TOKEN_LIFETIME,
        replay_reject: false,
        jwks_refresh: Duration::from_secs(3600),
        max_staleness: Duration::from_secs(24 * 3600),
        explain_denials: false,
        rate_limit: None,
        max_concurrent: None,
        lazy_jwks: false,
        accept_act: false,
        require_iat: true,
    }
}

/// For `stsbridge test` without a config: the mappings of `dir` with the trust list dev mode
/// would serve them with (a built-in issuer per name the rules use, plus partner files' own).
pub fn offline(dir: &Path) -> Result<(Vec<TrustConfig>, Mappings), ConfigErrors> {
    offline_at(dir, &format!("http://{DEV_LISTEN}"))
}

/// As [`offline`], for a dev server at `base` (`http://127.0.0.1:PORT`) rather than the default
/// address.
pub fn offline_at(dir: &Path, base: &str) -> Result<(Vec<TrustConfig>, Mappings), ConfigErrors> {
    let base = base.to_owned();
    let mut names = referenced_issuers(dir)?;
    names.insert(DEV_ISSUER.to_owned());
    let dev: Vec<TrustConfig> = names
        .into_iter()
        .map(|name| {
            let url = format!("{base}/dev/{name}");
            dev_trust(&name, &url, &base, r#"{"keys":[]}"#.to_owned())
        })
        .collect();
    let (mappings, trust) = Mappings::load_with_trust(dir, &dev, dir)?;
    Ok((trust, mappings))
}

/// `./mappings` when it exists, else the built-in copy in a temporary directory (kept alive by the
/// returned guard).
fn mappings_dir() -> std::io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let local = PathBuf::from("mappings");
    if local.is_dir() {
        return Ok((local, None));
    }
    let dir = tempfile::Builder::new()
        .prefix("stsbridge-dev-mappings-")
        .tempdir()?;
    for (name, text) in EMBEDDED_MAPPINGS {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok((dir.path().to_path_buf(), Some(dir)))
}

fn mint(
    state: &DevState,
    issuer: &str,
    subject: &str,
    claims: serde_json::Map<String, serde_json::Value>,
    lifetime: Duration,
) -> Result<String, ApiError> {
    let signer = state.issuers.get(issuer).ok_or_else(|| {
        let known: Vec<&str> = state.issuers.keys().map(String::as_str).collect();
        ApiError::invalid_request(format!(
            "no built-in issuer {issuer:?}; known: {}",
            known.join(", ")
        ))
    })?;
    let minted = signer
        .mint(
            MintSpec {
                subject,
                audience: &state.audience,
                lifetime: Some(lifetime),
                extra: claims,
            },
            SystemTime::now(),
        )
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Ok(minted.token.expose_secret().to_owned())
}

#[derive(serde::Deserialize)]
struct MintForm {
    issuer: Option<String>,
    sub: Option<String>,
    claims: Option<String>,
    lifetime: Option<String>,
}

/// `POST /dev/token` (form: `issuer`, `sub`, `claims` as a JSON object, `lifetime`): a test token
/// from a built-in issuer, as text; a mistake is a 400 with the API's JSON error body, so that
/// `curl --fail-with-body` stops on it instead of handing the message on as a token.
async fn mint_handler(
    State(state): State<Arc<DevState>>,
    form: Result<Form<MintForm>, axum::extract::rejection::FormRejection>,
) -> Result<String, ApiError> {
    let Form(form) = form.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let bad = |m: String| ApiError::invalid_request(m);
    let claims = match form.claims.as_deref().filter(|c| !c.trim().is_empty()) {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(bad(
                    "claims must be a JSON object, like {\"repository_owner\":\"acme\"}".into(),
                ));
            }
        },
    };
    let lifetime = match form.lifetime.as_deref() {
        None => Duration::from_secs(3600),
        Some(text) => parse_duration(text).map_err(bad)?,
    };
    if lifetime.is_zero() || lifetime > MAX_DEV_TOKEN_LIFETIME {
        return Err(bad("lifetime must be between 1s and 12h".into()));
    }
    let token = mint(
        &state,
        form.issuer.as_deref().unwrap_or(DEV_ISSUER),
        form.sub.as_deref().unwrap_or("dev:alice"),
        claims,
        lifetime,
    )?;
    Ok(format!("{token}\n"))
}

fn print_banner(
    base: &str,
    mappings: &std::path::Path,
    state: &DevState,
    token: &str,
    targets: usize,
    rules: usize,
    aws_endpoint: Option<&str>,
) {
    let names: Vec<&str> = state.issuers.keys().map(String::as_str).collect();
    let aws = match aws_endpoint {
        Some(e) => format!("AWS STS at {e}"),
        None => "AWS STS at its public endpoint; for AWS without an account, start moto's server first \
                 (pip install 'moto[server]' && moto_server -H 127.0.0.1 -p 5000) and pass --aws-endpoint http://127.0.0.1:5000".into(),
    };
    println!(
        r#"
stsbridge is running in DEV MODE on {base}
  Not for production: anyone who can reach this port can mint test tokens.

  stsbridge's issuer:    {base}   (in-memory signing key)
  mappings:              {mappings} ({targets} targets, {rules} rules)
  built-in test issuers: {issuers}   ({base}/dev/<name>, audience {base})
  providers:             internal JWTs; {aws}

A subject token for sub=dev:alice from the built-in "dev" issuer, valid for 1 hour:

export TOKEN='{token}'

Trade it for an internal JWT (RFC 8693 token exchange):

curl -s {base}/oauth2/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d subject_token_type=urn:ietf:params:oauth:token-type:jwt -d audience=hello-api -d scope=hello:read -d "subject_token=$TOKEN"

Or ask for a target in its native shape (AWS targets answer like the container-credentials endpoint):

curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/credentials/hello-api
curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/credentials/sandbox-aws

Mint a token for another built-in issuer, here a GitHub Actions job, and see a denial explained by its decision id:

GH=$(curl -sS --fail-with-body {base}/dev/token -d issuer=github -d sub=repo:acme/payments:ref:refs/heads/feature -d claims='{{"repository_owner":"acme","run_id":"7"}}') && export GH || {{ echo "no token: $GH"; unset GH; }}
curl -s -H "Authorization: Bearer $GH" {base}/v1/credentials/payments-prod-deploy

The minted tokens verify against {base}/.well-known/jwks.json. Audit events follow, one JSON line per decision.
"#,
        mappings = mappings.display(),
        issuers = names.join(", "),
    );
}
