//! The end-to-end suite: one test binary. Each test starts the real `stsbridge` binary on a port
//! from the OS with its own config, a test IdP on loopback, and the upstream it needs (moto's STS
//! server, or a wiremock stand-in speaking STS's documented wire format), then talks HTTP to it
//! like a client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed step must fail the test at once"
)]

mod access;
mod attacks;
mod aws;
mod binding;
mod cli;
mod clouds;
mod contract;
mod errors;
mod keys;
mod leaks;
mod limits;
mod monitoring;
mod openapi;
mod operations;
mod partners;
mod revocation;
mod sdks;
mod shared;
mod shipping;
mod terraform;
mod token_exchange;
mod trust;

use std::path::{Path, PathBuf};

use serde_json::Value;
use stsbridge_e2e::{BRIDGE_URL, BridgeProcess, TestIdp};

/// The binary under test (the same entry point as `bridge/src/main.rs`).
pub const BIN: &str = env!("CARGO_BIN_EXE_stsbridge-under-test");

/// RFC 8693 grant type.
pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of JWTs.
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The mappings most tests use.
pub const MAPPINGS: &str = r#"
version: 1
targets:
  - name: deploy
    aws:
      role_arn: arn:aws:iam::111111111111:role/deploy
      duration: 1h
      session_name: "gh-{{ claims.run_id }}"
      source_identity: "{{ claims.actor }}"
      session_tags: { repository: "{{ claims.repository }}" }
      transitive_tag_keys: [repository]
  - name: cross
    aws:
      role_arn: arn:aws:iam::111111111111:role/hub
      chain:
        - role_arn: arn:aws:iam::222222222222:role/deployer
          external_id: stsbridge-test
  - name: api
    jwt: { audience: billing-api, scopes: [billing:read, billing:write], lifetime: 5m }
  - name: gcs
    gcp:
      audience: //iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge
      service_account: writer@shop-prod.iam.gserviceaccount.com
      scopes: [https://www.googleapis.com/auth/devstorage.read_write]
      lifetime: 30m
  - name: gcp-federated
    gcp:
      audience: //iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge
  - name: blob
    azure:
      tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c
      scope: https://storage.azure.com/.default
  - name: mgmt
    azure:
      tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c
      scope: https://management.azure.com/.default
rules:
  - name: main-deploys
    issuer: ci
    subject: "repo:acme/app:ref:refs/heads/main"
    claims: { repository_owner: acme }
    allow: [deploy, cross, api, gcs, gcp-federated, blob, mgmt]
  - name: services-call-api
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [api]
    actors:
      - { issuer: ci, subject: "svc:gateway" }
  - name: no-mallory
    issuer: ci
    subject: "svc:mallory"
    deny: ["*"]
"#;

/// The claims of a JWT, read without checking anything (what a test inspects).
pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
}

/// The repository's top level (the shipped mappings, terraform/, tests/terraform/).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Options of one stack.
#[derive(Default)]
pub struct Setup<'a> {
    /// STS endpoint (moto or a stand-in).
    pub sts: Option<&'a str>,
    /// GCP stand-in (both the STS and the IAM credentials endpoint).
    pub gcp: Option<&'a str>,
    /// Entra ID stand-in (the authority host).
    pub azure: Option<&'a str>,
    /// Extra YAML lines inside the `ci` trust entry.
    pub trust_extra: &'a str,
    /// Extra top-level YAML.
    pub extra: &'a str,
    /// Mapping file contents (default [`MAPPINGS`]).
    pub mappings: Option<&'a str>,
    /// Environment of the process.
    pub env: Vec<(&'a str, &'a str)>,
    /// The `ci` trust entry's `jwks:` value (default `{ discovery: true }`).
    pub jwks: Option<&'a str>,
    /// The `audit:` value (default `{ sink: stdout }`).
    pub audit: Option<&'a str>,
    /// The `issuer.keys:` value (default `{ dir: keys }`).
    pub keys: Option<&'a str>,
    /// `providers.gcp.max_concurrent` (default: the built-in 64).
    pub gcp_max_concurrent: Option<usize>,
}

/// Writes a config and mappings for `idp` into `dir`; returns the config path.
pub fn write_config(dir: &Path, idp: &TestIdp, setup: &Setup<'_>) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::write(
        dir.join("mappings/test.yaml"),
        setup.mappings.unwrap_or(MAPPINGS),
    )
    .unwrap();
    let sts = setup.sts.unwrap_or("http://127.0.0.1:9");
    let gcp = setup.gcp.unwrap_or("http://127.0.0.1:9");
    let azure = setup.azure.unwrap_or("http://127.0.0.1:9");
    let config = format!(
        r#"version: 1
listen: 127.0.0.1:0
issuer:
  url: {BRIDGE_URL}
  keys: {keys}
  assertion_lifetime: 5m
trust:
  - name: ci
    issuer: {issuer}
    audiences: [{BRIDGE_URL}]
    jwks: {jwks}
    allow_insecure_loopback: true
{trust_extra}
mappings: mappings
providers:
  aws: {{ region: us-east-1, endpoint: "{sts}", timeout: 5s }}
  gcp: {{ sts_endpoint: "{gcp}", iamcredentials_endpoint: "{gcp}", timeout: 5s, max_concurrent: {gcp_max} }}
  azure: {{ authority_host: "{azure}", timeout: 5s }}
audit: {audit}
{extra}
"#,
        issuer = idp.issuer,
        trust_extra = setup.trust_extra,
        jwks = setup.jwks.unwrap_or("{ discovery: true }"),
        audit = setup.audit.unwrap_or("{ sink: stdout }"),
        keys = setup.keys.unwrap_or("{ dir: keys }"),
        gcp_max = setup.gcp_max_concurrent.unwrap_or(64),
        extra = setup.extra,
    );
    let path = dir.join("stsbridge.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A running stack: the IdP, the bridge, and the directory they live in.
pub struct Stack {
    /// The test IdP the bridge trusts as `ci`.
    pub idp: TestIdp,
    /// The bridge under test.
    pub bridge: BridgeProcess,
    /// A client for talking to it.
    pub http: reqwest::Client,
    /// Its working directory (config, mappings, keys).
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts an IdP and a bridge configured by `setup`.
    pub async fn start(setup: Setup<'_>) -> Stack {
        Self::start_with_files(TestIdp::start().await, setup, &[]).await
    }

    /// Starts a bridge trusting `idp`, configured by `setup`, with more files (path relative to
    /// its directory, contents) written beside its config.
    pub async fn start_with_files(
        idp: TestIdp,
        setup: Setup<'_>,
        files: &[(&str, String)],
    ) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &idp, &setup);
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let bridge = BridgeProcess::spawn(
            BIN,
            dir.path(),
            &["serve", "--config", "stsbridge.yaml"],
            &setup.env,
        )
        .await;
        Stack {
            idp,
            bridge,
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// `GET path` on the bridge, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.bridge.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The token of the main branch of acme/app, with a run id.
    pub fn main_token(&self) -> String {
        self.idp.token(
            "repo:acme/app:ref:refs/heads/main",
            serde_json::json!({ "repository_owner": "acme", "repository": "acme/app", "run_id": "42", "actor": "octocat" }),
        )
    }

    /// `GET /v1/credentials/{target}` with `Authorization: <auth>`.
    pub async fn credentials(
        &self,
        target: &str,
        auth: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .get(self.bridge.url(&format!("/v1/credentials/{target}")))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// `GET path` on the bridge, as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.bridge.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// An RFC 8693 exchange of `subject` for target `audience`, with `actor` acting for it.
    pub async fn exchange_for(&self, subject: &str, audience: &str, actor: &str) -> (u16, Value) {
        self.exchange(
            subject,
            audience,
            &[("actor_token", actor), ("actor_token_type", JWT)],
        )
        .await
    }

    /// An RFC 8693 exchange of `subject` for target `audience`, with `extra` form fields.
    pub async fn exchange(
        &self,
        subject: &str,
        audience: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut fields = vec![
            ("grant_type", GRANT),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", audience),
        ];
        fields.extend_from_slice(extra);
        self.token_exchange(&fields).await
    }

    /// `POST /oauth2/token` with form `fields`.
    pub async fn token_exchange(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.bridge.url("/oauth2/token"))
            .form(fields)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// Verifies `token` against the bridge's own published JWKS and returns its claims.
pub async fn verify_with_bridge_jwks(stack: &Stack, token: &str, audience: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = stack
        .http
        .get(stack.bridge.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify_with_jwks(&jwks, token, audience)
}

/// Verifies `token`, issued by the bridge for `audience`, against `jwks`; returns its claims.
pub fn verify_with_jwks(jwks: &jsonwebtoken::jwk::JwkSet, token: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the token's kid is published");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[BRIDGE_URL]);
    validation.set_audience(&[audience]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}
