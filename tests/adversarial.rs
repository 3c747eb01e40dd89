//! Adversarial: the attacks of an adversarial review (issue 16), each reproduced against the
//! real binary — by a hostile server, a hostile local user (planted, linked or special files in
//! the state directory), a hostile manifest, or a careless operator — and each pinned to what
//! the tool does now. Every test here but the CONNECT one failed on the code before the fixes.
//!
//! The hostile server is a raw HTTP/1.1 responder in this file: the simulator only misbehaves
//! in the documented ways. Tests that need a file of another user run `chown`, which needs
//! root; without it they check what they can and say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logzio_tokens::simulator::SimConfig;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::util::{Env, LoopbackServer, Run, manifest_yaml};

/// A distinctive owner token, so that any copy of it is found.
pub(crate) const OWNER: &str = "owner-tok-adv-5b7e91";
/// The sub account every test asks tokens for.
pub(crate) const SUB: u32 = 160_343;
/// Another user, for planted files (root is needed to make them).
const OTHER_UID: u32 = 4_242;

// --- a hostile server ----------------------------------------------------------------------------

/// One request as the hostile server read it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `POST /v1/api-tokens/sub-account HTTP/1.1`.
    pub(crate) line: String,
    /// The whole head, request line included.
    pub(crate) head: String,
    /// The token name of a create call.
    pub(crate) name: String,
    /// The create call's number, from 1 (0 for other calls).
    pub(crate) create: u32,
}

type Reply = Arc<dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync>;

/// A raw HTTP/1.1 server on 127.0.0.1 that records every request. `reply` answers a request or
/// returns `None` for the API's normal answer (whoami, the account list; 404 for the rest).
pub(crate) struct Hostile {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    creates: Arc<AtomicU32>,
    _server: LoopbackServer,
}

impl Hostile {
    pub(crate) fn creates(&self) -> u32 {
        self.creates.load(Ordering::SeqCst)
    }
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A full HTTP/1.1 answer.
pub(crate) fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// An answer that never comes: the request is read, the connection stays open, silent.
pub(crate) fn hang() -> Option<Vec<u8>> {
    Some(Vec::new())
}

pub(crate) fn ok(body: &str) -> Option<Vec<u8>> {
    Some(http("200 OK", "", body.as_bytes()))
}

fn normal_answer(req: &Request) -> Vec<u8> {
    if req.line.starts_with("GET /v2/whoami ") {
        http(
            "200 OK",
            "",
            br#"{"accountName":"acme-main","accountId":100000}"#,
        )
    } else if req
        .line
        .starts_with("GET /v1/account-management/time-based-accounts ")
    {
        http(
            "200 OK",
            "",
            br#"[{"accountId":100000,"accountName":"acme-main","isOwner":true},{"accountId":160343,"accountName":"payments-prod","isOwner":false}]"#,
        )
    } else {
        http("404 Not Found", "", br#"{"message":"not found"}"#)
    }
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    reply: Reply,
    requests: Arc<Mutex<Vec<Request>>>,
    creates: Arc<AtomicU32>,
) {
    let Some((head, body)) = crate::util::read_request(&mut stream).await else {
        return;
    };
    let line = head.lines().next().unwrap_or_default().to_owned();
    let (name, create) = if line.starts_with("POST /v1/api-tokens/sub-account ") {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (
            v["name"].as_str().unwrap_or_default().to_owned(),
            creates.fetch_add(1, Ordering::SeqCst) + 1,
        )
    } else {
        (String::new(), 0)
    };
    let req = Request {
        line,
        head,
        name,
        create,
    };
    requests.lock().unwrap().push(req.clone());
    let answer = reply(&req).unwrap_or_else(|| normal_answer(&req));
    if answer.is_empty() {
        // `hang()`: the request is read and never answered (until the server stops).
        std::future::pending::<()>().await;
    }
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

pub(crate) fn hostile(
    reply: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> Hostile {
    let reply: Reply = Arc::new(reply);
    let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
    let creates = Arc::new(AtomicU32::new(0));
    let (reqs, counter) = (requests.clone(), creates.clone());
    let server = LoopbackServer::start(move |stream| {
        serve_one(stream, reply.clone(), reqs.clone(), counter.clone())
    });
    Hostile {
        url: server.url.clone(),
        requests,
        creates,
        _server: server,
    }
}

/// `apply` of `tokens` for the sub account against `url`, state in `dir` (default: the
/// workspace) as r.json / s.json.
pub(crate) fn apply_in(env: &Env, url: &str, dir: &Path, tokens: &[&str], extra: &[&str]) -> Run {
    let manifest = env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], tokens));
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", url)
        .env("LOGZIO_API_TOKEN", OWNER)
        .arg("apply")
        .arg(&manifest)
        .args(["--yes", "--concurrency", "1", "--request-timeout", "10"])
        .arg("--results")
        .arg(dir.join("r.json"))
        .arg("--secrets")
        .arg(dir.join("s.json"))
        .args(extra);
    env.run_cmd(&mut c, Duration::from_secs(90))
}

pub(crate) fn apply(env: &Env, url: &str, tokens: &[&str], extra: &[&str]) -> Run {
    apply_in(env, url, env.dir.path(), tokens, extra)
}

/// Gives `path` to another user; false when this process may not (not root).
fn give_away(path: &Path) -> bool {
    match std::os::unix::fs::chown(path, Some(OTHER_UID), Some(OTHER_UID)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "cannot chown {} ({e}); the other-user case is skipped",
                path.display()
            );
            false
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A created token's answer.
pub(crate) fn created(id: i64, secret: &str) -> Option<Vec<u8>> {
    ok(&format!(
        r#"{{"id": {id}, "name": "n", "token": "{secret}", "createdAt": 1621858311}}"#
    ))
}

// --- 1. a journal planted by another user ------------------------------------------------------

#[test]
fn a_journal_planted_while_the_run_starts_receives_no_secret() {
    let env = Env::new();
    let journal = env.path("r.journal");
    // The attacker keeps a second name for the file, to read it after the run removed it.
    let stolen = env.path("stolen");
    let planted = Arc::new(AtomicU32::new(0));
    let (j, st, p) = (journal.clone(), stolen.clone(), planted.clone());
    let server = hostile(move |req| {
        // During the preflight, after the run removed any old journal: another user plants
        // one that everybody can write (and read).
        if req.line.starts_with("GET /v2/whoami ") && !j.exists() {
            std::fs::write(&j, b"").unwrap();
            set_mode(&j, 0o666);
            give_away(&j);
            std::fs::hard_link(&j, &st).unwrap();
            p.fetch_add(1, Ordering::SeqCst);
        }
        if req.create > 0 {
            return created(7000 + i64::from(req.create), "planted-secret-1f2e");
        }
        None
    });
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(planted.load(Ordering::SeqCst), 1, "{}", run.stderr);
    assert!(
        !read(&stolen).contains("planted-secret"),
        "the planted journal received the secret: {}",
        read(&stolen)
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(
        server.creates(),
        0,
        "a create was sent with no journal of ours"
    );
    assert!(run.stderr.contains("r.journal"), "{}", run.stderr);
}

/// A journal with a crafted record: token 999 "created" for ci, with a secret of the attacker's.
fn crafted_journal() -> String {
    format!(
        "{}\n",
        r#"{"kind":"outcome","seq":1,"account_id":160343,"token_name":"ci","result":"created","token_id":999,"token":"crafted-secret-77","created_at":"2021-05-24T12:11:51Z","at":"2026-01-01T00:00:01.000Z"}"#
    )
}

#[test]
fn a_symlinked_or_foreign_journal_is_not_replayed() {
    // Followed through a symlink, the crafted record would be accepted, and the real token for
    // ci never created.
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(7001, "real-secret-aa"))
            .flatten()
    });
    let elsewhere = env.write("elsewhere.jsonl", &crafted_journal());
    set_mode(&elsewhere, 0o600);
    std::os::unix::fs::symlink(&elsewhere, env.path("r.journal")).unwrap();
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert!(!read(&env.path("r.json")).contains("999"));
    assert_eq!(server.creates(), 0);

    // A journal of another user (0600, so only they could have written it).
    let env = Env::new();
    let j = env.write("r.journal", &crafted_journal());
    set_mode(&j, 0o600);
    if give_away(&j) {
        let run = apply(&env, &server.url, &["ci"], &[]);
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
        assert!(!read(&env.path("r.json")).contains("999"));
    }
    // Ours but 0644: this tool never made it so.
    let env = Env::new();
    let j = env.write("r.journal", &crafted_journal());
    set_mode(&j, 0o644);
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(!read(&env.path("r.json")).contains("999"));
}

#[test]
fn a_state_directory_others_can_write_is_refused_unless_sticky_and_ours() {
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(7002, "dir-secret-b4"))
            .flatten()
    });
    let env = Env::new();
    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o777);
    let run = apply_in(&env, &server.url, &shared, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("every user can write"),
        "{}",
        run.stderr
    );
    assert_eq!(server.creates(), 0);
    assert!(!shared.join("s.json").exists());

    // Sticky, like /tmp: others cannot remove or rename our files there.
    set_mode(&shared, 0o1777);
    let run = apply_in(&env, &server.url, &shared, &["ci"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(read(&shared.join("s.json")).contains("dir-secret-b4"));

    // ... unless a state file there is another user's.
    let sticky = env.path("sticky");
    std::fs::create_dir(&sticky).unwrap();
    set_mode(&sticky, 0o1777);
    let planted = sticky.join("r.json");
    std::fs::write(&planted, br#"{"version":1,"updated_at":"x","accounts":{}}"#).unwrap();
    if give_away(&planted) {
        let run = apply_in(&env, &server.url, &sticky, &["ci"], &[]);
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
    }
}

// --- 2. proxies --------------------------------------------------------------------------------

fn proxy_env(c: &mut Command, proxy: &str) {
    for k in ["NO_PROXY", "no_proxy"] {
        c.env_remove(k);
    }
    for k in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env(k, proxy);
    }
}

#[test]
fn a_proxy_never_sees_a_request_to_a_loopback_api() {
    let proxy = hostile(|_| Some(http("502 Bad Gateway", "", b"proxy")));
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let mut c = env.cmd();
    proxy_env(&mut c, &proxy.url);
    // Env::cmd points at the simulator (loopback http) with its owner token.
    c.arg("apply").arg(&manifest);
    c.args(["--yes", "--results", "r.json", "--secrets", "s.json"]);
    let run = env.run_cmd(&mut c, Duration::from_secs(60));
    let seen = proxy.requests();
    assert!(
        seen.is_empty(),
        "the proxy received {:?}",
        seen.iter().map(|r| &r.line).collect::<Vec<_>>()
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn https_goes_through_a_proxy_only_as_a_connect_tunnel() {
    let proxy = hostile(|_| Some(http("403 Forbidden", "", b"no")));
    let env = Env::new();
    let manifest = env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let mut c = env.cmd();
    proxy_env(&mut c, &proxy.url);
    c.env("LOGZIO_API_TOKEN", OWNER)
        .env("LOGZIO_API_URL", "https://api.adversarial.invalid")
        .arg("plan")
        .arg(&manifest)
        .args(["--results", "r.json", "--secrets", "s.json"]);
    let run = env.run_cmd(&mut c, Duration::from_secs(90));
    let seen = proxy.requests();
    assert!(!seen.is_empty(), "the proxy was not used: {}", run.stderr);
    for r in &seen {
        assert!(
            r.line.starts_with("CONNECT api.adversarial.invalid:443 "),
            "{}",
            r.line
        );
        assert!(
            !r.head.contains(OWNER),
            "the proxy saw the token: {}",
            r.head
        );
    }
    assert!(!run.stderr.contains(OWNER));

    // NO_PROXY is honoured.
    let before = proxy.requests().len();
    let mut c = env.cmd();
    proxy_env(&mut c, &proxy.url);
    c.env("NO_PROXY", "api.adversarial.invalid")
        .env("LOGZIO_API_TOKEN", OWNER)
        .env("LOGZIO_API_URL", "https://api.adversarial.invalid")
        .arg("plan")
        .arg(&manifest)
        .args(["--results", "r.json", "--secrets", "s.json"]);
    let run = env.run_cmd(&mut c, Duration::from_secs(90));
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(proxy.requests().len(), before, "NO_PROXY was ignored");
}

// --- 3. server text: echoed secrets, terminal control sequences --------------------------------

const OSC_CLIPBOARD: &str = "\u{1b}]52;c;ZWNobyBvd25lZA==\u{7}";
const OSC_TITLE: &str = "\u{1b}]0;pwned\u{1b}\\";

#[test]
fn secrets_echoed_by_the_server_are_scrubbed_and_its_control_sequences_stripped() {
    let env = Env::new();
    let server = hostile(|req| {
        match req.name.as_str() {
        "first" => created(7100, "first-secret-9a8b7c"),
        "second" => Some(http(
            "400 Bad Request",
            "",
            serde_json::json!({
                "message": format!(
                    "token {OWNER} may not create; first-secret-9a8b7c exists {OSC_CLIPBOARD}{OSC_TITLE}\u{1b}[2J"
                )
            })
            .to_string()
            .as_bytes(),
        )),
        _ => None,
    }
    });
    let run = apply(
        &env,
        &server.url,
        &["first", "second"],
        &["--output", "json", "-vv"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let results = read(&env.path("r.json"));
    assert!(results.contains("may not create"), "{results}");
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("results", &results),
    ] {
        assert!(
            !text.contains(OWNER),
            "{what} shows the owner token\n{text}"
        );
        assert!(
            !text.contains("first-secret-9a8b7c"),
            "{what} shows a secret\n{text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains("\\u001b") && !text.contains("]52;"),
            "{what} holds a control sequence\n{text:?}"
        );
    }
    assert!(read(&env.path("s.json")).contains("first-secret-9a8b7c"));
}

#[test]
fn control_sequences_in_a_state_file_are_not_printed() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let detail = format!("timeout {OSC_CLIPBOARD}{OSC_TITLE}");
    let results = serde_json::json!({
        "version": 1,
        "updated_at": "2026-01-01T00:00:00Z",
        "accounts": {},
        "possible_orphans": [{
            "account_id": SUB, "token_name": "ci", "ambiguous_attempts": 1,
            "detail": detail, "at": "2026-01-01T00:00:00Z"
        }]
    });
    env.write("r.json", &results.to_string());
    let run = env.run(&["orphans", "list", "m.yaml", "--results", "r.json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("160343/ci"), "{}", run.stdout);
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }
}

// --- 4. the lock file --------------------------------------------------------------------------

#[test]
fn a_symlinked_lock_file_never_truncates_its_target() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let precious = env.write("precious.txt", "a file of the victim\n");
    std::os::unix::fs::symlink(&precious, env.path("r.lock")).unwrap();
    let run = env.run(&["orphans", "list", "m.yaml", "--results", "r.json"]);
    assert_eq!(read(&precious), "a file of the victim\n");
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
}

// --- 5. schema drift and redirects ---------------------------------------------------------------

#[test]
fn a_secret_in_a_drifted_answer_is_kept_aside_and_not_sent_again() {
    for (label, body) in [
        (
            "id as a word",
            r#"{"id": "seven", "name": 5, "token": "drift-secret-1a", "createdAt": true}"#,
        ),
        (
            "negative id",
            r#"{"id": -7386, "token": "drift-secret-1a"}"#,
        ),
        ("no id", r#"{"token": "drift-secret-1a", "name": null}"#),
        ("id zero", r#"{"id": 0, "token": "drift-secret-1a"}"#),
    ] {
        let env = Env::new();
        let server = hostile(move |req| (req.create > 0).then(|| ok(body)).flatten());
        let run = apply(&env, &server.url, &["ci"], &[]);
        assert_eq!(server.creates(), 1, "{label}: the create was sent again");
        assert_eq!(run.code, Some(1), "{label}: {}", run.stderr);
        let secrets = read(&env.path("s.json"));
        assert!(
            secrets.contains("drift-secret-1a"),
            "{label}: secret dropped"
        );
        let results: Value = serde_json::from_str(&read(&env.path("r.json"))).unwrap();
        assert!(results["accounts"].get("160343").is_none(), "{label}");
        assert_eq!(
            results["possible_orphans"][0]["token_name"], "ci",
            "{label}"
        );
        assert_eq!(results["failures"][0]["token_name"], "ci", "{label}");
        for text in [&run.stdout, &run.stderr, &read(&env.path("r.json"))] {
            assert!(!text.contains("drift-secret"), "{label}: {text}");
        }
    }
    // An id as a string of digits, a name as a number, createdAt as a bool: recorded.
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| {
                ok(r#"{"id": "7386", "name": 12, "token": "drift-ok-2b", "createdAt": false}"#)
            })
            .flatten()
    });
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let results: Value = serde_json::from_str(&read(&env.path("r.json"))).unwrap();
    assert_eq!(results["accounts"]["160343"]["ci"]["token_id"], 7386);
    assert_eq!(server.creates(), 1);
}

#[test]
fn a_redirect_is_reported_with_its_host_and_never_followed() {
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0).then(|| {
            http(
                "307 Temporary Redirect",
                "Location: https://collector.evil.example/steal?x=1\r\n",
                b"",
            )
        })
    });
    let run = apply(&env, &server.url, &["ci", "grafana"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("collector.evil.example"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("steal"), "{}", run.stderr);
    assert_eq!(server.creates(), 1, "the run went on after a redirect");
}

// --- 6. the manifest reading the owner token -------------------------------------------------------

#[test]
fn a_manifest_cannot_read_the_owner_token() {
    let env = Env::new();
    env.write(
        "m.yaml",
        "version: 1\naccounts:\n  - id: 160343\n    tokens: [\"leak-${LOGZIO_API_TOKEN}\"]\n",
    );
    let mut c = env.cmd();
    c.env("LOGZIO_API_TOKEN", OWNER).args([
        "plan",
        "m.yaml",
        "--results",
        "r.json",
        "--output",
        "json",
    ]);
    let run = env.run_cmd(&mut c, Duration::from_secs(30));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("LOGZIO_API_TOKEN"), "{}", run.stderr);
    assert!(!run.stderr.contains(OWNER) && !run.stdout.contains(OWNER));
}

// --- 7. export ----------------------------------------------------------------------------------

/// State files recording `ci` and `evil` with the given secrets.
fn recorded(env: &Env, ci: &str, evil: &str) {
    let results = serde_json::json!({
        "version": 1, "updated_at": "2026-01-01T00:00:00Z",
        "accounts": {"160343": {
            "ci": {"token_id": 1, "created_at": "2026-01-01T00:00:00Z"},
            "evil": {"token_id": 2, "created_at": "2026-01-01T00:00:00Z"}
        }}
    });
    env.write("r.json", &results.to_string());
    let secrets = serde_json::json!({
        "version": 1,
        "accounts": {"160343": {
            "ci": {"token_id": 1, "token": ci},
            "evil": {"token_id": 2, "token": evil}
        }}
    });
    set_mode(&env.write("s.json", &secrets.to_string()), 0o600);
}

fn export_cmd(env: &Env, manifest: &str, extra: &[&str]) -> Command {
    let mut c = env.cmd();
    c.args([
        "export",
        manifest,
        "--results",
        "r.json",
        "--secrets",
        "s.json",
    ])
    .args(extra);
    c
}

#[test]
fn a_dotenv_export_cannot_run_commands_in_the_shell_that_reads_it() {
    let env = Env::new();
    let ci = "ab$(touch pwned)`touch pwned2`$HOME";
    recorded(&env, ci, "x\nLOGZIO_API_URL=http://evil.example");
    env.write("ci.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    env.write(
        "all.yaml",
        &manifest_yaml(&[i64::from(SUB)], &["ci", "evil"]),
    );

    let run = env.run_cmd(
        &mut export_cmd(&env, "ci.yaml", &["--format", "dotenv", "--out", "t.env"]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let sourced = Command::new("sh")
        .current_dir(env.dir.path())
        .args(["-c", r#". ./t.env && printf %s "$LOGZIO_TOKEN_160343_CI""#])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), ci);
    assert!(!env.path("pwned").exists() && !env.path("pwned2").exists());

    // A secret with a line break would add a variable of the server's choosing: refused.
    let run = env.run_cmd(
        &mut export_cmd(
            &env,
            "all.yaml",
            &["--format", "dotenv", "--out", "all.env"],
        ),
        Duration::from_secs(30),
    );
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("line break"), "{}", run.stderr);
    assert!(!run.stderr.contains("evil.example"), "{}", run.stderr);
    assert!(!env.path("all.env").exists());
}

#[test]
fn an_export_that_cannot_be_written_fails_and_an_existing_file_is_kept() {
    let env = Env::new();
    recorded(&env, "secret-ci-1", "secret-evil-2");
    env.write("ci.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    // stdout on a full device.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut c = export_cmd(&env, "ci.yaml", &["--format", "json", "--stdout"]);
    c.stdout(Stdio::from(full)).stderr(Stdio::piped());
    let out = crate::util::wait_with_timeout(c.spawn().unwrap(), Duration::from_secs(30));
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --out onto an existing file: refused, unless --force.
    let existing = env.write("keep.json", "precious\n");
    set_mode(&existing, 0o600);
    let run = env.run_cmd(
        &mut export_cmd(&env, "ci.yaml", &["--out", "keep.json"]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(2), "a usage error: {}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(read(&existing), "precious\n");
    let run = env.run_cmd(
        &mut export_cmd(&env, "ci.yaml", &["--out", "keep.json", "--force"]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(read(&existing).contains("secret-ci-1"));
}

#[test]
fn export_never_hands_out_secrets_from_a_file_another_user_planted() {
    // A symlink to a secrets file of the attacker's choosing.
    let env = Env::new();
    recorded(&env, "planted-ci-1", "planted-evil-2");
    std::fs::rename(env.path("s.json"), env.path("theirs.json")).unwrap();
    std::os::unix::fs::symlink(env.path("theirs.json"), env.path("s.json")).unwrap();
    env.write("ci.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let run = env.run_cmd(
        &mut export_cmd(&env, "ci.yaml", &["--stdout"]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(!run.stdout.contains("planted-ci-1"), "{}", run.stdout);
    // A secrets file of another user, 0600.
    let env = Env::new();
    recorded(&env, "planted-ci-1", "planted-evil-2");
    env.write("ci.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    if give_away(&env.path("s.json")) {
        let run = env.run_cmd(
            &mut export_cmd(&env, "ci.yaml", &["--stdout"]),
            Duration::from_secs(30),
        );
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
        assert!(!run.stdout.contains("planted-ci-1"), "{}", run.stdout);
    }
}

// --- 8. duplicate keys in state files --------------------------------------------------------------

#[test]
fn a_results_file_with_a_key_twice_is_refused_not_half_read() {
    let env = Env::new();
    // serde keeps the last "160343": ci would look unrecorded and be created again.
    env.write(
        "r.json",
        r#"{"version": 1, "updated_at": "2026-01-01T00:00:00Z", "accounts": {
  "160343": {"ci": {"token_id": 1, "created_at": "2026-01-01T00:00:00Z"}},
  "160343": {"grafana": {"token_id": 2, "created_at": "2026-01-01T00:00:00Z"}}}}"#,
    );
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(9000, "dup-key-secret"))
            .flatten()
    });
    let run = apply(&env, &server.url, &["ci", "grafana"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("line 3") && run.stderr.contains("twice"),
        "{}",
        run.stderr
    );
    assert_eq!(server.creates(), 0);
}

#[test]
fn a_journal_record_with_a_key_twice_is_refused() {
    let env = Env::new();
    // Which `token` would win depends on the parser; neither is accepted.
    let j = env.write(
        "r.journal",
        &format!(
            "{}\n",
            r#"{"kind":"outcome","seq":1,"account_id":160343,"token_name":"ci","result":"created","token_id":5,"token":"first-77","token":"second-88","created_at":"2021-05-24T12:11:51Z","at":"2026-01-01T00:00:01.000Z"}"#
        ),
    );
    set_mode(&j, 0o600);
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(9001, "x-secret"))
            .flatten()
    });
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("twice"), "{}", run.stderr);
    assert_eq!(server.creates(), 0);
}

// --- 9. unbounded or blocking input -------------------------------------------------------------

#[test]
fn fifos_devices_and_endless_input_are_refused_without_hanging() {
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(9100, "fifo-secret"))
            .flatten()
    });
    // A FIFO as the results file: nobody writes to it, so a read would block for ever.
    let env = Env::new();
    let made = Command::new("mkfifo")
        .arg(env.path("r.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);

    // A journal linked to /dev/zero.
    let env = Env::new();
    std::os::unix::fs::symlink("/dev/zero", env.path("r.journal")).unwrap();
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);

    // /dev/zero as the token file.
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", &server.url)
        .args(["plan", "m.yaml", "--api-token-file", "/dev/zero"]);
    let run = env.run_cmd(&mut c, Duration::from_secs(30));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);

    // A secret of 4 MiB on stdin.
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[i64::from(SUB)], &["ci"]));
    let mut c = env.cmd();
    c.args([
        "import",
        "m.yaml",
        "--account-id",
        "160343",
        "--token-name",
        "ci",
        "--token-id",
        "5",
        "--secret-stdin",
        "--results",
        "r.json",
        "--secrets",
        "s.json",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&vec![b'x'; 4 << 20]);
    });
    let out = crate::util::wait_with_timeout(child, Duration::from_secs(30));
    feeder.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.path("s.json").exists());
}

// --- 10. core dumps ----------------------------------------------------------------------------

#[test]
fn no_core_file_can_be_written_by_a_running_command() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first line (the URL) means it is up and past the start of cli::run.
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let limits = limits.unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

// --- 11. createdAt out of range ----------------------------------------------------------------

#[test]
fn a_created_at_out_of_range_is_unknown_not_1969() {
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| ok(r#"{"id": 7400, "token": "time-secret-3c", "createdAt": 1e308}"#))
            .flatten()
    });
    let run = apply(&env, &server.url, &["ci"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let results: Value = serde_json::from_str(&read(&env.path("r.json"))).unwrap();
    let at = results["accounts"]["160343"]["ci"]["created_at"]
        .as_str()
        .unwrap()
        .to_owned();
    // Unknown: the time the tool recorded it, this century.
    assert!(at.starts_with("20"), "{at}");
}

/// Item 6: an `api_url` whose host is not a Logz.io API host (a typo, or a look-alike) gets a
/// warning naming the host before the owner token is sent anywhere; Logz.io hosts and loopback
/// get none.
#[test]
fn an_api_url_that_is_not_a_logzio_host_is_named_in_a_warning() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    let run = env.run_cmd(
        env.cmd()
            .args(["plan", "m.yaml"])
            .env("LOGZIO_API_URL", "https://api.logz.io.attacker.invalid")
            .env("LOGZIO_API_TOKEN", "owner-token-for-the-warning-test"),
        Duration::from_secs(60),
    );
    assert!(
        run.stderr.contains(
            "warning: the API URL's host api.logz.io.attacker.invalid is not a Logz.io API host"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("owner-token-for-the-warning-test"));
    // (Logz.io's own hosts are checked by the endpoint module's unit test: a test never
    // calls the real service.)
    for url in ["http://127.0.0.1:9", "http://localhost:9"] {
        let run = env.run_cmd(
            env.cmd()
                .args(["plan", "m.yaml"])
                .env("LOGZIO_API_URL", url)
                .env("LOGZIO_API_TOKEN", "x"),
            Duration::from_secs(60),
        );
        assert!(
            !run.stderr.contains("is not a Logz.io API host"),
            "{url}: {}",
            run.stderr
        );
    }
}
