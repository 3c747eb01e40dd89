//! The send pacer shared by every request of a run: it hands out send slots at the rate the
//! [controller](super::controller) decides, under a ceiling enforced by `governor`.
//!
//! The rate starts at the configured ceiling, or just under the rate learned on an earlier run
//! against the same endpoint; from then on it follows the controller's per-round evidence
//! (see there). A `Retry-After` pauses the whole run. Send slots are not handed out ahead of
//! time: each waiter recomputes its slot from the current rate, so a decrease takes effect at
//! the very next request. Two allowances: a run starts with a burst of a tenth of a second's
//! worth (at most [`MAX_START_BURST`], less the preflight's reads and the first group's early
//! sends; a 429 ends it), as a server's token bucket starts full; and a send may take its own
//! slot a little early (see [`Grouping`]: at most 3 slots and 40 ms ahead, and 7 slots and
//! 80 ms once a hundred sends in a row were served with no limit known), so that sends leave
//! in small groups and the process wakes up once per group; not while the in-flight window
//! asks whether 429s are its limit's (see the window's `pace`).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{SharedClock, SystemClock};

pub use super::controller::{Answer, Ticket};
use super::controller::{Controller, Learned};
use super::window::{Control, LearnedInFlight, Window};

/// The most sends that go at once when a run starts (see [`Pacer::with_learned`]).
pub const MAX_START_BURST: u32 = 10;
/// Sends served in a row, with no limit known, after which sends go in larger groups.
pub const CLEAN_AFTER: u32 = 100;

/// How sends are grouped: a send whose slot is at most `size - 1` slots and `max_early`
/// ahead goes at once (see [`Pacer::acquire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// The most send slots taken in one go.
    pub size: u32,
    /// The most a send may go ahead of its slot.
    pub max_early: Duration,
}

impl Grouping {
    /// From the start, and from any 429 on: groups of up to 4, at most 40 ms ahead.
    pub const NEAR_LIMIT: Grouping = Grouping {
        size: 4,
        max_early: Duration::from_millis(40),
    };
    /// Once [`CLEAN_AFTER`] sends in a row were served and no limit is known: groups of up
    /// to 8, at most 80 ms ahead. Each group costs the process a wake-up and an fsync (its
    /// intents', before they go), about 0.7 ms of CPU on the benchmark's VM: told the right
    /// rate, 2,000 tokens at 100/s, groups of 8 took a run from 255-285 to 180-200 µs of CPU
    /// per token (three runs each, interleaved) and from 505 to 269 fsyncs.
    /// Not from the start, nor near a limit: a larger group meets a token bucket that the
    /// start's burst, a probe or a background's 429s left low, and its 429s come together.
    /// On the controller's model (48 seeds), groups of 8 throughout took the limit-plus-noise
    /// median from 0.92 to 0.88; groups of 8 until the first 429 took a first run told ten
    /// times the limit from 0.997 to 0.971. Waiting for the streak leaves both as they were.
    pub const CLEAN: Grouping = Grouping {
        size: 8,
        max_early: Duration::from_millis(80),
    };

    /// How far ahead of its slot a send may go when slots are `interval` apart.
    pub fn early(self, interval: Duration) -> Duration {
        interval
            .mul_f64(f64::from(self.size - 1))
            .min(self.max_early)
    }
}

/// Chooses the grouping from the answers (see `Grouping`).
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    served_in_a_row: u32,
    current: Grouping,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            served_in_a_row: 0,
            current: Grouping::NEAR_LIMIT,
        }
    }
}

impl Groups {
    /// The grouping now.
    pub fn current(&self) -> Grouping {
        self.current
    }

    /// An answer came back; `limit_known` when the controller knows a limit (met in this
    /// run or learned on an earlier one). Returns how many send slots to leave empty before
    /// the next group: at the change to larger groups, the difference in size. A run paced at
    /// a server's limit keeps its token bucket empty; each group then finds as many tokens as
    /// slots passed since the last one, and a group larger than that meets 429s.
    pub fn on_answer(&mut self, answer: Answer, limit_known: bool) -> u32 {
        match answer {
            Answer::Limited => {
                self.served_in_a_row = 0;
                self.current = Grouping::NEAR_LIMIT;
            }
            Answer::Served => {
                self.served_in_a_row = self.served_in_a_row.saturating_add(1);
                if self.served_in_a_row >= CLEAN_AFTER
                    && !limit_known
                    && self.current != Grouping::CLEAN
                {
                    let skip = Grouping::CLEAN.size - self.current.size;
                    self.current = Grouping::CLEAN;
                    return skip;
                }
            }
            Answer::Lost => {}
        }
        0
    }
}

/// The sends that go at once when a run starts at `rate` (see [`Pacer::with_learned`]): a
/// tenth of a second's worth, at most [`MAX_START_BURST`], less the preflight's two reads and
/// the early sends of the first group.
pub fn start_credit(rate: f64) -> u32 {
    ((rate / 10.0)
        .ceil()
        .min(f64::from(MAX_START_BURST))
        .max(2.0) as u32
        - 2)
    .saturating_sub(Grouping::NEAR_LIMIT.size - 1)
}

/// A moment the slot rule computes with: tokio's [`Instant`] in the pacer, seconds as `f64` in
/// the controller's modelled runs (so that the model follows the pacer's own rule exactly).
pub trait Moment: Copy + PartialOrd {
    /// A length of time.
    type Span: Copy;
    /// `self + span`.
    fn plus(self, span: Self::Span) -> Self;
    /// `self - span`, when that is a moment.
    fn minus(self, span: Self::Span) -> Option<Self>;
}

impl Moment for Instant {
    type Span = Duration;
    fn plus(self, span: Duration) -> Instant {
        self + span
    }
    fn minus(self, span: Duration) -> Option<Instant> {
        self.checked_sub(span)
    }
}

impl Moment for f64 {
    type Span = f64;
    fn plus(self, span: f64) -> f64 {
        self + span
    }
    fn minus(self, span: f64) -> Option<f64> {
        Some(self - span)
    }
}

/// What the slot rule decides for a send asked for at some moment (see [`next_slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<T> {
    /// The next slot on the schedule: the last send's slot plus one interval (or the moment
    /// asked, when nothing was sent yet).
    pub due: T,
    /// When the send goes at once: the slot it takes (the new last send). `None`: it waits
    /// for `due`.
    pub go: Option<T>,
}

/// The pacer's slot rule, the one place it is written (both [`Pacer::acquire`] and the
/// controller's modelled runs use it): a send asked for at `now` goes at once when its slot
/// is at most `early` ahead, and takes that slot, so that sends leave in groups; a late
/// wake-up (a busy machine) keeps the schedule, the slots missed going at once, at most
/// `early`'s worth, as a group would. Otherwise it waits for its slot.
pub fn next_slot<T: Moment>(
    last_send: Option<T>,
    interval: T::Span,
    early: T::Span,
    now: T,
) -> Slot<T> {
    let due = last_send.map_or(now, |t| t.plus(interval));
    let go = if now >= due {
        Some(match now.minus(early) {
            Some(e) if e > due => e,
            _ => due,
        })
    } else if now.plus(early) >= due {
        Some(due)
    } else {
        None
    };
    Slot { due, go }
}

/// A snapshot for progress lines and summaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSnapshot {
    /// The current effective rate, requests per second.
    pub rate: f64,
    /// The configured ceiling.
    pub ceiling: f64,
    /// The server's limit, when one was met with strong evidence (or learned on an earlier
    /// run): what the run hands on.
    pub limit: Option<f64>,
    /// The estimated share of 429s that do not depend on the rate.
    pub background_429: f64,
    /// Whether a `Retry-After` pause is in force.
    pub cooling_down: bool,
    /// The server's limit on requests in flight, when one was met (or learned) and holds the
    /// run (see the window's `Control::binding_limit`).
    pub in_flight_limit: Option<u32>,
}

#[derive(Debug)]
struct State {
    /// The rate controller and the in-flight window.
    c: Control,
    /// Sends that may still go at once, ahead of the schedule (the start's burst).
    credit: u32,
    /// How sends are grouped now.
    groups: Groups,
    last_send: Option<Instant>,
    cooldown_until: Option<Instant>,
}

impl State {
    /// The time between two send slots at the pacing rate now.
    fn slot_interval(&self, now: Instant) -> Duration {
        Duration::from_secs_f64(1.0 / self.c.pacing_rate(now))
    }

    /// Whether a limit is known, of either kind.
    fn limit_known(&self) -> bool {
        self.c.ctl.limit().is_some() || self.c.win.as_ref().is_some_and(|w| w.limit().is_some())
    }
}

/// The run's shared pacer.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    changed: Notify,
    gate: tokio::sync::Mutex<()>,
    ceiling: RateLimiter<NotKeyed, InMemoryState, RunClock, NoOpMiddleware<Duration>>,
    clock: RunClock,
    adaptive: bool,
}

/// Governor's clock, read from the run's (tokio's instant): the ceiling then agrees with the
/// pacer's own timing (also under a paused test clock), and nothing calibrates a CPU counter
/// at start.
#[derive(Debug, Clone)]
struct RunClock {
    start: Instant,
    clock: SharedClock,
}

impl Clock for RunClock {
    /// Time since the pacer was made.
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.clock.now().duration_since(self.start)
    }
}

impl Pacer {
    /// A pacer with the given ceiling (requests per second), starting at it. With `adaptive`
    /// off, the rate stays at the ceiling (a `Retry-After` still pauses it).
    pub fn new(ceiling: f64, adaptive: bool) -> Pacer {
        Pacer::with_learned(ceiling, adaptive, None)
    }

    /// A pacer that starts just under `learned` (the server's limit as learned on an earlier
    /// run against the same endpoint) when that is below the ceiling.
    pub fn with_learned(ceiling: f64, adaptive: bool, learned: Option<f64>) -> Pacer {
        Pacer::with_clock(ceiling, adaptive, learned, SystemClock::shared())
    }

    /// [`Pacer::with_learned`] on the clock `clock`.
    pub fn with_clock(
        ceiling: f64,
        adaptive: bool,
        learned: Option<f64>,
        clock: SharedClock,
    ) -> Pacer {
        Pacer::with_limits(ceiling, adaptive, learned, None, clock)
    }

    /// A pacer that also keeps the requests in flight under `in_flight`: at most `cap` (the
    /// run's concurrency), and under the server's in-flight limit once one is found (see the
    /// window, `rate/window.rs`), starting at `learned` when an earlier run found one.
    pub fn with_in_flight(
        ceiling: f64,
        adaptive: bool,
        learned: Option<f64>,
        cap: u32,
        learned_in_flight: Option<u32>,
    ) -> Pacer {
        Pacer::with_limits(
            ceiling,
            adaptive,
            learned,
            Some((cap, learned_in_flight)),
            SystemClock::shared(),
        )
    }

    fn with_limits(
        ceiling: f64,
        adaptive: bool,
        learned: Option<f64>,
        in_flight: Option<(u32, Option<u32>)>,
        clock: SharedClock,
    ) -> Pacer {
        let now = clock.now();
        let ctl = Controller::new(ceiling, learned.filter(|_| adaptive), now);
        let win = in_flight.map(|(cap, learned)| {
            if adaptive {
                Window::new(cap, learned, now)
            } else {
                Window::fixed(cap, now)
            }
        });
        let ceiling = ctl.ceiling();
        // The ceiling guards against a pacing bug ever exceeding the user's limit; it allows
        // a tenth of a second's worth of burst and one send group, so that it never fights the
        // pacer's own timing (the start's burst, then groups) and never splits a group.
        let period = Duration::from_secs_f64(1.0 / ceiling);
        let burst = NonZeroU32::new((ceiling / 10.0).ceil() as u32 + Grouping::CLEAN.size)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        // The run starts with a burst: as many sends at once as the ceiling allows (a tenth of
        // a second's worth, at most `MAX_START_BURST`), less the preflight's two reads and
        // the early sends of the first group. A server's limit allows as much (a token bucket
        // starts full); on a short run it is a few hundredths of a second sooner done. Without
        // room for that group, a bucket the burst emptied refused some of its sends: at the
        // limit, two 429s in the first round, which can be read as a limit.
        let credit = start_credit(ctl.rate());
        Pacer {
            state: Mutex::new(State {
                c: Control { ctl, win },
                credit,
                groups: Groups::default(),
                // As if a request had just been sent: the preflight's reads just went out.
                last_send: Some(now),
                cooldown_until: None,
            }),
            changed: Notify::new(),
            gate: tokio::sync::Mutex::new(()),
            ceiling: RateLimiter::direct_with_clock(
                quota,
                RunClock {
                    start: now,
                    clock: clock.clone(),
                },
            ),
            clock: RunClock { start: now, clock },
            adaptive,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the numbers invalid; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next send slot at the current rate; the ticket goes back with the
    /// answer ([`Pacer::on_answer`]).
    ///
    /// A send whose slot is near (see `Grouping`) goes at once, so that sends leave in small
    /// groups and the process wakes once per group instead of once per request: on a machine
    /// where each wake-up costs tens of microseconds, that is most of the CPU a request
    /// costs. The average rate is unchanged
    /// (an early send takes its own slot, not a new one), and a pause or a decrease still
    /// holds from the very next slot.
    pub async fn acquire(&self) -> Ticket {
        // One waiter at a time (FIFO): the others queue here and do not hold slots.
        let _gate = self.gate.lock().await;
        let ticket = loop {
            // Registered before the state is read, so that no change between the two is missed
            // (a sender waiting for room in the window has no timer to fall back on).
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.clock.clock.now();
            // Every slot of the window taken: the next answer frees one (or a probe of the
            // window comes due).
            let full = {
                let st = self.lock();
                (!st.c.has_room(now)).then(|| st.c.probe_due().filter(|t| *t > now))
            };
            if let Some(probe) = full {
                match probe {
                    Some(at) => tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut changed => {}
                    },
                    None => changed.await,
                }
                continue;
            }
            let due = {
                let mut st = self.lock();
                let interval = st.slot_interval(now);
                let early = st.c.early(st.groups.current(), interval);
                let slot = next_slot(st.last_send, interval, early, now);
                match st.cooldown_until.filter(|c| *c > now) {
                    // A Retry-After pause is never cut short.
                    Some(until) => until.max(slot.due),
                    None if st.credit > 0 => {
                        st.credit -= 1;
                        break st.c.on_send(now);
                    }
                    None => match slot.go {
                        Some(taken) => {
                            st.last_send = Some(taken);
                            break st.c.on_send(now);
                        }
                        None => slot.due,
                    },
                }
            };
            // Sleeping to the slot itself (not to `slot - early`) is what forms the groups:
            // the sends after it find their slots near and go in the same wake-up.
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = &mut changed => {}
            }
        };
        // The ceiling runs on tokio's clock and waits on tokio's timer.
        while let Err(not_until) = self.ceiling.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            tokio::time::sleep(wait).await;
        }
        ticket
    }

    /// The answer to the send of `ticket`. A 429's `Retry-After` pauses the whole run.
    pub fn on_answer(&self, ticket: Ticket, answer: Answer, retry_after: Option<Duration>) {
        let now = self.clock.clock.now();
        let changed = {
            let mut st = self.lock();
            let mut changed = false;
            if answer == Answer::Limited {
                // The server refuses: no more of the start's burst.
                st.credit = 0;
            }
            if let Some(d) = retry_after.filter(|_| answer == Answer::Limited) {
                let until = now + d;
                st.cooldown_until = Some(st.cooldown_until.map_or(until, |c| c.max(until)));
                changed = true;
            }
            let limit_known = st.limit_known();
            let skip = st.groups.on_answer(answer, limit_known);
            if skip > 0 {
                let interval = st.slot_interval(now);
                st.last_send = st.last_send.map(|t| t + interval * skip);
            }
            // A sender waiting for room in the window wakes when this answer frees a slot.
            if !st.c.has_room(now) {
                changed = true;
            }
            if !self.adaptive {
                // The window is a plain cap: the slot is free, nothing else to learn.
                st.c.on_unsent(ticket);
            }
            if self.adaptive {
                let before = st.c.ctl.rate();
                let pace_before = st.c.pacing_rate(now);
                let window_before = st.c.win.as_ref().and_then(Window::limit);
                st.c.on_answer(ticket, answer, now);
                let window_after = st.c.win.as_ref().and_then(Window::limit);
                if window_after != window_before {
                    tracing::debug!(
                        from = window_before,
                        to = window_after,
                        "in-flight limit changed"
                    );
                }
                // The window's pace (an in-flight question opened or closed) holds from the
                // next slot too: a sender asleep on the old one wakes.
                if st.c.pacing_rate(now) != pace_before {
                    changed = true;
                }
                if st.c.ctl.rate() != before {
                    changed = true;
                    tracing::debug!(
                        from = before,
                        to = st.c.ctl.rate(),
                        limit = st.c.ctl.limit(),
                        background_429 = st.c.ctl.background(),
                        "send rate changed"
                    );
                }
            }
            changed
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Keeps the requests in flight at `cap` at most, when this pacer was made without a
    /// window (the dispatcher's concurrency; a pacer made with one keeps its own).
    pub fn cap_in_flight(&self, cap: u32) {
        let now = self.clock.clock.now();
        let mut st = self.lock();
        if st.c.win.is_none() {
            st.c.win = Some(Window::fixed(cap, now));
        }
    }

    /// The send of `ticket` never went (its intent could not be made durable, or nothing was
    /// left to send): its slot in the window is free.
    pub fn on_unsent(&self, ticket: Ticket) {
        self.lock().c.on_unsent(ticket);
        self.changed.notify_waiters();
    }

    /// A request was answered by the server with anything but a 429 (for callers without a
    /// ticket: counted against the current rate).
    pub fn on_accepted(&self) {
        let ticket = self.current();
        self.on_answer(ticket, Answer::Served, None);
    }

    /// The server answered 429 (for callers without a ticket).
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let ticket = self.current();
        self.on_answer(ticket, Answer::Limited, retry_after);
    }

    /// A ticket for the current rate, without a send.
    fn current(&self) -> Ticket {
        self.lock().c.ctl.ticket()
    }

    /// What to record as the server's limit for the next run against this endpoint, given
    /// what was recorded before: the limit met in this run; nothing when this run went at its
    /// ceiling unhindered and the old limit was below it; the old value when this run saw too
    /// little to tell.
    pub fn learned_rate(&self, previous: Option<f64>) -> Option<f64> {
        let st = self.lock();
        if !self.adaptive {
            return previous;
        }
        match st.c.ctl.learned() {
            Learned::Limit(l) => Some(l),
            Learned::NoneBelowCeiling => previous.filter(|p| *p > st.c.ctl.ceiling()),
            Learned::Unknown => previous,
        }
    }

    /// The run's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock.clock
    }

    /// What to record as the server's in-flight limit for the next run, given what was
    /// recorded before (as [`Pacer::learned_rate`] does for the rate): the limit met in this
    /// run; nothing when this run reached its concurrency unhindered and the old limit was
    /// under it; the old value when this run saw too little to tell.
    pub fn learned_in_flight(&self, previous: Option<u32>) -> Option<u32> {
        let st = self.lock();
        let Some(win) = st.c.win.as_ref().filter(|_| self.adaptive) else {
            return previous;
        };
        match win.learned() {
            // None when well above the rate limit found beside it: it held nothing, and was
            // most likely the rate limit's 429s misread (see `Control::binding_limit`).
            LearnedInFlight::Limit(_) => st.c.binding_limit(),
            LearnedInFlight::NoneBelowCap => previous.filter(|p| *p >= win.cap()),
            LearnedInFlight::Unknown => previous,
        }
    }

    /// The current state, for progress and summaries.
    pub fn snapshot(&self) -> PacerSnapshot {
        let now = self.clock.clock.now();
        let st = self.lock();
        PacerSnapshot {
            rate: st.c.ctl.rate(),
            ceiling: st.c.ctl.ceiling(),
            limit: st.c.ctl.known_limit(),
            background_429: st.c.ctl.background(),
            cooling_down: st.cooldown_until.is_some_and(|c| c > now),
            in_flight_limit: st.c.binding_limit(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    /// The group size at the start of a run, and after a 429.
    const GROUP: u32 = Grouping::NEAR_LIMIT.size;

    #[tokio::test(start_paused = true)]
    async fn told_the_right_rate_it_sends_at_it_from_the_first_second() {
        let p = Pacer::new(100.0, true);
        assert_eq!(p.snapshot().rate, 100.0);
        let start = Instant::now();
        for _ in 0..100 {
            let t = p.acquire().await;
            p.on_answer(t, Answer::Served, None);
        }
        // The start's burst of 8, then 92 slots 10 ms apart (the last up to 30 ms early).
        let secs = Instant::now().duration_since(start).as_secs_f64();
        assert!((0.88..=0.92).contains(&secs), "100 sends took {secs} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_round_of_429s_collapses_the_rate_at_the_next_send() {
        let p = Pacer::new(1000.0, true);
        let mut tickets = Vec::new();
        for _ in 0..20 {
            tickets.push(p.acquire().await);
        }
        // The server accepted 2 of the first 20: far above its limit.
        for (i, t) in tickets.into_iter().enumerate() {
            let a = if i < 2 {
                Answer::Served
            } else {
                Answer::Limited
            };
            p.on_answer(t, a, None);
        }
        let s = p.snapshot();
        assert!(s.rate <= 300.0, "{s:?}");
        assert!(s.limit.is_some());
        // The next sends go at the new rate (a group of up to 4 may leave together).
        let t0 = Instant::now();
        for _ in 0..20 {
            let _ = p.acquire().await;
        }
        let span = Instant::now().duration_since(t0).as_secs_f64();
        assert!(span >= 16.0 / s.rate, "{span}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_pauses_every_send() {
        let p = std::sync::Arc::new(Pacer::new(100.0, false));
        let _ = p.acquire().await;
        let t0 = Instant::now();
        let t = p.acquire().await;
        let fast = Instant::now().duration_since(t0);
        assert!(fast <= Duration::from_millis(11), "{fast:?}");
        p.on_answer(t, Answer::Limited, Some(Duration::from_secs(2)));
        assert!(p.snapshot().cooling_down);
        let t1 = Instant::now();
        let _ = p.acquire().await;
        assert!(Instant::now().duration_since(t1) >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn sends_leave_in_small_groups_at_the_same_average_rate() {
        let p = Pacer::new(100.0, false);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..400 {
            let _ = p.acquire().await;
            times.push(Instant::now());
        }
        // The start's burst (5: a tenth of a second's worth less the preflight's two reads
        // and a group's three early sends), then 395 slots 10 ms apart from the start (the
        // first at 10 ms), the last up to 30 ms early.
        let burst = MAX_START_BURST as usize - 2 - (GROUP as usize - 1);
        assert!(times[..burst].iter().all(|t| *t == start));
        let times = &times[burst..];
        let span = times[394].duration_since(start);
        assert!(
            span >= Duration::from_millis(3910) && span <= Duration::from_millis(3950),
            "{span:?}"
        );
        // Sends at the same instant form a group: at most GROUP, and few wake-ups in all.
        let mut groups = vec![1usize];
        for w in times.windows(2) {
            if w[0] == w[1] {
                *groups.last_mut().unwrap_or(&mut 0) += 1;
            } else {
                groups.push(1);
            }
        }
        assert!(groups.iter().all(|g| *g <= GROUP as usize), "{groups:?}");
        assert!(
            groups.len() <= 395 / GROUP as usize + 1,
            "{} groups",
            groups.len()
        );
        // After the burst, never more sends in any second than the rate allows, plus the
        // early group.
        for (i, t) in times.iter().enumerate() {
            let in_a_second = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(
                in_a_second < 100 + GROUP as usize,
                "{in_a_second} in a second"
            );
        }
    }

    /// How many sends leave at each instant over the next `n` sends, each answered `answer`.
    async fn group_sizes(p: &Pacer, n: usize, answer: Answer) -> Vec<usize> {
        let groups = groups(p, n, answer).await;
        groups.into_iter().map(|(_, k)| k).collect()
    }

    /// When each group of the next `n` sends left, and how many it held.
    async fn groups(p: &Pacer, n: usize, answer: Answer) -> Vec<(Instant, usize)> {
        let mut groups: Vec<(Instant, usize)> = Vec::new();
        for _ in 0..n {
            let t = p.acquire().await;
            p.on_answer(t, answer, None);
            let now = Instant::now();
            match groups.last_mut() {
                Some((at, k)) if *at == now => *k += 1,
                _ => groups.push((now, 1)),
            }
        }
        groups
    }

    /// The groups past the first and before the last (which a count of sends may cut short).
    fn inner(sizes: &[usize]) -> &[usize] {
        &sizes[1..sizes.len() - 1]
    }

    #[tokio::test(start_paused = true)]
    async fn groups_of_eight_once_a_hundred_sends_were_served_then_of_four_from_a_429() {
        let p = Pacer::new(100.0, true);
        // Groups of 4 while fewer than CLEAN_AFTER sends were served in a row (the start's
        // burst of 8, then 22 groups).
        let start = group_sizes(&p, CLEAN_AFTER as usize - 4, Answer::Served).await;
        assert!(inner(&start).iter().all(|k| *k == 4), "{start:?}");
        // The hundredth closes a group of 4; the first group of 8 leaves 80 ms after it: 40
        // for that group's slots, 40 for the 4 left empty.
        let change = groups(&p, 12, Answer::Served).await;
        let sizes: Vec<usize> = change.iter().map(|(_, k)| *k).collect();
        assert_eq!(sizes, [4, 8]);
        assert_eq!(
            change[1].0.duration_since(change[0].0),
            Duration::from_millis(80)
        );
        let clean = group_sizes(&p, 80, Answer::Served).await;
        assert!(inner(&clean).iter().all(|k| *k == 8), "{clean:?}");
        // A 429: groups of 4 again, until another hundred are served in a row.
        let t = p.acquire().await;
        p.on_answer(t, Answer::Limited, None);
        let near = group_sizes(&p, 80, Answer::Served).await;
        assert!(inner(&near).iter().all(|k| *k == 4), "{near:?}");
        // With a limit known (here, learned on an earlier run): groups of 4 throughout.
        let p = Pacer::with_learned(1000.0, true, Some(100.0));
        let learned = group_sizes(&p, 300, Answer::Served).await;
        assert!(inner(&learned).iter().all(|k| *k == 4), "{learned:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn paced_at_a_token_buckets_rate_the_change_to_larger_groups_meets_no_429() {
        // A server's bucket: a tenth of a second's worth at 100/s, less the preflight's two
        // reads. The start's burst empties it, and pacing at its rate keeps it empty: the
        // first group of 8 must find the 4 tokens more it needs.
        let p = Pacer::new(100.0, true);
        let start = Instant::now();
        let (mut tokens, mut last) = (8.0f64, start);
        let mut refused = 0;
        for _ in 0..400 {
            let t = p.acquire().await;
            let now = Instant::now();
            tokens = (tokens + now.duration_since(last).as_secs_f64() * 100.0).min(10.0);
            last = now;
            // A little slack for the float sums of the refill.
            let answer = if tokens >= 1.0 - 1e-6 {
                tokens -= 1.0;
                Answer::Served
            } else {
                refused += 1;
                Answer::Limited
            };
            p.on_answer(t, answer, None);
        }
        assert_eq!(refused, 0);
        assert_eq!(p.snapshot().rate, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_starts_with_a_burst_that_a_429_ends() {
        // 100/s: a tenth of a second's worth, less the preflight's two reads and a group's
        // three early sends; with those (the slots at 10, 20 and 30 ms), 8 at once: what a
        // bucket of a tenth of a second holds after the preflight. The next group at 40 ms.
        let p = Pacer::new(100.0, false);
        let start = Instant::now();
        for _ in 0..8 {
            let _ = p.acquire().await;
        }
        assert_eq!(Instant::now(), start);
        let _ = p.acquire().await;
        assert_eq!(Instant::now(), start + Duration::from_millis(40));
        // 1000/s: at most MAX_START_BURST in all.
        let p = Pacer::new(1000.0, true);
        let mut at_once = 0;
        while Instant::now() == start {
            let _ = p.acquire().await;
            at_once += 1;
        }
        // The burst, then one early group (its last send is the first one later).
        assert!(
            at_once <= MAX_START_BURST as usize - 2 + GROUP as usize,
            "{at_once}"
        );
        // 20/s: two requests' worth, spent by the preflight.
        let p = Pacer::new(20.0, false);
        let start = Instant::now();
        let _ = p.acquire().await;
        let _ = p.acquire().await;
        assert!(Instant::now() > start);
        // A 429 ends the burst at once.
        let p = Pacer::new(100.0, false);
        let start = Instant::now();
        let t = p.acquire().await;
        p.on_answer(t, Answer::Limited, None);
        let _ = p.acquire().await;
        let _ = p.acquire().await;
        let _ = p.acquire().await;
        let _ = p.acquire().await;
        let _ = p.acquire().await;
        assert!(Instant::now() > start, "the burst went on after a 429");
    }

    #[tokio::test(start_paused = true)]
    async fn never_above_the_ceiling() {
        let p = Pacer::new(50.0, true);
        let start = Instant::now();
        for _ in 0..200 {
            let t = p.acquire().await;
            p.on_answer(t, Answer::Served, None);
        }
        let secs = Instant::now().duration_since(start).as_secs_f64();
        assert!(200.0 / secs <= 50.0 * 1.05, "{} req/s", 200.0 / secs);
    }

    #[tokio::test(start_paused = true)]
    async fn a_learned_rate_is_where_it_starts_and_what_it_remembers() {
        let p = Pacer::with_learned(1000.0, true, Some(100.0));
        let s = p.snapshot();
        assert_eq!(s.rate, 98.0);
        assert_eq!(s.limit, Some(100.0));
        assert_eq!(p.learned_rate(Some(100.0)), Some(100.0));
        // A learned rate above the ceiling: the ceiling.
        let p = Pacer::with_learned(50.0, true, Some(100.0));
        assert_eq!(p.snapshot().rate, 50.0);
        // Nothing seen: the old value stays.
        assert_eq!(p.learned_rate(Some(100.0)), Some(100.0));
        assert_eq!(p.learned_rate(None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_and_server_errors_are_not_a_rate_signal() {
        let p = Pacer::new(100.0, true);
        for _ in 0..200 {
            let t = p.acquire().await;
            p.on_answer(t, Answer::Lost, None);
        }
        assert_eq!(p.snapshot().rate, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_allows_a_tenth_of_a_second_and_a_send_group_at_once() {
        // The ceiling alone, without the pacer's own timing: 100/s allows a tenth of a
        // second's worth and one of the largest send groups at once (the start's burst, then
        // a group).
        let p = Pacer::new(100.0, false);
        for i in 0..10 + Grouping::CLEAN.size {
            assert!(p.ceiling.check().is_ok(), "send {i} of the burst");
        }
        assert!(p.ceiling.check().is_err());
        // One period later, one more.
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(p.ceiling.check().is_ok());
        assert!(p.ceiling.check().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_429_with_retry_after_pauses_and_the_pause_ends_on_time() {
        let p = Pacer::new(100.0, false);
        let t = p.acquire().await;
        // A served answer carrying a Retry-After header is no reason to pause.
        p.on_answer(t, Answer::Served, Some(Duration::from_secs(5)));
        assert!(!p.snapshot().cooling_down);
        p.on_rate_limited(Some(Duration::from_secs(2)));
        assert!(p.snapshot().cooling_down);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(p.snapshot().cooling_down);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!p.snapshot().cooling_down, "over at its very end");
        p.on_accepted();
        assert!(!p.snapshot().cooling_down);
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_remembered_after_a_run_at_the_ceiling() {
        // Not adaptive: whatever was known before.
        let fixed = Pacer::new(100.0, false);
        assert_eq!(fixed.learned_rate(Some(42.0)), Some(42.0));
        // Adaptive, went at its ceiling without meeting a limit: an old limit below (or at)
        // the ceiling is forgotten, one above it stays.
        let p = Pacer::new(100.0, true);
        for _ in 0..300 {
            let t = p.acquire().await;
            p.on_answer(t, Answer::Served, None);
        }
        assert_eq!(p.snapshot().limit, None);
        assert_eq!(p.learned_rate(Some(50.0)), None);
        assert_eq!(p.learned_rate(Some(100.0)), None);
        assert_eq!(p.learned_rate(Some(200.0)), Some(200.0));
        let s = p.snapshot();
        assert_eq!((s.rate, s.ceiling), (100.0, 100.0));
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_idle_second_the_missed_slots_are_not_sent_in_a_burst() {
        let p = Pacer::new(100.0, false);
        // The start's burst and its early group (8), then one send on its slot.
        for _ in 0..MAX_START_BURST - 2 + 1 {
            let _ = p.acquire().await;
        }
        // Nothing asked for a second (or the process woke up late): a hundred slots passed.
        tokio::time::advance(Duration::from_secs(1)).await;
        let t0 = Instant::now();
        let mut at_once = 0;
        for _ in 0..20 {
            let _ = p.acquire().await;
            if Instant::now() == t0 {
                at_once += 1;
            }
        }
        // A late wake-up keeps at most `early`'s worth of the missed slots (3 at 100/s), then
        // the group allowance (3 more) and the send itself: 7. Sending the missed slots as a
        // burst would stop only at the ceiling's burst (10).
        assert!(at_once <= 1 + 2 * (GROUP - 1), "{at_once} sent at once");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_without_a_ticket_count_as_answers() {
        // The preflight's reads are answered without a send ticket.
        let p = Pacer::new(100.0, true);
        for _ in 0..300 {
            let _ = p.acquire().await;
            p.on_accepted();
        }
        // Enough answers to know the run went at its ceiling: an old lower limit is forgotten.
        assert_eq!(p.learned_rate(Some(50.0)), None);
    }
}
