//! The clock guard: winding the clock back must not extend a license. The app remembers
//! the latest time it has trusted (a verified token's `iat`, a signed answer's time) and
//! refuses a clock that reads earlier than that by more than a tolerance.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::OfflineError;

/// Kept by the app between runs (it serializes), beside its cached token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockGuard {
    latest_trusted: Option<DateTime<Utc>>,
    /// How far behind the latest trusted time the clock may read (clock drift, time
    /// zones changed by hand): beyond it, the clock was wound back.
    tolerance_seconds: i64,
}

impl ClockGuard {
    pub fn new(tolerance: TimeDelta) -> Self {
        Self {
            latest_trusted: None,
            tolerance_seconds: tolerance.num_seconds(),
        }
    }

    /// Refuses `now` when it is more than the tolerance before a time already trusted.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), OfflineError> {
        match self.latest_trusted {
            Some(trusted) if now + TimeDelta::seconds(self.tolerance_seconds) < trusted => {
                Err(OfflineError::ClockWoundBack { now, trusted })
            }
            _ => Ok(()),
        }
    }

    /// Trusts `at` (it came signed from the server): the guard never goes back.
    pub fn trust(&mut self, at: DateTime<Utc>) {
        self.latest_trusted = self.latest_trusted.max(Some(at));
    }

    pub fn latest_trusted(&self) -> Option<DateTime<Utc>> {
        self.latest_trusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_new_guard_accepts_any_clock() {
        assert_eq!(
            ClockGuard::new(TimeDelta::minutes(5)).check(at(-1_000_000)),
            Ok(())
        );
    }

    #[test]
    fn the_trusted_time_never_goes_back() {
        let mut guard = ClockGuard::new(TimeDelta::minutes(5));
        guard.trust(at(3_600));
        guard.trust(at(0));
        assert_eq!(guard.latest_trusted(), Some(at(3_600)));
    }

    #[test]
    fn a_clock_behind_the_trusted_time_by_more_than_the_tolerance_is_refused() {
        let mut guard = ClockGuard::new(TimeDelta::minutes(5));
        guard.trust(at(3_600));
        assert_eq!(
            guard.check(at(3_600 - 300)),
            Ok(()),
            "exactly the tolerance"
        );
        assert_eq!(
            guard.check(at(3_600 - 301)),
            Err(OfflineError::ClockWoundBack {
                now: at(3_299),
                trusted: at(3_600)
            })
        );
        assert_eq!(guard.check(at(7_200)), Ok(()), "ahead is fine");
    }

    #[test]
    fn the_guard_survives_a_restart_as_json() {
        let mut guard = ClockGuard::new(TimeDelta::minutes(5));
        guard.trust(at(42));
        let kept = serde_json::to_string(&guard).unwrap();
        assert_eq!(serde_json::from_str::<ClockGuard>(&kept).unwrap(), guard);
    }
}
