//! The agent: a loopback sidecar that serves each cloud SDK's own local credential protocol, so a
//! function or container needs no code change.
//!
//! It reads the workload's token from a file (fresh on every call to the service, so a rotated
//! projected token is picked up without restart), asks the service for credentials, caches them
//! per target until shortly before they expire, and serves:
//! - AWS container credentials at `/aws/credentials`, guarded by a random secret written to a 0600
//!   file (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`);
//! - the GCE metadata server under `/computeMetadata/v1/`, requiring `Metadata-Flavor: Google`;
//! - Azure App Service managed identity at `/msi/token`, guarded by `X-IDENTITY-HEADER`.
//!
//! It binds loopback only: the GCE protocol has no secret, so anything that can reach the port can
//! get the token, exactly as on a VM. And it answers only requests addressed to a loopback or
//! metadata host, so a browser page cannot reach it by rebinding its own name to 127.0.0.1.
//!
//! Rooms: `routes` (the endpoints of each protocol), `host` (the `Host` check in front of them).

mod host;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::client::{BridgeClient, ClientError, read_token};

pub use routes::router;

/// AWS credentials are refreshed with this much left: botocore treats anything shorter as expired.
const AWS_MARGIN: Duration = stsbridge_providers::aws::SDK_REFRESH_MARGIN;
/// Other tokens are refreshed with this much left.
const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The three protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// AWS container credentials.
    Aws,
    /// GCE metadata server.
    Gcp,
    /// Azure App Service managed identity.
    Azure,
}

/// What the agent is told on its command line.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The service's base URL.
    pub bridge: String,
    /// The workload's token file.
    pub token_file: PathBuf,
    /// Loopback address to listen on.
    pub listen: SocketAddr,
    /// Target served as AWS container credentials.
    pub aws_target: Option<String>,
    /// Target served as the GCE metadata server.
    pub gcp_target: Option<String>,
    /// Target served as the App Service managed identity.
    pub azure_target: Option<String>,
    /// A private CA to trust, a client certificate to present.
    pub tls: super::ClientTls,
    /// Where the AWS authorization token file goes (default: a new private temporary directory).
    pub state_dir: Option<PathBuf>,
    /// Project id the metadata server reports.
    pub gcp_project: Option<String>,
    /// A file holding the `IDENTITY_HEADER` secret to use instead of a generated one, for
    /// platforms where the workload's environment is fixed before the agent starts (Kubernetes:
    /// both containers read it from one Secret).
    pub azure_identity_header_file: Option<PathBuf>,
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A bad option.
    #[error("{0}")]
    Options(String),
    /// The state directory or secret file could not be written.
    #[error("{path}: {detail}")]
    State {
        /// The path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The service client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A credential as the service answered it, with its expiry.
struct Cached {
    body: SecretString,
    expires_at: SystemTime,
}

/// The running agent's state.
pub struct Agent {
    client: BridgeClient,
    token_file: PathBuf,
    targets: HashMap<Cloud, String>,
    aws_secret: SecretString,
    azure_secret: SecretString,
    gcp_project: Option<String>,
    cache: HashMap<Cloud, tokio::sync::Mutex<Option<Cached>>>,
}

/// 256 random bits, base64url: a value fit for an HTTP header.
fn local_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    // If the OS has no entropy, refusing to start is the only safe answer.
    let filled =
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
            .is_ok();
    let secret = if filled {
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        String::new()
    };
    SecretString::from(secret)
}

impl Agent {
    /// Validates the options and creates the local secrets. Returns the agent and the environment
    /// lines a workload exports to use it (`port` is the port actually bound).
    pub fn new(options: &AgentOptions, port: u16) -> Result<(Agent, Vec<String>), AgentError> {
        if !options.listen.ip().is_loopback() {
            return Err(AgentError::Options(format!(
                "the agent serves credentials to anything that can reach it, so it listens on loopback only (got {})",
                options.listen
            )));
        }
        let mut targets = HashMap::new();
        for (cloud, target) in [
            (Cloud::Aws, &options.aws_target),
            (Cloud::Gcp, &options.gcp_target),
            (Cloud::Azure, &options.azure_target),
        ] {
            if let Some(t) = target {
                targets.insert(cloud, t.clone());
            }
        }
        if targets.is_empty() {
            return Err(AgentError::Options(
                "name at least one of --aws-target, --gcp-target, --azure-target".into(),
            ));
        }
        // Fail now, not at the first request, when the token file cannot be read.
        read_token(&options.token_file)?;
        let client = BridgeClient::new(&options.bridge, &options.tls)?;
        let aws_secret = local_secret();
        let azure_secret = match &options.azure_identity_header_file {
            None => local_secret(),
            Some(path) => {
                let secret = read_token(path)?;
                if secret.expose_secret().len() < 16
                    || !secret.expose_secret().bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(AgentError::Options(format!(
                        "{}: the identity header must be at least 16 printable characters",
                        path.display()
                    )));
                }
                secret
            }
        };
        if aws_secret.expose_secret().is_empty() || azure_secret.expose_secret().is_empty() {
            return Err(AgentError::Options(
                "the system's random number generator failed".into(),
            ));
        }
        let host = format!("127.0.0.1:{port}");
        let mut env = Vec::new();
        if targets.contains_key(&Cloud::Aws) {
            let dir = match &options.state_dir {
                Some(d) => d.clone(),
                None => std::env::temp_dir().join(format!("stsbridge-agent-{port}")),
            };
            let file = write_secret(
                &dir,
                "aws-container-authorization-token",
                aws_secret.expose_secret(),
            )?;
            env.push(format!(
                "export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{host}/aws/credentials"
            ));
            env.push(format!(
                "export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}",
                file.display()
            ));
        }
        if targets.contains_key(&Cloud::Gcp) {
            env.push(format!("export GCE_METADATA_HOST={host}"));
            env.push(format!("export GCE_METADATA_IP={host}"));
        }
        if targets.contains_key(&Cloud::Azure) {
            env.push(format!("export IDENTITY_ENDPOINT=http://{host}/msi/token"));
            env.push(format!(
                "export IDENTITY_HEADER={}",
                azure_secret.expose_secret()
            ));
        }
        let cache = targets
            .keys()
            .map(|c| (*c, tokio::sync::Mutex::new(None)))
            .collect();
        let agent = Agent {
            client,
            token_file: options.token_file.clone(),
            targets,
            aws_secret,
            azure_secret,
            gcp_project: options.gcp_project.clone(),
            cache,
        };
        Ok((agent, env))
    }

    /// The credential for `cloud`'s target as the service answers it (JSON text holding secrets),
    /// from the cache while it has more than the margin left. Concurrent callers share one fetch.
    async fn credential(&self, cloud: Cloud) -> Result<(Value, SystemTime), ClientError> {
        let Some(target) = self.targets.get(&cloud) else {
            return Err(ClientError::Invalid(
                "no target is configured for this protocol".into(),
            ));
        };
        let Some(slot) = self.cache.get(&cloud) else {
            return Err(ClientError::Invalid(
                "no target is configured for this protocol".into(),
            ));
        };
        let mut slot = slot.lock().await;
        let now = SystemTime::now();
        let margin = if cloud == Cloud::Aws {
            AWS_MARGIN
        } else {
            TOKEN_MARGIN
        };
        if let Some(cached) = slot.as_ref().filter(|c| c.expires_at > now + margin) {
            return Ok((parse(&cached.body)?, cached.expires_at));
        }
        let token = read_token(&self.token_file)?;
        let body = self.client.credentials(target, &token, false).await?;
        let value = parse(&body)?;
        let expires_at = expiry(cloud, &value, now)?;
        tracing::info!(target_name = %target, expires_in_s = expires_at.duration_since(now).map_or(0, |d| d.as_secs()), "fetched a credential");
        *slot = Some(Cached { body, expires_at });
        Ok((value, expires_at))
    }
}

fn parse(body: &SecretString) -> Result<Value, ClientError> {
    serde_json::from_str(body.expose_secret())
        .map_err(|_| ClientError::Invalid("the answer is not JSON".into()))
}

/// When a credential in the service's answer expires.
fn expiry(cloud: Cloud, body: &Value, fetched_at: SystemTime) -> Result<SystemTime, ClientError> {
    let bad = |what: &str| ClientError::Invalid(format!("the answer has no usable {what}"));
    match cloud {
        Cloud::Aws => {
            let text = body["Expiration"]
                .as_str()
                .ok_or_else(|| bad("Expiration"))?;
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| bad("Expiration"))
        }
        Cloud::Gcp => Ok(fetched_at
            + Duration::from_secs(
                body["expires_in"]
                    .as_u64()
                    .ok_or_else(|| bad("expires_in"))?,
            )),
        Cloud::Azure => {
            let secs: u64 = body["expires_on"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("expires_on"))?;
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        }
    }
}

/// Writes `secret` (no trailing newline: botocore refuses one) to `dir/name`, mode 0600, in a
/// directory created 0700.
fn write_secret(dir: &Path, name: &str, secret: &str) -> Result<PathBuf, AgentError> {
    let fail = |path: &Path, e: std::io::Error| AgentError::State {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(dir, e))?;
    let path = dir.join(name);
    // Replace any file a previous run left: a fresh secret per start.
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(&path, e))?;
    std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(|e| fail(&path, e))?;
    Ok(path)
}

/// Runs the agent until SIGTERM or Ctrl-C: binds, prints the environment lines on stdout, serves.
pub async fn run(options: AgentOptions) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| AgentError::Options(format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Options(e.to_string()))?;
    let (agent, env) = Agent::new(&options, addr.port())?;
    for line in env {
        println!("{line}");
    }
    tracing::info!("listening on {addr}");
    let app = router(std::sync::Arc::new(agent));
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::server::shutdown_signal())
        .await
        .map_err(|e| AgentError::Options(e.to_string()))
}

#[cfg(test)]
mod tests;
