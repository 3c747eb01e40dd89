//! Seams (issue 25): the defects found where two features meet — verify × an echoing server,
//! verify × a foreign host, a recipients file × any readable file, export × a spreadsheet or a
//! shell, a signal × a run in progress, an identity file × its mode — each reproduced against
//! the real binary and pinned to what the tool does now. Every test here failed on the code
//! before the fixes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use crate::adversarial::{SUB, apply, created, hostile, ok};
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
