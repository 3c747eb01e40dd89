//! The throughput benchmark: the real `logzio-tokens` binary against the in-repo simulator
//! playing a server-side limit, side by side with the shell loop users write today, and every
//! target of the rate controller (issue 12) measured in the same run and printed side by side.
//!
//! Run: `cargo bench --bench throughput` (env: `BENCH_TOKENS`, default 2000; `BENCH_LIMIT`,
//! default 100 creates/s; `BENCH_LATENCY_MS`, default 30). Needs `/usr/bin/time` (package
//! `time`) for CPU and peak RSS, and `curl` + `xargs` for the shell-loop comparison.
//!
//! Scenarios, each against a fresh simulator (limit: BENCH_LIMIT requests/s as a token bucket
//! with a tenth of a second of burst, 100 in flight, BENCH_LATENCY_MS latency, no Retry-After)
//! unless said:
//! 1. the tool told the right rate (`--rate LIMIT`), at 400 tokens and at BENCH_TOKENS;
//! 2. the tool told a rate 10x too high: a first run, then a next run (other token names, the
//!    same results file and simulator) that starts from the learned rate;
//! 3. random 429s: 300 tokens, no server limit, 3 ms, 8 in flight, `--rate 200`: 8% 429 + 5%
//!    503 against the same job without faults; and the limit plus 5% random 429s, told 10x,
//!    with three simulator seeds (where the 429s fall moves one run by a few points; the
//!    target takes the median);
//! 4. `xargs -P 8 curl --fail --retry 5 --retry-all-errors`, one POST per token, at 400 tokens
//!    and at BENCH_TOKENS; and both again under seeded faults (500 after creating, dropped
//!    after creating, cut-short 200s, 503s): what each keeps, reports and silently loses;
//! 5. a reference for the CPU figures: one `curl` process making the same creates over
//!    kept-alive connections and keeping nothing, which is what an HTTP request costs here
//!    (target 5 compares medians of three tool runs and three references; one more tool run
//!    keeps its state on a tmpfs, to show what the journal's fsyncs cost);
//! 6. `validate` and `plan` of a 100,000-account manifest.
// Tests and benchmarks drive the real binary on real files and clocks; the seams rule
// (clippy.toml) is for src/state and src/execution.
#![allow(clippy::disallowed_methods)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logzio_tokens::simulator::{BackgroundSimulator, FaultRates, SimConfig, Simulator, SubAccount};

const OWNER: &str = "bench-owner-token";

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The token-bucket scenarios' tokens, server limit (creates/s) and latency (ms):
/// `BENCH_TOKENS`, `BENCH_LIMIT` and `BENCH_LATENCY_MS`, or 2,000, 100 and 30.
fn token_bucket_args() -> (usize, f64, u64) {
    (
        env_num("BENCH_TOKENS", 2000.0) as usize,
        env_num("BENCH_LIMIT", 100.0),
        env_num("BENCH_LATENCY_MS", 30.0) as u64,
    )
}

/// The binary under test: this build's, or `BENCH_BINARY` (another build's, to compare two
/// builds against the same simulator and scenarios).
fn binary() -> PathBuf {
    std::env::var_os("BENCH_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_logzio-tokens")),
        PathBuf::from,
    )
}

/// The faults of the comparison under faults: what a real API does now and then.
fn some_faults() -> FaultRates {
    FaultRates {
        error_after_create: 0.02,
        drop_after_create: 0.02,
        truncate_after_create: 0.01,
        unavailable: 0.02,
        ..FaultRates::default()
    }
}

/// The simulator's seed (faults, jitter, secrets) unless a run says otherwise.
const SEED: u64 = 7;

/// The server's limits and latency: a token bucket of `limit` requests/s (none when infinite),
/// at most `in_flight` requests at once, answers after `latency_ms` plus a uniform `0..jitter_ms`.
#[derive(Clone, Copy)]
struct Server {
    limit: f64,
    in_flight: usize,
    latency_ms: u64,
    jitter_ms: u64,
}

impl Server {
    /// The token-bucket server of scenarios 1-6 (100 in flight never binds there).
    fn bucket(limit: f64, latency_ms: u64) -> Server {
        Server {
            limit,
            in_flight: 100,
            latency_ms,
            jitter_ms: 0,
        }
    }

    /// A server that refuses beyond 10 requests in flight, with no rate limit, answering after
    /// `latency_ms` plus up to `jitter_ms`.
    fn ten_in_flight(latency_ms: u64, jitter_ms: u64) -> Server {
        Server {
            limit: f64::INFINITY,
            in_flight: 10,
            latency_ms,
            jitter_ms,
        }
    }

    /// Creates per second the server can serve: the bucket's rate or in-flight / mean latency,
    /// whichever is lower.
    fn capacity(&self) -> f64 {
        let mean = (self.latency_ms as f64 + self.jitter_ms as f64 / 2.0) / 1000.0;
        self.limit.min(self.in_flight as f64 / mean)
    }
}

fn simulator_with(
    accounts: usize,
    limit: f64,
    latency_ms: u64,
    faults: FaultRates,
    seed: u64,
) -> BackgroundSimulator {
    simulator_for(accounts, Server::bucket(limit, latency_ms), faults, seed)
}

fn simulator_for(
    accounts: usize,
    server: Server,
    faults: FaultRates,
    seed: u64,
) -> BackgroundSimulator {
    let config = SimConfig {
        owner_token: OWNER.into(),
        sub_accounts: (0..accounts)
            .map(|i| SubAccount::new(200_000 + i as i64, format!("bench-{i}")))
            .collect(),
        max_requests_per_second: server.limit.is_finite().then_some(server.limit),
        max_in_flight: Some(server.in_flight),
        latency: Duration::from_millis(server.latency_ms),
        jitter: Duration::from_millis(server.jitter_ms),
        faults,
        seed,
        ..SimConfig::default()
    };
    Simulator::start_background(config).expect("simulator")
}

fn manifest(dir: &Path, accounts: usize) -> PathBuf {
    manifest_with(dir, accounts, "bench")
}

/// `bench.yaml`: each of `accounts` accounts gets the tokens of `tokens` (a YAML list's inside).
fn manifest_with(dir: &Path, accounts: usize, tokens: &str) -> PathBuf {
    let mut s = format!("version: 1\ndefaults:\n  tokens: [{tokens}]\naccounts:\n");
    for i in 0..accounts {
        s.push_str(&format!("  - id: {}\n", 200_000 + i));
    }
    let p = dir.join("bench.yaml");
    std::fs::write(&p, s).unwrap();
    p
}

/// Wall seconds, user+sys CPU seconds and peak RSS (KiB) of a command, via /usr/bin/time.
struct Usage {
    wall: f64,
    cpu: f64,
    max_rss_kib: u64,
    status: i32,
    stdout: String,
}

fn timed(cmd: &mut Command, dir: &Path) -> Usage {
    let out_file = dir.join("time.out");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&out_file)
        .arg(program)
        .args(args);
    for (k, v) in envs {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let out = t
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run /usr/bin/time");
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let last = text.lines().last().unwrap_or_default().to_owned();
    let f: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Usage {
        wall: f.first().copied().unwrap_or(f64::NAN),
        cpu: f.get(1).copied().unwrap_or(f64::NAN) + f.get(2).copied().unwrap_or(f64::NAN),
        max_rss_kib: f.get(3).copied().unwrap_or(f64::NAN) as u64,
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

struct ToolRun {
    created: u64,
    wall: f64,
    exec_seconds: f64,
    cpu: f64,
    rss_mib: f64,
    requests: u64,
    limited: u64,
    final_rate: f64,
    learned: Option<f64>,
    /// The in-flight limit handed on in the results file, and the kind of limit it names.
    learned_in_flight: Option<u64>,
    learned_kind: Option<String>,
    /// What the summary said of the server's limit.
    server_limit: Option<String>,
    max_in_flight_seen: u64,
    lost: usize,
    orphans_listed: usize,
    server_tokens: usize,
    kept: usize,
}

impl ToolRun {
    /// Created tokens per second of wall time (process start to exit), as a share of `limit`.
    fn efficiency(&self, limit: f64) -> f64 {
        self.created as f64 / self.wall / limit
    }
    /// 429s (server limit and injected) among the requests the simulator saw.
    fn share_429(&self) -> f64 {
        self.limited as f64 / self.requests.max(1) as f64
    }
    fn cpu_per_token_us(&self) -> f64 {
        1e6 * self.cpu / self.created.max(1) as f64
    }
}

/// How a tool run is set up.
struct Setup {
    tokens: usize,
    limit: f64,
    latency: u64,
    rate: f64,
    concurrency: u32,
    faults: FaultRates,
    seed: u64,
    /// The server's in-flight limit and latency jitter (100 and none unless said).
    in_flight: usize,
    jitter: u64,
}

impl Setup {
    fn new(tokens: usize, limit: f64, latency: u64, rate: f64) -> Setup {
        Setup {
            tokens,
            limit,
            latency,
            rate,
            concurrency: 32,
            faults: FaultRates::default(),
            seed: SEED,
            in_flight: 100,
            jitter: 0,
        }
    }

    /// A run against `server`, told `--rate rate --concurrency concurrency`.
    fn against(server: Server, tokens: usize, rate: f64, concurrency: u32) -> Setup {
        Setup {
            concurrency,
            in_flight: server.in_flight,
            jitter: server.jitter_ms,
            ..Setup::new(tokens, server.limit, server.latency_ms, rate)
        }
    }

    fn server(&self) -> Server {
        Server {
            limit: self.limit,
            in_flight: self.in_flight,
            latency_ms: self.latency,
            jitter_ms: self.jitter,
        }
    }
}

fn run_tool(s: &Setup) -> ToolRun {
    run_tool_under(&std::env::temp_dir(), s)
}

/// As [`run_tool`], with the state files in a temp dir under `parent`.
fn run_tool_under(parent: &Path, s: &Setup) -> ToolRun {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let sim = simulator_for(s.tokens, s.server(), s.faults, s.seed);
    let m = manifest(dir.path(), s.tokens);
    run_tool_in(dir.path(), &sim, &m, s)
}

/// Runs apply of `manifest` (state files beside it) against `sim`; request counts are this
/// run's, the loss accounting covers everything the simulator ever created.
fn run_tool_in(dir: &Path, sim: &BackgroundSimulator, m: &Path, s: &Setup) -> ToolRun {
    let before = sim.counters();
    let mut cmd = Command::new(binary());
    cmd.args([
        "apply",
        m.to_str().unwrap(),
        "--yes",
        "--output",
        "json",
        "--no-progress",
    ])
    .args(["--rate", &s.rate.to_string()])
    .args(["--concurrency", &s.concurrency.to_string()])
    .env("LOGZIO_API_URL", sim.url())
    .env("LOGZIO_API_TOKEN", OWNER)
    .env_remove("RUST_LOG");
    let u = timed(&mut cmd, dir);
    assert!(u.status == 0 || u.status == 1, "apply failed: {}", u.status);
    let summary: serde_json::Value = u
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .expect("a summary line");
    let counters = sim.counters();
    let stem = m.file_stem().unwrap().to_str().unwrap();
    // Every token the server created must be in a secrets file, or listed as a possible orphan.
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.secrets.json"))).unwrap())
            .unwrap();
    let recorded: HashSet<String> = secrets["accounts"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|m| m.as_object().unwrap().values())
        .map(|r| r["token"].as_str().unwrap().to_owned())
        .collect();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.results.json"))).unwrap())
            .unwrap();
    let orphans: HashSet<(i64, String)> = results["possible_orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["account_id"].as_i64().unwrap(),
                o["token_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let truth = sim.ground_truth();
    let kept = truth.iter().filter(|t| recorded.contains(&t.token)).count();
    // Lost: a token the server created that is neither recorded with its secret nor reported
    // by name as a possible orphan.
    let lost = truth
        .iter()
        .filter(|t| {
            !recorded.contains(&t.token) && !orphans.contains(&(t.account_id, t.name.clone()))
        })
        .count();
    ToolRun {
        created: summary["created"].as_u64().unwrap(),
        wall: u.wall,
        exec_seconds: summary["elapsed_seconds"].as_f64().unwrap(),
        cpu: u.cpu,
        rss_mib: u.max_rss_kib as f64 / 1024.0,
        requests: counters.requests - before.requests,
        limited: (counters.limited_429 + counters.fault_429)
            - (before.limited_429 + before.fault_429),
        final_rate: summary["final_rate_per_second"].as_f64().unwrap(),
        learned: results["learned_rate"]["per_second"].as_f64(),
        learned_in_flight: results["learned_rate"]["in_flight"].as_u64(),
        learned_kind: results["learned_rate"]["kind"].as_str().map(str::to_owned),
        server_limit: summary["server_limit"].as_str().map(str::to_owned),
        max_in_flight_seen: counters.max_in_flight_seen,
        lost,
        orphans_listed: orphans.len(),
        server_tokens: truth.len(),
        kept,
    }
}

/// A first run told 10x the limit, then a next run of as many other tokens against the same
/// simulator and results file: it starts from the rate the first run learned.
fn run_tool_twice(s: &Setup) -> (ToolRun, ToolRun) {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator_for(s.tokens, s.server(), s.faults, s.seed);
    let first = manifest_with(dir.path(), s.tokens, "bench");
    let a = run_tool_in(dir.path(), &sim, &first, s);
    // The same manifest with a second token per account: only those are created.
    let next = manifest_with(dir.path(), s.tokens, "bench, next");
    let b = run_tool_in(dir.path(), &sim, &next, s);
    (a, b)
}

struct LoopRun {
    wall: f64,
    received: usize,
    created: usize,
    limited: u64,
    requests: u64,
    lost: usize,
    duplicates: usize,
    failed: usize,
}

fn run_shell_loop(tokens: usize, limit: f64, latency: u64, faults: FaultRates) -> LoopRun {
    run_shell_loop_at(tokens, Server::bucket(limit, latency), faults, 8)
}

/// `xargs -P parallel curl --fail --retry 5 --retry-all-errors` against `server`.
fn run_shell_loop_at(tokens: usize, server: Server, faults: FaultRates, parallel: u32) -> LoopRun {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator_for(tokens, server, faults, SEED);
    let ids: String = (0..tokens).map(|i| format!("{}\n", 200_000 + i)).collect();
    std::fs::write(dir.path().join("ids.txt"), ids).unwrap();
    // One output file per request: parallel curls writing to one stream interleave their bytes.
    let script = format!(
        "mkdir -p out && xargs -P {parallel} -I{{}} curl -s --fail --retry 5 --retry-all-errors -X POST \
         -H 'X-API-TOKEN: {OWNER}' -H 'Content-Type: application/json' \
         -d '{{\"name\":\"bench\",\"accountId\":{{}}}}' -o out/{{}}.json {}/v1/api-tokens/sub-account < ids.txt",
        sim.url()
    );
    let start = Instant::now();
    let _ = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .status()
        .expect("bash");
    let wall = start.elapsed().as_secs_f64();
    let received: HashSet<String> = std::fs::read_dir(dir.path().join("out"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .filter_map(|v| v["token"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let truth = sim.ground_truth();
    let counters = sim.counters();
    let mut per_account: HashMap<i64, usize> = HashMap::new();
    for t in &truth {
        *per_account.entry(t.account_id).or_default() += 1;
    }
    LoopRun {
        wall,
        received: received.len(),
        created: truth.len(),
        limited: counters.limited_429,
        requests: counters.requests,
        lost: truth
            .iter()
            .filter(|t| !received.contains(&t.token))
            .count(),
        duplicates: per_account.values().map(|n| n - 1).sum(),
        failed: tokens - per_account.len(),
    }
}

/// What an HTTP request costs on this machine, whatever makes it: one `curl` process sending
/// every create over kept-alive connections, 4 at a time, keeping no record (no journal, no
/// fsync, no state), against a simulator with the same latency and no rate limit.
struct CurlReference {
    created: usize,
    wall: f64,
    cpu: f64,
}

impl CurlReference {
    fn cpu_per_request_us(&self) -> f64 {
        1e6 * self.cpu / self.created.max(1) as f64
    }
}

/// The middle value (of an odd count; the upper middle of an even one).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "a, b, c" in whole µs.
fn list_us(values: &[f64]) -> String {
    let v: Vec<String> = values.iter().map(|x| format!("{x:.0}")).collect();
    v.join(", ")
}

fn run_curl_reference(tokens: usize, latency: u64) -> CurlReference {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator_with(tokens, 1e6, latency, FaultRates::default(), SEED);
    let url = format!("{}/v1/api-tokens/sub-account", sim.url());
    // One block per request, separated by `next` (which also resets per-transfer options).
    let blocks: Vec<String> = (0..tokens)
        .map(|i| {
            format!(
                "url = \"{url}\"\nrequest = \"POST\"\nsilent\nshow-error\n\
                 header = \"X-API-TOKEN: {OWNER}\"\nheader = \"Content-Type: application/json\"\n\
                 data = \"{{\\\"name\\\":\\\"bench\\\",\\\"accountId\\\":{}}}\"\n\
                 output = \"/dev/null\"\n",
                200_000 + i
            )
        })
        .collect();
    let config = blocks.join("next\n");
    let cfg = dir.path().join("curl.cfg");
    std::fs::write(&cfg, config).unwrap();
    let u = timed(
        Command::new("curl")
            .args([
                "--parallel",
                "--parallel-max",
                "4",
                "--no-progress-meter",
                "-K",
            ])
            .arg(&cfg),
        dir.path(),
    );
    CurlReference {
        created: sim.ground_truth().len(),
        wall: u.wall,
        cpu: u.cpu,
    }
}

fn large_manifest() -> (Usage, Usage, usize) {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 100_000);
    let bytes = std::fs::metadata(&m).unwrap().len() as usize;
    let v = timed(
        Command::new(binary()).args(["validate", m.to_str().unwrap()]),
        dir.path(),
    );
    assert_eq!(v.status, 0, "validate failed");
    let p = timed(
        Command::new(binary())
            .args(["plan", m.to_str().unwrap()])
            .env_remove("LOGZIO_API_TOKEN"),
        dir.path(),
    );
    assert_eq!(p.status, 0, "plan failed");
    (v, p, bytes)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted. `BENCH_ONLY=in-flight` runs only
    // the scenarios of issue 31 (a server that limits requests in flight);
    // `BENCH_ONLY=token-bucket` runs only scenarios 1, 2 and 5 (the token-bucket server and the
    // CPU per token), to compare two builds quickly; `BENCH_ONLY=ladder` runs the first runs
    // of `--concurrency` 10, 16, 32 and 100 against 10 in flight, interleaved,
    // `BENCH_REPEAT` times (5 unless said), to tell a cost of a larger concurrency from the
    // noise of one run's wall time. `BENCH_ONLY=jitter` runs the jittered in-flight server
    // alone with more tokens (`BENCH_JITTER_TOKENS`, 2,000 unless said): a run's fixed costs
    // (the preflight's round trip, the last answers' tail) weigh a fifth as much.
    // `BENCH_ONLY=told-high` runs scenario 2 alone (told 10x the token bucket's rate, a first
    // run and the next) `BENCH_REPEAT` times (5 unless said): the rate each first run learns
    // beside its next run's 429s, which a single run cannot tell from noise.
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("in-flight") => return in_flight_scenarios(),
        Ok("jitter") => return jitter_scenario(),
        Ok("token-bucket") => return token_bucket_scenarios(),
        Ok("ladder") => return concurrency_ladder(),
        Ok("told-high") => return told_high_repeated(),
        _ => {}
    }
    let (tokens, limit, latency) = token_bucket_args();
    let small = 400;
    eprintln!(
        "benchmark: {tokens} tokens, server limit {limit}/s, 100 in flight, {latency} ms latency"
    );

    // 1. Told the right rate.
    let right_small = run_tool(&Setup::new(small, limit, latency, limit));
    let right = run_tool(&Setup::new(tokens, limit, latency, limit));
    // 2. Told 10x too high: a first run, then the next one from the learned rate.
    let (high, high_next) = run_tool_twice(&Setup::new(tokens, limit, latency, limit * 10.0));
    // 3. Random 429s: no server limit, 3 ms, 8 in flight; then the limit with 5% on top.
    let noise = |faults| Setup {
        concurrency: 8,
        faults,
        ..Setup::new(300, f64::INFINITY, 3, 200.0)
    };
    let clean = run_tool(&noise(FaultRates::default()));
    let noisy = run_tool(&noise(FaultRates {
        rate_limited: 0.08,
        unavailable: 0.05,
        ..FaultRates::default()
    }));
    // Where the random 429s fall moves one run's efficiency by a few points either way, so
    // the target takes the median of three seeds; the table shows that run.
    let mut limit_noise: Vec<ToolRun> = [SEED, SEED + 1, SEED + 2]
        .into_iter()
        .map(|seed| {
            run_tool(&Setup {
                faults: FaultRates {
                    rate_limited: 0.05,
                    ..FaultRates::default()
                },
                seed,
                ..Setup::new(tokens, limit, latency, limit * 10.0)
            })
        })
        .collect();
    limit_noise.sort_by(|a, b| a.efficiency(limit).total_cmp(&b.efficiency(limit)));
    let limit_noise_all: Vec<String> = limit_noise
        .iter()
        .map(|r| format!("{:.3}", r.efficiency(limit)))
        .collect();
    let limit_noise = limit_noise.swap_remove(1);
    // 4. The shell loop, clean and under faults, and the tool under the same faults.
    let shell_small = run_shell_loop(small, limit, latency, FaultRates::default());
    let shell = run_shell_loop(tokens, limit, latency, FaultRates::default());
    let faulty_tool = run_tool(&Setup {
        faults: some_faults(),
        ..Setup::new(tokens, limit, latency, limit)
    });
    let faulty_shell = run_shell_loop(tokens, limit, latency, some_faults());
    // 5. CPU per token: one process's CPU time varies by 10-20% from run to run here, so the
    // target compares the medians of three tool runs told the right rate (the first is the
    // one above) and three curl references, interleaved. And one run with the state files on
    // a tmpfs, where an fsync costs nothing: what the journal's fsyncs cost is the difference.
    let curl = run_curl_reference(tokens, latency);
    let mut tool_cpu = vec![right.cpu_per_token_us()];
    let mut curl_cpu = vec![curl.cpu_per_request_us()];
    for _ in 0..2 {
        tool_cpu.push(run_tool(&Setup::new(tokens, limit, latency, limit)).cpu_per_token_us());
        curl_cpu.push(run_curl_reference(tokens, latency).cpu_per_request_us());
    }
    let shm = Path::new("/dev/shm");
    let on_tmpfs = shm
        .is_dir()
        .then(|| run_tool_under(shm, &Setup::new(tokens, limit, latency, limit)));
    // 6.
    let (v, p, bytes) = large_manifest();

    println!(
        "| scenario | tokens | wall s | creates/s | efficiency | 429 share | rate at the end | learned limit (kind) | summary's server limit | CPU µs/token | peak RSS MiB | lost secrets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, r: &ToolRun, lim: f64| {
        println!(
            "| {name} | {} | {:.2} | {:.1} | {} | {:.2}% | {:.1}/s | {} | {} | {:.0} | {:.1} | {} |",
            r.created,
            r.wall,
            r.created as f64 / r.wall,
            if lim.is_finite() {
                format!("{:.3}", r.efficiency(lim))
            } else {
                "-".into()
            },
            100.0 * r.share_429(),
            r.final_rate,
            learned_of(r),
            r.server_limit.as_deref().unwrap_or("-"),
            r.cpu_per_token_us(),
            r.rss_mib,
            r.lost
        );
    };
    row("tool, --rate = limit", &right_small, limit);
    row("tool, --rate = limit", &right, limit);
    row("tool, --rate = 10x limit, first run", &high, limit);
    row("tool, --rate = 10x limit, next run", &high_next, limit);
    row(
        "tool, limit + 5% random 429s, --rate = 10x (median of 3 seeds)",
        &limit_noise,
        limit,
    );
    row(
        "tool, no limit, 3 ms, 8 in flight, --rate 200",
        &clean,
        f64::INFINITY,
    );
    row("same + 8% random 429s + 5% 503s", &noisy, f64::INFINITY);
    for (r, n) in [(&shell_small, small), (&shell, tokens)] {
        println!(
            "| xargs -P 8 curl --retry 5 | {} received of {} created ({n} wanted) | {:.2} | {:.1} | {:.3} | {:.2}% | - | - | - | - | - | {} (+{} duplicates, {} accounts without a token) |",
            r.received,
            r.created,
            r.wall,
            r.received as f64 / r.wall,
            r.received as f64 / r.wall / limit,
            100.0 * r.limited as f64 / r.requests.max(1) as f64,
            r.lost,
            r.duplicates,
            r.failed
        );
    }
    println!();
    println!(
        "Under faults (2% 500-after-create, 2% dropped after creating, 1% cut-short 200, 2% 503; same seed):"
    );
    println!(
        "| scenario | wall s | tokens the server created | secrets kept | reported as possible orphans | silently lost |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| tool, --rate = limit | {:.2} | {} | {} | {} | {} |",
        faulty_tool.wall,
        faulty_tool.server_tokens,
        faulty_tool.kept,
        faulty_tool.orphans_listed,
        faulty_tool.lost
    );
    println!(
        "| xargs -P 8 curl --retry 5 | {:.2} | {} | {} | 0 (it keeps no record) | {} (+{} duplicate tokens, {} accounts without one) |",
        faulty_shell.wall,
        faulty_shell.created,
        faulty_shell.received,
        faulty_shell.lost,
        faulty_shell.duplicates,
        faulty_shell.failed
    );
    println!();
    let (tool_us, curl_us) = (median(&tool_cpu), median(&curl_cpu));
    println!(
        "reference, one curl process, 4 in parallel over kept-alive connections, no record kept, no rate limit: {} requests in {:.2}s, CPU {} µs per request (median {curl_us:.0})",
        curl.created,
        curl.wall,
        list_us(&curl_cpu),
    );
    println!(
        "tool, --rate = limit, {tokens} tokens: CPU {} µs per token (median {tool_us:.0}, {:.2}x curl's)",
        list_us(&tool_cpu),
        tool_us / curl_us
    );
    if let Some(r) = &on_tmpfs {
        println!(
            "the same with its state files on a tmpfs (an fsync costs nothing there): CPU {:.0} µs per token ({:.2}x curl's); the difference is the journal's fsyncs",
            r.cpu_per_token_us(),
            r.cpu_per_token_us() / curl_us
        );
    }
    println!(
        "tool, exec time only (no process start or preflight): right rate {:.2}s at {small} and {:.2}s at {tokens}",
        right_small.exec_seconds, right.exec_seconds
    );
    println!(
        "100,000-account manifest ({:.1} MB): validate {:.2}s wall, {:.0} MiB peak; plan {:.2}s wall, {:.0} MiB peak",
        bytes as f64 / 1e6,
        v.wall,
        v.max_rss_kib as f64 / 1024.0,
        p.wall,
        p.max_rss_kib as f64 / 1024.0
    );

    println!();
    println!("Targets (issue 12):");
    println!("| # | target | measured | goal | met |");
    println!("|---|---|---|---|---|");
    let target = |n: &str, what: &str, got: f64, goal: &str, met: bool| {
        println!(
            "| {n} | {what} | {got:.3} | {goal} | {} |",
            if met { "yes" } else { "NO" }
        );
    };
    let e = right_small.efficiency(limit);
    target(
        "1",
        &format!("told right, {small}: efficiency"),
        e,
        ">= 0.97",
        e >= 0.97,
    );
    let e = right.efficiency(limit);
    target(
        "1",
        &format!("told right, {tokens}: efficiency"),
        e,
        ">= 0.97",
        e >= 0.97,
    );
    let e = high.efficiency(limit);
    target(
        "2",
        "told 10x, first run: efficiency",
        e,
        ">= 0.93",
        e >= 0.93,
    );
    let x = high.share_429();
    target(
        "2",
        "told 10x, first run: 429 share",
        x,
        "<= 0.05",
        x <= 0.05,
    );
    let x = high_next.share_429();
    target(
        "2",
        "told 10x, next run: 429 share",
        x,
        "<= 0.01",
        x <= 0.01,
    );
    let ratio = noisy.wall / clean.wall;
    target(
        "3",
        "8% 429 + 5% 503, 3 ms: noisy / clean wall",
        ratio,
        "<= 2.0",
        ratio <= 2.0,
    );
    let e = limit_noise.efficiency(limit);
    target(
        "3",
        &format!(
            "limit + 5% random 429s: efficiency (median of seeds {}-{}: {})",
            SEED,
            SEED + 2,
            limit_noise_all.join(", ")
        ),
        e,
        ">= 0.90",
        e >= 0.90,
    );
    let ratio = shell_small.wall / right_small.wall;
    // No client finishes sooner than the bucket's burst and then the limit allow (the wall
    // time of the bucket alone): against this loop's time, the most any client could show.
    let least = (small as f64 - (limit / 10.0).max(1.0)) / limit;
    target(
        "4",
        &format!(
            "shell / tool wall, clean, {small} (the most any client could show here: {:.2})",
            shell_small.wall / least
        ),
        ratio,
        ">= 1.15",
        ratio >= 1.15,
    );
    let ratio = faulty_shell.wall / faulty_tool.wall;
    target(
        "4",
        &format!("shell / tool wall, seeded faults, {tokens}"),
        ratio,
        ">= 1.5",
        ratio >= 1.5,
    );
    let lost = (right.lost + high.lost + high_next.lost + faulty_tool.lost + noisy.lost) as f64;
    target("4", "tool: secrets lost, all runs", lost, "0", lost == 0.0);
    let ratio = tool_us / curl_us;
    target(
        "5",
        &format!("tool CPU per token / curl's, {tokens} (medians of 3)"),
        ratio,
        "<= 1.3",
        ratio <= 1.3,
    );
    in_flight_scenarios();
}

/// What a run handed on, of either kind: "97.8/s (rate)", "10 in flight (in_flight)", "-".
fn learned_of(r: &ToolRun) -> String {
    match (r.learned_kind.as_deref(), r.learned, r.learned_in_flight) {
        (kind, rate, in_flight) if rate.is_some() || in_flight.is_some() => {
            let mut parts = Vec::new();
            if let Some(rate) = rate {
                parts.push(format!("{rate:.1}/s"));
            }
            if let Some(n) = in_flight {
                parts.push(format!("{n} in flight"));
            }
            format!("{} ({})", parts.join(", "), kind.unwrap_or("rate"))
        }
        _ => "-".into(),
    }
}

/// One row of the in-flight tables: a tool run.
fn in_flight_row(name: &str, r: &ToolRun, capacity: f64) {
    let learned = learned_of(r);
    println!(
        "| {name} | {} | {:.2} | {:.1} | {:.3} | {:.2}% | {} | {learned} | {} | {:.0} |",
        r.created,
        r.wall,
        r.created as f64 / r.wall,
        r.efficiency(capacity),
        100.0 * r.share_429(),
        r.max_in_flight_seen,
        r.server_limit.as_deref().unwrap_or("-"),
        r.cpu_per_token_us(),
    );
}

/// One row of the in-flight tables: the shell loop.
fn in_flight_loop_row(parallel: u32, r: &LoopRun, capacity: f64) {
    println!(
        "| `xargs -P {parallel} curl --fail --retry 5 --retry-all-errors` | {} of {} | {:.2} | {:.1} | {:.3} | {:.2}% | - | - | - | - |",
        r.received,
        r.created,
        r.wall,
        r.received as f64 / r.wall,
        r.received as f64 / r.wall / capacity,
        100.0 * r.limited as f64 / r.requests.max(1) as f64,
    );
}

/// Scenarios 1, 2 and 5 alone: the tool told the right rate and 10x too high against the
/// token bucket, and the CPU per token beside curl's (medians of three, interleaved).
fn token_bucket_scenarios() {
    let (tokens, limit, latency) = token_bucket_args();
    let small = 400;
    eprintln!(
        "token-bucket benchmark: {tokens} tokens, server limit {limit}/s, 100 in flight, {latency} ms latency"
    );
    let right_small = run_tool(&Setup::new(small, limit, latency, limit));
    let right = run_tool(&Setup::new(tokens, limit, latency, limit));
    let (high, high_next) = run_tool_twice(&Setup::new(tokens, limit, latency, limit * 10.0));
    let mut tool_cpu = vec![right.cpu_per_token_us()];
    let mut curl_cpu = Vec::new();
    for _ in 0..3 {
        curl_cpu.push(run_curl_reference(tokens, latency).cpu_per_request_us());
        if tool_cpu.len() < 3 {
            tool_cpu.push(run_tool(&Setup::new(tokens, limit, latency, limit)).cpu_per_token_us());
        }
    }
    println!(
        "| scenario | tokens | wall s | creates/s | efficiency | 429 share | rate at the end | learned limit (kind) | summary's server limit | CPU µs/token | lost secrets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [
        ("--rate = limit", &right_small),
        ("--rate = limit", &right),
        ("--rate = 10x limit, first run", &high),
        ("--rate = 10x limit, next run", &high_next),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.1} | {:.3} | {:.2}% | {:.1}/s | {} | {} | {:.0} | {} |",
            r.created,
            r.wall,
            r.created as f64 / r.wall,
            r.efficiency(limit),
            100.0 * r.share_429(),
            r.final_rate,
            learned_of(r),
            r.server_limit.as_deref().unwrap_or("-"),
            r.cpu_per_token_us(),
            r.lost
        );
    }
    let (tool_us, curl_us) = (median(&tool_cpu), median(&curl_cpu));
    println!(
        "CPU per token, --rate = limit, {tokens} tokens: tool {} (median {tool_us:.0}); curl {} (median {curl_us:.0}); {:.2}x curl's",
        list_us(&tool_cpu),
        list_us(&curl_cpu),
        tool_us / curl_us
    );
}

/// Scenario 2 alone, `BENCH_REPEAT` times: told 10x a 100/s bucket, a first run and the next
/// from what it learned; each pair's figures, then the medians.
fn told_high_repeated() {
    let (tokens, limit, latency) = token_bucket_args();
    let repeat = env_num("BENCH_REPEAT", 5.0) as usize;
    eprintln!("told 10x: {tokens} tokens, server limit {limit}/s, {latency} ms, {repeat} pairs");
    println!(
        "| pair | first: efficiency | first: 429 share | learned | next: efficiency | next: 429 share | next: rate at the end |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut first_share, mut next_share) = (Vec::new(), Vec::new());
    for i in 0..repeat {
        let (a, b) = run_tool_twice(&Setup::new(tokens, limit, latency, limit * 10.0));
        println!(
            "| {} | {:.3} | {:.2}% | {} | {:.3} | {:.2}% | {:.1}/s |",
            i + 1,
            a.efficiency(limit),
            100.0 * a.share_429(),
            learned_of(&a),
            b.efficiency(limit),
            100.0 * b.share_429(),
            b.final_rate
        );
        first_share.push(100.0 * a.share_429());
        next_share.push(100.0 * b.share_429());
    }
    println!(
        "429 share, medians: first runs {:.2}%, next runs {:.2}%",
        median(&first_share),
        median(&next_share)
    );
}

/// Issue 31: servers that limit requests in flight (the limit Logz.io documents), alone, with
/// latency jitter, and together with a token bucket; the tool at several `--concurrency`
/// values (first runs, then next runs from what the first learned) beside the shell loop at
/// the same parallelism, each figure from this run. Efficiency is over the server's capacity
/// (in-flight limit / mean latency, or the bucket's rate, whichever is lower).
/// `--concurrency` 10 (told the limit), 16, 32 and 100 (each finds it) against 10 in flight at
/// 200 ms, first runs, interleaved: each one's walls, their median and spread, and each
/// larger one's median over the median of `--concurrency 10`.
fn concurrency_ladder() {
    let tokens = env_num("BENCH_IN_FLIGHT_TOKENS", 400.0) as usize;
    let repeat = env_num("BENCH_REPEAT", 5.0) as usize;
    let server = Server::ten_in_flight(200, 0);
    let ladder = [10u32, 16, 32, 100];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); ladder.len()];
    let mut limited: Vec<Vec<f64>> = vec![Vec::new(); ladder.len()];
    for _ in 0..repeat {
        for (i, c) in ladder.iter().enumerate() {
            let r = run_tool(&Setup::against(server, tokens, 100.0, *c));
            walls[i].push(r.wall);
            limited[i].push(100.0 * r.share_429());
        }
    }
    let base = median(&walls[0]);
    println!(
        "| --concurrency | walls s ({repeat} runs, interleaved) | median | lowest-highest | median / --concurrency 10's | 429 share (median) |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, c) in ladder.iter().enumerate() {
        let w = &walls[i];
        let (lo, hi) = (
            w.iter().copied().fold(f64::INFINITY, f64::min),
            w.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "| {c} | {} | {:.2} | {lo:.2}-{hi:.2} | {:.3} | {:.2}% |",
            w.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(w),
            median(w) / base,
            median(&limited[i]),
        );
    }
}

/// 10 in flight at 100-400 ms with `BENCH_JITTER_TOKENS` tokens: the shell loop told the limit
/// (`-P 10`), the tool told 32, first run and next run, as in [`in_flight_scenarios`].
fn jitter_scenario() {
    let tokens = env_num("BENCH_JITTER_TOKENS", 2000.0) as usize;
    let server = Server::ten_in_flight(100, 300);
    let cap = server.capacity();
    eprintln!("jittered in-flight server: {tokens} tokens, --rate 100");
    let loop10 = run_shell_loop_at(tokens, server, FaultRates::default(), 10);
    let (first, next) = run_tool_twice(&Setup::against(server, tokens, 100.0, 32));
    println!(
        "10 in flight, latency 100-400 ms (capacity {cap:.0} creates/s), {tokens} tokens, --rate 100:"
    );
    println!(
        "| client | tokens | wall s | creates/s | of capacity | 429 share | most in flight at the server | learned limit (kind) | summary's server limit | CPU µs/token |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    in_flight_loop_row(10, &loop10, cap);
    in_flight_row("tool --concurrency 32, first run", &first, cap);
    in_flight_row("tool --concurrency 32, next run", &next, cap);
}

fn in_flight_scenarios() {
    let tokens = env_num("BENCH_IN_FLIGHT_TOKENS", 400.0) as usize;
    let rate = 100.0;
    let plain = Server::ten_in_flight(200, 0);
    let jittered = Server::ten_in_flight(100, 300);
    let mixed = Server {
        limit: 30.0,
        ..plain
    };
    eprintln!("in-flight scenarios: {tokens} tokens, --rate {rate}");
    let loop8 = run_shell_loop_at(tokens, plain, FaultRates::default(), 8);
    let loop10 = run_shell_loop_at(tokens, plain, FaultRates::default(), 10);
    let c8 = run_tool(&Setup::against(plain, tokens, rate, 8));
    let c10 = run_tool(&Setup::against(plain, tokens, rate, 10));
    let c16 = run_tool(&Setup::against(plain, tokens, rate, 16));
    let (c32, c32_next) = run_tool_twice(&Setup::against(plain, tokens, rate, 32));
    let (c100, c100_next) = run_tool_twice(&Setup::against(plain, tokens, rate, 100));
    let j_loop8 = run_shell_loop_at(tokens, jittered, FaultRates::default(), 8);
    // The loop told the limit exactly and with no preflight: what the latency's spread leaves
    // any client (the last answers' tail) beside the tool's next run.
    let j_loop10 = run_shell_loop_at(tokens, jittered, FaultRates::default(), 10);
    let j8 = run_tool(&Setup::against(jittered, tokens, rate, 8));
    let (j32, j32_next) = run_tool_twice(&Setup::against(jittered, tokens, rate, 32));
    let m_loop8 = run_shell_loop_at(tokens, mixed, FaultRates::default(), 8);
    let m8 = run_tool(&Setup::against(mixed, tokens, rate, 8));
    let (m32, m32_next) = run_tool_twice(&Setup::against(mixed, tokens, rate, 32));

    let header = || {
        println!(
            "| client | tokens | wall s | creates/s | of capacity | 429 share | most in flight at the server | learned limit (kind) | summary's server limit | CPU µs/token |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
    };
    let cap = plain.capacity();
    println!();
    println!(
        "A server that answers 429 beyond 10 requests in flight, 200 ms per request (capacity {cap:.0} creates/s), {tokens} tokens, --rate {rate}:"
    );
    header();
    in_flight_loop_row(8, &loop8, cap);
    in_flight_loop_row(10, &loop10, cap);
    in_flight_row("tool --concurrency 8 (default)", &c8, cap);
    in_flight_row("tool --concurrency 10", &c10, cap);
    in_flight_row("tool --concurrency 16", &c16, cap);
    in_flight_row("tool --concurrency 32, first run", &c32, cap);
    in_flight_row("tool --concurrency 32, next run", &c32_next, cap);
    in_flight_row("tool --concurrency 100, first run", &c100, cap);
    in_flight_row("tool --concurrency 100, next run", &c100_next, cap);
    let j_cap = jittered.capacity();
    println!();
    println!("The same limit with latency 100-400 ms (uniform; capacity {j_cap:.0} creates/s):");
    header();
    in_flight_loop_row(8, &j_loop8, j_cap);
    in_flight_loop_row(10, &j_loop10, j_cap);
    in_flight_row("tool --concurrency 8 (default)", &j8, j_cap);
    in_flight_row("tool --concurrency 32, first run", &j32, j_cap);
    in_flight_row("tool --concurrency 32, next run", &j32_next, j_cap);
    let m_cap = mixed.capacity();
    println!();
    println!(
        "Both limits: 30 creates/s (a token bucket) and 10 in flight, 200 ms (the rate binds: capacity {m_cap:.0} creates/s):"
    );
    header();
    in_flight_loop_row(8, &m_loop8, m_cap);
    in_flight_row("tool --concurrency 8 (default)", &m8, m_cap);
    in_flight_row("tool --concurrency 32, first run", &m32, m_cap);
    in_flight_row("tool --concurrency 32, next run", &m32_next, m_cap);

    println!();
    println!("Targets (issue 31):");
    println!("| target | measured | goal | met |");
    println!("|---|---|---|---|");
    let target = |what: &str, got: String, goal: &str, met: bool| {
        println!(
            "| {what} | {got} | {goal} | {} |",
            if met { "yes" } else { "NO" }
        );
    };
    let ratio = loop8.wall / c8.wall;
    target(
        "default concurrency (8): shell loop -P 8 wall / tool wall",
        format!("{ratio:.3} ({:.2} s / {:.2} s)", loop8.wall, c8.wall),
        ">= 1.0",
        ratio >= 1.0,
    );
    let ratio = j_loop8.wall / j8.wall;
    target(
        "the same, latency 100-400 ms",
        format!("{ratio:.3} ({:.2} s / {:.2} s)", j_loop8.wall, j8.wall),
        ">= 1.0",
        ratio >= 1.0,
    );
    let first_next = |what: &str, first: &ToolRun, next: &ToolRun, capacity: f64| {
        let (e, x) = (first.efficiency(capacity), first.share_429());
        target(
            &format!("{what}, first run: of capacity / 429 share"),
            format!("{e:.3} / {:.2}%", 100.0 * x),
            ">= 0.90 / <= 5%",
            e >= 0.90 && x <= 0.05,
        );
        let (e, x) = (next.efficiency(capacity), next.share_429());
        target(
            &format!("{what}, next run: of capacity / 429 share"),
            format!("{e:.3} / {:.2}%", 100.0 * x),
            ">= 0.95 / <= 1%",
            e >= 0.95 && x <= 0.01,
        );
    };
    first_next("10 in flight, --concurrency 32", &c32, &c32_next, cap);
    first_next("10 in flight, --concurrency 100", &c100, &c100_next, cap);
    first_next(
        "10 in flight, 100-400 ms, --concurrency 32",
        &j32,
        &j32_next,
        j_cap,
    );
    let e = m8.efficiency(m_cap);
    target(
        "30/s and 10 in flight, default concurrency (8): of the binding limit",
        format!(
            "{e:.3} (shell loop -P 8: {:.3})",
            m_loop8.received as f64 / m_loop8.wall / m_cap
        ),
        ">= 0.90",
        e >= 0.90,
    );
    let e = m32.efficiency(m_cap);
    target(
        "30/s and 10 in flight, --concurrency 32, first run: of the binding limit",
        format!("{e:.3}"),
        ">= 0.90",
        e >= 0.90,
    );
    let e = m32_next.efficiency(m_cap);
    target(
        "the same, next run",
        format!("{e:.3}"),
        ">= 0.90",
        e >= 0.90,
    );
    // Never slower with a larger --concurrency: each first run against the smaller ones' best,
    // with 2% for the noise of one run's wall time on this machine.
    let ladder = [(8, &c8), (10, &c10), (16, &c16), (32, &c32), (100, &c100)];
    let mut best_smaller = f64::INFINITY;
    let mut worst = 0.0_f64;
    for (_, r) in ladder {
        if best_smaller.is_finite() {
            worst = worst.max(r.wall / best_smaller);
        }
        best_smaller = best_smaller.min(r.wall);
    }
    target(
        "larger --concurrency (8, 10, 16, 32, 100; first runs): most wall / the best smaller one's",
        format!(
            "{worst:.3} ({})",
            ladder
                .iter()
                .map(|(c, r)| format!("{c}: {:.2} s", r.wall))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "<= 1.02",
        worst <= 1.02,
    );
    let lost = [
        &c8, &c10, &c16, &c32, &c32_next, &c100, &c100_next, &j8, &j32, &j32_next, &m8, &m32,
        &m32_next,
    ]
    .iter()
    .map(|r| r.lost)
    .sum::<usize>();
    target(
        "tool: secrets lost, all runs",
        lost.to_string(),
        "0",
        lost == 0,
    );
}
