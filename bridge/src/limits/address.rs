//! The budget of failed validations per client address.
//!
//! Validation is the expensive step open to anyone (a signature check, perhaps a key fetch), and
//! every refused token is an audit record. So each client address has a token bucket that only
//! failed validations spend; while it is empty, every request from that address is refused with
//! 429 before any validation work, whatever its token, until the bucket refills. A caller with a
//! valid token never spends it, but does share its address's budget: behind a proxy or a NAT
//! every caller shares one address, and `limits.failed_validations_per_address: off` (or a higher
//! rate) is the setting for that.
//!
//! An address is the client's IPv4 address, or its IPv6 /64 (one subscriber's usual allocation,
//! so a host cannot get a fresh budget per address it can take).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::store::{Store, key, millis};
use super::{Bucket, MAX_TRACKED_CALLERS, seconds};
use crate::config::RateLimit;

/// The address a client's budget and audit summary are kept under: its IPv4 address (also when
/// it arrives IPv4-mapped), or its IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientPrefix(IpAddr);

/// The address `ip`'s budget and audit summary are kept under.
pub fn client_prefix(ip: IpAddr) -> ClientPrefix {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ClientPrefix(IpAddr::V4(v4)),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            ClientPrefix(IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], 0, 0, 0, 0,
            )))
        }
    }
}

impl std::fmt::Display for ClientPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

impl ClientPrefix {
    fn key(self) -> super::store::Key {
        match self.0 {
            IpAddr::V4(v4) => key("address", &v4.octets()),
            IpAddr::V6(v6) => key("address", &v6.octets()[..8]),
        }
    }
}

/// Failed validations per client address.
pub struct FailedValidations {
    rate: RateLimit,
    buckets: Mutex<Store<Bucket>>,
}

impl FailedValidations {
    /// A budget of `rate` failures per address.
    pub fn new(rate: RateLimit) -> Self {
        Self::with_capacity(rate, MAX_TRACKED_CALLERS)
    }

    /// As [`new`](Self::new), holding at most `capacity` addresses whose budget is not full.
    pub fn with_capacity(rate: RateLimit, capacity: usize) -> Self {
        FailedValidations {
            rate,
            buckets: Mutex::new(Store::new(capacity)),
        }
    }

    /// Whether a request from `client` may be validated at `now`; spends nothing. Refused, with
    /// how long to wait, while the address has no failure left in its budget, and for an address
    /// without one while every slot holds a budget still refilling (letting it through untracked
    /// would make the limit a matter of using enough addresses).
    pub fn admit(&self, client: Option<IpAddr>, now: SystemTime) -> Result<(), Duration> {
        let Some(ip) = client else {
            return Ok(());
        };
        let key = client_prefix(ip).key();
        let (secs, now) = (seconds(now), millis(now));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.purge(now);
        let rate = &self.rate;
        let wait = buckets.update(&key, |b| {
            b.refill(secs, rate);
            (b.wait(rate), b.full_at(rate))
        });
        match (wait, buckets.full()) {
            (Some(None), _) | (None, None) => Ok(()),
            (Some(Some(wait)), _) => Err(wait),
            (None, Some(full)) => Err(full.retry_after(now).max(Duration::from_millis(1))),
        }
    }

    /// Spends one failure of `client`'s budget at `now` (an empty budget stays empty).
    pub fn spend(&self, client: Option<IpAddr>, now: SystemTime) {
        if let Some(ip) = client {
            // Refused means the address was already out of failures, or it is new and no slot
            // is free, in which case `admit` refuses it anyway.
            let _ = super::take(&self.buckets, &self.rate, &client_prefix(ip).key(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::RateLimit;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + secs)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    const RATE: RateLimit = RateLimit {
        per_second: 2.0,
        burst: 3,
    };

    #[test]
    fn an_address_over_its_failures_is_refused_until_its_budget_refills() {
        let limit = FailedValidations::new(RATE);
        let attacker = ip("192.0.2.7");
        // Admission alone spends nothing (a valid token never does).
        for _ in 0..10 {
            assert!(limit.admit(attacker, at(0.0)).is_ok());
        }
        for _ in 0..3 {
            assert!(limit.admit(attacker, at(0.0)).is_ok());
            limit.spend(attacker, at(0.0));
        }
        let wait = limit.admit(attacker, at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Another address is not affected, nor a request without an address.
        assert!(limit.admit(ip("192.0.2.8"), at(0.0)).is_ok());
        assert!(limit.admit(None, at(0.0)).is_ok());
        // Half a second later one more request may try.
        assert!(limit.admit(attacker, at(0.5)).is_ok());
        limit.spend(attacker, at(0.5));
        assert!(limit.admit(attacker, at(0.5)).is_err());
    }

    #[test]
    fn an_ipv6_client_is_one_address_per_64_and_a_mapped_ipv4_is_its_ipv4() {
        let limit = FailedValidations::new(RATE);
        for last in 1..=3 {
            limit.spend(ip(&format!("2001:db8:1:2::{last}")), at(0.0));
        }
        assert!(limit.admit(ip("2001:db8:1:2:ffff::9"), at(0.0)).is_err());
        assert!(limit.admit(ip("2001:db8:1:3::1"), at(0.0)).is_ok());
        for _ in 0..3 {
            limit.spend(ip("::ffff:192.0.2.1"), at(0.0));
        }
        assert!(limit.admit(ip("192.0.2.1"), at(0.0)).is_err());
        assert_eq!(
            client_prefix("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_prefix("::ffff:192.0.2.1".parse().unwrap()).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn a_full_table_of_spent_budgets_refuses_unknown_addresses_until_one_refills() {
        let limit = FailedValidations::with_capacity(RATE, 1);
        limit.spend(ip("192.0.2.1"), at(0.0));
        // One bucket, not full again until 0.5 s: an address the table cannot hold is refused
        // rather than let through untracked.
        let wait = limit.admit(ip("192.0.2.2"), at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(limit.admit(ip("192.0.2.1"), at(0.0)).is_ok());
        assert!(limit.admit(ip("192.0.2.2"), at(0.5)).is_ok());
    }
}
