//! Paths of the contract that other suites do not reach through the binary: `plan
//! --detailed-exitcode` (0, 2 and 1), a results file made against another endpoint (2), an
//! owner token the service refuses (3), a tampered saved plan (2), export then import into fresh state (the
//! same secrets back), and the state lock held by a running apply (import and orphans clear
//! refused with exit 3, nothing changed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use logzio_tokens::simulator::SimConfig;
use serde_json::Value;

use crate::util::{Env, manifest_yaml, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn plan_detailed_exitcode_is_2_with_changes_0_without_and_1_on_error() {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    let run = env.run(&["plan", "m.yaml", "--detailed-exitcode"]);
    run.expect_code(2);
    assert!(
        run.stdout.contains("2 to create, 0 to replace, 0 recorded"),
        "{}",
        run.stdout
    );
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    env.run(&["plan", "m.yaml", "--detailed-exitcode"])
        .expect_code(0);
    // An error is 1 (never 2, which would read as "changes").
    env.write("bad.yaml", "version: 1\naccounts:\n  - id: x\n");
    env.run(&["plan", "bad.yaml", "--detailed-exitcode"])
        .expect_code(1);
    // Without the flag, the same invalid manifest is the usual 2.
    env.run(&["plan", "bad.yaml"]).expect_code(2);
}

#[test]
fn a_results_file_of_another_endpoint_is_refused_before_anything_is_sent() {
    let first = Env::with_sim(SimConfig::default());
    first.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    first.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    let before = std::fs::read(first.path("m.results.json")).unwrap();
    // Another simulator is another endpoint.
    let other = Env::with_sim(SimConfig::default());
    let run = first.run_cmd(
        first
            .cmd()
            .args(["apply", "m.yaml", "--yes"])
            .env("LOGZIO_API_URL", other.sim().url()),
        LIMIT,
    );
    run.expect_code(2);
    assert!(run.stderr.contains("was made against"), "{}", run.stderr);
    assert_eq!(other.sim().counters().created, 0);
    assert_eq!(std::fs::read(first.path("m.results.json")).unwrap(), before);
}

#[test]
fn a_refused_owner_token_stops_with_exit_3_and_creates_nothing() {
    // The service answers 403 to a token it does not know (401 only to a request without
    // one, which the tool never sends; its classification is tested in `client`).
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    let run = env.run_cmd(
        env.cmd()
            .args(["apply", "m.yaml", "--yes"])
            .env("LOGZIO_API_TOKEN", "not-the-owner-token"),
        LIMIT,
    );
    run.expect_code(3);
    assert!(run.stderr.contains("HTTP 403"), "{}", run.stderr);
    assert!(!run.stderr.contains("not-the-owner-token"));
    assert_eq!(env.sim().counters().created, 0);
}

#[test]
fn a_saved_plan_edited_after_it_was_written_is_refused() {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    env.run(&["plan", "m.yaml", "--out", "plan.json"])
        .expect_code(0);
    let mut plan: Value = env.json("plan.json");
    // Drop one token from the plan, as an attacker or a careless edit would.
    plan["changes"].as_array_mut().unwrap().pop();
    env.write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
    let run = env.run(&["apply", "plan.json", "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("modified"), "{}", run.stderr);
    assert_eq!(env.sim().counters().created, 0);
}

#[test]
fn export_then_import_into_fresh_state_gives_the_same_secrets_back() {
    let env = Env::with_sim(SimConfig::default());
    env.write(
        "m.yaml",
        &manifest_yaml(&[160_343, 160_344], &["ci", "grafana"]),
    );
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    let run = env.run(&["export", "m.yaml", "--stdout"]);
    run.expect_code(0);
    let exported: Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = exported.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // Import every token into a second state (another results/secrets pair).
    for r in rows {
        let secret_file = env.write("one-secret.txt", r["token"].as_str().unwrap());
        env.run(&[
            "import",
            "m.yaml",
            "--results",
            "copy.results.json",
            "--secrets",
            "copy.secrets.json",
            "--account-id",
            &r["account_id"].to_string(),
            "--token-name",
            r["token_name"].as_str().unwrap(),
            "--token-id",
            &r["token_id"].to_string(),
            "--secret-file",
            secret_file.to_str().unwrap(),
        ])
        .expect_code(0);
    }
    let run = env.run(&[
        "export",
        "m.yaml",
        "--results",
        "copy.results.json",
        "--secrets",
        "copy.secrets.json",
        "--stdout",
    ]);
    run.expect_code(0);
    let again: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(again, exported);
    // And apply against the copy creates nothing: every token is recorded there.
    let run = env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--results",
        "copy.results.json",
        "--secrets",
        "copy.secrets.json",
    ]);
    run.expect_code(0);
    assert_eq!(env.sim().ground_truth().len(), 4);
}

#[test]
fn state_commands_are_refused_while_an_apply_holds_the_lock() {
    // A slow server keeps the apply running while the other commands try the same files.
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    });
    let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    env.write("m.yaml", &manifest_yaml(&[160_343], &refs));
    let mut child = env
        .cmd()
        .args(["apply", "m.yaml", "--yes", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(LIMIT, || env.sim().counters().created >= 1));
    let orphans = env.run(&["orphans", "clear", "m.yaml"]);
    let import = env.run(&[
        "import",
        "m.yaml",
        "--account-id",
        "160343",
        "--token-name",
        "t39",
        "--token-id",
        "987654",
    ]);
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        still_running,
        "the apply ended before the test could contend for its lock"
    );
    for run in [&orphans, &import] {
        run.expect_code(3);
        assert!(
            run.stderr.contains("another logzio-tokens run"),
            "{}",
            run.stderr
        );
    }
    // The import changed nothing: the next run records t39 as created, not as 987654.
    let run = env.run(&["apply", "m.yaml", "--yes"]);
    run.expect_code(0);
    let results = env.json("m.results.json");
    assert_ne!(results["accounts"]["160343"]["t39"]["token_id"], 987_654);
}
