//! The per-account sign-in throttle: attempts on one email are limited whatever address
//! they come from, so spreading a password guess over many addresses gains nothing. Every
//! attempt counts, right or wrong, and an email no account has is throttled exactly alike,
//! so the throttle tells nobody which accounts exist.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Forget the emails whose budget is full again once this many attempts went by.
const TIDY_EVERY: u32 = 1024;
/// Emails longer than any valid one are counted by this prefix (no unbounded keys).
const MAX_KEY_LEN: usize = 254;

pub struct SignInThrottle {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    attempts: AtomicU32,
}

impl SignInThrottle {
    /// `per_hour` attempts an hour per account, all at once if need be; 0 turns it off.
    pub fn new(per_hour: u32) -> Self {
        let limiter = NonZeroU32::new(per_hour).and_then(|burst| {
            let period = Duration::from_secs(3600) / burst.get();
            Quota::with_period(period).map(|quota| RateLimiter::keyed(quota.allow_burst(burst)))
        });
        Self {
            limiter,
            attempts: AtomicU32::new(0),
        }
    }

    /// Counts an attempt on `email`; `Err(wait)` when its budget is spent, with the wait
    /// until the next attempt is accepted.
    pub fn attempt(&self, email: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.attempts.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == 0 {
            limiter.retain_recent();
        }
        let key: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_LEN)
            .collect();
        limiter
            .check_key(&key)
            .map_err(|refused| refused.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_its_budget_then_waits_whatever_the_spelling() {
        let throttle = SignInThrottle::new(3);
        for _ in 0..3 {
            assert!(throttle.attempt("ann@example.com").is_ok());
        }
        let wait = throttle.attempt(" ANN@example.com ").unwrap_err();
        assert!(
            wait > Duration::from_secs(60) && wait <= Duration::from_secs(1200),
            "{wait:?}"
        );
        // Another account is not held back.
        assert!(throttle.attempt("bob@example.com").is_ok());
    }

    #[test]
    fn zero_turns_it_off() {
        let throttle = SignInThrottle::new(0);
        for _ in 0..100 {
            assert!(throttle.attempt("ann@example.com").is_ok());
        }
    }
}
