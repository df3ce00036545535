//! Admission, one step of an exchange: the validated subject token, the actor token if any, and
//! the target once a rule allows it pass their limits, and only then is each token's single use
//! recorded, all in one call to the shared state (one round trip when it is Redis).
//!
//! Order, as the steps are applied (the first refusal ends it; earlier steps stay applied): the
//! subject's caller bucket, its trust entry's bucket, its `jti`; the same for the actor; then the
//! target's bucket. A trust entry's `max_concurrent` is this replica's own and is taken first,
//! before anything is spent or recorded.

use super::*;
use crate::shared::{BucketKind, Refusal, Step};

/// Which part of an exchange a refusal concerns: the errors are reported in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The subject token.
    Subject,
    /// The actor token.
    Actor,
    /// The target.
    Target,
}

/// Why one step was taken: to turn a refusal into the error it means.
#[derive(Debug, Clone, Copy)]
enum Purpose<'a> {
    Caller,
    Partner(&'a str),
    SingleUse,
    /// The single use of the request's DPoP proof.
    Proof,
    Target(&'a str),
}

/// A refused admission: the stage it concerns, and the error.
pub(super) type Refused = (Stage, ExchangeError);

/// What admission needs from the decision: the tokens (the actor's only once it validated) and
/// the target (only once a rule allowed it).
pub(super) struct Candidates<'a> {
    pub subject: &'a ValidatedToken,
    pub actor: Option<&'a ValidatedToken>,
    pub target: Option<&'a str>,
    /// The request's DPoP proof's `jti`, and until when it must be remembered.
    pub proof: Option<(&'a str, SystemTime)>,
}

impl Bridge {
    /// Admits `candidates` at `now`. On success, the slots of the trust entries that cap
    /// exchanges in flight, to hold until the exchange ends.
    pub(super) async fn admit(
        &self,
        policy: &Policy,
        candidates: Candidates<'_>,
        now: SystemTime,
    ) -> Result<Vec<tokio::sync::OwnedSemaphorePermit>, Refused> {
        let mut steps = Vec::new();
        let mut purposes = Vec::new();
        let mut slots = Vec::new();
        // An actor whose issuer has no free slot: the subject is still admitted (as it would be
        // had the actor come later), then the actor is refused.
        let mut actor_busy = None;
        let tokens = std::iter::once((Stage::Subject, candidates.subject))
            .chain(candidates.actor.map(|a| (Stage::Actor, a)));
        for (stage, token) in tokens {
            if let Some(cap) = policy.limits.get(&token.trust) {
                match cap.try_acquire() {
                    Some(slot) => slots.push(slot),
                    None => {
                        let busy = self.partner_limited(&token.trust, true, Duration::from_secs(1));
                        if stage == Stage::Subject {
                            return Err((stage, busy));
                        }
                        actor_busy = Some(busy);
                        continue;
                    }
                }
            }
            let trust = policy.trust_by_iss.get(&token.issuer);
            if let Some(rate) = self.config.rate_limit {
                steps.push(Step::take(
                    BucketKind::Caller,
                    &[&token.trust, &token.subject],
                    rate,
                ));
                purposes.push((stage, Purpose::Caller));
            }
            if let Some(rate) = trust.and_then(|t| t.rate_limit) {
                steps.push(Step::take(BucketKind::Partner, &[&token.trust], rate));
                purposes.push((stage, Purpose::Partner(&token.trust)));
            }
            // Recorded only once the caller's and its issuer's limits admit it: a partner over
            // its limits spends no room in the store shared by every issuer.
            if let (Some(trust), Some(jti)) = (trust.filter(|t| t.replay_reject), &token.jti) {
                let expires_at = token::from_unix_seconds(token.expires_at);
                steps.push(Step::first_use(
                    &trust.name,
                    jti,
                    crate::limits::forget_at(expires_at, trust.leeway),
                ));
                purposes.push((stage, Purpose::SingleUse));
            }
        }
        // A proof is made for one request: its `jti` is recorded like a single-use token's,
        // under its own namespace, in the same call.
        if let Some((jti, forget_at)) = candidates.proof {
            steps.push(Step::first_use("dpop-proof", jti, forget_at));
            purposes.push((Stage::Subject, Purpose::Proof));
        }
        if let (Some(rate), Some(target), None) = (
            self.config.target_rate_limit,
            candidates.target,
            &actor_busy,
        ) {
            // One bucket per target, shared by every caller: a burst from one partner cannot
            // spend a shared account's STS quota for everyone.
            steps.push(Step::take(BucketKind::Target, &[target], rate));
            purposes.push((Stage::Target, Purpose::Target(target)));
        }
        if let Err(refusal) = self.shared.admit(&steps, now).await {
            return Err(self.refused(refusal, &purposes));
        }
        match actor_busy {
            Some(busy) => Err((Stage::Actor, busy)),
            None => Ok(slots),
        }
    }

    /// The error a refusal of the shared state means, counted.
    fn refused(&self, refusal: Refusal, purposes: &[(Stage, Purpose<'_>)]) -> Refused {
        let step = match refusal {
            Refusal::Limited { step, .. }
            | Refusal::Replayed { step }
            | Refusal::Full { step, .. }
            | Refusal::Unavailable { step, .. } => step,
        };
        // The store names one of the steps it was given; anything else is refused as unavailable.
        let Some(&(stage, purpose)) = purposes.get(step) else {
            return (
                Stage::Subject,
                ExchangeError::SharedStateUnavailable {
                    retry_after: Duration::from_secs(1),
                },
            );
        };
        let error = match (refusal, purpose) {
            (Refusal::Limited { retry_after, .. }, Purpose::Partner(trust)) => {
                self.partner_limited(trust, false, retry_after)
            }
            (Refusal::Limited { retry_after, .. }, purpose) => {
                self.metrics.rate_limited.inc();
                ExchangeError::RateLimited {
                    retry_after,
                    target: match purpose {
                        Purpose::Target(name) => Some(name.to_owned()),
                        _ => None,
                    },
                }
            }
            (Refusal::Replayed { .. }, Purpose::Proof) => ExchangeError::Dpop(
                "the proof's jti was already used; make a fresh proof for each request".into(),
            ),
            (Refusal::Replayed { .. }, _) if stage == Stage::Actor => {
                ExchangeError::ActorToken(TokenError::Replayed)
            }
            (Refusal::Replayed { .. }, _) => ExchangeError::Token(TokenError::Replayed),
            (Refusal::Full { retry_after, .. }, _) => {
                self.metrics.replay_store_full.inc();
                ExchangeError::ReplayStoreFull { retry_after }
            }
            (Refusal::Unavailable { retry_after, .. }, _) => {
                ExchangeError::SharedStateUnavailable { retry_after }
            }
        };
        (stage, error)
    }

    /// A trust entry's own limit refused a request: counted, and the error.
    fn partner_limited(&self, trust: &str, busy: bool, retry_after: Duration) -> ExchangeError {
        self.metrics.rate_limited.inc();
        self.metrics
            .partner_limited
            .with_label_values(&[trust, if busy { "concurrency" } else { "rate" }])
            .inc();
        ExchangeError::PartnerLimited {
            trust: trust.to_owned(),
            busy,
            retry_after,
        }
    }
}
