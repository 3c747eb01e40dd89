//! Drift against the live service, through the real binary and the simulator: `verify` probes
//! each recorded secret with `GET /v2/whoami` and reports exactly the tokens an admin deleted;
//! apply never recreates them unasked. No secret appears in any output at any verbosity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use logzio_tokens::simulator::{FaultRates, SimConfig};
use serde_json::Value;

use crate::util::{Env, Run, manifest_yaml, wait_with_timeout};

const ACCOUNTS: [i64; 4] = [160_343, 160_344, 160_345, 160_346];
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Fast: no latency in the simulator, high concurrency and rate in the tool.
const FAST: [&str; 4] = ["--concurrency", "64", "--rate", "1000"];

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:03}")).collect()
}

/// A workspace with a simulator and a manifest `m.yaml` of `per_account` tokens per account.
fn setup(config: SimConfig, per_account: usize) -> (Env, PathBuf) {
    let env = Env::with_sim(config);
    let names = names(per_account);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let manifest = env.write("m.yaml", &manifest_yaml(&ACCOUNTS, &names));
    (env, manifest)
}

fn run(env: &Env, command: &str, extra: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.arg(command).arg("m.yaml").args(FAST).args(extra);
    if command == "apply" {
        cmd.arg("--yes");
    }
    run_to_files(env, &mut cmd)
}

/// Runs to completion with stdout and stderr in files: 2,000 JSON lines would fill a pipe
/// that nobody reads until the end.
fn run_to_files(env: &Env, cmd: &mut Command) -> Run {
    let (out, err) = (env.path("run.stdout"), env.path("run.stderr"));
    let child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(child, RUN_LIMIT).status;
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// The JSON lines of stdout.
fn lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Token ids of the current records whose `status` is `status`.
fn recorded_with_status(env: &Env, status: &str) -> BTreeSet<i64> {
    let v = env.json("m.results.json");
    let mut out = BTreeSet::new();
    for tokens in v["accounts"].as_object().unwrap().values() {
        for rec in tokens.as_object().unwrap().values() {
            if rec["status"] == status {
                out.insert(rec["token_id"].as_i64().unwrap());
            }
        }
    }
    out
}

fn ids(values: impl IntoIterator<Item = i64>) -> BTreeSet<i64> {
    values.into_iter().collect()
}

/// Every secret the simulator created, checked against both streams.
fn assert_no_secret_in(env: &Env, run: &Run, label: &str) {
    for t in env.sim().ground_truth() {
        assert!(
            !run.stdout.contains(&t.token) && !run.stderr.contains(&t.token),
            "{label}: the secret of token {} appears in the output",
            t.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_whoami_for_its_sub_tokens_and_403_once_deleted() {
    let (env, _) = tokio::task::spawn_blocking(|| {
        let (env, m) = setup(SimConfig::default(), 2);
        run(&env, "apply", &[]).expect_code(0);
        (env, m)
    })
    .await
    .unwrap();
    let truth = env.sim().ground_truth();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = env.sim().url();
    let whoami = async |token: &str| {
        let r = client
            .get(format!("{url}/v2/whoami"))
            .header("X-API-TOKEN", token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let delete = async |id: i64| {
        client
            .delete(format!("{url}/__sim/tokens/{id}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Creates run concurrently: find a token of the first account rather than the first created.
    let (prod, other) = match truth.iter().position(|t| t.account_id == ACCOUNTS[0]) {
        Some(i) => (&truth[i], &truth[if i == 0 { 1 } else { 0 }]),
        None => panic!("no token created for account {}", ACCOUNTS[0]),
    };
    let (status, body) = whoami(&prod.token).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accountId"], ACCOUNTS[0]);
    assert_eq!(v["accountName"], "payments-prod");
    assert_eq!(delete(prod.id).await, 204);
    assert_eq!(env.sim().deleted_tokens(), [prod.id]);
    for token in [prod.token.as_str(), "never-issued"] {
        let (status, body) = whoami(token).await;
        assert_eq!(status, 403);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 403, "message": "Insufficient privileges"})
        );
    }
    // Deleting twice, or an unknown id, is a 404; the other tokens still answer.
    assert_eq!(delete(prod.id).await, 404);
    assert_eq!(delete(1).await, 404);
    assert_eq!(whoami(&other.token).await.0, 200);
}

#[test]
fn verify_reports_and_marks_exactly_the_deleted_tokens_among_2000() {
    let (env, _) = setup(SimConfig::default(), 500);
    run(&env, "apply", &[]).expect_code(0);
    let truth = env.sim().ground_truth();
    assert_eq!(truth.len(), 2000);
    // Every 97th token deleted as an admin would in the UI.
    let deleted: BTreeSet<i64> = truth.iter().step_by(97).map(|t| t.id).collect();
    for id in &deleted {
        assert!(env.sim().delete_token(*id));
    }

    let verify = run(&env, "verify", &["--output", "json"]);
    verify.expect_code(1);
    let out = lines(&verify);
    let verified: Vec<&Value> = out.iter().filter(|l| l["type"] == "verified").collect();
    assert_eq!(verified.len(), 2000);
    let revoked = ids(verified
        .iter()
        .filter(|l| l["status"] == "revoked")
        .map(|l| l["token_id"].as_i64().unwrap()));
    assert_eq!(revoked, deleted, "exactly the deleted tokens are reported");
    assert!(
        verified
            .iter()
            .all(|l| l["status"] == "revoked" || l["status"] == "valid")
    );
    let summary = out.last().unwrap();
    assert_eq!(summary["type"], "verify_summary");
    assert_eq!(summary["revoked"], deleted.len());
    assert_eq!(summary["valid"], 2000 - deleted.len());
    assert_eq!(summary["exit_code"], 1);
    // Recorded: exactly those revoked, every other one valid, each with its check time.
    assert_eq!(recorded_with_status(&env, "revoked"), deleted);
    assert_eq!(
        recorded_with_status(&env, "valid").len(),
        2000 - deleted.len()
    );
    let results = std::fs::read_to_string(env.path("m.results.json")).unwrap();
    assert_eq!(results.matches("\"checked_at\"").count(), 2000);
    assert_no_secret_in(&env, &verify, "verify --output json");

    // The text summary names each by account and name.
    let text = run(&env, "verify", &[]);
    text.expect_code(1);
    for t in truth.iter().filter(|t| deleted.contains(&t.id)) {
        assert!(
            text.stderr
                .contains(&format!("{} (id {}, revoked)", t.name, t.id)),
            "{}",
            text.stderr
        );
    }
    assert!(text.stderr.contains("account 160343:"), "{}", text.stderr);

    // Plain apply creates nothing: an admin may have deleted them on purpose.
    let before = env.sim().counters().created;
    run(&env, "apply", &[]).expect_code(0);
    assert_eq!(env.sim().counters().created, before);
    // plan shows them as their own group.
    let plan = run(&env, "plan", &["--json"]);
    plan.expect_code(0);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["summary"]["revoked"], deleted.len());
    assert_eq!(doc["summary"]["create"], 0);
    assert!(
        run(&env, "plan", &[])
            .stdout
            .contains(&format!("{} tokens revoked", deleted.len()))
    );

    // --recreate-revoked creates exactly those, under the same names.
    run(&env, "apply", &["--recreate-revoked"]).expect_code(0);
    let after = env.sim().ground_truth();
    assert_eq!(after.len(), 2000 + deleted.len());
    let wanted: BTreeSet<(i64, String)> = truth
        .iter()
        .filter(|t| deleted.contains(&t.id))
        .map(|t| (t.account_id, t.name.clone()))
        .collect();
    let made: BTreeSet<(i64, String)> = after[2000..]
        .iter()
        .map(|t| (t.account_id, t.name.clone()))
        .collect();
    assert_eq!(made, wanted);
    // The results point at the new ids; the old ones are kept without the `revoked` a 403
    // alone gave them (a misrouted endpoint answers 403 to every token), so they stay on the
    // remove-by-hand list until a verify confirms them gone; the old secrets are kept under
    // the secrets file's `superseded`.
    let results = env.json("m.results.json");
    let superseded = ids(results["superseded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["token_id"].as_i64().unwrap()));
    assert_eq!(superseded, deleted);
    assert!(
        results["superseded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("status").is_none())
    );
    let plan = run(&env, "plan", &["--json"]);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["summary"]["replaced_to_remove"], deleted.len());
    for t in &after[2000..] {
        let rec = &results["accounts"][t.account_id.to_string()][&t.name];
        assert_eq!(rec["token_id"], t.id);
    }
    let secrets = env.json("m.secrets.json");
    let old_secrets = ids(secrets["superseded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["token_id"].as_i64().unwrap()));
    assert_eq!(old_secrets, deleted);
    // All valid again, and the replaced ones confirmed deleted (a 403 beside the account's
    // new token's 200): off the list. A second run creates nothing more.
    run(&env, "verify", &[]).expect_code(0);
    let plan = run(&env, "plan", &["--json"]);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["summary"]["replaced_to_remove"], 0);
    run(&env, "apply", &["--recreate-revoked"]).expect_code(0);
    assert_eq!(env.sim().ground_truth().len(), 2000 + deleted.len());
}

#[test]
fn verify_retries_faults_and_needs_no_owner_token() {
    let (env, _) = setup(
        SimConfig {
            faults: FaultRates {
                rate_limited: 0.2,
                unavailable: 0.2,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        },
        5,
    );
    run(&env, "apply", &["--max-attempts", "20"]).expect_code(0);
    let mut cmd = env.cmd();
    cmd.env_remove("LOGZIO_API_TOKEN")
        .args([
            "verify",
            "m.yaml",
            "--output",
            "json",
            "--max-attempts",
            "20",
        ])
        .args(FAST);
    let verify = run_to_files(&env, &mut cmd);
    verify.expect_code(0);
    let out = lines(&verify);
    assert_eq!(out.last().unwrap()["valid"], 20);
    assert!(out.last().unwrap()["rate_limited"].as_u64().unwrap() > 0);
    assert_eq!(recorded_with_status(&env, "valid").len(), 20);
}

#[test]
fn tokens_without_a_secret_are_listed_as_unverifiable() {
    let (env, _) = setup(SimConfig::default(), 2);
    run(&env, "apply", &[]).expect_code(0);
    // Lose the secrets file: the records stay, nothing can be probed.
    std::fs::remove_file(env.path("m.secrets.json")).unwrap();
    let verify = run(&env, "verify", &["--output", "json"]);
    verify.expect_code(0);
    let out = lines(&verify);
    assert_eq!(
        out.iter().filter(|l| l["type"] == "unverifiable").count(),
        8
    );
    assert_eq!(out.last().unwrap()["unverifiable"], 8);
    let text = run(&env, "verify", &[]);
    assert!(
        text.stderr.contains("8 tokens without a known secret"),
        "{}",
        text.stderr
    );
}

#[test]
fn long_lists_of_unverifiable_and_replaced_tokens_are_summarised() {
    // 32 tokens, all rotated (32 replaced, still working), then the secrets file lost: 64
    // tokens without a known secret, 32 to remove by hand.
    let (env, _) = setup(SimConfig::default(), 8);
    run(&env, "apply", &[]).expect_code(0);
    let all: Vec<(i64, String)> = ACCOUNTS
        .iter()
        .flat_map(|a| names(8).into_iter().map(move |n| (*a, n)))
        .collect();
    let which: Vec<(i64, &str)> = all.iter().map(|(a, n)| (*a, n.as_str())).collect();
    backdate(&env, &which);
    run(&env, "apply", &["--rotate-older-than", "90d"]).expect_code(0);
    assert_eq!(superseded(&env).len(), 32);
    std::fs::remove_file(env.path("m.secrets.json")).unwrap();

    let text = run(&env, "verify", &[]);
    text.expect_code(0);
    let err = &text.stderr;
    assert!(err.lines().count() <= 30, "not short:\n{err}");
    let unverifiable = err
        .find("warning: 64 tokens without a known secret, not verified:")
        .unwrap_or_else(|| panic!("no count first:\n{err}"));
    let more = err
        .find("… and 54 more (`verify --json` lists every one)")
        .unwrap_or_else(|| panic!("not summarised:\n{err}"));
    assert!(unverifiable < more, "{err}");
    let replaced = err
        .find("32 tokens replaced but still working: remove by hand")
        .unwrap_or_else(|| panic!("no count first:\n{err}"));
    let where_all = err
        .find("… and 22 more (every one is in the `superseded` list of ")
        .unwrap_or_else(|| panic!("not summarised:\n{err}"));
    assert!(replaced < where_all, "{err}");
    assert!(err.contains("m.results.json"), "{err}");

    // Where it says every one is, every one is.
    let json = run(&env, "verify", &["--output", "json"]);
    json.expect_code(0);
    let out = lines(&json);
    assert_eq!(
        out.iter().filter(|l| l["type"] == "unverifiable").count(),
        64
    );
}

#[test]
fn no_secret_in_any_output_at_any_verbosity() {
    let (env, _) = setup(SimConfig::default(), 3);
    for v in ["-v", "-vv", "-vvv"] {
        let apply = run(&env, "apply", &[v]);
        apply.expect_code(0);
        assert_no_secret_in(&env, &apply, &format!("apply {v}"));
    }
    let first = env.sim().ground_truth()[0].id;
    env.sim().delete_token(first);
    for v in ["-v", "-vv", "-vvv"] {
        for output in ["text", "json"] {
            let verify = run(&env, "verify", &[v, "--output", output]);
            verify.expect_code(1);
            assert_no_secret_in(&env, &verify, &format!("verify {v} --output {output}"));
        }
    }
}

/// Backdates the recorded tokens `(account, name)` to 2020, as if created long ago.
fn backdate(env: &Env, which: &[(i64, &str)]) -> BTreeSet<i64> {
    let mut v = env.json("m.results.json");
    let mut old = BTreeSet::new();
    for (account, name) in which {
        let rec = &mut v["accounts"][account.to_string()][*name];
        rec["created_at"] = Value::from("2020-01-01T00:00:00Z");
        old.insert(rec["token_id"].as_i64().unwrap());
    }
    std::fs::write(
        env.path("m.results.json"),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
    old
}

fn superseded(env: &Env) -> Vec<Value> {
    env.json("m.results.json")["superseded"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn rotation_by_age_replaces_exactly_the_old_ones_and_verify_clears_deleted_ones() {
    let (env, _) = setup(SimConfig::default(), 3);
    run(&env, "apply", &[]).expect_code(0);
    let old = backdate(
        &env,
        &[
            (160_343, "t000"),
            (160_343, "t001"),
            (160_344, "t000"),
            (160_346, "t002"),
        ],
    );
    let before = env.sim().ground_truth();

    let apply = run(&env, "apply", &["--rotate-older-than", "90d"]);
    apply.expect_code(0);
    assert!(
        apply.stderr.contains("4 tokens replaced but still working"),
        "{}",
        apply.stderr
    );
    let after = env.sim().ground_truth();
    let made: BTreeSet<(i64, String)> = after[before.len()..]
        .iter()
        .map(|t| (t.account_id, t.name.clone()))
        .collect();
    let wanted: BTreeSet<(i64, String)> = before
        .iter()
        .filter(|t| old.contains(&t.id))
        .map(|t| (t.account_id, t.name.clone()))
        .collect();
    assert_eq!(made, wanted, "successors for exactly the old ones");
    let listed = ids(superseded(&env)
        .iter()
        .map(|s| s["token_id"].as_i64().unwrap()));
    assert_eq!(listed, old, "the replaced ids are kept");

    // plan lists them for removal by hand; a second rotation creates nothing.
    let plan = run(&env, "plan", &["--json"]);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["summary"]["replaced_to_remove"], 4);
    assert_eq!(doc["summary"]["create"], 0);
    let text = run(&env, "plan", &[]);
    for id in &old {
        assert!(
            text.stdout.contains(&format!("(id {id})")),
            "{}",
            text.stdout
        );
    }
    run(&env, "apply", &["--rotate-older-than", "90d"]).expect_code(0);
    assert_eq!(env.sim().ground_truth().len(), after.len());

    // An admin deletes two of the old tokens: verify sees them 403 and takes them off.
    let gone: BTreeSet<i64> = old.iter().take(2).copied().collect();
    for id in &gone {
        assert!(env.sim().delete_token(*id));
    }
    let verify = run(&env, "verify", &["--output", "json"]);
    verify.expect_code(0);
    let summary = lines(&verify).pop().unwrap();
    assert_eq!(summary["remove_by_hand"], 2);
    assert_eq!(summary["valid"], 12);
    let still: BTreeSet<i64> = superseded(&env)
        .iter()
        .filter(|s| s["status"] != "revoked")
        .map(|s| s["token_id"].as_i64().unwrap())
        .collect();
    assert_eq!(still, old.difference(&gone).copied().collect());
    let doc: Value = serde_json::from_str(&run(&env, "plan", &["--json"]).stdout).unwrap();
    assert_eq!(doc["summary"]["replaced_to_remove"], 2);
    assert_no_secret_in(&env, &verify, "verify after rotation");
}

#[test]
fn rotate_after_days_per_account_wins_over_defaults_over_settings() {
    let env = Env::with_sim(SimConfig::default());
    env.write(
        "m.yaml",
        "version: 1\n\
         settings:\n  rotate_after_days: 10\n\
         defaults:\n  tokens: [a, b]\n  rotate_after_days: 5000\n\
         accounts:\n\
         \x20 - id: 160343\n\
         \x20 - id: 160344\n    rotate_after_days: 30\n",
    );
    run(&env, "apply", &[]).expect_code(0);
    let old = backdate(
        &env,
        &[
            (160_343, "a"),
            (160_343, "b"),
            (160_344, "a"),
            (160_344, "b"),
        ],
    );
    let before = env.sim().ground_truth().len();
    // plan shows what apply will replace by the manifest's settings.
    let doc: Value = serde_json::from_str(&run(&env, "plan", &["--json"]).stdout).unwrap();
    assert_eq!(doc["summary"]["replace"], 2);
    assert_eq!(doc["summary"]["create"], 0);
    run(&env, "apply", &[]).expect_code(0);
    let after = env.sim().ground_truth();
    let made: BTreeSet<i64> = after[before..].iter().map(|t| t.account_id).collect();
    assert_eq!(after.len(), before + 2);
    assert_eq!(made, BTreeSet::from([160_344]));
    let listed = ids(superseded(&env)
        .iter()
        .map(|s| s["token_id"].as_i64().unwrap()));
    assert_eq!(listed.len(), 2);
    assert!(listed.is_subset(&old));
}

#[test]
fn the_nightly_example_verifies_after_applying() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/deploy/github-actions-nightly.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let apply = text.find("logzio-tokens apply").unwrap();
    let verify = text.find("logzio-tokens verify").unwrap();
    assert!(verify > apply, "verify runs after apply");
    // The step's exit status is verify's: drift (exit 1) fails the job.
    let step = &text[verify..];
    assert!(step.contains("exit $code"));
    assert!(step.contains("--identity"));
}

#[test]
fn sealed_secrets_are_verified_with_the_identity_and_recreated_sealed() {
    use age::secrecy::ExposeSecret;
    let env = Env::with_sim(SimConfig::default());
    let id = age::x25519::Identity::generate();
    let key = env.write("key.txt", &format!("{}\n", id.to_string().expose_secret()));
    crate::util::private(&key);
    env.write(
        "m.yaml",
        &format!(
            "{}secrets:\n  recipients:\n    - {}\n",
            manifest_yaml(&ACCOUNTS[..2], &["a", "b"]),
            id.to_public()
        ),
    );
    run(&env, "apply", &[]).expect_code(0);
    let truth = env.sim().ground_truth();
    assert!(env.sim().delete_token(truth[1].id));

    // Without the identity the secrets cannot be read: a fatal error that says what to pass.
    let without = run(&env, "verify", &[]);
    without.expect_code(3);
    assert!(without.stderr.contains("--identity"), "{}", without.stderr);

    let key = key.to_str().unwrap();
    let verify = run(&env, "verify", &["--identity", key, "--output", "json"]);
    verify.expect_code(1);
    let summary = lines(&verify).pop().unwrap();
    assert_eq!(
        (summary["valid"].as_u64(), summary["revoked"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        recorded_with_status(&env, "revoked"),
        BTreeSet::from([truth[1].id])
    );

    // Recreated while sealing: the new secret is sealed too, and verify finds it valid.
    run(&env, "apply", &["--recreate-revoked"]).expect_code(0);
    assert_eq!(env.sim().ground_truth().len(), 5);
    run(&env, "verify", &["--identity", key]).expect_code(0);
    for t in env.sim().ground_truth() {
        for entry in std::fs::read_dir(env.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                assert!(
                    !text.contains(&t.token) || path.ends_with("key.txt"),
                    "{} holds a secret in plaintext",
                    path.display()
                );
            }
        }
    }
}
