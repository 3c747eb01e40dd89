//! The driver: one seed decides a scenario (the tokens, sealed or plain, the server's faults
//! and latency, a sequence of operations on one state directory) and every choice in it; each
//! operation runs the real store, recorder and executor on a `current_thread` runtime with a
//! paused clock against the simulated API; the checker runs after every step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logzio_tokens::execution::{
    Backoff, Cancel, ExecConfig, Pacer, Services, Stats, StopReason, execute,
};
use logzio_tokens::key::TokenKey;
use logzio_tokens::manifest::Manifest;
use logzio_tokens::plan::{self, AccountFilter};
use logzio_tokens::simulator::{FaultRates, InProcess, SimConfig};
use logzio_tokens::state::sealed::{Identities, Recipients};
use logzio_tokens::state::{Recorder, StatePaths, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::api::{AtEvent, Net, SimApi};
use super::check::{self, Allowance};
use super::watch::{Acks, Watched};

/// The sub accounts tokens are made for (the simulator's defaults).
const ACCOUNTS: [u32; 3] = [160_343, 160_344, 160_345];
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
    },
    /// `orphans clear`.
    ClearOrphans,
    /// Every later operation talks to the other endpoint (its own server).
    SwitchEndpoint,
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
}

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
                Some((crash, AtEvent::Crash)) if stalls && crash > 1 => {
                    Some(rng.random_range(1..crash))
                }
                _ => None,
            };
            ops.push(Op::Apply {
                rotate: op.0,
                stop: op.1,
                stall,
            });
        }
        // Every scenario ends with a run to the end, so "nothing lost" is checked after it.
        ops.push(Op::Apply {
            rotate: false,
            stop: None,
            stall: None,
        });
        Scenario {
            seed,
            sealed,
            keys,
            faults,
            ops,
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

struct World {
    sc: Scenario,
    dir: tempfile::TempDir,
    paths: StatePaths,
    manifest: Manifest,
    servers: [SimApi; 2],
    acks: Arc<std::sync::Mutex<Acks>>,
    endpoint: usize,
    allow: Allowance,
    ids: Identities,
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
    // On tmpfs where there is one: a real fsync costs more than the rest of a run.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temp dir");
    let manifest_path = dir.path().join("m.yaml");
    let text = sc.manifest();
    let manifest =
        logzio_tokens::manifest::load_str(&manifest_path, &text, &|_| None).expect("a manifest");
    let paths = StatePaths::for_manifest(&manifest_path, None, None);
    let acks = Arc::new(std::sync::Mutex::new(Acks::default()));
    let server = |i: u64| {
        let config = SimConfig {
            faults: sc.faults,
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(60),
            seed: sc.seed.wrapping_mul(2).wrapping_add(i),
            ..SimConfig::default()
        };
        SimApi {
            sim: InProcess::new(&config).expect("a valid simulator configuration"),
            net: Arc::new(Net::default()),
            acks: Arc::clone(&acks),
        }
    };
    let mut w = World {
        servers: [server(0), server(1)],
        acks,
        allow: Allowance {
            planned: sc.keys.iter().map(|k| (k.clone(), 1)).collect(),
            clears: 0,
            cleared: std::collections::BTreeSet::new(),
            max_ambiguous: logzio_tokens::execution::DEFAULT_MAX_AMBIGUOUS,
        },
        ids: Identities::load(&key().1).expect("the test identity"),
        sc,
        dir,
        paths,
        manifest,
        endpoint: 0,
        trace: Vec::new(),
        problems: Vec::new(),
    };
    w.trace.push(format!(
        "scenario sealed={} keys={} ops={:?}",
        w.sc.sealed,
        w.sc.keys.len(),
        w.sc.ops
    ));
    let ops = w.sc.ops.clone();
    for (i, op) in ops.iter().enumerate() {
        let ended = w.step(op);
        w.check(i, op, ended);
    }
    let net_trace: Vec<String> = w
        .servers
        .iter()
        .flat_map(|s| std::mem::take(&mut *s.net.trace.lock().expect("trace")))
        .collect();
    w.trace.extend(net_trace);
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

    /// Plays one operation; true when it ended (was not crashed).
    fn step(&mut self, op: &Op) -> bool {
        match op {
            Op::Apply {
                rotate,
                stop,
                stall,
            } => self.apply(*rotate, *stop, *stall),
            Op::ClearOrphans => {
                match Store::open(self.paths.clone(), Some(ENDPOINTS[self.endpoint])) {
                    Ok(mut store) => {
                        store.results.possible_orphans.clear();
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
        }
    }

    fn apply(&mut self, rotate: bool, stop: Option<(u64, AtEvent)>, stall: Option<u64>) -> bool {
        let rt = runtime();
        let api = self.api().clone();
        let cancel = Cancel::default();
        api.net.stop_at(stop, stall, cancel.clone());
        let endpoint = ENDPOINTS[self.endpoint];
        let sealed = self.sc.sealed.then(|| key().0.clone());
        let paths = self.paths.clone();
        let manifest = &self.manifest;
        let mut planned: Vec<TokenKey> = Vec::new();
        let crashed = Arc::clone(&api.net);
        let acks = Arc::clone(&self.acks);
        acks.lock().unwrap().new_run();
        let endpoint_index = self.endpoint;
        let run = async {
            let mut store = match Store::open(paths, Some(endpoint)) {
                Ok(s) => s,
                Err(e) => return format!("refused: {e}"),
            };
            if let Some(r) = sealed {
                store.seal_to(r);
            }
            let mut plan = plan::plan(manifest, &store.results, None, &AccountFilter::default());
            if rotate {
                logzio_tokens::cli::commands::add_replacements(
                    &mut plan,
                    manifest,
                    &store.results,
                    false,
                    Some(Duration::ZERO),
                );
            }
            planned.clone_from(&plan.create);
            let recorder = match Recorder::start(store) {
                Ok(r) => r,
                Err(e) => return format!("recorder refused: {e}"),
            };
            let services = Services {
                creator: api.clone(),
                recorder: Watched {
                    inner: recorder.handle(),
                    acks: Arc::clone(&acks),
                    endpoint: endpoint_index,
                },
                pacer: Arc::new(Pacer::new(50.0, false)),
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
            };
            let report = execute(plan.create.clone(), config, services).await;
            let (_, saved) = recorder.finish().await;
            let stop = match &report.stop {
                StopReason::Completed => "completed".to_owned(),
                StopReason::Interrupted => "interrupted".to_owned(),
                other => format!("{other:?}").chars().take(60).collect(),
            };
            format!(
                "{stop} created={} ambiguous={} saved={}",
                report.created,
                report.ambiguous,
                saved.is_ok()
            )
        };
        let line = rt.block_on(async {
            tokio::select! {
                biased;
                () = crashed.crashed.notified() => "crashed".to_owned(),
                line = run => line,
            }
        });
        // Dropping the runtime drops every task of the run: the process is gone.
        drop(rt);
        if rotate {
            for k in &planned {
                *self.allow.planned.entry(k.clone()).or_default() += 1;
            }
        }
        self.trace.push(format!(
            "apply rotate={rotate} stop={stop:?} stall={stall:?} planned={} -> {line}",
            planned.len()
        ));
        !api.net.has_crashed()
    }

    fn check(&mut self, i: usize, op: &Op, ended: bool) {
        let truth = self.api().sim.ground_truth();
        let mut problems = Vec::new();
        let seen = check::read(&self.paths, &self.ids, &mut problems);
        let bound_here = seen.results.as_ref().is_none_or(|r| {
            r.api_url
                .as_deref()
                .is_none_or(|u| u == ENDPOINTS[self.endpoint])
        });
        if bound_here {
            check::recorded_ids_have_durable_secrets(&seen, &truth, &mut problems);
            if ended && matches!(op, Op::Apply { .. }) {
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
            }
        }
        if self.sc.sealed {
            for s in &self.servers {
                check::no_plaintext(self.dir.path(), &s.sim.ground_truth(), &mut problems);
            }
        }
        for s in &self.servers {
            check::within_budget(&s.sim.ground_truth(), &self.allow, &mut problems);
        }
        for key in std::mem::take(&mut self.acks.lock().unwrap().unjournaled_sends) {
            problems.push(format!("{key} was sent without an acknowledged intent"));
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
