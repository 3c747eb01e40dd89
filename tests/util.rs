//! The shared test harness: a temp dir, a simulator on 127.0.0.1:0, the real binary, and
//! waiting on conditions with deadlines (never sleeping to wait for something).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use logzio_tokens::simulator::{BackgroundSimulator, SimConfig, Simulator};

/// The owner token the simulator accepts by default.
pub const OWNER_TOKEN: &str = "sim-owner-token";

/// A test workspace: a temp dir and (optionally) a simulator.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: Option<BackgroundSimulator>,
}

impl Env {
    /// A workspace without a simulator.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            sim: None,
        }
    }

    /// A workspace with a simulator started from `config`.
    pub fn with_sim(config: SimConfig) -> Env {
        let sim = Simulator::start_background(config).expect("simulator starts");
        Env {
            dir: tempfile::tempdir().unwrap(),
            sim: Some(sim),
        }
    }

    /// The simulator.
    pub fn sim(&self) -> &BackgroundSimulator {
        self.sim.as_ref().expect("this Env has a simulator")
    }

    /// A path inside the workspace.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the workspace and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The binary, with a clean environment: no LOGZIO_* or RUST_LOG from the outside, the
    /// simulator's URL and owner token set when there is a simulator, run in the workspace.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_logzio-tokens"));
        for (k, _) in std::env::vars() {
            // CI=true changes what apply warns about; tests that want it set it themselves.
            // A bug put back for a measurement (the `reintroduce` feature) goes to the binary.
            if (k.starts_with("LOGZIO_") && k != "LOGZIO_TOKENS_REINTRODUCE")
                || k == "RUST_LOG"
                || k == "CI"
            {
                c.env_remove(k);
            }
        }
        c.current_dir(self.dir.path());
        c.stdin(Stdio::null());
        if let Some(sim) = &self.sim {
            c.env("LOGZIO_API_URL", sim.url());
            c.env("LOGZIO_API_TOKEN", OWNER_TOKEN);
        }
        c
    }

    /// Runs the binary with `args` to completion (bounded by `timeout`).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.cmd().args(args), Duration::from_secs(120))
    }

    /// Runs a prepared command to completion, killing it after `timeout`.
    pub fn run_cmd(&self, cmd: &mut Command, timeout: Duration) -> Run {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Run::from(wait_with_timeout(child, timeout))
    }

    /// Reads a JSON file of the workspace.
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path(name)).unwrap()).unwrap()
    }
}

/// Where a scenario's files are: the manifest, and state files under `state/` given by path.
#[derive(Debug, Clone)]
pub struct Files {
    pub manifest: PathBuf,
    pub results: PathBuf,
    pub secrets: PathBuf,
}

impl Files {
    /// Writes the manifest and makes the state directory (`state/`) in the workspace.
    pub fn new(env: &Env, manifest: &str) -> Files {
        let state = env.path("state");
        std::fs::create_dir_all(&state).unwrap();
        Files {
            manifest: env.write("m.yaml", manifest),
            results: state.join("r.json"),
            secrets: state.join("s.json"),
        }
    }

    /// The journal beside the results file.
    pub fn journal(&self) -> PathBuf {
        self.results.with_extension("journal")
    }

    /// `logzio-tokens COMMAND MANIFEST --results R --secrets S`, for more arguments;
    /// `command` may be words (`orphans clear`).
    pub fn cmd(&self, env: &Env, command: &str) -> Command {
        let mut c = env.cmd();
        c.args(command.split(' '))
            .arg(&self.manifest)
            .arg("--results")
            .arg(&self.results)
            .arg("--secrets")
            .arg(&self.secrets);
        c
    }

    /// The results file, parsed.
    pub fn results_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&self.results).unwrap()).unwrap()
    }
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Waits for a child, killing it after `timeout` (so a hung binary fails the test, not CI).
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().unwrap(),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the binary did not finish within {timeout:?}\n--- stderr\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for the binary: {e}"),
        }
    }
}

/// Starts a prepared command with its output thrown away (a run a test kills or signals).
pub fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `cond` holds or the child exits (at most `timeout`), then kills it (SIGKILL)
/// and reaps it; returns whether it was still running, i.e. whether the kill landed in a
/// running process.
pub fn kill_when(child: &mut Child, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_until(timeout, || cond() || child.try_wait().unwrap().is_some());
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Sends `signal` to a child process of this test.
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, still
    // unreaped (so it cannot have been recycled for another process).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({signal}) failed");
}

/// Sends SIGINT (what Ctrl-C sends) to a child process of this test.
pub fn interrupt(pid: u32) {
    signal(pid, libc::SIGINT);
}

/// The (account id, token name) of every possible orphan a results file lists.
pub fn possible_orphans(results: &serde_json::Value) -> Vec<(i64, String)> {
    results["possible_orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["account_id"].as_i64().unwrap(),
                o["token_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `cond` until it holds or the deadline passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A manifest with `accounts` (ids) each wanting `tokens`.
pub fn manifest_yaml(accounts: &[i64], tokens: &[&str]) -> String {
    let mut s = String::from("version: 1\naccounts:\n");
    for a in accounts {
        s.push_str(&format!(
            "  - id: {a}\n    tokens: [{}]\n",
            tokens.join(", ")
        ));
    }
    s
}

/// Every file under `dir`, recursively (directories are walked, not listed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Makes a file readable by its owner only, as `age-keygen -o` writes a private key (an
/// identity file others may read is refused).
pub fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// A raw TCP server on 127.0.0.1 for scripted answers, on its own thread and runtime: `serve`
/// handles each accepted connection. Stopped (and its thread joined) when dropped.
pub struct LoopbackServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopbackServer {
    /// Binds a free port and serves until dropped.
    pub fn start<F, Fut>(serve: F) -> LoopbackServer
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            tokio::spawn(serve(stream));
                        }
                    }
                }
            });
        });
        let addr = addr.recv().unwrap();
        LoopbackServer {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Reads one HTTP/1.1 request from a test server's connection: its head (request line and
/// headers) and its body (by `Content-Length`). `None` when the client went away first.
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[end..end + length].to_vec();
    Some((head, body))
}

/// The records of a journal file as text, without its room: the journal holds its room as
/// zeros written ahead of its records (on ext4, XFS and tmpfs), and everything after the
/// first zero byte must be zeros (a killed process leaves no hole: only a power loss can).
/// An absent file is `None`.
pub fn journal_text(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    assert!(
        bytes[end..].iter().all(|b| *b == 0),
        "{}: records after the journal's room at byte {end}",
        path.display()
    );
    Some(String::from_utf8(bytes[..end].to_vec()).expect("a journal is UTF-8"))
}
