//! The driver: one seed decides a scenario (the tokens, sealed or plain, the server's faults
//! and latency, a sequence of operations on one state directory) and every choice in it; each
//! operation runs the real store, recorder and executor on a `current_thread` runtime with a
//! paused clock against the simulated API; the checker runs after every step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logzio_tokens::api::{ApiError, WhoAmI};
use logzio_tokens::cli::commands::onboard;
use logzio_tokens::execution::{
    Backoff, Cancel, ExecConfig, Pacer, Services, Stats, StopReason, Work, execute,
};
use logzio_tokens::fs::Fs;
use logzio_tokens::key::TokenKey;
use logzio_tokens::manifest::Manifest;
use logzio_tokens::plan::{self, AccountFilter};
use logzio_tokens::simulator::{FaultRates, InProcess, SimConfig};
use logzio_tokens::state::sealed::{Identities, Recipients};
use logzio_tokens::state::{Recorder, StatePaths, Store};
use logzio_tokens::verify::{Probe, ProbeConfig, SendProbe, Stop, probe_all};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::api::{AtEvent, Net, SimApi};
use super::check::{self, Allowance};
use super::fs::{Errno, Fault, SimFs};
use super::watch::{Acks, Watched};

/// The sub accounts tokens are made for (the simulator's defaults).
const ACCOUNTS: [u32; 3] = [160_343, 160_344, 160_345];
/// The share of seeds whose manifest creates sub accounts.
const ACCOUNT_SEEDS: f64 = 0.3;
/// The two endpoints a scenario may switch between.
const ENDPOINTS: [&str; 2] = ["https://api.logz.io", "https://api-eu.logz.io"];

/// One operation on the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `apply` (with `rotate`: every recorded token is replaced), stopped at a network event
    /// by a crash or a Ctrl-C, or run to its end.
    Apply {
        /// Replace every recorded token (`--rotate --older-than 0`).
        rotate: bool,
        /// Where the run is stopped, if anywhere.
        stop: Option<(u64, AtEvent)>,
        /// Where the run stalls past the recorder's save interval (a mid-run checkpoint).
        stall: Option<u64>,
        /// What happens at the N-th filesystem call of the operation, if anything.
        disk: Option<(u64, AtCall)>,
        /// Whether a crash in this operation is a power loss (what was not fsync'd is lost)
        /// rather than the process dying (the kernel keeps what it was given).
        power: bool,
    },
    /// `orphans clear`.
    ClearOrphans,
    /// Every later operation talks to the other endpoint (its own server).
    SwitchEndpoint,
    /// An admin deletes in the UI the token the results file records for one key (the
    /// `n`-th recorded, modulo their number), on the current endpoint's server.
    Revoke(u64),
    /// `verify`: every recorded token, and every replaced one still listed for removal by
    /// hand, probed with whoami against the simulated server; the statuses are saved.
    Verify,
    /// `apply --recreate-revoked`: every token verify saw revoked is created again.
    Recreate,
    /// `export`: every recorded token's secret read back, through the identity when sealed.
    Export,
    /// `apply` without recipients on a state whose secrets are sealed (the recipients were
    /// removed from the manifest), without `--allow-plaintext`.
    Unsealed,
    /// Another program seals a file to the run's public recipient and puts it in the sealed
    /// directory: a false secret for the `n`-th recorded token (modulo their number).
    PlantSealed(u64),
    /// An admin creates a token in the UI for the `n`-th manifest key not recorded yet
    /// (modulo their number), and `import` records it with its secret.
    Import(u64),
    /// `import --from` an export listing tokens an admin made in the UI for the keys not
    /// recorded yet (the first with one it replaced); `tamper`: the last row also lists as
    /// replaced a token that is another row's current one (or a recorded current one).
    ImportFrom {
        /// Whether the export lists a current token as replaced.
        tamper: bool,
    },
    /// `verify` through a misrouted endpoint: every whoami answers 403, whatever the token.
    VerifyMisrouted,
}

impl Op {
    /// An `apply` (or a rotation) run to its end.
    pub fn apply(rotate: bool) -> Op {
        Op::Apply {
            rotate,
            stop: None,
            stall: None,
            disk: None,
            power: false,
        }
    }
}

/// One row `export` handed out: the key, its recorded token id, and the id and secret
/// exported for it (None: no secret found).
type Exported = (TokenKey, i64, Option<(i64, String)>);

/// Which recorded tokens an `apply` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// None (a plain apply).
    None,
    /// Every one (`--rotate --older-than 0`).
    All,
    /// Those verify saw revoked (`--recreate-revoked`).
    Revoked,
}

/// The simulated server's whoami, for verify's probes: a token's secret answers with its
/// account while the token exists, 401 once an admin deleted it.
struct WhoAmIServer {
    truth: Vec<logzio_tokens::simulator::CreatedToken>,
    deleted: BTreeSet<i64>,
    /// Every answer is 403 (a misrouted or failing endpoint).
    misrouted: bool,
}

impl SendProbe for WhoAmIServer {
    fn probe(
        &self,
        token: &logzio_tokens::secret::Secret,
    ) -> impl std::future::Future<Output = Result<WhoAmI, ApiError>> + Send {
        let found = self
            .truth
            .iter()
            .find(|t| t.token == token.expose())
            .filter(|t| !self.deleted.contains(&t.id));
        let answer = match found {
            _ if self.misrouted => Err(ApiError::Status {
                url: "https://sim/v2/whoami".to_owned(),
                status: 403,
                message: "forbidden".to_owned(),
                retry_after: None,
            }),
            Some(t) => Ok(WhoAmI {
                account_name: format!("account {}", t.account_id),
                account_id: t.account_id,
            }),
            None => Err(ApiError::Status {
                url: "https://sim/v2/whoami".to_owned(),
                status: 401,
                message: "unauthorized".to_owned(),
                retry_after: None,
            }),
        };
        async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            answer
        }
    }
}

/// What happens at one filesystem call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCall {
    /// The process crashes there.
    Crash,
    /// The call fails (or writes short, or the filesystem turns read-only).
    Fault(Fault),
    /// The disk is full from there on, with this many bytes left.
    Full(u64),
    /// Another program replaces the results file there (adding a record of its own).
    Foreign,
    /// Another program replaces the results file right after the tool's k-th rename onto it
    /// (0-based; the call index is unused).
    ForeignAfterRename(u64),
    /// Another program replaces the results file right after the tool's k-th rename onto the
    /// secrets file (0-based; the call index is unused): while a save writes the results file.
    ForeignAfterSecretsRename(u64),
    /// The process crashes `then` calls after its `k`-th journal write that holds only
    /// intents (0-based; the call index is unused): an aimed crash point, where an intent
    /// acknowledged before its fsync would be lost with its request already sent.
    CrashAfterIntents {
        /// Which intent-only write (0-based).
        k: u64,
        /// How many calls later (1: the next call).
        then: u64,
    },
}

/// The tag of a finding of this simulation (not one of issue 25's): `Store::save` checked that
/// the results file was unchanged before it wrote the secrets file, so a replacement during
/// that write was overwritten; the check is now made right before the rename (fixed).
pub const SAVE_WINDOW: &str = "finding save-window";

/// The account another program's record is under (see [`AtCall::Foreign`]).
pub const FOREIGN_ACCOUNT: u32 = 999;

/// Another program's edit of a results file: a record of its own added.
fn foreign_edit(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let record = v["accounts"]
        .as_object()?
        .values()
        .find_map(|tokens| tokens.as_object()?.values().next().cloned())?;
    let mut record = record;
    record["token_id"] = serde_json::json!(1);
    v["accounts"][FOREIGN_ACCOUNT.to_string()] = serde_json::json!({ "foreign": record });
    serde_json::to_vec_pretty(&v).ok()
}

/// What one seed plays.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Whether runs seal their secrets.
    pub sealed: bool,
    /// The tokens the manifest asks for.
    pub keys: Vec<TokenKey>,
    /// The server's faults.
    pub faults: FaultRates,
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Sub accounts the manifest creates: name and token names (each but the first shares
    /// with the first, so it waits for its id).
    pub new_accounts: Vec<(String, Vec<String>)>,
    /// The longest list lag of a created account (within the lookup's time).
    pub list_lag: Duration,
    /// The share of list and shipping-token reads that fail (503 or a cut body).
    pub read_faults: f64,
}

/// How long a run looks for an account after an ambiguous create (`--account-lookup`): the
/// list lag a scenario draws stays within it by more than a stall (a read held past the
/// lookup's end by a stall sees the list as it was when the read was sent).
pub const ACCOUNT_LOOKUP: Duration = Duration::from_secs(8);

impl Scenario {
    /// The scenario seed `seed` plays.
    pub fn of(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(1..=10usize);
        let keys = (0..n)
            .map(|i| TokenKey {
                account_id: ACCOUNTS[rng.random_range(0..ACCOUNTS.len())],
                token_name: format!("t{i}"),
            })
            .collect();
        let mut f = || {
            if rng.random_bool(0.5) {
                0.0
            } else {
                rng.random_range(0.0..0.08)
            }
        };
        let faults = FaultRates {
            rate_limited: f(),
            unavailable: f(),
            error_after_create: f(),
            drop_before_create: f(),
            drop_after_create: f(),
            truncate_after_create: f(),
            slow_after_create: 0.0,
        };
        let sealed = rng.random_bool(0.5) || seed >> 63 == 1;
        // Crash points aimed at the calls that matter, drawn from a stream of their own so
        // that the rest of each seed's scenario stays what it was: right after a journal
        // write that holds only intents (the instant an intent not yet fsync'd would be lost
        // with its request sent), mostly as a power loss.
        let mut aim = StdRng::seed_from_u64(seed ^ 0x5151_a1a1_0f0f_3c3c);
        let mut imports = StdRng::seed_from_u64(seed ^ 0x1a2b_3c4d_5e6f_7081);
        let mut ops = Vec::new();
        let events = 4 * n as u64 + 4;
        // Seeds with the top bit set are the stall family: runs may stall past the recorder's
        // save interval (a mid-run checkpoint) before they crash. A stall is a real sleep until
        // the recorder's clock is injected (issue 30), so the CI range holds few of them.
        let stalls = seed >> 63 == 1;
        for _ in 0..rng.random_range(1..=5) {
            let at = |rng: &mut StdRng, what| Some((rng.random_range(1..=events), what));
            let op = match rng.random_range(0..100) {
                0..35 => (false, at(&mut rng, AtEvent::Crash)),
                35..50 => (false, at(&mut rng, AtEvent::CtrlC)),
                50..65 => (true, None),
                65..80 => (true, at(&mut rng, AtEvent::Crash)),
                80..90 => {
                    ops.push(Op::ClearOrphans);
                    continue;
                }
                90..95 => {
                    ops.push(Op::SwitchEndpoint);
                    continue;
                }
                _ => (false, None),
            };
            let stall = match op.1 {
                Some((crash, AtEvent::Crash)) if crash > 1 && (stalls || rng.random_bool(0.2)) => {
                    Some(rng.random_range(1..crash))
                }
                _ => None,
            };
            let calls = 30 + 12 * n as u64;
            let disk = match rng.random_range(0..100) {
                0..20 => Some((rng.random_range(1..=calls), AtCall::Crash)),
                20..26 => Some((
                    rng.random_range(1..=calls),
                    AtCall::Fault(Fault::Fail(Errno::NoSpace)),
                )),
                26..30 => Some((
                    rng.random_range(1..=calls),
                    AtCall::Fault(Fault::Fail(Errno::Io)),
                )),
                30..34 => Some((
                    rng.random_range(1..=calls),
                    AtCall::Fault(Fault::ShortWrite),
                )),
                34..38 => Some((
                    rng.random_range(1..=calls),
                    AtCall::Fault(Fault::RemountReadOnly),
                )),
                38..42 => Some((
                    rng.random_range(1..=calls),
                    AtCall::Full(rng.random_range(0..4096)),
                )),
                42..46 => Some((rng.random_range(1..=calls), AtCall::Foreign)),
                46..54 => Some((0, AtCall::ForeignAfterRename(rng.random_range(0..2)))),
                _ => None,
            };
            let mut power = rng.random_bool(0.5);
            let disk = match disk {
                None if aim.random_bool(0.4) => {
                    power |= aim.random_bool(0.6);
                    Some((
                        0,
                        AtCall::CrashAfterIntents {
                            k: aim.random_range(0..n as u64),
                            then: aim.random_range(1..=2),
                        },
                    ))
                }
                d => d,
            };
            ops.push(Op::Apply {
                rotate: op.0,
                stop: op.1,
                stall,
                disk,
                power,
            });
            // The read-side operations and the UI, from the aimed stream too.
            match aim.random_range(0..100) {
                0..12 => ops.push(Op::Verify),
                12..22 => ops.extend([
                    Op::Revoke(aim.random_range(0..16)),
                    Op::Verify,
                    Op::Recreate,
                ]),
                22..27 => ops.extend([Op::Revoke(aim.random_range(0..16)), Op::Recreate]),
                27..40 => ops.push(Op::Export),
                40..46 if sealed => ops.extend([Op::Unsealed, Op::Export]),
                46..52 if sealed => {
                    ops.extend([Op::PlantSealed(aim.random_range(0..16)), Op::Export])
                }
                _ => {}
            }
            // Imports and a misrouted verify, from a stream of their own (the scenarios of
            // the seeds before them stay what they were).
            match imports.random_range(0..100) {
                0..6 => ops.push(Op::Import(imports.random_range(0..16))),
                6..10 => ops.push(Op::ImportFrom {
                    tamper: imports.random_bool(0.5),
                }),
                10..16 => ops.push(Op::VerifyMisrouted),
                _ => {}
            }
        }
        // Every scenario ends with a run to the end, so "nothing lost" is checked after it.
        ops.push(Op::Apply {
            rotate: false,
            stop: None,
            stall: None,
            disk: None,
            power: false,
        });
        // Sub accounts to create, from a stream of their own (the scenarios of seeds without
        // them stay what they were): a share of the seeds.
        let mut acct = StdRng::seed_from_u64(seed ^ 0x0acc_0acc_5eed_0001);
        let mut new_accounts = Vec::new();
        let (mut list_lag, mut read_faults) = (Duration::ZERO, 0.0);
        if acct.random_bool(ACCOUNT_SEEDS) {
            for a in 0..acct.random_range(1..=3) {
                let tokens = (0..acct.random_range(1..=2))
                    .map(|t| format!("a{t}"))
                    .collect();
                new_accounts.push((format!("new-{a}"), tokens));
            }
            list_lag = Duration::from_millis([0, 500, 2_000, 4_000][acct.random_range(0..4usize)]);
            read_faults = if acct.random_bool(0.5) { 0.0 } else { 0.1 };
        }
        Scenario {
            seed,
            sealed,
            keys,
            faults,
            ops,
            new_accounts,
            list_lag,
            read_faults,
        }
    }

    fn manifest(&self) -> String {
        let mut out = String::from("version: 1\naccounts:\n");
        for acc in ACCOUNTS {
            let names: Vec<&str> = self
                .keys
                .iter()
                .filter(|k| k.account_id == acc)
                .map(|k| k.token_name.as_str())
                .collect();
            if !names.is_empty() {
                out.push_str(&format!(
                    "  - id: {acc}\n    tokens: [{}]\n",
                    names.join(", ")
                ));
            }
        }
        for (i, (name, tokens)) in self.new_accounts.iter().enumerate() {
            out.push_str(&format!(
                "  - name: {name}\n    tokens: [{}]\n    create:\n      email: ops@example.com\n      retention_days: 7\n      max_daily_gb: 5\n",
                tokens.join(", ")
            ));
            if i > 0 {
                out.push_str(&format!(
                    "      sharing_objects_accounts: [{}]\n",
                    self.new_accounts[0].0
                ));
            }
        }
        out
    }
}

/// A test-wide age key pair (generating one per seed would cost more than the run).
fn key() -> &'static (Recipients, PathBuf) {
    use age::secrecy::ExposeSecret;
    static KEY: std::sync::OnceLock<(Recipients, PathBuf)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let id = age::x25519::Identity::generate();
        let dir =
            std::env::temp_dir().join(format!("logzio-tokens-sim-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("key.txt");
        std::fs::write(&file, format!("{}\n", id.to_string().expose_secret())).expect("key file");
        (
            Recipients::new(vec![id.to_public()]).expect("one recipient"),
            file,
        )
    })
}

/// What a seed's run found.
#[derive(Debug)]
pub struct Verdict {
    /// The scenario.
    pub scenario: Scenario,
    /// Every problem, with the step it was found after.
    pub problems: Vec<String>,
    /// The trace.
    pub trace: Vec<String>,
}

impl Verdict {
    /// The trace's SHA-256, in hex.
    pub fn trace_hash(&self) -> String {
        let mut h = Sha256::new();
        for line in &self.trace {
            h.update(line.as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The simulation's clock: the monotonic time is tokio's (paused), the wall time a fixed
/// date plus the paused time elapsed since the clock was made (in its runtime), so that file
/// names and timestamps are the same on every replay.
#[derive(Debug)]
struct SimClock {
    anchor: tokio::time::Instant,
    wall: time::OffsetDateTime,
}

impl SimClock {
    /// A clock reading `wall` now; call inside the runtime that plays the operation.
    fn shared(wall: time::OffsetDateTime) -> logzio_tokens::clock::SharedClock {
        Arc::new(SimClock {
            anchor: tokio::time::Instant::now(),
            wall,
        })
    }
}

impl logzio_tokens::clock::Clock for SimClock {
    fn now_utc(&self) -> time::OffsetDateTime {
        self.wall + self.now().saturating_duration_since(self.anchor)
    }
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// The wall time of a scenario's first step.
const START: time::OffsetDateTime = time::macros::datetime!(2026-01-05 09:00 UTC);

/// The simulated servers' clock: the wall time the driver set for the current step.
#[derive(Debug)]
struct StepClock(Arc<std::sync::Mutex<time::OffsetDateTime>>);

impl logzio_tokens::clock::Clock for StepClock {
    fn now_utc(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

struct World {
    sc: Scenario,
    /// The wall time the simulated servers stamp `createdAt` with: the current step's.
    server_wall: Arc<std::sync::Mutex<time::OffsetDateTime>>,
    fs: SimFs,
    dir: PathBuf,
    paths: StatePaths,
    manifest: Manifest,
    servers: [SimApi; 2],
    acks: Arc<std::sync::Mutex<Acks>>,
    endpoint: usize,
    allow: Allowance,
    ids: Identities,
    /// Whether another program's record was planted in the results file.
    foreign: bool,
    /// The token ids an admin deleted, by endpoint.
    deleted: [BTreeSet<i64>; 2],
    /// What the last `export` handed out, for the checker: each recorded key's exported
    /// token id and secret (None: no secret found for it).
    exported: Option<Vec<Exported>>,
    /// Saves the invariants module refused in the last step.
    refused: Vec<String>,
    /// Whether the apply being played has no recipients though the scenario seals.
    unsealed: bool,
    /// Current tokens a misrouted verify marked revoked while the server held them.
    misrouted_revoked: BTreeSet<i64>,
    steps: u64,
    trace: Vec<String>,
    problems: Vec<String>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// Plays seed `seed`.
pub fn run(seed: u64) -> Verdict {
    run_scenario(Scenario::of(seed))
}

/// Plays a scenario.
pub fn run_scenario(sc: Scenario) -> Verdict {
    let fs = SimFs::default();
    let dir = PathBuf::from("/sim/state");
    fs.create_dir_all(&dir).expect("the state directory");
    let manifest_path = dir.join("m.yaml");
    let text = sc.manifest();
    let manifest =
        logzio_tokens::manifest::load_str(&manifest_path, &text, &|_| None).expect("a manifest");
    let paths = StatePaths::for_manifest(&manifest_path, None, None);
    let acks = Arc::new(std::sync::Mutex::new(Acks::default()));
    let wall = Arc::new(std::sync::Mutex::new(START));
    let server = |i: u64| {
        let config = SimConfig {
            faults: sc.faults,
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(60),
            seed: sc.seed.wrapping_mul(2).wrapping_add(i),
            clock: Arc::new(StepClock(Arc::clone(&wall))),
            ..SimConfig::default()
        };
        SimApi {
            sim: InProcess::new(&config).expect("a valid simulator configuration"),
            net: Arc::new(Net::default()),
            acks: Arc::clone(&acks),
            fs: fs.clone(),
            accounts: Arc::new(super::api::AccountSide::new(
                sc.seed ^ 0x0acc_0000_0000_0000 ^ i,
                sc.list_lag,
                sc.read_faults,
            )),
        }
    };
    let mut w = World {
        servers: [server(0), server(1)],
        server_wall: wall,
        acks,
        allow: Allowance {
            planned: sc.keys.iter().map(|k| (k.clone(), 1)).collect(),
            clears: 0,
            cleared: std::collections::BTreeSet::new(),
            cleared_accounts: std::collections::BTreeSet::new(),
            max_ambiguous: logzio_tokens::execution::DEFAULT_MAX_AMBIGUOUS,
        },
        ids: Identities::load(&key().1).expect("the test identity"),
        sc,
        fs,
        dir,
        paths,
        manifest,
        endpoint: 0,
        foreign: false,
        deleted: [BTreeSet::new(), BTreeSet::new()],
        exported: None,
        refused: Vec::new(),
        unsealed: false,
        misrouted_revoked: BTreeSet::new(),
        steps: 0,
        trace: Vec::new(),
        problems: Vec::new(),
    };
    w.trace.push(format!(
        "scenario sealed={} keys={} ops={:?}",
        w.sc.sealed,
        w.sc.keys.len(),
        w.sc.ops
    ));
    if !w.sc.new_accounts.is_empty() {
        w.trace.push(format!(
            "accounts {:?} list_lag={:?} read_faults={}",
            w.sc.new_accounts, w.sc.list_lag, w.sc.read_faults
        ));
    }
    let ops = w.sc.ops.clone();
    for (i, op) in ops.iter().enumerate() {
        let ended = w.step(op);
        let log = w.fs.take_log();
        w.trace.extend(log);
        for s in &w.servers {
            let net = std::mem::take(&mut *s.net.trace.lock().expect("trace"));
            w.trace.extend(net);
        }
        w.check(i, op, ended);
    }
    Verdict {
        scenario: w.sc,
        problems: w.problems,
        trace: w.trace,
    }
}

impl World {
    fn api(&self) -> &SimApi {
        &self.servers[self.endpoint]
    }

    /// The wall time of the current step: a fixed date, an hour per step (the simulated
    /// servers stamp `createdAt` with it too, so a token made in an earlier step is older
    /// than the rotation's `--older-than 0`).
    fn wall(&self) -> time::OffsetDateTime {
        START + Duration::from_secs(3600 * self.steps)
    }

    /// A store on the simulated disk (its run ids from the seed); call inside a runtime.
    fn open(&mut self) -> Result<Store<SimFs>, logzio_tokens::state::StateError> {
        self.open_bound(Some(ENDPOINTS[self.endpoint]))
    }

    /// A store bound to `endpoint` (None: to none, as `import` was before issue 25's defect
    /// 9 was fixed); call inside a runtime.
    fn open_bound(
        &mut self,
        endpoint: Option<&str>,
    ) -> Result<Store<SimFs>, logzio_tokens::state::StateError> {
        self.steps += 1;
        *self.server_wall.lock().unwrap() = self.wall();
        Store::open_in(
            self.fs.clone(),
            SimClock::shared(self.wall()),
            StdRng::seed_from_u64(self.sc.seed ^ self.steps.rotate_left(32)),
            self.paths.clone(),
            endpoint,
        )
    }

    /// Plays one operation; true when it ended (was not crashed) and its state was saved, so
    /// that the files must hold everything (after a failed save, the journal holds it until the
    /// next run).
    fn step(&mut self, op: &Op) -> bool {
        self.fs.disarm();
        match op {
            Op::Apply {
                rotate,
                stop,
                stall,
                disk,
                power,
            } => {
                let replace = if *rotate { Replace::All } else { Replace::None };
                let ended = self.run_apply(replace, *stop, *stall, *disk);
                if !ended {
                    // The machine comes back: what was not durable is gone (power loss) or
                    // kept (the process alone died).
                    self.fs.reboot(self.sc.seed ^ self.steps, *power);
                    self.trace.push(format!("reboot power_loss={power}"));
                }
                // The disk gets its space back, and is writable again, for the next step.
                self.fs.set_space(None, false);
                ended
            }
            Op::ClearOrphans => {
                let rt = runtime();
                let opened = rt.block_on(async { self.open() });
                match opened {
                    Ok(mut store) => {
                        store.ledger_mut().clear_orphans(|_| true);
                        let names = store.ledger_mut().clear_account_orphans(|_| true);
                        self.allow.cleared_accounts.extend(names);
                        let r = store.save();
                        self.allow.clears += 1;
                        for s in &self.servers {
                            self.allow
                                .cleared
                                .extend(s.sim.ground_truth().iter().map(|t| t.id));
                        }
                        self.trace
                            .push(format!("orphans clear: {:?}", r.map_err(|e| e.to_string())));
                    }
                    Err(e) => self.trace.push(format!("orphans clear refused: {e}")),
                }
                true
            }
            Op::SwitchEndpoint => {
                self.endpoint = 1 - self.endpoint;
                self.trace
                    .push(format!("endpoint {}", ENDPOINTS[self.endpoint]));
                true
            }
            Op::Revoke(n) => {
                self.revoke(*n);
                true
            }
            Op::Verify => self.verify(false),
            Op::VerifyMisrouted => self.verify(true),
            Op::Import(n) => self.import(*n),
            Op::ImportFrom { tamper } => self.import_from(*tamper),
            Op::Recreate => {
                let ended = self.run_apply(Replace::Revoked, None, None, None);
                if !ended {
                    self.fs.reboot(self.sc.seed ^ self.steps, false);
                }
                ended
            }
            Op::Export => {
                self.export();
                true
            }
            Op::Unsealed => {
                // Only a state whose secrets are sealed is refused in plaintext: before its
                // first sealed file, a run without recipients is a plain state's run.
                if self.fs.files_under(&self.paths.sealed).is_empty() {
                    self.trace
                        .push("unsealed: nothing sealed yet, not played".to_owned());
                    return true;
                }
                self.unsealed = true;
                let ended = self.run_apply(Replace::None, None, None, None);
                self.unsealed = false;
                ended
            }
            Op::PlantSealed(n) => {
                self.plant_sealed(*n);
                true
            }
        }
    }

    /// Another program plants a sealed file holding a false secret for a recorded token.
    fn plant_sealed(&mut self, n: u64) {
        let results = check::read(&self.fs, &self.paths, &self.ids, &mut Vec::new()).results;
        let Some(results) = results.filter(|r| !r.sealed_files.is_empty()) else {
            self.trace
                .push("plant sealed: no sealed file listed yet".to_owned());
            return;
        };
        let recorded: Vec<(TokenKey, i64)> = results
            .accounts
            .iter()
            .flat_map(|(a, t)| {
                t.iter().map(move |(n, t)| {
                    (
                        TokenKey {
                            account_id: *a,
                            token_name: n.clone(),
                        },
                        t.token_id,
                    )
                })
            })
            .filter(|(k, _)| k.account_id != FOREIGN_ACCOUNT)
            .collect();
        if recorded.is_empty() {
            self.trace.push("plant sealed: nothing recorded".to_owned());
            return;
        }
        let (target, id) = &recorded[(n % recorded.len() as u64) as usize];
        let mut doc = logzio_tokens::state::SecretsFile::default();
        doc.insert(
            target,
            *id,
            logzio_tokens::secret::Secret::new("PLANTED-not-the-secret"),
        );
        let armored = key().0.seal_secrets(&doc).expect("sealing");
        // Named after an earlier time than any of the tool's, so that it would be read first.
        let name = "19700101T000000Z-planted.age";
        let mut planted = self.paths.sealed.join(name);
        if let Err(e) =
            logzio_tokens::state::sealed::write_new_in(&self.fs, &self.paths.sealed, name, &armored)
        {
            planted = PathBuf::from(format!("not written: {e}"));
        }
        self.trace.push(format!(
            "plant sealed {} for {target} (token {id})",
            planted.display()
        ));
    }

    /// The manifest's keys the results file does not record (yet).
    fn unrecorded(&self) -> Vec<TokenKey> {
        let results = check::read(&self.fs, &self.paths, &self.ids, &mut Vec::new()).results;
        self.sc
            .keys
            .iter()
            .filter(|k| results.as_ref().is_none_or(|r| r.get(k).is_none()))
            .cloned()
            .collect()
    }

    /// An admin creates a token for `key` in the UI, on the current endpoint's server (the
    /// simulator's create, tried until one is made). It is not the tool's: the checker neither
    /// counts it against the key's budget nor asks it recorded unless an import recorded it.
    fn ui_create(&mut self, key: &TokenKey) -> Option<logzio_tokens::simulator::CreatedToken> {
        let before = self.api().sim.ground_truth().len();
        for _ in 0..50 {
            let _ = self
                .api()
                .sim
                .create(i64::from(key.account_id), &key.token_name);
            let truth = self.api().sim.ground_truth();
            if truth.len() > before {
                for t in &truth[before..] {
                    *self.allow.planned.entry(key.clone()).or_default() += 1;
                    self.allow.cleared.insert(t.id);
                }
                let made = truth.last().cloned();
                if let Some(t) = &made {
                    self.trace
                        .push(format!("ui: created token {} for {key}", t.id));
                }
                return made;
            }
        }
        None
    }

    /// Whether this run seals (the scenario seals, and the run was not told otherwise).
    fn recipients(&self) -> Option<Recipients> {
        (self.sc.sealed && !self.unsealed).then(|| key().0.clone())
    }

    /// Keeps an import's secrets as the command does: sealed into a new sealed file with
    /// recipients, else in the secrets file; then saves.
    fn keep_and_save(
        store: &mut Store<SimFs>,
        recipients: Option<&Recipients>,
        doc: logzio_tokens::state::SecretsFile,
    ) -> Result<(), String> {
        store
            .keep_imported(recipients, doc)
            .map_err(|e| first_line(&e.to_string()))?;
        store.save().map_err(|e| first_line(&e.to_string()))
    }

    /// The endpoint `import` binds the results file to: the run's (with issue 25's defect 9
    /// put back, none).
    fn import_endpoint(&self) -> Option<&'static str> {
        use logzio_tokens::reintroduced::{Bug, on};
        (!on(Bug::ImportUnbound)).then_some(ENDPOINTS[self.endpoint])
    }

    /// `import`, as the command does it: a token an admin made in the UI recorded with its
    /// secret, under the state's lock.
    fn import(&mut self, n: u64) -> bool {
        let keys = self.unrecorded();
        if keys.is_empty() {
            self.trace.push("import: every key recorded".to_owned());
            return false;
        }
        let key = keys[(n % keys.len() as u64) as usize].clone();
        let Some(made) = self.ui_create(&key) else {
            self.trace
                .push(format!("import: the UI made no token for {key}"));
            return true;
        };
        let recipients = self.recipients();
        let endpoint = self.import_endpoint();
        let rt = runtime();
        let line = rt.block_on(async {
            let mut store = match self.open_bound(endpoint) {
                Ok(s) => s,
                Err(e) => return format!("import refused: {}", first_line(&e.to_string())),
            };
            if let Err(e) = store.check_protection(recipients.is_some(), false) {
                return format!("import refused: {}", first_line(&e.to_string()));
            }
            let at = store.clock().now_rfc3339();
            if let Err(e) = store.ledger_mut().import(&key, made.id, &at) {
                return format!("import refused: {e:?}");
            }
            let mut doc = logzio_tokens::state::SecretsFile::default();
            doc.insert(
                &key,
                made.id,
                logzio_tokens::secret::Secret::new(made.token.clone()),
            );
            let saved = Self::keep_and_save(&mut store, recipients.as_ref(), doc);
            format!(
                "import {key} as token {}: saved={}",
                made.id,
                saved.map_or_else(|e| e, |()| "ok".to_owned())
            )
        });
        drop(rt);
        let ended = line.ends_with("saved=ok");
        self.refused_save(&line);
        self.trace.push(line);
        ended
    }

    /// Notes a save the invariants module refused: a correct command checks what it records
    /// and refuses with its own message before it gets there.
    fn refused_save(&mut self, line: &str) {
        if line.contains("refusing to save results file") {
            self.refused.push(line.to_owned());
        }
    }

    /// `import --from EXPORT`, as the command does it (`Ledger::import_from`, which checks every
    /// row, the rows' replaced tokens against the current ones too, before it records
    /// anything), of an export made from tokens made in the UI, one of them tampered with.
    fn import_from(&mut self, tamper: bool) -> bool {
        use logzio_tokens::state::export::{ExportedReplaced, ExportedToken};
        let keys: Vec<TokenKey> = self.unrecorded().into_iter().take(3).collect();
        if keys.is_empty() {
            self.trace
                .push("import --from: every key recorded".to_owned());
            return false;
        }
        let mut rows = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let old = if i == 0 { self.ui_create(key) } else { None };
            let Some(made) = self.ui_create(key) else {
                continue;
            };
            rows.push(ExportedToken {
                account_id: key.account_id,
                account_name: None,
                token_name: key.token_name.clone(),
                token_id: made.id,
                token: logzio_tokens::secret::Secret::new(made.token.clone()),
                superseded: old
                    .into_iter()
                    .map(|o| ExportedReplaced {
                        token_id: o.id,
                        replaced_by: Some(made.id),
                        created_at: None,
                        status: None,
                        checked_at: None,
                        token: Some(logzio_tokens::secret::Secret::new(o.token)),
                        note: None,
                    })
                    .collect(),
                kind: None,
            });
        }
        let recorded_current = check::read(&self.fs, &self.paths, &self.ids, &mut Vec::new())
            .results
            .and_then(|r| {
                r.accounts
                    .iter()
                    .filter(|(a, _)| **a != FOREIGN_ACCOUNT)
                    .find_map(|(_, t)| t.values().next().map(|t| t.token_id))
            });
        let tampered = match (tamper, rows.len()) {
            (false, _) | (_, 0) => None,
            (true, 1) => recorded_current,
            (true, _) => Some(rows[0].token_id),
        };
        if let (Some(id), Some(last)) = (tampered, rows.last_mut()) {
            last.superseded.push(ExportedReplaced {
                token_id: id,
                replaced_by: Some(last.token_id),
                created_at: None,
                status: None,
                checked_at: None,
                token: None,
                note: None,
            });
        }
        let recipients = self.recipients();
        let endpoint = self.import_endpoint();
        // The manifest asks for the scenario's keys.
        let wanted = self.sc.keys.clone();
        let row_keys: Vec<TokenKey> = rows
            .iter()
            .map(|r| TokenKey {
                account_id: r.account_id,
                token_name: r.token_name.clone(),
            })
            .collect();
        let mut mismatch = None;
        let n = rows.len();
        let rt = runtime();
        let line = rt.block_on(async {
            let mut store = match self.open_bound(endpoint) {
                Ok(s) => s,
                Err(e) => return format!("refused: {}", first_line(&e.to_string())),
            };
            if let Err(e) = store.check_protection(recipients.is_some(), false) {
                return format!("refused: {}", first_line(&e.to_string()));
            }
            // The command's own operation: the driver checks what it recorded against the
            // ground truth afterwards (check.rs), not how.
            let at = store.clock().now_rfc3339();
            let done = match store
                .ledger_mut()
                .import_from(rows, &at, |k, _| wanted.contains(k))
            {
                Ok(done) => done,
                Err(e) => return format!("refused: {e:?}"),
            };
            // Every row's key was unrecorded: each is recorded now.
            if done.recorded != row_keys {
                mismatch = Some(format!(
                    "import --from recorded {:?} of the rows {row_keys:?}",
                    done.recorded
                ));
            }
            Self::keep_and_save(&mut store, recipients.as_ref(), done.secrets)
                .map_or_else(|e| format!("saved={e}"), |()| "saved=ok".to_owned())
        });
        drop(rt);
        self.problems.extend(mismatch);
        self.refused_save(&line);
        self.trace.push(format!(
            "import --from ({n} rows, tampered with {tampered:?}): {line}"
        ));
        line.ends_with("saved=ok")
    }

    /// An admin deletes a recorded token in the UI.
    fn revoke(&mut self, n: u64) {
        let results = check::read(&self.fs, &self.paths, &self.ids, &mut Vec::new()).results;
        let ids: Vec<i64> = results
            .iter()
            .flat_map(|r| r.accounts.values())
            .flat_map(|tokens| tokens.values().map(|t| t.token_id))
            .collect();
        if ids.is_empty() {
            self.trace.push("revoke: nothing recorded".to_owned());
            return;
        }
        let id = ids[(n % ids.len() as u64) as usize];
        let deleted = self.api().sim.delete_token(id);
        if deleted {
            self.deleted[self.endpoint].insert(id);
        }
        self.trace
            .push(format!("revoke {id} in the UI: deleted={deleted}"));
    }

    /// `verify`, as the command does it: lock, read every secret, probe, save the statuses.
    fn verify(&mut self, misrouted: bool) -> bool {
        let rt = runtime();
        let probe = WhoAmIServer {
            truth: self.api().sim.ground_truth(),
            deleted: self.deleted[self.endpoint].clone(),
            misrouted,
        };
        let opened = rt.block_on(async { self.open() });
        let ids = &self.ids;
        let line = rt.block_on(async {
            let mut store = match opened {
                Ok(s) => s,
                Err(e) => return format!("verify refused: {}", first_line(&e.to_string())),
            };
            let (secrets, skipped) = match store.all_secrets_named(Some(ids)) {
                Ok(s) => s,
                Err(e) => return format!("verify refused: {}", first_line(&e.to_string())),
            };
            let mut by_id = HashMap::new();
            for tokens in secrets.accounts.values() {
                for rec in tokens.values() {
                    by_id.insert(rec.token_id, rec.token.clone());
                }
            }
            for s in &secrets.superseded {
                by_id.entry(s.token_id).or_insert_with(|| s.token.clone());
            }
            let results = store.results();
            let current = results.accounts.iter().flat_map(|(acc, tokens)| {
                tokens.iter().map(move |(name, t)| {
                    (
                        TokenKey {
                            account_id: *acc,
                            token_name: name.clone(),
                        },
                        t.token_id,
                        false,
                    )
                })
            });
            let replaced = results.superseded_to_remove().map(|s| {
                (
                    TokenKey {
                        account_id: s.account_id,
                        token_name: s.token_name.clone(),
                    },
                    s.token_id,
                    true,
                )
            });
            let probes: Vec<Probe> = current
                .chain(replaced)
                .filter_map(|(key, token_id, superseded)| {
                    Some(Probe {
                        secret: by_id.get(&token_id)?.clone(),
                        key,
                        token_id,
                        superseded,
                    })
                })
                .collect();
            let n = probes.len();
            let report = probe_all(
                probes,
                ProbeConfig {
                    concurrency: 4,
                    max_attempts: 3,
                    backoff: Backoff::default(),
                },
                Arc::new(probe),
                Arc::new(Pacer::with_clock(
                    50.0,
                    false,
                    None,
                    Arc::clone(store.clock()),
                )),
                Arc::new(Stats::default()),
                None,
                Stop::default(),
            )
            .await;
            let seen: std::collections::HashMap<i64, logzio_tokens::state::TokenStatus> = report
                .verdicts
                .iter()
                .map(|v| (v.token_id, v.status))
                .collect();
            let at = store.clock().now_rfc3339();
            store.ledger_mut().set_statuses(&seen, &at);
            let saved = store.save();
            format!(
                "verify: {n} probed, {} skipped sealed files, saved={}",
                skipped.len(),
                saved.map_or_else(|e| first_line(&e.to_string()), |()| "ok".to_owned())
            )
        });
        drop(rt);
        let ended = line.ends_with("saved=ok");
        self.trace.push(line);
        ended
    }

    /// `export`: every recorded token's secret, read back as export reads it.
    fn export(&mut self) {
        let rt = runtime();
        let wall = self.wall();
        let read = rt.block_on(async {
            Store::read_in(
                self.fs.clone(),
                SimClock::shared(wall),
                logzio_tokens::random::seeded(0),
                self.paths.clone(),
                Some(ENDPOINTS[self.endpoint]),
            )
        });
        drop(rt);
        let store = match read {
            Ok(s) => s,
            Err(e) => {
                self.trace
                    .push(format!("export refused: {}", first_line(&e.to_string())));
                return;
            }
        };
        let secrets = match store.all_secrets_named(Some(&self.ids)) {
            Ok((s, _)) => s,
            Err(e) => {
                self.trace
                    .push(format!("export refused: {}", first_line(&e.to_string())));
                return;
            }
        };
        let mut rows = Vec::new();
        for (acc, tokens) in &store.results().accounts {
            for name in tokens.keys() {
                let key = TokenKey {
                    account_id: *acc,
                    token_name: name.clone(),
                };
                let recorded = tokens[name].token_id;
                let row = secrets
                    .get(&key)
                    .map(|r| (r.token_id, r.token.expose().to_owned()));
                rows.push((key, recorded, row));
            }
        }
        self.trace.push(format!("export: {} rows", rows.len()));
        self.exported = Some(rows);
    }

    fn run_apply(
        &mut self,
        replace: Replace,
        stop: Option<(u64, AtEvent)>,
        stall: Option<u64>,
        disk: Option<(u64, AtCall)>,
    ) -> bool {
        let rt = runtime();
        let api = self.api().clone();
        let cancel = Cancel::default();
        api.net.stop_at(stop, stall, cancel.clone());
        self.fs.crash_at(None);
        match disk {
            Some((n, AtCall::Crash)) => self.fs.crash_at(Some(n)),
            Some((n, AtCall::Fault(f))) => self.fs.fault_at(n, f),
            Some((n, AtCall::Full(left))) => {
                // Full from the n-th call: a fault that fills the disk there.
                self.fs.fault_at(n, Fault::Fail(Errno::NoSpace));
                self.fs.set_space(Some(self.fs.used() + left), false);
            }
            Some((n, AtCall::Foreign)) => {
                self.fs.plant_at(n, &self.paths.results, foreign_edit);
            }
            Some((_, AtCall::ForeignAfterRename(k))) => {
                self.fs.plant_after_rename(
                    k,
                    &self.paths.results,
                    &self.paths.results,
                    foreign_edit,
                );
            }
            Some((_, AtCall::CrashAfterIntents { k, then })) => {
                self.fs.crash_after_intents(k, then);
            }
            Some((_, AtCall::ForeignAfterSecretsRename(k))) => {
                self.fs.plant_after_rename(
                    k,
                    &self.paths.secrets,
                    &self.paths.results,
                    foreign_edit,
                );
            }
            None => {}
        }
        let planted_before = self.fs.planted();
        let sealed = (self.sc.sealed && !self.unsealed).then(|| key().0.clone());
        let store = rt.block_on(async { self.open() });
        let clock = SimClock::shared(self.wall());
        let run_seed = self.sc.seed ^ self.steps.rotate_left(40);
        let manifest = &self.manifest;
        let new_accounts = self.sc.new_accounts.clone();
        let mut planned: Vec<TokenKey> = Vec::new();
        let crashed = Arc::clone(&api.net);
        let disk_crashed = Arc::clone(&self.fs.crashed);
        let acks = Arc::clone(&self.acks);
        acks.lock().unwrap().new_run();
        let endpoint_index = self.endpoint;
        let run = async {
            let mut store = match store {
                Ok(s) => s,
                Err(e) => return format!("refused: {}", first_line(&e.to_string())),
            };
            // As apply does at its start: a sealed state is not continued in plaintext
            // (invariant 2; the simulation never passes --allow-plaintext).
            if let Err(e) = store.check_protection(sealed.is_some(), false) {
                return format!("refused: {}", first_line(&e.to_string()));
            }
            if let Some(r) = sealed {
                store.seal_to(r);
            }
            // As apply's preflight does when the manifest creates accounts: the list (as it
            // lags) says which exist.
            let live = (!new_accounts.is_empty()).then(|| api.listed_now());
            let mut plan = plan::plan(
                manifest,
                store.results(),
                live.as_ref(),
                &AccountFilter::default(),
            );
            let now = store.clock().now_utc();
            match replace {
                Replace::None => {}
                Replace::All => plan.add_replacements(
                    manifest,
                    store.results(),
                    false,
                    Some(Duration::ZERO),
                    now,
                ),
                Replace::Revoked => {
                    plan.add_replacements(manifest, store.results(), true, None, now);
                }
            }
            // As apply does: the ambiguity budget holds across runs (issue 25, defect 6).
            let (earlier_ambiguous, _at_budget) = plan.hold_ambiguity_budget(
                store.results(),
                logzio_tokens::execution::DEFAULT_MAX_AMBIGUOUS,
            );
            // And the accounts' own budget, as apply holds it.
            let earlier_accounts: BTreeMap<String, u32> = store
                .results()
                .accounts_ambiguous
                .iter()
                .map(|(name, a)| (name.clone(), a.ambiguous_attempts))
                .collect();
            let held = onboard::hold_accounts(
                &mut plan,
                &earlier_accounts,
                logzio_tokens::execution::DEFAULT_MAX_AMBIGUOUS,
            );
            let pending = store.pending_accounts();
            let missing_shipping = store.accounts_missing_shipping();
            planned = plan.to_send();
            let work = Work {
                tokens: planned.clone(),
                accounts: onboard::account_work(&plan, &pending, &earlier_accounts, &held),
                ids: plan.resolved_names.clone(),
                shipping: missing_shipping,
                lookup: ACCOUNT_LOOKUP,
            };
            let recorder = match Recorder::start(store) {
                Ok(r) => r,
                Err(e) => return format!("recorder refused: {}", first_line(&e.to_string())),
            };
            for (name, id) in &plan.resolved_names {
                recorder.handle().resolved_name(name.clone(), *id);
            }
            let services = Services {
                creator: api.clone(),
                recorder: Watched {
                    inner: recorder.handle(),
                    acks: Arc::clone(&acks),
                    endpoint: endpoint_index,
                },
                pacer: Arc::new(Pacer::with_clock(50.0, false, None, clock)),
                rng: logzio_tokens::random::seeded(run_seed),
                stats: Arc::new(Stats::default()),
                observer: None,
                cancel,
            };
            let config = ExecConfig {
                concurrency: 4,
                max_attempts: 4,
                max_ambiguous: logzio_tokens::execution::DEFAULT_MAX_AMBIGUOUS,
                fail_fast: false,
                backoff: Backoff::default(),
                drain_timeout: Duration::from_secs(60),
                earlier_ambiguous,
            };
            let report = execute(work, config, services).await;
            let (_, saved) = recorder.finish().await;
            let stop = match &report.stop {
                StopReason::Completed => "completed".to_owned(),
                StopReason::Interrupted => "interrupted".to_owned(),
                StopReason::State(e) => format!("state error ({})", first_line(&e.to_string())),
                other => format!("{other:?}").chars().take(40).collect(),
            };
            let accounts = if new_accounts.is_empty() {
                String::new()
            } else {
                let a = &report.accounts;
                format!(
                    " accounts: created={:?} adopted={:?} failed={} shipping={:?} shipping_failed={}",
                    a.created,
                    a.adopted,
                    a.failed.len(),
                    a.shipping,
                    a.shipping_failed.len()
                )
            };
            format!(
                "{stop} created={} ambiguous={}{accounts} saved={}",
                report.created,
                report.ambiguous,
                saved.map_or_else(|e| first_line(&e.to_string()), |()| "ok".to_owned())
            )
        };
        let line = rt.block_on(async {
            tokio::select! {
                biased;
                () = crashed.crashed.notified() => "crashed (network)".to_owned(),
                () = disk_crashed.notified() => "crashed (disk)".to_owned(),
                line = run => line,
            }
        });
        // Dropping the runtime drops every task of the run: the process is gone.
        drop(rt);
        self.foreign |= self.fs.planted() > planted_before;
        if replace != Replace::None {
            for k in &planned {
                *self.allow.planned.entry(k.clone()).or_default() += 1;
            }
        }
        self.trace.push(format!(
            "apply {replace:?} stop={stop:?} stall={stall:?} disk={disk:?} planned={} -> {line}",
            planned.len()
        ));
        if line.contains("refusing to save results file") {
            // The invariants module caught the run's own state breaking a rule: the save was
            // refused and the journal keeps everything, but a correct run never gets there.
            self.refused.push(line.clone());
        }
        !api.net.has_crashed() && !self.fs.has_crashed() && line.ends_with("saved=ok")
    }

    /// What verify and export did: a token verify calls revoked was deleted, one it calls
    /// valid was not; export hands out, for every recorded key, the recorded id's own secret.
    fn check_reads(
        &mut self,
        seen: &check::Seen,
        truth: &[logzio_tokens::simulator::CreatedToken],
        op: &Op,
        ended: bool,
        problems: &mut Vec<String>,
    ) {
        use logzio_tokens::state::TokenStatus;
        let deleted = &self.deleted[self.endpoint];
        let misrouted = *op == Op::VerifyMisrouted;
        if let (Op::Verify | Op::VerifyMisrouted, true, Some(r)) = (op, ended, &seen.results) {
            // Through a misrouted endpoint the current tokens answer 403 too, and are marked
            // revoked (the next verify probes them again); the replaced ones must stay listed
            // for removal by hand (issue 25, defect 15).
            let current = r.accounts.iter().filter(|_| !misrouted).flat_map(|(a, t)| {
                t.iter()
                    .map(move |(n, t)| (format!("{a}/{n}"), t.token_id, t.status))
            });
            let replaced = r.superseded.iter().map(|s| {
                (
                    format!("{}/{} (replaced)", s.account_id, s.token_name),
                    s.token_id,
                    s.status,
                )
            });
            if misrouted {
                // Marked revoked by the 403s: a recreate replaces them, and they leave the
                // remove-by-hand list as replaced tokens seen revoked.
                self.misrouted_revoked.extend(
                    r.accounts
                        .values()
                        .flat_map(|t| t.values())
                        .filter(|t| t.status == Some(TokenStatus::Revoked))
                        .map(|t| t.token_id),
                );
            }
            for (key, id, status) in current
                .chain(replaced)
                .filter(|(key, _, _)| !key.starts_with(&format!("{FOREIGN_ACCOUNT}/")))
            {
                match status {
                    Some(TokenStatus::Revoked) if !deleted.contains(&id) => problems.push(format!(
                        "{}verify marked token {id} of {key} revoked, but the server still holds it",
                        if self.misrouted_revoked.contains(&id) {
                            "finding misrouted-recreate: "
                        } else if misrouted {
                            "issue 25 defect 15: "
                        } else {
                            ""
                        }
                    )),
                    Some(TokenStatus::Valid) if deleted.contains(&id) => problems.push(format!(
                        "verify marked token {id} of {key} valid, but an admin deleted it"
                    )),
                    _ => {}
                }
            }
        }
        if let (Op::Export, Some(rows)) = (op, self.exported.take()) {
            let secret_of: HashMap<i64, &str> =
                truth.iter().map(|t| (t.id, t.token.as_str())).collect();
            // The results as export read them (the file with the journal replayed into it).
            for (key, recorded, row) in rows {
                if key.account_id == FOREIGN_ACCOUNT {
                    // Another program's record: no secret of it was ever this tool's.
                    continue;
                }
                let recorded = Some(recorded);
                match row {
                    None => problems.push(format!(
                        "export found no secret for {key}, recorded as token {recorded:?}"
                    )),
                    Some((id, _)) if Some(id) != recorded => problems.push(format!(
                        "export hands out token {id} for {key}, whose current token is {recorded:?}"
                    )),
                    Some((id, secret)) if secret_of.get(&id) != Some(&secret.as_str()) => {
                        problems.push(format!(
                            "export hands out a secret for {key} (token {id}) that is not that token's"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    fn check(&mut self, i: usize, op: &Op, ended: bool) {
        let truth = self.api().sim.ground_truth();
        let mut problems = Vec::new();
        let seen = check::read(&self.fs, &self.paths, &self.ids, &mut problems);
        let bound_here = seen.results.as_ref().is_none_or(|r| {
            r.api_url
                .as_deref()
                .is_none_or(|u| u == ENDPOINTS[self.endpoint])
        });
        if self.foreign
            && let Some(r) = &seen.results
            && !r.accounts.contains_key(&FOREIGN_ACCOUNT)
        {
            // A replacement just before the tool's rename is the window no check-then-rename
            // can close; anywhere else it must be noticed (on main, between the check and the
            // rename: the save-window finding).
            let at = self.fs.plants_before().pop().unwrap_or_default();
            if at.contains("after `rename m.results.json`") {
                problems.push(format!(
                    "the save race: another program's change to the results file, made right after the tool's rename ({at}), was overwritten without notice"
                ));
            } else if !at.ends_with("before `rename m.results.json`") {
                problems.push(format!(
                    "{SAVE_WINDOW}: another program's change to the results file ({at}) was overwritten without notice"
                ));
            }
            self.foreign = false;
        }
        if bound_here {
            let other = self.servers[1 - self.endpoint].sim.ground_truth();
            check::recorded_ids_have_durable_secrets(&seen, &truth, &other, &mut problems);
            self.check_reads(&seen, &truth, op, ended, &mut problems);
            check::replaced_never_current(&seen, &mut problems);
            let accounts = self.api().sim.accounts();
            check::recorded_accounts_are_the_servers(&seen, &accounts, &mut problems);
            let import = matches!(op, Op::Import(_) | Op::ImportFrom { .. });
            if let (true, true, Some(r)) = (import, ended, &seen.results)
                && r.api_url.as_deref() != Some(ENDPOINTS[self.endpoint])
            {
                problems.push(format!(
                    "issue 25 defect 9: an import against {} left the results file bound to {:?}",
                    ENDPOINTS[self.endpoint], r.api_url
                ));
            }
            if ended && (import || matches!(op, Op::Apply { .. } | Op::Recreate)) {
                check::nothing_lost(&seen, &truth, &self.allow, &mut problems);
                let durable: Vec<(TokenKey, i64)> = self
                    .acks
                    .lock()
                    .unwrap()
                    .durable
                    .iter()
                    .filter(|(e, _, _)| *e == self.endpoint)
                    .map(|(_, k, id)| (k.clone(), *id))
                    .collect();
                check::acknowledged_are_recorded(&seen, &durable, &mut problems);
                let durable: Vec<(String, u32)> = self
                    .acks
                    .lock()
                    .unwrap()
                    .durable_accounts
                    .iter()
                    .filter(|(e, _, _)| *e == self.endpoint)
                    .map(|(_, n, id)| (n.clone(), *id))
                    .collect();
                check::no_account_lost(&seen, &accounts, &durable, &self.allow, &mut problems);
            }
        }
        // The state loads as the next run would load it, and passes the invariants module.
        let rt = runtime();
        let wall = self.wall();
        let read = rt.block_on(async {
            Store::read_in(
                self.fs.clone(),
                SimClock::shared(wall),
                logzio_tokens::random::seeded(0),
                self.paths.clone(),
                Some(ENDPOINTS[self.endpoint]),
            )
        });
        match read {
            Ok(store) => {
                if let Err(v) = logzio_tokens::state::invariants::check(store.ledger()) {
                    problems.push(format!("the state breaks an invariant: {v}"));
                }
            }
            Err(e @ logzio_tokens::state::StateError::Corrupt { .. }) => {
                problems.push(format!(
                    "the state does not load: {}",
                    first_line(&e.to_string())
                ));
            }
            Err(e) => self
                .trace
                .push(format!("read refused: {}", first_line(&e.to_string()))),
        }
        drop(rt);
        if self.sc.sealed {
            for s in &self.servers {
                check::no_plaintext(&self.fs, &self.dir, &s.sim.ground_truth(), &mut problems);
                check::no_plaintext_shipping(&self.fs, &self.dir, &s.sim.accounts(), &mut problems);
            }
        }
        for s in &self.servers {
            // The tokens of the accounts the tool created are the plan's too, once each.
            for a in s.sim.accounts().iter().filter(|a| a.created_by_api) {
                let tokens = self.sc.new_accounts.iter().filter(|(n, _)| *n == a.name);
                for t in tokens.flat_map(|(_, t)| t) {
                    let key = TokenKey {
                        account_id: u32::try_from(a.id).unwrap_or(u32::MAX),
                        token_name: t.clone(),
                    };
                    self.allow.planned.entry(key).or_insert(1);
                }
            }
            check::within_budget(&s.sim.ground_truth(), &self.allow, &mut problems);
            check::accounts_once(&s.sim.accounts(), &self.allow, &mut problems);
        }
        for line in std::mem::take(&mut self.refused) {
            problems.push(format!(
                "the invariants module refused a save of the run's own state: {line}"
            ));
        }
        for key in std::mem::take(&mut self.acks.lock().unwrap().unjournaled_sends) {
            problems.push(format!("{key} was sent without an acknowledged intent"));
        }
        for name in std::mem::take(&mut self.acks.lock().unwrap().unjournaled_account_sends) {
            problems.push(format!(
                "a create of account {name} was sent without an acknowledged intent"
            ));
        }
        let records = seen.results.as_ref().map_or(0, |r| r.token_count());
        self.trace.push(format!(
            "check {i}: {} records, {} created, {} problems",
            records,
            truth.len(),
            problems.len()
        ));
        for p in problems {
            self.problems.push(format!("after step {i} ({op:?}): {p}"));
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}
