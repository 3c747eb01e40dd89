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
//! server had admitted. The client reads an answer a little after the server let its slot go
//! (the answer travels; a busy machine reads it late), so its count at a send is at least the
//! server's: a 429 found at most as many at the server as the client counted, and an admitted
//! send found at least the ones that left well before it and whose answers came well after it
//! left (see [`Window::read_allowance`]). Sends that leave close together reach the server in
//! any order (a group's sends wait for one fsync of their intents, new connections race): a
//! 429 also counts the sends that left just after it (see [`Window::race_allowance`]); without
//! that, the first round of a short run showed 429s at "0 in flight". A server that admits at most `L` at once refuses the sends that
//! found `L` or more (most of those the client counted at `L`: some find a slot an unread
//! answer freed) and admits the rest (other clients aside); a rate limit refuses at any count.
//! So, over the answers since the window last changed, the limit is the least `k` where the
//! share of 429s steps up: the sends that found `k - 1` mostly admitted, at least half of
//! those that found `k` or more refused, few of those admitted with `k` surely at the server,
//! the 429s under `k` no more than the background share explains (the rate controller's
//! estimate, and the same test), and at least [`MIN_EVIDENCE`] 429s at `k` or more, sent over
//! more than one round (a token bucket's burst, spent at the start, refuses one round's sends
//! as if it were a limit in flight). A limit so found is on trial for a couple of dozen
//! answers: 429s under it beyond a noise allowance refute it (a rate limit can look like one,
//! its rate times the latency being what it admits in flight), and so do, for as long as it
//! stands, many 429s of the sends that found one under it ([`Window::edge`]: a token bucket
//! whose rate times the latency is about the limit refuses there, an in-flight limit does
//! not). Before any limit is known, a 429 that found more at the server than any admitted send
//! surely did is held (at most [`HOLD_MAX`] answers) rather than handed to the rate controller,
//! and if the 429s stopped since, their least count goes on trial ([`Window::quiet`]): a run
//! of three round trips shows no step with enough sends at each count, and the rate
//! controller, handed those 429s, learned a rate of what the limit in flight admits. Those
//! 429s are then no
//! evidence about the rate, and the rate controller never sees them; every other 429 goes to
//! it as before. A 429 is held back from the rate controller only while that question is
//! open (a few answers).
//!
//! The window: a run with no learned limit starts at 8 in flight (or its `--concurrency`, if
//! lower) and adds one per answer served (doubling per round trip, as TCP's slow start) up to
//! `--concurrency`; a 429 stops the growth until it is judged (one no in-flight limit explains
//! lets it go on). Once a limit is found the window is that
//! limit, and a probe now and then lets one send go one above it (0.5 s after a limit newly
//! found, 2.5 s after a probe that met it, doubling per probe that met it, at most 16×): if
//! the server admitted it with the limit's worth surely at the server, three times in a row, the
//! limit is higher (and the next probe comes soon). A limit
//! learned on an earlier run is where the next run starts, probed as if three probes had met
//! it. The slot of a send is free when its answer arrives: the durability of that answer does
//! not need the server.
//!
//! While the question is open (429s held, or a limit on trial) the sends leave apart, at the
//! window's worth per mean answer time and not in groups ([`Window::pace`]): a send group's
//! last sends meet a token bucket's empty burst at whatever count, so the pacer's groups make
//! a rate limit look like one in flight; spaced, a bucket refuses none of them and a limit in
//! flight as many as before. A limit found is said and handed on only once its trial saw the
//! sends that reached it mostly refused ([`Window::found`]).
//!
//! A pure state machine, as the rate controller: every method takes the time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::controller::{Answer, Controller, Learned, Ticket};
use super::pacer::Grouping;
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
/// The least and the most of [`Window::read_allowance`].
const READ_ALLOWANCE_MIN: Duration = Duration::from_millis(1);
const READ_ALLOWANCE_MAX: Duration = Duration::from_millis(10);
/// Probes admitted with the limit's worth of ours at the server, in a row, that raise the
/// limit: one may have found a slot an answer not yet read had freed, beyond the allowance
/// (a loaded machine reads some answers tens of milliseconds late).
const RAISE_AFTER: u32 = 3;
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

/// What a send found at the server: the requests of this run the client counted in flight
/// when it left (less those the server refused), and of those, the ones whose answers were
/// read well after it left (see [`Window::read_allowance`]): surely at the server beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    counted: u32,
    sure: u32,
}

/// A limit newly found, on trial: over the next [`TRIAL_ANSWERS`] answers, with the window one
/// above it, a server that refuses beyond `limit` in flight refuses every send that found
/// `limit` (but those that found a slot an unread answer freed) and nothing under it (the
/// client counts at least what the server holds). A rate limit that happened to show as one
/// (a token bucket's burst at the start; its rate times the latency, which is what it admits
/// in flight) admits some at `limit` with that many surely at the server, or goes on refusing
/// under it. Two such admissions, or 429s under it beyond the background's share, refute
/// the limit: the window goes back to `before`, and the 429s are the rate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trial {
    limit: u32,
    before: Option<u32>,
    x: u32,
    n: u32,
    over: u32,
    /// The sends that found the limit or more (the client's count), and the 429s of those:
    /// a limit in flight refuses most of them.
    at: u32,
    at_refused: u32,
}

/// The least background share a trial allows for in the 429s under the limit: other
/// clients' 429s may fall there.
const TRIAL_NOISE: f64 = 0.05;
/// The least background share the 429s at one under a limit are judged against (see
/// [`Window::edge`]): twice a trial's, since they are tested after every answer for as long as
/// the limit stands.
const EDGE_NOISE: f64 = 0.1;
/// Answers a limit newly found is on trial for.
const TRIAL_ANSWERS: u32 = 24;
/// How far over a rate limit found beside it the capacity of a limit in flight may be and
/// still be said to hold the run (see [`Control::binding_limit`]).
const BINDS_MARGIN: f64 = 1.1;

/// A send in flight.
#[derive(Debug, Clone)]
struct Out {
    seq: u64,
    /// When it left.
    sent: Instant,
    /// The sends in flight when it left.
    deps: Vec<u64>,
    /// The sends that left just after it (within [`Window::race_allowance`]): they may have
    /// reached the server first.
    later: Vec<u64>,
}

/// One answer waiting for the fates of the sends that were in flight when it left (and of
/// those that may have overtaken it).
#[derive(Debug, Clone)]
struct Pending<T> {
    seq: u64,
    /// When it left.
    sent: Instant,
    refused: bool,
    deps: Vec<u64>,
    later: Vec<u64>,
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
    /// Sends in flight.
    out: Vec<Out>,
    /// When each send left, what became of it, and when its answer was read.
    fates: VecDeque<(Instant, Option<(Fate, Instant)>)>,
    fates_base: u64,
    pending: Vec<Pending<T>>,
    /// What each answer since the window last changed found at the server, and whether it
    /// was a 429.
    evidence: VecDeque<(Seen, bool, Instant)>,
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
    /// The shortest time from a send to its answer seen (see [`Window::read_allowance`]).
    min_rtt: Option<Duration>,
    /// A limit the evidence newly pointed to, on trial (see [`Trial`]).
    trial: Option<Trial>,
    /// The highest limit a trial refuted: no candidate at or under it is tried again.
    refuted: u32,
    /// Probes admitted with the limit's worth of ours at the server since the last change of
    /// the limit (see [`RAISE_AFTER`]).
    raise_votes: u32,
    /// 429s and answers of the sends that found one under the limit (see [`Window::edge`]),
    /// since the limit was set.
    edge: (u32, u32),
    /// When the limit was last set: only sends made since count at its edge.
    limit_since: Option<Instant>,
    /// Answers judged since the last 429 (see [`Window::quiet`]).
    since_429: u32,
    /// When the latest send left (a probe leaves apart from it, see [`Window::probe_due`]).
    last_sent: Option<Instant>,
    /// The mean time from a send to its answer (a moving average, as TCP's smoothed RTT).
    srtt: Option<Duration>,
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
            min_rtt: None,
            trial: None,
            refuted: 0,
            raise_votes: 0,
            edge: (0, 0),
            limit_since: learned.map(|_| now),
            since_429: 0,
            last_sent: None,
            srtt: None,
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

    /// The mean time from a send to its answer, once one came back.
    pub fn mean_rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.out.len()).unwrap_or(u32::MAX)
    }

    /// How many may be in flight now (one more than the limit for a probe that is due).
    pub fn allowed(&self, now: Instant) -> u32 {
        let probing = self.probe_due().is_some_and(|t| now >= t);
        (self.window + u32::from(probing)).min(self.cap)
    }

    /// Whether a send may go now.
    pub fn has_room(&self, now: Instant) -> bool {
        self.in_flight() < self.allowed(now)
    }

    /// When a probe is due (a waiting sender wakes then).
    ///
    /// A probe leaves at least [`Window::read_allowance`] after the latest send: it is judged
    /// on the sends surely at the server beside it, and one that left just before it (a send
    /// group, the answer that freed a slot and the probe in one wake-up) may reach the server
    /// after it, so is not. Sent in the same group as the send before it, most probes that
    /// the server admitted raised nothing: against a 30/s bucket at 200 ms (6 in flight), a
    /// run kept a limit of 5 in flight it had read from the bucket's first 429s for 18 s,
    /// its probes admitted 8 times, once with 5 surely at the server.
    pub fn probe_due(&self) -> Option<Instant> {
        let apart = self.last_sent.map(|l| l + self.read_allowance());
        self.probe_at
            .filter(|_| self.limit.is_some() && self.probe_seq.is_none())
            .map(|p| apart.map_or(p, |a| p.max(a)))
    }

    /// A send leaves: its number, for its answer.
    pub fn on_send(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let probe_ready = self.probe_due().is_some_and(|t| now >= t);
        self.last_sent = Some(now);
        // Only an adaptive window reads the sends a 429 found in flight; a fixed one (told its
        // limit) keeps none, so a send allocates nothing for it.
        let deps: Vec<u64> = if self.adaptive {
            self.out.iter().map(|o| o.seq).collect()
        } else {
            Vec::new()
        };
        if self.adaptive {
            // The sends that left just before this one may reach the server after it (sends
            // of one group share a journal fsync and go out together; connections race): a
            // 429 among them counts this one too.
            let race = self.race_allowance();
            let recent = |sent: Instant| now.saturating_duration_since(sent) <= race;
            for o in self.out.iter_mut().filter(|o| recent(o.sent)) {
                o.later.push(seq);
            }
            for p in self.pending.iter_mut().filter(|p| recent(p.sent)) {
                p.later.push(seq);
            }
        }
        if let Some(limit) = self.limit
            && self.out.len() >= limit as usize
            && probe_ready
        {
            self.probe_seq = Some(seq);
        }
        self.out.push(Out {
            seq,
            sent: now,
            deps,
            later: Vec::new(),
        });
        self.fates.push_back((now, None));
        while self.fates.len() > FATES_KEPT {
            self.fates.pop_front();
            self.fates_base += 1;
        }
        seq
    }

    /// What became of send `seq`, when its answer was read and when it left (none for one
    /// forgotten long ago: it was answered, and counted as admitted).
    fn fate(&self, seq: u64) -> Option<(Fate, Option<Instant>, Option<Instant>)> {
        match seq.checked_sub(self.fates_base) {
            None => Some((Fate::Admitted, None, None)),
            Some(i) => {
                let (sent, fate) = self.fates.get(i as usize).copied()?;
                fate.map(|(f, at)| (f, Some(at), Some(sent)))
            }
        }
    }

    fn set_fate(&mut self, seq: u64, fate: Fate, at: Instant) {
        if let Some(i) = seq.checked_sub(self.fates_base)
            && let Some(slot) = self.fates.get_mut(i as usize)
        {
            slot.1 = Some((fate, at));
        }
    }

    /// Takes send `seq` out of flight, if it was in flight.
    fn land(&mut self, seq: u64) -> Option<Out> {
        let i = self.out.iter().position(|o| o.seq == seq)?;
        Some(self.out.swap_remove(i))
    }

    /// How much later than a send another may leave and still reach the server first: twice
    /// [`Window::read_allowance`]. The sends of one group wait for one fsync of their intents
    /// and then go out together, and new connections race, so the order in which the server
    /// takes them is not the order in which they left.
    fn race_allowance(&self) -> Duration {
        self.read_allowance() * 2
    }

    /// How much later than a send an answer to an earlier send must be read to count as
    /// having been at the server beside it. The client reads an answer a little after the
    /// server has let its slot go (the answer travels, and a busy machine schedules the read
    /// late), so a send that left while such an answer waited unread found one fewer at the
    /// server than the client counted; admitted, it would read as a limit one higher than the
    /// server's. A twentieth of the shortest answer time, at least 1 ms and at most 10 ms:
    /// half the gap between the answers of a full window of 10, far over a read's usual
    /// delay.
    fn read_allowance(&self) -> Duration {
        let rtt = self.min_rtt.unwrap_or(Duration::from_millis(100));
        (rtt / 20).clamp(READ_ALLOWANCE_MIN, READ_ALLOWANCE_MAX)
    }

    /// A send that never went (its intent could not be journaled): its slot is free.
    pub fn on_unsent(&mut self, seq: u64) {
        if let Some(o) = self.land(seq) {
            self.set_fate(seq, Fate::Unsent, o.sent);
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
        let Some(Out {
            sent, deps, later, ..
        }) = self.land(seq)
        else {
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
        self.set_fate(seq, fate, now);
        if answer != Answer::Lost {
            let rtt = now.saturating_duration_since(sent);
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.srtt = Some(self.srtt.map_or(rtt, |m| (m * 7 + rtt) / 8));
        }
        match answer {
            Answer::Served if self.growing => {
                self.window = (self.window + 1).min(self.cap);
                if self.window >= self.cap {
                    self.growing = false;
                    self.reached_cap = true;
                }
            }
            // The first 429 ends the growth: the window stays where the sends are, and not
            // under where it started (the first answers of a run, a 429 among them, find half
            // the first round still out: a random 429 there held the window at 5 for seconds).
            Answer::Limited if self.growing => {
                self.growing = false;
                self.window = (self.in_flight().max(1) + 1).max(INITIAL_WINDOW.min(self.cap));
            }
            _ => {}
        }
        if self.limit.is_none() && !self.growing && self.window >= self.cap {
            self.reached_cap = true;
        }
        if answer != Answer::Lost {
            self.pending.push(Pending {
                seq,
                sent,
                refused: answer == Answer::Limited,
                deps,
                later,
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
            let ready = self.pending.iter().position(|p| {
                p.deps
                    .iter()
                    .chain(&p.later)
                    .all(|d| self.fate(*d).is_some())
            });
            let Some(i) = ready else { break };
            let p = self.pending.swap_remove(i);
            // A 429 found at most as many at the server as the client counted (an answer read
            // late had left it already), and the sends that left just after it may have
            // overtaken it: all of them. An admitted send found at least the ones that left
            // well before it and whose answers came well after it left (see
            // `read_allowance`).
            let allowance = self.read_allowance();
            let late = p.sent + allowance;
            let early = p.sent.checked_sub(allowance);
            let (mut counted, mut sure) = (0u32, 0u32);
            for d in &p.deps {
                match self.fate(*d) {
                    Some((Fate::Admitted, at, sent)) => {
                        counted += 1;
                        let before = match (sent, early) {
                            (Some(sent), Some(early)) => sent <= early,
                            _ => true,
                        };
                        sure += u32::from(before && at.is_some_and(|at| at > late));
                    }
                    Some((Fate::Unknown, _, _)) => counted += 1,
                    _ => {}
                }
            }
            if p.refused {
                for d in &p.later {
                    if let Some((Fate::Admitted | Fate::Unknown, _, _)) = self.fate(*d) {
                        counted += 1;
                    }
                }
            }
            let seen = Seen { counted, sure };
            self.judge(
                p.seq, p.sent, seen, p.refused, p.payload, background, now, verdicts,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        seq: u64,
        sent: Instant,
        seen: Seen,
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
        self.since_429 = if refused {
            0
        } else {
            self.since_429.saturating_add(1)
        };
        if self.edge(seen, refused, sent, background, now) {
            verdicts.push((payload, Verdict::Rate));
            return;
        }
        // An admitted send is judged on the ones surely at the server beside it, a 429 on all
        // the client counted.
        let a = if refused { seen.counted } else { seen.sure };
        if let Some(t) = &mut self.trial
            && !probe
        {
            t.n += 1;
            let under = refused && seen.counted < t.limit;
            t.x += u32::from(under);
            // A send admitted with the limit's worth surely at the server (the window lets one
            // more go while on trial): the limit is not there.
            t.over += u32::from(!refused && seen.sure >= t.limit);
            if seen.counted >= t.limit {
                t.at += 1;
                t.at_refused += u32::from(refused);
            }
            let t = *t;
            // After four trials' worth of answers, too few sends reached it: it holds nothing,
            // and the 429s that pointed to it were not theirs (random 429s of a group's first
            // send, counted with the group's sends that may have overtaken it). (Those that
            // reached it and were admitted are no evidence: an answer read late had let a
            // slot go; those admitted with the limit surely at the server are `over`.)
            let unreached = t.n >= 4 * TRIAL_ANSWERS && t.at < MIN_EVIDENCE;
            if t.over >= 2
                || unreached
                || (t.x >= 2 && excess(t.x, t.n, background.max(TRIAL_NOISE)))
            {
                // Refused under the limit on trial: not an in-flight limit.
                tracing::debug!(
                    limit = t.limit,
                    x = t.x,
                    n = t.n,
                    over = t.over,
                    "in-flight limit refuted on trial"
                );
                self.refute(t.limit, t.before, t.over >= 2, now);
            } else if t.n >= TRIAL_ANSWERS && t.at >= MIN_EVIDENCE {
                self.trial = None;
                self.window = t.limit;
            }
            if under {
                verdicts.push((payload, Verdict::Rate));
                return;
            }
        }
        if !refused {
            if let Some(limit) = self.limit
                && a >= limit
            {
                // Admitted with `a` of ours at the server: the limit is higher, once seen
                // again.
                self.raise_votes += 1;
                if self.raise_votes >= RAISE_AFTER {
                    self.probe_failures = 0;
                    self.set_limit(a + 1, now, PROBE_AFTER_LIMIT);
                } else {
                    self.probe_at = Some(now + PROBE_AFTER_LIMIT);
                }
            } else if probe {
                // The probe went out with fewer at the server than the limit: try again.
                self.probe_at = Some(now + PROBE_AFTER_LIMIT);
            }
            self.remember(seen, false, sent);
        } else if let Some(limit) = self.limit
            && a >= limit
        {
            verdicts.push((payload, Verdict::InFlight));
            if probe {
                self.raise_votes = 0;
                self.probe_failures = (self.probe_failures + 1).min(8);
                self.probe_at = Some(now + self.probe_interval());
            }
            return;
        } else {
            if probe {
                self.probe_at = Some(now + PROBE_AFTER_LIMIT);
            }
            self.remember(seen, true, sent);
            self.held.push((a, payload, 0));
        }
        self.evaluate(background, now, verdicts);
    }

    /// The limit is not one: the window goes back to `before` (or to no limit), and no
    /// candidate at or under `limit` is tried again. `higher`: sends were admitted with the
    /// limit's worth surely at the server, so a limit in flight, if any, is above it.
    fn refute(&mut self, limit: u32, before: Option<u32>, higher: bool, now: Instant) {
        self.trial = None;
        self.refuted = self.refuted.max(limit);
        match before {
            Some(l) => self.set_limit(l, now, self.probe_interval()),
            None => {
                self.limit = None;
                self.limit_evidence = false;
                self.evidence.clear();
                self.edge = (0, 0);
                if higher {
                    // Grows again from one over it (doubling per round trip, as at the start)
                    // rather than going to the cap at once: a limit a little higher than the
                    // one refuted (a first round's few sends at each count point to a step
                    // under it) then meets a round of sends a few over it, not a cap's worth.
                    self.window = (limit + 1).min(self.cap);
                    self.growing = self.window < self.cap;
                } else {
                    // The 429s were the rate's: the rate controller paces from here.
                    self.window = self.cap;
                }
            }
        }
    }

    /// The sends that found one under the limit, the window full but for them: a server that
    /// refuses beyond the limit in flight admits them (the client counts at least what the
    /// server holds, and the sends that may have overtaken one), but for other clients' 429s.
    /// A token bucket whose rate times the latency is about the limit refuses many of them
    /// (what it admits depends on when, not on how many are in flight). Excess 429s there
    /// (against the background, at least [`EDGE_NOISE`]) refute the limit, on trial or not:
    /// its 429s were the rate's, and so are this one and those that follow. Returns whether
    /// it refuted the limit.
    fn edge(
        &mut self,
        seen: Seen,
        refused: bool,
        sent: Instant,
        background: f64,
        now: Instant,
    ) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        if seen.counted + 1 != limit || self.limit_since.is_none_or(|t| sent < t) {
            return false;
        }
        self.edge.0 += u32::from(refused);
        self.edge.1 += 1;
        let (x, n) = self.edge;
        if x < MIN_EVIDENCE || !excess(x, n, background.max(EDGE_NOISE)) {
            return false;
        }
        tracing::debug!(limit, x, n, "in-flight limit refuted: 429s under it");
        let before = self.trial.and_then(|t| t.before);
        self.refute(limit, before, false, now);
        refused
    }

    fn remember(&mut self, seen: Seen, refused: bool, sent: Instant) {
        self.evidence.push_back((seen, refused, sent));
        while self.evidence.len() > EVIDENCE_MEMORY {
            self.evidence.pop_front();
        }
    }

    /// Asks the in-flight question of the evidence, and gives the held 429s their verdicts.
    fn evaluate(&mut self, background: f64, now: Instant, verdicts: &mut Vec<(T, Verdict)>) {
        if self.held.is_empty() {
            return;
        }
        if let Some(k) = self.quiet() {
            tracing::debug!(k, evidence = %self.evidence_summary(), "in-flight limit on trial: the 429s stopped");
            self.establish(k, now, verdicts);
            return;
        }
        let c = self.candidate(background);
        let Some((k, above)) = c else {
            // No step in the evidence yet. Before any limit is known (or refuted), a 429 that
            // found more at the server than any admitted send surely did is what a limit in
            // flight at or under its count would answer: the first rounds of a short run (a few sends
            // at each count, the sends of one group reaching the server in any order) show no
            // step yet, and a rate controller handed those 429s cuts the rate to what the
            // limit in flight admits, learning a rate that is not there. It waits for more
            // answers (at most `HOLD_MAX`). Any other 429 is the rate controller's.
            let top = if self.limit.is_none() && self.refuted == 0 {
                self.evidence
                    .iter()
                    .filter(|(_, refused, _)| !refused)
                    .map(|(s, _, _)| s.sure)
                    .max()
                    .unwrap_or(0)
            } else {
                u32::MAX
            };
            // Nor one whose count the sends under it refute (see [`Window::refused_under`]):
            // held, a token bucket's 429s reached the rate controller late, and its first cut
            // measured a rate three times the bucket's.
            let mut kept = Vec::new();
            for (a, payload, since) in std::mem::take(&mut self.held) {
                if a > top && since < HOLD_MAX && !self.refused_under(a) {
                    kept.push((a, payload, since));
                } else {
                    verdicts.push((payload, Verdict::Rate));
                }
            }
            tracing::debug!(
                kept = kept.len(),
                evidence = %self.evidence_summary(),
                "no in-flight limit in the evidence yet"
            );
            self.held = kept;
            if self.held.is_empty() {
                self.growth_unexplained();
            }
            return;
        };
        if above >= MIN_EVIDENCE && self.limit.is_none_or(|l| k < l) && !self.refused_under(k) {
            tracing::debug!(k, above, evidence = %self.evidence_summary(), "in-flight limit on trial");
            self.establish(k, now, verdicts);
            return;
        }
        // Below the candidate, or held too long: background, or a rate limit.
        let mut kept = Vec::new();
        for (a, payload, since) in std::mem::take(&mut self.held) {
            if a < k || since >= HOLD_MAX {
                tracing::debug!(a, k, above, since, "held 429 to the rate");
                verdicts.push((payload, Verdict::Rate));
            } else {
                kept.push((a, payload, since));
            }
        }
        self.held = kept;
        if self.held.is_empty() {
            self.growth_unexplained();
        }
    }

    /// A limit newly found at `k`: on trial (see [`Trial`]), the window one above it; the held
    /// 429s at or above it are its, the others the rate's.
    fn establish(&mut self, k: u32, now: Instant, verdicts: &mut Vec<(T, Verdict)>) {
        let before = self.limit;
        self.probe_failures = 0;
        self.limit_evidence = true;
        self.set_limit(k, now, PROBE_AFTER_LIMIT);
        self.trial = Some(Trial {
            limit: k,
            before,
            x: 0,
            n: 0,
            over: 0,
            at: 0,
            at_refused: 0,
        });
        self.window = (k + 1).min(self.cap);
        for (a, payload, _) in std::mem::take(&mut self.held) {
            let verdict = if a >= k {
                Verdict::InFlight
            } else {
                Verdict::Rate
            };
            verdicts.push((payload, verdict));
        }
    }

    /// Before any limit is known, 429s held for [`HOLD_MAX`] answers, each at a count above
    /// every admitted send's sure count, and none since: the window stopped where they came
    /// (the growth ends at a 429) and has met no limit in all those answers. A token bucket's
    /// burst would have gone on refusing what a rate far above it sends; a rate that happens
    /// to admit that many in flight shows on trial, one above. So the least count of those
    /// 429s goes on trial as the limit, rather than the 429s to the rate controller long after
    /// the sends they answer (a short run may end before a second round of 429s, and the
    /// steps of [`Window::candidate`] want more sends at each count than a round has). Not
    /// when the sends that found fewer than that at the server were refused beyond the
    /// background too (against at least [`EDGE_NOISE`]): a limit in flight admits those, a
    /// token bucket does not (paced sends on a fast server seldom overlap, so a bucket's 429s
    /// found one or two in flight, above every admitted send's sure count of none).
    fn quiet(&self) -> Option<u32> {
        if self.limit.is_some()
            || self.refuted > 0
            || self.since_429 < HOLD_MAX
            || !self.held.iter().any(|h| h.2 >= HOLD_MAX)
        {
            return None;
        }
        let k = self.held.iter().map(|h| h.0).min()?;
        let top = self
            .evidence
            .iter()
            .filter(|(_, refused, _)| !refused)
            .map(|(s, _, _)| s.sure)
            .max()
            .unwrap_or(0);
        let above = self
            .evidence
            .iter()
            .filter(|(s, refused, _)| *refused && s.counted >= k)
            .count();
        (k > top && above >= MIN_EVIDENCE as usize && !self.refused_under(k)).then_some(k)
    }

    /// Whether the sends that found fewer than `k` of ours at the server were refused beyond
    /// noise: a limit of `k` in flight admits those, a token bucket does not. They are judged
    /// against [`EDGE_NOISE`], not the rate controller's background share: that share takes in
    /// a token bucket's 429s when the rate swings (one run estimated 0.25), and against it a
    /// bucket's 429s under the count looked like noise (11 of 44 at none in flight: "1 in
    /// flight" was learned from a 40/s bucket). Random 429s above that share leave the limit
    /// to the rate controller, which copes with them.
    fn refused_under(&self, k: u32) -> bool {
        let (x, n) = self
            .evidence
            .iter()
            .filter(|(s, _, _)| s.counted < k)
            .fold((0u32, 0u32), |(x, n), (_, refused, _)| {
                (x + u32::from(*refused), n + 1)
            });
        excess(x, n, EDGE_NOISE)
    }

    /// The growth stopped at a 429 that no in-flight limit explains (none is known): it goes
    /// on, and the rate decides on that 429. (Going to the cap at once sends a round of
    /// requests far above a limit it has not reached yet.)
    fn growth_unexplained(&mut self) {
        if self.limit.is_none() && !self.growing && self.window < self.cap {
            self.growing = true;
        }
    }

    /// The evidence in short, for the debug log: per count, `counted:429s/answers(sure admitted)`.
    fn evidence_summary(&self) -> String {
        let mut by: std::collections::BTreeMap<u32, (u32, u32, u32)> = Default::default();
        for (s, refused, _) in &self.evidence {
            let e = by.entry(s.counted).or_default();
            e.0 += u32::from(*refused);
            e.1 += 1;
            e.2 += u32::from(!*refused && s.sure >= s.counted);
        }
        by.iter()
            .map(|(k, (x, n, s))| format!("{k}:{x}/{n}({s})"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The in-flight limit the evidence points to, if any, and the 429s at or above it that
    /// establish it (none while they all came in one round): the least `k` where the 429s
    /// step up, as the client counted its requests at the server:
    /// - the sends that found `k - 1` were mostly admitted (at least two, at most a third
    ///   429s), and the 429s of all that found fewer are no more than the background explains;
    /// - of the sends that found `k` or more, at least half were 429s (an answer read late
    ///   lets some through: the slot it held was free, though the client still counted it),
    ///   and those admitted with `k` or more surely at the server beside them are at most a
    ///   quarter as many as the 429s (a read stalled beyond the allowance makes a few).
    ///
    /// A rate limit refuses at any count: its 429s show no such step, or one that does not
    /// last (a token bucket's burst, spent at the start, refuses the sends of one round; see
    /// [`Trial`] for the rest).
    fn candidate(&self, background: f64) -> Option<(u32, u32)> {
        let upper = self.evidence.iter().map(|(s, _, _)| s.counted + 1).max()?;
        let round = self.min_rtt.unwrap_or_default() / 2;
        let from = self.refuted.max(1) + u32::from(self.refuted > 0);
        let steps: Vec<(u32, u32, u32)> = (from..=upper)
            .filter_map(|k| {
                let (mut xb, mut nb, mut xa, mut na, mut x1, mut n1) =
                    (0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
                let (mut first, mut last) = (None::<Instant>, None::<Instant>);
                let mut sa = 0u32;
                for &(s, refused, sent) in &self.evidence {
                    if s.counted < k {
                        nb += 1;
                        xb += u32::from(refused);
                        if s.counted + 1 == k {
                            n1 += 1;
                            x1 += u32::from(refused);
                        }
                    } else {
                        na += 1;
                        xa += u32::from(refused);
                        sa += u32::from(!refused && s.sure >= k);
                        if refused {
                            first = Some(first.map_or(sent, |f| f.min(sent)));
                            last = Some(last.map_or(sent, |l| l.max(sent)));
                        }
                    }
                }
                let persists = first
                    .zip(last)
                    .is_some_and(|(f, l)| l.saturating_duration_since(f) >= round);
                // At `k - 1` an in-flight limit refuses only what the background does; a
                // token bucket whose rate times the latency is about `k` refuses many there.
                let step = n1 >= 2
                    && 3 * x1 <= n1
                    && !(x1 >= MIN_EVIDENCE && excess(x1, n1, background.max(EDGE_NOISE)))
                    && xa >= 1
                    && 2 * xa >= na
                    && 4 * sa <= xa;
                (step && !excess(xb, nb, background)).then_some((
                    k,
                    if persists { xa } else { 0 },
                    x1,
                ))
            })
            .collect();
        // Of the steps that hold the evidence, the highest with no 429 just under it: a
        // step under the limit holds too when few sends found the counts between it and the
        // limit (a run's first rounds: 0-2 sends at each count), and a limit on trial that
        // low may pass (its trial wants admitted sends surely at the limit, which a loaded
        // machine's late reads hide) and cost a tenth of the capacity until probes raise it.
        // Else the least that holds, else the least (its 429s are held).
        let holds = |(_, above, _): &&(u32, u32, u32)| *above >= MIN_EVIDENCE;
        steps
            .iter()
            .filter(holds)
            .rfind(|(_, _, x1)| *x1 == 0)
            .or(steps.iter().find(holds))
            .or(steps.first())
            .map(|(k, above, _)| (*k, *above))
    }

    fn set_limit(&mut self, limit: u32, now: Instant, probe_in: Duration) {
        let limit = limit.clamp(1, self.cap);
        self.limit = (limit < self.cap).then_some(limit);
        self.window = limit;
        self.growing = false;
        self.raise_votes = 0;
        self.trial = None;
        self.evidence.clear();
        self.edge = (0, 0);
        self.limit_since = Some(now);
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

    /// The most sends per second the window lets go while the in-flight question is open (a
    /// limit on trial, or 429s held for it): the window's worth per mean answer time (on
    /// trial, the limit and one over it), each send apart from the one before (no groups; see
    /// [`Control::early`]). A limit in flight of `k` refuses the send over it however far
    /// apart the sends leave, and its answers free the slots about that far apart anyway; a
    /// token bucket refuses a group's last sends however many are in flight, and, paced under
    /// its rate, refuses none. Without it, a bucket with a burst of 3 met at the start by
    /// groups of 4 refused the fourth of every group and passed as "3 in flight", and the
    /// window held the run there for seconds (on the model, 30/s and 10 in flight at the
    /// default concurrency: 0.72-0.81 of the rate; with it 0.89-0.94).
    pub fn pace(&self) -> Option<f64> {
        if !self.questioning() {
            return None;
        }
        let rtt = self.srtt?.as_secs_f64();
        (rtt > 0.0).then(|| f64::from(self.window) / rtt)
    }

    /// Whether the in-flight question is open: a limit on trial, or 429s held for it.
    fn questioning(&self) -> bool {
        self.trial.is_some() || (!self.held.is_empty() && self.limit.is_none())
    }

    /// The limit found, as the run says it and hands it on: one still on trial once the
    /// sends that reached it were mostly refused (a run may end before its trial does, and
    /// random 429s can put a limit on trial that the sends then seldom reach).
    pub fn found(&self) -> Option<u32> {
        let tried = self
            .trial
            .is_none_or(|t| t.at >= MIN_EVIDENCE && 2 * t.at_refused >= t.at);
        self.limit.filter(|_| self.limit_evidence && tried)
    }

    /// What to hand on to the next run.
    pub fn learned(&self) -> LearnedInFlight {
        match self.found() {
            Some(l) => LearnedInFlight::Limit(l),
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

    /// The rate sends are paced at now: the rate controller's, and no faster than the window
    /// lets them go while the in-flight question is open (see [`Window::pace`]).
    pub fn pacing_rate(&self, now: Instant) -> f64 {
        let rate = self.ctl.pacing_rate(now);
        self.win
            .as_ref()
            .and_then(Window::pace)
            .map_or(rate, |p| rate.min(p))
    }

    /// How far ahead of its slot a send may go when slots are `interval` apart and sends are
    /// grouped by `grouping`: not at all while the in-flight question is open (see
    /// [`Window::pace`]: sends leave apart, not in groups).
    pub fn early(&self, grouping: Grouping, interval: Duration) -> Duration {
        match self.win.as_ref().is_some_and(Window::questioning) {
            true => Duration::ZERO,
            false => grouping.early(interval),
        }
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
        } else if !verdicts.iter().any(|(t, _)| t.seq == Some(seq)) {
            // Held for the in-flight question: the rate controller judges no round of it
            // until its verdict is in.
            self.ctl.on_held(ticket);
        }
        for (judged, verdict) in verdicts {
            let limited = verdict == Verdict::Rate;
            if judged.seq == Some(seq) {
                if limited {
                    self.ctl.on_answer(judged, Answer::Limited, now);
                }
            } else {
                self.ctl.on_released(judged, limited, now);
            }
        }
    }

    /// Whether the in-flight limit found (if any) is one the run is held by, beside a rate
    /// limit the rate controller found: its capacity, the limit over the mean answer time, at
    /// most [`BINDS_MARGIN`] times that rate. A limit in flight well above what the rate
    /// admits held nothing, and is the window's misreading of the rate limit's 429s more often
    /// than a second limit: a token bucket's refusals of a send group's last sends look like a
    /// step in the count (runs against a 100/s bucket at 30 ms handed on "4 in flight" and "6
    /// in flight", 130-190/s; against 30/s and 10 in flight at 200 ms, "7 in flight", 35/s).
    /// Such a limit is neither said nor handed on; the run says the rate. Returns the limit
    /// found ([`Window::found`]) when it holds the run.
    pub fn binding_limit(&self) -> Option<u32> {
        let win = self.win.as_ref()?;
        let limit = win.found()?;
        let (Learned::Limit(rate), Some(rtt)) = (self.ctl.learned(), win.mean_rtt()) else {
            return Some(limit);
        };
        let binds = rtt.is_zero() || f64::from(limit) / rtt.as_secs_f64() <= rate * BINDS_MARGIN;
        binds.then_some(limit)
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
    use crate::execution::rate::pacer::{Groups, next_slot, start_credit};

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
        /// How late the client reads an answer the server has sent (its slot already free at
        /// the server): up to `read_lag` seconds, and one answer in twenty up to `stall`
        /// (a busy machine's scheduler).
        read_lag: f64,
        stall: f64,
        /// How long a send takes to reach the server: up to `arrive` seconds, so that sends
        /// that leave close together reach it in another order (a group's shared fsync,
        /// racing connections).
        arrive: f64,
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
                read_lag: 0.0,
                stall: 0.0,
                arrive: 0.0,
            }
        }

        /// As sends reach a server from a loaded machine: up to 20 ms after they left, in
        /// another order when they left close together (a group's sends wait for one fsync,
        /// new connections race).
        fn reorder(mut self) -> Server {
            self.arrive = 0.02;
            self
        }

        /// When a send that left at `t` reaches the server.
        fn arrival(&mut self, t: f64) -> f64 {
            if self.arrive == 0.0 {
                return t;
            }
            t + self.rng.random::<f64>() * self.arrive
        }

        /// As a loaded client machine reads answers: up to 3 ms late, one in twenty up to
        /// 30 ms.
        fn read_late(mut self) -> Server {
            self.read_lag = 0.003;
            self.stall = 0.03;
            self
        }

        /// How late the client reads the next answer.
        fn lag(&mut self) -> f64 {
            if self.read_lag == 0.0 && self.stall == 0.0 {
                return 0.0;
            }
            let stalled = self.rng.random::<f64>() < 0.05;
            let most = if stalled { self.stall } else { self.read_lag };
            self.rng.random::<f64>() * most
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
    /// room and the pacer's slot rule lets it go (the start's burst, then groups: see
    /// [`next_slot`]); the slot is free when the answer arrives.
    fn run(control: Control, server: &mut Server, want: u64) -> Run {
        let base = Instant::now();
        let at = |t: f64| base + Duration::from_secs_f64(t);
        let mut control = control;
        let mut answers: Vec<(f64, u64, Answer)> = Vec::new();
        // Sends on their way to the server: when they reach it, and their number.
        let mut arriving: Vec<(f64, u64)> = Vec::new();
        let mut tickets = HashMap::new();
        let (mut served, mut limited, mut id) = (0u64, 0u64, 0u64);
        let mut t = 0.0f64;
        // As the pacer: the preflight's reads just went, then the start's burst, then groups.
        let mut last_send = Some(0.0f64);
        let mut credit = start_credit(control.ctl.rate());
        let mut groups = Groups::default();
        // When the pacer lets the next send go at `t`, and the slot it takes.
        let slot = |c: &Control, last: Option<f64>, t: f64, g: Grouping| {
            let interval = 1.0 / c.pacing_rate(at(t));
            let early = c.early(g, Duration::from_secs_f64(interval)).as_secs_f64();
            let s = next_slot(last, interval, early, t);
            s.go.map_or((s.due, s.due), |taken| (t, taken))
        };
        while served < want {
            let wanted = want - served;
            let room =
                control.has_room(at(t)) && ((answers.len() + arriving.len()) as u64) < wanted;
            let next_answer = answers.iter().map(|a| a.0).fold(f64::INFINITY, f64::min);
            let next_arrival = arriving.iter().map(|a| a.0).fold(f64::INFINITY, f64::min);
            let send_at = match room {
                false => f64::INFINITY,
                true if credit > 0 => t,
                true => slot(&control, last_send, t, groups.current()).0,
            };
            let probe_at = control
                .probe_due()
                .map_or(f64::INFINITY, |p| p.duration_since(base).as_secs_f64())
                .max(t);
            if next_arrival <= next_answer && next_arrival <= send_at && next_arrival <= probe_at {
                t = next_arrival;
                let i = arriving.iter().position(|a| a.0 == t).unwrap();
                let (_, k) = arriving.swap_remove(i);
                let (when, answer) = server.send(t);
                let when = when + server.lag();
                answers.push((when, k, answer));
            } else if next_answer <= send_at && next_answer <= probe_at {
                t = next_answer;
                let i = answers.iter().position(|a| a.0 == t).unwrap();
                let (_, k, answer) = answers.swap_remove(i);
                let ticket = tickets.remove(&k).unwrap();
                match answer {
                    Answer::Limited => {
                        limited += 1;
                        credit = 0;
                    }
                    _ => served += 1,
                }
                let known = control.ctl.limit().is_some()
                    || control.win.as_ref().is_some_and(|w| w.limit().is_some());
                let skip = groups.on_answer(answer, known);
                let interval = 1.0 / control.pacing_rate(at(t));
                last_send = last_send.map(|l| l + f64::from(skip) * interval);
                control.on_answer(ticket, answer, at(t));
            } else if send_at <= probe_at {
                t = send_at;
                if credit > 0 {
                    credit -= 1;
                } else {
                    last_send = Some(slot(&control, last_send, t, groups.current()).1);
                }
                let ticket = control.on_send(at(t));
                id += 1;
                tickets.insert(id, ticket);
                let arrival = server.arrival(t);
                if arrival == t {
                    let (when, answer) = server.send(t);
                    let when = when + server.lag();
                    answers.push((when, id, answer));
                } else {
                    arriving.push((arrival, id));
                }
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
                // Finding it costs a round or two of 429s (issue 31's target: 5%, met by the
                // benchmark's runs: 3.4-4.7%). Here every seed is the same run (nothing is
                // drawn): told 32 or 100, 7.0%, as its first step (8) rests on one send at 8
                // and one at 9, is refuted, and the window, growing back from 9, meets a round
                // of 429s before the step at 10 (16: 3.8%).
                assert!(
                    share(&r) <= 0.075,
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
        for seed in 0..12 {
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
            // Said and handed on: none. (A limit may be on trial when the run ends, random 429s
            // of a group's first sends, counted with the sends that may have overtaken them,
            // having pointed to one the sends then seldom reached.)
            assert_eq!(w.found(), None, "seed {seed}");
            assert!(
                !matches!(w.learned(), LearnedInFlight::Limit(_)),
                "seed {seed}"
            );
            assert!(matches!(
                r.control.ctl.learned(),
                Learned::NoneBelowCeiling | Learned::Unknown
            ));
        }
    }

    #[test]
    fn an_in_flight_limit_with_random_429s_on_top_is_found_and_the_noise_left_alone() {
        // The simulator's random 429s hold a slot at the server until answered (as here),
        // which this process does not count: some runs read 429s under the limit as too many
        // for a limit in flight, and the rate finds the capacity instead. Neither collapses.
        let mut found = 0;
        for seed in 0..16 {
            let mut s = Server::new(Some(10), None, 0.2, seed);
            s.noise = 0.05;
            let r = run(control(100.0, 32, None, None), &mut s, 400);
            let w = r.control.win.as_ref().unwrap();
            // 5% of the sends refused at random and sent again: 0.95 at best.
            let eff = 8.0 / r.end;
            assert!(eff >= 0.80, "seed {seed}: efficiency {eff}");
            match (w.limit(), r.control.ctl.limit()) {
                // A slot held by a random 429 this process does not count can show one
                // fewer (seed 7).
                (Some(9 | 10), _) => found += 1,
                (_, Some(rate)) => assert!(rate >= 40.0, "seed {seed}: a rate of {rate}"),
                other => panic!("seed {seed}: {other:?}"),
            }
        }
        // 12 of these 16 seeds find it (15 before 429s were counted with the sends that may
        // have overtaken them, when one seed of 16 fell to 0.77).
        assert!(
            found >= 12,
            "the limit in flight found on {found} seeds of 16"
        );
    }

    // The targets of issue 31, against servers that limit requests in flight, with answers
    // read as a loaded machine reads them: a little late (the server's slot is free before the
    // client knows), so that the client's count of its requests in flight at a send overstates
    // the server's.

    /// The learned in-flight limit of a run, as the next run is handed it.
    fn learned_limit(r: &Run) -> Option<u32> {
        match r.control.win.as_ref().unwrap().learned() {
            LearnedInFlight::Limit(l) => Some(l),
            _ => None,
        }
    }

    /// A first run told `cap`, then the next run from what it learned, against `server`;
    /// asserts the targets (of the time `best` says the server's capacity allows on a seed's
    /// server; a first run >= 0.90 with <= 5% 429s, the next >= 0.95 with <= 1%) and that no
    /// rate was read into the in-flight limit's 429s.
    fn first_and_next(
        server: impl Fn(u64) -> Server,
        best: impl Fn(u64) -> f64,
        cap: u32,
        want: u64,
    ) {
        for seed in 0..4 {
            let mut s = server(seed);
            let first = run(control(100.0, cap, None, None), &mut s, want);
            let eff = best(seed) / first.end;
            let what = format!("cap {cap} seed {seed}, first run");
            assert!(eff >= 0.90, "{what}: {eff:.3} of capacity");
            // 5% is the benchmark's target; on this model, over 12 seeds read late: 3.8-5.2%,
            // median 4.1%.
            assert!(
                share(&first) <= 0.055,
                "{what}: 429 share {:.3}",
                share(&first)
            );
            assert_eq!(learned_limit(&first), Some(10), "{what}");
            assert_eq!(
                first.control.ctl.learned(),
                Learned::NoneBelowCeiling,
                "{what}"
            );
            assert!(s.most_admitted <= 10);
            let mut s = server(seed + 100);
            let next = run(
                control(100.0, cap, None, learned_limit(&first)),
                &mut s,
                want,
            );
            let eff = best(seed + 100) / next.end;
            let what = format!("cap {cap} seed {seed}, next run");
            assert!(eff >= 0.95, "{what}: {eff:.3} of capacity");
            assert!(
                share(&next) <= 0.01,
                "{what}: 429 share {:.3}",
                share(&next)
            );
            assert_eq!(learned_limit(&next), Some(10), "{what}");
        }
    }

    #[test]
    fn ten_in_flight_read_late_first_run_and_next_meet_the_targets() {
        for cap in [32, 100] {
            let server = |seed| Server::new(Some(10), None, 0.2, seed).read_late();
            // Capacity 50/s: 8 s for 400.
            first_and_next(server, |_| 8.0, cap, 400);
        }
    }

    #[test]
    fn ten_in_flight_with_jitter_read_late_first_run_and_next_meet_the_targets() {
        let server = |seed| {
            let mut s = Server::new(Some(10), None, 0.1, seed).read_late();
            s.jitter = 0.3;
            s
        };
        // 10 in flight at 250 ms on average: 40/s, 10 s for 400, but the last answers of a
        // run of 400 come as late as their draws say: the time is that of a client told the
        // limit (10 in flight from the first send), on the same server (10.3-10.7 s).
        let told = |seed| {
            let now = Instant::now();
            let c = Control {
                ctl: Controller::new(100.0, None, now),
                win: Some(Window::fixed(10, now)),
            };
            run(c, &mut server(seed), 400).end
        };
        first_and_next(server, told, 32, 400);
    }

    /// 30/s and 10 in flight at 200 ms, read late, told 32: the rate binds. Since the model
    /// sends in the pacer's groups, the rate controller's estimate of a bucket with a burst of
    /// 3 at 200 ms is rougher (a first cut 30% under it, a probe 35% over): 0.895-0.969 first,
    /// 0.884-0.985 next over these seeds (the benchmark's runs: 0.92-0.94 and 0.94-0.96).
    #[test]
    fn thirty_a_second_and_ten_in_flight_read_late_meet_the_rate() {
        for seed in 0..4 {
            let mut s = Server::new(Some(10), Some(30.0), 0.2, seed).read_late();
            let first = run(control(100.0, 32, None, None), &mut s, 400);
            let eff = (400.0 / 30.0) / first.end;
            assert!(eff >= 0.88, "seed {seed}, first run: {eff:.3} of capacity");
            let learned = match first.control.ctl.learned() {
                Learned::Limit(l) => Some(l),
                _ => None,
            };
            let mut s = Server::new(Some(10), Some(30.0), 0.2, seed + 100).read_late();
            let next = run(
                control(100.0, 32, learned, learned_limit(&first)),
                &mut s,
                400,
            );
            let eff = (400.0 / 30.0) / next.end;
            assert!(eff >= 0.87, "seed {seed}, next run: {eff:.3} of capacity");
        }
    }

    /// 30/s and 10 in flight at 200 ms, read late, at the default concurrency and at 32: the
    /// rate a first run hands on keeps the next run's 429s to 7% (1.2-6.3% over these 16
    /// runs), and that run hands on the bucket's rate within 20% (26.6-36.0/s; within 7%
    /// before the model sent in the pacer's groups), at 0.884-0.988 of it. Before a probe had
    /// to wait for the 429s the window held (and for the answers after its first 429), probes
    /// passed as clean 25-80% over the bucket, the first runs learned 33-39/s, and next runs
    /// met 4-23% 429s.
    #[test]
    fn thirty_a_second_and_ten_in_flight_the_next_run_meets_few_429s() {
        for cap in [8, 32] {
            for seed in 0..8 {
                let mut s = Server::new(Some(10), Some(30.0), 0.2, seed).read_late();
                let first = run(control(100.0, cap, None, None), &mut s, 400);
                let learned = match first.control.ctl.learned() {
                    Learned::Limit(l) => Some(l),
                    _ => None,
                };
                let mut s = Server::new(Some(10), Some(30.0), 0.2, seed + 100).read_late();
                let next = run(
                    control(100.0, cap, learned, learned_limit(&first)),
                    &mut s,
                    400,
                );
                let what = format!("cap {cap} seed {seed}, learned {learned:?}");
                assert!(
                    share(&next) <= 0.07,
                    "{what}: 429 share {:.3}",
                    share(&next)
                );
                match next.control.ctl.learned() {
                    Learned::Limit(l) => assert!((26.0..=37.0).contains(&l), "{what}: {l}"),
                    other => panic!("{what}: the next run learned {other:?}"),
                }
                let eff = (400.0 / 30.0) / next.end;
                assert!(eff >= 0.87, "{what}: {eff:.3} of the rate");
            }
        }
    }

    /// Verify's case in tests/rate.rs: 60 probes told `--rate 400 --concurrency 16` against 4
    /// in flight at 200 ms, sends reaching the server out of order and answers read late. A
    /// run of three round trips finds the limit in flight, learns no rate, and hands on 4.
    #[test]
    fn a_short_run_against_four_in_flight_reordered_finds_the_limit_not_a_rate() {
        let mut wrong = Vec::new();
        for seed in 0..48 {
            let mut s = Server::new(Some(4), None, 0.2, seed).read_late().reorder();
            let r = run(control(400.0, 16, None, None), &mut s, 60);
            let found = (learned_limit(&r), r.control.ctl.learned());
            if !matches!(
                found,
                (Some(3 | 4), Learned::NoneBelowCeiling | Learned::Unknown)
            ) {
                wrong.push((seed, found));
            }
            assert!(s.most_admitted <= 4);
        }
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    /// A limit in flight is said and handed on only where it holds the run beside a rate
    /// limit found with it: "4 in flight" at 30 ms (133/s) beside a bucket of 100/s is the
    /// bucket's 429s misread; "3 in flight" (100/s) may hold it.
    #[test]
    fn a_limit_in_flight_well_above_the_rate_found_is_not_one_the_run_is_held_by() {
        let binds = |learned_rate: Option<f64>, in_flight: u32| {
            let t0 = Instant::now();
            let mut c = Control {
                ctl: Controller::new(1000.0, learned_rate, t0),
                win: Some(Window::new(32, Some(in_flight), t0)),
            };
            for i in 0..8u64 {
                let at = t0 + Duration::from_millis(40 * i);
                let ticket = c.on_send(at);
                c.on_answer(ticket, Answer::Served, at + Duration::from_millis(30));
            }
            c.binding_limit().is_some()
        };
        assert!(!binds(Some(100.0), 4));
        assert!(binds(Some(100.0), 3));
        // No rate limit found: the limit in flight is the one.
        assert!(binds(None, 4));
    }

    /// A probe leaves apart from the send before it (see [`Window::probe_due`]): one in the
    /// same group is judged with that send not surely at the server, and raises nothing.
    #[test]
    fn a_probe_leaves_apart_from_the_send_before_it() {
        let t0 = Instant::now();
        let mut w: Window<()> = Window::new(16, Some(5), t0);
        w.min_rtt = Some(Duration::from_millis(200));
        let due = w.probe_due().unwrap();
        for _ in 0..4 {
            w.on_send(due - Duration::from_millis(50));
        }
        // The fifth fills the window as the probe comes due: the probe waits 10 ms (a
        // twentieth of the shortest answer time) after it.
        w.on_send(due);
        assert_eq!(w.allowed(due), 5);
        assert_eq!(w.allowed(due + Duration::from_millis(9)), 5);
        assert_eq!(w.probe_due(), Some(due + Duration::from_millis(10)));
        let apart = due + Duration::from_millis(10);
        assert_eq!(w.allowed(apart), 6);
        let probe = w.on_send(apart);
        assert_eq!(w.probe_seq, Some(probe));
        assert_eq!(w.probe_due(), None);
    }

    /// The evidence of a `--concurrency 16` run's first rounds against 10 in flight on a
    /// loaded machine (from its debug log): two sends admitted at each count up to 9, those at
    /// 8 and 9 not surely beside as many (answers read late), and seven 429s at 10 over two
    /// rounds. Steps at 8, 9 and 10 all hold; the least (8) went on trial, passed, and cost a
    /// fifth of the run until probes raised it.
    #[test]
    fn the_step_chosen_is_the_highest_with_no_429_just_under_it() {
        let now = Instant::now();
        let mut w: Window<()> = Window::new(16, None, now);
        w.min_rtt = Some(Duration::from_millis(200));
        for counted in 0..10 {
            let sure = if counted >= 8 { 0 } else { counted };
            for _ in 0..2 {
                w.remember(Seen { counted, sure }, false, now);
            }
        }
        for i in 0..7 {
            let sent = now + Duration::from_millis(60 * i);
            w.remember(
                Seen {
                    counted: 10,
                    sure: 0,
                },
                true,
                sent,
            );
        }
        assert_eq!(w.candidate(0.0), Some((10, 7)));
    }

    /// At the default concurrency (8, the window at its cap from the start) against 30/s and
    /// 10 in flight, read late and reordered: the bucket's 429s come in every round, so they
    /// are the rate's; a run learned "5 in flight" (0.72 of the rate) when held 429s went on
    /// trial although 429s kept coming. Issue 31's target, 0.90 of the rate, on the mean of
    /// these seeds (0.890-0.943, 0.923 over 12). Before a limit on trial (or one in question)
    /// paced its sends apart: 0.72-0.81, as the start's groups of 4 against the bucket's burst
    /// of 3 read as "3 in flight" and the window held the run there for seconds.
    #[test]
    fn thirty_a_second_at_the_default_concurrency_is_not_read_as_a_limit_in_flight() {
        let mut sum = 0.0;
        for seed in 0..8 {
            let mut s = Server::new(Some(10), Some(30.0), 0.2, seed)
                .read_late()
                .reorder();
            let r = run(control(100.0, 8, None, None), &mut s, 400);
            let w = r.control.win.as_ref().unwrap();
            assert!(
                w.limit().is_none_or(|l| l >= 7),
                "seed {seed}: {:?}",
                w.limit()
            );
            let eff = (400.0 / 30.0) / r.end;
            assert!(eff >= 0.88, "seed {seed}: {eff:.3} of the rate");
            sum += eff;
        }
        assert!(sum / 8.0 >= 0.90, "{:.3} of the rate on average", sum / 8.0);
    }

    /// A token bucket of 40/s on a fast server, told 400/s and 16 in flight, 60 sends: paced
    /// sends seldom overlap, so the bucket's 429s found one or two of ours at the server,
    /// above every admitted send's sure count of none; once the rate settles they stop. An
    /// integration run learned "1 in flight" from them when quiet 429s went on trial although
    /// those that found none at the server had been refused as often.
    #[test]
    fn a_fast_token_buckets_429s_that_stop_are_not_a_limit_in_flight() {
        for seed in 0..16 {
            let mut s = Server::new(None, Some(40.0), 0.005, seed)
                .read_late()
                .reorder();
            let r = run(control(400.0, 16, None, None), &mut s, 60);
            let w = r.control.win.as_ref().unwrap();
            assert!(w.limit().is_none(), "seed {seed}: {:?}", w.limit());
        }
    }

    #[test]
    fn ten_in_flight_read_late_a_larger_concurrency_is_never_slower() {
        for seed in 0..4 {
            let mut best = f64::INFINITY;
            for cap in [8, 10, 16, 32, 100] {
                let mut s = Server::new(Some(10), None, 0.2, seed).read_late();
                let r = run(control(100.0, cap, None, None), &mut s, 400);
                // Above 10, the run has to find the limit that `--concurrency 10` is told: a
                // round or two of 429s, 2-4% of the time on this model (the benchmark's target
                // is 2%, from the fastest smaller one).
                assert!(
                    r.end <= best * 1.05,
                    "seed {seed}: --concurrency {cap} took {:.2} s, a smaller one {best:.2} s",
                    r.end
                );
                best = best.min(r.end);
            }
        }
    }

    /// A limit on trial paces the sends apart (the limit and one over it per mean answer
    /// time, no groups); no limit in question, neither.
    #[test]
    fn a_limit_on_trial_paces_its_sends_apart_and_none_else_does() {
        let t0 = Instant::now();
        let mut c = Control {
            ctl: Controller::new(100.0, None, t0),
            win: Some(Window::new(32, None, t0)),
        };
        let ticket = c.on_send(t0);
        c.on_answer(ticket, Answer::Served, t0 + Duration::from_millis(200));
        let now = t0 + Duration::from_millis(200);
        assert_eq!(c.pacing_rate(now), c.ctl.pacing_rate(now));
        assert_eq!(
            c.early(Grouping::NEAR_LIMIT, Duration::from_millis(10)),
            Duration::from_millis(30)
        );
        let w = c.win.as_mut().unwrap();
        w.establish(4, now, &mut Vec::new());
        assert_eq!(w.pace(), Some(25.0));
        assert_eq!(c.pacing_rate(now), 25.0);
        assert_eq!(
            c.early(Grouping::NEAR_LIMIT, Duration::from_millis(10)),
            Duration::ZERO
        );
    }

    /// A limit on trial that the sends seldom reach (random 429s of a group's first sends
    /// pointed to it; the rate keeps the sends under it) is dropped after four trials' worth
    /// of answers: it held nothing, and while on trial it keeps the sends apart.
    #[test]
    fn a_limit_on_trial_that_no_send_reaches_is_dropped() {
        let t0 = Instant::now();
        let mut w: Window<()> = Window::new(8, None, t0);
        w.srtt = Some(Duration::from_millis(3));
        w.establish(3, t0, &mut Vec::new());
        let mut t = t0;
        for _ in 0..(4 * TRIAL_ANSWERS - 1) {
            let seq = w.on_send(t);
            t += Duration::from_millis(3);
            w.on_answer(seq, Answer::Served, (), 0.0, t);
            t += Duration::from_millis(2);
        }
        assert_eq!(w.limit(), Some(3), "still on trial");
        assert_eq!(w.found(), None, "not said while unconfirmed");
        let seq = w.on_send(t);
        w.on_answer(seq, Answer::Served, (), 0.0, t + Duration::from_millis(3));
        assert_eq!(w.limit(), None);
        assert!(w.trial.is_none());
        assert_eq!(w.pace(), None);
    }
}
