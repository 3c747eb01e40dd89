//! Deterministic simulation testing (issue 27): the real store, recorder and executor, run
//! single-threaded on a paused clock against an in-process simulated API, with crashes and
//! Ctrl-C at every network event, checked against the server's ground truth after every step.
//! One seed decides everything; a failure prints the line that replays it.
//!
//! - `LOGZIO_TOKENS_SIM_SEED=0x…` replays one seed (and prints its trace);
//! - `LOGZIO_TOKENS_SIM_SEEDS=N` runs N seeds instead of the CI range;
//! - `LOGZIO_TOKENS_SIM_SOAK=1` sweeps every crash point of small sealed runs with rotation;
//! - 30% of the seeds also create 1-3 sub accounts (`Scenario::new_accounts`): the account
//!   side of the simulated API (create, the lagging list, the shipping-token read) and the
//!   checker's exactly-once checks for accounts (`check::accounts_once`, `no_account_lost`,
//!   `recorded_accounts_are_the_servers`);
//! - with `--features reintroduce` and `LOGZIO_TOKENS_REINTRODUCE=<bug>` (src/reintroduced.rs),
//!   `sim::seeds_until_a_reintroduced_bug_is_found` measures how soon the sweep finds that bug.
//!
//! docs/reliability.md says what the simulation models, what it does not, and its figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

mod api;
mod check;
mod driver;
mod fs;
mod watch;

use api::AtEvent;
use driver::{Op, Scenario, Verdict};

/// Seeds CI runs (sized to about 60 s with the stall family on the project's loaded 2-core
/// machine: 19 seeds/s at a load of 6, 8-12 at a load of 12-18). 700 since 30% of the seeds
/// also create sub accounts (such a seed costs about 1.6 times one without): the range takes
/// the time 800 seeds took before.
const CI_SEEDS: u64 = 700;

/// Findings still open on main. A problem tagged with one is reported by the sweep, kept as a
/// regression case below, and does not fail the CI range. Remove a tag once its fix is on main.
/// (None now: `misrouted-recreate`, the last one, is fixed: a token replaced for being
/// `revoked` stays on the remove-by-hand list until a verify confirms its deletion.)
const OPEN_FINDINGS: &[&str] = &[];

/// The finding a problem reproduces, when the checker tagged it (the text before `: `).
fn finding_of(problem: &str) -> Option<&str> {
    let tag = problem
        .split(": ")
        .find(|p| p.starts_with("issue 25 defect") || p.starts_with("finding "))?;
    Some(tag)
}

/// The issue-25 defect number a problem reproduces, when it does.
fn defect_of(problem: &str) -> Option<u32> {
    finding_of(problem)?
        .strip_prefix("issue 25 defect ")?
        .parse()
        .ok()
}

/// Whether every problem of a verdict is a known, open finding.
fn only_open_findings(v: &Verdict) -> bool {
    v.problems
        .iter()
        .all(|p| finding_of(p).is_some_and(|f| OPEN_FINDINGS.contains(&f)))
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn replay_line(seed: u64) -> String {
    format!(
        "replay: LOGZIO_TOKENS_SIM_SEED={seed:#x} cargo test --locked --test integration sim::seeds -- --nocapture"
    )
}

fn report(v: &Verdict) -> String {
    format!(
        "seed {:#x} failed ({} problems):\n  {}\n{}",
        v.scenario.seed,
        v.problems.len(),
        v.problems.join("\n  "),
        replay_line(v.scenario.seed)
    )
}

/// The first seed of the stall family (see `Scenario::of`).
const STALL_FAMILY: u64 = 1 << 63;
/// Stall-family seeds CI runs (a stall advances the paused clock: it costs no real time).
const CI_STALL_SEEDS: u64 = 60;

/// Runs `seeds`; returns the failing verdicts.
fn sweep(seeds: impl Iterator<Item = u64>) -> (u64, Vec<Verdict>) {
    let mut ran = 0;
    let mut failed = Vec::new();
    for seed in seeds {
        ran += 1;
        let v = driver::run(seed);
        if !v.problems.is_empty() {
            failed.push(v);
        }
    }
    (ran, failed)
}

/// Runs a range and fails on any problem that is not an open issue-25 finding.
fn sweep_and_judge(base: u64, n: u64) {
    let started = std::time::Instant::now();
    let (ran, failed) = sweep(base..base + n);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sim: seeds {base:#x}.. : {ran} in {secs:.1}s ({:.1} seeds/s), {} with problems",
        ran as f64 / secs,
        failed.len()
    );
    let (findings, failed): (Vec<Verdict>, Vec<Verdict>) =
        failed.into_iter().partition(only_open_findings);
    for v in &findings {
        let found: std::collections::BTreeSet<&str> =
            v.problems.iter().filter_map(|p| finding_of(p)).collect();
        eprintln!(
            "sim: finding: seed {:#x} reproduces {found:?}",
            v.scenario.seed
        );
    }
    if !failed.is_empty() {
        let seeds: Vec<String> = failed
            .iter()
            .map(|v| format!("{:#x}", v.scenario.seed))
            .collect();
        eprintln!(
            "sim: {} of {ran} seeds failed: {}",
            failed.len(),
            seeds.join(" ")
        );
    }
    let first: Vec<String> = failed.iter().take(3).map(report).collect();
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds failed\n{}",
        failed.len(),
        first.join("\n")
    );
}

#[test]
fn seeds_with_stalls() {
    if std::env::var_os("LOGZIO_TOKENS_SIM_SEED").is_some() {
        return;
    }
    let n = env_u64("LOGZIO_TOKENS_SIM_STALL_SEEDS").unwrap_or(CI_STALL_SEEDS);
    sweep_and_judge(STALL_FAMILY, n);
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("LOGZIO_TOKENS_SIM_SEED") {
        let v = driver::run(seed);
        for line in &v.trace {
            println!("{line}");
        }
        println!("trace {}", v.trace_hash());
        assert!(v.problems.is_empty(), "{}", report(&v));
        return;
    }
    let n = env_u64("LOGZIO_TOKENS_SIM_SEEDS").unwrap_or(CI_SEEDS);
    let base = env_u64("LOGZIO_TOKENS_SIM_BASE").unwrap_or(0);
    sweep_and_judge(base, n);
}

#[test]
fn a_seed_decides_its_scenario() {
    for seed in 0..50 {
        assert_eq!(
            format!("{:?}", Scenario::of(seed)),
            format!("{:?}", Scenario::of(seed))
        );
    }
    assert_ne!(
        format!("{:?}", Scenario::of(1)),
        format!("{:?}", Scenario::of(2))
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    // Seed 3 also creates sub accounts (their lookups, list lag and read faults).
    assert!(!Scenario::of(3).new_accounts.is_empty());
    for seed in [1, 3, 7, 42] {
        let a = driver::run(seed);
        let b = driver::run(seed);
        if let Some(i) =
            (0..a.trace.len().max(b.trace.len())).find(|&i| a.trace.get(i) != b.trace.get(i))
        {
            panic!(
                "seed {seed:#x}: the traces differ at line {i}:\n  {:?}\n  {:?}",
                a.trace.get(i),
                b.trace.get(i)
            );
        }
        assert_eq!(a.trace_hash(), b.trace_hash());
    }
}

/// A 10-token sealed state, rotated with a crash at `at`, then applied to the end.
fn sealed_rotation(crash: Op) -> Scenario {
    let mut sc = aimed(true, 10);
    sc.ops = vec![Op::apply(false), crash, Op::apply(false)];
    sc
}

/// The soak mode: every filesystem call and every network event of a 10-token sealed apply
/// with rotation, as a process crash and as a power loss.
#[test]
#[ignore = "soak: LOGZIO_TOKENS_SIM_SOAK=1 cargo test --test integration sim::soak -- --ignored --nocapture"]
fn soak_every_crash_point_of_a_sealed_rotation() {
    // How many calls and events a rotation makes, from a run without a crash.
    let v = driver::run_scenario(sealed_rotation(Op::apply(true)));
    let step = |line: &str| line.starts_with("fs ") || line.starts_with("net ");
    let rotation: Vec<&String> = v
        .trace
        .iter()
        .skip_while(|l| !l.starts_with("check 0"))
        .skip(1)
        .take_while(|l| !l.starts_with("check 1"))
        .filter(|l| step(l))
        .collect();
    let calls = rotation.iter().filter(|l| l.starts_with("fs ")).count() as u64;
    let events = rotation.iter().filter(|l| l.starts_with("net ")).count() as u64;
    let mut problems = Vec::new();
    let mut points = 0;
    let started = std::time::Instant::now();
    for power in [false, true] {
        for n in 1..=calls {
            let crash = Op::Apply {
                rotate: true,
                stop: None,
                stall: None,
                disk: Some((n, driver::AtCall::Crash)),
                power,
            };
            points += 1;
            let v = driver::run_scenario(sealed_rotation(crash));
            if !only_open_findings(&v) {
                problems.push(format!(
                    "disk crash at call {n} (power loss {power}): {}",
                    v.problems.join("; ")
                ));
            }
        }
        for n in 1..=events {
            let crash = Op::Apply {
                rotate: true,
                stop: Some((n, AtEvent::Crash)),
                stall: None,
                disk: None,
                power,
            };
            points += 1;
            let v = driver::run_scenario(sealed_rotation(crash));
            if !only_open_findings(&v) {
                problems.push(format!(
                    "network crash at event {n} (power loss {power}): {}",
                    v.problems.join("; ")
                ));
            }
        }
    }
    eprintln!(
        "sim soak: {points} crash points ({calls} calls, {events} events, x2) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} of {points} crash points failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Seeds that once failed, kept as regression cases, with the finding each reproduced on main
/// when found. A seed whose finding is still open passes as a finding (reported); any other
/// problem fails it.
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (0x26, "issue 25 defect 1"),
    (0x58, "issue 25 defect 1, 11"),
    (0xf2, "issue 25 defect 11"),
    (0x136, "issue 25 defect 8"),
    (0x5e, "finding save-window"),
    (
        0xcd,
        "finding save-window (no longer since the scenarios drew more foreign writes)",
    ),
    (0x8000_0000_0000_0004, "issue 25 defect 1"),
    (0x66, "finding misrouted-recreate"),
    (
        0x8000_0000_0003_0d4d,
        "finding journal-name: the journal's directory fsync failed and was ignored",
    ),
    (
        0x8000_0000_0000_0072,
        "finding checkpoint-rename: after a checkpoint's rename, a failed directory fsync kept the old journal file",
    ),
];

#[test]
fn regression_seeds() {
    for &(seed, found) in REGRESSION_SEEDS {
        let v = driver::run(seed);
        if !v.problems.is_empty() {
            assert!(only_open_findings(&v), "{}", report(&v));
            eprintln!("sim: regression seed {seed:#x} still reproduces {found} (open)");
        }
    }
}

fn key(i: usize) -> logzio_tokens::key::TokenKey {
    logzio_tokens::key::TokenKey {
        account_id: 160_343,
        token_name: format!("t{i}"),
    }
}

/// An aimed scenario's start: seed 0's, with no random faults, `sealed` or not, and `keys`
/// tokens in one account; the caller sets its operations.
fn aimed(sealed: bool, keys: usize) -> Scenario {
    let mut sc = Scenario::of(0);
    sc.sealed = sealed;
    sc.faults = logzio_tokens::simulator::FaultRates::default();
    sc.keys = (0..keys).map(key).collect();
    sc
}

fn apply(stop: Option<(u64, AtEvent)>, stall: Option<u64>) -> Op {
    Op::Apply {
        rotate: false,
        stop,
        stall,
        disk: None,
        power: false,
    }
}

/// Issue 25 defect 1: a sealed run's mid-run checkpoint names tokens whose secrets are only in
/// the journal; a crash then leaves a results file ahead of its sealed files.
fn defect_1_scenario() -> Scenario {
    let mut sc = aimed(true, 8);
    sc.ops = vec![
        apply(Some((12, AtEvent::Crash)), Some(6)),
        apply(None, None),
    ];
    sc
}

/// Issue 25 defect 6: with a server that always answers 500 after creating, every run spends
/// a fresh ambiguity budget on the same key.
fn defect_6_scenario() -> Scenario {
    let mut sc = Scenario::of(0);
    sc.sealed = false;
    sc.faults = logzio_tokens::simulator::FaultRates {
        error_after_create: 1.0,
        ..logzio_tokens::simulator::FaultRates::default()
    };
    sc.keys = vec![key(0)];
    sc.ops = vec![Op::apply(false), Op::apply(false), Op::apply(false)];
    sc
}

fn expect_clean(sc: Scenario) {
    let v = driver::run_scenario(sc);
    assert!(
        v.problems.is_empty(),
        "{}\ntrace:\n{}",
        v.problems.join("\n"),
        v.trace.join("\n")
    );
}

#[test]
fn issue_25_defect_1_a_sealed_checkpoint_never_runs_ahead_of_its_sealed_file() {
    expect_clean(defect_1_scenario());
}

#[test]
fn issue_25_defect_6_the_ambiguity_budget_holds_across_runs() {
    expect_clean(defect_6_scenario());
}

/// The two scenarios above reproduce their defects on today's main: the checker names them.
/// (Delete a defect's half once its fix is on main and its test above is no longer ignored.)
#[test]
fn the_open_defects_are_reproduced() {
    for (sc, defect) in [(defect_1_scenario(), 1), (defect_6_scenario(), 6)] {
        if !OPEN_FINDINGS.contains(&format!("issue 25 defect {defect}").as_str()) {
            continue;
        }
        let v = driver::run_scenario(sc);
        assert!(
            v.problems.iter().any(|p| defect_of(p) == Some(defect)),
            "defect {defect} not reproduced:\n{}",
            v.trace.join("\n")
        );
    }
}

/// A crashed run leaves a journal; the next run's recovery save renames the results file, and
/// another program replaces it right then: the run must notice before its final save.
fn save_window_scenario() -> Scenario {
    let mut sc = aimed(false, 4);
    sc.ops = vec![
        Op::apply(false),
        Op::Apply {
            rotate: true,
            stop: Some((4, AtEvent::Crash)),
            stall: None,
            disk: None,
            power: false,
        },
        Op::Apply {
            rotate: false,
            stop: None,
            stall: None,
            disk: Some((0, driver::AtCall::ForeignAfterRename(0))),
            power: false,
        },
    ];
    sc
}

#[test]
fn another_programs_results_file_is_never_overwritten_after_a_recovery_save() {
    expect_clean(save_window_scenario());
}

/// The save-window finding: a crashed rotation leaves a journal; the next run's saves write
/// the secrets file and then the results file, and another program replaces the results file
/// right after the secrets file's rename. Before the fix `Store::save` had checked the results
/// file before writing the secrets file, and overwrote the replacement.
fn save_window_during_the_secrets_write() -> Scenario {
    let mut sc = save_window_scenario();
    sc.ops[2] = Op::Apply {
        rotate: false,
        stop: None,
        stall: None,
        disk: Some((0, driver::AtCall::ForeignAfterSecretsRename(0))),
        power: false,
    };
    sc
}

#[test]
fn another_programs_results_file_is_never_overwritten_while_the_secrets_file_is_written() {
    let v = driver::run_scenario(save_window_during_the_secrets_write());
    assert!(
        v.trace.iter().any(|l| l.starts_with("PLANT")),
        "the scenario no longer reaches its window:\n{}",
        v.trace.join("\n")
    );
    assert!(
        v.problems.is_empty(),
        "{}\ntrace:\n{}",
        v.problems.join("\n"),
        v.trace.join("\n")
    );
}

/// How soon the sweep finds a bug put back with the `reintroduce` feature (the bug named by
/// `LOGZIO_TOKENS_REINTRODUCE`, see `src/reintroduced.rs`): from each of five starting
/// points, in the plain family and in the stall family, the number of seeds run until the
/// first one that fails (at most `LOGZIO_TOKENS_SIM_SEEDS`, 2000 by default).
#[cfg(feature = "reintroduce")]
#[test]
#[ignore = "measurement: LOGZIO_TOKENS_REINTRODUCE=<bug> cargo test --features reintroduce --test integration sim::seeds_until -- --ignored --nocapture"]
fn seeds_until_a_reintroduced_bug_is_found() {
    let bug = std::env::var("LOGZIO_TOKENS_REINTRODUCE").unwrap_or_default();
    let most = env_u64("LOGZIO_TOKENS_SIM_SEEDS").unwrap_or(2000);
    let started = std::time::Instant::now();
    let mut ran = 0u64;
    for family in [0, STALL_FAMILY] {
        let mut found = Vec::new();
        for start in 0..5u64 {
            let base = family + start * 100_000;
            let mut n = 0;
            let first = loop {
                if n == most {
                    break None;
                }
                let v = driver::run(base + n);
                n += 1;
                // A finding still open on main fails seeds without any bug put back.
                if !v.problems.is_empty() && !only_open_findings(&v) {
                    break Some((n, v));
                }
            };
            ran += n;
            match first {
                Some((n, v)) => {
                    eprintln!(
                        "sim: {bug}: from {base:#x}: found at seed #{n} ({:#x}): {}",
                        v.scenario.seed,
                        v.problems[0].chars().take(200).collect::<String>()
                    );
                    found.push(n.to_string());
                }
                None => {
                    eprintln!("sim: {bug}: from {base:#x}: not found in {most} seeds");
                    found.push(format!(">{most}"));
                }
            }
        }
        eprintln!(
            "sim: {bug}: {} family: seeds until found from 5 starting points: {}",
            if family == 0 { "plain" } else { "stall" },
            found.join(", ")
        );
    }
    eprintln!(
        "sim: {ran} seeds in {:.1}s ({:.1} seeds/s)",
        started.elapsed().as_secs_f64(),
        ran as f64 / started.elapsed().as_secs_f64()
    );
}

/// An intent acknowledged before its fsync: a power loss right after the journal write that
/// holds only intents, once the requests went out, loses the intents, and the tokens their
/// requests created are then neither recorded nor possible orphans.
fn intent_unsynced_scenario(k: u64) -> Scenario {
    let mut sc = aimed(false, 6);
    sc.ops = vec![
        Op::Apply {
            rotate: false,
            stop: None,
            stall: None,
            disk: Some((0, driver::AtCall::CrashAfterIntents { k, then: 1 })),
            power: true,
        },
        Op::apply(false),
    ];
    sc
}

#[test]
fn a_power_loss_right_after_intents_are_written_loses_nothing() {
    for k in 0..3 {
        let v = driver::run_scenario(intent_unsynced_scenario(k));
        assert!(
            v.trace.iter().any(|l| l.starts_with("AIM")),
            "the aimed crash never came:\n{}",
            v.trace.join("\n")
        );
        assert!(
            v.problems.is_empty(),
            "{}\ntrace:\n{}",
            v.problems.join("\n"),
            v.trace.join("\n")
        );
    }
}

/// Issue 25 defect 12: a sealed state, and then a run without recipients (the manifest lost
/// them): it must be refused, never write the secrets in plaintext.
fn defect_12_scenario() -> Scenario {
    let mut sc = aimed(true, 3);
    sc.ops = vec![Op::apply(false), Op::Unsealed, Op::Export];
    sc
}

/// Issue 25 defect 10: another program seals a false secret to the public recipient and puts
/// it in the sealed directory; export must not hand it out.
fn defect_10_scenario() -> Scenario {
    let mut sc = aimed(true, 3);
    sc.ops = vec![Op::apply(false), Op::PlantSealed(1), Op::Export];
    sc
}

/// Issue 25 defect 13: a sealed rotation crashed after a mid-run checkpoint, then export:
/// every key's exported secret must be its current token's, not a replaced one's.
fn defect_13_scenario() -> Scenario {
    let mut sc = defect_1_scenario();
    sc.ops = vec![
        Op::apply(false),
        Op::Apply {
            rotate: true,
            stop: Some((12, AtEvent::Crash)),
            stall: Some(6),
            disk: None,
            power: false,
        },
        Op::Export,
        Op::apply(false),
        Op::Export,
    ];
    sc
}

#[test]
fn issue_25_defect_12_a_sealed_state_is_never_continued_in_plaintext() {
    let v = driver::run_scenario(defect_12_scenario());
    assert!(
        v.trace.iter().any(|l| l.contains("refused")),
        "the run without recipients was not refused:\n{}",
        v.trace.join("\n")
    );
    assert!(v.problems.is_empty(), "{}", v.problems.join("\n"));
}

#[test]
fn issue_25_defect_10_a_planted_sealed_file_is_never_exported() {
    let v = driver::run_scenario(defect_10_scenario());
    assert!(
        v.trace.iter().any(|l| l.starts_with("plant sealed /")),
        "nothing was planted:\n{}",
        v.trace.join("\n")
    );
    assert!(v.problems.is_empty(), "{}", v.problems.join("\n"));
}

#[test]
fn issue_25_defect_13_export_after_a_crashed_sealed_rotation_hands_out_current_secrets() {
    expect_clean(defect_13_scenario());
}

/// Issue 25 defect 9: an import into a fresh state, then a verify against another endpoint:
/// the import binds the results file to its endpoint, so the verify is refused rather than
/// marking a working token revoked and taking the file to the other endpoint.
fn defect_9_scenario() -> Scenario {
    let mut sc = aimed(false, 2);
    sc.ops = vec![Op::Import(0), Op::SwitchEndpoint, Op::Verify];
    sc
}

/// Issue 25 defect 14: `import --from` an export whose second row lists the first row's
/// current token as one it replaced: refused, nothing recorded.
fn defect_14_scenario() -> Scenario {
    let mut sc = aimed(true, 3);
    sc.ops = vec![Op::ImportFrom { tamper: true }, Op::apply(false)];
    sc
}

/// Issue 25 defect 15: a rotation leaves replaced tokens to delete by hand; a verify through
/// a misrouted endpoint (403 to every whoami) must not take them off that list.
fn defect_15_scenario() -> Scenario {
    let mut sc = aimed(false, 3);
    sc.ops = vec![Op::apply(false), Op::apply(true), Op::VerifyMisrouted];
    sc
}

#[test]
fn issue_25_defect_9_an_import_binds_the_results_file_to_its_endpoint() {
    let v = driver::run_scenario(defect_9_scenario());
    assert!(
        v.trace
            .iter()
            .any(|l| l.starts_with("import ") && l.ends_with("saved=ok")),
        "nothing was imported:\n{}",
        v.trace.join("\n")
    );
    assert!(
        v.trace.iter().any(|l| l.starts_with("verify refused")),
        "the verify against the other endpoint was not refused:\n{}",
        v.trace.join("\n")
    );
    assert!(v.problems.is_empty(), "{}", v.problems.join("\n"));
}

#[test]
fn issue_25_defect_14_an_export_listing_a_current_token_as_replaced_is_refused() {
    let v = driver::run_scenario(defect_14_scenario());
    assert!(
        v.trace
            .iter()
            .any(|l| l.starts_with("import --from") && l.contains("tampered with Some")),
        "the export was not tampered with:\n{}",
        v.trace.join("\n")
    );
    assert!(
        v.problems.is_empty(),
        "{}\n{}",
        v.problems.join("\n"),
        v.trace.join("\n")
    );
}

#[test]
fn issue_25_defect_15_a_misrouted_verify_keeps_replaced_tokens_to_delete() {
    let v = driver::run_scenario(defect_15_scenario());
    assert!(
        v.trace.iter().any(|l| l.starts_with("verify: 6 probed")),
        "the misrouted verify did not probe the replaced tokens:\n{}",
        v.trace.join("\n")
    );
    assert!(v.problems.is_empty(), "{}", v.problems.join("\n"));
}

/// The filesystem call (counted from the start of the first operation, as a disk fault is
/// aimed) that is `call` right after `after` in the first operation of `sc`, played without a
/// disk fault.
fn aimed_call(sc: &Scenario, after: &str, call: &str) -> u64 {
    let mut dry = sc.clone();
    if let Some(Op::Apply { disk, .. }) = dry.ops.first_mut() {
        *disk = None;
    }
    let v = driver::run_scenario(dry);
    let calls: Vec<(u64, &str)> = v
        .trace
        .iter()
        .take_while(|l| !l.starts_with("check 0"))
        .filter_map(|l| {
            let (n, what) = l.strip_prefix("fs ")?.split_once(' ')?;
            Some((n.parse().ok()?, what))
        })
        .collect();
    let i = calls
        .windows(2)
        .position(|w| w[0].1 == after && w[1].1 == call)
        .unwrap_or_else(|| panic!("no `{call}` after `{after}`:\n{}", v.trace.join("\n")));
    // The state directory's mkdir, before the first operation, is call 1.
    calls[i + 1].0 - 1
}

/// A first apply whose `disk` fault strikes the fsync of the journal's directory right after
/// `after` (the journal's create, or a checkpoint's rename onto it), crashed at network event
/// `crash` (`power`: a power loss), then an apply to the end.
fn journal_dir_fsync_fails(after: &str, stall: Option<u64>, crash: u64, power: bool) -> Scenario {
    let mut sc = aimed(false, 8);
    sc.ops = vec![
        Op::Apply {
            rotate: false,
            stop: Some((crash, AtEvent::Crash)),
            stall,
            disk: None,
            power,
        },
        Op::apply(false),
    ];
    let n = aimed_call(&sc, after, "fsync-dir state");
    sc.ops[0] = Op::Apply {
        rotate: false,
        stop: Some((crash, AtEvent::Crash)),
        stall,
        disk: Some((
            n,
            driver::AtCall::Fault(fs::Fault::Fail(fs::Errno::NoSpace)),
        )),
        power,
    };
    sc
}

/// Found by the account seeds (0x8000000000030d4d): the fsync of the state directory after
/// the journal's create failed (ENOSPC) and was ignored ("best effort"); the run sent its
/// requests with intents in a journal whose name was not durable, and a power loss took the
/// journal with acknowledged outcomes in it. Now that failure stops the run before any send.
#[test]
fn a_journal_whose_name_is_not_durable_is_never_written_to() {
    let mut sc = journal_dir_fsync_fails("open m.results.journal", None, 12, true);
    // A power loss that loses the journal's name (the seed decides which pending directory
    // entries reach the disk).
    sc.seed = 2;
    let v = driver::run_scenario(sc);
    assert!(
        v.problems.is_empty(),
        "{}\ntrace:\n{}",
        v.problems.join("\n"),
        v.trace.join("\n")
    );
    assert!(
        v.trace
            .iter()
            .any(|l| l.starts_with("apply") && l.contains("-> recorder refused")),
        "the run was not refused:\n{}",
        v.trace.join("\n")
    );
}

/// Found by the account seeds (0x8000000000000072): a checkpoint renamed the fresh journal
/// over the old one, the directory's fsync then failed (ENOSPC) and was taken for "no room,
/// the current journal stays": the run went on writing outcomes to the old file, which no name
/// reached any more, and a crash (not even a power loss) lost acknowledged tokens. Now the
/// renamed file is the journal, and the failed fsync stops the run.
#[test]
fn a_checkpoint_whose_rename_is_not_durable_keeps_writing_to_the_renamed_journal() {
    let v = driver::run_scenario(journal_dir_fsync_fails(
        "rename m.results.journal",
        Some(6),
        14,
        false,
    ));
    assert!(
        v.problems.is_empty(),
        "{}\ntrace:\n{}",
        v.problems.join("\n"),
        v.trace.join("\n")
    );
}
