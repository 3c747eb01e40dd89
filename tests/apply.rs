//! `apply` through the real binary against the simulator: the records it leaves are checked
//! against the simulator's ground truth (every token that really exists), through faults,
//! crashes and Ctrl-C, and the refusals that must send nothing send nothing.
//!
//! The invariant checked after every run: every token the simulator created is either recorded
//! (same id, same secret) or its (account, name) is listed as a possible orphan; a successful run
//! leaves every desired token recorded; the results file never holds a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use logzio_tokens::simulator::{FaultRates, RegionMismatch, SimConfig};
use serde_json::Value;

use crate::util::{Env, OWNER_TOKEN, Run, interrupt, manifest_yaml, mode, wait_until};

/// The simulator's default sub accounts.
const ACCOUNTS: [i64; 6] = [160_343, 160_344, 160_345, 160_346, 160_347, 160_348];
/// Not a sub account of the simulator's owner.
const UNKNOWN: i64 = 999_999;

/// How long any one run of the binary may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// (account id, token name).
type Key = (u32, String);

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:02}")).collect()
}

fn manifest(accounts: &[i64], names: &[String]) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    manifest_yaml(accounts, &names)
}

fn desired(accounts: &[i64], names: &[String]) -> BTreeSet<Key> {
    accounts
        .iter()
        .flat_map(|a| names.iter().map(move |n| (*a as u32, n.clone())))
        .collect()
}

/// A workspace with a simulator and a manifest `m.yaml`; state files `m.results.json` and
/// `m.secrets.json` beside it (passed explicitly to every run).
struct Case {
    env: Env,
    manifest: PathBuf,
    desired: BTreeSet<Key>,
}

impl Case {
    fn new(config: SimConfig, accounts: &[i64], names: &[String]) -> Case {
        let env = Env::with_sim(config);
        let manifest = env.write("m.yaml", &manifest(accounts, names));
        let desired = desired(
            &accounts
                .iter()
                .copied()
                .filter(|a| *a != UNKNOWN)
                .collect::<Vec<_>>(),
            names,
        );
        Case {
            env,
            manifest,
            desired,
        }
    }

    fn results(&self) -> PathBuf {
        self.env.path("m.results.json")
    }

    fn secrets(&self) -> PathBuf {
        self.env.path("m.secrets.json")
    }

    fn journal(&self) -> PathBuf {
        self.env.path("m.results.journal")
    }

    fn lock(&self) -> PathBuf {
        self.env.path("m.results.lock")
    }

    /// `apply m.yaml --yes` with the explicit state paths, plus `extra`.
    fn apply_cmd(&self, extra: &[&str]) -> Command {
        let mut c = self.env.cmd();
        c.arg("apply")
            .arg(&self.manifest)
            .arg("--yes")
            .arg("--results")
            .arg(self.results())
            .arg("--secrets")
            .arg(self.secrets())
            .args(extra);
        c
    }

    fn apply(&self, extra: &[&str]) -> Run {
        run(self.apply_cmd(extra))
    }

    fn truth_len(&self) -> usize {
        self.env.sim().ground_truth().len()
    }

    fn load(&self) -> Recorded {
        Recorded::load(&self.results(), &self.secrets())
    }

    /// The invariant after any run (see the module docs); with `complete`, also that every
    /// desired token is recorded. Returns what is recorded.
    fn check(&self, complete: bool) -> Recorded {
        let truth = self.env.sim().ground_truth();
        let rec = self.load();
        for key in rec.tokens.keys() {
            assert!(
                self.desired.contains(key),
                "recorded but not desired: {key:?}"
            );
        }
        // Every record is a real token, of its key, with its secret; every real token is
        // recorded or listed for a check by hand (a duplicate always): nothing is lost.
        let expect = crate::truth::Expect {
            complete,
            lossless: true,
        };
        let problems = crate::truth::check_records(&self.desired, &truth, &rec, expect);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        for t in &truth {
            // No secret in the results file, not even part of one.
            assert!(
                !rec.results_text.contains(&t.token[..13]),
                "the results file holds (part of) a secret"
            );
        }
        if self.secrets().exists() {
            assert_eq!(mode(&self.secrets()), 0o600, "secrets file mode");
        }
        rec
    }
}

impl crate::truth::Records for Recorded {
    fn tokens(&self) -> &BTreeMap<Key, i64> {
        &self.tokens
    }
    fn secrets(&self) -> &BTreeMap<Key, (i64, String)> {
        &self.secrets
    }
    fn orphans(&self) -> &BTreeSet<Key> {
        &self.orphans
    }
}

/// What the state files hold, read as the contract describes them.
#[derive(Debug, Default)]
struct Recorded {
    /// From the results file: key -> token id.
    tokens: BTreeMap<Key, i64>,
    /// From the secrets file: key -> (token id, secret).
    secrets: BTreeMap<Key, (i64, String)>,
    /// From the results file.
    orphans: BTreeSet<Key>,
    /// From the results file.
    failures: Vec<Value>,
    results_text: String,
}

impl Recorded {
    fn load(results: &Path, secrets: &Path) -> Recorded {
        let mut rec = Recorded::default();
        if let Ok(text) = std::fs::read_to_string(results) {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["version"], 1);
            for (acc, tokens) in v["accounts"].as_object().unwrap() {
                for (name, r) in tokens.as_object().unwrap() {
                    let keys: BTreeSet<&str> =
                        r.as_object().unwrap().keys().map(String::as_str).collect();
                    assert!(
                        keys.iter()
                            .all(|k| ["token_id", "created_at", "source"].contains(k)),
                        "unexpected fields in a results entry: {keys:?}"
                    );
                    rec.tokens.insert(
                        (acc.parse().unwrap(), name.clone()),
                        r["token_id"].as_i64().unwrap(),
                    );
                }
            }
            for o in v["possible_orphans"].as_array().unwrap() {
                rec.orphans.insert((
                    o["account_id"].as_u64().unwrap() as u32,
                    o["token_name"].as_str().unwrap().to_owned(),
                ));
            }
            rec.failures = v["failures"].as_array().unwrap().clone();
            rec.results_text = text;
        }
        if let Ok(text) = std::fs::read_to_string(secrets) {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["version"], 1);
            for (acc, tokens) in v["accounts"].as_object().unwrap() {
                for (name, s) in tokens.as_object().unwrap() {
                    rec.secrets.insert(
                        (acc.parse().unwrap(), name.clone()),
                        (
                            s["token_id"].as_i64().unwrap(),
                            s["token"].as_str().unwrap().to_owned(),
                        ),
                    );
                }
            }
        }
        rec
    }

    fn keys(&self) -> BTreeSet<Key> {
        self.tokens.keys().cloned().collect()
    }
}

/// A running binary whose output is read as it comes (so a chatty run never blocks on a full
/// pipe, and a test can wait for a line).
struct Spawned {
    child: Child,
    stdout: Output,
    stderr: Output,
}

/// One output stream of a child, collected by a thread.
struct Output {
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

impl Output {
    fn read(mut r: impl Read + Send + 'static) -> Output {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Output { bytes, thread }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn finish(self) -> String {
        let Output { bytes, thread } = self;
        thread.join().unwrap();
        String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned()
    }
}

fn spawn(mut cmd: Command) -> Spawned {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Output::read(child.stdout.take().unwrap());
    let stderr = Output::read(child.stderr.take().unwrap());
    Spawned {
        child,
        stdout,
        stderr,
    }
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit (killing the binary and failing the test after `limit`).
    fn finish(mut self, limit: Duration) -> Run {
        let ended = wait_until(limit, || self.child.try_wait().unwrap().is_some());
        if !ended {
            let _ = self.child.kill();
        }
        let status = self.child.wait().unwrap();
        let run = Run {
            code: status.code(),
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        };
        assert!(
            ended,
            "the binary did not finish within {limit:?}\n--- stderr\n{}",
            run.stderr
        );
        run
    }

    /// SIGKILL: no chance to clean up.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn run(cmd: Command) -> Run {
    spawn(cmd).finish(RUN_LIMIT)
}

fn mode_if_exists(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.mode() & 0o777)
}

fn every_fault() -> FaultRates {
    FaultRates {
        rate_limited: 0.10,
        unavailable: 0.05,
        error_after_create: 0.03,
        drop_before_create: 0.03,
        drop_after_create: 0.03,
        truncate_after_create: 0.02,
        slow_after_create: 0.02,
    }
}

/// Every secret the simulator handed out, and the owner token: none may show in `text`.
fn assert_no_secret(case: &Case, what: &str, text: &str) {
    assert!(!text.contains(OWNER_TOKEN), "{what} shows the owner token");
    for t in case.env.sim().ground_truth() {
        assert!(
            !text.contains(&t.token[..13]),
            "{what} shows (part of) the secret of token {}",
            t.id
        );
    }
}

#[test]
fn happy_path_records_every_token_and_a_rerun_creates_none() {
    let case = Case::new(
        SimConfig {
            latency: Duration::from_millis(40),
            ..SimConfig::default()
        },
        &ACCOUNTS,
        &["ci".into(), "grafana".into()],
    );
    let mut child = spawn(case.apply_cmd(&["--concurrency", "2"]));
    // While it runs: the journal (which holds secrets) and the secrets file are 0600 whenever
    // they exist.
    let mut journal_seen = false;
    wait_until(RUN_LIMIT, || {
        if let Some(m) = mode_if_exists(&case.journal()) {
            assert_eq!(m, 0o600, "journal mode");
            journal_seen = true;
        }
        if let Some(m) = mode_if_exists(&case.secrets()) {
            assert_eq!(m, 0o600, "secrets file mode");
        }
        !child.running()
    });
    let first = child.finish(RUN_LIMIT);
    first.expect_code(0);
    assert!(journal_seen, "the journal never appeared during the run");
    assert!(
        !case.journal().exists(),
        "the journal is removed after a clean run"
    );
    assert_eq!(case.truth_len(), 12, "one token per desired token");
    let rec = case.check(true);
    assert!(rec.orphans.is_empty(), "{:?}", rec.orphans);
    assert!(rec.failures.is_empty(), "{:?}", rec.failures);
    assert_eq!(mode(&case.secrets()), 0o600);

    let before = case.env.sim().counters();
    let again = case.apply(&[]);
    again.expect_code(0);
    let after = case.env.sim().counters();
    assert_eq!(case.truth_len(), 12, "a re-run creates nothing");
    assert_eq!(after.created, before.created);
    assert!(
        after.requests - before.requests <= 2,
        "a re-run sends only the preflight's reads"
    );
    assert_eq!(
        case.check(true).tokens,
        rec.tokens,
        "the records are unchanged"
    );
}

#[test]
fn mixed_faults_converge_with_every_token_recorded_or_reported() {
    let names = names(10);
    let mut seen = logzio_tokens::simulator::Counters::default();
    for seed in [11, 12, 13] {
        let case = Case::new(
            SimConfig {
                seed,
                faults: every_fault(),
                slow_delay: Duration::from_secs(3),
                ..SimConfig::default()
            },
            &ACCOUNTS,
            &names,
        );
        // Re-run until done, as an operator who checked the possible orphans would (the budget
        // across runs is `promises::the_ambiguity_budget_holds_across_runs_until_orphans_clear`).
        let args = [
            "--request-timeout",
            "1",
            "--rate",
            "200",
            "--resend-ambiguous",
        ];
        let mut runs = 0;
        loop {
            runs += 1;
            let r = case.apply(&args);
            // Whatever the faults did, the state files tell the truth after every run.
            case.check(false);
            match r.code {
                Some(0) => break,
                Some(1) if runs < 4 => {}
                _ => panic!(
                    "seed {seed}, run {runs}: exit {:?}\n--- stderr\n{}",
                    r.code, r.stderr
                ),
            }
        }
        case.check(true);
        let c = case.env.sim().counters();
        seen.fault_429 += c.fault_429;
        seen.fault_503 += c.fault_503;
        seen.error_500_after_create += c.error_500_after_create;
        seen.dropped_before_create += c.dropped_before_create;
        seen.dropped_after_create += c.dropped_after_create;
        seen.truncated_after_create += c.truncated_after_create;
        seen.slow_after_create += c.slow_after_create;

        let truth = case.truth_len();
        case.apply(&args).expect_code(0);
        assert_eq!(
            case.truth_len(),
            truth,
            "seed {seed}: a final re-run creates nothing"
        );
        case.check(true);
    }
    // The seeds did play every kind of fault.
    for (name, n) in [
        ("429", seen.fault_429),
        ("503", seen.fault_503),
        ("500 after create", seen.error_500_after_create),
        ("drop before", seen.dropped_before_create),
        ("drop after", seen.dropped_after_create),
        ("truncate", seen.truncated_after_create),
        ("slow", seen.slow_after_create),
    ] {
        assert!(n > 0, "no {name} fault was played: {seen:?}");
    }
}

/// 25 token names in each of the accounts (150 tokens), answered after 20 ms: a run long
/// enough to be interrupted part-way.
fn slow_case_of_150() -> Case {
    Case::new(
        SimConfig {
            latency: Duration::from_millis(20),
            ..SimConfig::default()
        },
        &ACCOUNTS,
        &names(25),
    )
}

#[test]
fn crashes_at_any_point_lose_no_token() {
    let case = slow_case_of_150();
    assert_eq!(case.desired.len(), 150);
    let args = ["--rate", "100"];
    for point in [5, 40, 100] {
        let mut child = spawn(case.apply_cmd(&args));
        let reached = wait_until(RUN_LIMIT, || case.truth_len() >= point);
        assert!(
            child.running(),
            "the run ended before the crash point {point}"
        );
        child.crash();
        assert!(reached, "the simulator never had {point} tokens");
        // What a crash leaves behind holds secrets: 0600.
        if let Some(m) = mode_if_exists(&case.journal()) {
            assert_eq!(m, 0o600, "journal mode after a crash");
        }
        if let Some(m) = mode_if_exists(&case.secrets()) {
            assert_eq!(m, 0o600, "secrets file mode after a crash");
        }
    }
    assert!(case.truth_len() < 150, "the last crash came too late");
    assert!(
        case.journal().exists(),
        "a crash mid-run leaves the journal"
    );
    let last = case.apply(&args);
    last.expect_code(0);
    assert!(
        last.stderr.contains("recovered an interrupted run"),
        "{}",
        last.stderr
    );
    // Every token the crashed runs received was recovered; those in flight at a crash are
    // possible orphans; the manifest is covered.
    case.check(true);
    assert!(!case.journal().exists());
}

#[test]
fn ctrl_c_drains_saves_and_exits_130() {
    let case = slow_case_of_150();
    let child = spawn(case.apply_cmd(&["--rate", "50"]));
    assert!(wait_until(RUN_LIMIT, || case.truth_len() >= 10));
    interrupt(child.pid());
    let run = child.finish(RUN_LIMIT);
    run.expect_code(130);
    let created = case.truth_len();
    assert!(
        created < 150,
        "the interrupt came too late to test anything"
    );
    // Everything received is saved: recorded with its secret, or a possible orphan.
    let rec = case.check(false);
    assert!(!rec.tokens.is_empty(), "nothing was recorded");

    case.apply(&["--rate", "200"]).expect_code(0);
    case.check(true);
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_the_next_run_recovers() {
    // Slow answers keep requests in flight, so the first Ctrl-C has something to wait for.
    let case = Case::new(
        SimConfig {
            seed: 5,
            faults: FaultRates {
                slow_after_create: 0.3,
                ..FaultRates::default()
            },
            slow_delay: Duration::from_secs(30),
            ..SimConfig::default()
        },
        &ACCOUNTS,
        &["ci".into(), "grafana".into()],
    );
    let mut child = spawn(case.apply_cmd(&["--request-timeout", "60"]));
    assert!(wait_until(RUN_LIMIT, || {
        let c = case.env.sim().counters();
        c.slow_after_create >= 2 && c.created > c.slow_after_create
    }));
    interrupt(child.pid());
    assert!(
        wait_until(RUN_LIMIT, || child.stderr.text().contains("Ctrl-C again")),
        "no word of the drain: {}",
        child.stderr.text()
    );
    assert!(child.running(), "it waits for the slow requests in flight");
    interrupt(child.pid());
    // At once: long before the slow answers would come.
    let run = child.finish(Duration::from_secs(10));
    run.expect_code(130);
    // The journal keeps what was received; it holds secrets.
    assert_eq!(mode(&case.journal()), 0o600);

    let mut runs = 0;
    loop {
        runs += 1;
        let r = case.apply(&["--request-timeout", "1", "--resend-ambiguous"]);
        if runs == 1 {
            assert!(r.stderr.contains("recovered"), "{}", r.stderr);
        }
        case.check(false);
        match r.code {
            Some(0) => break,
            Some(1) if runs < 4 => {}
            other => panic!("run {runs}: exit {other:?}\n{}", r.stderr),
        }
    }
    let rec = case.check(true);
    // The requests abandoned in flight are possible orphans (their tokens exist, unrecorded).
    assert!(!rec.orphans.is_empty());
}

#[test]
fn an_unknown_sub_account_fails_by_itself() {
    let accounts = [ACCOUNTS[0], UNKNOWN, ACCOUNTS[1]];
    let case = Case::new(
        SimConfig::default(),
        &accounts,
        &["ci".into(), "grafana".into()],
    );
    let run = case.apply(&[]);
    run.expect_code(1);
    let rec = case.check(true);
    assert_eq!(
        case.truth_len(),
        4,
        "the other accounts' tokens were created"
    );
    for name in ["ci", "grafana"] {
        let f = rec
            .failures
            .iter()
            .find(|f| f["account_id"] == UNKNOWN && f["token_name"] == name)
            .unwrap_or_else(|| panic!("no failure for {UNKNOWN}/{name}: {:?}", rec.failures));
        let error = f["error"].as_str().unwrap_or_default();
        assert!(
            f["http_status"] == 404 || error.contains("not a sub account"),
            "{f}"
        );
    }
    assert_eq!(rec.failures.len(), 2, "{:?}", rec.failures);
    assert!(run.stderr.contains(&UNKNOWN.to_string()), "{}", run.stderr);
}

#[test]
fn a_wrong_owner_token_stops_before_any_write() {
    let case = Case::new(SimConfig::default(), &ACCOUNTS[..2], &["ci".into()]);
    let wrong = "wrong-token-5d1c-0ddba11";
    let mut cmd = case.apply_cmd(&[]);
    cmd.env("LOGZIO_API_TOKEN", wrong);
    let run = run(cmd);
    run.expect_code(3);
    let c = case.env.sim().counters();
    assert_eq!(c.created, 0);
    // Only the preflight's two reads (sent together), both refused.
    assert_eq!(c.requests, 2, "{c:?}");
    assert_eq!(c.forbidden_403, 2);
    assert!(run.stderr.contains("403"), "{}", run.stderr);
    assert!(run.stderr.contains("owner"), "{}", run.stderr);
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));
}

#[test]
fn a_region_mismatch_stops_and_names_the_region() {
    let case = Case::new(
        SimConfig {
            region_mismatch: Some(RegionMismatch {
                account_region: "eu".into(),
                server_region: "us".into(),
            }),
            ..SimConfig::default()
        },
        &ACCOUNTS[..2],
        &["ci".into()],
    );
    let run = case.apply(&[]);
    run.expect_code(3);
    assert!(run.stderr.contains("--region eu"), "{}", run.stderr);
    assert_eq!(case.env.sim().counters().created, 0);
}

#[test]
fn a_second_run_is_refused_by_the_lock() {
    let case = Case::new(
        SimConfig {
            latency: Duration::from_millis(400),
            ..SimConfig::default()
        },
        &ACCOUNTS,
        &["ci".into()],
    );
    let mut first = spawn(case.apply_cmd(&["--concurrency", "1"]));
    assert!(wait_until(RUN_LIMIT, || {
        std::fs::read_to_string(case.lock()).is_ok_and(|s| s.contains("pid"))
    }));
    let second = case.apply(&[]);
    assert!(
        first.running(),
        "the first run ended before the second was refused"
    );
    second.expect_code(3);
    let lock = case.lock().display().to_string();
    assert!(second.stderr.contains(&lock), "{}", second.stderr);
    first.finish(RUN_LIMIT).expect_code(0);
    // The first run created each token once; the second created none.
    assert_eq!(case.truth_len(), 6);
    case.check(true);
}

#[test]
fn without_yes_and_no_terminal_nothing_is_sent() {
    let case = Case::new(SimConfig::default(), &ACCOUNTS[..2], &["ci".into()]);
    let mut cmd = case.env.cmd();
    cmd.arg("apply")
        .arg(&case.manifest)
        .arg("--results")
        .arg(case.results())
        .arg("--secrets")
        .arg(case.secrets());
    let run = run(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(case.env.sim().counters().requests, 0, "nothing was sent");
    assert!(!case.results().exists());
}

#[test]
fn no_token_at_all_is_a_usage_error_naming_the_variable() {
    let case = Case::new(SimConfig::default(), &ACCOUNTS[..2], &["ci".into()]);
    let mut cmd = case.apply_cmd(&[]);
    cmd.env_remove("LOGZIO_API_TOKEN");
    let run = run(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("LOGZIO_API_TOKEN"), "{}", run.stderr);
    assert_eq!(case.env.sim().counters().requests, 0, "nothing was sent");
}

#[test]
fn simulate_needs_no_environment_and_keeps_its_own_files() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&ACCOUNTS[..2], &["ci", "grafana"]));
    let mut cmd = env.cmd();
    for var in ["LOGZIO_API_TOKEN", "LOGZIO_API_URL", "LOGZIO_REGION"] {
        cmd.env_remove(var);
    }
    cmd.args(["apply", "m.yaml", "--simulate", "--yes"]);
    let run = run(cmd);
    run.expect_code(0);
    let results = env.path("m.simulated.results.json");
    let secrets = env.path("m.simulated.secrets.json");
    let rec = Recorded::load(&results, &secrets);
    assert_eq!(
        rec.keys(),
        desired(&ACCOUNTS[..2], &["ci".into(), "grafana".into()])
    );
    for (key, id) in &rec.tokens {
        assert_eq!(rec.secrets[key].0, *id);
    }
    assert_eq!(mode(&secrets), 0o600);
    assert!(
        !env.path("m.results.json").exists(),
        "real records untouched"
    );
    assert!(
        !env.path("m.secrets.json").exists(),
        "real secrets untouched"
    );
}

#[test]
fn json_output_is_versioned_lines_without_secrets() {
    let case = Case::new(
        SimConfig {
            seed: 7,
            faults: FaultRates {
                error_after_create: 0.2,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        },
        &ACCOUNTS,
        &["ci".into(), "grafana".into()],
    );
    // Enough ambiguous attempts that every item ends created at this fault rate.
    let run = case.apply(&["--output", "json", "--max-ambiguous", "6"]);
    run.expect_code(0);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        assert_eq!(l["v"], 1, "{l}");
        let t = l["type"].as_str().unwrap_or_default();
        assert!(
            ["plan_counts", "item", "ambiguous", "summary"].contains(&t),
            "unexpected type: {l}"
        );
        assert_line_shape(t, l);
        *types.entry(t.to_owned()).or_default() += 1;
    }
    assert_eq!(types.get("plan_counts"), Some(&1));
    assert_eq!(types.get("summary"), Some(&1));
    assert_eq!(
        lines.last().unwrap()["type"],
        "summary",
        "the summary comes last"
    );
    let summary = lines.iter().find(|l| l["type"] == "summary").unwrap();
    assert_eq!(summary["created"], 12);
    let created_items = lines
        .iter()
        .filter(|l| l["type"] == "item" && l["result"] == "created")
        .count();
    assert_eq!(created_items, 12);
    let ambiguous = case.env.sim().counters().error_500_after_create;
    assert!(ambiguous > 0, "the seed played no 500");
    assert_eq!(
        types.get("ambiguous").copied().unwrap_or(0) as u64,
        ambiguous
    );
    let rec = case.check(true);
    assert_eq!(summary["possible_orphans"], rec.orphans.len());
    assert_no_secret(&case, "stdout", &run.stdout);
}

/// Each line type has exactly its documented fields, each of its documented JSON type
/// (scripts rely on the shape, not only on the counts).
fn assert_line_shape(kind: &str, line: &Value) {
    use Value as V;
    let num = |v: &V| v.is_number();
    let int = |v: &V| v.is_u64() || v.is_i64();
    let text = |v: &V| v.is_string();
    let int_or_null = |v: &V| v.is_u64() || v.is_null();
    type Fields = Vec<(&'static str, fn(&V) -> bool)>;
    let (required, optional): (Fields, Fields) = match kind {
        "plan_counts" => (
            vec![
                ("create", int),
                ("endpoint", text),
                ("failed_before_start", int),
                ("manifest", text),
                ("present", int),
                ("remove_by_hand", int),
                ("replace", int),
            ],
            vec![],
        ),
        "item" => (
            vec![
                ("account_id", int),
                ("attempts", int),
                // Token lines; a sub account's say "account" (tests/onboard.rs).
                ("kind", |v: &V| v == "token"),
                ("result", text),
                ("token_name", text),
            ],
            vec![
                ("token_id", int),
                ("http_status", int_or_null),
                ("error", text),
            ],
        ),
        "ambiguous" => (
            vec![
                ("account_id", int),
                ("detail", text),
                ("kind", |v: &V| v == "token"),
                ("token_name", text),
            ],
            vec![],
        ),
        "summary" => (
            vec![
                ("accounts_created", int),
                ("accounts_failed", int),
                ("already_present", int),
                ("ambiguous", int),
                ("attempts", int),
                ("created", int),
                ("elapsed_seconds", num),
                ("exit_code", int),
                ("failed", int),
                ("final_rate_per_second", num),
                ("not_attempted", int),
                ("possible_orphans", int),
                ("rate_limited", int),
                ("results_file", text),
                ("retries", int),
                ("secrets_file", text),
                ("stop", text),
                ("max_ambiguous", int),
                ("ambiguity_exhausted", int),
                ("ambiguity_breaker", |v: &V| v.is_boolean()),
                ("learned_limit_per_second", |v: &V| {
                    v.is_number() || v.is_null()
                }),
                ("learned_limit_in_flight", |v: &V| v.is_u64() || v.is_null()),
                ("server_limit", |v: &V| v.is_string() || v.is_null()),
                // Empty unless the final save failed.
                ("unsaved", |v: &V| {
                    v.as_array().is_some_and(|a| a.is_empty())
                }),
            ],
            vec![],
        ),
        other => panic!("unknown line type {other}"),
    };
    let obj = line.as_object().unwrap();
    for (field, check) in &required {
        let v = obj
            .get(*field)
            .unwrap_or_else(|| panic!("{kind} line without `{field}`: {line}"));
        assert!(
            check(v),
            "{kind} line: `{field}` has the wrong type: {line}"
        );
    }
    for (field, v) in obj {
        if field == "type" || field == "v" || required.iter().any(|(f, _)| f == field) {
            continue;
        }
        let check = optional
            .iter()
            .find(|(f, _)| f == field)
            .unwrap_or_else(|| panic!("{kind} line has an undocumented field `{field}`: {line}"));
        assert!(
            (check.1)(v),
            "{kind} line: `{field}` has the wrong type: {line}"
        );
    }
    if kind == "item" {
        match line["result"].as_str() {
            Some("created") => assert!(line["token_id"].is_i64() || line["token_id"].is_u64()),
            Some("failed") => assert!(line["error"].is_string(), "{line}"),
            other => panic!("item result {other:?}: {line}"),
        }
    }
}

#[test]
fn no_secret_shows_even_at_the_highest_verbosity() {
    for (label, verbose, rust_log) in [
        ("-vvv", true, None),
        ("RUST_LOG=trace", false, Some("trace")),
    ] {
        let case = Case::new(
            SimConfig {
                seed: 3,
                faults: FaultRates {
                    error_after_create: 0.1,
                    drop_after_create: 0.1,
                    truncate_after_create: 0.1,
                    ..FaultRates::default()
                },
                ..SimConfig::default()
            },
            &ACCOUNTS,
            &["ci".into(), "grafana".into()],
        );
        // 30% of the creates answer ambiguously here: allow more than the default 2 per token.
        let mut cmd = case.apply_cmd(if verbose {
            &["-vvv", "--max-ambiguous", "6"]
        } else {
            &["--max-ambiguous", "6"]
        });
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let run = run(cmd);
        run.expect_code(0);
        assert!(
            run.stderr.contains("DEBUG"),
            "{label}: the logs were not verbose:\n{}",
            run.stderr
        );
        let c = case.env.sim().counters();
        assert!(c.truncated_after_create + c.dropped_after_create + c.error_500_after_create > 0);
        assert_no_secret(&case, &format!("{label}: stdout"), &run.stdout);
        assert_no_secret(&case, &format!("{label}: stderr"), &run.stderr);
        case.check(true);
    }
}

#[test]
fn a_saved_plan_creates_exactly_what_it_planned_and_a_stale_one_is_refused() {
    let case = Case::new(SimConfig::default(), &ACCOUNTS[..3], &["ci".into()]);
    let state = |c: &mut Command| {
        c.arg("--results")
            .arg(case.results())
            .arg("--secrets")
            .arg(case.secrets());
    };
    let plan_out = |file: &str| {
        let mut c = case.env.cmd();
        c.arg("plan")
            .arg(&case.manifest)
            .arg("--out")
            .arg(case.env.path(file));
        state(&mut c);
        run(c).expect_code(0);
        case.env.json(file)
    };
    let apply_plan = |file: &str| {
        let mut c = case.env.cmd();
        c.arg("apply").arg(case.env.path(file)).arg("--yes");
        state(&mut c);
        run(c)
    };

    let plan = plan_out("p1.json");
    assert_eq!(case.env.sim().counters().created, 0, "plan sends no write");
    let planned: BTreeSet<Key> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|k| assert_eq!(k["kind"], "create"))
        .map(|k| {
            (
                k["account_id"].as_u64().unwrap() as u32,
                k["token_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(planned, case.desired);
    apply_plan("p1.json").expect_code(0);
    let truth: Vec<Key> = case
        .env
        .sim()
        .ground_truth()
        .iter()
        .map(|t| (t.account_id as u32, t.name.clone()))
        .collect();
    assert_eq!(truth.len(), planned.len(), "each planned token once");
    assert_eq!(truth.into_iter().collect::<BTreeSet<_>>(), planned);
    case.check(true);

    // A plan made now, then the manifest changes: the plan is stale.
    plan_out("p2.json");
    let mut text = std::fs::read_to_string(&case.manifest).unwrap();
    text.push_str(&format!("  - id: {}\n    tokens: [ci]\n", ACCOUNTS[3]));
    std::fs::write(&case.manifest, text).unwrap();
    let before = case.env.sim().counters();
    let stale = apply_plan("p2.json");
    stale.expect_code(2);
    assert!(stale.stderr.contains("stale plan"), "{}", stale.stderr);
    assert_eq!(case.env.sim().counters().created, before.created);

    // A plan made now, then another run records tokens: stale too.
    plan_out("p3.json");
    let mut direct = case.env.cmd();
    direct.arg("apply").arg(&case.manifest).arg("--yes");
    state(&mut direct);
    run(direct).expect_code(0);
    let before = case.env.sim().counters();
    let stale = apply_plan("p3.json");
    stale.expect_code(2);
    assert!(stale.stderr.contains("stale plan"), "{}", stale.stderr);
    assert!(stale.stderr.contains("results"), "{}", stale.stderr);
    assert_eq!(case.env.sim().counters().created, before.created);
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let accounts: Vec<i64> = std::iter::once(UNKNOWN).chain(ACCOUNTS).collect();
    let case = Case::new(
        SimConfig::default(),
        &accounts,
        &["a".into(), "b".into(), "c".into()],
    );
    assert_eq!(case.desired.len(), 18, "creatable tokens");
    let run = case.apply(&["--fail-fast"]);
    run.expect_code(1);
    assert!(
        case.truth_len() < case.desired.len(),
        "--fail-fast went on to create all {} other tokens",
        case.truth_len()
    );
    let rec = case.check(false);
    assert!(
        rec.failures.iter().any(|f| f["account_id"] == UNKNOWN),
        "{:?}",
        rec.failures
    );
}

/// The executor's pacer, as `apply` drives it: a 429 that comes before any answer was accepted
/// (the very first request of a run, or the first after a pause) carries no measurement of what
/// the server accepts, so it must not collapse the rate to the floor.
#[test]
fn a_429_before_any_accepted_answer_does_not_cut_the_rate_to_the_floor() {
    use logzio_tokens::execution::{DEFAULT_RATE_PER_SECOND, Pacer};
    let pacer = Pacer::new(DEFAULT_RATE_PER_SECOND, true);
    let start = pacer.snapshot().rate;
    pacer.on_rate_limited(None);
    let after = pacer.snapshot().rate;
    assert!(
        after >= start / 2.0,
        "one 429 on the first request cut the rate from {start}/s to {after}/s"
    );
}
