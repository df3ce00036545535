//! The revocations this replica applies: a snapshot every exchange reads without waiting, replaced
//! whenever the store is re-read (at once after a change made here, when Redis publishes one made
//! elsewhere, when the local file changes, and every [`REREAD`] as the fallback).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::store::{RevocationStore, StoreError};
use super::{MAX_ACTIVE, Revocation, RevocationSet};
use crate::metrics::Metrics;

/// How often the store is re-read when nothing said it changed: the bound on how late a replica
/// applies a revocation whose notice it missed (a lost subscription).
pub const REREAD: Duration = Duration::from_secs(2);
/// How often the local file's length and modification time are looked at.
const FILE_POLL: Duration = Duration::from_millis(500);

/// What a re-read changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Revocations this replica did not apply before.
    pub added: Vec<Arc<Revocation>>,
    /// Revocations it no longer applies (removed or expired).
    pub dropped: Vec<Arc<Revocation>>,
}

/// Why a revocation could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// [`MAX_ACTIVE`] are live already.
    #[error("{MAX_ACTIVE} revocations are live already; remove some or wait for them to expire")]
    Full,
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The live revocations of this replica and the store they come from.
pub struct Revocations {
    store: RevocationStore,
    /// `None` until the store has been read once: exchanges are refused until then, so that a
    /// replica that starts while Redis is away does not forget every revocation.
    current: RwLock<Option<Arc<RevocationSet>>>,
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Revocations {
    /// Over `store`: a local store is applied at once; Redis is read by [`Revocations::watch`]
    /// as soon as it runs (until then exchanges are refused). Subscribes to Redis's notices, so
    /// it must run inside a tokio runtime.
    pub fn new(
        store: RevocationStore,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Revocations>, StoreError> {
        let now = SystemTime::now();
        let initial = store.local_list(now).transpose()?;
        let live = Arc::new(Revocations {
            store,
            current: RwLock::new(None),
            notify: Arc::new(Notify::new()),
            metrics,
        });
        if let Some(list) = initial {
            live.apply(list, now);
        }
        live.store.subscribe(Arc::downgrade(&live.notify));
        Ok(live)
    }

    /// The set in force now, `None` until the store has been read once.
    pub fn snapshot(&self) -> Option<Arc<RevocationSet>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where they are kept (`redis`, `file`, `memory`).
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Re-reads the store at `now` and applies what it holds: returns what changed.
    pub async fn refresh(&self, now: SystemTime) -> Result<Applied, StoreError> {
        let list = self.store.list(now).await?;
        Ok(self.apply(list, now))
    }

    /// Applies `list`, read at `now`: returns what changed.
    fn apply(&self, list: Vec<Revocation>, now: SystemTime) -> Applied {
        let fresh = Arc::new(RevocationSet::new(list, now));
        let mut slot = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before: HashSet<&str> = slot
            .as_ref()
            .map(|s| s.all().iter().map(|r| r.id.as_str()).collect())
            .unwrap_or_default();
        let after: HashSet<&str> = fresh.all().iter().map(|r| r.id.as_str()).collect();
        let first = slot.is_none();
        let applied = Applied {
            added: fresh
                .all()
                .iter()
                .filter(|r| !before.contains(r.id.as_str()))
                .cloned()
                .collect(),
            dropped: slot
                .as_ref()
                .map(|s| {
                    s.all()
                        .iter()
                        .filter(|r| !after.contains(r.id.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        };
        // Those known at start were applied before this process existed: not a propagation time.
        if !first {
            for r in &applied.added {
                let late = now.duration_since(r.created()).unwrap_or_default();
                self.metrics.revocation_apply.observe(late.as_secs_f64());
            }
        }
        self.metrics
            .revocations_active
            .set(i64::try_from(fresh.all().len()).unwrap_or(i64::MAX));
        *slot = Some(fresh);
        applied
    }

    /// Stores `revocation` (made at `now`) and applies it here at once; the other replicas are
    /// told by the store.
    pub async fn create(
        &self,
        revocation: &Revocation,
        now: SystemTime,
    ) -> Result<Applied, CreateError> {
        if self.snapshot().is_some_and(|s| s.all().len() >= MAX_ACTIVE) {
            return Err(CreateError::Full);
        }
        self.store.add(revocation, now).await?;
        Ok(self.refresh(now).await?)
    }

    /// Removes revocation `id` and stops applying it here at once: the one removed, if any.
    pub async fn remove(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<(Option<Revocation>, Applied), StoreError> {
        let removed = self.store.remove(id, now).await?;
        let applied = self.refresh(now).await?;
        Ok((removed, applied))
    }

    /// Every stored revocation live at `now`, read from the store (not the snapshot, which may
    /// be up to [`REREAD`] behind).
    pub async fn list(&self, now: SystemTime) -> Result<Vec<Revocation>, StoreError> {
        let mut list = self.store.list(now).await?;
        list.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(list)
    }

    /// Re-reads whenever the store says it changed, and every [`REREAD`] regardless; hands what
    /// changed to `on_applied`. Runs until `live` is dropped.
    pub async fn watch(live: std::sync::Weak<Revocations>, on_applied: impl Fn(&Applied)) {
        let Some(notify) = live.upgrade().map(|l| Arc::clone(&l.notify)) else {
            return;
        };
        let mut last_read = tokio::time::Instant::now();
        let mut failing = false;
        let mut first = true;
        loop {
            let pushed = first
                || tokio::select! {
                    () = notify.notified() => true,
                    () = tokio::time::sleep(FILE_POLL) => false,
                };
            first = false;
            let Some(live) = live.upgrade() else { return };
            if !pushed && !live.store.changed() && last_read.elapsed() < REREAD {
                continue;
            }
            last_read = tokio::time::Instant::now();
            match live.refresh(SystemTime::now()).await {
                Ok(applied) => {
                    if failing {
                        tracing::info!("revocations can be read again");
                        failing = false;
                    }
                    if !applied.added.is_empty() || !applied.dropped.is_empty() {
                        on_applied(&applied);
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    if live.snapshot().is_some() {
                        tracing::warn!(
                            "cannot re-read the revocations; the last known set keeps applying: {}",
                            crate::exit::chain(&e)
                        );
                    } else {
                        tracing::error!(
                            "cannot read the revocations ({}); exchanges are refused until they can be read: {}",
                            live.store.backend(),
                            crate::exit::chain(&e)
                        );
                    }
                }
                Err(_) => {}
            }
        }
    }
}
