//! Fetching and refreshing the key sets of trusted issuers.
//!
//! Each issuer's set is held in memory and swapped whole. It is refreshed on a schedule, and on demand
//! when a token names an unknown `kid` (rate limited, so a flood of made-up `kid`s cannot turn into a
//! flood of requests to the IdP). When the IdP cannot be reached, the last good set stays in use.
//! Fetches are https only (plain http to loopback where a trust entry allows it for tests), follow
//! no redirects, and are bounded in size and time.
//!
//! Partner trust entries (those from partner files) are lazy: nothing is fetched until the first
//! token of that issuer arrives, and only then is the set kept fresh on its schedule. A partner
//! whose IdP is down costs its own callers one bounded wait per [`MIN_FORCED_REFRESH`], never
//! anyone else's: each issuer fetches alone, and scheduled refreshes share a bounded pool.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::keys::{JwksError, KeySet, MAX_JWKS_BYTES, parse_jwks};
use crate::config::{JwksSource, TrustConfig, check_fetch_url};
use crate::metrics::Metrics;

/// Time allowed for one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Forced refreshes (unknown `kid`, keys never loaded) happen at most this often per issuer.
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(30);
/// First retry delay after a failed scheduled refresh; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(5);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// Largest discovery document accepted.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Scheduled refreshes in flight at once, over all issuers. Fetches a token is waiting for do not
/// queue behind them.
const SCHEDULED_FETCHES: usize = 32;

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP request failed.
    #[error("request to {url} failed: {detail}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The discovery document is unusable.
    #[error("discovery document at {url} is unusable: {detail}")]
    Discovery {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The key file could not be read.
    #[error("cannot read {path}: {detail}")]
    File {
        /// The path.
        path: String,
        /// What happened.
        detail: String,
    },
    /// The JWKS is unusable.
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// What `/readyz` reports about one issuer. `/readyz` answers anyone, so this names what is wrong
/// but never carries the fetch error's text: an IdP's discovery document chooses where the next
/// fetch connects, and its error (address, port, connection refused) would make `/readyz` a port
/// scanner that reports back. The text is logged when the fetch fails.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerStatus {
    /// Trust entry name.
    pub name: String,
    /// Keys have been loaded at least once.
    pub loaded: bool,
    /// Number of keys in use.
    pub keys: usize,
    /// Unix time of the last successful fetch.
    pub last_success: Option<u64>,
    /// The last fetch failed (why is in the log).
    pub fetch_failing: bool,
    /// The keys in use are older than one refresh interval (the IdP is not answering).
    pub degraded: bool,
    /// A partner entry: keys are fetched when its first token arrives.
    pub lazy: bool,
    /// Why the last fetch failed: only for the operations listener's `/readyz`, never
    /// serialized into the public one.
    #[serde(skip)]
    pub last_error: Option<String>,
}

struct IssuerKeys {
    trust: TrustConfig,
    current: RwLock<Option<Arc<KeySet>>>,
    last_forced: tokio::sync::Mutex<Option<Instant>>,
    /// The last successful fetch, and why the last fetch failed if it did (cleared by a
    /// success).
    health: RwLock<(Option<SystemTime>, Option<String>)>,
}

/// The key sets of every trusted issuer.
pub struct JwksManager {
    http: reqwest::Client,
    issuers: HashMap<String, Arc<IssuerKeys>>,
    metrics: Option<Arc<Metrics>>,
    scheduled: Arc<tokio::sync::Semaphore>,
}

impl JwksManager {
    /// A manager for `trust`; no key is fetched until [`refresh`](Self::refresh) or
    /// [`spawn_refreshers`](Self::spawn_refreshers).
    pub fn new(trust: &[TrustConfig], metrics: Option<Arc<Metrics>>) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT / 2)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stsbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Http {
                url: String::new(),
                detail: e.to_string(),
            })?;
        let issuers = trust
            .iter()
            .map(|t| {
                let keys = IssuerKeys {
                    trust: t.clone(),
                    current: RwLock::new(None),
                    last_forced: tokio::sync::Mutex::new(None),
                    health: RwLock::new((None, None)),
                };
                (t.name.clone(), Arc::new(keys))
            })
            .collect();
        Ok(JwksManager {
            http,
            issuers,
            metrics,
            scheduled: Arc::new(tokio::sync::Semaphore::new(SCHEDULED_FETCHES)),
        })
    }

    /// The current key set of trust entry `name`: `None` if never loaded, or if the last
    /// successful fetch is older than the entry's `max_staleness` (the IdP has been unreachable
    /// too long to keep trusting what it last published).
    pub fn keys(&self, name: &str) -> Option<Arc<KeySet>> {
        let issuer = self.issuers.get(name)?;
        let last_success = issuer.health.read().ok()?.0?;
        let age = SystemTime::now()
            .duration_since(last_success)
            .unwrap_or_default();
        if age > issuer.trust.max_staleness {
            return None;
        }
        issuer.current.read().ok()?.clone()
    }

    /// Takes over the key sets of `previous` for every issuer whose trust entry is unchanged, so
    /// a reload does not refetch them (or lose them while an IdP is down).
    pub fn adopt(&self, previous: &JwksManager) {
        for (name, issuer) in &self.issuers {
            let Some(old) = previous
                .issuers
                .get(name)
                .filter(|old| old.trust == issuer.trust)
            else {
                continue;
            };
            if let (Ok(keys), Ok(mut current)) = (old.current.read(), issuer.current.write()) {
                current.clone_from(&keys);
            }
            if let (Ok(health), Ok(mut new)) = (old.health.read(), issuer.health.write()) {
                new.clone_from(&health);
            }
        }
    }

    /// Fetches trust entry `name`'s keys now and swaps them in; on failure the previous set stays.
    pub async fn refresh(&self, name: &str) -> Result<usize, FetchError> {
        let Some(issuer) = self.issuers.get(name) else {
            return Ok(0);
        };
        let result = self.fetch(&issuer.trust).await;
        match result {
            Ok((set, skipped)) => {
                let count = set.len();
                for why in &skipped {
                    tracing::warn!(issuer = %name, "skipped a JWKS entry: {why}");
                }
                if let Ok(mut current) = issuer.current.write() {
                    *current = Some(Arc::new(set));
                }
                if let Ok(mut health) = issuer.health.write() {
                    *health = (Some(SystemTime::now()), None);
                }
                self.count(name, "success");
                tracing::debug!(issuer = %name, keys = count, "JWKS refreshed");
                Ok(count)
            }
            Err(e) => {
                let kept = self.keys(name).map_or(0, |k| k.len());
                tracing::warn!(issuer = %name, kept_keys = kept, "JWKS refresh failed: {e}");
                if let Ok(mut health) = issuer.health.write() {
                    health.1 = Some(e.to_string());
                }
                self.count(name, "error");
                Err(e)
            }
        }
    }

    /// Refreshes trust entry `name` because a token needs a key the current set lacks (`kid`, or
    /// any key when `kid` is `None` and none is loaded). Rate limited to one forced refresh per
    /// [`MIN_FORCED_REFRESH`] per issuer; concurrent callers wait for the one refresh. Returns true
    /// when the needed key is now present.
    pub async fn refresh_for(&self, name: &str, kid: Option<&str>) -> bool {
        let Some(issuer) = self.issuers.get(name) else {
            return false;
        };
        let has_it = |keys: Option<Arc<KeySet>>| match (keys, kid) {
            (Some(k), Some(kid)) => k.has_kid(kid),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let mut last = issuer.last_forced.lock().await;
        if has_it(self.keys(name)) {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < MIN_FORCED_REFRESH) {
            return false;
        }
        *last = Some(Instant::now());
        self.refresh(name).await.is_ok() && has_it(self.keys(name))
    }

    fn count(&self, name: &str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.jwks_refresh.with_label_values(&[name, outcome]).inc();
        }
    }

    /// Starts one background task per issuer: fetch now (or after one interval when the keys
    /// were adopted from a previous manager), then on its refresh interval, retrying failures
    /// with backoff. A lazy issuer's task refreshes only once a token has loaded its keys. Abort
    /// the handles to stop them.
    pub fn spawn_refreshers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        self.issuers
            .values()
            .map(|issuer| {
                let me = Arc::clone(self);
                let keys = Arc::clone(issuer);
                let name = issuer.trust.name.clone();
                let interval = issuer.trust.jwks_refresh;
                let lazy = issuer.trust.lazy_jwks;
                let adopted = issuer.current.read().is_ok_and(|k| k.is_some());
                tokio::spawn(async move {
                    let mut delay = FIRST_RETRY_DELAY;
                    if adopted || lazy {
                        tokio::time::sleep(interval).await;
                    }
                    loop {
                        if lazy && keys.current.read().is_ok_and(|k| k.is_none()) {
                            tokio::time::sleep(interval).await;
                            continue;
                        }
                        let refreshed = {
                            let _permit = me.scheduled.acquire().await;
                            me.refresh(&name).await
                        };
                        let wait = match refreshed {
                            Ok(_) => {
                                delay = FIRST_RETRY_DELAY;
                                interval
                            }
                            Err(_) => {
                                let d = delay.min(interval);
                                delay = (delay * 2).min(MAX_RETRY_DELAY);
                                d
                            }
                        };
                        tokio::time::sleep(wait).await;
                    }
                })
            })
            .collect()
    }

    /// Whether every issuer's keys, lazy ones aside, have been loaded at least once.
    pub fn all_loaded(&self) -> bool {
        self.issuers
            .iter()
            .filter(|(_, i)| !i.trust.lazy_jwks)
            .all(|(name, _)| self.keys(name).is_some())
    }

    /// Per-issuer status for `/readyz`.
    pub fn status(&self) -> Vec<IssuerStatus> {
        let mut out: Vec<IssuerStatus> = self
            .issuers
            .iter()
            .map(|(name, issuer)| {
                let keys = self.keys(name);
                let (last_success, last_error) =
                    issuer.health.read().map(|h| h.clone()).unwrap_or_default();
                let fetch_failing = last_error.is_some();
                let age = last_success.and_then(|t| SystemTime::now().duration_since(t).ok());
                IssuerStatus {
                    name: name.clone(),
                    loaded: keys.is_some(),
                    keys: keys.map_or(0, |k| k.len()),
                    last_success: last_success.map(super::unix_seconds),
                    degraded: fetch_failing && age.is_some_and(|a| a > issuer.trust.jwks_refresh),
                    fetch_failing,
                    lazy: issuer.trust.lazy_jwks,
                    last_error,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    async fn fetch(&self, trust: &TrustConfig) -> Result<(KeySet, Vec<String>), FetchError> {
        let bytes = match &trust.jwks {
            JwksSource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    trust.issuer.trim_end_matches('/')
                );
                let doc = self
                    .get(&url, MAX_DISCOVERY_BYTES, trust.allow_insecure_loopback)
                    .await?;
                let jwks_uri = jwks_uri_from_discovery(&url, &doc, trust)?;
                self.get(&jwks_uri, MAX_JWKS_BYTES, trust.allow_insecure_loopback)
                    .await?
            }
            JwksSource::Uri(url) => {
                self.get(url, MAX_JWKS_BYTES, trust.allow_insecure_loopback)
                    .await?
            }
            JwksSource::File(path) => {
                let file_error = |detail: String| FetchError::File {
                    path: path.display().to_string(),
                    detail,
                };
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| file_error(e.to_string()))?;
                if meta.len() > MAX_JWKS_BYTES as u64 {
                    return Err(JwksError::TooLarge.into());
                }
                tokio::fs::read(path)
                    .await
                    .map_err(|e| file_error(e.to_string()))?
            }
            JwksSource::Inline(doc) => doc.as_bytes().to_vec(),
        };
        Ok(parse_jwks(&bytes)?)
    }

    async fn get(
        &self,
        url: &str,
        limit: usize,
        allow_loopback: bool,
    ) -> Result<Vec<u8>, FetchError> {
        let http_error = |detail: String| FetchError::Http {
            url: url.to_owned(),
            detail,
        };
        check_fetch_url(url, allow_loopback).map_err(http_error)?;
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http_error(crate::exit::http_failure(&e)))?;
        if !response.status().is_success() {
            return Err(http_error(format!("HTTP {}", response.status())));
        }
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(http_error(format!(
                "the response is larger than {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(crate::exit::http_failure(&e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(http_error(format!(
                    "the response is larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn jwks_uri_from_discovery(
    url: &str,
    doc: &[u8],
    trust: &TrustConfig,
) -> Result<String, FetchError> {
    let bad = |detail: String| FetchError::Discovery {
        url: url.to_owned(),
        detail,
    };
    let doc: Value = serde_json::from_slice(doc).map_err(|_| bad("not JSON".into()))?;
    let issuer = doc
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no issuer".into()))?;
    // OIDC Discovery 1.0 §4.3: the issuer in the document must be exactly the one configured.
    if issuer != trust.issuer {
        return Err(bad(format!(
            "it names issuer {issuer:?}, not {:?}",
            trust.issuer
        )));
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no jwks_uri".into()))?;
    check_fetch_url(jwks_uri, trust.allow_insecure_loopback).map_err(bad)?;
    Ok(jwks_uri.to_owned())
}
