//! A circuit breaker per provider: after enough consecutive failures to reach the upstream, stop
//! calling it for a cool-down, then let one probe through; its success closes the circuit.
//!
//! Only failures to get an answer count (unreachable, timed out, throttled beyond the retry
//! budget). A refusal is an answer: the upstream is up. While the circuit is open, cached
//! credentials keep being served by the cache; misses fail fast with `Retry-After`. Decisions are
//! a pure function of the state and `now`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Consecutive failures that open the circuit.
pub const FAILURE_THRESHOLD: u32 = 5;
/// How long an open circuit refuses calls before letting a probe through.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: SystemTime,
    },
    /// A probe is in flight; everyone else waits for its outcome as if open.
    Probing {
        until: SystemTime,
    },
}

/// What the breaker says about a call at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the upstream.
    Call,
    /// Call the upstream as the probe of a half-open circuit.
    Probe,
    /// Do not call; try again after this long.
    Refuse(Duration),
}

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new(FAILURE_THRESHOLD, COOL_DOWN)
    }
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go upstream at `now`.
    pub fn admit(&self, now: SystemTime) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Call,
            State::Open { until } if now >= until => {
                // The probe gets a cool-down of its own to finish; if it never reports, the next
                // caller after that probes again.
                *state = State::Probing {
                    until: now + self.cool_down,
                };
                Admission::Probe
            }
            State::Open { until } | State::Probing { until } if now < until => Admission::Refuse(
                until
                    .duration_since(now)
                    .unwrap_or_default()
                    .max(Duration::from_secs(1)),
            ),
            State::Probing { .. } => {
                *state = State::Probing {
                    until: now + self.cool_down,
                };
                Admission::Probe
            }
            State::Open { .. } => Admission::Call,
        }
    }

    /// Records the outcome of an admitted call: `reached` is false when the upstream could not be
    /// reached or kept throttling. Returns true when this outcome opened or closed the circuit.
    pub fn record(&self, reached: bool, now: SystemTime) -> bool {
        let mut state = self.lock();
        let before = *state;
        *state = match (before, reached) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now + self.cool_down,
            },
        };
        matches!(before, State::Closed { .. }) != matches!(*state, State::Closed { .. })
    }

    /// Whether calls are being refused.
    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let b = Breaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert_eq!(b.admit(at(0)), Admission::Call);
            assert!(!b.record(false, at(0)));
        }
        assert_eq!(b.admit(at(0)), Admission::Call);
        assert!(b.record(false, at(0)), "the third failure opens it");
        assert!(b.is_open());
        assert_eq!(b.admit(at(10)), Admission::Refuse(Duration::from_secs(20)));
        assert_eq!(b.admit(at(30)), Admission::Probe);
        assert_eq!(
            b.admit(at(31)),
            Admission::Refuse(Duration::from_secs(29)),
            "one probe at a time"
        );
        assert!(b.record(true, at(32)), "a successful probe closes it");
        assert_eq!(b.admit(at(33)), Admission::Call);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(10));
        b.record(false, at(0));
        b.record(true, at(1));
        b.record(false, at(2));
        assert!(!b.is_open(), "the success in between reset the count");
        b.record(false, at(3));
        assert!(b.is_open());
        assert_eq!(b.admit(at(13)), Admission::Probe);
        b.record(false, at(14));
        assert_eq!(b.admit(at(15)), Admission::Refuse(Duration::from_secs(9)));
    }

    #[test]
    fn a_probe_that_never_reports_does_not_wedge_the_circuit() {
        let b = Breaker::new(1, Duration::from_secs(10));
        b.record(false, at(0));
        assert_eq!(b.admit(at(10)), Admission::Probe);
        assert_eq!(b.admit(at(21)), Admission::Probe);
    }
}
