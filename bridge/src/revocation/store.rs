//! Where revocations are kept. With shared state: one Redis hash (`{prefix}revocations`, id to
//! JSON), each change published on the channel of the same name so that every replica re-reads at
//! once. Without: a local JSON file (written atomically: a temporary file renamed over it), or
//! only this process's memory when no file is configured (dev mode).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::Revocation;
use crate::shared::RedisHandle;

/// Format version of the local file.
const FILE_VERSION: u32 = 1;
/// Largest local file read: [`super::MAX_ACTIVE`] revocations of a few hundred bytes each.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// How long a lost subscription waits before it is tried again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The local file.
    #[error("revocations file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        #[source]
        source: std::io::Error,
    },
    /// The local file holds something else.
    #[error("revocations file {path} is not a revocation list: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The shared state did not answer in time.
    #[error("the shared state (redis) did not answer within {0:?}")]
    Timeout(Duration),
    /// The shared state refused or could not be reached.
    #[error("the shared state (redis)")]
    Redis(#[from] redis::RedisError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    version: u32,
    revocations: Vec<Revocation>,
}

/// Where this replica keeps revocations.
pub enum RevocationStore {
    /// This process only, and a file when configured.
    Local(Local),
    /// Redis, shared by every replica.
    Redis(Box<Shared>),
}

/// A local file's length and modification time: how a change by another writer is noticed.
type Fingerprint = Option<(u64, SystemTime)>;

/// The local store.
pub struct Local {
    file: Option<PathBuf>,
    /// The list, and the file's (length, modification time) when it was last read or written.
    state: Mutex<(Vec<Revocation>, Fingerprint)>,
}

/// The Redis store.
pub struct Shared {
    redis: RedisHandle,
    key: String,
}

impl RevocationStore {
    /// The local store over `file` (`None`: memory only), read once now: a file that exists but
    /// cannot be read or parsed stops the start.
    pub fn local(file: Option<PathBuf>) -> Result<RevocationStore, StoreError> {
        let (list, seen) = match &file {
            Some(path) => read_file(path)?,
            None => (Vec::new(), None),
        };
        Ok(RevocationStore::Local(Local {
            file,
            state: Mutex::new((list, seen)),
        }))
    }

    /// The store in the shared state's Redis.
    pub fn redis(redis: RedisHandle) -> RevocationStore {
        let key = format!("{}revocations", redis.prefix);
        RevocationStore::Redis(Box::new(Shared { redis, key }))
    }

    /// What the store is, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            RevocationStore::Local(l) if l.file.is_some() => "file",
            RevocationStore::Local(_) => "memory",
            RevocationStore::Redis(_) => "redis",
        }
    }

    /// Every stored revocation; those expired at `now` are removed from the store as they are
    /// seen.
    pub async fn list(&self, now: SystemTime) -> Result<Vec<Revocation>, StoreError> {
        match self {
            RevocationStore::Local(local) => local.update(now, |_| false).map(|(list, _)| list),
            RevocationStore::Redis(shared) => shared.list(now).await,
        }
    }

    /// For the local store, its list less what expired at `now` (read without waiting); `None`
    /// for Redis.
    pub fn local_list(&self, now: SystemTime) -> Option<Result<Vec<Revocation>, StoreError>> {
        match self {
            RevocationStore::Local(local) => Some(local.update(now, |_| false).map(|(l, _)| l)),
            RevocationStore::Redis(_) => None,
        }
    }

    /// Stores `revocation` and tells every replica.
    pub async fn add(&self, revocation: &Revocation, now: SystemTime) -> Result<(), StoreError> {
        match self {
            RevocationStore::Local(local) => local
                .update(now, |list| {
                    list.push(revocation.clone());
                    true
                })
                .map(drop),
            RevocationStore::Redis(shared) => shared.add(revocation).await,
        }
    }

    /// Removes revocation `id`: the one removed, or `None` when there is none.
    pub async fn remove(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<Revocation>, StoreError> {
        match self {
            RevocationStore::Local(local) => {
                let mut removed = None;
                local.update(now, |list| {
                    let at = list.iter().position(|r| r.id == id);
                    removed = at.map(|i| list.remove(i));
                    removed.is_some()
                })?;
                Ok(removed)
            }
            RevocationStore::Redis(shared) => shared.remove(id).await,
        }
    }

    /// Whether the store changed since it was last read, as far as this replica can tell without
    /// reading it (the local file's length and modification time); always `false` for Redis,
    /// whose changes are pushed.
    pub fn changed(&self) -> bool {
        match self {
            RevocationStore::Local(Local {
                file: Some(path),
                state,
            }) => {
                let seen = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .1;
                fingerprint(path) != seen
            }
            _ => false,
        }
    }

    /// For Redis: a task that wakes `notify` on every published change (and on every
    /// (re)subscription, for what was missed), until `notify` is dropped elsewhere.
    pub fn subscribe(&self, notify: std::sync::Weak<Notify>) {
        if let RevocationStore::Redis(shared) = self {
            tokio::spawn(subscription(
                shared.redis.client.clone(),
                shared.key.clone(),
                notify,
            ));
        }
    }
}

impl Local {
    /// Re-reads the file when it changed, applies `change` to the list less what expired at
    /// `now`, and writes the file back when `change` says it changed something or something
    /// expired. Returns the list and whether it was written.
    fn update(
        &self,
        now: SystemTime,
        change: impl FnOnce(&mut Vec<Revocation>) -> bool,
    ) -> Result<(Vec<Revocation>, bool), StoreError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(path) = &self.file
            && fingerprint(path) != state.1
        {
            *state = read_file(path)?;
        }
        let before = state.0.len();
        state.0.retain(|r| r.live(now));
        let expired = state.0.len() != before;
        let changed = change(&mut state.0);
        if (changed || expired)
            && let Some(path) = &self.file
        {
            write_file(path, &state.0)?;
            state.1 = fingerprint(path);
        }
        Ok((state.0.clone(), changed))
    }
}

impl Shared {
    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.redis.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StoreError::Timeout(self.redis.timeout)),
        }
    }

    async fn list(&self, now: SystemTime) -> Result<Vec<Revocation>, StoreError> {
        let mut connection = self.redis.connection.clone();
        let all: Vec<(String, String)> = self.timed(connection.hgetall(&self.key)).await?;
        let mut live = Vec::with_capacity(all.len());
        let mut gone = Vec::new();
        for (id, text) in all {
            match serde_json::from_str::<Revocation>(&text) {
                Ok(r) if r.live(now) => live.push(r),
                Ok(_) => gone.push(id),
                Err(e) => {
                    tracing::warn!(id = %truncated(&id), "ignoring a stored revocation that does not parse: {e}");
                }
            }
        }
        if !gone.is_empty() {
            let mut connection = self.redis.connection.clone();
            let removed: Result<u64, _> = self.timed(connection.hdel(&self.key, &gone)).await;
            if let Err(e) = removed {
                tracing::warn!("could not remove {} expired revocations: {e}", gone.len());
            }
        }
        Ok(live)
    }

    async fn add(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let text = serde_json::to_string(revocation).map_err(|e| StoreError::Format {
            path: PathBuf::from(&self.key),
            detail: e.to_string(),
        })?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&self.key, &revocation.id, text)
            .ignore()
            .publish(&self.key, &revocation.id)
            .ignore();
        let mut connection = self.redis.connection.clone();
        self.timed(pipe.query_async::<()>(&mut connection)).await
    }

    async fn remove(&self, id: &str) -> Result<Option<Revocation>, StoreError> {
        let mut connection = self.redis.connection.clone();
        let text: Option<String> = self.timed(connection.hget(&self.key, id)).await?;
        let Some(text) = text else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(&self.key, id)
            .publish(&self.key, id)
            .ignore();
        let mut connection = self.redis.connection.clone();
        let (removed,): (u64,) = self.timed(pipe.query_async(&mut connection)).await?;
        Ok((removed > 0)
            .then(|| serde_json::from_str(&text).ok())
            .flatten())
    }
}

/// Keeps a subscription to `channel`, waking `notify` on each message and on each
/// (re)subscription; re-subscribes after [`RESUBSCRIBE_AFTER`] when it is lost.
async fn subscription(client: redis::Client, channel: String, notify: std::sync::Weak<Notify>) {
    let mut lost_logged = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
            Ok(Ok(pubsub)) => {
                if lost_logged {
                    tracing::info!("revocation subscription restored");
                    lost_logged = false;
                }
                let Some(n) = notify.upgrade() else { return };
                n.notify_one();
                drop(n);
                let mut messages = pubsub.into_on_message();
                while messages.next().await.is_some() {
                    let Some(n) = notify.upgrade() else { return };
                    n.notify_one();
                }
            }
            Ok(Err(e)) if !lost_logged => {
                tracing::warn!(
                    "revocation subscription lost ({e}); re-reading periodically until it is back"
                );
                lost_logged = true;
            }
            Err(_) if !lost_logged => {
                tracing::warn!(
                    "revocation subscription timed out; re-reading periodically until it is back"
                );
                lost_logged = true;
            }
            _ => {}
        }
        if notify.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

fn truncated(s: &str) -> &str {
    s.get(..s.len().min(64)).unwrap_or("")
}

/// The file's length and modification time, `None` when it does not exist.
fn fingerprint(path: &Path) -> Fingerprint {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn read_file(path: &Path) -> Result<(Vec<Revocation>, Fingerprint), StoreError> {
    use std::io::Read as _;
    let seen = fingerprint(path);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(source) => {
            return Err(StoreError::File {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|source| StoreError::File {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(StoreError::Format {
            path: path.to_owned(),
            detail: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let form: FileForm = serde_json::from_slice(&text).map_err(|e| StoreError::Format {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if form.version != FILE_VERSION {
        return Err(StoreError::Format {
            path: path.to_owned(),
            detail: format!("version {}, this build reads {FILE_VERSION}", form.version),
        });
    }
    Ok((form.revocations, seen))
}

/// Writes `list` to a temporary file beside `path`, flushed to disk, then renames it over `path`:
/// a reader sees the old list or the new one, never half of one.
fn write_file(path: &Path, list: &[Revocation]) -> Result<(), StoreError> {
    use std::io::Write as _;
    let io = |source| StoreError::File {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let form = FileForm {
        version: FILE_VERSION,
        revocations: list.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&form).map_err(|e| io(std::io::Error::other(e)))?;
    tmp.write_all(&text).map_err(io)?;
    tmp.write_all(b"\n").map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
