//! When the recorder next refreshes the state files.

use std::time::Duration;

use tokio::time::Instant;

/// How often, at most, the results and secrets files are refreshed during a run.
pub(super) const SAVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long the files may go without a refresh while a run records outcomes.
pub(super) const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// A refresh rewrites every recorded token, so it waits for at least this fraction of that
/// number of new outcomes (or [`MAX_SAVE_INTERVAL`]): the cost of saves per created token
/// stays constant as the state grows, instead of growing with it. The journal holds
/// everything in between, so nothing waits on a save.
const SAVE_AFTER_GROWTH: usize = 4;
/// When the next refresh of the state files is due.
#[derive(Debug)]
pub(super) struct SaveClock {
    pub(super) every: Duration,
    pub(super) next: Instant,
    pub(super) last: Instant,
    pub(super) outcomes_since: usize,
}

impl SaveClock {
    pub(super) fn new(now: Instant) -> Self {
        SaveClock {
            every: SAVE_INTERVAL,
            next: now + SAVE_INTERVAL,
            last: now,
            outcomes_since: 0,
        }
    }

    /// Whether a refresh is due at `now`, for a state of `tokens` recorded tokens.
    pub(super) fn due(&self, tokens: usize, now: Instant) -> bool {
        let grown = self.outcomes_since >= tokens / SAVE_AFTER_GROWTH
            || now.saturating_duration_since(self.last) >= MAX_SAVE_INTERVAL;
        now >= self.next && grown
    }

    /// A refresh that took `took` ended at `now`.
    pub(super) fn saved(&mut self, took: Duration, now: Instant) {
        self.outcomes_since = 0;
        self.last = now;
        // Saving a large state takes a while; keep it to a few percent of the run.
        self.every = SAVE_INTERVAL.max(took * 30);
    }

    /// Moves the next refresh on once it is due at `now`.
    pub(super) fn tick(&mut self, now: Instant) {
        if now >= self.next {
            self.next = now + self.every;
        }
    }
}
