//! The shared state in a Redis-protocol server (Redis, Valkey, the clouds' managed ones): every
//! admission is one script call (`EVALSHA`, `EVAL` once after a server restart), which applies
//! the steps in order, atomically, on the server's clock; so it is exact across replicas and
//! costs one round trip.
//!
//! When the server cannot be reached, times out, or answers anything but what the script returns,
//! this replica falls back: single-use tokens are refused (503, `shared_state_unavailable`),
//! rate limits use this replica's own buckets, `/readyz` says `degraded`; a watcher pings the
//! server twice a second, and once it answers the shared state is used again, with no restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Value};
use secrecy::{ExposeSecret, SecretString};

use super::memory::{MemoryState, SingleUse};
use super::{Refusal, SharedState, Step};
use crate::config::SharedStateConfig;
use crate::metrics::Metrics;

/// What a single-use token refused for want of the shared state is told: about when the watcher
/// will have looked again.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(1);
/// How often a replica pings the server: an outage and its end are noticed within about this
/// long, and a dead server costs one connection attempt per interval per replica.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest password file: a password, not a document.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// The admission script. KEYS: one per step. ARGV: three per step: `b`, tokens per millisecond,
/// burst (a bucket, kept as a hash {t: tokens, a: milliseconds} that expires once full again);
/// or `j`, time to live in milliseconds, unused (a used `jti`: `SET NX PX`). Applies the steps
/// in order and stops at the first refusal. Returns {0, "ok", 0}, or {step (1-based),
/// "limited", wait in ms} or {step, "replayed", 0}. Time is the server's, so every replica
/// refills every bucket by the same clock.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 2]
  if kind == 'b' then
    local rate = tonumber(ARGV[3 * i - 1])
    local burst = tonumber(ARGV[3 * i])
    local tokens, at = burst, now
    local saved = redis.call('HMGET', KEYS[i], 't', 'a')
    if saved[1] and saved[2] then
      tokens = tonumber(saved[1])
      at = tonumber(saved[2])
    end
    tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
    if now > at then at = now end
    if tokens < 1 then
      return {i, 'limited', math.max(1, math.ceil((1 - tokens) / rate))}
    end
    tokens = tokens - 1
    redis.call('HSET', KEYS[i], 't', tostring(tokens), 'a', tostring(at))
    redis.call('PEXPIRE', KEYS[i], math.ceil((burst - tokens) / rate) + (at - now) + 1)
  elseif kind == 'j' then
    if not redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[3 * i - 1]) then
      return {i, 'replayed', 0}
    end
  else
    return redis.error_reply('unknown step kind')
  end
end
return {0, 'ok', 0}
";

/// Reads the Redis password from `path`: the whole file less a trailing newline, not empty.
/// The error names the file, never its contents.
pub fn read_password(path: &std::path::Path) -> Result<SecretString, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut text = String::new();
    file.take(MAX_PASSWORD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let secret = SecretString::from(text);
    let password = secret.expose_secret();
    if password.len() as u64 > MAX_PASSWORD_BYTES {
        return Err(format!("longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    let trimmed = password.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Why a call to the server failed (for the log; `/readyz` and errors only name the reason).
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Single use and rate limits in Redis, with this replica's own buckets as the fallback for
/// rate limits.
pub struct RedisState {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    local: MemoryState,
    /// Set while the server is not answering: admissions do not wait for it; the watcher clears it.
    fallback: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RedisState {
    /// A client for `config` (connecting lazily, so a Redis that is down at start is a degraded
    /// replica, not one that cannot start), with `replay_entries` for the local store; checks
    /// the server once in the background. Must run inside a tokio runtime. Fails only when
    /// the URL cannot be used.
    pub fn connect(
        config: &SharedStateConfig,
        password: Option<SecretString>,
        replay_entries: usize,
        metrics: Arc<Metrics>,
    ) -> Result<RedisState, String> {
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("shared_state.redis.url: {e}"))?;
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(password) = &password {
            settings = settings.set_password(password.expose_secret());
        }
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| format!("shared_state.redis: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One attempt per call: the watcher, not the manager, paces reconnecting while the
            // server is away.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| format!("shared_state.redis: {e}"))?;
        metrics.shared_state_fallback.set(0);
        let inner = Arc::new(Inner {
            connection,
            client,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            script: redis::Script::new(ADMIT),
            local: MemoryState::new(replay_entries),
            fallback: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(watch(Arc::downgrade(&inner)));
        Ok(RedisState { inner })
    }
}

/// The same server for the other stores that live there (revocations, reference tokens): a
/// connection, the client (for a subscription of its own), the key prefix and the timeout.
#[derive(Clone)]
pub struct RedisHandle {
    /// Shared with the admissions.
    pub connection: ConnectionManager,
    /// For connections of its own (a subscription holds one).
    pub client: redis::Client,
    /// What every key starts with.
    pub prefix: String,
    /// Longest wait for one round trip.
    pub timeout: Duration,
}

impl RedisState {
    /// This server, for the other stores that live there.
    pub fn handle(&self) -> RedisHandle {
        RedisHandle {
            connection: self.inner.connection.clone(),
            client: self.inner.client.clone(),
            prefix: self.inner.prefix.clone(),
            timeout: self.inner.timeout,
        }
    }
}

impl Inner {
    /// The server's key of `step`.
    fn key(&self, step: &Step) -> String {
        let (kind, key) = match step {
            Step::Take { kind, key, .. } => (kind.as_str(), key),
            Step::FirstUse { key, .. } => ("jti", key),
        };
        format!("{}{kind}:{}", self.prefix, crate::digest::hex(key))
    }

    /// One call, timed and counted under `op`.
    async fn call<T>(
        &self,
        op: &str,
        f: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(self.timeout)),
        };
        self.metrics
            .shared_state_seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics
                .shared_state_errors
                .with_label_values(&[op])
                .inc();
        }
        result
    }

    async fn ping(&self) -> Result<(), CallError> {
        let mut connection = self.connection.clone();
        self.call("ping", async move {
            let pong: Value = redis::cmd("PING").query_async(&mut connection).await?;
            match pong {
                Value::SimpleString(s) if s == "PONG" => Ok(()),
                other => Err(CallError::Unexpected(format!("{other:?} to PING"))),
            }
        })
        .await
    }

    /// The script over `steps` at `now` (the replica's clock, for the time to live of `jti`s).
    async fn run(&self, steps: &[Step], now: SystemTime) -> Result<Result<(), Refusal>, CallError> {
        let mut invocation = self.script.prepare_invoke();
        for step in steps {
            invocation.key(self.key(step));
            match step {
                Step::Take { rate, .. } => {
                    invocation
                        .arg("b")
                        .arg((rate.per_second / 1000.0).to_string())
                        .arg(rate.burst);
                }
                Step::FirstUse { forget_at, .. } => {
                    let ttl = forget_at
                        .duration_since(now)
                        .map_or(1, |d| d.as_millis().clamp(1, i64::MAX as u128) as i64);
                    invocation.arg("j").arg(ttl).arg("");
                }
            }
        }
        let mut connection = self.connection.clone();
        let reply: Value = self
            .call("admit", async move {
                Ok(invocation.invoke_async(&mut connection).await?)
            })
            .await?;
        parse_reply(&reply, steps.len())
    }

    /// Enters fallback, once per outage: logged, and the gauge set.
    fn fall_back(&self, error: &CallError) {
        if self.fallback.swap(true, Ordering::SeqCst) {
            return;
        }
        self.metrics.shared_state_fallback.set(1);
        tracing::warn!(
            "shared state (redis) unavailable: {error}; single-use tokens are refused and rate \
             limits are this replica's own until it answers again"
        );
    }

    /// Leaves fallback, once per recovery.
    fn recover(&self) {
        if self.fallback.swap(false, Ordering::SeqCst) {
            self.metrics.shared_state_fallback.set(0);
            tracing::warn!("shared state (redis) answers again: using it");
        }
    }
}

/// Pings the server every [`PROBE_INTERVAL`] while the store exists: a replica learns of an
/// outage even when no exchange needs the server (so `/readyz` says so), and of its end without
/// any exchange paying a timeout for it.
async fn watch(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(state) = inner.upgrade() else {
            return;
        };
        match state.ping().await {
            Ok(()) => state.recover(),
            Err(e) => state.fall_back(&e),
        }
        drop(state);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// The script's answer, strictly: anything else is an error, never an admission.
fn parse_reply(reply: &Value, steps: usize) -> Result<Result<(), Refusal>, CallError> {
    let unexpected = || CallError::Unexpected(format!("{reply:?}"));
    let Value::Array(items) = reply else {
        return Err(unexpected());
    };
    let [Value::Int(step), status, Value::Int(wait)] = items.as_slice() else {
        return Err(unexpected());
    };
    let status = match status {
        Value::BulkString(b) => b.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        _ => return Err(unexpected()),
    };
    let index = usize::try_from(*step)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .filter(|s| *s < steps);
    match (status, index, u64::try_from(*wait)) {
        (b"ok", None, Ok(0)) if *step == 0 => Ok(Ok(())),
        (b"limited", Some(step), Ok(ms)) if ms > 0 => Ok(Err(Refusal::Limited {
            step,
            retry_after: Duration::from_millis(ms),
        })),
        (b"replayed", Some(step), Ok(0)) => Ok(Err(Refusal::Replayed { step })),
        _ => Err(unexpected()),
    }
}

impl SharedState for RedisState {
    fn admit<'a>(
        &'a self,
        steps: &'a [Step],
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let inner = &self.inner;
            if steps.is_empty() {
                return Ok(());
            }
            if !inner.fallback.load(Ordering::SeqCst) {
                match inner.run(steps, now).await {
                    Ok(answer) => return answer,
                    Err(e) => inner.fall_back(&e),
                }
            }
            inner.local.apply(
                steps,
                now,
                SingleUse::Refuse {
                    retry_after: RETRY_AFTER_UNAVAILABLE,
                },
            )
        })
    }

    fn degraded(&self) -> Option<&'static str> {
        self.inner
            .fallback
            .load(Ordering::SeqCst)
            .then_some("shared_state_unavailable")
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn only_the_scripts_own_answers_are_taken() {
        let reply = |v: Vec<Value>| parse_reply(&Value::Array(v), 2);
        assert!(matches!(
            reply(vec![Value::Int(0), bulk("ok"), Value::Int(0)]),
            Ok(Ok(()))
        ));
        assert!(matches!(
            reply(vec![Value::Int(2), bulk("replayed"), Value::Int(0)]),
            Ok(Err(Refusal::Replayed { step: 1 }))
        ));
        assert!(matches!(
            reply(vec![Value::Int(1), bulk("limited"), Value::Int(1500)]),
            Ok(Err(Refusal::Limited { step: 0, retry_after })) if retry_after == Duration::from_millis(1500)
        ));
        // Garbage is an error, never an admission: other shapes, statuses, steps out of range.
        for garbage in [
            vec![Value::Int(1), bulk("ok"), Value::Int(0)],
            vec![Value::Int(0), bulk("OK"), Value::Int(0)],
            vec![Value::Int(3), bulk("replayed"), Value::Int(0)],
            vec![Value::Int(-1), bulk("limited"), Value::Int(5)],
            vec![Value::Int(1), bulk("limited"), Value::Int(0)],
            vec![Value::Int(0), bulk("ok")],
            vec![bulk("0"), bulk("ok"), Value::Int(0)],
        ] {
            assert!(reply(garbage.clone()).is_err(), "{garbage:?}");
        }
        for garbage in [Value::Nil, Value::Okay, Value::Int(1), bulk("ok")] {
            assert!(parse_reply(&garbage, 1).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_password_file_is_read_whole_less_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_password(&path).unwrap().expose_secret(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password(&path).unwrap_err().contains("empty"));
        let missing = read_password(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
