//! The first promise ("nothing lost, nothing silent") where two features meet: sealing × the
//! mid-run checkpoint × kill -9, sealing × a planted or cut-short file, the journal × another
//! endpoint, the lock × a symlinked path, the ambiguity budget × a second run, rotation ×
//! export (issue 25). Each test drives the real binary against the simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use logzio_tokens::simulator::SimConfig;
use serde_json::Value;

use crate::chaos::{apply_cmd, invariant_one, sealed_dir, test_identity_file, test_recipient};
use crate::util::{Env, Files, Run, kill_when, manifest_yaml, spawn_quiet, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

/// A manifest asking for `n` tokens in each of the first `accounts` default sub accounts.
fn workload(accounts: usize, n: usize) -> (SimConfig, String) {
    let ids: Vec<i64> = (0..accounts as i64).map(|i| 160_343 + i).collect();
    let names = names("t", n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    (SimConfig::default(), manifest_yaml(&ids, &refs))
}

fn results_tokens(results: &Path) -> usize {
    std::fs::read(results)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map_or(0, |v| {
            v["accounts"].as_object().map_or(0, |a| {
                a.values()
                    .map(|t| t.as_object().map_or(0, |t| t.len()))
                    .sum()
            })
        })
}

fn run(env: &Env, files: &Files, extra: &[&str]) -> Run {
    env.run_cmd(&mut apply_cmd(env, files, extra), LIMIT)
}

/// Defect 1 / invariant 1: a sealed run SIGKILLed after a mid-run checkpoint wrote the results
/// file. The journal (thrown away with a CI runner) aside, every token the results file names
/// must have its secret in a sealed file the results file lists.
#[test]
fn a_sealed_run_killed_after_a_checkpoint_leaves_no_token_without_its_sealed_secret() {
    let (mut config, manifest) = workload(2, 20);
    config.latency = Duration::from_millis(20);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    let mut child = spawn_quiet(&mut apply_cmd(
        &env,
        &files,
        &[
            "--recipient",
            test_recipient(),
            "--concurrency",
            "1",
            "--rate",
            "5",
        ],
    ));
    // The first checkpoint comes after 3 s; the run takes about 8 s.
    let killed = kill_when(&mut child, LIMIT, || results_tokens(&files.results) > 0);
    assert!(killed, "the run ended before the kill");
    let named = results_tokens(&files.results);
    assert!(named > 0 && named < 40, "{named} tokens named at the kill");
    // The runner is thrown away: only the results file and the sealed directory remain.
    std::fs::remove_file(files.journal()).ok();
    let problems = invariant_one(&files, "after the kill");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `export --identity --stdout` (JSON) with the files' state paths: the run, and its rows as
/// (account, name) -> row.
fn export(env: &Env, files: &Files) -> (Run, Vec<Value>) {
    let run = env.run_cmd(
        files
            .cmd(env, "export")
            .arg("--identity")
            .arg(test_identity_file())
            .arg("--stdout"),
        LIMIT,
    );
    let rows = serde_json::from_str::<Value>(&run.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    (run, rows)
}

/// Seals a secrets document to the test recipient, as anyone can (it is a public key).
fn seal_as_anyone(doc: &Value) -> Vec<u8> {
    use std::io::Write;
    let r: age::x25519::Recipient = test_recipient().parse().unwrap();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let armor =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armor).unwrap();
    w.write_all(&serde_json::to_vec(doc).unwrap()).unwrap();
    w.finish().and_then(|a| a.finish()).unwrap();
    out
}

/// The simulator's secret of token `id`.
fn real_secret(env: &Env, id: i64) -> String {
    env.sim()
        .ground_truth()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap()
        .token
}

/// One sealed run of `n` tokens in account 160343; returns the files and the recorded ids.
fn sealed_state(n: usize) -> (Env, Files, Vec<(String, i64)>) {
    let (config, manifest) = workload(1, n);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    run(&env, &files, &["--recipient", test_recipient()]).expect_code(0);
    let ids = files.results_json()["accounts"]["160343"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.clone(), r["token_id"].as_i64().unwrap()))
        .collect();
    (env, files, ids)
}

/// Defect 10 / invariant 4: a planted `.age` file (sealed to the public recipient, sorted
/// first, holding the same token id with another secret) never overrides the real secret; it
/// is named.
#[test]
fn a_planted_sealed_file_is_named_and_never_used() {
    let (env, files, ids) = sealed_state(2);
    let (name, id) = ids[0].clone();
    let planted = sealed_dir(&files.results).join("00000000T000000Z-planted.age");
    let doc = serde_json::json!({
        "version": 1,
        "accounts": { "160343": { name.clone(): { "token_id": id, "token": "attacker-chosen" } } }
    });
    std::fs::write(&planted, seal_as_anyone(&doc)).unwrap();
    let (run, rows) = export(&env, &files);
    run.expect_code(0);
    let row = rows
        .iter()
        .find(|r| r["token_name"] == name.as_str())
        .unwrap_or_else(|| panic!("no row for {name}: {}", run.stdout.len()));
    assert_eq!(row["token"], real_secret(&env, id).as_str());
    assert!(
        run.stderr.contains("00000000T000000Z-planted.age"),
        "the planted file is not named: {}",
        run.stderr
    );
}

/// Defect 11: a listed sealed file cut short (a disk that filled, a bad copy) does not stop
/// `export`: it is skipped and named, and the other files' secrets are exported.
#[test]
fn a_cut_short_sealed_file_is_skipped_and_named_and_the_others_exported() {
    let (env, files, _) = sealed_state(1);
    let sealed_files = || -> Vec<PathBuf> {
        std::fs::read_dir(sealed_dir(&files.results))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let first = sealed_files();
    assert_eq!(first.len(), 1, "{first:?}");
    let first = first[0].clone();
    // A second run with one more token: a second sealed file.
    let (_, manifest) = workload(1, 2);
    std::fs::write(&files.manifest, manifest).unwrap();
    run(&env, &files, &["--recipient", test_recipient()]).expect_code(0);
    assert_eq!(sealed_files().len(), 2);
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(&first, &bytes[..bytes.len() / 2]).unwrap();
    let (run, rows) = export(&env, &files);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(run.stderr.contains(&name), "{}", run.stderr);
    assert!(
        rows.iter().any(|r| r["token_name"] == "t01"),
        "the second file's secret is not exported: {rows:?}"
    );
}

/// Defect 13: the results file records a token whose secret is not held (it got ahead of the
/// secrets of a rotation): `export` must not hand out the replaced token's secret as the
/// current one; that secret goes under `superseded`.
#[test]
fn export_never_hands_out_a_replaced_tokens_secret_as_current() {
    let (config, manifest) = workload(1, 1);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    run(&env, &files, &[]).expect_code(0);
    let mut v = files.results_json();
    let old = v["accounts"]["160343"]["t00"]["token_id"].as_i64().unwrap();
    v["accounts"]["160343"]["t00"]["token_id"] = Value::from(old + 1000);
    v["superseded"] = serde_json::json!([{
        "account_id": 160343, "token_name": "t00", "token_id": old,
        "created_at": "2026-01-01T00:00:00Z", "replaced_by": old + 1000
    }]);
    std::fs::write(&files.results, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let (run, rows) = export(&env, &files);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for r in &rows {
        assert_ne!(
            r["token_id"].as_i64(),
            Some(old),
            "the replaced token is exported as current: {r}"
        );
        assert_ne!(r["token"], real_secret(&env, old).as_str());
    }
}

/// Defect 2: a sealed directory others can write (0777), or a symlink, is refused before
/// anything is sent, naming it.
#[test]
fn a_sealed_directory_others_can_write_or_a_symlinked_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (env, files, _) = sealed_state(1);
    let dir = sealed_dir(&files.results);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, manifest) = workload(1, 2);
    std::fs::write(&files.manifest, manifest).unwrap();
    let before = env.sim().ground_truth().len();
    let r = run(&env, &files, &["--recipient", test_recipient()]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("sealed directory"), "{}", r.stderr);
    assert!(r.stderr.contains("0777"), "{}", r.stderr);
    assert_eq!(
        env.sim().ground_truth().len(),
        before,
        "a token was created"
    );
    // A symlink to a directory elsewhere.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = env.path("elsewhere");
    std::fs::rename(&dir, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let r = run(&env, &files, &["--recipient", test_recipient()]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(
        env.sim().ground_truth().len(),
        before,
        "a token was created"
    );
}

/// Defect 12 / invariant 2: once a state's secrets are sealed, a run without recipients
/// refuses (exit 2, naming the sealed directory) unless `--allow-plaintext`.
#[test]
fn a_sealed_state_is_not_continued_in_plaintext_without_allow_plaintext() {
    let (env, files, _) = sealed_state(1);
    let (_, manifest) = workload(1, 2);
    std::fs::write(&files.manifest, manifest).unwrap();
    let r = run(&env, &files, &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let dir = sealed_dir(&files.results);
    assert!(
        r.stderr.contains(&dir.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(
        !files.secrets.exists(),
        "a plaintext secrets file was written"
    );
    assert_eq!(env.sim().ground_truth().len(), 1, "a token was created");
    run(&env, &files, &["--allow-plaintext"]).expect_code(0);
    assert!(files.secrets.exists());
}

/// Defect 8 / invariant 3: a journal left by a run against endpoint A, killed before any
/// results file existed, is not replayed into a run against endpoint B: refused (exit 2),
/// naming both.
#[test]
fn a_journal_of_another_endpoint_is_refused_naming_both() {
    let (mut config, manifest) = workload(1, 20);
    config.latency = Duration::from_millis(50);
    let a = Env::with_sim(config.clone());
    let files = Files::new(&a, &manifest);
    let mut child = spawn_quiet(&mut apply_cmd(&a, &files, &["--concurrency", "1"]));
    kill_when(&mut child, LIMIT, || a.sim().ground_truth().len() >= 2);
    assert!(!files.results.exists(), "the results file exists already");
    assert!(files.journal().exists());
    let b = Env::with_sim(config);
    let r = b.run_cmd(
        apply_cmd(&b, &files, &[]).env("LOGZIO_API_URL", b.sim().url()),
        LIMIT,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&a.sim().url().trim_end_matches('/').to_string()),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&b.sim().url().trim_end_matches('/').to_string()),
        "{}",
        r.stderr
    );
    assert!(b.sim().ground_truth().is_empty());
}

/// Defect 5 / invariant 5: two concurrent runs on one results file, one through a symlink,
/// never both proceed.
#[test]
fn a_symlinked_results_path_takes_the_same_lock() {
    let (mut config, manifest) = workload(1, 4);
    config.latency = Duration::from_millis(300);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    let link = env.path("link.json");
    std::os::unix::fs::symlink(&files.results, &link).unwrap();
    let mut first = spawn_quiet(&mut apply_cmd(&env, &files, &["--concurrency", "1"]));
    assert!(wait_until(LIMIT, || !env.sim().ground_truth().is_empty()
        || first.try_wait().unwrap().is_some()));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended too soon"
    );
    let linked = Files {
        manifest: files.manifest.clone(),
        results: link.clone(),
        secrets: files.secrets.clone(),
    };
    let second = run(&env, &linked, &["--concurrency", "1"]);
    let first = first.wait().unwrap();
    assert_eq!(first.code(), Some(0));
    assert_ne!(
        second.code,
        Some(0),
        "both runs proceeded: {}",
        second.stderr
    );
    assert!(
        second.stderr.contains("another logzio-tokens run"),
        "{}",
        second.stderr
    );
    assert_eq!(
        env.sim().ground_truth().len(),
        4,
        "a token was created twice"
    );
}

/// Defect 9 / invariant 3: `import` binds the results file to its endpoint, so a later
/// `verify` against another endpoint is refused (exit 2, naming both) instead of marking the
/// working token revoked and binding the file to the wrong endpoint.
#[test]
fn an_import_binds_the_results_file_to_its_endpoint() {
    let (config, manifest) = workload(1, 1);
    let a = Env::with_sim(config.clone());
    let files = Files::new(&a, &manifest);
    a.write("secret", "imported-secret\n");
    a.run_cmd(
        files
            .cmd(&a, "import")
            .args(["--account-id", "160343", "--token-name", "t00"])
            .args(["--token-id", "4242", "--secret-file", "secret"]),
        LIMIT,
    )
    .expect_code(0);
    let v = files.results_json();
    assert_eq!(
        v["api_url"].as_str().map(|u| u.trim_end_matches('/')),
        Some(a.sim().url().trim_end_matches('/')),
        "{v:#}"
    );
    let b = Env::with_sim(config);
    let r = b.run_cmd(files.cmd(&b, "verify").current_dir(a.dir.path()), LIMIT);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(a.sim().url().trim_end_matches('/')),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(b.sim().url().trim_end_matches('/')),
        "{}",
        r.stderr
    );
    let after = files.results_json();
    assert_eq!(after["api_url"], v["api_url"]);
    assert!(
        after["accounts"]["160343"]["t00"]["status"].is_null(),
        "{after:#}"
    );
}

/// Defect 14: `import --from` refuses an export whose row lists as replaced a token that is
/// another row's current token.
#[test]
fn an_import_refuses_a_replaced_token_that_is_another_rows_current_one() {
    let (config, manifest) = workload(2, 1);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    let rows = serde_json::json!([
        { "account_id": 160343, "token_name": "t00", "token_id": 100, "token": "s-100" },
        { "account_id": 160344, "token_name": "t00", "token_id": 200, "token": "s-200",
          "superseded": [ { "token_id": 100, "replaced_by": 200 } ] }
    ]);
    env.write("e.json", &rows.to_string());
    let r = env.run_cmd(files.cmd(&env, "import").args(["--from", "e.json"]), LIMIT);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("160343/t00"), "{}", r.stderr);
    assert!(!files.results.exists(), "something was recorded");
}

/// `apply --yes` with the files' state paths, without the chaos suites' `--resend-ambiguous`.
fn plain_apply(env: &Env, files: &Files) -> Run {
    env.run_cmd(
        files
            .cmd(env, "apply")
            .args(["--yes", "--request-timeout", "2"]),
        LIMIT,
    )
}

/// Defect 6: with a server that always answers 500 after creating, the ambiguity budget (2)
/// holds across runs: three runs create 2 tokens, not 6; `orphans clear` (after checking the
/// UI) lets the token be sent again.
#[test]
fn the_ambiguity_budget_holds_across_runs_until_orphans_clear() {
    let (mut config, manifest) = workload(1, 1);
    config.faults = logzio_tokens::simulator::FaultRates {
        error_after_create: 1.0,
        ..Default::default()
    };
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    let first = plain_apply(&env, &files);
    assert_eq!(first.code, Some(1), "{}", first.stderr);
    assert_eq!(env.sim().ground_truth().len(), 2);
    for _ in 0..2 {
        let again = plain_apply(&env, &files);
        assert_eq!(again.code, Some(1), "{}", again.stderr);
        assert!(again.stderr.contains("orphans clear"), "{}", again.stderr);
    }
    assert_eq!(
        env.sim().ground_truth().len(),
        2,
        "a token at its ambiguity budget was sent again by a later run"
    );
    env.run_cmd(&mut files.cmd(&env, "orphans clear"), LIMIT)
        .expect_code(0);
    plain_apply(&env, &files);
    assert_eq!(
        env.sim().ground_truth().len(),
        4,
        "not sent after orphans clear"
    );
}

/// Defect 15: a 403 for a replaced token counts as "deleted" (taking it off the remove-by-hand
/// list for good) only when the same run's probe of a current token of that account answered
/// 200. Here the current token answers 403 too (as a misrouted or failing endpoint would to
/// everything): the replaced token stays listed, `unknown`.
#[test]
fn a_replaced_tokens_403_counts_only_beside_a_current_token_that_answered_200() {
    let (config, manifest) = workload(1, 1);
    let env = Env::with_sim(config);
    let files = Files::new(&env, &manifest);
    run(&env, &files, &[]).expect_code(0);
    let mut v = files.results_json();
    v["accounts"]["160343"]["t00"]["created_at"] = Value::from("2020-01-01T00:00:00Z");
    let old = v["accounts"]["160343"]["t00"]["token_id"].as_i64().unwrap();
    std::fs::write(&files.results, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    run(&env, &files, &["--rotate-older-than", "90d"]).expect_code(0);
    let current = files.results_json()["accounts"]["160343"]["t00"]["token_id"]
        .as_i64()
        .unwrap();
    assert_ne!(current, old);
    assert!(env.sim().delete_token(old));
    assert!(env.sim().delete_token(current));
    // verify (exit 1: a token is revoked), then the replaced token's entry, with the file.
    let verify = || {
        let verify = env.run_cmd(&mut files.cmd(&env, "verify"), LIMIT);
        assert_eq!(verify.code, Some(1), "{}", verify.stderr);
        let v = files.results_json();
        let replaced = v["superseded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["token_id"] == old)
            .unwrap()
            .clone();
        (replaced, v)
    };
    let (replaced, v) = verify();
    assert_ne!(
        replaced["status"], "revoked",
        "one 403 took a replaced token off the remove-by-hand list: {v:#}"
    );
    // Once a current token of the account answers 200, a 403 for the replaced one counts.
    let (_, manifest2) = workload(1, 2);
    std::fs::write(&files.manifest, manifest2).unwrap();
    run(&env, &files, &[]).expect_code(0);
    let (replaced, v) = verify();
    assert_eq!(replaced["status"], "revoked", "{v:#}");
}
