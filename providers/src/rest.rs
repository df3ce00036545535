//! What the REST providers (GCP, Azure) share: one HTTP client per provider with timeouts, a bound
//! on concurrent upstream calls, and retries with jittered exponential backoff for throttling
//! (HTTP 429) and transient failures (5xx, connection errors, timeouts) within a bounded budget.
//! Every other answer is final at once: retrying a refusal only spends the caller's time and the
//! upstream's quota.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use tokio::sync::Semaphore;

use crate::error::ProviderError;
use crate::request::ProviderKind;

/// Largest upstream answer read: token responses are a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Connection and retry settings of one REST provider.
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// Timeout of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles each retry up to `max_backoff`.
    pub base_backoff: Duration,
    /// Largest single backoff.
    pub max_backoff: Duration,
    /// Total time one call may spend, retries and backoff included.
    pub budget: Duration,
    /// Most upstream calls in flight at once.
    pub max_concurrent: usize,
}

impl Default for RestSettings {
    fn default() -> Self {
        RestSettings {
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(15),
            max_concurrent: 64,
        }
    }
}

/// A finished upstream answer that is not to be retried.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The body (at most [`MAX_RESPONSE_BYTES`]).
    pub body: Vec<u8>,
}

/// An HTTP client with a concurrency bound and a retry policy.
pub struct RestClient {
    provider: ProviderKind,
    http: reqwest::Client,
    limiter: Semaphore,
    settings: RestSettings,
}

impl RestClient {
    /// A client for `provider`; fails only if the TLS stack cannot be set up.
    pub fn new(provider: ProviderKind, settings: RestSettings) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(settings.attempt_timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stsbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unavailable {
                provider,
                detail: format!("the HTTP client could not be built: {e}"),
            })?;
        Ok(RestClient {
            provider,
            limiter: Semaphore::new(settings.max_concurrent.max(1)),
            http,
            settings,
        })
    }

    /// The underlying client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends the request `build` makes, retrying throttling and transient failures; returns the
    /// first answer that is neither. Fails with `Throttled` when the upstream still throttles at
    /// the end of the budget, and `Unavailable` when it stays unreachable or failing.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, ProviderError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = {
                let _permit = self
                    .limiter
                    .acquire()
                    .await
                    .map_err(|_| self.unavailable("the provider is shutting down"))?;
                self.attempt(build()).await
            };
            let (retry_after, failure) = match outcome {
                Ok(answer) => return Ok(answer),
                Err(Retry { after, failure }) => (after, failure),
            };
            let backoff = retry_after.unwrap_or_else(|| self.backoff(attempt));
            let out_of_budget = started.elapsed() + backoff > self.settings.budget;
            if attempt >= self.settings.max_attempts || out_of_budget {
                tracing::warn!(provider = %self.provider, attempts = attempt, "{what} failed: {failure:?}");
                return Err(match failure {
                    Failure::Throttled => ProviderError::Throttled {
                        provider: self.provider,
                        retry_after: retry_after.unwrap_or(self.settings.max_backoff),
                    },
                    Failure::Status(status) => {
                        self.unavailable(&format!("{what} answered HTTP {status}"))
                    }
                    Failure::Transport(detail) => self.unavailable(&format!("{what}: {detail}")),
                });
            }
            tracing::debug!(provider = %self.provider, attempt, ?backoff, "{what} will be retried: {failure:?}");
            tokio::time::sleep(backoff).await;
        }
    }

    async fn attempt(&self, request: RequestBuilder) -> Result<Answer, Retry> {
        let mut response = request.send().await.map_err(|e| Retry {
            after: None,
            failure: Failure::Transport(describe(&e)),
        })?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = retry_after(response.headers()).map(|d| d.min(self.settings.budget));
            let failure = if status == StatusCode::TOO_MANY_REQUESTS {
                Failure::Throttled
            } else {
                Failure::Status(status.as_u16())
            };
            return Err(Retry { after, failure });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(Retry {
                after: None,
                failure: Failure::Transport("the answer is too large".into()),
            });
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(Retry {
                            after: None,
                            failure: Failure::Transport("the answer is too large".into()),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Retry {
                        after: None,
                        failure: Failure::Transport(describe(&e)),
                    });
                }
            }
        }
        Ok(Answer { status, body })
    }

    /// Full jitter: a random wait up to `min(max_backoff, base * 2^(attempt-1))`.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .base_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.settings.max_backoff);
        let mut bytes = [0u8; 4];
        let fraction = match SystemRandom::new().fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        ceiling.mul_f64(fraction)
    }

    fn unavailable(&self, detail: &str) -> ProviderError {
        ProviderError::Unavailable {
            provider: self.provider,
            detail: detail.to_owned(),
        }
    }
}

#[derive(Debug)]
enum Failure {
    Throttled,
    Status(u16),
    Transport(String),
}

struct Retry {
    after: Option<Duration>,
    failure: Failure,
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these services).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

/// A short one-way fingerprint of an opaque token, used as its public id in audit events.
pub fn fingerprint(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cuts an upstream message for the log.
pub fn excerpt(message: &str) -> String {
    message.chars().take(512).collect()
}
