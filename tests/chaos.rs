//! Chaos: many seeded runs of the real binary against a simulator that mixes every fault kind
//! (429, 503, 500 after create, connection dropped before and after create, a cut-short body,
//! an answer slower than the client's timeout), over several manifest shapes. After each
//! scenario has converged (re-run until exit 0, at most five runs), the records are checked
//! against the simulator's ground truth:
//!
//! - every desired token is recorded with the id the server gave it, and its secret is in the
//!   secrets file;
//! - every token the server created is recorded, or its (account, name) is a possible orphan;
//! - a second token created for the same (account, name) is always listed as a possible orphan;
//! - nothing recorded is wrong (an id the server never gave, or gave to another name);
//! - a final re-run creates nothing;
//! - possible orphans only where an answer never arrived ([`check_orphans`]): the simulator
//!   keeps, for every create request, whether its full answer reached the client. A token whose
//!   answer was delivered must be recorded (outside a kill), every listed possible orphan must
//!   have a create whose answer did not arrive (or a request in flight at a kill), no more
//!   ambiguous requests are counted for it than there were, and a run without faults and kills
//!   lists none.
//!
//! The helpers here (workloads, the invariant check, the convergence loop) are shared with
//! `crash`.
//!
//! Each seed also varies the tool's concurrency and attempts, and the simulator's own limits
//! (requests per second, requests in flight; 429s with no `Retry-After`, seconds, or a date).
//!
//! CI size: 4 seeds × 3 shapes × about 40 tokens, every scenario in its own thread and simulator.
//! Soak (more seeds, more tokens), with a one-line summary of the figures on stderr:
//!
//! ```text
//! LOGZIO_TOKENS_SOAK=1 cargo test --release --test integration chaos -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use logzio_tokens::simulator::{
    AnswerFate, Counters, CreateAttempt, CreatedToken, FaultRates, RetryAfterMode, SimConfig,
    SubAccount, default_sub_accounts,
};
use serde_json::Value;

use crate::util::{Env, Files, Run};

/// Whether the bigger soak sizes were asked for (`LOGZIO_TOKENS_SOAK=1`).
pub(crate) fn soak() -> bool {
    std::env::var("LOGZIO_TOKENS_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub(crate) use crate::truth::{CONVERGED, Expect, Key, LOSSLESS, check_records, key_of};

/// A manifest and what it asks for.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// A short name for messages.
    pub shape: &'static str,
    /// The manifest text.
    pub manifest: String,
    /// The (account, token) pairs it asks for.
    pub desired: BTreeSet<Key>,
    /// The simulator's sub accounts (the defaults plus any the workload needs).
    pub sub_accounts: Vec<SubAccount>,
}

fn token_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

/// One account (by id) with `n` tokens.
pub(crate) fn one_account_many_tokens(n: usize) -> Workload {
    let names = token_names("tok", n);
    let manifest = format!(
        "version: 1\naccounts:\n  - id: 160343\n    tokens: [{}]\n",
        names.join(", ")
    );
    Workload {
        shape: "one-account",
        manifest,
        desired: names.into_iter().map(|t| (160_343, t)).collect(),
        sub_accounts: default_sub_accounts(),
    }
}

/// `n` accounts (by id) with the one default token each.
pub(crate) fn many_accounts_one_token(n: usize) -> Workload {
    let mut subs = default_sub_accounts();
    let mut manifest = String::from("version: 1\ndefaults:\n  tokens: [log-shipping]\naccounts:\n");
    let mut desired = BTreeSet::new();
    for i in 0..n {
        let id = 170_000 + u32::try_from(i).unwrap();
        subs.push(SubAccount::new(i64::from(id), format!("team-{i:03}")));
        manifest.push_str(&format!("  - id: {id}\n"));
        desired.insert((id, "log-shipping".to_owned()));
    }
    Workload {
        shape: "many-accounts",
        manifest,
        desired,
        sub_accounts: subs,
    }
}

/// Accounts given by `name:` (the six default ones and `extra` more), resolved by lookup,
/// `per_account` tokens each.
pub(crate) fn accounts_by_name(extra: usize, per_account: usize) -> Workload {
    let mut subs = default_sub_accounts();
    for i in 0..extra {
        subs.push(SubAccount::new(180_000 + i as i64, format!("squad-{i:02}")));
    }
    let names = token_names("app", per_account);
    let mut manifest = String::from("version: 1\naccounts:\n");
    let mut desired = BTreeSet::new();
    for a in &subs {
        manifest.push_str(&format!(
            "  - name: {}\n    tokens: [{}]\n",
            a.name,
            names.join(", ")
        ));
        for t in &names {
            desired.insert((u32::try_from(a.id).unwrap(), t.clone()));
        }
    }
    Workload {
        shape: "by-name",
        manifest,
        desired,
        sub_accounts: subs,
    }
}

/// The fault mix of the chaos runs: every kind, as in the brief.
pub(crate) fn chaos_faults() -> FaultRates {
    FaultRates {
        rate_limited: 0.10,
        unavailable: 0.05,
        error_after_create: 0.03,
        drop_after_create: 0.03,
        drop_before_create: 0.03,
        truncate_after_create: 0.02,
        slow_after_create: 0.02,
    }
}

/// `apply --yes` with explicit state paths, a 1-second request timeout (unless `extra` gives
/// one), and `extra`.
pub(crate) fn apply_cmd(env: &Env, files: &Files, extra: &[&str]) -> Command {
    let mut c = files.cmd(env, "apply");
    c.arg("--yes");
    if !extra.contains(&"--request-timeout") {
        c.args(["--request-timeout", "1"]);
    }
    // These suites re-run until every token is recorded, as an operator who has checked the
    // possible orphans would: the ambiguity budget across runs is tested on its own
    // (`promises::the_ambiguity_budget_holds_across_runs_until_orphans_clear`).
    c.arg("--resend-ambiguous");
    c.args(extra);
    c
}

/// An age key pair for the whole test process: runs given `--recipient` with
/// [`test_recipient`] seal their secrets, and the checks read them back with the identity.
fn test_key() -> &'static (String, PathBuf) {
    use age::secrecy::ExposeSecret;
    static KEY: std::sync::OnceLock<(String, PathBuf)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let id = age::x25519::Identity::generate();
        let dir =
            std::env::temp_dir().join(format!("logzio-tokens-test-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.txt");
        std::fs::write(&file, format!("{}\n", id.to_string().expose_secret())).unwrap();
        crate::util::private(&file);
        (id.to_public().to_string(), file)
    })
}

/// The recipient sealed runs use (`--recipient`).
pub(crate) fn test_recipient() -> &'static str {
    test_key().0.as_str()
}

/// The file holding the identity that opens what the test runs sealed (`--identity`).
pub(crate) fn test_identity_file() -> &'static Path {
    test_key().1.as_path()
}

/// The identity that opens what the test runs sealed.
pub(crate) fn test_identities() -> logzio_tokens::state::sealed::Identities {
    logzio_tokens::state::sealed::Identities::load(&test_key().1).unwrap()
}

/// The sealed directory beside a results file `r.json` (`r.json.sealed`).
pub(crate) fn sealed_dir(results: &Path) -> PathBuf {
    let mut name = results.file_name().unwrap().to_os_string();
    name.push(".sealed");
    results.with_file_name(name)
}

/// With recipients set no secret may be on disk in plaintext: every file of the state
/// directory (journal, results, sealed files, temp files) is scanned for every secret the
/// simulator created.
pub(crate) fn plaintext_secrets(env: &Env, files: &Files, label: &str) -> Vec<String> {
    let all = crate::util::files_under(files.results.parent().unwrap());
    let truth = env.sim().ground_truth();
    let mut problems = Vec::new();
    for path in all {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        if let Some(t) = truth.iter().find(|t| text.contains(&t.token)) {
            problems.push(format!(
                "{label}: {} holds the secret of token {} in plaintext",
                path.display(),
                t.id
            ));
        }
    }
    problems
}

/// Invariant 1, on the files as they are on disk (the journal aside, as a CI runner that is
/// thrown away leaves them): every token id the results file names, other than imported ones,
/// has its secret in the secrets file (plain) or in a sealed file the results file lists with
/// the SHA-256 of its bytes (sealed). A results file ahead of those files is a lost secret.
pub(crate) fn invariant_one(files: &Files, label: &str) -> Vec<String> {
    let Some(results) = read_json(&files.results) else {
        return Vec::new();
    };
    let mut held: BTreeSet<(Key, i64)> = BTreeSet::new();
    if let Some(secrets) = read_json(&files.secrets) {
        for (acc, tokens) in secrets["accounts"].as_object().unwrap() {
            for (name, rec) in tokens.as_object().unwrap() {
                held.insert((
                    (acc.parse().unwrap(), name.clone()),
                    rec["token_id"].as_i64().unwrap(),
                ));
            }
        }
        for s in secrets["superseded"].as_array().into_iter().flatten() {
            held.insert((
                (
                    u32::try_from(s["account_id"].as_u64().unwrap()).unwrap(),
                    s["token_name"].as_str().unwrap().to_owned(),
                ),
                s["token_id"].as_i64().unwrap(),
            ));
        }
    }
    let dir = sealed_dir(&files.results);
    let mut problems = Vec::new();
    for f in results["sealed_files"].as_array().into_iter().flatten() {
        let path = dir.join(f["file"].as_str().unwrap());
        let Ok(bytes) = std::fs::read(&path) else {
            problems.push(format!(
                "{label}: the results file lists sealed file {}, which does not exist",
                path.display()
            ));
            continue;
        };
        let digest: String = {
            use sha2::Digest;
            sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        if digest != f["sha256"].as_str().unwrap() {
            problems.push(format!(
                "{label}: sealed file {} does not have the SHA-256 the results file lists",
                path.display()
            ));
            continue;
        }
        let doc = test_identities().open_bytes(&path, &bytes).unwrap();
        for (acc, tokens) in &doc.accounts {
            for (name, rec) in tokens {
                held.insert(((*acc, name.clone()), rec.token_id));
            }
        }
        for s in &doc.superseded {
            held.insert(((s.account_id, s.token_name.clone()), s.token_id));
        }
    }
    for (acc, tokens) in results["accounts"].as_object().unwrap() {
        for (name, rec) in tokens.as_object().unwrap() {
            if rec["source"] == "imported" {
                continue;
            }
            let key: Key = (acc.parse().unwrap(), name.clone());
            let id = rec["token_id"].as_i64().unwrap();
            if !held.contains(&(key.clone(), id)) {
                problems.push(format!(
                    "{label}: invariant 1 broken: the results file names token {id} of {key:?}, whose secret is in no secrets file or listed sealed file"
                ));
            }
        }
    }
    problems
}

/// A JSON file, or `None` when it does not exist.
pub(crate) fn read_json(path: &Path) -> Option<Value> {
    match std::fs::read(path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display())),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// What the results and secrets files record.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorded {
    /// key -> token id, from the results file.
    pub tokens: BTreeMap<Key, i64>,
    /// key -> (token id, secret), from the secrets file.
    pub secrets: BTreeMap<Key, (i64, String)>,
    /// The possible orphans' keys.
    pub orphans: BTreeSet<Key>,
    /// How many ambiguous requests the results file counts for each possible orphan.
    pub orphan_attempts: BTreeMap<Key, u64>,
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

impl Recorded {
    /// Reads both files (a missing file records nothing).
    pub(crate) fn read(files: &Files) -> Recorded {
        let mut r = Recorded::default();
        if let Some(results) = read_json(&files.results) {
            for (acc, tokens) in results["accounts"].as_object().unwrap() {
                for (name, rec) in tokens.as_object().unwrap() {
                    r.tokens.insert(
                        (acc.parse().unwrap(), name.clone()),
                        rec["token_id"].as_i64().unwrap(),
                    );
                }
            }
            for o in results["possible_orphans"].as_array().unwrap() {
                let key = (
                    u32::try_from(o["account_id"].as_u64().unwrap()).unwrap(),
                    o["token_name"].as_str().unwrap().to_owned(),
                );
                r.orphan_attempts
                    .insert(key.clone(), o["ambiguous_attempts"].as_u64().unwrap());
                r.orphans.insert(key);
            }
        }
        // Sealed runs: every sealed file, opened with the test identity; for a key in several,
        // the token the results file records wins.
        let dir = sealed_dir(&files.results);
        if dir.exists() {
            let ids = test_identities();
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "age"))
                .collect();
            names.sort();
            for path in names {
                let doc = ids.open(&path).unwrap();
                for (acc, tokens) in &doc.accounts {
                    for (name, rec) in tokens {
                        let key = (*acc, name.clone());
                        let current = r.tokens.get(&key) == Some(&rec.token_id);
                        let held = r.secrets.get(&key).map(|(id, _)| *id);
                        if current || held.is_none_or(|id| r.tokens.get(&key) != Some(&id)) {
                            r.secrets
                                .insert(key, (rec.token_id, rec.token.expose().to_owned()));
                        }
                    }
                }
            }
        }
        if let Some(secrets) = read_json(&files.secrets) {
            for (acc, tokens) in secrets["accounts"].as_object().unwrap() {
                for (name, rec) in tokens.as_object().unwrap() {
                    r.secrets.insert(
                        (acc.parse().unwrap(), name.clone()),
                        (
                            rec["token_id"].as_i64().unwrap(),
                            rec["token"].as_str().unwrap().to_owned(),
                        ),
                    );
                }
            }
        }
        r
    }
}

/// A run that ended without draining its requests: killed (SIGKILL), or left at once (a second
/// Ctrl-C, a stop on an unwritable state directory). Its client may have read an answer and not
/// journaled it yet, so a token created while it ran may be a possible orphan although its
/// answer was delivered: when the journal it left holds that key's intent without an outcome.
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    /// When the run was started.
    pub from: Instant,
    /// When it was known to be gone (after its exit was reaped).
    pub to: Instant,
    /// The keys its journal held an intent for without an outcome, right after it was gone.
    pub in_flight: BTreeSet<Key>,
}

/// What the simulator knows of a scenario, read once it has seen every connection end.
#[derive(Debug)]
pub(crate) struct Truth {
    /// Every token created.
    pub tokens: Vec<CreatedToken>,
    /// Every create request, with what became of its answer.
    pub attempts: Vec<CreateAttempt>,
    /// The runs that ended without draining.
    pub kills: Vec<Kill>,
    /// No fault was configured.
    pub fault_free: bool,
}

impl Truth {
    /// Reads the simulator once no connection is open (the client has exited: the fate of
    /// every answer is then final). A simulator that keeps a connection open is a problem.
    pub(crate) fn read(env: &Env, kills: &[Kill], problems: &mut Vec<String>) -> Truth {
        let sim = env.sim();
        if !crate::util::wait_until(Duration::from_secs(10), || sim.open_connections() == 0) {
            problems.push(format!(
                "the simulator still has {} connections open 10 s after the client exited",
                sim.open_connections()
            ));
        }
        Truth {
            tokens: sim.ground_truth(),
            attempts: sim.create_attempts(),
            kills: kills.to_vec(),
            fault_free: sim.fault_rates() == FaultRates::default(),
        }
    }
}

fn attempt_key(a: &CreateAttempt) -> Option<Key> {
    Some((u32::try_from(a.account_id).ok()?, a.name.clone()))
}

/// Possible orphans only where an answer never arrived. Returns the problems, each a sentence:
///
/// - (when `lossless`) a token the server created and whose full answer was delivered is
///   recorded, unless it was created while a run that was then killed ran and that run's
///   journal held its key in flight;
/// - every listed possible orphan has at least one create whose answer did not arrive (not
///   written, withheld by a fault, or unread) or was in flight at a kill, and the results file
///   counts no more ambiguous requests for it than that;
/// - so no more keys are listed than have such a create or kill;
/// - without faults and kills, nothing is listed.
pub(crate) fn check_orphans(truth: &Truth, rec: &Recorded, expect: Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let attempt_of: HashMap<i64, &CreateAttempt> = truth
        .attempts
        .iter()
        .filter_map(|a| Some((a.token_id?, a)))
        .collect();
    if expect.lossless {
        for t in &truth.tokens {
            let key = key_of(t);
            if rec.tokens.get(&key) == Some(&t.id) {
                continue;
            }
            let Some(a) = attempt_of.get(&t.id) else {
                problems.push(format!(
                    "the simulator created token {} for {key:?} without a create attempt",
                    t.id
                ));
                continue;
            };
            let in_flight_at_kill = truth
                .kills
                .iter()
                .any(|k| k.from <= a.at && a.at <= k.to && k.in_flight.contains(&key));
            if a.answered() && !in_flight_at_kill {
                problems.push(format!(
                    "the server created token {} for {key:?} and its full answer was delivered, but it is not recorded (a received secret lost, passing as a possible orphan)",
                    t.id
                ));
            }
        }
    }
    // Per key: the creates whose answer did not arrive, and the kills that left it in flight.
    let mut unanswered: BTreeMap<Key, u64> = BTreeMap::new();
    let mut answered: BTreeMap<Key, u64> = BTreeMap::new();
    for a in &truth.attempts {
        if let Some(key) = attempt_key(a) {
            let n = if a.fate == AnswerFate::Delivered {
                answered.entry(key).or_default()
            } else {
                unanswered.entry(key).or_default()
            };
            *n += 1;
        }
    }
    for k in &truth.kills {
        for key in &k.in_flight {
            *unanswered.entry(key.clone()).or_default() += 1;
        }
    }
    for key in &rec.orphans {
        let allowed = unanswered.get(key).copied().unwrap_or(0);
        let counted = rec.orphan_attempts.get(key).copied().unwrap_or(0);
        if allowed == 0 {
            problems.push(format!(
                "{key:?} is listed as a possible orphan, but all {} creates for it were answered in full and none was in flight at a kill",
                answered.get(key).copied().unwrap_or(0)
            ));
        } else if counted > allowed {
            problems.push(format!(
                "{key:?} is listed with {counted} ambiguous requests, but only {allowed} of its creates went unanswered or were in flight at a kill"
            ));
        }
    }
    if rec.orphans.len() > unanswered.len() {
        problems.push(format!(
            "{} possible orphans are listed, but only {} keys had a create whose answer never arrived or a request in flight at a kill",
            rec.orphans.len(),
            unanswered.len()
        ));
    }
    if truth.fault_free && truth.kills.is_empty() && !rec.orphans.is_empty() {
        problems.push(format!(
            "a run without faults and kills lists possible orphans: {:?}",
            rec.orphans
        ));
    }
    problems
}

/// [`check_records`] and [`check_orphans`] together.
pub(crate) fn check_all(
    desired: &BTreeSet<Key>,
    truth: &Truth,
    rec: &Recorded,
    expect: Expect,
) -> Vec<String> {
    let mut problems = check_records(desired, &truth.tokens, rec, expect);
    problems.extend(check_orphans(truth, rec, expect));
    problems
}

/// Checks a finished run's output for what must never appear.
pub(crate) fn check_run_output(label: &str, run: &Run) -> Vec<String> {
    let mut problems = Vec::new();
    if run.stderr.contains("panicked") {
        problems.push(format!("{label}: the binary panicked:\n{}", run.stderr));
    }
    if run.stderr.contains("internal error") {
        problems.push(format!("{label}: an internal error:\n{}", run.stderr));
    }
    // Only the documented exit codes (a signal leaves none).
    if !matches!(run.code, Some(0 | 1 | 3 | 130)) {
        problems.push(format!(
            "{label}: exit code {:?} is not one apply documents",
            run.code
        ));
    }
    // A run that finished says what it did: the summary's requests line, or nothing to create.
    if matches!(run.code, Some(0 | 1))
        && !run.stderr.contains("Requests: ")
        && !run.stderr.contains("Nothing to create")
    {
        problems.push(format!("{label}: no summary on stderr:\n{}", run.stderr));
    }
    // Never the owner token, nor terminal control sequences when stderr is not a terminal.
    if run.stderr.contains(crate::util::OWNER_TOKEN)
        || run.stdout.contains(crate::util::OWNER_TOKEN)
    {
        problems.push(format!("{label}: the owner token was printed"));
    }
    if run.stderr.contains('\u{1b}') {
        problems.push(format!(
            "{label}: escape sequences on a non-terminal stderr"
        ));
    }
    problems
}

/// A scenario to converge and check: its files, the apply flags, what the manifest asks for,
/// and the runs that ended without draining so far.
pub(crate) struct Scenario<'a> {
    pub env: &'a Env,
    pub files: &'a Files,
    pub extra: &'a [&'a str],
    pub desired: &'a BTreeSet<Key>,
    pub kills: &'a [Kill],
}

/// Runs apply until it exits 0 (at most `max_runs` times); every run before must exit 1 (some
/// items failed, to be retried). Returns the runs; each problem goes into `problems`.
pub(crate) fn converge(
    sc: &Scenario<'_>,
    max_runs: usize,
    label: &str,
    problems: &mut Vec<String>,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for i in 1..=max_runs {
        let run = sc.env.run_cmd(
            &mut apply_cmd(sc.env, sc.files, sc.extra),
            Duration::from_secs(300),
        );
        problems.extend(check_run_output(&format!("{label} run {i}"), &run));
        problems.extend(invariant_one(sc.files, &format!("{label} after run {i}")));
        let code = run.code;
        let recorded = Recorded::read(sc.files);
        let truth = Truth::read(sc.env, sc.kills, problems);
        for p in check_all(sc.desired, &truth, &recorded, LOSSLESS) {
            problems.push(format!("{label} after run {i}: {p}"));
        }
        runs.push(run);
        match code {
            Some(0) => return runs,
            Some(1) => {}
            other => {
                problems.push(format!(
                    "{label} run {i} exited {other:?} (expected 0, or 1 with items to retry)\n--- stderr\n{}",
                    runs.last().unwrap().stderr
                ));
                return runs;
            }
        }
    }
    problems.push(format!(
        "{label}: did not converge to exit 0 within {max_runs} runs\n--- last stderr\n{}",
        runs.last().map_or("", |r| r.stderr.as_str())
    ));
    runs
}

/// After convergence: the records are complete and right, the secrets file is 0600, and one
/// more run creates nothing.
pub(crate) fn check_converged(sc: &Scenario<'_>, label: &str, problems: &mut Vec<String>) {
    let (env, files) = (sc.env, sc.files);
    let before = Truth::read(env, sc.kills, problems);
    let recorded = Recorded::read(files);
    for p in check_all(sc.desired, &before, &recorded, CONVERGED) {
        problems.push(format!("{label}: {p}"));
    }
    if files.secrets.exists() && crate::util::mode(&files.secrets) != 0o600 {
        problems.push(format!(
            "{label}: the secrets file is mode {:o}",
            crate::util::mode(&files.secrets)
        ));
    }
    let run = env.run_cmd(
        &mut apply_cmd(env, files, sc.extra),
        Duration::from_secs(120),
    );
    problems.extend(check_run_output(&format!("{label} final re-run"), &run));
    if run.code != Some(0) {
        problems.push(format!(
            "{label}: the final re-run exited {:?}\n{}",
            run.code, run.stderr
        ));
    }
    let after = env.sim().ground_truth();
    if after.len() != before.tokens.len() {
        problems.push(format!(
            "{label}: the final re-run created {} tokens (it must create none)",
            after.len() - before.tokens.len()
        ));
    }
    if Recorded::read(files).tokens != recorded.tokens {
        problems.push(format!(
            "{label}: the final re-run changed the recorded tokens"
        ));
    }
}

/// [`converge`], then, when it converged without a problem, [`check_converged`]. Returns the
/// runs `converge` made.
pub(crate) fn converge_and_check(
    sc: &Scenario<'_>,
    max_runs: usize,
    label: &str,
    problems: &mut Vec<String>,
) -> Vec<Run> {
    let runs = converge(sc, max_runs, label, problems);
    if problems.is_empty() {
        check_converged(sc, label, problems);
    }
    runs
}

/// Fault counters by kind.
pub(crate) fn faults_of(c: &Counters) -> [(&'static str, u64); 8] {
    [
        ("429", c.fault_429),
        ("503", c.fault_503),
        ("500-after-create", c.error_500_after_create),
        ("drop-before", c.dropped_before_create),
        ("drop-after", c.dropped_after_create),
        ("truncated", c.truncated_after_create),
        ("slow", c.slow_after_create),
        ("limit-429", c.limited_429),
    ]
}

/// Figures for the one-line summary.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub scenarios: u64,
    pub runs: u64,
    pub tokens_desired: u64,
    pub tokens_created: u64,
    pub requests: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// Create answers by fate.
    pub answers: BTreeMap<&'static str, u64>,
    /// Possible orphans listed at the end.
    pub orphans: u64,
}

impl Tally {
    /// What became of every create's answer, and how many possible orphans the end lists.
    pub(crate) fn add_answers(&mut self, attempts: &[CreateAttempt], rec: &Recorded) {
        for a in attempts {
            let fate = match a.fate {
                AnswerFate::Delivered => "delivered",
                AnswerFate::Withheld => "withheld",
                AnswerFate::NotWritten => "not-written",
                AnswerFate::Unread => "unread",
            };
            *self.answers.entry(fate).or_default() += 1;
        }
        self.orphans += rec.orphans.len() as u64;
    }

    pub(crate) fn add_counters(&mut self, c: &Counters) {
        self.requests += c.requests;
        self.tokens_created += c.created;
        for (k, v) in faults_of(c) {
            *self.faults.entry(k).or_default() += v;
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.scenarios += other.scenarios;
        self.runs += other.runs;
        self.tokens_desired += other.tokens_desired;
        self.tokens_created += other.tokens_created;
        self.requests += other.requests;
        for (k, v) in other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
        self.orphans += other.orphans;
    }

    pub(crate) fn line(&self, suite: &str, problems: usize) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{suite}: {} scenarios, {} runs of the binary, {} tokens desired, {} created by the server, {} API requests, faults injected [{}], create answers [{}], {} possible orphans listed, {problems} problems found",
            self.scenarios,
            self.runs,
            self.tokens_desired,
            self.tokens_created,
            self.requests,
            faults.join(" "),
            answers.join(" "),
            self.orphans
        )
    }
}

/// Runs `f` on every job, at most `width` at a time (each job is a process and a simulator,
/// mostly waiting on the network), and returns the results in order.
pub(crate) fn in_parallel<J: Sync, R: Send>(
    jobs: &[J],
    width: usize,
    f: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(width.max(1)) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|j| s.spawn(|| f(j))).collect();
            for h in handles {
                out.push(h.join().expect("a scenario thread panicked"));
            }
        });
    }
    out
}

/// One chaos scenario: a fresh simulator with the fault mix, a workload, converge, check.
/// `variant` picks the concurrency and attempts, so some runs end with items failed for good
/// (exit 1) and the re-runs must pick them up, and the simulator's own limits (answered with
/// plain-text 429s, with or without `Retry-After`), which must not use up attempts.
fn scenario(seed: u64, variant: usize, workload: &Workload) -> (Tally, Vec<String>) {
    const VARIANTS: [[&str; 4]; 4] = [
        ["--concurrency", "8", "--max-attempts", "6"],
        ["--concurrency", "1", "--max-attempts", "2"],
        ["--concurrency", "16", "--max-attempts", "3"],
        ["--concurrency", "4", "--max-attempts", "2"],
    ];
    // Odd seeds seal their secrets: the same storm and checks, with recipients.
    let mut extra: Vec<&str> = VARIANTS[variant % VARIANTS.len()].to_vec();
    if seed % 2 == 1 {
        extra.extend(["--recipient", test_recipient()]);
    }
    let extra = &extra;
    let (max_requests_per_second, max_in_flight, retry_after) = match variant % 4 {
        0 => (None, None, RetryAfterMode::None),
        1 => (Some(8.0), None, RetryAfterMode::Seconds),
        2 => (None, Some(4), RetryAfterMode::HttpDate),
        _ => (Some(15.0), Some(6), RetryAfterMode::None),
    };
    let config = SimConfig {
        seed,
        faults: chaos_faults(),
        slow_delay: Duration::from_millis(2500),
        sub_accounts: workload.sub_accounts.clone(),
        max_requests_per_second,
        max_in_flight,
        retry_after,
        ..SimConfig::default()
    };
    let env = Env::with_sim(config);
    let files = Files::new(&env, &workload.manifest);
    let label = format!(
        "seed {seed} {} {}",
        workload.shape,
        if seed % 2 == 1 { "sealed" } else { "" }
    );
    let mut problems = Vec::new();
    let sc = Scenario {
        env: &env,
        files: &files,
        extra,
        desired: &workload.desired,
        kills: &[],
    };
    let runs = converge_and_check(&sc, 5, &label, &mut problems);
    if seed % 2 == 1 {
        problems.extend(plaintext_secrets(&env, &files, &label));
    }
    let mut tally = Tally {
        scenarios: 1,
        runs: runs.len() as u64 + 1,
        tokens_desired: workload.desired.len() as u64,
        ..Tally::default()
    };
    tally.add_counters(&env.sim().counters());
    tally.add_answers(&env.sim().create_attempts(), &Recorded::read(&files));
    (tally, problems)
}

#[test]
fn seeded_fault_storms_converge_without_losing_or_duplicating_tokens() {
    let (seeds, size): (u64, usize) = if soak() { (16, 150) } else { (4, 40) };
    let workloads = [
        one_account_many_tokens(size),
        many_accounts_one_token(size),
        // The six default accounts plus enough named ones for about `size` tokens, by name.
        accounts_by_name(size / 4 - 6, 4),
    ];
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let jobs: Vec<(u64, &Workload)> = (0..seeds)
        .flat_map(|i| workloads.iter().map(move |w| (i, w)))
        .collect();
    for (t, p) in in_parallel(&jobs, 12, |(i, w)| {
        scenario(1000 + i * 7919, *i as usize, w)
    }) {
        tally.merge(t);
        problems.extend(p);
    }
    eprintln!("{}", tally.line("chaos", problems.len()));
    // Every fault kind was really played (else the test proves less than it claims).
    for (kind, n) in &tally.faults {
        if *kind != "limit-429" {
            assert!(*n > 0, "no `{kind}` fault was injected in the whole suite");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_invariant_check_catches_what_it_must() {
    // The checker itself: each kind of wrong record is reported.
    let t = |id, acc: i64, name: &str, secret: &str| CreatedToken {
        id,
        account_id: acc,
        name: name.into(),
        token: secret.into(),
        created_at: 0.0,
    };
    let desired: BTreeSet<Key> = [(1, "a".to_owned()), (1, "b".to_owned())].into();
    let gt = vec![
        t(10, 1, "a", "sa"),
        t(11, 1, "a", "sa2"),
        t(12, 1, "b", "sb"),
    ];
    let mut rec = Recorded::default();
    rec.tokens.insert((1, "a".into()), 10);
    rec.secrets.insert((1, "a".into()), (10, "sa".into()));
    rec.tokens.insert((1, "b".into()), 12);
    rec.secrets.insert((1, "b".into()), (12, "sb".into()));
    // The duplicate for a, not listed.
    let p = check_records(&desired, &gt, &rec, CONVERGED);
    assert!(p.iter().any(|p| p.contains("neither recorded")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("2 tokens were created")),
        "{p:?}"
    );
    rec.orphans.insert((1, "a".into()));
    assert!(check_records(&desired, &gt, &rec, CONVERGED).is_empty());
    // A wrong secret, a wrong id, a missing desired token.
    rec.secrets.insert((1, "b".into()), (12, "nope".into()));
    assert_eq!(check_records(&desired, &gt, &rec, CONVERGED).len(), 1);
    rec.secrets.insert((1, "b".into()), (12, "sb".into()));
    rec.tokens.insert((1, "b".into()), 11);
    assert!(!check_records(&desired, &gt, &rec, CONVERGED).is_empty());
    rec.tokens.remove(&(1, "b".into()));
    let p = check_records(&desired, &gt, &rec, CONVERGED);
    assert!(p.iter().any(|p| p.contains("not recorded")), "{p:?}");
    assert!(check_records(&desired, &gt, &rec, LOSSLESS).len() < p.len());
}

#[test]
fn the_orphan_check_catches_what_it_must() {
    // The checker itself: possible orphans only where an answer never arrived.
    let start = Instant::now();
    let at = |ms| start + Duration::from_millis(ms);
    let t = |id, name: &str| CreatedToken {
        id,
        account_id: 1,
        name: name.into(),
        token: format!("s{id}"),
        created_at: 0.0,
    };
    let attempt = |name: &str, token_id, fate, ms| CreateAttempt {
        account_id: 1,
        name: name.into(),
        token_id,
        fate,
        at: at(ms),
    };
    let key = |name: &str| -> Key { (1, name.into()) };
    let desired: BTreeSet<Key> = ["a", "b", "c"].iter().map(|n| key(n)).collect();
    // a: a 500 after create (10, withheld), then created and delivered (11).
    // b: created and delivered (12). c: dropped before create, then delivered (13).
    let mut truth = Truth {
        tokens: vec![t(10, "a"), t(11, "a"), t(12, "b"), t(13, "c")],
        attempts: vec![
            attempt("a", Some(10), AnswerFate::Withheld, 1),
            attempt("a", Some(11), AnswerFate::Delivered, 2),
            attempt("b", Some(12), AnswerFate::Delivered, 3),
            attempt("c", None, AnswerFate::Withheld, 4),
            attempt("c", Some(13), AnswerFate::Delivered, 5),
        ],
        kills: Vec::new(),
        fault_free: false,
    };
    let mut rec = Recorded::default();
    for (name, id) in [("a", 11), ("b", 12), ("c", 13)] {
        rec.tokens.insert(key(name), id);
        rec.secrets.insert(key(name), (id, format!("s{id}")));
    }
    for name in ["a", "c"] {
        rec.orphans.insert(key(name));
        rec.orphan_attempts.insert(key(name), 1);
    }
    assert!(check_all(&desired, &truth, &rec, CONVERGED).is_empty());

    // A key listed although every create for it was answered in full.
    rec.orphans.insert(key("b"));
    rec.orphan_attempts.insert(key("b"), 1);
    let p = check_orphans(&truth, &rec, CONVERGED);
    assert!(
        p.iter().any(|p| p.contains("(1, \"b\") is listed")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.contains("3 possible orphans")), "{p:?}");
    rec.orphans.remove(&key("b"));
    rec.orphan_attempts.remove(&key("b"));

    // More ambiguous requests counted than went unanswered.
    rec.orphan_attempts.insert(key("a"), 2);
    let p = check_orphans(&truth, &rec, CONVERGED);
    assert!(
        p.iter().any(|p| p.contains("2 ambiguous requests")),
        "{p:?}"
    );
    rec.orphan_attempts.insert(key("a"), 1);

    // A received secret lost, passing as a possible orphan: b's delivered token unrecorded
    // (check_records alone accepts it once b is listed; a duplicate for b is the same).
    rec.tokens.remove(&key("b"));
    rec.secrets.remove(&key("b"));
    rec.orphans.insert(key("b"));
    rec.orphan_attempts.insert(key("b"), 1);
    assert!(check_records(&desired, &truth.tokens, &rec, LOSSLESS).is_empty());
    let p = check_orphans(&truth, &rec, LOSSLESS);
    assert!(
        p.iter()
            .any(|p| p.contains("token 12") && p.contains("delivered")),
        "{p:?}"
    );
    // ... unless a killed run was sending it and its journal held b in flight.
    truth.kills.push(Kill {
        from: at(0),
        to: at(3),
        in_flight: [key("b")].into(),
    });
    assert!(check_orphans(&truth, &rec, LOSSLESS).is_empty());
    // A kill before the create does not excuse it.
    truth.kills[0].to = at(2);
    assert!(!check_orphans(&truth, &rec, LOSSLESS).is_empty());
    truth.kills.clear();

    // An answer found unread (the client reset the connection with it unread) did not arrive.
    truth.attempts[2].fate = AnswerFate::Unread;
    assert!(check_orphans(&truth, &rec, LOSSLESS).is_empty());

    // Without faults and kills, no orphan at all.
    truth.fault_free = true;
    let p = check_orphans(&truth, &rec, LOSSLESS);
    assert!(p.iter().any(|p| p.contains("without faults")), "{p:?}");
}

/// Regression: a 429 used to cost an attempt, and the first create followed the preflight
/// reads unpaced, so against a server-side limit with `--max-attempts 1` nothing was created.
#[test]
fn a_rate_limited_server_never_makes_an_item_fail_for_good() {
    // A server that allows 15 requests per second (a burst of 1.5): the preflight's two reads
    // use the burst, so the first create is answered 429 — "not processed, try later", which
    // must not use up the item's attempts.
    let env = Env::with_sim(SimConfig {
        max_requests_per_second: Some(15.0),
        ..SimConfig::default()
    });
    let files = Files::new(&env, &crate::util::manifest_yaml(&[160_343], &["ci"]));
    let out = env.run_cmd(
        &mut apply_cmd(&env, &files, &["--max-attempts", "1"]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.code,
        Some(0),
        "a 429 made the item fail for good\n{}",
        out.stderr
    );
    assert_eq!(env.sim().ground_truth().len(), 1);
}
