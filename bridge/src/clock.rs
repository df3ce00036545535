//! Time as stsbridge writes it: unix seconds, and RFC 3339 in UTC. The one place for both.

use std::time::{Duration, SystemTime};

/// Seconds since the epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The time `secs` after the epoch.
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

pub use stsbridge_providers::credential::rfc3339;
