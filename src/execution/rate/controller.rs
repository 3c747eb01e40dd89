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
//!   each round measures one rate. A cruise round with a few 429s that are not yet significant
//!   extends to two, then four rounds' worth before they count as background: a rate a few
//!   percent over a limit shows a share of 429s much like noise's.
//! - The *background* share `p̂` of 429s (those that do not depend on our rate) is estimated
//!   from the rounds judged free of a limit.
//! - A round has *excess* 429s when `P[Binomial(n, max(p̂, 0.5%)) ≥ x] < 1%`. Excess in cruise
//!   leads to a *step-down* round at 0.9 of the accepted rate, twice as long as the cruise
//!   round (at most 64 answers). If the 429s fell by half there, and by more than chance would
//!   spread them over the two rounds (a hypergeometric test at 5%, adding up the step-downs
//!   from the same rate), they depended on the rate: a limit, and the rate settles 2% under
//!   the accepted rate. If not, they were background noise, and the rate is restored.
//! - Gross overload (at least 6 429s in at least 12 answers, and at least half of them) cuts
//!   at once to just under the accepted rate (at most 8× down): a start far above the limit
//!   collapses in a round or two.
//! - After every cut the run *settles* for 0.2 s at 0.85 of the new rate, and the answers to
//!   those sends are evidence of gross overload only (measured against the rate those sends
//!   left at, not the new rate): the run has just emptied the server's bucket, and the first
//!   sends under the limit still find it empty (BBR's drain phase). Without this, the pacer's
//!   send groups meet 429s right after a cut and a sound rate is cut again.
//! - Below the ceiling, the controller probes upward now and then (0.5 s after a limit newly
//!   found, 2.5 s after a probe that met it, doubling after each one, at most 16×; 10 s into a
//!   run that starts from a learned rate): rounds at 1.25× the rate, growing ×1.25 per clean
//!   round up to 2×. A probe is clean only after 0.7 s at its rate (a token bucket's burst
//!   hides the limit from shorter rounds). It meets the limit when the answers after its first
//!   429 (once the burst is spent; answers to sends made before that 429's send do not count)
//!   have excess 429s; it then goes back to the last clean rate, or at most 5% lower when their
//!   share says the server accepts less. The first probe after a limit newly estimated measures
//!   two dozen answers instead of a dozen, and may also come back up to 5% higher: a limit
//!   estimated a little low otherwise stays so, as a probe 25% up meets any limit less than 25%
//!   higher.
//! - Never above the ceiling. Answers that are not 429 and not HTTP answers at all (timeouts,
//!   dropped connections) say nothing about the rate and are ignored; 5xx count as served.
//!
//! The controller is a pure state machine: every method takes the time, so that it can be
//! tested against modelled servers without a clock.

use std::time::Duration;

use tokio::time::Instant;

use super::significance::{below, concentrated, excess};

/// Pace this far under every estimate of the server's accepted rate.
pub const PACING_MARGIN: f64 = 0.98;
/// The smallest round.
const MIN_ROUND: f64 = 16.0;
/// The largest round.
const MAX_ROUND: f64 = 64.0;
/// The significance level of the step-down's comparison (after an excess at 1%).
const STEP_SIGNIFICANCE: f64 = 0.05;
/// The most background share believed.
const MAX_BACKGROUND: f64 = 0.25;
/// The most rounds a cruise round with a few 429s extends to before they count as background.
const MAX_SPAN: u32 = 4;
/// A cruise round of the longest span whose 429s (two or more) are not significant against the
/// background but over this many times its share is tested by a step-down rather than taken
/// as background. Taken, the refusals of a limit a few percent under the rate (a limit learned
/// or estimated a little high) became the background they were judged against, and the run
/// stayed over the limit: on the model, a run from a learned 106/s against a 100/s bucket met
/// 1.0-3.6% 429s, estimated a background of up to 0.036 on a server with none, and handed
/// 103-106/s on again; with the test, 1.0-1.9% and 99-105/s (a median of 101.9/s). Against
/// a 5% background (the noise scenario) a round of 64 reaches 3× its share about one time in
/// 800, so step-downs on noise stay rare (its efficiency: the same median, 0.92, over 48
/// seeds); at 2×, one time in 25, and its median fell to 0.914.
const SUSPECT_SHARE: f64 = 3.0;
/// The background estimate forgets evidence beyond this many answers.
const BACKGROUND_MEMORY: f64 = 400.0;
/// The step-down round's rate, as a share of the accepted rate: far enough under it to fall
/// below a limit that the accepted rate, measured on one round, overstates by 10%; near
/// enough to cost little when the 429s were noise (a step-down round lasts up to 64 answers).
const STEP_DOWN: f64 = 0.9;
/// The first probe's gain, and its growth per clean probe round.
const PROBE_GAIN: f64 = 1.25;
/// The least share of the last clean rate a probe that met the limit comes back to.
const PROBE_RETURN_MIN: f64 = 0.95;
/// The most a probe round raises the rate.
const PROBE_GAIN_MAX: f64 = 2.0;
/// When to probe after a limit newly found (by gross overload or a step-down): its estimate
/// rests on one round.
const PROBE_AFTER_LIMIT: Duration = Duration::from_millis(500);
/// When to probe after a confirmed limit (doubled per probe that met the limit).
const PROBE_EVERY: Duration = Duration::from_millis(2500);
/// The most the probe interval is multiplied.
const PROBE_BACKOFF_MAX: u32 = 16;
/// A probe round is judged clean only after this long at the probe rate: a token bucket's
/// burst hides the limit from a shorter round. A tenth of a second's burst drains in 0.45 s
/// at 1.225× the limit (a probe from a learned start, 2% under it), and the answers that show
/// the 429s come a latency and a dozen answers later.
const PROBE_MIN_TIME: Duration = Duration::from_millis(700);
/// Answers before a gross overload cuts: enough to measure the accepted rate within ~10%.
const GROSS_MEASURE: u32 = 12;
/// Answers from a probe's first 429 on that measure the limit before the probe ends.
const PROBE_MEASURE: u32 = 12;
/// A probe that met a second 429 from its first on measures this many times as long before it
/// may end clean: two 429s in a dozen answers are not significant at 1% against the least
/// background (0.5%), but are not a background's share either. A probe 18% over a bucket
/// (from a limit learned 4% low) meets them about half the time in the few tenths of a second
/// after the bucket's burst is spent, and passed: the next probe went 56% over the bucket.
const SECOND_LOOK: u32 = 2;
/// The same for the first probe after a limit was newly estimated: that estimate rests on one
/// round, and this probe measures it again, on a bucket it keeps empty, to correct it either
/// way; a dozen answers would put it within ±8% at best (one answer in twelve).
const PROBE_REFINE_MEASURE: u32 = 24;
/// The most the first probe after a limit newly estimated raises the rate above the last
/// clean one, when what the server accepted says the limit is higher: a limit estimated a few
/// percent low otherwise stays so, since a probe 25% up meets any limit less than 25% higher
/// and comes back no higher than it started.
const PROBE_RISE_MAX: f64 = 1.05;
/// A run that starts from a learned limit paces this far under it, as under any estimate. It
/// was 4% under: a limit learned a little low then cost the whole run 4%, since a probe that
/// meets the limit comes back no higher than where it started; one learned a little high shows
/// as excess in the first rounds.
const LEARNED_MARGIN: f64 = PACING_MARGIN;
/// A rate learned on an earlier run is probed as if this many probes had met it.
const LEARNED_PROBE_FAILURES: u32 = 3;
/// After a cut, how long answers are not evidence of a limit: the run just drained the
/// server's bucket, and the first sends under the limit still find it empty (BBR's drain
/// phase after a probe).
const SETTLE: Duration = Duration::from_millis(200);
/// The pacing rate while settling, as a share of the rate: lets the server's bucket refill
/// (at a limit of 100/s, 3 requests' worth in 0.2 s, for 0.03 s of lost sending).
const DRAIN_GAIN: f64 = 0.85;

/// Which rate a send was made at: answers to sends made before the last rate change are not
/// evidence about the current rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    /// Sent while settling after a cut: evidence of gross overload only.
    settling: bool,
    /// When the send left (none for an answer whose send had no ticket).
    sent: Option<Instant>,
    /// The send's number in the in-flight window (see [`super::window`]), when it has one.
    pub(super) seq: Option<u64>,
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
    /// Sends at the current rate once settled.
    sent: Sends,
    /// Sends while settling after a cut: the rate they really left at, which the answers
    /// during the settling measure the server against.
    sent_settling: Sends,
    /// Answers and 429s of the current round.
    answers: u32,
    limited: u32,
    /// Answers and 429s of the current round to sends made from the first 429's send on (an
    /// answer to an earlier send that comes back later is not counted: it may have taken the
    /// bucket's last token): once a token bucket's burst is spent, the share of 429s measures
    /// the limit.
    answers_after: u32,
    limited_after: u32,
    /// When the send of the round's first 429 left.
    after_from: Option<Instant>,
    /// The latest answers counted in `answers_after`, one bit each (1: a 429), newest lowest.
    recent: u64,
    /// Background evidence: 429s and answers in rounds judged free of a limit.
    bg_x: f64,
    bg_n: f64,
    limit: Option<f64>,
    /// The run has had strong evidence of a limit: a round mostly of 429s, a probe that met
    /// the limit, or a limit learned on an earlier run. A limit found by step-downs alone (a
    /// test at 5%) is not kept for the next run without it (see [`Controller::learned`]).
    limit_seen: bool,
    next_probe: Option<Instant>,
    probe_failures: u32,
    probe_gain: f64,
    rounds: u32,
    /// Until when the run settles after a cut (see [`SETTLE`]).
    settle_until: Option<Instant>,
    /// The round counters still hold settling answers (counted for gross overload only).
    settling_round: bool,
    /// The cruise round's length in rounds: it grows while its few 429s are not significant.
    span: u32,
    /// The evidence of the step-downs from one rate.
    steps: Steps,
    /// 429s to sends of the current rate (once settled) that the in-flight window holds
    /// while it asks whether its count explains them (see [`Controller::on_held`]): no round
    /// is judged clean (nor its 429s noise) until they are back. Held, a bucket's 429s let a probe 80% over it pass as
    /// clean, and came back after the rate had changed, when they no longer count.
    held: u32,
    /// The latest send among the answers to the current rate's sends: a probe is long enough
    /// once an answer to a send made [`PROBE_MIN_TIME`] into it is back.
    answered_sent: Option<Instant>,
}

/// A count of sends, and when the first and the last left.
#[derive(Debug, Clone, Copy, Default)]
struct Sends {
    count: u32,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Sends {
    fn add(&mut self, now: Instant) {
        self.count += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// The rate the sends left at, never above `paced` (the rate they were paced at), which
    /// is also the answer when fewer than 4 sends say nothing. Sends at one instant come out
    /// infinitely fast, so `paced` too.
    fn rate(&self, paced: f64) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if self.count >= 4 => {
                (f64::from(self.count - 1) / b.duration_since(a).as_secs_f64()).min(paced)
            }
            _ => paced,
        }
    }
}

/// 429s and answers of the cruise rounds (`cx`, `cn`) and the step-down rounds (`x`, `n`) of
/// the step-downs from one `rate`.
#[derive(Debug, Clone, Copy, Default)]
struct Steps {
    rate: f64,
    cx: u32,
    cn: u32,
    x: u32,
    n: u32,
}

impl Controller {
    /// A controller under `ceiling` (requests per second), starting at the ceiling or, when a
    /// rate was learned on an earlier run against the same endpoint, 2% under it (see `LEARNED_MARGIN`).
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
            sent: Sends::default(),
            sent_settling: Sends::default(),
            answers: 0,
            limited: 0,
            answers_after: 0,
            limited_after: 0,
            after_from: None,
            recent: 0,
            bg_x: 0.0,
            bg_n: 0.0,
            limit: None,
            limit_seen: false,
            next_probe: None,
            probe_failures: 0,
            probe_gain: PROBE_GAIN,
            rounds: 0,
            settle_until: None,
            settling_round: false,
            span: 1,
            steps: Steps::default(),
            held: 0,
            answered_sent: None,
        };
        if let Some(l) = learned {
            c.rate = (l * LEARNED_MARGIN).max(floor);
            c.limit = Some(l);
            c.limit_seen = true;
            c.probe_failures = LEARNED_PROBE_FAILURES;
            c.next_probe = Some(now + c.probe_interval());
        }
        c
    }

    /// The rate decided: what the run sends at once settled.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The rate to pace sends at now: the decided rate, or a little under it while settling
    /// after a cut.
    pub fn pacing_rate(&self, now: Instant) -> f64 {
        if self.settling(now) {
            self.settling_rate()
        } else {
            self.rate
        }
    }

    /// The pacing rate while settling after a cut (see [`DRAIN_GAIN`]).
    fn settling_rate(&self) -> f64 {
        (self.rate * DRAIN_GAIN).max(self.floor)
    }

    fn settling(&self, now: Instant) -> bool {
        self.settle_until.is_some_and(|u| now < u)
    }

    /// The configured ceiling.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The server's limit as estimated now, if one was met.
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    /// The server's limit as the run says it and hands it on: one with strong evidence (see
    /// [`Controller::learned`]). A limit that only step-downs found is the pacing's, not yet
    /// a finding: against a limit in flight, a few 429s the window has not yet judged can
    /// make one, while the window, not the rate, holds the run.
    pub fn known_limit(&self) -> Option<f64> {
        self.limit.filter(|_| self.limit_seen)
    }

    /// The estimated share of 429s that do not depend on the rate.
    pub fn background(&self) -> f64 {
        (self.bg_x / (self.bg_n + MIN_ROUND)).min(MAX_BACKGROUND)
    }

    /// What to remember for the next run. A limit that only step-downs found, in a run with
    /// no stronger evidence of one, is not: at their 5% test, one in twenty step-downs on noise
    /// alone finds a "limit", and a run cut short before its next probe would hand it on to
    /// every later run that ends before probing (10 s), each starting under it.
    pub fn learned(&self) -> Learned {
        match self.limit {
            Some(l) if self.limit_seen => Learned::Limit(l),
            Some(_) => Learned::Unknown,
            None if self.rounds > 0 => Learned::NoneBelowCeiling,
            None => Learned::Unknown,
        }
    }

    /// A send left now.
    pub fn on_send(&mut self, now: Instant) -> Ticket {
        let settling = self.settling(now);
        if settling {
            self.sent_settling.add(now);
        } else {
            self.sent.add(now);
        }
        Ticket {
            epoch: self.epoch,
            settling,
            sent: Some(now),
            seq: None,
        }
    }

    /// A ticket for the current rate without a send (for an answer whose send had none).
    pub fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.epoch,
            settling: false,
            sent: None,
            seq: None,
        }
    }

    /// The answer to the send of `ticket` came back now.
    pub fn on_answer(&mut self, ticket: Ticket, answer: Answer, now: Instant) {
        if ticket.epoch != self.epoch || (ticket.settling && !self.settling_round) {
            return;
        }
        if !ticket.settling && self.settling_round {
            // The first answer to a settled send starts the round proper.
            self.settling_round = false;
            self.reset_round();
        }
        match answer {
            Answer::Lost => return,
            Answer::Served => self.answers += 1,
            Answer::Limited => {
                self.answers += 1;
                self.limited += 1;
            }
        }
        let limited = answer == Answer::Limited;
        match self.after_from {
            None if limited => {
                self.after_from = Some(ticket.sent.unwrap_or(now));
                (self.answers_after, self.limited_after, self.recent) = (1, 1, 1);
            }
            Some(from) if ticket.sent.is_none_or(|s| s >= from) => {
                self.answers_after += 1;
                self.limited_after += u32::from(limited);
                self.recent = (self.recent << 1) | u64::from(limited);
            }
            _ => {}
        }
        let (x, n) = (self.limited, self.answers);
        let p = self.background();
        let f = f64::from(x) / f64::from(n);
        if x >= 6 && n >= GROSS_MEASURE && f >= (p + 0.3).max(0.5) {
            // Gross overload: no need to wait for the round's end.
            // From a dozen answers under overload the count of served ones is coarse: count
            // half a served answer more than seen, as a cut too deep costs seconds below the
            // limit where one too shallow costs a round.
            let accepted = self.accepted_rate(x, n, 0.5);
            self.limit = Some(accepted);
            self.limit_seen = true;
            self.probe_failures = 0;
            self.next_probe = Some(now + PROBE_AFTER_LIMIT);
            self.probe_gain = PROBE_GAIN;
            self.phase = Phase::Cruise;
            self.count_round_setting_limit();
            self.cut_to((self.rate / 8.0).max(accepted * PACING_MARGIN), now);
            return;
        }
        if ticket.settling {
            return;
        }
        if let Some(sent) = ticket.sent {
            self.answered_sent = Some(self.answered_sent.map_or(sent, |a| a.max(sent)));
        }
        self.judge_round(now);
    }

    /// A 429 to the send of `ticket` is held by the in-flight window for its verdict: until
    /// it comes back (as a 429 for the rate, [`Controller::on_answer`], or as none,
    /// [`Controller::on_released`]), the round it belongs to is not judged.
    pub fn on_held(&mut self, ticket: Ticket) {
        if self.counts_for_round(ticket) {
            self.held += 1;
        }
    }

    /// The 429 of `ticket`, held, is back from the in-flight window; `now` the time. With
    /// `limited` it counts as a 429 of its round (as [`Controller::on_answer`]); without, it
    /// was the in-flight limit's and says nothing of the rate.
    pub fn on_released(&mut self, ticket: Ticket, limited: bool, now: Instant) {
        if self.counts_for_round(ticket) {
            self.held = self.held.saturating_sub(1);
        }
        if limited {
            self.on_answer(ticket, Answer::Limited, now);
        } else if self.held == 0 && self.counts_for_round(ticket) && !self.settling_round {
            self.judge_round(now);
        }
    }

    /// Whether an answer to `ticket` is evidence for the current round's judgement.
    fn counts_for_round(&self, ticket: Ticket) -> bool {
        ticket.epoch == self.epoch && !ticket.settling
    }

    /// Ends the round (or a probe that met the limit) when its answers say so.
    fn judge_round(&mut self, now: Instant) {
        let (x, n) = (self.limited, self.answers);
        let p = self.background();
        let size = self.round_size();
        let target = match self.phase {
            // Twice the cruise round it is compared with (within reason): a short one says
            // little on its own.
            Phase::StepDown { n: cn, .. } => size.max((2 * cn).min(MAX_ROUND as u32)),
            _ => size * self.span,
        };
        if let Phase::Probe { from } = self.phase
            && self.answers_after >= self.probe_measure()
            // Judged on the answers after its first 429 (which started the count): before
            // it, a token bucket's burst may have hidden the limit, and over a long probe
            // round a background's 429s add up to what a short round would call excess.
            && excess(
                self.limited_after.saturating_sub(1),
                self.answers_after.saturating_sub(1),
                p,
            )
        {
            self.probe_failed(from, now);
            return;
        }
        // A probe ends clean only once an answer to a send made `PROBE_MIN_TIME` into it is
        // back (at 200 ms of latency, 0.7 s after its first send saw only the answers to its
        // first 0.5 s, before a full bucket had drained), and, if it met a 429, once the
        // answers after that one could show the limit: a probe 25% over a 30/s bucket ended
        // clean at its 16th answer with 4 429s, and the next went 80% over.
        let probing_long_enough = match self.phase {
            Phase::Probe { .. } => {
                self.sent
                    .first
                    .zip(self.answered_sent)
                    .is_some_and(|(first, last)| {
                        last.saturating_duration_since(first) >= PROBE_MIN_TIME
                    })
                    && (self.after_from.is_none()
                        || self.answers_after
                            >= self.probe_measure() * self.limited_after.clamp(1, SECOND_LOOK))
            }
            _ => true,
        };
        // While 429s of the round are held, only a cruise round's excess may end it (the
        // held ones would only add to it): any other end calls the round clean, or its 429s
        // noise, without them.
        let judged = self.held == 0 || (self.phase == Phase::Cruise && excess(x, n, p));
        if n >= target && probing_long_enough && judged {
            self.end_round(x, n, now);
        }
    }

    /// Answers after a probe's first 429 before it may fail (see [`PROBE_REFINE_MEASURE`]).
    fn probe_measure(&self) -> u32 {
        if self.refining() {
            PROBE_REFINE_MEASURE
        } else {
            PROBE_MEASURE
        }
    }

    /// Whether the probe under way is the first since a limit was newly estimated (or since a
    /// clean probe round), and so may correct it upward.
    fn refining(&self) -> bool {
        self.probe_failures == 0
    }

    fn round_size(&self) -> u32 {
        (MIN_ROUND + 400.0 * self.background()).min(MAX_ROUND) as u32
    }

    fn probe_interval(&self) -> Duration {
        let k = self.probe_failures.saturating_sub(1).min(4);
        PROBE_EVERY * (1u32 << k).min(PROBE_BACKOFF_MAX)
    }

    /// The rate the sends behind the round's answers actually left at (the concurrency cap
    /// and the retries' backoff may hold them below the pacing rate), never above the pacing
    /// rate.
    fn send_rate(&self) -> f64 {
        if self.settling_round {
            self.sent_settling.rate(self.settling_rate())
        } else {
            self.sent.rate(self.rate)
        }
    }

    /// What the server accepted, net of background 429s: `r·(1−f)/(1−p̂)`, counting `bonus`
    /// served answers more than seen.
    fn accepted_rate(&self, x: u32, n: u32, bonus: f64) -> f64 {
        let n = n.max(1);
        let served = (f64::from(n - x.min(n)) + bonus).min(f64::from(n));
        self.send_rate() * served / f64::from(n) / (1.0 - self.background())
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

    /// Counts a round that sets the limit (a gross cut, a failed probe). `rounds` is read only
    /// by [`Controller::learned`] while no limit is known, so this count never shows; it is
    /// kept so that `rounds` means what it says.
    fn count_round_setting_limit(&mut self) {
        self.rounds += 1;
    }

    /// The step-down rate's other bound: 0.9 of the rate now.
    fn step_down_cap(&self) -> f64 {
        self.rate * STEP_DOWN
    }

    /// A round at this rate to compare the cruise round's `x` 429s in `n` answers with: 0.9 of
    /// the rate the server accepted, or of the rate, whichever is lower.
    fn step_down(&mut self, x: u32, n: u32, now: Instant) {
        let accepted = self.accepted_rate(x, n, 0.0);
        self.phase = Phase::StepDown {
            restore: self.rate,
            x,
            n,
            accepted,
        };
        let down = (accepted * PACING_MARGIN * STEP_DOWN).min(self.step_down_cap());
        self.cut_to(down, now);
    }

    fn end_round(&mut self, x: u32, n: u32, now: Instant) {
        self.rounds += 1;
        match self.phase {
            Phase::Cruise => {
                if excess(x, n, self.background()) && self.rate > self.floor {
                    self.step_down(x, n, now);
                } else if x > 0 && self.span < MAX_SPAN {
                    // A few 429s, not yet significant: a rate just over a limit shows as a
                    // share like background noise's. Keep counting (two, then four rounds'
                    // worth) before calling them background.
                    self.span *= 2;
                    self.maybe_probe(now);
                } else if x >= 2
                    && f64::from(x) > SUSPECT_SHARE * self.background() * f64::from(n)
                    && self.rate > self.floor
                {
                    // Not significant, but well over the background's share: the step-down
                    // tells a limit just under the rate from noise (see `SUSPECT_SHARE`).
                    self.step_down(x, n, now);
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
                // Step-downs from the same rate add up: a rate a few percent over a limit
                // shows a share of 429s that one pair of rounds cannot tell from noise.
                if self.steps.rate != restore {
                    self.steps = Steps {
                        rate: restore,
                        ..Steps::default()
                    };
                }
                let st = &mut self.steps;
                (st.cx, st.cn, st.x, st.n) = (st.cx + cx, st.cn + cn, st.x + x, st.n + n);
                // The share fell by half, and by more than chance would spread the same 429s
                // over the two kinds of rounds.
                let fell = f64::from(st.x) / f64::from(st.n)
                    <= 0.5 * f64::from(st.cx) / f64::from(st.cn)
                    && below(concentrated(st.cx, st.cn, st.x, st.n), STEP_SIGNIFICANCE);
                self.phase = Phase::Cruise;
                if fell {
                    // The 429s depended on the rate: a limit.
                    self.limit = Some(accepted);
                    // Measured on one round: probe soon, as after an overload.
                    self.probe_failures = 0;
                    self.probe_gain = PROBE_GAIN;
                    self.next_probe = Some(now + PROBE_AFTER_LIMIT);
                    self.set_rate((accepted * PACING_MARGIN).min(restore));
                } else {
                    // Background noise: it belongs to the estimate, and the rate comes back.
                    self.add_background(cx, cn);
                    self.set_rate(restore);
                }
            }
            Phase::Probe { from: before } => {
                // A clean round above the last clean rate: the limit (if any) is higher.
                self.add_background(x, n);
                self.probe_failures = 0;
                if self.rate >= self.ceiling {
                    self.limit = None;
                    self.next_probe = None;
                    self.phase = Phase::Cruise;
                    self.reset_round();
                } else {
                    let clean = self.rate.max(before);
                    self.limit = self.limit.map(|l| l.max(clean));
                    // The gain grows ×1.25 per clean round (to 2×), from the clean rate.
                    self.probe_gain = (self.probe_gain * PROBE_GAIN).min(PROBE_GAIN_MAX);
                    self.phase = Phase::Probe { from: clean };
                    self.set_rate(clean * self.probe_gain);
                }
            }
        }
    }

    /// A probe met the limit: back to the last clean rate, or near the rate the server
    /// accepted once the probe's 429s began (before that, a token bucket's burst inflates it):
    /// at most 5% lower, and for the first probe after a limit newly estimated, at most 5%
    /// higher.
    fn probe_failed(&mut self, from: f64, now: Instant) {
        self.count_round_setting_limit();
        // The latest answers from the probe's first 429 on, that one left out (it started the
        // count): at most `PROBE_REFINE_MEASURE`, so that a count started by a background 429
        // while the bucket still held its burst reaches back less far into it.
        let n = self
            .answers_after
            .saturating_sub(1)
            .min(PROBE_REFINE_MEASURE);
        let x = (self.recent & ((1u64 << n) - 1)).count_ones();
        // Back to the last clean rate (already discounted for a burst, see `end_round`),
        // unless what the server accepted says the limit is elsewhere: a share of 429s
        // measured on a dozen or two answers is coarse, so never more than `PROBE_RETURN_MIN`
        // lower (a cruise round over the limit finds the rest) and only for a probe that
        // refines a new estimate, never more than `PROBE_RISE_MAX` higher.
        let accepted = self.accepted_rate(x, n, 0.0);
        let upper = if self.refining() {
            from * PROBE_RISE_MAX
        } else {
            from
        };
        let rate = (accepted * PACING_MARGIN).clamp(from * PROBE_RETURN_MIN, upper);
        self.limit = Some(rate / PACING_MARGIN);
        self.limit_seen = true;
        self.probe_failures += 1;
        self.probe_gain = PROBE_GAIN;
        self.next_probe = Some(now + self.probe_interval());
        self.phase = Phase::Cruise;
        self.cut_to(rate, now);
    }

    fn maybe_probe(&mut self, now: Instant) {
        if self.rate < self.ceiling && self.next_probe.is_some_and(|t| now >= t) {
            let from = self.rate;
            self.phase = Phase::Probe { from };
            self.set_rate(from * self.probe_gain);
        }
    }

    /// A lower rate after 429s: a new epoch that settles first (see [`SETTLE`]).
    fn cut_to(&mut self, rate: f64, now: Instant) {
        self.set_rate(rate);
        self.settle_until = Some(now + SETTLE);
        self.settling_round = true;
    }

    /// A new rate: a new epoch, whose answers start a new round.
    fn set_rate(&mut self, rate: f64) {
        self.settle_until = None;
        self.settling_round = false;
        self.rate = rate.clamp(self.floor, self.ceiling);
        self.epoch += 1;
        self.sent = Sends::default();
        self.sent_settling = Sends::default();
        self.held = 0;
        self.answered_sent = None;
        self.reset_round();
    }

    fn reset_round(&mut self) {
        self.span = 1;
        self.answers = 0;
        self.limited = 0;
        self.answers_after = 0;
        self.limited_after = 0;
        self.after_from = None;
        self.recent = 0;
    }
}

#[cfg(test)]
mod tests;
