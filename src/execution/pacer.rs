//! Adaptive rate control shared by every request of a run.
//!
//! The configured rate is a ceiling (enforced by `governor`). Below it, the effective rate
//! starts low and doubles every [`GROWTH_STEP`] while requests succeed and the pacer is the
//! bottleneck (slow start, as TCP's); the first 429 ends slow start and cuts the rate to just
//! under what the server was measured to accept (multiplicative decrease, at most once per
//! [`DECREASE_HOLDOFF`]); then the rate climbs back additively. A `Retry-After` pauses the
//! whole run. Send slots are not handed out ahead of time: each waiter recomputes its slot
//! from the current rate, so a decrease takes effect at the very next request. The one
//! allowance is that a send may take its own slot a little early (at most [`GROUP`] slots and
//! [`MAX_EARLY`] ahead), so that sends leave in small groups and the process wakes up once
//! per group.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often the rate may grow.
pub const GROWTH_STEP: Duration = Duration::from_millis(250);
/// The shortest time between two decreases (one overshoot causes several 429s at once).
pub const DECREASE_HOLDOFF: Duration = Duration::from_millis(1000);
/// The most send slots taken in one go (see [`Pacer::acquire`]).
pub const GROUP: u32 = 4;
/// The most a send may go ahead of its slot.
pub const MAX_EARLY: Duration = Duration::from_millis(40);
/// The longest window over which the accepted rate is measured (see `State::window`).
const WINDOW: Duration = Duration::from_secs(2);

/// A snapshot for progress lines and summaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSnapshot {
    /// The current effective rate, requests per second.
    pub rate: f64,
    /// The configured ceiling.
    pub ceiling: f64,
    /// Whether the pacer is still in slow start.
    pub slow_start: bool,
    /// Whether a `Retry-After` pause is in force.
    pub cooling_down: bool,
}

#[derive(Debug)]
struct State {
    rate: f64,
    ceiling: f64,
    floor: f64,
    slow_start: bool,
    last_send: Option<Instant>,
    cooldown_until: Option<Instant>,
    last_growth: Instant,
    last_decrease: Option<Instant>,
    /// Whether a caller had to wait for its slot since the last growth step (the pacer, not
    /// the concurrency cap, is what limits throughput).
    pacing_bound: bool,
    accepted: VecDeque<Instant>,
    started: Instant,
}

/// The run's shared pacer.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    changed: Notify,
    gate: tokio::sync::Mutex<()>,
    ceiling: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    clock: TokioClock,
    adaptive: bool,
}

/// Governor's clock, read from tokio's: the ceiling then agrees with the pacer's own timing
/// (also under a paused test clock), and nothing calibrates a CPU counter at start.
#[derive(Debug, Clone, Copy)]
struct TokioClock(Instant);

impl Clock for TokioClock {
    /// Time since the pacer was made.
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().duration_since(self.0)
    }
}

impl State {
    /// The measuring window: one growth step, or long enough to hold ~4 requests at the
    /// current rate, at most [`WINDOW`].
    fn window(&self) -> Duration {
        Duration::from_secs_f64(
            (4.0 / self.rate).clamp(GROWTH_STEP.as_secs_f64(), WINDOW.as_secs_f64()),
        )
    }
}

impl Pacer {
    /// A pacer with the given ceiling (requests per second). With `adaptive` off, the rate is
    /// the ceiling from the start (429s still pause and cut it).
    pub fn new(ceiling: f64, adaptive: bool) -> Pacer {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            1.0
        };
        let floor = (ceiling * 0.05).clamp(0.2, 5.0).min(ceiling);
        let start = if adaptive {
            ceiling.min(10.0).max(floor)
        } else {
            ceiling
        };
        // The ceiling guards against a pacing bug ever exceeding the user's limit; it allows
        // a tenth of a second's worth of burst so that it never fights the pacer's own timing.
        let period = Duration::from_secs_f64(1.0 / ceiling);
        let burst = NonZeroU32::new((ceiling / 10.0).ceil() as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let now = Instant::now();
        Pacer {
            state: Mutex::new(State {
                rate: start,
                ceiling,
                floor,
                slow_start: adaptive,
                // As if a request had just been sent: the preflight's reads just went out.
                last_send: Some(now),
                cooldown_until: None,
                last_growth: now,
                last_decrease: None,
                pacing_bound: false,
                accepted: VecDeque::new(),
                started: now,
            }),
            changed: Notify::new(),
            gate: tokio::sync::Mutex::new(()),
            ceiling: RateLimiter::direct_with_clock(quota, TokioClock(now)),
            clock: TokioClock(now),
            adaptive,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the numbers invalid; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next send slot at the current rate.
    ///
    /// A send whose slot is near (at most [`GROUP`]` - 1` slots and [`MAX_EARLY`] ahead) goes
    /// at once, so that sends leave in small groups and the process wakes once per group
    /// instead of once per request: on a machine where each wake-up costs tens of
    /// microseconds, that is most of the CPU a request costs. The average rate is unchanged
    /// (an early send takes its own slot, not a new one), and a pause or a decrease still
    /// holds from the very next slot.
    pub async fn acquire(&self) {
        // One waiter at a time (FIFO): the others queue here and do not hold slots.
        let _gate = self.gate.lock().await;
        loop {
            let now = Instant::now();
            let due = {
                let mut st = self.lock();
                let interval = Duration::from_secs_f64(1.0 / st.rate);
                let slot = st.last_send.map_or(now, |t| t + interval);
                let early = interval.mul_f64(f64::from(GROUP - 1)).min(MAX_EARLY);
                match st.cooldown_until.filter(|c| *c > now) {
                    // A Retry-After pause is never cut short.
                    Some(until) => {
                        st.pacing_bound = true;
                        until.max(slot)
                    }
                    None if now >= slot => {
                        // Absorb timer lateness without ever building a burst.
                        st.last_send = Some(if now.duration_since(slot) < interval {
                            slot
                        } else {
                            now
                        });
                        break;
                    }
                    None if now + early >= slot => {
                        st.last_send = Some(slot);
                        break;
                    }
                    None => {
                        st.pacing_bound = true;
                        slot
                    }
                }
            };
            // Sleeping to the slot itself (not to `slot - early`) is what forms the groups:
            // the sends after it find their slots near and go in the same wake-up.
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.changed.notified() => {}
            }
        }
        // The ceiling runs on tokio's clock and waits on tokio's timer.
        while let Err(not_until) = self.ceiling.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            tokio::time::sleep(wait).await;
        }
    }

    /// A request was accepted by the server (anything but a 429).
    pub fn on_accepted(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        st.accepted.push_back(now);
        while st
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            st.accepted.pop_front();
        }
        if !self.adaptive || now.duration_since(st.last_growth) < GROWTH_STEP {
            return;
        }
        let bound = std::mem::take(&mut st.pacing_bound);
        st.last_growth = now;
        if !bound || st.cooldown_until.is_some_and(|c| c > now) {
            return;
        }
        let step = GROWTH_STEP.as_secs_f64();
        st.rate = if st.slow_start {
            st.rate * 2.0
        } else {
            // About +5% per second, at least +1 request/s per second.
            st.rate + (st.rate * 0.05).max(1.0) * step
        }
        .min(st.ceiling);
    }

    /// The server answered 429: slow the whole run down.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        {
            let mut st = self.lock();
            if let Some(d) = retry_after {
                let until = now + d;
                st.cooldown_until = Some(st.cooldown_until.map_or(until, |c| c.max(until)));
            }
            let recent = st
                .last_decrease
                .is_some_and(|t| now.duration_since(t) < DECREASE_HOLDOFF);
            if !recent {
                // What the server accepted recently: over a short window (a growth step, or a
                // few requests at low rates), so that a slow-start ramp does not drag it down.
                let window = st.window();
                let span = now
                    .duration_since(st.started)
                    .min(window)
                    .as_secs_f64()
                    .max(0.05);
                let accepted = st
                    .accepted
                    .iter()
                    .rev()
                    .take_while(|t| now.duration_since(**t) <= window)
                    .count();
                // Nothing accepted lately (the first request, or after a pause) says nothing
                // about the server's capacity: then halve, as TCP does.
                let cut = if accepted < 2 {
                    st.rate * 0.5
                } else {
                    (st.rate * 0.9).min(accepted as f64 / span * 0.97)
                };
                st.rate = cut.max(st.floor).min(st.ceiling);
                st.slow_start = false;
                st.last_decrease = Some(now);
                st.last_growth = now;
                st.pacing_bound = false;
            }
        }
        self.changed.notify_waiters();
    }

    /// The current state, for progress and summaries.
    pub fn snapshot(&self) -> PacerSnapshot {
        let now = Instant::now();
        let st = self.lock();
        PacerSnapshot {
            rate: st.rate,
            ceiling: st.ceiling,
            slow_start: st.slow_start,
            cooling_down: st.cooldown_until.is_some_and(|c| c > now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_start_doubles_then_a_429_cuts_to_the_measured_rate() {
        let p = Pacer::new(1000.0, true);
        assert_eq!(p.snapshot().rate, 10.0);
        // Send as fast as the pacer allows for 1.2 s of (virtual) time.
        let start = Instant::now();
        let mut sent = 0;
        while Instant::now().duration_since(start) < Duration::from_millis(1200) {
            p.acquire().await;
            p.on_accepted();
            sent += 1;
        }
        let r = p.snapshot().rate;
        assert!(r >= 80.0, "rate after slow start {r}");
        assert!(sent > 30, "sent {sent}");
        p.on_rate_limited(None);
        let after = p.snapshot();
        assert!(!after.slow_start);
        assert!(after.rate < r, "{} !< {r}", after.rate);
        // A second 429 right away (same overshoot) does not cut again.
        p.on_rate_limited(None);
        assert_eq!(p.snapshot().rate, after.rate);
    }

    #[tokio::test(start_paused = true)]
    async fn a_decrease_takes_effect_at_the_next_request() {
        let p = std::sync::Arc::new(Pacer::new(100.0, false));
        p.acquire().await;
        let t0 = Instant::now();
        p.acquire().await;
        let fast = Instant::now().duration_since(t0);
        assert!(fast <= Duration::from_millis(11), "{fast:?}");
        p.on_rate_limited(Some(Duration::from_secs(2)));
        let t1 = Instant::now();
        p.acquire().await;
        assert!(Instant::now().duration_since(t1) >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn sends_leave_in_small_groups_at_the_same_average_rate() {
        let p = Pacer::new(100.0, false);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..400 {
            p.acquire().await;
            times.push(Instant::now());
        }
        // 400 slots 10 ms apart; the last may go up to 30 ms early.
        let span = times[399].duration_since(start);
        assert!(
            span >= Duration::from_millis(3970) && span <= Duration::from_millis(4000),
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
            groups.len() <= 400 / GROUP as usize + 1,
            "{} groups",
            groups.len()
        );
        // Never more sends in any second than the rate allows, plus the early group.
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

    #[tokio::test(start_paused = true)]
    async fn a_429_with_nothing_accepted_halves_instead_of_collapsing() {
        let p = Pacer::new(20.0, true);
        p.acquire().await;
        p.on_rate_limited(None);
        assert_eq!(p.snapshot().rate, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn never_above_the_ceiling() {
        let p = Pacer::new(50.0, true);
        let start = Instant::now();
        for _ in 0..200 {
            p.acquire().await;
            p.on_accepted();
        }
        let secs = Instant::now().duration_since(start).as_secs_f64();
        assert!(200.0 / secs <= 50.0 * 1.05, "{} req/s", 200.0 / secs);
    }
}
