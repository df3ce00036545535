//! Reference tokens (`format: reference`): an opaque handle, `sbr_` and 256 random bits
//! (base64url), stands for a minted token whose claims are kept until its `exp`, under the SHA-256
//! of the handle (never the handle itself): in Redis with shared state (`<prefix>ref:<hex>`, so
//! every replica can introspect it), else in this process's memory (bounded).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::AsyncCommands as _;
use secrecy::{ExposeSecret, SecretString};

use super::StoreError;
use crate::shared::RedisHandle;

/// What every reference token starts with.
pub const REFERENCE_PREFIX: &str = "sbr_";
/// Most reference tokens one replica keeps in memory (without shared state): past it the oldest
/// are forgotten and introspect as inactive.
const MEMORY_ENTRIES: u64 = 100_000;
/// Longest claims document kept for one token.
const MAX_CLAIMS_BYTES: usize = 16 * 1024;

/// Where reference tokens' claims are kept.
pub enum ReferenceStore {
    /// This process only.
    Memory(moka::sync::Cache<[u8; 32], (Arc<str>, SystemTime)>),
    /// Redis, for every replica.
    Redis(Box<RedisHandle>),
}

impl ReferenceStore {
    /// In memory.
    pub fn memory() -> ReferenceStore {
        ReferenceStore::Memory(
            moka::sync::Cache::builder()
                .max_capacity(MEMORY_ENTRIES)
                .time_to_live(crate::mapping::MAX_JWT_LIFETIME)
                .build(),
        )
    }

    /// In the shared state's Redis.
    pub fn redis(redis: RedisHandle) -> ReferenceStore {
        ReferenceStore::Redis(Box::new(redis))
    }

    /// A new handle for `claims` (a JSON object), kept until `expires_at`.
    pub async fn mint(
        &self,
        claims: &serde_json::Value,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<SecretString, MintError> {
        let text = claims.to_string();
        if text.len() > MAX_CLAIMS_BYTES {
            return Err(MintError::TooLarge);
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| MintError::Random)?;
        let handle = SecretString::from(format!(
            "{REFERENCE_PREFIX}{}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        ));
        let key = crate::digest::sha256(handle.expose_secret().as_bytes());
        let ttl = expires_at.duration_since(now).unwrap_or_default();
        if ttl.is_zero() {
            return Err(MintError::Expired);
        }
        match self {
            ReferenceStore::Memory(cache) => cache.insert(key, (Arc::from(text), expires_at)),
            ReferenceStore::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let name = redis_key(redis, &key);
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                timed(
                    redis.timeout,
                    connection.pset_ex::<_, _, ()>(name, text, ms),
                )
                .await
                .map_err(MintError::Store)?;
            }
        }
        Ok(handle)
    }

    /// The claims of `handle` while it is unexpired at `now`; `None` for anything else.
    pub async fn claims(
        &self,
        handle: &str,
        now: SystemTime,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        if !handle.starts_with(REFERENCE_PREFIX) || handle.len() > 128 {
            return Ok(None);
        }
        let key = crate::digest::sha256(handle.as_bytes());
        let text: Option<Arc<str>> = match self {
            ReferenceStore::Memory(cache) => cache
                .get(&key)
                .filter(|(_, expires)| now < *expires)
                .map(|(t, _)| t),
            ReferenceStore::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let found: Option<String> =
                    timed(redis.timeout, connection.get(redis_key(redis, &key))).await?;
                found.map(Arc::from)
            }
        };
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// Why no reference token could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The store could not be written.
    #[error("the reference token store")]
    Store(#[source] StoreError),
    /// No random handle could be drawn.
    #[error("no random bytes for a reference token")]
    Random,
    /// The claims are larger than a reference token keeps.
    #[error("the token's claims are larger than {MAX_CLAIMS_BYTES} bytes")]
    TooLarge,
    /// The token expires now.
    #[error("the token has expired")]
    Expired,
}

fn redis_key(redis: &RedisHandle, key: &[u8; 32]) -> String {
    format!("{}ref:{}", redis.prefix, crate::digest::hex(key))
}

async fn timed<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout(timeout)),
    }
}
