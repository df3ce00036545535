//! Summaries of refused validations: one audit event per client address per interval, with a
//! count, instead of one per refused token.
//!
//! A token that never validated cannot have yielded a credential, so its event may be folded into
//! a count without losing any record of a grant (those are always written one by one). The first
//! refusal from an address in an interval is written in full at once, so a single failure is seen
//! as soon as it happens; the rest of the interval is counted by reason code and written as one
//! summary when the interval ends (or at shutdown). A flood then writes at most two events per
//! address per interval, and one more per interval for every address past the bound together.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Caller, rfc3339};
use crate::limits::{ClientPrefix, client_prefix};

/// The `client_addr` of the summary of addresses past the bound.
pub const OTHER_ADDRESSES: &str = "*";

/// What to do with one refused validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// Write its event now.
    WriteInFull,
    /// Counted in its address's summary; write nothing now.
    Counted,
}

/// One summary event, as written to the audit sink.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The end of the interval (RFC 3339).
    pub time: String,
    /// Always `null`: a summary stands for many decisions.
    pub decision_id: Option<String>,
    /// `error`, like the refused validations it counts.
    pub outcome: &'static str,
    /// `validation_failures_summarized`.
    pub reason: &'static str,
    /// Only `client_addr`: the address (an IPv6 /64), or `*` for addresses past the bound.
    pub caller: Caller,
    /// Refused requests counted (the one written in full is not among them).
    pub count: u64,
    /// The first second of the interval (RFC 3339).
    pub interval_start: String,
    /// Its end (RFC 3339): the interval's length on, or the time of shutdown.
    pub interval_end: String,
    /// The count by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// The event written in full that opened the interval, if any.
    pub first_decision_id: Option<String>,
}

/// One address's interval.
#[derive(Debug)]
struct Window {
    start: SystemTime,
    first_decision_id: Option<String>,
    count: u64,
    reasons: BTreeMap<String, u64>,
}

impl Window {
    fn new(start: SystemTime, first_decision_id: Option<String>) -> Self {
        Window {
            start,
            first_decision_id,
            count: 0,
            reasons: BTreeMap::new(),
        }
    }

    /// When the interval ends.
    fn end(&self, interval: Duration) -> SystemTime {
        self.start.checked_add(interval).unwrap_or(self.start)
    }

    fn count(&mut self, reason: &str) {
        self.count += 1;
        match self.reasons.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.reasons.insert(reason.to_owned(), 1);
            }
        }
    }

    fn summary(self, client: String, end: SystemTime) -> Summary {
        Summary {
            time: rfc3339(end),
            decision_id: None,
            outcome: "error",
            reason: "validation_failures_summarized",
            caller: Caller {
                client_addr: Some(client),
                ..Caller::default()
            },
            count: self.count,
            interval_start: rfc3339(self.start),
            interval_end: rfc3339(end),
            reasons: self.reasons,
            first_decision_id: self.first_decision_id,
        }
    }
}

/// The open intervals, by address.
#[derive(Debug)]
pub struct Summarizer {
    interval: Duration,
    max_addresses: usize,
    open: HashMap<ClientPrefix, Window>,
    /// Addresses that found no room in `open`, together.
    overflow: Option<Window>,
    /// Intervals that ended and are waiting to be written.
    ended: Vec<Summary>,
}

impl Summarizer {
    /// Intervals of `interval`, for at most `max_addresses` addresses at once.
    pub fn new(interval: Duration, max_addresses: usize) -> Self {
        Summarizer {
            interval,
            max_addresses,
            open: HashMap::new(),
            overflow: None,
            ended: Vec::new(),
        }
    }

    /// Notes one refused validation from `client` at `now`, whose event has `reason` and
    /// `decision_id`, and says whether to write that event now.
    pub fn note(
        &mut self,
        client: Option<IpAddr>,
        reason: &str,
        decision_id: &str,
        now: SystemTime,
    ) -> Noted {
        let Some(ip) = client else {
            return Noted::WriteInFull;
        };
        let prefix = client_prefix(ip);
        let interval = self.interval;
        if let Some(window) = self.open.get_mut(&prefix)
            && now < window.end(interval)
        {
            window.count(reason);
            return Noted::Counted;
        }
        // Its interval (if any) is over: written with the next batch, and a new one opens.
        if let Some(window) = self.open.remove(&prefix)
            && window.count > 0
        {
            let end = window.end(interval);
            self.ended.push(window.summary(prefix.to_string(), end));
        }
        if self.open.len() < self.max_addresses {
            self.open
                .insert(prefix, Window::new(now, Some(decision_id.to_owned())));
            return Noted::WriteInFull;
        }
        // No room for another address: counted with the others past the bound, never in full,
        // so many addresses cannot turn the summaries back into one event each.
        if let Some(window) = self.overflow.take_if(|w| now >= w.end(interval)) {
            let end = window.end(interval);
            self.ended
                .push(window.summary(OTHER_ADDRESSES.to_owned(), end));
        }
        self.overflow
            .get_or_insert_with(|| Window::new(now, None))
            .count(reason);
        Noted::Counted
    }

    /// The summaries of the intervals ended by `now`, oldest first; they are forgotten here.
    pub fn due(&mut self, now: SystemTime) -> Vec<Summary> {
        let interval = self.interval;
        self.take(now, |w| w.end(interval) <= now)
    }

    /// Every summary, the open intervals cut short at `now` (shutdown).
    pub fn drain(&mut self, now: SystemTime) -> Vec<Summary> {
        self.take(now, |_| true)
    }

    fn take(&mut self, now: SystemTime, ended: impl Fn(&Window) -> bool) -> Vec<Summary> {
        let interval = self.interval;
        let mut closing: Vec<(ClientPrefix, Window)> =
            self.open.extract_if(|_, w| ended(w)).collect();
        closing.sort_by_key(|(prefix, w)| (w.start, *prefix));
        let mut out = std::mem::take(&mut self.ended);
        for (prefix, window) in closing {
            if window.count > 0 {
                let end = window.end(interval).min(now);
                out.push(window.summary(prefix.to_string(), end));
            }
        }
        if let Some(window) = self.overflow.take_if(|w| ended(w)) {
            let end = window.end(interval).min(now);
            out.push(window.summary(OTHER_ADDRESSES.to_owned(), end));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn summarizer() -> Summarizer {
        Summarizer::new(Duration::from_secs(10), 100)
    }

    #[test]
    fn the_first_failure_is_written_at_once_and_the_rest_of_the_interval_is_counted() {
        let mut s = summarizer();
        let a = ip("192.0.2.1");
        assert_eq!(s.note(a, "bad_signature", "d1", at(0)), Noted::WriteInFull);
        for (i, reason) in [
            "bad_signature",
            "expired",
            "bad_signature",
            "expired",
            "bad_signature",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                s.note(a, reason, &format!("d{}", i + 2), at(i as u64 + 1)),
                Noted::Counted
            );
        }
        // Nothing is due before the interval ends.
        assert!(s.due(at(9)).is_empty());
        let due = s.due(at(10));
        assert_eq!(due.len(), 1, "{due:?}");
        let summary = &due[0];
        assert_eq!(summary.count, 5);
        assert_eq!(summary.reason, "validation_failures_summarized");
        assert_eq!(summary.caller.client_addr.as_deref(), Some("192.0.2.1"));
        assert_eq!(summary.first_decision_id.as_deref(), Some("d1"));
        assert_eq!(summary.interval_start, "2023-11-14T22:13:20Z");
        assert_eq!(summary.interval_end, "2023-11-14T22:13:30Z");
        assert_eq!(
            summary
                .reasons
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            [("bad_signature", 3), ("expired", 2)]
        );
        // Written once: the next interval starts with a failure in full again.
        assert!(s.due(at(20)).is_empty());
        assert_eq!(s.note(a, "expired", "d7", at(20)), Noted::WriteInFull);
    }

    #[test]
    fn a_single_failure_makes_no_summary_and_addresses_are_summarized_apart() {
        let mut s = summarizer();
        assert_eq!(
            s.note(ip("192.0.2.1"), "expired", "a", at(0)),
            Noted::WriteInFull
        );
        assert_eq!(
            s.note(ip("192.0.2.2"), "expired", "b", at(0)),
            Noted::WriteInFull
        );
        // The same IPv6 /64 is one address.
        assert_eq!(
            s.note(ip("2001:db8::1"), "expired", "c", at(0)),
            Noted::WriteInFull
        );
        assert_eq!(
            s.note(ip("2001:db8::2"), "expired", "d", at(1)),
            Noted::Counted
        );
        // Without an address there is nothing to summarize by.
        assert_eq!(s.note(None, "expired", "e", at(1)), Noted::WriteInFull);
        assert_eq!(s.note(None, "expired", "f", at(1)), Noted::WriteInFull);
        let due = s.due(at(10));
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].caller.client_addr.as_deref(), Some("2001:db8::/64"));
        assert_eq!(due[0].count, 1);
    }

    #[test]
    fn a_late_failure_closes_the_old_interval_and_shutdown_drains_the_open_ones() {
        let mut s = summarizer();
        let a = ip("192.0.2.1");
        assert_eq!(s.note(a, "expired", "d1", at(0)), Noted::WriteInFull);
        assert_eq!(s.note(a, "expired", "d2", at(3)), Noted::Counted);
        // No tick ran: the next failure after the interval closes it and opens a new one.
        assert_eq!(s.note(a, "expired", "d3", at(15)), Noted::WriteInFull);
        assert_eq!(s.note(a, "bad_signature", "d4", at(16)), Noted::Counted);
        assert_eq!(s.note(a, "bad_signature", "d5", at(17)), Noted::Counted);
        // Shutdown at 18 s: the closed interval, and the open one cut short.
        let drained = s.drain(at(18));
        let counts: Vec<(u64, &str, &str)> = drained
            .iter()
            .map(|d| (d.count, d.interval_start.as_str(), d.interval_end.as_str()))
            .collect();
        assert_eq!(
            counts,
            [
                (1, "2023-11-14T22:13:20Z", "2023-11-14T22:13:30Z"),
                (2, "2023-11-14T22:13:35Z", "2023-11-14T22:13:38Z"),
            ]
        );
        assert!(s.drain(at(19)).is_empty());
    }

    #[test]
    fn addresses_past_the_bound_are_counted_together_and_never_in_full() {
        let mut s = Summarizer::new(Duration::from_secs(10), 2);
        assert_eq!(
            s.note(ip("192.0.2.1"), "expired", "a", at(0)),
            Noted::WriteInFull
        );
        assert_eq!(
            s.note(ip("192.0.2.2"), "expired", "b", at(0)),
            Noted::WriteInFull
        );
        for i in 3..=9 {
            assert_eq!(
                s.note(ip(&format!("192.0.2.{i}")), "expired", "x", at(1)),
                Noted::Counted
            );
        }
        // The addresses past the bound began counting at 1 s.
        assert!(s.due(at(10)).is_empty());
        let due = s.due(at(11));
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].caller.client_addr.as_deref(), Some(OTHER_ADDRESSES));
        assert_eq!(due[0].count, 7);
        assert_eq!(due[0].first_decision_id, None);
        // Once the old intervals are written there is room again.
        assert_eq!(
            s.note(ip("192.0.2.3"), "expired", "c", at(11)),
            Noted::WriteInFull
        );
    }
}
