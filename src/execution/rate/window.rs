//! The in-flight window: finds a server's limit on requests in flight (the limit Logz.io
//! documents: "100 concurrent API requests per account") and keeps the run under it, beside
//! the rate controller, which finds a limit on requests per second.
//!
//! Why a second variable: against a server that refuses beyond `L` requests in flight, the
//! capacity is `L / latency`, and a rate cut lowers the requests in flight only through the
//! latency; the rate accepted while most slots are held by requests that will be refused
//! understates it. So each 429 is first asked whether the in-flight count explains it.
//!
//! The evidence: for every send, the requests of this run that were at the server when it
//! left (sent, not yet answered), and, once their answers are in, how many of those the
//! server had admitted: `a`. A server that admits at most `L` at once never refuses a send
//! with `a < L` (other clients aside) and never admits one with `a ≥ L`; a rate limit refuses
//! at any `a`. So, over the answers since the window last changed, with `k` one more than the
//! largest `a` of an admitted send: when the 429s at `a < k` are no more than the background
//! share explains (the rate controller's estimate, and the same test) and at least
//! [`MIN_EVIDENCE`] 429s sit at `a ≥ k`, the server's in-flight limit is `k`. Those 429s are
//! then no evidence about the rate, and the rate controller never sees them; every other 429
//! goes to it as before. A 429 is held back from the rate controller only while that question
//! is open (a few answers).
//!
//! The window: a run with no learned limit starts at 8 in flight (or its `--concurrency`, if
//! lower) and adds one per answer served (doubling per round trip, as TCP's slow start) up to
//! `--concurrency`; the first 429 stops the growth. Once a limit is found the window is that
//! limit, and a probe now and then lets one send go one above it (0.5 s after a limit newly
//! found, 2.5 s after a probe that met it, doubling per probe that met it, at most 16×): if
//! the server admitted it, the limit is higher (and the next probe comes soon). A limit
//! learned on an earlier run is where the next run starts, probed as if three probes had met
//! it. The slot of a send is free when its answer arrives: the durability of that answer does
//! not need the server.
//!
//! A pure state machine, as the rate controller: every method takes the time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::controller::{Answer, Controller, Ticket};
use super::significance::excess;

/// The window a run starts with, when no in-flight limit is known.
pub const INITIAL_WINDOW: u32 = 8;
/// 429s at or above the candidate limit that establish it.
pub const MIN_EVIDENCE: u32 = 3;
/// The answers since the window last changed that are kept as evidence.
const EVIDENCE_MEMORY: usize = 256;
/// Answers after which a 429 held back for the in-flight question goes to the rate controller
/// unanswered (it was one 429 among many admitted sends: background, or a rate limit).
const HOLD_MAX: u32 = 24;
/// When to probe after a limit newly found.
const PROBE_AFTER_LIMIT: Duration = Duration::from_millis(500);
/// When to probe after a probe that met the limit (doubled per probe that met it).
const PROBE_EVERY: Duration = Duration::from_millis(2500);
/// The most the probe interval is multiplied.
const PROBE_BACKOFF_MAX: u32 = 16;
/// A limit learned on an earlier run is probed as if this many probes had met it.
const LEARNED_PROBE_FAILURES: u32 = 3;
/// How many sends' fates are kept (far more than are ever in flight at once).
const FATES_KEPT: usize = 4096;

/// What became of a send, as far as the server's slots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Answered, not 429: it held a slot.
    Admitted,
    /// 429: it held none.
    Refused,
    /// No answer (timeout, connection lost): it may have held one.
    Unknown,
    /// Never sent.
    Unsent,
}

/// What a 429 was, once the in-flight question is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server's in-flight limit explains it: no evidence about the rate.
    InFlight,
    /// Not explained by the in-flight count: evidence for the rate controller.
    Rate,
}

/// What a run hands on about the in-flight limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnedInFlight {
    /// Nothing to say (too few answers, or the window never reached a limit).
    Unknown,
    /// The run reached its `--concurrency` without meeting an in-flight limit.
    NoneBelowCap,
    /// The server's in-flight limit.
    Limit(u32),
}

/// One answer waiting for the fates of the sends that were in flight when it left.
#[derive(Debug, Clone)]
struct Pending<T> {
    seq: u64,
    refused: bool,
    deps: Vec<u64>,
    payload: T,
}

/// The in-flight window of one run. `T` is what a held 429 carries back to its caller (the
/// rate controller's ticket).
#[derive(Debug, Clone)]
pub struct Window<T> {
    cap: u32,
    window: u32,
    limit: Option<u32>,
    growing: bool,
    next_seq: u64,
    /// Sends in flight, and the sends that were in flight when each left.
    out: Vec<(u64, Vec<u64>)>,
    fates: VecDeque<Option<Fate>>,
    fates_base: u64,
    pending: Vec<Pending<T>>,
    /// `(a, refused)` of the answers since the window last changed.
    evidence: VecDeque<(u32, bool)>,
    /// 429s whose verdict waits on more evidence: `(a, payload, answers since)`.
    held: Vec<(u32, T, u32)>,
    probe_at: Option<Instant>,
    probe_failures: u32,
    /// The send that went one above the limit, while its answer is awaited.
    probe_seq: Option<u64>,
    /// A limit found or confirmed in this run, or learned.
    limit_evidence: bool,
    /// Answers seen (for what is handed on).
    answers: u64,
    reached_cap: bool,
    /// Off: a plain cap of `cap` in flight, no limit sought (a pacer that does not adapt).
    adaptive: bool,
}

impl<T: Clone> Window<T> {
    /// The window of a run allowed `cap` requests in flight, starting at `learned` (the
    /// server's in-flight limit as an earlier run found it) when that is below `cap`.
    pub fn new(cap: u32, learned: Option<u32>, now: Instant) -> Window<T> {
        let cap = cap.max(1);
        let learned = learned.filter(|l| *l >= 1 && *l < cap);
        let mut w = Window {
            cap,
            window: learned.unwrap_or(INITIAL_WINDOW.min(cap)),
            limit: learned,
            growing: learned.is_none() && INITIAL_WINDOW < cap,
            next_seq: 0,
            out: Vec::new(),
            fates: VecDeque::new(),
            fates_base: 0,
            pending: Vec::new(),
            evidence: VecDeque::new(),
            held: Vec::new(),
            probe_at: None,
            probe_failures: 0,
            probe_seq: None,
            limit_evidence: learned.is_some(),
            answers: 0,
            reached_cap: false,
            adaptive: true,
        };
        if learned.is_some() {
            w.probe_failures = LEARNED_PROBE_FAILURES;
            w.probe_at = Some(now + w.probe_interval());
        }
        w
    }

    /// A plain cap of `cap` in flight: no growth, no limit sought, every 429 the rate's.
    pub fn fixed(cap: u32, now: Instant) -> Window<T> {
        let mut w = Window::new(cap, None, now);
        w.window = w.cap;
        w.growing = false;
        w.adaptive = false;
        w
    }

    /// The `--concurrency`.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// The server's in-flight limit, when one was found (or learned).
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.out.len()).unwrap_or(u32::MAX)
    }

    /// How many may be in flight now (one more than the limit for a probe that is due).
    pub fn allowed(&self, now: Instant) -> u32 {
        let probing = self.limit.is_some()
            && self.probe_seq.is_none()
            && self.probe_at.is_some_and(|t| now >= t);
        (self.window + u32::from(probing)).min(self.cap)
    }

    /// Whether a send may go now.
    pub fn has_room(&self, now: Instant) -> bool {
        self.in_flight() < self.allowed(now)
    }

    /// When a probe is due (a waiting sender wakes then).
    pub fn probe_due(&self) -> Option<Instant> {
        self.probe_at
            .filter(|_| self.limit.is_some() && self.probe_seq.is_none())
    }

    /// A send leaves: its number, for its answer.
    pub fn on_send(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Only an adaptive window reads the sends a 429 found in flight; a fixed one (told its
        // limit) keeps none, so a send allocates nothing for it.
        let deps: Vec<u64> = if self.adaptive {
            self.out.iter().map(|(s, _)| *s).collect()
        } else {
            Vec::new()
        };
        if let Some(limit) = self.limit
            && self.out.len() >= limit as usize
            && self.probe_seq.is_none()
            && self.probe_at.is_some_and(|t| now >= t)
        {
            self.probe_seq = Some(seq);
        }
        self.out.push((seq, deps));
        self.fates.push_back(None);
        while self.fates.len() > FATES_KEPT {
            self.fates.pop_front();
            self.fates_base += 1;
        }
        seq
    }

    fn fate(&self, seq: u64) -> Option<Fate> {
        match seq.checked_sub(self.fates_base) {
            // Forgotten long ago: it was answered, and counted as admitted.
            None => Some(Fate::Admitted),
            Some(i) => self.fates.get(i as usize).copied().flatten(),
        }
    }

    fn set_fate(&mut self, seq: u64, fate: Fate) {
        if let Some(i) = seq.checked_sub(self.fates_base)
            && let Some(slot) = self.fates.get_mut(i as usize)
        {
            *slot = Some(fate);
        }
    }

    /// Takes send `seq` out of flight; its dependencies, if it was in flight.
    fn land(&mut self, seq: u64) -> Option<Vec<u64>> {
        let i = self.out.iter().position(|(s, _)| *s == seq)?;
        Some(self.out.swap_remove(i).1)
    }

    /// A send that never went (its intent could not be journaled): its slot is free.
    pub fn on_unsent(&mut self, seq: u64) {
        if self.land(seq).is_some() {
            self.set_fate(seq, Fate::Unsent);
            if self.probe_seq == Some(seq) {
                self.probe_seq = None;
            }
        }
    }

    /// The answer to send `seq`: `served` (any HTTP answer but 429), `refused` (429), or
    /// neither (no answer). Returns the 429s whose verdict is now known, with their payloads:
    /// this one's, or earlier ones held back. `background` is the share of 429s that do not
    /// depend on this run (the rate controller's estimate).
    pub fn on_answer(
        &mut self,
        seq: u64,
        answer: Answer,
        payload: T,
        background: f64,
        now: Instant,
    ) -> Vec<(T, Verdict)> {
        let mut verdicts = Vec::new();
        let Some(deps) = self.land(seq) else {
            // Not a send of this window (or answered twice): the rate decides alone.
            if answer == Answer::Limited {
                verdicts.push((payload, Verdict::Rate));
            }
            return verdicts;
        };
        self.answers += 1;
        if !self.adaptive {
            if answer == Answer::Limited {
                verdicts.push((payload, Verdict::Rate));
            }
            return verdicts;
        }
        let fate = match answer {
            Answer::Served => Fate::Admitted,
            Answer::Limited => Fate::Refused,
            Answer::Lost => Fate::Unknown,
        };
        self.set_fate(seq, fate);
        match answer {
            Answer::Served if self.growing => {
                self.window = (self.window + 1).min(self.cap);
                if self.window >= self.cap {
                    self.growing = false;
                    self.reached_cap = true;
                }
            }
            // The first 429 ends the growth: the window stays where the sends are.
            Answer::Limited if self.growing => {
                self.growing = false;
                self.window = self.in_flight().max(1) + 1;
            }
            _ => {}
        }
        if self.limit.is_none() && !self.growing && self.window >= self.cap {
            self.reached_cap = true;
        }
        if answer != Answer::Lost {
            self.pending.push(Pending {
                seq,
                refused: answer == Answer::Limited,
                deps,
                payload,
            });
        } else if self.probe_seq == Some(seq) {
            // A probe that got no answer says nothing: try again later.
            self.probe_seq = None;
            self.probe_at = Some(now + PROBE_AFTER_LIMIT);
        }
        self.settle(background, now, &mut verdicts);
        verdicts
    }

    /// Judges every pending answer whose dependencies' fates are all known.
    fn settle(&mut self, background: f64, now: Instant, verdicts: &mut Vec<(T, Verdict)>) {
        loop {
            let ready = self
                .pending
                .iter()
                .position(|p| p.deps.iter().all(|d| self.fate(*d).is_some()));
            let Some(i) = ready else { break };
            let p = self.pending.swap_remove(i);
            let a = p
                .deps
                .iter()
                .filter(|d| matches!(self.fate(**d), Some(Fate::Admitted | Fate::Unknown)))
                .count();
            let a = u32::try_from(a).unwrap_or(u32::MAX);
            self.judge(p.seq, a, p.refused, p.payload, background, now, verdicts);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        seq: u64,
        a: u32,
        refused: bool,
        payload: T,
        background: f64,
        now: Instant,
        verdicts: &mut Vec<(T, Verdict)>,
    ) {
        let probe = self.probe_seq == Some(seq);
        if probe {
            self.probe_seq = None;
        }
        for held in &mut self.held {
            held.2 += 1;
        }
        if !refused {
            if let Some(limit) = self.limit
                && a >= limit
            {
                // Admitted with `a` of ours at the server: the limit is higher.
                self.probe_failures = 0;
                self.set_limit(a + 1, now, PROBE_AFTER_LIMIT);
            } else if probe {
                // The probe went out with fewer at the server than the limit: try again.
                self.probe_at = Some(now + PROBE_AFTER_LIMIT);
            }
            self.remember(a, false);
        } else if let Some(limit) = self.limit
            && a >= limit
        {
            verdicts.push((payload, Verdict::InFlight));
            if probe {
                self.probe_failures = (self.probe_failures + 1).min(8);
                self.probe_at = Some(now + self.probe_interval());
            }
            return;
        } else {
            if probe {
                self.probe_at = Some(now + PROBE_AFTER_LIMIT);
            }
            self.remember(a, true);
            self.held.push((a, payload, 0));
        }
        self.evaluate(background, now, verdicts);
    }

    fn remember(&mut self, a: u32, refused: bool) {
        self.evidence.push_back((a, refused));
        while self.evidence.len() > EVIDENCE_MEMORY {
            self.evidence.pop_front();
        }
    }

    /// Asks the in-flight question of the evidence, and gives the held 429s their verdicts.
    fn evaluate(&mut self, background: f64, now: Instant, verdicts: &mut Vec<(T, Verdict)>) {
        if self.held.is_empty() {
            return;
        }
        let k = self
            .evidence
            .iter()
            .filter(|(_, refused)| !refused)
            .map(|(a, _)| a + 1)
            .max();
        let plausible = k.filter(|&k| {
            let (mut x, mut n) = (0, 0);
            for &(a, refused) in &self.evidence {
                if a < k {
                    n += 1;
                    x += u32::from(refused);
                }
            }
            !excess(x, n, background)
        });
        let Some(k) = plausible else {
            // Not the in-flight count: every held 429 is the rate controller's.
            for (_, payload, _) in self.held.drain(..) {
                verdicts.push((payload, Verdict::Rate));
            }
            return;
        };
        let above = self
            .evidence
            .iter()
            .filter(|&&(a, refused)| refused && a >= k)
            .count();
        let above = u32::try_from(above).unwrap_or(u32::MAX);
        if above >= MIN_EVIDENCE && self.limit.is_none_or(|l| k < l) {
            self.probe_failures = 0;
            self.limit_evidence = true;
            self.set_limit(k, now, PROBE_AFTER_LIMIT);
            for (a, payload, _) in std::mem::take(&mut self.held) {
                let verdict = if a >= k {
                    Verdict::InFlight
                } else {
                    Verdict::Rate
                };
                verdicts.push((payload, verdict));
            }
            return;
        }
        // Below the candidate, or held too long: background, or a rate limit.
        let mut kept = Vec::new();
        for (a, payload, since) in std::mem::take(&mut self.held) {
            if a < k || since >= HOLD_MAX {
                verdicts.push((payload, Verdict::Rate));
            } else {
                kept.push((a, payload, since));
            }
        }
        self.held = kept;
        if self.held.is_empty() && self.limit.is_none() && !self.growing {
            // The growth stopped at a 429 that no in-flight limit explains: the rate decides.
            self.window = self.cap;
        }
    }

    fn set_limit(&mut self, limit: u32, now: Instant, probe_in: Duration) {
        let limit = limit.clamp(1, self.cap);
        self.limit = (limit < self.cap).then_some(limit);
        self.window = limit;
        self.growing = false;
        self.evidence.clear();
        self.probe_at = Some(now + probe_in);
        if self.limit.is_none() {
            self.reached_cap = true;
        }
    }

    fn probe_interval(&self) -> Duration {
        if self.probe_failures == 0 {
            return PROBE_AFTER_LIMIT;
        }
        let times = 1u32 << (self.probe_failures - 1).min(4);
        PROBE_EVERY * times.min(PROBE_BACKOFF_MAX)
    }

    /// What to hand on to the next run.
    pub fn learned(&self) -> LearnedInFlight {
        match self.limit {
            Some(l) if self.limit_evidence => LearnedInFlight::Limit(l),
            _ if self.reached_cap && self.answers >= u64::from(self.cap) => {
                LearnedInFlight::NoneBelowCap
            }
            _ => LearnedInFlight::Unknown,
        }
    }
}

/// The two controls of a run together, as the pacer holds them: the rate controller, and the
/// in-flight window (none for a pacer that is not told the run's concurrency). Every send and
/// every answer goes through here: served answers and lost ones to both at once, a 429 to the
/// rate controller only once the window has judged it not explained by the in-flight count.
#[derive(Debug, Clone)]
pub struct Control {
    /// The rate controller.
    pub ctl: Controller,
    /// The in-flight window.
    pub win: Option<Window<Ticket>>,
}

impl Control {
    /// A send leaves now.
    pub fn on_send(&mut self, now: Instant) -> Ticket {
        let mut ticket = self.ctl.on_send(now);
        if let Some(win) = &mut self.win {
            ticket.seq = Some(win.on_send(now));
        }
        ticket
    }

    /// Whether the window lets a send go now.
    pub fn has_room(&self, now: Instant) -> bool {
        self.win.as_ref().is_none_or(|w| w.has_room(now))
    }

    /// When a probe of the window is due (a sender waiting for room wakes then).
    pub fn probe_due(&self) -> Option<Instant> {
        self.win.as_ref().and_then(Window::probe_due)
    }

    /// The answer to the send of `ticket`.
    pub fn on_answer(&mut self, ticket: Ticket, answer: Answer, now: Instant) {
        let (Some(win), Some(seq)) = (self.win.as_mut(), ticket.seq) else {
            self.ctl.on_answer(ticket, answer, now);
            return;
        };
        let verdicts = win.on_answer(seq, answer, ticket, self.ctl.background(), now);
        if answer != Answer::Limited {
            self.ctl.on_answer(ticket, answer, now);
        }
        for (held, verdict) in verdicts {
            if verdict == Verdict::Rate {
                self.ctl.on_answer(held, Answer::Limited, now);
            }
        }
    }

    /// The send of `ticket` never went: its slot is free.
    pub fn on_unsent(&mut self, ticket: Ticket) {
        if let (Some(win), Some(seq)) = (self.win.as_mut(), ticket.seq) {
            win.on_unsent(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    // The modelled runs keep their own time, from one moment taken at the start.
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use std::collections::HashMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::execution::rate::controller::Learned;

    /// A modelled server: at most `in_flight` requests admitted at once (each holds its slot
    /// until its answer), a token bucket of `rate` per second (a tenth of a second of burst),
    /// `noise` of the admitted answers a 429 anyway, latency `latency` plus up to `jitter`.
    /// A refused request is answered after the same latency, as the simulator does.
    struct Server {
        in_flight: Option<usize>,
        rate: Option<f64>,
        tokens: f64,
        last: f64,
        noise: f64,
        latency: f64,
        jitter: f64,
        /// When each admitted request leaves the server.
        busy_until: Vec<f64>,
        rng: StdRng,
        most_admitted: usize,
    }

    impl Server {
        fn new(in_flight: Option<usize>, rate: Option<f64>, latency: f64, seed: u64) -> Server {
            Server {
                in_flight,
                rate,
                tokens: rate.map_or(0.0, |r| (r / 10.0).max(1.0)),
                last: 0.0,
                noise: 0.0,
                latency,
                jitter: 0.0,
                busy_until: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
                most_admitted: 0,
            }
        }

        /// A send at `t`: when its answer arrives, and what it is.
        fn send(&mut self, t: f64) -> (f64, Answer) {
            let delay = self.latency + self.rng.random::<f64>() * self.jitter;
            self.busy_until.retain(|&u| u > t);
            if self.in_flight.is_some_and(|l| self.busy_until.len() >= l) {
                return (t + delay, Answer::Limited);
            }
            if let Some(r) = self.rate {
                self.tokens = (self.tokens + (t - self.last) * r).min((r / 10.0).max(1.0));
                self.last = t;
                if self.tokens < 1.0 {
                    return (t + delay, Answer::Limited);
                }
                self.tokens -= 1.0;
            }
            self.busy_until.push(t + delay);
            self.most_admitted = self.most_admitted.max(self.busy_until.len());
            if self.rng.random::<f64>() < self.noise {
                (t + delay, Answer::Limited)
            } else {
                (t + delay, Answer::Served)
            }
        }
    }

    struct Run {
        served: u64,
        limited: u64,
        end: f64,
        control: Control,
    }

    /// A run of `want` creates at `--rate ceiling --concurrency cap` (429s sent again, as the
    /// executor does), as the pacer drives the two controls: a send goes when the window has
    /// room and the rate's next slot has come; the slot is free when the answer arrives.
    fn run(control: Control, server: &mut Server, want: u64) -> Run {
        let base = Instant::now();
        let at = |t: f64| base + Duration::from_secs_f64(t);
        let mut control = control;
        let mut answers: Vec<(f64, u64, Answer)> = Vec::new();
        let mut tickets = HashMap::new();
        let (mut served, mut limited, mut id) = (0u64, 0u64, 0u64);
        let mut t = 0.0f64;
        let mut next_slot = 0.0f64;
        while served < want {
            let wanted = want - served;
            let room = control.has_room(at(t)) && (answers.len() as u64) < wanted;
            let next_answer = answers.iter().map(|a| a.0).fold(f64::INFINITY, f64::min);
            let send_at = if room {
                next_slot.max(t)
            } else {
                f64::INFINITY
            };
            let probe_at = control
                .probe_due()
                .map_or(f64::INFINITY, |p| p.duration_since(base).as_secs_f64())
                .max(t);
            if next_answer <= send_at && next_answer <= probe_at {
                t = next_answer;
                let i = answers.iter().position(|a| a.0 == t).unwrap();
                let (_, k, answer) = answers.swap_remove(i);
                let ticket = tickets.remove(&k).unwrap();
                match answer {
                    Answer::Limited => limited += 1,
                    _ => served += 1,
                }
                control.on_answer(ticket, answer, at(t));
            } else if send_at <= probe_at {
                t = send_at;
                let ticket = control.on_send(at(t));
                let (when, answer) = server.send(t);
                id += 1;
                tickets.insert(id, ticket);
                answers.push((when, id, answer));
                next_slot = t + 1.0 / control.ctl.pacing_rate(at(t));
            } else {
                t = probe_at + 1e-6;
            }
            assert!(t < 600.0, "the run does not end");
        }
        Run {
            served,
            limited,
            end: t,
            control,
        }
    }

    fn control(
        ceiling: f64,
        cap: u32,
        learned_rate: Option<f64>,
        learned_in_flight: Option<u32>,
    ) -> Control {
        let now = Instant::now();
        Control {
            ctl: Controller::new(ceiling, learned_rate, now),
            win: Some(Window::new(cap, learned_in_flight, now)),
        }
    }

    fn share(r: &Run) -> f64 {
        r.limited as f64 / (r.served + r.limited) as f64
    }

    #[test]
    fn ten_in_flight_at_the_default_concurrency_never_meets_the_limit() {
        let mut s = Server::new(Some(10), None, 0.2, 1);
        let r = run(control(100.0, 8, None, None), &mut s, 400);
        assert_eq!(r.limited, 0);
        // 8 in flight at 200 ms: 40/s, 10 s for 400.
        assert!(r.end <= 10.3, "took {}", r.end);
        assert_eq!(r.control.ctl.limit(), None);
    }

    #[test]
    fn told_a_wide_concurrency_it_finds_ten_in_flight_and_keeps_the_rate() {
        for cap in [16, 32, 100] {
            for seed in 0..4 {
                let mut s = Server::new(Some(10), None, 0.2, seed);
                let r = run(control(100.0, cap, None, None), &mut s, 400);
                let w = r.control.win.as_ref().unwrap();
                assert_eq!(w.limit(), Some(10), "cap {cap} seed {seed}");
                assert!(
                    share(&r) <= 0.03,
                    "cap {cap} seed {seed}: 429 share {}",
                    share(&r)
                );
                // Capacity 50/s: 8 s for 400.
                let eff = 8.0 / r.end;
                assert!(eff >= 0.93, "cap {cap} seed {seed}: efficiency {eff}");
                // No rate limit was read into those 429s.
                assert_eq!(r.control.ctl.limit(), None, "cap {cap} seed {seed}");
                assert_eq!(w.learned(), LearnedInFlight::Limit(10));
                assert!(s.most_admitted <= 10);
            }
        }
    }

    #[test]
    fn the_next_run_starts_at_the_learned_limit_and_meets_almost_no_429() {
        for seed in 0..4 {
            let mut s = Server::new(Some(10), None, 0.2, seed);
            let r = run(control(100.0, 32, None, Some(10)), &mut s, 400);
            assert!(r.limited <= 2, "seed {seed}: {} 429s", r.limited);
            let eff = 8.0 / r.end;
            assert!(eff >= 0.97, "seed {seed}: efficiency {eff}");
            assert_eq!(r.control.win.as_ref().unwrap().limit(), Some(10));
        }
    }

    #[test]
    fn with_latency_jitter_it_still_finds_the_in_flight_limit() {
        for seed in 0..4 {
            let mut s = Server::new(Some(10), None, 0.1, seed);
            s.jitter = 0.3;
            let r = run(control(100.0, 32, None, None), &mut s, 400);
            assert_eq!(
                r.control.win.as_ref().unwrap().limit(),
                Some(10),
                "seed {seed}"
            );
            assert!(share(&r) <= 0.05, "seed {seed}: 429 share {}", share(&r));
            // Capacity 10 / 0.25 s = 40/s: 10 s for 400.
            let eff = 10.0 / r.end;
            assert!(eff >= 0.90, "seed {seed}: efficiency {eff}");
        }
    }

    #[test]
    fn a_rate_limit_under_the_in_flight_limit_is_found_by_the_rate() {
        // 30/s and 10 in flight at 200 ms: the rate binds (6 in flight at 30/s).
        for seed in 0..4 {
            let mut s = Server::new(Some(10), Some(30.0), 0.2, seed);
            let r = run(control(100.0, 32, None, None), &mut s, 400);
            let eff = (400.0 / 30.0) / r.end;
            assert!(eff >= 0.90, "seed {seed}: efficiency {eff}");
            // Not read as an in-flight limit: the rate controller found it.
            let w = r.control.win.as_ref().unwrap();
            assert_eq!(w.limit(), None, "seed {seed}");
            assert!(
                matches!(r.control.ctl.learned(), Learned::Limit(_)),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_token_bucket_alone_is_not_taken_for_an_in_flight_limit() {
        for seed in 0..4 {
            let mut s = Server::new(None, Some(100.0), 0.03, seed);
            let r = run(control(1000.0, 32, None, None), &mut s, 2000);
            let w = r.control.win.as_ref().unwrap();
            assert_eq!(w.limit(), None, "seed {seed}");
            assert!(r.control.ctl.limit().is_some(), "seed {seed}");
            let eff = 20.0 / r.end;
            assert!(eff >= 0.90, "seed {seed}: efficiency {eff}");
        }
    }

    #[test]
    fn random_429s_are_not_an_in_flight_limit() {
        for seed in 0..4 {
            let mut s = Server::new(None, None, 0.003, seed);
            s.noise = 0.08;
            let r = run(control(200.0, 8, None, None), &mut s, 300);
            let w = r.control.win.as_ref().unwrap();
            assert_eq!(w.limit(), None, "seed {seed}");
            assert!(matches!(
                r.control.ctl.learned(),
                Learned::NoneBelowCeiling | Learned::Unknown
            ));
        }
    }

    #[test]
    fn an_in_flight_limit_with_random_429s_on_top_is_found_and_the_noise_left_alone() {
        for seed in 0..4 {
            let mut s = Server::new(Some(10), None, 0.2, seed);
            s.noise = 0.05;
            let r = run(control(100.0, 32, None, None), &mut s, 400);
            let w = r.control.win.as_ref().unwrap();
            assert_eq!(w.limit(), Some(10), "seed {seed}");
            // 5% of the sends refused at random and sent again: 0.95 at best.
            let eff = 8.0 / r.end;
            assert!(eff >= 0.80, "seed {seed}: efficiency {eff}");
            assert_eq!(r.control.ctl.limit(), None, "seed {seed}");
        }
    }
}
