//! Retry delays: exponential backoff with full jitter and a cap; `Retry-After` wins when given.
//!
//! One policy for every retry loop: the executor's (creates) and the API preflight's (reads).
//! It sits at the crate root, beside `region` and `secret`, because both `api` and `execution`
//! use it and `api` must not import the executor above it.

use std::time::Duration;

use rand::Rng;

/// The backoff policy of a run.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The policy for the preflight's idempotent reads: the same base, a shorter cap (a person
    /// is waiting for `plan`).
    pub const READS: Backoff = Backoff {
        base: Duration::from_millis(250),
        cap: Duration::from_secs(10),
    };

    /// The delay before attempt `next_attempt` (2 for the first retry), its jitter drawn from
    /// `rng`. A server-given `retry_after` (already capped) is honoured, plus a little jitter
    /// so that the requests it stopped do not all return in the same instant.
    pub fn delay(
        &self,
        next_attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        if let Some(ra) = retry_after {
            let jitter = rng.random_range(0..=100u64);
            return ra + Duration::from_millis(jitter);
        }
        let exp = next_attempt.saturating_sub(2).min(20);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ms.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn full_jitter_within_the_exponential_bound_and_cap() {
        let b = Backoff::default();
        let rng = &mut StdRng::seed_from_u64(7);
        for _ in 0..200 {
            assert!(b.delay(2, None, rng) <= Duration::from_millis(250));
            assert!(b.delay(4, None, rng) <= Duration::from_millis(1000));
            assert!(b.delay(30, None, rng) <= Duration::from_secs(20));
        }
        let ra = b.delay(2, Some(Duration::from_secs(3)), rng);
        assert!(ra >= Duration::from_secs(3) && ra <= Duration::from_millis(3100));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let b = Backoff::default();
        let draw = |seed| {
            let rng = &mut StdRng::seed_from_u64(seed);
            (2..12).map(|n| b.delay(n, None, rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
