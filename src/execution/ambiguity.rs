//! The ambiguity budget. An ambiguous answer to a create (a timeout, a dropped connection, a
//! cut-short body, a 500 after the request was sent) may have created a token that is not
//! recorded; re-sending may create another. A missing token costs a re-run; an orphan costs a
//! person who finds and deletes it in the UI. So ambiguity is bounded twice:
//!
//! - per item: after [`DEFAULT_MAX_AMBIGUOUS`] (or `--max-ambiguous N`) ambiguous attempts the
//!   item is not re-sent; it ends unresolved, its possible orphans listed;
//! - per run: a [`Breaker`] opens when 30 of the last 100 answers were ambiguous, and the run
//!   stops sending new creates.

use std::collections::VecDeque;

/// Default most ambiguous attempts per item.
pub const DEFAULT_MAX_AMBIGUOUS: u32 = 2;
/// How many of the latest answers the breaker looks at.
pub const BREAKER_WINDOW: usize = 100;
/// The breaker opens at this many ambiguous answers among the last [`BREAKER_WINDOW`]. The
/// window is long enough to tell a flaky service from one that creates and then errs: one
/// answering 14.5% ambiguously (the test suites' fault mix, counted without 429s) reaches 30 in
/// a window with a chance of 6 in 100,000; one at 30% within a few hundred answers; one at
/// 50% within the first 100. (17 of 50 was tried first: the fault mix opened it in long runs.)
pub const BREAKER_OPENS_AT: usize = 30;

/// The run-wide breaker on ambiguous answers.
#[derive(Debug, Default)]
pub struct Breaker {
    recent: VecDeque<bool>,
    ambiguous: usize,
    open: bool,
}

impl Breaker {
    /// Records one answer to a create (429s excluded: they say nothing about creating).
    /// Returns whether the breaker is open.
    pub fn record(&mut self, ambiguous: bool) -> bool {
        self.recent.push_back(ambiguous);
        self.ambiguous += usize::from(ambiguous);
        if self.recent.len() > BREAKER_WINDOW && self.recent.pop_front() == Some(true) {
            self.ambiguous -= 1;
        }
        if self.ambiguous >= BREAKER_OPENS_AT {
            self.open = true;
        }
        self.open
    }

    /// Whether the breaker opened.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Ambiguous answers among the latest ones, and how many those are.
    pub fn recent(&self) -> (usize, usize) {
        (self.ambiguous, self.recent.len())
    }
}

/// Why the breaker stopped a run, for the summary.
pub fn breaker_message(ambiguous: usize, of: usize) -> String {
    format!(
        "the service answers errors after creating: {ambiguous} of the last {of} answers were ambiguous \
         (each may have created a token), so no new creates were sent; check the possible orphans in the \
         Logz.io UI, then run apply again when the service is healthy"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn answers_until_open(share: f64, seed: u64, most: usize) -> Option<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = Breaker::default();
        (1..=most).find(|_| b.record(rng.random::<f64>() < share))
    }

    #[test]
    fn opens_on_a_service_that_mostly_creates_then_errs() {
        for seed in 0..20 {
            let at = answers_until_open(0.5, seed, 1000);
            assert!(at.is_some_and(|n| n <= 100), "seed {seed}: {at:?}");
            let at = answers_until_open(0.3, seed, 2000);
            assert!(at.is_some(), "seed {seed}: 30% never opened it");
        }
    }

    #[test]
    fn stays_closed_under_the_test_suites_fault_mix() {
        for seed in 0..20 {
            assert_eq!(answers_until_open(0.145, seed, 2000), None, "seed {seed}");
        }
    }

    #[test]
    fn counts_only_the_latest_answers() {
        let mut b = Breaker::default();
        for _ in 1..BREAKER_OPENS_AT {
            b.record(true);
        }
        for _ in 0..BREAKER_WINDOW {
            assert!(!b.record(false));
        }
        assert_eq!(b.recent(), (0, BREAKER_WINDOW));
        for _ in 1..BREAKER_OPENS_AT {
            assert!(!b.record(true));
        }
        assert!(b.record(true));
        assert!(b.is_open());
    }

    #[test]
    fn a_closed_breaker_says_so_and_the_message_gives_the_count() {
        let mut b = Breaker::default();
        assert!(!b.is_open());
        assert!(!b.record(true));
        assert!(!b.is_open());
        assert_eq!(b.recent(), (1, 1));
        let m = breaker_message(30, 100);
        assert!(
            m.contains("30 of the last 100 answers were ambiguous"),
            "{m}"
        );
    }
}
