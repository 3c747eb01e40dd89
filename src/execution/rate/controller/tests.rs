#![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
#![allow(clippy::unwrap_used)]
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::execution::rate::pacer::{Grouping, Groups, next_slot};

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

/// When the pacer lets the next send go, and the slot it takes: the pacer's own rule
/// ([`next_slot`]), on the modelled run's clock (seconds).
fn pacer_slot(last: Option<f64>, rate: f64, now: f64, grouping: Grouping) -> (f64, f64) {
    let interval = 1.0 / rate;
    let early = grouping
        .early(Duration::from_secs_f64(interval))
        .as_secs_f64();
    let slot = next_slot(last, interval, early, now);
    match slot.go {
        Some(taken) => (now, taken),
        None => (slot.due, slot.due),
    }
}

struct Run {
    served: u64,
    limited: u64,
    /// When the last event happened.
    end: f64,
    /// (time, rate) after each change.
    rates: Vec<(f64, f64)>,
    controller: Controller,
}

/// When a modelled run ends.
enum Until {
    /// After this many seconds.
    Seconds(f64),
    /// Once this many answers were served (429s are re-sent, as the executor does; no more
    /// are in flight than are still wanted).
    Served(u64),
}

/// Sends at the controller's pacing rate in the pacer's groups (at most `in_flight` at
/// once); each answer comes back `latency` later, plus up to `jitter` at random. `change`
/// may alter the server mid-run.
fn simulate(
    mut c: Controller,
    server: &mut Server,
    until: Until,
    latency: f64,
    jitter: f64,
    in_flight: usize,
    change: &mut dyn FnMut(f64, &mut Server),
) -> Run {
    let base = Instant::now();
    let at = |t: f64| base + Duration::from_secs_f64(t);
    let mut pending: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut tickets = std::collections::HashMap::new();
    let mut seq = 0u64;
    let mut t = 0.0f64;
    let mut last_send: Option<f64> = None;
    let mut groups = Groups::default();
    let (mut served, mut limited) = (0, 0);
    let mut rates = vec![(0.0, c.rate())];
    loop {
        let room = match until {
            Until::Seconds(s) if t < s => in_flight,
            Until::Served(want) if served < want => {
                in_flight.min(usize::try_from(want - served).unwrap_or(usize::MAX))
            }
            _ => break,
        };
        // Slots are not handed out ahead: a change holds from the very next send.
        let (next_send, slot) = pacer_slot(last_send, c.pacing_rate(at(t)), t, groups.current());
        let next_answer = pending.peek().map(|Reverse((ns, _))| *ns as f64 / 1e9);
        let can_send = pending.len() < room;
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
            let skip = groups.on_answer(answer, c.limit().is_some());
            last_send = last_send.map(|l| l + f64::from(skip) / c.pacing_rate(at(t)));
            c.on_answer(ticket, answer, at(t));
        } else {
            let ticket = c.on_send(at(t));
            let answer = server.answer(t);
            seq += 1;
            tickets.insert(seq, (ticket, answer));
            let extra = if jitter > 0.0 {
                server.rng.random::<f64>() * jitter
            } else {
                0.0
            };
            pending.push(Reverse((((t + latency + extra) * 1e9) as u64, seq)));
            last_send = Some(slot);
        }
        if rates.last().is_some_and(|(_, r)| *r != c.rate()) {
            rates.push((t, c.rate()));
        }
    }
    Run {
        served,
        limited,
        end: t,
        rates,
        controller: c,
    }
}

/// `seconds` of sending, on a fixed latency.
fn drive(
    c: Controller,
    server: &mut Server,
    seconds: f64,
    latency: f64,
    in_flight: usize,
    change: &mut dyn FnMut(f64, &mut Server),
) -> Run {
    let until = Until::Seconds(seconds);
    simulate(c, server, until, latency, 0.0, in_flight, change)
}

/// Until `want` answers were served; the wake-ups and the loopback add a few milliseconds
/// to each answer, at random.
fn drive_until(
    c: Controller,
    server: &mut Server,
    want: u64,
    latency: f64,
    in_flight: usize,
) -> Run {
    let until = Until::Served(want);
    simulate(c, server, until, latency, 0.004, in_flight, &mut no_change)
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
            "seed {seed}: {}; rates {}",
            o.served,
            show(&o.rates)
        );
        let share = o.limited as f64 / (o.served + o.limited) as f64;
        assert!(share <= 0.20, "seed {seed}: 429 share {share}");
    }
}

/// The benchmark's limit plus random 429s on the model: told ten times the limit, 2,000
/// served. The server lets through 95/s at best (its bucket takes a token for the random
/// 429s too); the run must come close, and no seed may fall far from it.
#[test]
fn a_limit_with_random_429s_on_top_costs_little_over_a_run() {
    let mut share_of_best: Vec<f64> = (0..8)
        .map(|seed| {
            let mut s = Server::new(Some(100.0), 0.05, seed);
            let c = Controller::new(1000.0, None, Instant::now());
            let o = drive_until(c, &mut s, 2000, 0.03, 32);
            2000.0 / o.end / 95.0
        })
        .collect();
    share_of_best.sort_by(f64::total_cmp);
    assert!(share_of_best[4] >= 0.96, "{share_of_best:.3?}");
    assert!(share_of_best[0] >= 0.90, "{share_of_best:.3?}");
}

/// The benchmark's scenarios on the model over 48 seeds: the medians meet the targets,
/// and with `--nocapture` it prints each figure's spread (the README quotes them).
#[test]
#[allow(clippy::print_stdout)] // The figures, for `--nocapture`.
fn over_many_seeds_the_models_medians_meet_the_targets() {
    const SEEDS: u64 = 48;
    let spread = |name: &str, mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        let (n, median) = (v.len(), v[v.len() / 2]);
        println!(
            "{name}: lowest {:.3}, tenth {:.3}, median {median:.3}, highest {:.3}",
            v[0],
            v[n / 10],
            v[n - 1],
        );
        median
    };
    let share = |r: &Run| r.limited as f64 / (r.served + r.limited) as f64;
    let (mut noisy_limit, mut first, mut first_share, mut next, mut next_share) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut noisy_s = vec![];
    // 2,000 served, told 1000/s (or a learned limit), a 100/s limit and `noise`.
    let run = |learned, noise, seed| {
        let c = Controller::new(1000.0, learned, Instant::now());
        drive_until(
            c,
            &mut Server::new(Some(100.0), noise, seed),
            2000,
            0.03,
            32,
        )
    };
    for seed in 0..SEEDS {
        let o = run(None, 0.05, seed);
        noisy_limit.push(2000.0 / o.end / 100.0);
        let o = run(None, 0.0, seed);
        first.push(2000.0 / o.end / 100.0);
        first_share.push(share(&o));
        let o = run(o.controller.limit(), 0.0, seed + 1000);
        next.push(2000.0 / o.end / 100.0);
        next_share.push(share(&o));
        let c = Controller::new(200.0, None, Instant::now());
        noisy_s.push(drive_until(c, &mut Server::new(None, 0.08, seed), 300, 0.003, 8).end);
    }
    let e = spread("limit + 5% random 429s, told 10x: efficiency", noisy_limit);
    assert!(e >= 0.90, "{e}");
    let e = spread("told 10x, first run: efficiency", first);
    assert!(e >= 0.93, "{e}");
    let x = spread("told 10x, first run: 429 share", first_share);
    assert!(x <= 0.05, "{x}");
    let e = spread("told 10x, next run: efficiency", next);
    assert!(e >= 0.93, "{e}");
    let x = spread("told 10x, next run: 429 share", next_share);
    assert!(x <= 0.01, "{x}");
    // 300 served at 200/s take 1.5 s without noise.
    let t = spread("8% random 429s, no limit, 300 at 200/s: seconds", noisy_s);
    assert!(t <= 2.0 * 1.5, "{t}");
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

fn show(r: &[(f64, f64)]) -> String {
    r.iter()
        .map(|(t, r)| format!("{t:.2}:{r:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The benchmark's second target on the model (with the pacer's send groups and a few
/// milliseconds of jitter): told ten times the limit, a first run of 2,000 loses little to
/// the search, and the next run, starting from the learned rate, meets almost no 429s.
#[test]
fn told_ten_times_too_high_a_first_run_and_the_next_one_from_the_learned_rate() {
    for seed in 0..8 {
        let mut s = Server::new(Some(100.0), 0.0, seed);
        let c = Controller::new(1000.0, None, Instant::now());
        let first = drive_until(c, &mut s, 2000, 0.03, 32);
        let share = first.limited as f64 / (first.served + first.limited) as f64;
        let efficiency = 2000.0 / first.end / 100.0;
        assert!(
            efficiency >= 0.94 && share <= 0.05,
            "seed {seed}: efficiency {efficiency:.3}, 429 share {share:.3}; rates {}",
            show(&first.rates)
        );
        let learned = first.controller.limit();
        let l = learned.unwrap();
        assert!((90.0..=110.0).contains(&l), "seed {seed}: learned {l}");
        let mut s = Server::new(Some(100.0), 0.0, seed + 100);
        let next = drive_until(
            Controller::new(1000.0, learned, Instant::now()),
            &mut s,
            2000,
            0.03,
            32,
        );
        let share = next.limited as f64 / (next.served + next.limited) as f64;
        let efficiency = 2000.0 / next.end / 100.0;
        assert!(
            efficiency >= 0.93 && share <= 0.01,
            "seed {seed}: next run: efficiency {efficiency:.3}, 429 share {share:.3}; rates {}",
            show(&next.rates)
        );
    }
}

#[test]
fn a_cut_settles_for_exactly_its_time_at_a_lower_pace() {
    let t0 = Instant::now();
    let mut c = Controller::new(100.0, None, t0);
    let sends: Vec<Ticket> = (0..16).map(|_| c.on_send(t0)).collect();
    for t in &sends[..12] {
        c.on_answer(*t, Answer::Limited, t0);
    }
    let rate = c.rate();
    assert!(rate < 100.0);
    assert!((c.pacing_rate(t0) - rate * DRAIN_GAIN).abs() < 1e-9);
    let end = t0 + SETTLE;
    assert!((c.pacing_rate(end - Duration::from_nanos(1)) - rate * DRAIN_GAIN).abs() < 1e-9);
    assert_eq!(c.pacing_rate(end), rate);
}

#[test]
fn what_a_run_learned_needs_a_round() {
    let t0 = Instant::now();
    let mut c = Controller::new(100.0, None, t0);
    assert_eq!(c.learned(), Learned::Unknown);
    // A clean round at the ceiling: no limit below it.
    let sends: Vec<Ticket> = (0..16).map(|_| c.on_send(t0)).collect();
    for t in &sends[..15] {
        c.on_answer(*t, Answer::Served, t0);
    }
    assert_eq!(c.learned(), Learned::Unknown, "a round is 16 answers");
    c.on_answer(sends[15], Answer::Served, t0);
    assert_eq!(c.learned(), Learned::NoneBelowCeiling);
}

#[test]
fn a_limit_only_step_downs_found_is_not_handed_on_without_stronger_evidence() {
    let t0 = Instant::now();
    // A limit from a step-down whose 429s halved, in a run with nothing else.
    let step_down = |c: &mut Controller| {
        end_step_down(c, (6, 64), (0, 64), t0);
        assert_eq!(c.limit(), Some(90.0));
    };
    let mut c = Controller::new(100.0, None, t0);
    step_down(&mut c);
    assert_eq!(c.learned(), Learned::Unknown);
    // After a round mostly of 429s in the same run, it is.
    let mut c = cut_by_a_round_of_429s(t0);
    step_down(&mut c);
    assert_eq!(c.learned(), Learned::Limit(90.0));
    // As in a run that started from a learned limit.
    let mut c = Controller::new(1000.0, Some(100.0), t0);
    step_down(&mut c);
    assert_eq!(c.learned(), Learned::Limit(90.0));
    // And after a probe that met the limit, in a run with no other evidence of one.
    let (failed_at, c) = probe_refusing_one_in(5, |c| {
        c.limit_seen = false;
    });
    assert!(failed_at.is_some());
    assert_eq!(c.learned(), Learned::Limit(c.limit().unwrap()));
}

#[test]
fn the_accepted_rate_is_measured_at_the_rate_sends_really_left() {
    // Paced at 200/s, but the sends left at 100/s (10 ms apart: the concurrency cap held
    // them): half of them refused means the server accepted about 50/s, not 100/s.
    let t0 = Instant::now();
    let mut c = Controller::new(200.0, None, t0);
    let sends: Vec<Ticket> = (0..16)
        .map(|i| c.on_send(t0 + Duration::from_millis(10 * i)))
        .collect();
    let t = t0 + Duration::from_millis(200);
    every_other_refused(&mut c, &sends, t);
    // Gross at the 12th answer: 6 served (+ half a one) of 12 at 100/s (15 sends in
    // 150 ms), 2% under: 53.1/s.
    let r = c.rate();
    assert!((r - 100.0 * 6.5 / 12.0 * PACING_MARGIN).abs() < 0.01, "{r}");
    // Net of a background of 10%: 59/s.
    let mut c = Controller::new(200.0, None, t0);
    (c.bg_x, c.bg_n) = (40.0, 384.0);
    let sends: Vec<Ticket> = (0..16)
        .map(|i| c.on_send(t0 + Duration::from_millis(10 * i)))
        .collect();
    every_other_refused(&mut c, &sends, t);
    let r = c.rate();
    assert!(
        (r - 100.0 * 6.5 / 12.0 / 0.9 * PACING_MARGIN).abs() < 0.01,
        "{r}"
    );
    // Fewer than 4 sends say nothing of their rate: the pacing rate is taken.
    let mut c = Controller::new(200.0, None, t0);
    let sends: Vec<Ticket> = (0..3)
        .map(|i| c.on_send(t0 + Duration::from_millis(10 * i)))
        .collect();
    assert_eq!(c.send_rate(), 200.0);
    drop(sends);
    // Sends at one instant neither.
    let mut c = Controller::new(200.0, None, t0);
    for _ in 0..8 {
        c.on_send(t0);
    }
    assert_eq!(c.send_rate(), 200.0);
}

/// Answers `sends` at `t`, every other one (the second, the fourth, ...) a 429.
fn every_other_refused(c: &mut Controller, sends: &[Ticket], t: Instant) {
    for (i, s) in sends.iter().enumerate() {
        let a = if i % 2 == 0 {
            Answer::Served
        } else {
            Answer::Limited
        };
        c.on_answer(*s, a, t);
    }
}

/// Told 1000/s, a dozen sends at `t0` all answered 429: cut by 8, to 125/s, and settling.
fn cut_by_a_round_of_429s(t0: Instant) -> Controller {
    let mut c = Controller::new(1000.0, None, t0);
    let sends: Vec<Ticket> = (0..12).map(|_| c.on_send(t0)).collect();
    for s in &sends {
        c.on_answer(*s, Answer::Limited, t0);
    }
    c
}

#[test]
fn a_gross_cut_while_settling_measures_the_rate_those_sends_left_at() {
    let t0 = Instant::now();
    let mut c = cut_by_a_round_of_429s(t0);
    // An eighth of 1000/s, settling at 0.85 of it (106/s).
    assert_eq!(c.rate(), 125.0);
    assert!(c.settling(t0));
    // The settling sends leave 15 ms apart (67/s: something held them), and half of
    // their answers are 429s: gross, and the server accepted about 36/s, not 57/s.
    let settle: Vec<Ticket> = (0..12)
        .map(|i| c.on_send(t0 + Duration::from_millis(15 * i)))
        .collect();
    assert!(settle.iter().all(|t| t.settling));
    let t = t0 + Duration::from_millis(250);
    every_other_refused(&mut c, &settle, t);
    let r = c.rate();
    let want = 11.0 / 0.165 * 6.5 / 12.0 * PACING_MARGIN;
    assert!((r - want).abs() < 0.01, "{r}, want {want}");
    // With too few settling sends to measure, their pacing rate is taken.
    let mut c = cut_by_a_round_of_429s(t0);
    let settle: Vec<Ticket> = (0..3).map(|_| c.on_send(t0)).collect();
    assert!(c.settling_round);
    assert_eq!(c.send_rate(), 125.0 * DRAIN_GAIN);
    drop(settle);
}

#[test]
fn a_probe_is_judged_on_the_answers_after_its_first_429() {
    let t0 = Instant::now();
    let probe_at = |background: (f64, f64)| {
        let mut c = Controller::new(1000.0, Some(100.0), t0);
        (c.bg_x, c.bg_n) = background;
        let later = t0 + Duration::from_secs(30);
        let size = c.round_size() as usize;
        let sends: Vec<Ticket> = (0..size).map(|_| c.on_send(later)).collect();
        for s in &sends {
            c.on_answer(*s, Answer::Served, later);
        }
        assert!(matches!(c.phase, Phase::Probe { .. }));
        (c, later)
    };
    // A background of 5%: a probe of 0.7 s at 122.5/s gets 86 answers, 7 of them 429s
    // spread through it (8%, within chance): clean. Counted against one round (34
    // answers), as if they had come together, 7 would have been excess.
    let (mut c, later) = probe_at((20.0, 384.0));
    let probe = c.rate();
    assert!(excess(7, c.round_size(), c.background()));
    let at = |i: u32| later + Duration::from_secs_f64(f64::from(i) / probe);
    let sends: Vec<Ticket> = (0..90).map(|i| c.on_send(at(i))).collect();
    for (i, s) in (0..).zip(&sends) {
        let a = if i % 12 == 6 {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, at(i) + Duration::from_millis(30));
    }
    assert_eq!(c.limit(), Some(probe), "a clean probe raises the limit");
    assert!(c.rate() > probe);
    // No background: a burst's 40 clean answers, then a 429 in every three: the probe
    // fails a dozen answers after the first one.
    let (mut c, later) = probe_at((0.0, 384.0));
    let probe = c.rate();
    let from = probe / PROBE_GAIN;
    let sends: Vec<Ticket> = (0..80)
        .map(|i| c.on_send(later + Duration::from_secs_f64(f64::from(i) / probe)))
        .collect();
    let mut failed_at = None;
    for (i, s) in sends.iter().enumerate() {
        let a = if i >= 40 && i % 3 == 1 {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, later + Duration::from_millis(400));
        if c.rate() < probe {
            failed_at = Some(i);
            break;
        }
    }
    assert_eq!(failed_at, Some(40 + 11));
    assert!(c.rate() <= from && c.rate() >= from * PROBE_RETURN_MIN);
}

#[test]
fn a_gross_cut_is_at_most_eightfold_and_heeds_the_background() {
    let t0 = Instant::now();
    // Almost nothing accepted: the cut stops at an eighth.
    let c = cut_by_a_round_of_429s(t0);
    assert_eq!(c.rate(), 125.0);
    // With a background of 25%, half the answers refused is not gross (it takes 55%).
    let mut c = Controller::new(100.0, None, t0);
    (c.bg_x, c.bg_n) = (100.0, 384.0);
    assert!((c.background() - 0.25).abs() < 1e-9);
    let sends: Vec<Ticket> = (0..12).map(|_| c.on_send(t0)).collect();
    every_other_refused(&mut c, &sends, t0);
    assert_eq!(c.rate(), 100.0);
}

#[test]
fn a_probe_that_meets_the_limit_goes_back_under_what_the_server_accepted() {
    let t0 = Instant::now();
    let mut c = Controller::new(1000.0, Some(100.0), t0);
    let from = c.rate();
    // Due for a probe: a clean cruise round after the learned start's probe time.
    let later = t0 + Duration::from_secs(30);
    let sends: Vec<Ticket> = (0..16).map(|_| c.on_send(later)).collect();
    for s in &sends {
        c.on_answer(*s, Answer::Served, later);
    }
    let probe = c.rate();
    assert!((probe - from * PROBE_GAIN).abs() < 1e-6, "{probe}");
    // The probe's sends leave at its rate; a third are refused.
    let sends: Vec<Ticket> = (0..40)
        .map(|i| c.on_send(later + Duration::from_secs_f64(f64::from(i) / probe)))
        .collect();
    let t = later + Duration::from_secs(1);
    for (i, s) in sends.iter().enumerate() {
        let a = if i % 3 == 2 {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, t);
        if c.rate() < probe {
            break;
        }
    }
    // Two thirds accepted at 120/s (80/s) is far under the last clean rate (a third refused
    // is no gross overload): back to 5% under it.
    let back = c.rate();
    assert!(
        (back - from * PROBE_RETURN_MIN).abs() < 1e-6,
        "{back} from {from}"
    );
    // A learned start counts as three probes that met the limit; this is the fourth: the
    // next comes 2.5 s × 2³ later.
    assert_eq!(c.next_probe, Some(t + PROBE_EVERY * 8));
}

#[test]
fn the_background_estimate_forgets_old_evidence() {
    let mut c = Controller::new(100.0, None, Instant::now());
    c.add_background(0, 4000);
    c.add_background(40, 400);
    // The 4,000 clean answers weigh as 400: 40 in 800, seen through the prior of 16.
    let p = c.background();
    assert!((p - 20.0 / 416.0).abs() < 1e-9, "{p}");
}

/// Sends 16 answers spread over 150 ms (a measured send rate of 100/s), `limited` of
/// them 429s, at `t`.
fn round(c: &mut Controller, t: Instant, limited: usize) {
    let sends: Vec<Ticket> = (0..16)
        .map(|i| c.on_send(t + Duration::from_millis(10 * i)))
        .collect();
    let t = t + Duration::from_millis(200);
    for (i, s) in sends.iter().enumerate() {
        let a = if i < limited {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, t);
    }
}

#[test]
fn an_excess_round_steps_down_under_what_the_server_accepted() {
    let t0 = Instant::now();
    let mut c = Controller::new(100.0, None, t0);
    // 4 of 16 refused at 100/s: excess (no background), not gross; 75/s accepted.
    round(&mut c, t0, 4);
    let r = c.rate();
    assert!((r - 75.0 * PACING_MARGIN * STEP_DOWN).abs() < 1e-6, "{r}");
    assert!(matches!(c.phase, Phase::StepDown { .. }));
}

#[test]
fn a_few_429s_extend_the_round_to_four_before_they_count_as_background() {
    let t0 = Instant::now();
    let mut c = Controller::new(100.0, None, t0);
    round(&mut c, t0, 1);
    assert_eq!((c.span, c.rate()), (2, 100.0));
    assert_eq!(c.background(), 0.0);
    round(&mut c, t0 + Duration::from_secs(1), 0);
    assert_eq!(c.span, 4);
    round(&mut c, t0 + Duration::from_secs(2), 0);
    round(&mut c, t0 + Duration::from_secs(3), 0);
    // 1 in 64: background now, and a new round of one.
    assert_eq!(c.span, 1);
    assert!((c.background() - 1.0 / 80.0).abs() < 1e-9);
    assert_eq!(c.rate(), 100.0);
}

/// Ends a step-down from 100/s to 80/s (the server accepted 90/s) whose cruise round had
/// `cx` 429s in `cn` answers, with `x` in `n` in the step-down round.
fn end_step_down(c: &mut Controller, (cx, cn): (u32, u32), (x, n): (u32, u32), t: Instant) {
    c.set_rate(80.0);
    c.phase = Phase::StepDown {
        restore: 100.0,
        x: cx,
        n: cn,
        accepted: 90.0,
    };
    c.end_round(x, n, t);
}

#[test]
fn step_downs_from_one_rate_add_up_and_only_theirs() {
    let t0 = Instant::now();
    let step_down = |steps: Steps, cx: u32| {
        let mut c = Controller::new(100.0, None, t0);
        c.steps = steps;
        end_step_down(&mut c, (cx, 16), (0, 32), t0);
        c
    };
    // 2 in 16 over none in 32 is chance (0.11); with an earlier 2 in 16 and none in 32
    // from the same rate, 4 in 32 over none in 64 is not (0.011): a limit.
    let earlier = Steps {
        rate: 100.0,
        cx: 2,
        cn: 16,
        x: 0,
        n: 32,
    };
    let c = step_down(earlier, 2);
    assert_eq!(c.limit(), Some(90.0));
    assert!((c.rate() - 90.0 * PACING_MARGIN).abs() < 1e-9);
    // The same evidence from another rate does not count.
    let c = step_down(
        Steps {
            rate: 120.0,
            ..earlier
        },
        2,
    );
    assert_eq!((c.limit(), c.rate()), (None, 100.0));
    // The same two step-downs one after the other, from a fresh start: the first is noise,
    // the second adds up to a limit.
    let mut c = Controller::new(100.0, None, t0);
    for _ in 0..2 {
        end_step_down(&mut c, (2, 16), (0, 32), t0);
    }
    assert_eq!(c.limit(), Some(90.0));
    // 1 in 16 twice over none in 32 twice is chance (0.11): noise, the rate comes back.
    let c = step_down(Steps { cx: 1, ..earlier }, 1);
    assert_eq!((c.limit(), c.rate()), (None, 100.0));
}

#[test]
fn a_step_down_finds_a_limit_only_when_the_share_halves() {
    let t0 = Instant::now();
    let step_down = |cx: u32, cn: u32, x: u32, n: u32| {
        let mut c = Controller::new(100.0, None, t0);
        end_step_down(&mut c, (cx, cn), (x, n), t0);
        c
    };
    // 6 in 16, then 1 in 32: fell by far more than half, and not by chance.
    let c = step_down(6, 16, 1, 32);
    assert_eq!(c.limit(), Some(90.0));
    // Found on one round: probed soon.
    assert_eq!(c.next_probe, Some(t0 + PROBE_AFTER_LIMIT));
    // 40 in 64, then 42 in 128: significant, but it did not halve (33% > 31%): noise.
    let c = step_down(40, 64, 42, 128);
    assert_eq!((c.limit(), c.rate()), (None, 100.0));
}

#[test]
fn a_clean_probe_raises_the_limit_and_the_next_probe_goes_higher() {
    let t0 = Instant::now();
    let mut c = Controller::new(1000.0, Some(100.0), t0);
    let later = t0 + Duration::from_secs(30);
    round(&mut c, later, 0);
    assert!((c.rate() - 98.0 * PROBE_GAIN).abs() < 1e-9, "{}", c.rate());
    // The probe round: clean, and long enough (its last send left 0.75 s after its first).
    let start = later + Duration::from_millis(600);
    let sends: Vec<Ticket> = (0..16)
        .map(|i| c.on_send(start + Duration::from_millis(50 * i)))
        .collect();
    for s in &sends {
        c.on_answer(*s, Answer::Served, start + Duration::from_millis(800));
    }
    assert_eq!(c.limit(), Some(122.5));
    // The gain grows ×1.25 (to 1.5625) from the clean rate: 191.4.
    assert!(
        (c.rate() - 122.5 * PROBE_GAIN * PROBE_GAIN).abs() < 1e-9,
        "{}",
        c.rate()
    );
    assert!(matches!(c.phase, Phase::Probe { from } if from == 122.5));
}

/// As after a limit newly estimated: the probe under way is the first since.
fn refining(c: &mut Controller) {
    c.probe_failures = 0;
}

/// A controller started from a learned 100/s, in the probe it is due for after a clean
/// round, 30 s in (from 98/s at 122.5/s); and the time of that round.
fn in_a_probe() -> (Controller, Instant) {
    let t0 = Instant::now();
    let mut c = Controller::new(1000.0, Some(100.0), t0);
    let later = t0 + Duration::from_secs(30);
    round(&mut c, later, 0);
    assert!(matches!(c.phase, Phase::Probe { .. }));
    assert!((c.rate() - 122.5).abs() < 1e-9, "{}", c.rate());
    (c, later)
}

/// A probe (see `in_a_probe`, then `prepare`) whose answers are a burst's 20 served, then
/// one in `every` refused. The index of the answer at which it failed, and the controller.
fn probe_refusing_one_in(
    every: usize,
    prepare: impl FnOnce(&mut Controller),
) -> (Option<usize>, Controller) {
    let (mut c, later) = in_a_probe();
    prepare(&mut c);
    let probe = c.rate();
    let start = later + Duration::from_secs(1);
    let sends: Vec<Ticket> = (0..120)
        .map(|i| c.on_send(start + Duration::from_secs_f64(f64::from(i) / probe)))
        .collect();
    // Answered before the probe has lasted long enough to end clean.
    let t = start + Duration::from_millis(500);
    let mut failed_at = None;
    for (i, s) in sends.iter().enumerate() {
        let a = if i >= 20 && (i - 20) % every == 0 {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, t);
        if c.rate() < probe {
            failed_at = Some(i);
            break;
        }
    }
    (failed_at, c)
}

#[test]
fn the_first_probe_after_a_new_estimate_measures_longer_and_may_rise_a_little() {
    // Refining a new estimate: it fails 24 answers after its first 429 (at 20), and the
    // 23 after that one, 4 refused, say the server accepts 122.5 × 19/23 = 101.2/s: the
    // rate goes 2% under that, above the 98/s it came from.
    let (failed_at, c) = probe_refusing_one_in(5, refining);
    assert_eq!(failed_at, Some(20 + 23));
    let want = 122.5 * 19.0 / 23.0 * PACING_MARGIN;
    assert!(
        (c.rate() - want).abs() < 1e-6,
        "{} against {want}",
        c.rate()
    );
    assert!(c.rate() > 98.0 && c.rate() < 98.0 * PROBE_RISE_MAX);
    assert!((c.limit().unwrap() - 122.5 * 19.0 / 23.0).abs() < 1e-6);
    // A later probe, only confirming a limit: it fails a dozen answers after its first
    // 429, and comes back no higher than where it started.
    let (failed_at, c) = probe_refusing_one_in(5, |_| {});
    assert_eq!(failed_at, Some(20 + 11));
    assert_eq!(c.rate(), 98.0);
}

#[test]
fn a_probe_rises_at_most_five_percent_over_where_it_came_from() {
    // From the first 429 on, one in eight refused: 107/s accepted, far over 98 × 1.05.
    let (failed_at, c) = probe_refusing_one_in(8, refining);
    assert!(failed_at.is_some());
    assert!(
        (c.rate() - 98.0 * PROBE_RISE_MAX).abs() < 1e-9,
        "{}",
        c.rate()
    );
}

#[test]
fn after_a_probe_s_first_429_only_answers_to_later_sends_count() {
    let (mut c, later) = in_a_probe();
    let start = later + Duration::from_secs(1);
    let sends: Vec<Ticket> = (0..8)
        .map(|i| c.on_send(start + Duration::from_millis(8 * i)))
        .collect();
    let t = start + Duration::from_millis(100);
    // The sixth send's 429 comes back first; then the fourth's and fifth's answers (they
    // may have taken the bucket's last tokens): not counted.
    c.on_answer(sends[5], Answer::Limited, t);
    c.on_answer(sends[3], Answer::Served, t);
    c.on_answer(sends[4], Answer::Served, t);
    assert_eq!((c.answers_after, c.limited_after), (1, 1));
    // The seventh's is.
    c.on_answer(sends[6], Answer::Served, t);
    assert_eq!((c.answers_after, c.limited_after), (2, 1));
    assert_eq!(c.answers, 4);
}

#[test]
fn at_its_floor_the_rate_does_not_step_down() {
    let t0 = Instant::now();
    let mut c = Controller::new(10.0, None, t0);
    c.set_rate(0.0);
    assert_eq!(c.rate(), c.floor);
    round(&mut c, t0, 4);
    assert!(matches!(c.phase, Phase::Cruise));
    assert_eq!(c.rate(), c.floor);
}

#[test]
fn a_failed_probe_measures_what_was_accepted_net_of_background() {
    let t0 = Instant::now();
    let mut c = Controller::new(1000.0, Some(100.0), t0);
    (c.bg_x, c.bg_n) = (4.0, 384.0);
    assert!((c.background() - 0.01).abs() < 1e-12);
    // A clean cruise round (20 answers at this background), then the probe.
    let later = t0 + Duration::from_secs(30);
    let sends: Vec<Ticket> = (0..20).map(|_| c.on_send(later)).collect();
    for s in &sends {
        c.on_answer(*s, Answer::Served, later);
    }
    let probe = c.rate();
    assert!(matches!(c.phase, Phase::Probe { .. }));
    // The probe's sends leave at 115/s; from its first 429, 11 more answers, 2 refused.
    let sends: Vec<Ticket> = (0..13)
        .map(|i| c.on_send(later + Duration::from_secs_f64(f64::from(i) / 115.0)))
        .collect();
    let t = later + Duration::from_millis(300);
    for (i, s) in sends.iter().enumerate() {
        let a = if [1, 5, 9].contains(&i) {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, t);
    }
    // 115 × 9/11 / 0.99 = 95.0 accepted, 2% under: 93.1, inside [0.95, 1] × 96.
    let r = c.rate();
    assert!(
        (r - 115.0 * 9.0 / 11.0 / 0.99 * PACING_MARGIN).abs() < 0.1,
        "{r} (probe at {probe})"
    );
}

/// A refining probe (from 98/s at 122.5/s) whose sends span `span_ms`, answered in order
/// `answer_at` after the probe began: 429s from the tenth on, one in four. Whether it ended
/// clean (the rate went higher), failed (lower), or is still under way.
fn a_probe_answered(span_ms: u64, answer_at: Duration, answers: usize) -> f64 {
    let (mut c, later) = in_a_probe();
    refining(&mut c);
    let start = later + Duration::from_secs(1);
    let sends: Vec<Ticket> = (0..answers as u64)
        .map(|i| c.on_send(start + Duration::from_millis(span_ms * i / answers as u64)))
        .collect();
    for (i, s) in sends.iter().enumerate() {
        let a = if i >= 10 && (i - 10) % 4 == 0 {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, start + answer_at);
    }
    c.rate()
}

/// Issue 31's mixed server (30/s and 10 in flight, 200 ms): a probe 25% over the bucket
/// ended clean at its 16th answer, 0.7 s after its first send, with 429s among them (the
/// answers to its first 0.5 s only, before its first 429's followers could show the limit),
/// and the next probe went 56% over.
#[test]
fn a_probe_that_met_a_429_ends_clean_only_once_the_answers_after_it_could_show_the_limit() {
    // 16 answers 0.8 s in, to sends of its first 0.75 s: long enough, but 6 answers after
    // its first 429 (at the tenth), not 24: still under way.
    let rate = a_probe_answered(750, Duration::from_millis(800), 16);
    assert!((rate - 122.5).abs() < 1e-9, "{rate}");
    // Once 24 answers after it are in, one in four refused: the limit, and back under.
    let rate = a_probe_answered(1500, Duration::from_millis(1600), 40);
    assert!(rate < 122.5, "{rate}");
}

/// A probe is long enough once an answer to a send made 0.7 s into it is back, not 0.7 s
/// after its first send: at 200 ms of latency that saw the answers to its first 0.5 s only,
/// before a full bucket had drained.
#[test]
fn a_probe_is_long_enough_by_when_its_answered_sends_left() {
    let (mut c, later) = in_a_probe();
    let start = later + Duration::from_secs(1);
    // 24 sends in its first 0.5 s, all served, answered 0.2 s later (0.7 s in).
    let sends: Vec<Ticket> = (0..24)
        .map(|i| c.on_send(start + Duration::from_millis(500 * i / 24)))
        .collect();
    for s in &sends {
        c.on_answer(*s, Answer::Served, start + Duration::from_millis(700));
    }
    assert!(matches!(c.phase, Phase::Probe { .. }));
    assert!((c.rate() - 122.5).abs() < 1e-9, "{}", c.rate());
    // A send 0.7 s in, answered: clean.
    let last = c.on_send(start + Duration::from_millis(700));
    c.on_answer(last, Answer::Served, start + Duration::from_millis(900));
    assert!(c.rate() > 122.5, "{}", c.rate());
}

/// A 429 the in-flight window holds for its verdict: the round it belongs to is not judged
/// clean until it is back (a bucket's 429s, held, let probes up to 3× over it pass as clean,
/// and came back after the rate had changed, when they no longer counted).
#[test]
fn a_round_is_not_judged_clean_while_its_429s_are_held() {
    let (mut c, later) = in_a_probe();
    let start = later + Duration::from_secs(1);
    let sends: Vec<Ticket> = (0..20)
        .map(|i| c.on_send(start + Duration::from_millis(50 * i)))
        .collect();
    let t = start + Duration::from_millis(1100);
    c.on_held(sends[0]);
    for s in &sends[1..] {
        c.on_answer(*s, Answer::Served, t);
    }
    // Long enough and 19 served, but one 429 held: still the probe.
    assert!((c.rate() - 122.5).abs() < 1e-9, "{}", c.rate());
    assert!(matches!(c.phase, Phase::Probe { .. }));
    // Back as the in-flight limit's: no evidence about the rate, and the round is clean.
    c.on_released(sends[0], false, t);
    assert!(c.rate() > 122.5, "{}", c.rate());
}

/// A run that starts from a limit learned 6% high (first runs against a 100/s bucket handed
/// on 103-107/s) paces 4% over the limit: its 429s, 2-4% of the sends, are not significant
/// round by round, and were taken as background. The step-down test on a round well over the
/// background's share keeps them from becoming it: the background stays near none (the server
/// has none), the share of 429s and the limit handed on come down.
#[test]
fn a_limit_learned_a_little_high_is_not_taken_for_background() {
    let (mut learned, mut high_background) = (Vec::new(), 0);
    for seed in 0..16 {
        let mut s = Server::new(Some(100.0), 0.0, seed);
        let c = Controller::new(1000.0, Some(106.0), Instant::now());
        let o = drive_until(c, &mut s, 2000, 0.03, 32);
        let share = o.limited as f64 / (o.served + o.limited) as f64;
        assert!(share <= 0.02, "seed {seed}: 429 share {share:.4}");
        high_background += usize::from(o.controller.background() > 0.01);
        let Learned::Limit(l) = o.controller.learned() else {
            panic!("seed {seed}: no limit learned");
        };
        learned.push(l);
    }
    learned.sort_by(f64::total_cmp);
    // Without the test: 9 of 16 backgrounds over 0.01, a median of 104.9/s handed on.
    assert_eq!(high_background, 0, "backgrounds over 0.01");
    assert!(learned[8] <= 103.0, "median handed on {:.1}", learned[8]);
}

/// A probe that met a second 429 a few answers after its first looks twice as long before it
/// may end clean (see `SECOND_LOOK`): two in a dozen are not significant, and a probe 18% over
/// a bucket whose burst was nearly spent passed on them, the next probe going 56% over it.
#[test]
fn a_probe_that_meets_a_second_429_looks_twice_as_long() {
    let (mut c, later) = in_a_probe();
    let probe = c.rate();
    let start = later + Duration::from_secs(1);
    // Sends 40 ms apart, answered at 3 s: from the 18th on (0.72 s in), long enough by time.
    let sends: Vec<Ticket> = (0..60)
        .map(|i| c.on_send(start + Duration::from_millis(40 * i)))
        .collect();
    let t = start + Duration::from_secs(3);
    // The burst: 10 served. Then the first 429 (at 10), a second at 16, and one in five from
    // the 23rd.
    let refused = |i: usize| i == 10 || i == 16 || (i >= 23 && (i - 23).is_multiple_of(5));
    let mut changed_at = None;
    for (i, s) in sends.iter().enumerate() {
        let a = if refused(i) {
            Answer::Limited
        } else {
            Answer::Served
        };
        c.on_answer(*s, a, t);
        if c.rate() != probe {
            changed_at = Some(i);
            break;
        }
    }
    // A dozen answers from the first 429 (at 21), two 429s: not significant, and the probe
    // ended clean there, the rate going up. It goes on, and the third 429 (at 23) fails it.
    assert_eq!(changed_at, Some(23));
    assert!(c.rate() < probe, "{}", c.rate());
    assert!(matches!(c.phase, Phase::Cruise));
}
