//! The client side of stsbridge's HTTP API, shared by `credential-process` and the agent: one
//! request per credential, the subject token read fresh from its file every time (projected
//! Kubernetes tokens rotate under the same path), errors turned into one-line messages.

pub mod agent;

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::tls::ca_bundle;

/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;
/// Time allowed for one call to the service (which has its own upstream timeouts).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no credential came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token file could not be read or is empty.
    #[error("token file {path}: {detail}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The service could not be reached.
    #[error("cannot reach stsbridge at {url}: {detail}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The service refused; its error code, description and decision id.
    #[error("stsbridge refused ({status} {code}): {description}{}", decision_id.as_deref().map(|d| format!(" [decision {d}]")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` field.
        code: String,
        /// The `error_description` field.
        description: String,
        /// The decision id, for the operator.
        decision_id: Option<String>,
    },
    /// The answer could not be understood.
    #[error("stsbridge answered something unexpected: {0}")]
    Invalid(String),
    /// The client could not be set up (a bad CA bundle).
    #[error("{0}")]
    Setup(String),
}

/// How a client reaches an HTTPS service: a private CA to trust, and a client certificate to
/// present (for a listener that requires one, rules that name its certificate, or bound tokens).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTls {
    /// A PEM CA bundle to trust for an HTTPS service with a private CA.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (leaf first) to present over mTLS.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// Reads a subject token: whitespace around it (a trailing newline) is dropped.
pub fn read_token(path: &Path) -> Result<SecretString, ClientError> {
    let fail = |detail: String| ClientError::TokenFile {
        path: path.to_path_buf(),
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_TOKEN_FILE_BYTES} bytes")));
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("is empty".into()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// A client of one stsbridge service.
#[derive(Clone)]
pub struct BridgeClient {
    http: reqwest::Client,
    base: String,
}

impl BridgeClient {
    /// A client of the service at `base` (`https://...`, or `http://` to loopback), trusting the
    /// system roots plus `tls.ca_file`, presenting `tls.client_cert` when given.
    pub fn new(base: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        crate::config::check_url(base, true).map_err(ClientError::Setup)?;
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stsbridge-client/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &tls.ca_file {
            builder = builder.tls_certs_merge(ca_bundle(ca).map_err(ClientError::Setup)?);
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            builder = builder
                .identity(crate::tls::client_identity(cert, key).map_err(ClientError::Setup)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(format!("HTTP client: {e}")))?;
        Ok(BridgeClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `GET /v1/credentials/{target}` with `token`; `credential_process` asks for AWS's Version 1
    /// shape. Returns the response body (which holds secrets: keep it out of logs).
    pub async fn credentials(
        &self,
        target: &str,
        token: &SecretString,
        credential_process: bool,
    ) -> Result<SecretString, ClientError> {
        let mut url = format!("{}/v1/credentials/{target}", self.base);
        if credential_process {
            url.push_str("?format=credential_process");
        }
        self.send(self.http.get(&url), token).await
    }

    /// `GET` of the client's own URL with no credential, within `timeout`: `Ok` with the first
    /// line of the body on a 2xx, else why not (`stsbridge probe`, the exec probe of images
    /// with no shell).
    pub async fn probe(&self, timeout: Duration) -> Result<String, ClientError> {
        let unreachable = |detail: String| ClientError::Unreachable {
            url: self.base.clone(),
            detail,
        };
        let answer = async {
            let response = self.http.get(&self.base).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        let (status, body) = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(crate::exit::http_failure(&e)))?;
        let first_line: String = body
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        if status.is_success() {
            return Ok(first_line);
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: status.canonical_reason().unwrap_or("error").to_owned(),
            description: first_line,
            decision_id: None,
        })
    }

    /// A JSON call to the service's API (`/v1/revocations`...) with the caller's own `token`:
    /// the answer's JSON, or the refusal.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &SecretString,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let text = self.send(request, token).await?;
        serde_json::from_str(text.expose_secret())
            .map_err(|e| ClientError::Invalid(format!("not JSON: {e}")))
    }

    /// Sends `request` with `token`: the body of a success, else the service's refusal.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<SecretString, ClientError> {
        let response = request
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            )
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                detail: crate::exit::http_failure(&e),
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                detail: crate::exit::http_failure(&e),
            })?;
        if status.is_success() {
            return Ok(SecretString::from(body));
        }
        let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let field = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: field("error").unwrap_or_else(|| "unknown".into()),
            description: field("error_description")
                .unwrap_or_else(|| body.chars().take(200).collect()),
            decision_id: field("decision_id"),
        })
    }
}
