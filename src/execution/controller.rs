//! The rate controller: decides the send rate from evidence gathered per *round* of requests,
//! not per 429 and not per clock tick.
//!
//! Why: a controller that cuts on every 429 and grows on a clock settles near
//! `ln(1+g) / (p·ln(1/β))` requests per second when a share `p` of 429s comes from elsewhere (other
//! clients sharing the account's limit), whatever the server's capacity: about 5/s at 8%. This
//! one tells a limit from that noise:
//!
//! - A round is the next `n` answers to sends made since the last rate change (`n` grows with
//!   the background share, 16 to 64); answers to sends made before the change are ignored, so
//!   each round measures one rate.
//! - The *background* share `p̂` of 429s (those that do not depend on our rate) is estimated
//!   from the rounds that were judged clean.
//! - A round has *excess* 429s when `P[Binomial(n, max(p̂, 0.5%)) ≥ x] < 1%`. Excess in cruise
//!   leads to one *step-down* round at 0.8 of the accepted rate. If the 429 share falls there
//!   and the cruise round stays significant against the re-estimated background, the 429s
//!   depended on the rate: a limit, and the rate settles 2% under the accepted rate. If not,
//!   they were background noise, and the rate is restored.
//! - Gross overload (at least 6 429s in at least 12 answers, and at least half of them) cuts
//!   at once to just under the accepted rate (at most 8× down): a start far above the limit
//!   collapses in a round or two.
//! - Below the ceiling, the controller probes upward now and then (0.5 s after finding a
//!   limit by overload, 2.5 s after a confirmed one, doubling after each probe that met the
//!   limit, at most 16×): rounds at 1.25× the rate, growing ×1.25 per clean round up to 2×. A
//!   probe is clean only after 0.5 s at its rate (a token bucket's burst hides the limit from
//!   shorter rounds); one that met the limit goes back to the last clean rate, or lower when
//!   the share of 429s after its first one (once the burst is spent) says the server accepts
//!   less: a clean rate may have passed on a burst too.
//! - Never above the ceiling. Answers that are not 429 and not HTTP answers at all (timeouts,
//!   dropped connections) say nothing about the rate and are ignored; 5xx count as served.
//!
//! The controller is a pure state machine: every method takes the time, so that it can be
//! tested against modelled servers without a clock.

use std::time::Duration;

use tokio::time::Instant;

/// Pace this far under every estimate of the server's accepted rate.
pub const PACING_MARGIN: f64 = 0.98;
/// The smallest round.
const MIN_ROUND: f64 = 16.0;
/// The largest round.
const MAX_ROUND: f64 = 64.0;
/// The significance level of the excess test.
const SIGNIFICANCE: f64 = 0.01;
/// The least background share assumed by the excess test.
const MIN_BACKGROUND: f64 = 0.005;
/// The most background share believed.
const MAX_BACKGROUND: f64 = 0.25;
/// The background estimate forgets evidence beyond this many answers.
const BACKGROUND_MEMORY: f64 = 400.0;
/// The step-down round's rate, as a share of the accepted rate.
const STEP_DOWN: f64 = 0.8;
/// The first probe's gain, and its growth per clean probe round.
const PROBE_GAIN: f64 = 1.25;
/// The most a probe round raises the rate.
const PROBE_GAIN_MAX: f64 = 2.0;
/// When to probe after a limit found by gross overload.
const PROBE_AFTER_OVERLOAD: Duration = Duration::from_millis(500);
/// When to probe after a confirmed limit (doubled per probe that met the limit).
const PROBE_EVERY: Duration = Duration::from_millis(2500);
/// The most the probe interval is multiplied.
const PROBE_BACKOFF_MAX: u32 = 16;
/// A probe round is judged clean only after this long at the probe rate: a token bucket's
/// burst hides the limit from a shorter round (a tenth of a second's burst drains in 0.4 s at
/// 1.25× the limit).
const PROBE_MIN_TIME: Duration = Duration::from_millis(500);
/// Answers before a gross overload cuts: enough to measure the accepted rate within ~10%.
const GROSS_MEASURE: u32 = 12;
/// Answers from a probe's first 429 on that measure the limit before the probe ends.
const PROBE_MEASURE: u32 = 12;
/// A rate learned on an earlier run is probed as if this many probes had met it.
const LEARNED_PROBE_FAILURES: u32 = 2;

/// Which rate a send was made at: answers to sends made before the last rate change are not
/// evidence about the current rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
}

/// What a send got back, as far as the rate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer other than 429 (including 5xx: the server took the request).
    Served,
    /// 429.
    Limited,
    /// No HTTP answer (timeout, connection lost): no evidence either way.
    Lost,
}

/// What the controller knows about the server's limit at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Learned {
    /// Too few answers to say anything.
    Unknown,
    /// The run went at its ceiling without meeting a limit.
    NoneBelowCeiling,
    /// A limit, requests per second the server accepts.
    Limit(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// At a steady rate, watching each round.
    Cruise,
    /// One round at a lower rate, to tell whether the 429s of a cruise round depended on it.
    StepDown {
        restore: f64,
        x: u32,
        n: u32,
        accepted: f64,
    },
    /// One round above the last rate that was clean.
    Probe { from: f64 },
}

/// The rate controller of one run.
#[derive(Debug, Clone)]
pub struct Controller {
    ceiling: f64,
    floor: f64,
    rate: f64,
    phase: Phase,
    epoch: u64,
    /// Sends at the current rate, and when the first and last left.
    epoch_sends: u32,
    epoch_first: Option<Instant>,
    epoch_last: Option<Instant>,
    /// Answers and 429s of the current round.
    answers: u32,
    limited: u32,
    /// Answers and 429s of the current round from its first 429 on: once a token bucket's
    /// burst is spent, the share of 429s measures the limit.
    answers_after: u32,
    limited_after: u32,
    /// Background evidence: 429s and answers in rounds judged free of a limit.
    bg_x: f64,
    bg_n: f64,
    limit: Option<f64>,
    next_probe: Option<Instant>,
    probe_failures: u32,
    probe_gain: f64,
    rounds: u32,
}

impl Controller {
    /// A controller under `ceiling` (requests per second), starting at the ceiling or, when a
    /// rate was learned on an earlier run against the same endpoint, just under it.
    pub fn new(ceiling: f64, learned: Option<f64>, now: Instant) -> Controller {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            1.0
        };
        let floor = (ceiling * 0.01).clamp(0.1, 1.0).min(ceiling);
        let learned = learned.filter(|l| l.is_finite() && *l > 0.0 && *l < ceiling);
        let mut c = Controller {
            ceiling,
            floor,
            rate: ceiling,
            phase: Phase::Cruise,
            epoch: 0,
            epoch_sends: 0,
            epoch_first: None,
            epoch_last: None,
            answers: 0,
            limited: 0,
            answers_after: 0,
            limited_after: 0,
            bg_x: 0.0,
            bg_n: 0.0,
            limit: None,
            next_probe: None,
            probe_failures: 0,
            probe_gain: PROBE_GAIN,
            rounds: 0,
        };
        if let Some(l) = learned {
            c.rate = (l * PACING_MARGIN).max(floor);
            c.limit = Some(l);
            c.probe_failures = LEARNED_PROBE_FAILURES;
            c.next_probe = Some(now + c.probe_interval());
        }
        c
    }

    /// The rate to send at now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The configured ceiling.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The server's limit as estimated now, if one was met.
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    /// The estimated share of 429s that do not depend on the rate.
    pub fn background(&self) -> f64 {
        (self.bg_x / (self.bg_n + MIN_ROUND)).min(MAX_BACKGROUND)
    }

    /// What to remember for the next run.
    pub fn learned(&self) -> Learned {
        match self.limit {
            Some(l) => Learned::Limit(l),
            None if self.rounds > 0 => Learned::NoneBelowCeiling,
            None => Learned::Unknown,
        }
    }

    /// A send left now.
    pub fn on_send(&mut self, now: Instant) -> Ticket {
        self.epoch_sends += 1;
        self.epoch_first.get_or_insert(now);
        self.epoch_last = Some(now);
        Ticket { epoch: self.epoch }
    }

    /// A ticket for the current rate without a send (for an answer whose send had none).
    pub fn ticket(&self) -> Ticket {
        Ticket { epoch: self.epoch }
    }

    /// The answer to the send of `ticket` came back now.
    pub fn on_answer(&mut self, ticket: Ticket, answer: Answer, now: Instant) {
        if ticket.epoch != self.epoch {
            return;
        }
        match answer {
            Answer::Lost => return,
            Answer::Served => self.answers += 1,
            Answer::Limited => {
                self.answers += 1;
                self.limited += 1;
            }
        }
        if self.limited > 0 {
            self.answers_after += 1;
            self.limited_after += u32::from(answer == Answer::Limited);
        }
        let (x, n) = (self.limited, self.answers);
        let p = self.background();
        let f = f64::from(x) / f64::from(n);
        if x >= 6 && n >= GROSS_MEASURE && f >= (p + 0.3).max(0.5) {
            // Gross overload: no need to wait for the round's end.
            let accepted = self.accepted_rate(x, n);
            self.limit = Some(accepted);
            self.probe_failures = 0;
            self.next_probe = Some(now + PROBE_AFTER_OVERLOAD);
            self.probe_gain = PROBE_GAIN;
            self.phase = Phase::Cruise;
            self.rounds += 1;
            self.set_rate((self.rate / 8.0).max(accepted * PACING_MARGIN));
            return;
        }
        let size = self.round_size();
        if let Phase::Probe { from } = self.phase
            && excess(x, size, p)
        {
            // Significant whatever the rest of the round brings: failed, once measured.
            if self.answers_after >= PROBE_MEASURE {
                self.probe_failed(from, now);
            }
            return;
        }
        let probing_long_enough = match self.phase {
            Phase::Probe { .. } => self
                .epoch_first
                .is_some_and(|t| now.duration_since(t) >= PROBE_MIN_TIME),
            _ => true,
        };
        if n >= size && probing_long_enough {
            self.end_round(x, n, now);
        }
    }

    fn round_size(&self) -> u32 {
        (MIN_ROUND + 400.0 * self.background()).min(MAX_ROUND) as u32
    }

    fn probe_interval(&self) -> Duration {
        let k = self.probe_failures.saturating_sub(1).min(4);
        PROBE_EVERY * (1u32 << k).min(PROBE_BACKOFF_MAX)
    }

    /// The rate the sends of this epoch actually left at (the concurrency cap may hold them
    /// below the pacing rate), never above the pacing rate.
    fn send_rate(&self) -> f64 {
        match (self.epoch_first, self.epoch_last) {
            (Some(a), Some(b)) if self.epoch_sends >= 4 && b > a => {
                (f64::from(self.epoch_sends - 1) / b.duration_since(a).as_secs_f64()).min(self.rate)
            }
            _ => self.rate,
        }
    }

    /// What the server accepted, net of background 429s: `r·(1−f)/(1−p̂)`.
    fn accepted_rate(&self, x: u32, n: u32) -> f64 {
        let f = f64::from(x) / f64::from(n.max(1));
        self.send_rate() * (1.0 - f) / (1.0 - self.background())
    }

    fn add_background(&mut self, x: u32, n: u32) {
        self.bg_x += f64::from(x);
        self.bg_n += f64::from(n);
        if self.bg_n > BACKGROUND_MEMORY {
            let keep = BACKGROUND_MEMORY / self.bg_n;
            self.bg_x *= keep;
            self.bg_n *= keep;
        }
    }

    fn end_round(&mut self, x: u32, n: u32, now: Instant) {
        self.rounds += 1;
        match self.phase {
            Phase::Cruise => {
                if excess(x, n, self.background()) && self.rate > self.floor {
                    let accepted = self.accepted_rate(x, n);
                    self.phase = Phase::StepDown {
                        restore: self.rate,
                        x,
                        n,
                        accepted,
                    };
                    let down = (accepted * PACING_MARGIN * STEP_DOWN).min(self.rate * STEP_DOWN);
                    self.set_rate(down);
                } else {
                    self.add_background(x, n);
                    self.reset_round();
                    self.maybe_probe(now);
                }
            }
            Phase::StepDown {
                restore,
                x: cx,
                n: cn,
                accepted,
            } => {
                self.add_background(x, n);
                let fell = f64::from(x) / f64::from(n) <= 0.5 * f64::from(cx) / f64::from(cn);
                self.phase = Phase::Cruise;
                if fell && excess(cx, cn, self.background()) {
                    // The 429s depended on the rate: a limit.
                    self.limit = Some(accepted);
                    self.probe_failures = 1;
                    self.probe_gain = PROBE_GAIN;
                    self.next_probe = Some(now + self.probe_interval());
                    self.set_rate((accepted * PACING_MARGIN).min(restore));
                } else {
                    // Background noise: it belongs to the estimate, and the rate comes back.
                    self.add_background(cx, cn);
                    self.set_rate(restore);
                }
            }
            Phase::Probe { .. } => {
                // A clean round above the last clean rate: the limit (if any) is higher.
                self.add_background(x, n);
                self.probe_failures = 0;
                if self.rate >= self.ceiling {
                    self.limit = None;
                    self.next_probe = None;
                    self.phase = Phase::Cruise;
                    self.reset_round();
                } else {
                    if self.limit.is_some_and(|l| l < self.rate) {
                        self.limit = Some(self.rate);
                    }
                    self.probe_gain = (self.probe_gain * PROBE_GAIN).min(PROBE_GAIN_MAX);
                    let from = self.rate;
                    self.phase = Phase::Probe { from };
                    self.set_rate(from * self.probe_gain);
                }
            }
        }
    }

    /// A probe met the limit: back to the last clean rate, or just under the rate the server
    /// accepted once the probe's 429s began (before that, a token bucket's burst inflates it)
    /// when that is lower.
    fn probe_failed(&mut self, from: f64, now: Instant) {
        self.rounds += 1;
        // The first 429 is what started the count: leave it out.
        let (x, n) = (
            self.limited_after.saturating_sub(1),
            self.answers_after.saturating_sub(1),
        );
        // Back to the last clean rate, unless what the server accepted says that one only
        // passed on a burst (a share of 429s measured on a dozen answers is coarse: never
        // more than a fifth lower).
        let rate = if n >= PROBE_MEASURE / 2 {
            let accepted =
                self.send_rate() * (1.0 - f64::from(x) / f64::from(n)) / (1.0 - self.background());
            (accepted * PACING_MARGIN).clamp(from * STEP_DOWN, from)
        } else {
            from
        };
        self.limit = Some(rate / PACING_MARGIN);
        self.probe_failures += 1;
        self.probe_gain = PROBE_GAIN;
        self.next_probe = Some(now + self.probe_interval());
        self.phase = Phase::Cruise;
        self.set_rate(rate);
    }

    fn maybe_probe(&mut self, now: Instant) {
        if self.rate < self.ceiling && self.next_probe.is_some_and(|t| now >= t) {
            let from = self.rate;
            self.phase = Phase::Probe { from };
            self.set_rate(from * self.probe_gain);
        }
    }

    /// A new rate: a new epoch, whose answers start a new round.
    fn set_rate(&mut self, rate: f64) {
        self.rate = rate.clamp(self.floor, self.ceiling);
        self.epoch += 1;
        self.epoch_sends = 0;
        self.epoch_first = None;
        self.epoch_last = None;
        self.reset_round();
    }

    fn reset_round(&mut self) {
        self.answers = 0;
        self.limited = 0;
        self.answers_after = 0;
        self.limited_after = 0;
    }
}

/// Whether `x` 429s in `n` answers are significantly more than a background share `p` explains:
/// `P[Binomial(n, max(p, 0.5%)) ≥ x] < 1%`.
pub fn excess(x: u32, n: u32, p: f64) -> bool {
    if x == 0 {
        return false;
    }
    binomial_tail(x, n.max(x), p.max(MIN_BACKGROUND)) < SIGNIFICANCE
}

/// `P[X ≥ x]` for `X ~ Binomial(n, p)`, `0 < p < 1`.
fn binomial_tail(x: u32, n: u32, p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let ratio = p / (1.0 - p);
    let mut pmf = (1.0 - p).powi(n as i32);
    let mut below = 0.0;
    for k in 0..x.min(n + 1) {
        below += pmf;
        pmf *= f64::from(n - k) / f64::from(k + 1) * ratio;
    }
    (1.0 - below).max(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn the_binomial_tail_matches_known_values() {
        // P[Bin(16, 0.5) >= 8] = 0.5982
        assert!((binomial_tail(8, 16, 0.5) - 0.598_2).abs() < 1e-3);
        // P[Bin(20, 0.1) >= 5] = 0.0432
        assert!((binomial_tail(5, 20, 0.1) - 0.043_2).abs() < 1e-3);
        assert_eq!(binomial_tail(0, 10, 0.3), 1.0);
        // Two 429s in 16 against no background is excess; against 8% it is not.
        assert!(excess(2, 16, 0.0));
        assert!(!excess(2, 16, 0.08));
        assert!(!excess(0, 16, 0.0));
    }

    /// A modelled server: a token bucket (`limit` per second, a tenth of a second of burst),
    /// `noise` of the answers a 429 that does not depend on the rate, a fixed latency.
    struct Server {
        limit: Option<f64>,
        tokens: f64,
        last: f64,
        noise: f64,
        rng: StdRng,
    }

    impl Server {
        fn new(limit: Option<f64>, noise: f64, seed: u64) -> Server {
            Server {
                limit,
                tokens: limit.map_or(0.0, |l| (l / 10.0).max(1.0)),
                last: 0.0,
                noise,
                rng: StdRng::seed_from_u64(seed),
            }
        }

        fn set_limit(&mut self, limit: f64) {
            self.limit = Some(limit);
            self.tokens = self.tokens.min((limit / 10.0).max(1.0));
        }

        fn answer(&mut self, t: f64) -> Answer {
            if let Some(l) = self.limit {
                self.tokens = (self.tokens + (t - self.last) * l).min((l / 10.0).max(1.0));
                self.last = t;
                if self.tokens < 1.0 {
                    return Answer::Limited;
                }
                self.tokens -= 1.0;
            }
            if self.rng.random::<f64>() < self.noise {
                Answer::Limited
            } else {
                Answer::Served
            }
        }
    }

    struct Outcome {
        served: u64,
        limited: u64,
        /// (time, rate) after each change.
        rates: Vec<(f64, f64)>,
        controller: Controller,
    }

    /// Sends at the controller's rate (at most `in_flight` at once) for `seconds`; each
    /// answer comes back `latency` later. `change` may alter the server mid-run.
    fn drive(
        mut c: Controller,
        server: &mut Server,
        seconds: f64,
        latency: f64,
        in_flight: usize,
        change: &mut dyn FnMut(f64, &mut Server),
    ) -> Outcome {
        let base = Instant::now();
        let at = |t: f64| base + Duration::from_secs_f64(t);
        let mut pending: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
        let mut tickets = std::collections::HashMap::new();
        let mut seq = 0u64;
        let mut t = 0.0f64;
        let mut last_send: Option<f64> = None;
        let (mut served, mut limited) = (0, 0);
        let mut rates = vec![(0.0, c.rate())];
        while t < seconds {
            // Slots are not handed out ahead: a change holds from the very next send.
            let next_send = last_send.map_or(0.0, |l| (l + 1.0 / c.rate()).max(t));
            let next_answer = pending.peek().map(|Reverse((ns, _))| *ns as f64 / 1e9);
            let can_send = pending.len() < in_flight;
            t = match next_answer {
                Some(a) if !can_send || a <= next_send => a,
                _ => next_send,
            };
            change(t, server);
            if next_answer == Some(t) {
                let Reverse((_, id)) = pending.pop().unwrap();
                let (ticket, answer) = tickets.remove(&id).unwrap();
                match answer {
                    Answer::Limited => limited += 1,
                    _ => served += 1,
                }
                c.on_answer(ticket, answer, at(t));
            } else {
                let ticket = c.on_send(at(t));
                let answer = server.answer(t);
                seq += 1;
                tickets.insert(seq, (ticket, answer));
                pending.push(Reverse((((t + latency) * 1e9) as u64, seq)));
                last_send = Some(t);
            }
            if rates.last().is_some_and(|(_, r)| *r != c.rate()) {
                rates.push((t, c.rate()));
            }
        }
        Outcome {
            served,
            limited,
            rates,
            controller: c,
        }
    }

    fn no_change(_: f64, _: &mut Server) {}

    #[test]
    fn told_the_right_rate_it_stays_there() {
        let mut s = Server::new(Some(100.0), 0.0, 1);
        let o = drive(
            Controller::new(100.0, None, Instant::now()),
            &mut s,
            20.0,
            0.03,
            100,
            &mut no_change,
        );
        assert!(o.served >= 1950, "served {}", o.served);
        assert!(o.limited <= 20, "limited {}", o.limited);
        assert_eq!(o.controller.rate(), 100.0);
    }

    #[test]
    fn ten_times_too_high_it_finds_the_token_bucket_in_a_round_or_two() {
        for seed in 0..5 {
            let mut s = Server::new(Some(100.0), 0.0, seed);
            let o = drive(
                Controller::new(1000.0, None, Instant::now()),
                &mut s,
                20.0,
                0.03,
                100,
                &mut no_change,
            );
            let share = o.limited as f64 / (o.served + o.limited) as f64;
            assert!(
                o.served >= 20.0 as u64 * 85,
                "seed {seed}: served {}",
                o.served
            );
            assert!(share <= 0.10, "seed {seed}: 429 share {share}");
            let l = o.controller.limit().unwrap();
            assert!((70.0..=140.0).contains(&l), "seed {seed}: limit {l}");
            // It was near the limit within the first second.
            let late = o.rates.iter().find(|(t, _)| *t >= 1.0).map_or(0.0, |r| r.1);
            assert!(late <= 200.0, "seed {seed}: rates {:?}", &o.rates[..8]);
        }
    }

    #[test]
    fn random_429s_without_a_limit_do_not_collapse_the_rate() {
        for seed in 0..5 {
            let mut s = Server::new(None, 0.08, seed);
            let o = drive(
                Controller::new(200.0, None, Instant::now()),
                &mut s,
                20.0,
                0.003,
                8,
                &mut no_change,
            );
            // 200/s for 20 s, 8% of it refused: 3,680 at best. The old controller got ~5/s.
            assert!(o.served >= 2800, "seed {seed}: served {}", o.served);
            let p = o.controller.background();
            assert!((0.03..=0.15).contains(&p), "seed {seed}: background {p}");
        }
    }

    #[test]
    fn a_limit_with_random_429s_on_top_is_found_and_kept() {
        for seed in 0..5 {
            let mut s = Server::new(Some(100.0), 0.05, seed);
            let o = drive(
                Controller::new(1000.0, None, Instant::now()),
                &mut s,
                30.0,
                0.03,
                100,
                &mut no_change,
            );
            // At most 95/s get through; ask for 80% of that.
            assert!(
                o.served as f64 >= 30.0 * 95.0 * 0.8,
                "seed {seed}: {}",
                o.served
            );
            let share = o.limited as f64 / (o.served + o.limited) as f64;
            assert!(share <= 0.20, "seed {seed}: 429 share {share}");
        }
    }

    #[test]
    fn a_limit_that_halves_mid_run_is_followed_down() {
        let mut s = Server::new(Some(100.0), 0.0, 3);
        let mut halve = |t: f64, s: &mut Server| {
            if t >= 10.0 && s.limit == Some(100.0) {
                s.set_limit(50.0);
            }
        };
        let o = drive(
            Controller::new(100.0, None, Instant::now()),
            &mut s,
            30.0,
            0.03,
            100,
            &mut halve,
        );
        // Within 3 s of the halving the rate is near the new limit, and stays so.
        let after: Vec<f64> = o
            .rates
            .iter()
            .filter(|(t, _)| *t >= 13.0)
            .map(|r| r.1)
            .collect();
        assert!(!after.is_empty());
        assert!(after.iter().all(|r| *r <= 80.0), "{:?}", o.rates);
        // 10 s at 100 and 20 s at 50: 2,000 at best.
        assert!(o.served >= 1700, "served {}", o.served);
        let share = o.limited as f64 / (o.served + o.limited) as f64;
        assert!(share <= 0.05, "429 share {share}");
    }

    #[test]
    fn a_learned_rate_starts_just_under_it_and_probes_rarely() {
        let mut s = Server::new(Some(100.0), 0.0, 5);
        let o = drive(
            Controller::new(1000.0, Some(100.0), Instant::now()),
            &mut s,
            20.0,
            0.03,
            100,
            &mut no_change,
        );
        assert_eq!(o.rates[0].1, 98.0);
        let share = o.limited as f64 / (o.served + o.limited) as f64;
        assert!(share <= 0.02, "429 share {share}");
        assert!(o.served >= 1850, "served {}", o.served);
    }

    #[test]
    fn answers_to_sends_before_a_change_are_not_evidence() {
        let now = Instant::now();
        let mut c = Controller::new(100.0, None, now);
        let old: Vec<Ticket> = (0..20).map(|_| c.on_send(now)).collect();
        // Gross overload on the first round: a cut.
        for t in &old[..12] {
            c.on_answer(*t, Answer::Limited, now);
        }
        let cut = c.rate();
        assert!(cut < 100.0);
        // The rest of the old sends' 429s change nothing.
        for t in &old[12..] {
            c.on_answer(*t, Answer::Limited, now);
        }
        assert_eq!(c.rate(), cut);
        // Nor do lost answers.
        let t = c.on_send(now);
        c.on_answer(t, Answer::Lost, now);
        assert_eq!(c.rate(), cut);
    }
}
