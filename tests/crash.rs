//! Crashes: the real binary is killed with SIGKILL at seeded moments — during its first second,
//! after N tokens exist on the server, while the journal is written at a high rate, right when
//! the last token is created (so the kill lands in the final file writes) — and then resumed
//! until it exits 0. Nothing received may be lost (every token the server created is recorded
//! or listed as a possible orphan), nothing recorded may be wrong, and a re-run creates nothing.
//! Possible orphans only where an answer never arrived: a token whose full answer the simulator
//! delivered may be unrecorded only if it was created while a killed run ran and that run's
//! journal held its key in flight; every listed orphan needs a create whose answer did not
//! arrive or a request in flight at a kill (`chaos::check_orphans`).
//! A state directory that stops being writable mid-run must stop the run with exit 3 and a clear
//! message, with every received secret still in the journal.
//!
//! CI size: a few seeds with three kills each, three journal-write seeds, four final-write kills.
//! Soak (more seeds, more tokens, more kill points), with a one-line summary on stderr:
//!
//! ```text
//! LOGZIO_TOKENS_SOAK=1 cargo test --release --test integration crash -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logzio_tokens::simulator::{FaultRates, SimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::chaos::{
    Expect, Key, Kill, Recorded, Scenario, Tally, Truth, Workload, apply_cmd, check_all, converge,
    converge_and_check, in_parallel, many_accounts_one_token, one_account_many_tokens, soak,
};
use crate::util::{Env, Files, mode, wait_until};

/// Records read right after a kill: nothing recorded may be wrong, but the files may lag
/// behind the journal until the next run replays it.
const AFTER_KILL: Expect = Expect {
    complete: false,
    lossless: false,
};

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the start.
    Elapsed(Duration),
    /// Once the server has created this many more tokens than when the run started.
    Created(usize),
    /// The instant the server has created every token the manifest asks for (the run is then
    /// recording the last outcomes and writing its final files).
    AllCreated(usize),
}

/// What a kill did.
#[derive(Debug, Default)]
struct KillStats {
    kills: u64,
    missed: u64,
    /// Temp files left by writes the kills interrupted.
    leftovers: u64,
    /// Secrets killed runs' journals held as received (each checked after the resume).
    journal_secrets: u64,
}

fn spawn(env: &Env, files: &Files, extra: &[&str]) -> Child {
    apply_cmd(env, files, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs apply and SIGKILLs it at `at`. Returns when it ran and was gone if the kill happened
/// (the run may have finished first), with the keys its journal then held in flight.
fn run_and_kill(env: &Env, files: &Files, extra: &[&str], at: KillAt) -> Option<Kill> {
    let created = || usize::try_from(env.sim().counters().created).unwrap();
    let base = created();
    let start = Instant::now();
    let mut child = spawn(env, files, extra);
    let exited = |child: &mut Child| child.try_wait().unwrap().is_some();
    let deadline = Duration::from_secs(120);
    match at {
        KillAt::Elapsed(d) => {
            assert!(wait_until(deadline, || exited(&mut child) || start.elapsed() >= d));
        }
        KillAt::Created(n) => {
            assert!(
                wait_until(deadline, || exited(&mut child) || created() >= base + n),
                "the run neither finished nor created {n} tokens"
            );
        }
        KillAt::AllCreated(total) => {
            // A tight loop, so the kill follows the last creation as closely as possible.
            let until = Instant::now() + deadline;
            while created() < total && !exited(&mut child) {
                assert!(
                    Instant::now() < until,
                    "the run never created {total} tokens"
                );
                std::thread::yield_now();
            }
        }
    }
    if exited(&mut child) {
        return None;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A request the run wrote just before it died may reach the simulator, and be created
    // and answered into a dead socket, after the exit was reaped: the run's window ends once
    // the simulator has finished every connection the run opened.
    assert!(
        wait_until(Duration::from_secs(10), || env.sim().open_connections()
            == 0),
        "the simulator kept a killed run's connection open"
    );
    Some(Kill {
        from: start,
        to: Instant::now(),
        in_flight: journal_after_kill(&files.journal()).1,
    })
}

/// What a journal left by a killed run holds: the created outcomes, (key, token id) -> secret,
/// and the keys of intents without an outcome (in flight at the kill). A cut-short last line
/// (the kill came mid-write) holds nothing yet.
fn journal_after_kill(journal: &Path) -> (BTreeMap<(Key, i64), String>, BTreeSet<Key>) {
    let mut out = BTreeMap::new();
    let mut pending: BTreeMap<u64, Key> = BTreeMap::new();
    let Some(text) = crate::util::journal_text(journal) else {
        return (out, BTreeSet::new());
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // `begin` (the endpoint) and `sealed` (a sealed file about to be written) carry no
        // request.
        if v["kind"] != "intent" && v["kind"] != "outcome" {
            continue;
        }
        let seq = v["seq"].as_u64().unwrap();
        if v["kind"] == "intent" {
            let key = (
                u32::try_from(v["account_id"].as_u64().unwrap()).unwrap(),
                v["token_name"].as_str().unwrap().to_owned(),
            );
            pending.insert(seq, key);
            continue;
        }
        pending.remove(&seq);
        if v["kind"] == "outcome" && v["result"] == "created" {
            let key = (
                v["account_id"].as_u64().unwrap() as u32,
                v["token_name"].as_str().unwrap().to_owned(),
            );
            // A sealed run's record holds the secret sealed: opened with the test identity.
            let secret = match v["token"].as_str() {
                Some(t) => t.to_owned(),
                None => {
                    let sealed = v["sealed"]
                        .as_str()
                        .expect("a created record holds its secret");
                    let doc = crate::chaos::test_identities()
                        .open_bytes(journal, sealed.as_bytes())
                        .unwrap();
                    let rec = doc.accounts[&key.0][&key.1].clone();
                    rec.token.expose().to_owned()
                }
            };
            out.insert((key, v["token_id"].as_i64().unwrap()), secret);
        }
    }
    (out, pending.into_values().collect())
}

/// After a kill: whatever is on disk parses, nothing recorded is wrong, and every possible
/// orphan listed is one an answer never arrived for (or in flight at one of `kills`).
fn check_after_kill(
    env: &Env,
    files: &Files,
    desired: &BTreeSet<Key>,
    kills: &[Kill],
    label: &str,
) -> Vec<String> {
    for p in [&files.results, &files.secrets] {
        if let Ok(bytes) = std::fs::read(p)
            && serde_json::from_slice::<Value>(&bytes).is_err()
        {
            return vec![format!(
                "{label}: {} is not valid JSON after the kill",
                p.display()
            )];
        }
    }
    if files.secrets.exists() && mode(&files.secrets) != 0o600 {
        return vec![format!("{label}: the secrets file is not 0600")];
    }
    if files.journal().exists() && mode(&files.journal()) != 0o600 {
        return vec![format!("{label}: the journal is not 0600")];
    }
    let mut problems = crate::chaos::invariant_one(files, &format!("{label} right after the kill"));
    problems.extend(
        check_now(env, files, desired, kills, AFTER_KILL)
            .into_iter()
            .map(|p| format!("{label} right after the kill: {p}")),
    );
    problems
}

/// The files as they are, against what the simulator knows ([`check_all`]).
fn check_now(
    env: &Env,
    files: &Files,
    desired: &BTreeSet<Key>,
    kills: &[Kill],
    expect: Expect,
) -> Vec<String> {
    let mut problems = Vec::new();
    let truth = Truth::read(env, kills, &mut problems);
    problems.extend(check_all(desired, &truth, &Recorded::read(files), expect));
    problems
}

/// Temp files left beside the state by killed writes: they must not leak secrets (0600 when
/// they hold any). Returns how many there are.
fn leftover_temp_files(dir: &Path, problems: &mut Vec<String>) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // `.NAME.<random>.tmp`: the temp file of an atomic write of NAME.
        if name.starts_with('.') && name.ends_with(".tmp") {
            n += 1;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("\"token\"") && mode(&path) != 0o600 {
                problems.push(format!(
                    "leftover temp file {} holds secrets with mode {:o}",
                    path.display(),
                    mode(&path)
                ));
            }
        }
    }
    n
}

/// One seed: a sequence of kills, then resume to exit 0 and check everything.
fn kill_then_resume(
    seed: u64,
    config: SimConfig,
    workload: &Workload,
    extra: &[&str],
    kills: &[KillAt],
) -> (Tally, KillStats, Vec<String>) {
    let env = Env::with_sim(SimConfig {
        seed,
        sub_accounts: workload.sub_accounts.clone(),
        ..config
    });
    let files = Files::new(&env, &workload.manifest);
    let label = format!("seed {seed} {}", workload.shape);
    let mut problems = Vec::new();
    let mut stats = KillStats::default();
    let sealed = extra.contains(&"--recipient");
    // Every secret a killed run's journal holds as received, by (key, token id).
    let mut received: BTreeMap<(Key, i64), String> = BTreeMap::new();
    let mut killed: Vec<Kill> = Vec::new();
    for (i, at) in kills.iter().enumerate() {
        match run_and_kill(&env, &files, extra, *at) {
            Some(kill) => {
                stats.kills += 1;
                killed.push(kill);
            }
            None => stats.missed += 1,
        }
        received.extend(journal_after_kill(&files.journal()).0);
        if sealed {
            problems.extend(crate::chaos::plaintext_secrets(
                &env,
                &files,
                &format!("{label} kill {}", i + 1),
            ));
        }
        problems.extend(check_after_kill(
            &env,
            &files,
            &workload.desired,
            &killed,
            &format!("{label} kill {} ({at:?})", i + 1),
        ));
    }
    let sc = Scenario {
        env: &env,
        files: &files,
        extra,
        desired: &workload.desired,
        kills: &killed,
    };
    let runs = converge_and_check(&sc, 5, &format!("{label} resume"), &mut problems);
    // A secret the journal held as received is recorded after the resume, under its key, with
    // the same id and secret: it never turns into a possible orphan and a duplicate.
    let after = Recorded::read(&files);
    for ((key, id), secret) in &received {
        let recorded = after.secrets.get(key);
        if recorded != Some(&(*id, secret.clone())) {
            problems.push(format!(
                "{label}: the journal held token {id} of {key:?} as received, but after the resume the secrets file has {recorded:?}"
            ));
        }
    }
    if sealed {
        problems.extend(crate::chaos::plaintext_secrets(
            &env,
            &files,
            &format!("{label} resumed"),
        ));
    }
    stats.journal_secrets = received.len() as u64;
    stats.leftovers = leftover_temp_files(files.results.parent().unwrap(), &mut problems) as u64;
    let mut tally = Tally {
        scenarios: 1,
        runs: kills.len() as u64 + runs.len() as u64 + 1,
        tokens_desired: workload.desired.len() as u64,
        ..Tally::default()
    };
    tally.add_counters(&env.sim().counters());
    tally.add_answers(&env.sim().create_attempts(), &Recorded::read(&files));
    (tally, stats, problems)
}

/// One seed of a crash suite: its simulator, workload, extra apply flags and kill points.
type CrashSeed = (u64, SimConfig, Workload, Vec<&'static str>, Vec<KillAt>);

/// Runs the seeds in parallel threads and asserts there were no problems.
fn run_all(suite: &str, seeds: Vec<CrashSeed>) {
    let mut tally = Tally::default();
    let mut stats = KillStats::default();
    let mut problems = Vec::new();
    let results = in_parallel(&seeds, 8, |(seed, config, w, extra, kills)| {
        kill_then_resume(*seed, config.clone(), w, extra, kills)
    });
    for (t, k, p) in results {
        tally.merge(t);
        stats.kills += k.kills;
        stats.missed += k.missed;
        stats.leftovers += k.leftovers;
        stats.journal_secrets += k.journal_secrets;
        problems.extend(p);
    }
    eprintln!(
        "{} ({} kills landed, {} runs finished before their kill point, {} temp files left behind by interrupted writes)",
        tally.line(suite, problems.len()),
        stats.kills,
        stats.missed,
        stats.leftovers
    );
    assert!(stats.kills > 0, "no kill landed: the test proved nothing");
    assert!(
        stats.journal_secrets > 0,
        "no killed run's journal held a received secret: the journal check proved nothing"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn mild_faults() -> FaultRates {
    FaultRates {
        rate_limited: 0.05,
        unavailable: 0.03,
        error_after_create: 0.03,
        drop_before_create: 0.02,
        drop_after_create: 0.03,
        truncate_after_create: 0.02,
        slow_after_create: 0.01,
    }
}

#[test]
fn sigkill_at_seeded_moments_loses_nothing_and_resumes() {
    let (seeds, size, rounds) = if soak() { (12, 120, 3) } else { (3, 40, 1) };
    let mut plan = Vec::new();
    for i in 0..seeds {
        let seed = 5000 + i * 104_729;
        let mut rng = StdRng::seed_from_u64(seed);
        let workload = if i % 2 == 0 {
            one_account_many_tokens(size)
        } else {
            many_accounts_one_token(size)
        };
        // A kill while tokens are being created; then kills in the first second of the next
        // runs, which start by replaying the journal the killed run left (so some land in that
        // recovery); then kills after more tokens.
        let mut kills = vec![KillAt::Created(rng.random_range(1..size / 4))];
        for _ in 0..rounds {
            kills.push(KillAt::Elapsed(Duration::from_millis(
                rng.random_range(0..300),
            )));
            kills.push(KillAt::Elapsed(Duration::from_millis(
                rng.random_range(0..1000),
            )));
            kills.push(KillAt::Created(rng.random_range(1..size / 4)));
        }
        let config = SimConfig {
            faults: mild_faults(),
            slow_delay: Duration::from_millis(2500),
            latency: Duration::from_millis(20),
            ..SimConfig::default()
        };
        // Every other seed seals its secrets: the same kills and checks, with recipients.
        let extra = if i % 2 == 1 {
            vec!["--recipient", crate::chaos::test_recipient()]
        } else {
            vec![]
        };
        plan.push((seed, config, workload, extra, kills));
    }
    run_all("crash/seeded", plan);
}

#[test]
fn sigkill_while_the_journal_is_written_at_a_high_rate() {
    let (seeds, size, kills) = if soak() { (8, 600, 6) } else { (2, 250, 3) };
    let mut plan = Vec::new();
    for i in 0..seeds {
        let seed = 9000 + i * 7907;
        let mut rng = StdRng::seed_from_u64(seed);
        let kills: Vec<KillAt> = (0..kills)
            .map(|_| KillAt::Created(rng.random_range(5..size / kills)))
            .collect();
        let config = SimConfig {
            faults: FaultRates {
                error_after_create: 0.01,
                drop_after_create: 0.01,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        };
        plan.push((
            seed,
            config,
            one_account_many_tokens(size),
            vec!["--rate", "1000", "--concurrency", "32"],
            kills,
        ));
    }
    run_all("crash/journal", plan);
}

#[test]
fn sigkill_during_the_final_file_writes() {
    let (seeds, size) = if soak() { (16, 200) } else { (4, 60) };
    let mut plan = Vec::new();
    for i in 0..seeds {
        let seed = 13_000 + i * 6_007;
        let config = SimConfig::default();
        plan.push((
            seed,
            config,
            one_account_many_tokens(size),
            vec!["--rate", "1000", "--concurrency", "16"],
            vec![KillAt::AllCreated(size)],
        ));
    }
    run_all("crash/final-writes", plan);
}

/// The created outcomes of a journal: token id -> secret; and the keys with an intent but no
/// outcome.
fn parse_journal(path: &Path) -> (Vec<(i64, String)>, BTreeSet<Key>) {
    let text = crate::util::journal_text(path).unwrap();
    let mut created = Vec::new();
    let mut pending = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("journal line {line:?} is not JSON: {e}"));
        if v["kind"] == "begin" || v["kind"] == "sealed" {
            continue;
        }
        let key: Key = (
            u32::try_from(v["account_id"].as_u64().unwrap()).unwrap(),
            v["token_name"].as_str().unwrap().to_owned(),
        );
        match v["kind"].as_str().unwrap() {
            "intent" => {
                pending.insert(v["seq"].as_u64().unwrap(), key);
            }
            "outcome" => {
                pending.remove(&v["seq"].as_u64().unwrap());
                if v["result"] == "created" {
                    created.push((
                        v["token_id"].as_i64().unwrap(),
                        v["token"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            other => panic!("unknown journal record kind {other}"),
        }
    }
    (created, pending.into_values().collect())
}

/// Makes the state directory refuse the atomic save. Without root, `chmod 0555` does it. Root
/// ignores directory permissions, so there the results file's directory entry is replaced by a
/// non-empty directory: the temp file is still created, but renaming it over a directory fails,
/// which is the same failure of the same save. Returns how to undo it.
fn break_state_dir(dir: &Path, results: &Path) -> Box<dyn FnOnce()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"x").is_err() {
        let dir = dir.to_path_buf();
        return Box::new(move || {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        });
    }
    // Permissions are not enforced for this user (root, or CAP_DAC_OVERRIDE).
    std::fs::remove_file(&probe).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    eprintln!(
        "crash: directory permissions are not enforced for this user (root?): making the save fail by putting a directory where the results file goes"
    );
    let aside: PathBuf = results.with_extension("json.aside");
    loop {
        // A save may land between the two steps: then move the newer file aside and try again.
        if results.is_file() {
            std::fs::rename(results, &aside).unwrap();
        }
        if std::fs::create_dir(results).is_ok() {
            break;
        }
    }
    std::fs::write(results.join("keep"), b"x").unwrap();
    let results = results.to_path_buf();
    Box::new(move || {
        std::fs::remove_dir_all(&results).unwrap();
        if aside.exists() {
            std::fs::rename(&aside, &results).unwrap();
        }
    })
}

/// A run whose state directory stopped being writable after a few tokens, stopped; the
/// directory writable again.
struct Unwritable {
    env: Env,
    files: Files,
    workload: Workload,
    run: crate::util::Run,
    size: usize,
}

/// At the most verbose level (with RUST_LOG=trace): the stop's messages and logs are scanned
/// for secrets too.
const UNWRITABLE_EXTRA: [&str; 3] = ["--concurrency", "2", "-vvv"];

fn run_into_an_unwritable_state_dir() -> Unwritable {
    let size = if soak() { 120 } else { 60 };
    let workload = one_account_many_tokens(size);
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(150),
        seed: 77,
        ..SimConfig::default()
    });
    let files = Files::new(&env, &workload.manifest);
    let state_dir = files.results.parent().unwrap().to_path_buf();
    let child = apply_cmd(&env, &files, &UNWRITABLE_EXTRA)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some tokens exist, and the first periodic save (after 3 s) has not happened yet.
    assert!(wait_until(Duration::from_secs(60), || env
        .sim()
        .counters()
        .created
        >= 5));
    let undo = break_state_dir(&state_dir, &files.results);
    let run = crate::util::Run::from(crate::util::wait_with_timeout(
        child,
        Duration::from_secs(120),
    ));
    undo();
    Unwritable {
        env,
        files,
        workload,
        run,
        size,
    }
}

#[test]
fn a_state_directory_that_stops_being_writable_stops_the_run_and_keeps_every_secret() {
    let Unwritable {
        env,
        files,
        workload,
        run,
        size,
    } = run_into_an_unwritable_state_dir();
    assert_eq!(
        run.code,
        Some(3),
        "a state that cannot be written must stop the run with exit 3\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot write") && run.stderr.contains("r.json"),
        "the message must say which file cannot be written:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&files.journal().display().to_string()),
        "the message must say where the received secrets are:\n{}",
        run.stderr
    );
    let gt = env.sim().ground_truth();
    assert_no_secret_in_output(
        "the unwritable-state stop at -vvv",
        &env,
        &run.stdout,
        &run.stderr,
    );
    assert!(
        gt.len() < size,
        "the run went on after the state became unwritable ({} of {size} created)",
        gt.len()
    );
    // Every received secret is in the journal (0600), or in a secrets file saved before.
    assert_eq!(mode(&files.journal()), 0o600);
    let (journaled, in_flight) = parse_journal(&files.journal());
    let saved = Recorded::read(&files);
    for t in &gt {
        let key: Key = (u32::try_from(t.account_id).unwrap(), t.name.clone());
        let in_journal = journaled.iter().any(|(id, s)| *id == t.id && *s == t.token);
        let in_file = saved.secrets.get(&key) == Some(&(t.id, t.token.clone()));
        assert!(
            in_journal || in_file || in_flight.contains(&key),
            "the secret of token {} ({key:?}) is neither in the journal nor in the secrets file",
            t.id
        );
    }
    assert!(!journaled.is_empty(), "the journal holds no secret at all");

    // With the directory writable again, the next runs recover everything and finish, creating
    // exactly the missing tokens (no faults: no duplicate).
    let mut problems = Vec::new();
    let sc = Scenario {
        env: &env,
        files: &files,
        extra: &UNWRITABLE_EXTRA,
        desired: &workload.desired,
        kills: &[],
    };
    converge_and_check(&sc, 3, "after the directory was fixed", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(
        env.sim().ground_truth().len(),
        size,
        "a token was created twice"
    );
}

#[test]
fn a_request_never_sent_is_not_reported_as_a_possible_orphan() {
    let Unwritable {
        env, files, run, ..
    } = run_into_an_unwritable_state_dir();
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    // No faults and a full drain: every request sent reached the server and created a token, so
    // an intent without an outcome must be for a token the server created.
    let gt = env.sim().ground_truth();
    let (_, in_flight) = parse_journal(&files.journal());
    for key in &in_flight {
        assert!(
            gt.iter()
                .any(|t| t.account_id == i64::from(key.0) && t.name == key.1),
            "the journal holds an intent for {key:?} without an outcome, but no request for it reached the server: it will be reported as a possible orphan"
        );
    }
    let recorded = Recorded::read(&files);
    assert!(
        recorded.orphans.is_empty(),
        "possible orphans listed although no request was ambiguous: {:?}",
        recorded.orphans
    );
}

/// Sends a signal to a child with the `kill` command (no unsafe code in tests).
fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} failed");
}

/// A child whose stderr is collected as it comes, so a test can wait for a line.
struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Watched {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit (bounded) and returns the code and the whole stderr.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, String) {
        let mut status = None;
        assert!(
            wait_until(timeout, || {
                status = self.child.try_wait().unwrap();
                status.is_some()
            }),
            "the binary did not exit within {timeout:?}\n{}",
            self.stderr()
        );
        self.reader.take().unwrap().join().unwrap();
        (status.unwrap().code(), self.stderr())
    }
}

/// Fails when the output holds the owner token or any secret the simulator created; the output
/// must also be verbose (else the scan proves little).
fn assert_no_secret_in_output(label: &str, env: &Env, stdout: &str, stderr: &str) {
    assert!(
        stderr.contains("DEBUG") || stderr.contains("TRACE"),
        "{label}: not verbose:\n{stderr}"
    );
    let gt = env.sim().ground_truth();
    assert!(!gt.is_empty(), "{label}: no token was created");
    for text in [stdout, stderr] {
        assert!(
            !text.contains(crate::util::OWNER_TOKEN),
            "{label}: the owner token"
        );
        for t in &gt {
            assert!(
                !text.contains(&t.token),
                "{label}: the secret of token {} was printed",
                t.id
            );
        }
    }
}

#[test]
fn a_journal_replayed_at_the_most_verbose_level_shows_no_secret() {
    let (env, files, _) = interrupt_env(50);
    assert!(
        run_and_kill(&env, &files, &["--concurrency", "4"], KillAt::Created(8)).is_some(),
        "the run finished before the kill"
    );
    assert!(
        files.journal().exists(),
        "the kill left no journal to replay"
    );
    // plan replays the journal in memory; apply replays it into the files, then goes on.
    let mut plan = files.cmd(&env, "plan");
    plan.env("RUST_LOG", "trace").arg("-vvv");
    let run = env.run_cmd(&mut plan, Duration::from_secs(60));
    assert!(run.stderr.contains("interrupted run"), "{}", run.stderr);
    assert_no_secret_in_output("plan replaying at -vvv", &env, &run.stdout, &run.stderr);
    let mut apply = apply_cmd(&env, &files, &["--concurrency", "4"]);
    apply.env("RUST_LOG", "trace");
    let run = env.run_cmd(&mut apply, Duration::from_secs(120));
    assert!(run.stderr.contains("recovered"), "{}", run.stderr);
    assert_no_secret_in_output(
        "apply replaying at RUST_LOG=trace",
        &env,
        &run.stdout,
        &run.stderr,
    );
}

fn interrupt_env(latency_ms: u64) -> (Env, Files, Workload) {
    let workload = one_account_many_tokens(if soak() { 150 } else { 60 });
    let env = Env::with_sim(SimConfig {
        seed: 31,
        latency: Duration::from_millis(latency_ms),
        faults: mild_faults(),
        slow_delay: Duration::from_millis(2500),
        ..SimConfig::default()
    });
    let files = Files::new(&env, &workload.manifest);
    (env, files, workload)
}

#[test]
fn sigint_stops_sending_drains_and_saves_everything_received() {
    let (env, files, workload) = interrupt_env(300);
    let extra = ["--concurrency", "8"];
    // The interrupted run logs at the most verbose level: its drain is scanned for secrets.
    let mut cmd = apply_cmd(&env, &files, &["--concurrency", "8", "-vvv"]);
    cmd.env("RUST_LOG", "trace");
    let w = Watched::spawn(cmd);
    assert!(wait_until(Duration::from_secs(60), || env
        .sim()
        .counters()
        .created
        >= 10));
    signal(&w.child, "INT");
    let (code, stderr) = w.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("Interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_secret_in_output("the Ctrl-C drain at -vvv", &env, "", &stderr);
    let gt = env.sim().ground_truth();
    assert!(gt.len() < workload.desired.len(), "the run was not stopped");
    // Drained and saved: the files alone (before any replay) hold every token received, and
    // every request that may have created one is listed.
    let problems = check_now(&env, &files, &workload.desired, &[], crate::chaos::LOSSLESS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut problems = Vec::new();
    let sc = Scenario {
        env: &env,
        files: &files,
        extra: &extra,
        desired: &workload.desired,
        kills: &[],
    };
    converge_and_check(&sc, 5, "after SIGINT", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn sigterm_is_a_first_ctrl_c() {
    let (env, files, workload) = interrupt_env(300);
    let w = Watched::spawn(apply_cmd(&env, &files, &[]));
    assert!(wait_until(Duration::from_secs(60), || env
        .sim()
        .counters()
        .created
        >= 5));
    signal(&w.child, "TERM");
    let (code, stderr) = w.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{stderr}");
    let problems = check_now(&env, &files, &workload.desired, &[], crate::chaos::LOSSLESS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_second_sigint_exits_at_once_and_the_next_run_loses_nothing() {
    // Slow answers (and a long timeout), so the drain after the first Ctrl-C takes a while.
    let (env, files, workload) = interrupt_env(1500);
    let extra = ["--concurrency", "8", "--request-timeout", "10"];
    let from = Instant::now();
    let mut w = Watched::spawn(apply_cmd(&env, &files, &extra));
    assert!(
        wait_until(Duration::from_secs(60), || env.sim().counters().created
            >= 8
            || w.child.try_wait().unwrap().is_some()),
        "{}",
        w.stderr()
    );
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.stderr());
    signal(&w.child, "INT");
    assert!(
        wait_until(Duration::from_secs(30), || w.stderr().contains("Stopping")),
        "no `Stopping` line after the first SIGINT:\n{}",
        w.stderr()
    );
    // The second one, repeated in case it raced the handler's re-arming.
    let started = Instant::now();
    let mut status = None;
    while status.is_none() && started.elapsed() < Duration::from_secs(30) {
        signal(&w.child, "INT");
        wait_until(Duration::from_millis(200), || {
            status = w.child.try_wait().unwrap();
            status.is_some()
        });
    }
    let (code, stderr) = w.finish(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // It says what it did: exited without the drain, and where the answers are.
    assert!(
        stderr.contains("Second Ctrl-C: exited without waiting for")
            && stderr.contains("The journal ")
            && stderr.contains("the next `apply` records them"),
        "{stderr}"
    );
    // It did not wait for the requests in flight: their intents are in the journal, unanswered.
    let in_flight = journal_after_kill(&files.journal()).1;
    assert!(
        files.journal().exists() && !in_flight.is_empty(),
        "the second SIGINT waited for the drain"
    );
    // Left without a drain, as a kill leaves it (its window ends once the simulator has
    // finished the connections it left, see `run_and_kill`).
    assert!(wait_until(Duration::from_secs(10), || env
        .sim()
        .open_connections()
        == 0));
    let kills = [Kill {
        from,
        to: Instant::now(),
        in_flight,
    }];
    // On disk: nothing wrong; after the next runs: nothing lost.
    let problems = check_now(&env, &files, &workload.desired, &kills, AFTER_KILL);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut problems = Vec::new();
    let sc = Scenario {
        env: &env,
        files: &files,
        extra: &extra,
        desired: &workload.desired,
        kills: &kills,
    };
    converge_and_check(&sc, 5, "after two SIGINTs", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Regression (found under --release by a randomized kill test, replaced by this deterministic
/// one because most of its runs left no temp file to check): a save killed between creating its
/// temp file and renaming it left a hidden full copy of the secrets that no run removed. The
/// next run must remove it. Deterministic: the leftovers are made by hand, as a kill leaves them.
#[test]
fn temp_files_left_by_a_killed_save_are_removed_by_the_next_run() {
    let env = Env::with_sim(SimConfig::default());
    let workload = one_account_many_tokens(3);
    let files = Files::new(&env, &workload.manifest);
    let dir = files.results.parent().unwrap().to_path_buf();
    let secrets_name = files
        .secrets
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let results_name = files
        .results
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stale_secrets = dir.join(format!(".{secrets_name}.Xy12ab.tmp"));
    let stale_results = dir.join(format!(".{results_name}.Zq34cd.tmp"));
    let unrelated = dir.join(".someone-else.json.Ab12cd.tmp");
    for p in [&stale_secrets, &stale_results, &unrelated] {
        std::fs::write(p, "{\"token\": \"copy-of-a-secret\"}").unwrap();
    }
    let mut problems = Vec::new();
    let sc = Scenario {
        env: &env,
        files: &files,
        extra: &[],
        desired: &workload.desired,
        kills: &[],
    };
    converge(&sc, 2, "after leftovers", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        !stale_secrets.exists(),
        "the secrets copy outlived the next run"
    );
    assert!(!stale_results.exists());
    assert!(unrelated.exists(), "a file of another target was removed");
}
