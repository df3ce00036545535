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

/// RFC 3339 in UTC with second precision, like AWS's `Expiration`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Years past 9999 (four digits) are not times anyone will see; they get the epoch, like an
    // unrepresentable time.
    let Some(at) = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .filter(|at| at.year() <= 9999)
    else {
        return "1970-01-01T00:00:00Z".into();
    };
    // Written by hand: this runs two or three times per exchange, and the formatting machinery
    // of `time` costs several times more.
    let (hour, minute, second) = at.to_hms();
    let mut out = String::with_capacity(20);
    let parts = [
        (at.year().unsigned_abs(), 4, '-'),
        (u32::from(u8::from(at.month())), 2, '-'),
        (u32::from(at.day()), 2, 'T'),
        (u32::from(hour), 2, ':'),
        (u32::from(minute), 2, ':'),
        (u32::from(second), 2, 'Z'),
    ];
    for (value, digits, then) in parts {
        for i in (0..digits).rev() {
            out.push(char::from(b'0' + ((value / 10u32.pow(i)) % 10) as u8));
        }
        out.push(then);
    }
    out
}
