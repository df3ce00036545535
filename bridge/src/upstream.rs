//! Where stsbridge calls the clouds: the providers by kind, each behind its own circuit breaker.
//! The cache asks this room for a credential on a miss; it never sees a provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use stsbridge_providers::{Issued, ProviderError, ProviderKind, ProviderRequest, Providers};

use crate::breaker::{Admission, Breaker};
use crate::metrics::Metrics;

/// The providers, one per kind, each kind with its breaker.
pub struct Upstream {
    providers: Providers,
    breakers: HashMap<ProviderKind, Breaker>,
    metrics: Option<Arc<Metrics>>,
}

impl Upstream {
    /// `providers`, each kind behind a breaker made by `breaker`, reporting breaker state to
    /// `metrics`.
    pub fn new(
        providers: Providers,
        metrics: Option<Arc<Metrics>>,
        breaker: impl Fn() -> Breaker,
    ) -> Self {
        Upstream {
            providers,
            breakers: ProviderKind::ALL.iter().map(|k| (*k, breaker())).collect(),
            metrics,
        }
    }

    /// Asks the provider of `request`'s kind, at time `now`, unless its circuit is open.
    ///
    /// Fails with [`ProviderError::Unavailable`] when no provider of that kind is configured,
    /// [`ProviderError::CircuitOpen`] while its breaker refuses calls, else the provider's own
    /// error. The outcome is recorded on the breaker at `now`, the time the call was asked for.
    pub async fn fetch(
        &self,
        request: &ProviderRequest,
        now: SystemTime,
    ) -> Result<Issued, ProviderError> {
        let kind = request.kind();
        if !self.providers.serves(kind) {
            return Err(ProviderError::Unavailable {
                provider: kind,
                detail: "the provider is not configured".into(),
            });
        }
        let breaker = &self.breakers[&kind];
        if let Admission::Refuse(retry_after) = breaker.admit(now) {
            return Err(ProviderError::CircuitOpen {
                provider: kind,
                retry_after,
            });
        }
        let result = self.providers.fetch(request, now).await;
        let reached = !result.as_ref().is_err_and(ProviderError::is_unreachable);
        if breaker.record(reached, now) {
            let open = breaker.is_open();
            if open {
                tracing::warn!(provider = %kind, "circuit opened: {} keeps failing; calls paused", kind.upstream_name());
            } else {
                tracing::info!(provider = %kind, "circuit closed: {} answers again", kind.upstream_name());
            }
            if let Some(m) = &self.metrics {
                m.circuit_open
                    .with_label_values(&[kind.as_str()])
                    .set(i64::from(open));
            }
        }
        result
    }
}
