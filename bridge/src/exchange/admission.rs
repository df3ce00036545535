//! Admission, one step of an exchange: a validated token (subject or actor) passes the
//! per-caller limit and its trust entry's limits, and only then is its single use recorded.

use super::*;

impl Bridge {
    /// Admits a validated token (subject or actor) before anything is decided: its single use
    /// where its issuer requires it, the per-caller rate limit, and its trust entry's own limits.
    /// The permit, when the entry caps exchanges in flight, must be held until the exchange ends.
    pub(super) fn admit(
        &self,
        policy: &Policy,
        token: &ValidatedToken,
        now: SystemTime,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ExchangeError> {
        let trust = policy.trust_by_iss.get(&token.issuer);
        if let Some(limiter) = &self.limiter {
            limiter
                .check(&token.trust, &token.subject, now)
                .map_err(|retry_after| {
                    self.metrics.rate_limited.inc();
                    ExchangeError::RateLimited { retry_after }
                })?;
        }
        let slot = match policy.limits.get(&token.trust) {
            None => None,
            Some(limit) => limit.admit(now).map_err(|refusal| {
                let (busy, retry_after, label) = match refusal {
                    PartnerRefusal::Busy => (true, Duration::from_secs(1), "concurrency"),
                    PartnerRefusal::Rate(wait) => (false, wait, "rate"),
                };
                self.metrics.rate_limited.inc();
                self.metrics
                    .partner_limited
                    .with_label_values(&[&token.trust, label])
                    .inc();
                ExchangeError::PartnerLimited {
                    trust: token.trust.clone(),
                    busy,
                    retry_after,
                }
            })?,
        };
        // Recorded only once the caller's and its issuer's limits admit it: a partner over its
        // limits spends no room in the store shared by every issuer.
        if let (Some(trust), Some(jti)) = (trust.filter(|t| t.replay_reject), &token.jti) {
            self.replay
                .first_use(
                    &trust.name,
                    jti,
                    token::from_unix_seconds(token.expires_at),
                    trust.leeway,
                    now,
                )
                .map_err(|refusal| match refusal {
                    ReplayRefusal::Replayed => ExchangeError::Token(TokenError::Replayed),
                    ReplayRefusal::Full { retry_after } => {
                        self.metrics.replay_store_full.inc();
                        ExchangeError::ReplayStoreFull { retry_after }
                    }
                })?;
        }
        Ok(slot)
    }
}
