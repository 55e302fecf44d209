//! Trying again later, the one way every tool does it: waits that double from a first
//! one up to a cap, each scaled by a random factor so that a fleet told to come back
//! later does not come back all at once; and the loop around a command whose exit 3
//! means "not now" (hooks, fw-update's gates, fw-install).

use std::time::Duration;

use crate::error::Result;

/// Doubling waits with a cap and jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// No wait grows past this (unless `first` is larger).
    pub max: Duration,
    /// Each wait is scaled by a random factor between these two.
    pub jitter: (f64, f64),
}

impl Backoff {
    /// For a command that said "not now" (exit 3): `first`, doubled for each further
    /// retry, at most an hour, ±20%.
    pub fn not_now(first: Duration) -> Backoff {
        Backoff {
            first,
            max: Duration::from_secs(3600),
            jitter: (0.8, 1.2),
        }
    }

    /// For a transfer that failed (network, 5xx): `first`, doubled for each further
    /// retry, at most five minutes, times a factor in [0.5, 1).
    pub fn transfer(first: Duration) -> Backoff {
        Backoff {
            first,
            max: Duration::from_secs(300),
            jitter: (0.5, 1.0),
        }
    }

    /// The wait before retry `retry` (0 for the first) for a random draw `unit` in
    /// [0, 1].
    pub fn delay_at(&self, retry: u32, unit: f64) -> Duration {
        let cap = self.max.max(self.first).as_secs_f64();
        let doubled = (self.first.as_secs_f64() * 2f64.powi(retry.min(64) as i32)).min(cap);
        let (lo, hi) = self.jitter;
        let factor = lo + (hi - lo) * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(doubled * factor).unwrap_or(self.max)
    }

    /// The wait before retry `retry` (0 for the first), with a fresh random draw.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_at(retry, random_unit())
    }
}

/// A number in [0, 1) that differs between devices and between calls: for jitter, not
/// for secrets.
pub fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<T> {
    Done(T),
    /// Not now: try again later.
    NotNow,
}

/// Runs `attempt(n)` for n = 1, 2, ... until it is done, or has said "not now"
/// `retries + 1` times; before each retry, `wait(n, delay)` with the back-off's delay
/// (it sleeps, says so, and may refuse, say when interrupted). `Ok(None)`: still "not
/// now" after the last attempt. An error of `attempt` or `wait` ends it at once.
pub fn until_done<T>(
    retries: u32,
    backoff: Backoff,
    mut attempt: impl FnMut(u32) -> Result<Attempt<T>>,
    mut wait: impl FnMut(u32, Duration) -> Result<()>,
) -> Result<Option<T>> {
    let attempts = retries.saturating_add(1);
    for n in 1..=attempts {
        match attempt(n)? {
            Attempt::Done(value) => return Ok(Some(value)),
            Attempt::NotNow if n < attempts => wait(n, backoff.delay(n - 1))?,
            Attempt::NotNow => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn not_now_doubles_with_bounded_jitter_and_a_cap() {
        let b = Backoff::not_now(Duration::from_secs(5));
        assert_eq!(b.delay_at(0, 0.5), Duration::from_secs(5));
        assert_eq!(b.delay_at(1, 0.5), Duration::from_secs(10));
        assert_eq!(b.delay_at(2, 0.5), Duration::from_secs(20));
        assert_eq!(b.delay_at(2, 0.0), Duration::from_secs(16));
        assert_eq!(b.delay_at(0, 5.0), Duration::from_secs(6));
        assert_eq!(b.delay_at(1000, 0.5), Duration::from_secs(3600));
        assert_eq!(
            Backoff::not_now(Duration::ZERO).delay_at(3, 0.5),
            Duration::ZERO
        );
        // A first wait above the cap is kept.
        let long = Backoff::not_now(Duration::from_secs(7200));
        assert_eq!(long.delay_at(3, 0.5), Duration::from_secs(7200));
        for retry in 0..5 {
            let d = b.delay(retry).as_secs_f64();
            let full = 5.0 * f64::from(1u32 << retry);
            assert!((0.8 * full..=1.2 * full).contains(&d), "{retry}: {d}");
        }
    }

    #[test]
    fn transfers_wait_half_to_all_of_the_doubled_wait() {
        let b = Backoff::transfer(Duration::from_secs(1));
        for retry in 0..6 {
            let wait = b.delay(retry);
            let full = Duration::from_secs(1 << retry);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert!(b.delay(40) <= Duration::from_secs(300));
        for _ in 0..100 {
            assert!((0.0..1.0).contains(&random_unit()));
        }
    }

    #[test]
    fn until_done_retries_not_now_then_gives_up() {
        let b = Backoff::not_now(Duration::from_millis(1));
        let mut waits = Vec::new();
        let done = until_done(
            3,
            b,
            |n| {
                Ok(if n == 3 {
                    Attempt::Done(n)
                } else {
                    Attempt::NotNow
                })
            },
            |n, _| {
                waits.push(n);
                Ok(())
            },
        );
        assert_eq!(done.unwrap(), Some(3));
        assert_eq!(waits, [1, 2]);

        let mut tries = 0;
        let given_up = until_done(
            2,
            b,
            |_| Ok(Attempt::<()>::NotNow),
            |_, _| {
                tries += 1;
                Ok(())
            },
        );
        assert_eq!((given_up.unwrap(), tries), (None, 2));

        let refused = until_done(
            5,
            b,
            |_| Ok(Attempt::<()>::NotNow),
            |_, _| Err(Error::failed("interrupted")),
        );
        assert_eq!(refused.unwrap_err().message, "interrupted");
    }
}
