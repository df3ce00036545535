//! One replica's own state: the bounded stores of `limits` (buckets per caller, per target and
//! per trust entry; single-use `jti`s), which never forget a live entry and refuse when full.
//! What runs without `shared_state`, and what rate limits fall back to when Redis cannot be
//! reached.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use super::{BucketKind, Refusal, SharedState, Step};
use crate::limits::{Buckets, ReplayGuard, ReplayRefusal};

/// How a memory store treats single use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SingleUse {
    /// Records it here: the only replica, or the operator accepted one store per replica.
    Record,
    /// Refuses it: the shared state that must record it cannot be reached.
    Refuse {
        /// When to try again.
        retry_after: Duration,
    },
}

/// Buckets and used `jti`s in this process.
pub struct MemoryState {
    callers: Buckets,
    partners: Buckets,
    targets: Buckets,
    replay: ReplayGuard,
}

impl MemoryState {
    /// Stores remembering at most `replay_entries` live `jti`s (and a million buckets of each
    /// kind that have not refilled).
    pub fn new(replay_entries: usize) -> Self {
        MemoryState {
            callers: Buckets::new(),
            partners: Buckets::new(),
            targets: Buckets::new(),
            replay: ReplayGuard::new(replay_entries),
        }
    }

    /// Applies `steps` in order at `now`, stopping at the first refusal; single use as `jtis`
    /// says.
    pub(super) fn apply(
        &self,
        steps: &[Step],
        now: SystemTime,
        jtis: SingleUse,
    ) -> Result<(), Refusal> {
        for (step, s) in steps.iter().enumerate() {
            match s {
                Step::Take { kind, key, rate } => {
                    let buckets = match kind {
                        BucketKind::Caller => &self.callers,
                        BucketKind::Partner => &self.partners,
                        BucketKind::Target => &self.targets,
                    };
                    buckets
                        .take(key, rate, now)
                        .map_err(|retry_after| Refusal::Limited { step, retry_after })?;
                }
                Step::FirstUse { key, forget_at } => match jtis {
                    SingleUse::Refuse { retry_after } => {
                        return Err(Refusal::Unavailable { step, retry_after });
                    }
                    SingleUse::Record => {
                        self.replay.record(key, *forget_at, now).map_err(
                            |refusal| match refusal {
                                ReplayRefusal::Replayed => Refusal::Replayed { step },
                                ReplayRefusal::Full { retry_after } => {
                                    Refusal::Full { step, retry_after }
                                }
                            },
                        )?;
                    }
                },
            }
        }
        Ok(())
    }
}

impl SharedState for MemoryState {
    fn admit<'a>(
        &'a self,
        steps: &'a [Step],
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        let answer = self.apply(steps, now, SingleUse::Record);
        Box::pin(std::future::ready(answer))
    }

    fn degraded(&self) -> Option<&'static str> {
        None
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn steps_apply_in_order_and_stop_at_the_first_refusal() {
        let store = MemoryState::new(10);
        let one = RateLimit {
            per_second: 0.01,
            burst: 1,
        };
        let steps = [
            Step::take(BucketKind::Caller, &["gh", "alice"], one),
            Step::first_use("gh", "j1", at(60)),
        ];
        assert_eq!(store.apply(&steps, at(0), SingleUse::Record), Ok(()));
        // The caller's bucket is empty: refused there, and the jti step is not even looked at.
        assert!(matches!(
            store.apply(&steps, at(0), SingleUse::Record),
            Err(Refusal::Limited { step: 0, .. })
        ));
        // The replayed jti, with a caller that has tokens.
        let replay = [
            Step::take(BucketKind::Caller, &["gh", "bob"], one),
            Step::first_use("gh", "j1", at(60)),
        ];
        assert_eq!(
            store.apply(&replay, at(0), SingleUse::Record),
            Err(Refusal::Replayed { step: 1 })
        );
        // Shared state unreachable: buckets are still taken here, single use refused.
        let fresh = [
            Step::take(BucketKind::Partner, &["gh"], one),
            Step::first_use("gh", "j2", at(60)),
        ];
        let retry_after = Duration::from_secs(1);
        assert_eq!(
            store.apply(&fresh, at(0), SingleUse::Refuse { retry_after }),
            Err(Refusal::Unavailable {
                step: 1,
                retry_after
            })
        );
        assert!(matches!(
            store.apply(&fresh[..1], at(0), SingleUse::Record),
            Err(Refusal::Limited { step: 0, .. })
        ));
        // j2 was not recorded: it is still a first use.
        assert_eq!(store.apply(&fresh[1..], at(0), SingleUse::Record), Ok(()));
    }

    #[test]
    fn a_full_replay_store_refuses_new_jtis() {
        let store = MemoryState::new(1);
        assert_eq!(
            store.apply(
                &[Step::first_use("gh", "a", at(60))],
                at(0),
                SingleUse::Record
            ),
            Ok(())
        );
        assert!(matches!(
            store.apply(
                &[Step::first_use("gh", "b", at(60))],
                at(0),
                SingleUse::Record
            ),
            Err(Refusal::Full { step: 0, .. })
        ));
    }
}
