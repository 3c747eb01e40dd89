//! Secret hygiene: no secret — the owner token or any token the server created — appears in
//! anything the tool prints or writes outside the secrets file and the journal, at the most
//! verbose log levels and on error paths; secret files are 0600; secrets are never written
//! through a symlink or into a file others can read; `Debug` never shows a secret. And an API
//! that misbehaves (a 200 without `id`/`token`, HTML, a huge body, an id already recorded, an
//! empty secret) never makes the tool record something wrong or panic: the item fails and is
//! listed as a possible orphan, because a 200 without a usable body may have created a token.
//!
//! The misbehaving API is a tiny raw HTTP responder on a `tokio` listener in this file (the
//! simulator only misbehaves in the documented ways).
//!
//! Soak (more tokens and faults in the verbose runs):
//!
//! ```text
//! LOGZIO_TOKENS_SOAK=1 cargo test --release --test integration hygiene -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logzio_tokens::simulator::{FaultRates, SimConfig};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::chaos::{Recorded, apply_cmd, soak};
use crate::util::{Env, Files, LoopbackServer, Run, files_under, manifest_yaml, mode, wait_until};

/// A distinctive owner token, so that any copy of it is found.
const OWNER: &str = "owner-tok-7f3a9c";

/// Where a needle was found.
fn scan(what: &str, haystack: &[u8], needles: &[String], found: &mut Vec<String>) {
    let text = String::from_utf8_lossy(haystack);
    for n in needles {
        if text.contains(n.as_str()) {
            found.push(format!("{what} contains the secret {n:?}"));
        }
    }
}

/// Whether a file may hold secrets: a secrets file or a journal.
fn is_secret_file(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy();
    name.ends_with(".journal") || name.starts_with("s.") || name.contains("secrets")
}

#[test]
fn the_most_verbose_runs_never_show_a_secret() {
    let n = if soak() { 200 } else { 30 };
    let env = Env::with_sim(SimConfig {
        owner_token: OWNER.to_owned(),
        seed: 4242,
        faults: FaultRates {
            rate_limited: 0.10,
            unavailable: 0.05,
            error_after_create: 0.05,
            drop_before_create: 0.05,
            drop_after_create: 0.05,
            truncate_after_create: 0.05,
            slow_after_create: 0.03,
        },
        slow_delay: Duration::from_millis(2500),
        ..SimConfig::default()
    });
    // The token file lives outside the scanned directory.
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{OWNER}\n")).unwrap();
    let tok = token_file.to_str().unwrap();

    let names = |p: &str| (0..n).map(|i| format!("{p}-{i}")).collect::<Vec<_>>();
    let modes: [(&str, &[&str], Option<&str>); 3] = [
        ("vvv", &["-vvv"], None),
        ("rust-log", &[], Some("trace")),
        ("json-logs", &["-vvv", "--log-format", "json"], None),
    ];
    let mut runs: Vec<(String, Run)> = Vec::new();
    for (label, flags, rust_log) in modes {
        let tokens = names(label);
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let manifest = env.write(&format!("{label}.yaml"), &manifest_yaml(&[160_343], &refs));
        let m = manifest.to_str().unwrap();
        let state = [
            "--results".to_owned(),
            env.path(&format!("{label}.results.json"))
                .display()
                .to_string(),
            "--secrets".to_owned(),
            env.path(&format!("s.{label}.json")).display().to_string(),
        ];
        let with_env = |c: &mut std::process::Command| {
            c.env("LOGZIO_API_TOKEN", OWNER);
            if let Some(r) = rust_log {
                c.env("RUST_LOG", r);
            }
        };
        let mut steps: Vec<(String, Vec<String>)> = vec![
            (
                "plan".into(),
                vec![
                    "plan".into(),
                    m.into(),
                    "--detail".into(),
                    "--out".into(),
                    format!("{label}.plan.json"),
                ],
            ),
            (
                "apply".into(),
                vec![
                    "apply".into(),
                    m.into(),
                    "--yes".into(),
                    "--request-timeout".into(),
                    "1".into(),
                    // At this fault mix some tokens need more than the default 2 ambiguous tries.
                    "--max-ambiguous".into(),
                    "6".into(),
                    "--output".into(),
                    "json".into(),
                ],
            ),
            (
                "apply again".into(),
                vec![
                    "apply".into(),
                    m.into(),
                    "--yes".into(),
                    "--request-timeout".into(),
                    "1".into(),
                    // At this fault mix some tokens need more than the default 2 ambiguous tries.
                    "--max-ambiguous".into(),
                    "6".into(),
                ],
            ),
            (
                "plan after".into(),
                vec!["plan".into(), m.into(), "--json".into()],
            ),
            (
                "export".into(),
                vec![
                    "export".into(),
                    m.into(),
                    "--out".into(),
                    env.path(&format!("s.{label}.export")).display().to_string(),
                ],
            ),
        ];
        for (_, args) in &mut steps {
            // The verbosity flags are global: they go first, as a user would type them.
            args.splice(0..0, flags.iter().map(|s| (*s).to_owned()));
            args.extend(state.iter().cloned());
        }
        for (step, args) in steps {
            let mut c = env.cmd();
            c.args(&args);
            with_env(&mut c);
            runs.push((
                format!("{label} {step}"),
                env.run_cmd(&mut c, Duration::from_secs(180)),
            ));
        }
        // The owner token from a file instead of the environment.
        let mut c = env.cmd();
        c.args(flags)
            .args(["plan", m, "--api-token-file", tok])
            .args(&state)
            .env_remove("LOGZIO_API_TOKEN");
        if let Some(r) = rust_log {
            c.env("RUST_LOG", r);
        }
        runs.push((
            format!("{label} plan with a token file"),
            env.run_cmd(&mut c, Duration::from_secs(60)),
        ));
    }
    // An error path: a wrong owner token (itself a secret).
    let wrong = "wrong-owner-tok-5e8d1b";
    let mut c = env.cmd();
    c.args([
        "-vvv",
        "apply",
        "vvv.yaml",
        "--yes",
        "--results",
        "wrong.results.json",
        "--secrets",
        "s.wrong.json",
    ])
    .env("LOGZIO_API_TOKEN", wrong);
    let wrong_run = env.run_cmd(&mut c, Duration::from_secs(60));
    assert_eq!(wrong_run.code, Some(3), "{}", wrong_run.stderr);
    runs.push(("apply with a wrong token".into(), wrong_run));

    let gt = env.sim().ground_truth();
    assert!(gt.len() >= 3 * n, "only {} tokens were created", gt.len());
    let counters = env.sim().counters();
    assert!(
        counters.error_500_after_create
            + counters.dropped_after_create
            + counters.truncated_after_create
            > 0,
        "no fault was played: the error paths were not exercised"
    );
    let mut needles: Vec<String> = gt.iter().map(|t| t.token.clone()).collect();
    needles.push(OWNER.to_owned());
    needles.push(wrong.to_owned());

    let mut found = Vec::new();
    for (label, run) in &runs {
        assert!(!run.stderr.contains("panicked"), "{label}: {}", run.stderr);
        scan(
            &format!("{label}: stdout"),
            run.stdout.as_bytes(),
            &needles,
            &mut found,
        );
        scan(
            &format!("{label}: stderr"),
            run.stderr.as_bytes(),
            &needles,
            &mut found,
        );
    }
    // The verbose runs really were verbose (else this proves little).
    for (label, run) in &runs {
        if label.ends_with(" apply") {
            assert!(
                run.stderr.contains("DEBUG")
                    || run.stderr.contains("\"level\":\"DEBUG\"")
                    || run.stderr.contains("TRACE"),
                "{label}: no debug log line at the most verbose level:\n{}",
                run.stderr
            );
        }
    }
    let mut scanned = 0;
    for file in files_under(env.dir.path()) {
        if is_secret_file(&file) {
            assert_eq!(mode(&file), 0o600, "{} holds secrets", file.display());
            continue;
        }
        scanned += 1;
        scan(
            &file.display().to_string(),
            &std::fs::read(&file).unwrap(),
            &needles,
            &mut found,
        );
    }
    assert!(scanned >= 9, "only {scanned} files were scanned");
    // The secrets files do hold the secrets (the scan looked for the right strings).
    let secrets_text: String = ["vvv", "rust-log", "json-logs"]
        .iter()
        .map(|l| std::fs::read_to_string(env.path(&format!("s.{l}.json"))).unwrap())
        .collect();
    assert!(
        gt.iter()
            .filter(|t| secrets_text.contains(&t.token))
            .count()
            >= 3 * n
    );
    eprintln!(
        "hygiene: {} runs, {} tokens created, {} files scanned, faults [500-after-create={} drop-after={} truncated={} slow={} 429={} 503={} drop-before={}], {} secrets found where they must not be",
        runs.len(),
        gt.len(),
        scanned,
        counters.error_500_after_create,
        counters.dropped_after_create,
        counters.truncated_after_create,
        counters.slow_after_create,
        counters.fault_429,
        counters.fault_503,
        counters.dropped_before_create,
        found.len()
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_journal_and_the_secrets_file_are_0600_while_a_run_goes_on() {
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    });
    let names: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let files = Files::new(&env, &manifest_yaml(&[160_343], &refs));
    let mut child = apply_cmd(&env, &files, &["--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The journal exists from the start; the secrets file after the first save (3 s).
    assert!(wait_until(Duration::from_secs(60), || files
        .journal()
        .exists()
        && env.sim().counters().created >= 1));
    assert_eq!(mode(&files.journal()), 0o600);
    assert!(wait_until(Duration::from_secs(60), || files
        .secrets
        .exists()));
    assert_eq!(mode(&files.secrets), 0o600);
    assert!(
        wait_until(Duration::from_secs(120), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "apply did not finish"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(mode(&files.secrets), 0o600);
}

/// A workspace whose secrets path is unsafe; returns the run and whether any token was created.
fn apply_with_secrets_at(env: &Env, secrets: &Path) -> Run {
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--results",
        "r.json",
        "--secrets",
        secrets.to_str().unwrap(),
    ])
}

const EMPTY_SECRETS: &str = "{\"version\": 1, \"accounts\": {}}\n";

#[test]
fn secrets_are_never_written_through_a_symlink() {
    let env = Env::with_sim(SimConfig::default());
    let target = env.write("elsewhere.json", EMPTY_SECRETS);
    let link = env.path("s.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let run = apply_with_secrets_at(&env, &link);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), EMPTY_SECRETS);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Refused before anything was sent: no token exists to lose, and no journal was made.
    assert!(
        env.sim().ground_truth().is_empty(),
        "a token was created although the secrets path was refused"
    );
    assert_eq!(env.sim().counters().requests, 0, "the API was called");
    assert!(!env.path("r.journal").exists());
}

#[test]
fn secrets_are_never_written_into_a_file_others_can_read_or_write() {
    use std::os::unix::fs::PermissionsExt;
    for loose in [0o666, 0o640, 0o604] {
        let env = Env::with_sim(SimConfig::default());
        let secrets = env.write("s.json", EMPTY_SECRETS);
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(loose)).unwrap();
        let run = apply_with_secrets_at(&env, &secrets);
        assert_eq!(run.code, Some(3), "mode {loose:o}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{loose:04o}")),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&secrets).unwrap(), EMPTY_SECRETS);
        assert_eq!(mode(&secrets), loose, "the tool changed the mode itself");
        assert!(!run.stderr.contains("panicked"));
    }
}

#[test]
fn an_unsafe_secrets_path_is_refused_before_any_token_is_created() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_sim(SimConfig::default());
    let secrets = env.write("s.json", EMPTY_SECRETS);
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = apply_with_secrets_at(&env, &secrets);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(
        env.sim().counters().created,
        0,
        "tokens were created although their secrets could not be written:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("(mode 0600)"),
        "the summary claims the secrets file is 0600:\n{}",
        run.stderr
    );
}

#[test]
fn the_orphans_command_lists_and_clears_without_showing_a_secret() {
    let env = Env::with_sim(SimConfig {
        seed: 3,
        faults: FaultRates {
            drop_after_create: 0.5,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    let files = Files::new(&env, &manifest_yaml(&[160_343], &["a", "b", "c", "d"]));
    // One request at a time, so the seeded fault draws fall in the same order on every run,
    // and budgets that a 50% fault rate cannot use up: this test is about listing orphans.
    let extra = [
        "--concurrency",
        "1",
        "--max-attempts",
        "20",
        "--max-ambiguous",
        "20",
    ];
    let run = env.run_cmd(
        &mut apply_cmd(&env, &files, &extra),
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !Recorded::read(&files).orphans.is_empty(),
        "no orphan to list"
    );
    let state = [
        "--results",
        files.results.to_str().unwrap(),
        "--secrets",
        files.secrets.to_str().unwrap(),
    ];
    let m = files.manifest.to_str().unwrap();
    let secrets: Vec<String> = env
        .sim()
        .ground_truth()
        .into_iter()
        .map(|t| t.token)
        .collect();
    for args in [
        vec!["orphans", m],
        vec!["orphans", "list", m],
        vec!["orphans", "clear", m],
    ] {
        let run = env.run(&args.iter().chain(state.iter()).copied().collect::<Vec<_>>());
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        for s in &secrets {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "{args:?} shows a secret"
            );
        }
    }
    assert!(
        Recorded::read(&files).orphans.is_empty(),
        "`orphans clear` cleared nothing"
    );
}

#[test]
fn debug_output_never_shows_a_secret() {
    let secret = "s3cr3t-2b7e151628aed2a6";
    let s = logzio_tokens::secret::Secret::new(secret);
    for text in [format!("{s:?}"), format!("{s}"), format!("{:#?}", Some(&s))] {
        assert!(!text.contains(secret), "{text}");
    }
    let created: logzio_tokens::api::CreatedToken = serde_json::from_str(&format!(
        r#"{{"id": 7386, "name": "ci", "token": "{secret}", "createdAt": 1621858311}}"#
    ))
    .unwrap();
    assert_eq!(created.token.expose(), secret);
    for text in [format!("{created:?}"), format!("{created:#?}")] {
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("7386"), "{text}");
    }
    let outcome = logzio_tokens::state::Outcome::Created {
        token_id: 1,
        secret: logzio_tokens::state::HeldSecret::plain(s.clone()),
        created_at: String::new(),
    };
    assert!(!format!("{outcome:?}").contains(secret));
    let mut file = logzio_tokens::state::SecretsFile::default();
    file.insert(
        &logzio_tokens::key::TokenKey {
            account_id: 1,
            token_name: "ci".into(),
        },
        1,
        s.clone(),
    );
    assert!(!format!("{file:?}").contains(secret));
    let config = logzio_tokens::api::ClientConfig {
        endpoint: logzio_tokens::api::Endpoint::Url("http://127.0.0.1:9".into()),
        token: logzio_tokens::secret::Secret::new(OWNER),
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        pool_size: 1,
    };
    assert!(!format!("{config:?}").contains(OWNER));
    let client = logzio_tokens::api::ApiClient::new(config).unwrap();
    assert!(!format!("{client:?}").contains(OWNER));
    let sim = SimConfig {
        owner_token: OWNER.into(),
        ..SimConfig::default()
    };
    assert!(!format!("{sim:?}").contains(OWNER));
    let gt = logzio_tokens::simulator::CreatedToken {
        id: 1,
        account_id: 1,
        name: "ci".into(),
        token: secret.into(),
        created_at: 0.0,
    };
    assert!(!format!("{gt:?}").contains(secret));
}

// --- a misbehaving API -------------------------------------------------------------------------

/// How the raw responder answers a create call: status line, content type, body.
type Answer = (&'static str, &'static str, Vec<u8>);

/// What answers a create call, given the token name and the call's number (from 1).
type CreateFn = Arc<dyn Fn(&str, u32) -> Answer + Send + Sync>;

/// A raw HTTP/1.1 responder: whoami and the account list answered correctly, every create call
/// answered by `create(name, n)` (n counts create calls from 1). One connection per request.
struct Responder {
    url: String,
    creates: Arc<AtomicU32>,
    _server: LoopbackServer,
}

async fn serve_one(mut stream: tokio::net::TcpStream, create: CreateFn, creates: Arc<AtomicU32>) {
    let Some((head, body)) = crate::util::read_request(&mut stream).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let (status, content_type, body): Answer = if request_line.starts_with("GET /v2/whoami ") {
        (
            "200 OK",
            "application/json",
            br#"{"accountName":"acme-main","accountId":100000}"#.to_vec(),
        )
    } else if request_line.starts_with("GET /v1/account-management/time-based-accounts ") {
        (
            "200 OK",
            "application/json",
            br#"[{"accountId":100000,"accountName":"acme-main","isOwner":true},{"accountId":160343,"accountName":"payments-prod","isOwner":false}]"#.to_vec(),
        )
    } else if request_line.starts_with("POST /v1/api-tokens/sub-account ") {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let n = creates.fetch_add(1, Ordering::SeqCst) + 1;
        create(v["name"].as_str().unwrap_or_default(), n)
    } else {
        (
            "404 Not Found",
            "application/json",
            br#"{"message":"not found"}"#.to_vec(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn responder(create: impl Fn(&str, u32) -> Answer + Send + Sync + 'static) -> Responder {
    let create: CreateFn = Arc::new(create);
    let creates = Arc::new(AtomicU32::new(0));
    let counter = creates.clone();
    let server =
        LoopbackServer::start(move |stream| serve_one(stream, create.clone(), counter.clone()));
    Responder {
        url: server.url.clone(),
        creates,
        _server: server,
    }
}

/// Runs apply for `tokens` of account 160343 against the responder.
fn apply_against(r: &Responder, env: &Env, tokens: &[&str]) -> Run {
    env.write("m.yaml", &manifest_yaml(&[160_343], tokens));
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", &r.url)
        .env("LOGZIO_API_TOKEN", OWNER)
        .args([
            "apply",
            "m.yaml",
            "--yes",
            "--results",
            "r.json",
            "--secrets",
            "s.json",
            "--max-attempts",
            "2",
            "--concurrency",
            "1",
            "--request-timeout",
            "10",
        ]);
    env.run_cmd(&mut c, Duration::from_secs(120))
}

fn results_of(env: &Env) -> (Recorded, Value) {
    let files = Files {
        manifest: env.path("m.yaml"),
        results: env.path("r.json"),
        secrets: env.path("s.json"),
    };
    (Recorded::read(&files), env.json("r.json"))
}

/// The item failed, is not recorded, is a possible orphan, and nothing panicked or leaked.
fn expect_failed_orphan(label: &str, env: &Env, run: &Run, token: &str, leak: Option<&str>) {
    assert_eq!(run.code, Some(1), "{label}: exit\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{label}: {}", run.stderr);
    let (rec, results) = results_of(env);
    let key = (160_343, token.to_owned());
    assert!(
        !rec.tokens.contains_key(&key),
        "{label}: recorded {:?}",
        rec.tokens
    );
    assert!(
        rec.orphans.contains(&key),
        "{label}: not a possible orphan: {results}"
    );
    assert!(
        results["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["token_name"] == token),
        "{label}: not listed as failed: {results}"
    );
    if let Some(secret) = leak {
        for (what, text) in [
            ("stdout", run.stdout.clone()),
            ("stderr", run.stderr.clone()),
            (
                "results",
                std::fs::read_to_string(env.path("r.json")).unwrap(),
            ),
        ] {
            assert!(
                !text.contains(secret),
                "{label}: {what} shows the secret\n{text}"
            );
        }
    }
}

#[test]
fn a_misbehaving_api_never_makes_the_tool_record_something_wrong() {
    let huge = {
        let mut v = br#"{"id": 4242, "token": "huge-secret-0d3c", "pad": ""#.to_vec();
        v.extend(std::iter::repeat_n(b'x', 9 * 1024 * 1024));
        v.extend(br#""}"#);
        v
    };
    // A secret with an unusable id (missing, zero, negative, not a number) is kept aside
    // without a retry: adversarial.rs covers those.
    let cases: Vec<(&str, Answer, Option<&str>)> = vec![
        (
            "no id or token",
            ("200 OK", "application/json", br#"{"name":"bad"}"#.to_vec()),
            None,
        ),
        (
            "null",
            ("200 OK", "application/json", b"null".to_vec()),
            None,
        ),
        (
            "a list",
            ("200 OK", "application/json", b"[]".to_vec()),
            None,
        ),
        (
            "empty 200",
            ("200 OK", "application/json", Vec::new()),
            None,
        ),
        (
            "empty 202",
            ("202 Accepted", "application/json", Vec::new()),
            None,
        ),
        (
            "HTML",
            (
                "200 OK",
                "text/html",
                b"<html><body><h1>Welcome to nginx!</h1></body></html>".to_vec(),
            ),
            None,
        ),
        (
            "huge",
            ("200 OK", "application/json", huge),
            Some("huge-secret-0d3c"),
        ),
    ];
    for (label, answer, leak) in cases {
        let env = Env::new();
        let r = responder(move |_, _| answer.clone());
        let run = apply_against(&r, &env, &["bad"]);
        expect_failed_orphan(label, &env, &run, "bad", leak);
        assert_eq!(r.creates.load(Ordering::SeqCst), 2, "{label}: attempts");
    }
}

#[test]
fn an_id_the_api_already_gave_to_another_token_is_never_recorded_twice() {
    let env = Env::new();
    let handed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let h = handed.clone();
    let r = responder(move |name, n| {
        let secret = format!("dup-secret-{n}-a9f0");
        h.lock().unwrap().push((name.to_owned(), secret.clone()));
        (
            "200 OK",
            "application/json",
            format!(
                r#"{{"id": 777, "name": "{name}", "token": "{secret}", "createdAt": 1621858311}}"#
            )
            .into_bytes(),
        )
    });
    let run = apply_against(&r, &env, &["first", "second"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
    let handed = handed.lock().unwrap().clone();
    let (winner, winner_secret) = handed[0].clone();
    let loser = if winner == "first" { "second" } else { "first" };
    let (rec, _) = results_of(&env);
    assert_eq!(rec.tokens.get(&(160_343, winner.clone())), Some(&777));
    assert_eq!(
        rec.secrets.get(&(160_343, winner.clone())),
        Some(&(777, winner_secret)),
        "the first token's secret was replaced"
    );
    expect_failed_orphan("duplicate id", &env, &run, loser, None);
    // Every secret handed out is kept (none dropped), and none is shown.
    let secrets = std::fs::read_to_string(env.path("s.json")).unwrap();
    for (_, s) in &handed {
        assert!(secrets.contains(s), "secret {s} was dropped");
        assert!(!run.stderr.contains(s) && !run.stdout.contains(s));
    }
}

#[test]
fn an_id_recorded_by_an_earlier_run_is_never_given_to_another_token() {
    let env = Env::new();
    let r = responder(|name, _| {
        (
            "200 OK",
            "application/json",
            format!(r#"{{"id": 555, "token": "{name}-secret-31b7"}}"#).into_bytes(),
        )
    });
    let first = apply_against(&r, &env, &["first"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let run = apply_against(&r, &env, &["first", "second"]);
    expect_failed_orphan("id of an earlier run", &env, &run, "second", None);
    let (rec, _) = results_of(&env);
    assert_eq!(rec.tokens.get(&(160_343, "first".to_owned())), Some(&555));
    assert_eq!(
        rec.secrets.get(&(160_343, "first".to_owned())),
        Some(&(555, "first-secret-31b7".to_owned()))
    );
    // The second secret is kept aside, never dropped.
    let secrets = std::fs::read_to_string(env.path("s.json")).unwrap();
    assert!(secrets.contains("second-secret-31b7"));
}

#[test]
fn an_empty_secret_is_not_recorded_as_a_token() {
    let env = Env::new();
    let r = responder(|_, _| {
        (
            "200 OK",
            "application/json",
            br#"{"id": 9001, "token": ""}"#.to_vec(),
        )
    });
    let run = apply_against(&r, &env, &["bad"]);
    expect_failed_orphan("empty secret", &env, &run, "bad", None);
}

/// A value to find in any message that quotes a file's content.
const PLANTED: &str = "SECRET-abc123";

/// Asserts that a refused run names `file`, a line and column and `kind`, and quotes nothing
/// of the file.
fn expect_refused_unquoted(label: &str, run: &Run, file: &str, kind: &str) {
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_ne!(run.code, Some(0), "{label}: accepted\n{all}");
    assert!(!all.contains(PLANTED), "{label}: quotes the file\n{all}");
    assert!(!all.contains("SECRET"), "{label}: quotes the file\n{all}");
    assert!(all.contains(file), "{label}: does not name {file}\n{all}");
    assert!(
        all.contains("line ") && all.contains(" column "),
        "{label}: no line and column\n{all}"
    );
    assert!(all.contains(kind), "{label}: does not say `{kind}`\n{all}");
}

#[test]
fn a_malformed_plan_or_state_file_is_reported_without_quoting_it() {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    let state = ["--results", "r.json", "--secrets", "s.json"];
    let mut plan = env.cmd();
    plan.args(["plan", "m.yaml", "--out", "p.json"]).args(state);
    env.run_cmd(&mut plan, Duration::from_secs(60))
        .expect_code(0);
    let saved = env.json("p.json");

    // A saved plan with a string where a number, a flag or a kind belongs, or a field of the
    // file's own naming: serde's messages would quote each.
    type Edit = (&'static str, fn(&mut Value), &'static str);
    let edits: [Edit; 4] = [
        (
            "version",
            |p| p["version"] = Value::from(PLANTED),
            "wrong type",
        ),
        (
            "flag",
            |p| p["recreate_revoked"] = Value::from(PLANTED),
            "wrong type",
        ),
        (
            "kind of change",
            |p| p["changes"][0]["kind"] = Value::from(PLANTED),
            "not one this field takes",
        ),
        (
            "unknown field",
            |p| p[PLANTED] = Value::from(1),
            "unknown field",
        ),
    ];
    for (label, edit, kind) in edits {
        let mut p = saved.clone();
        edit(&mut p);
        env.write("bad.plan.json", &serde_json::to_string_pretty(&p).unwrap());
        let mut c = env.cmd();
        c.args(["apply", "bad.plan.json", "--yes"]).args(state);
        let run = env.run_cmd(&mut c, Duration::from_secs(60));
        expect_refused_unquoted(&format!("plan: {label}"), &run, "bad.plan.json", kind);
    }

    // The results file, read by every command.
    env.write(
        "r.json",
        &format!("{{\"version\": \"{PLANTED}\", \"updated_at\": \"x\", \"accounts\": {{}}}}\n"),
    );
    let mut c = env.cmd();
    c.args(["plan", "m.yaml"]).args(state);
    let run = env.run_cmd(&mut c, Duration::from_secs(60));
    expect_refused_unquoted("results", &run, "r.json", "wrong type");
    assert_eq!(env.sim().counters().created, 0, "nothing is created");
}
