//! Onboarding: sub accounts declared in the manifest, planned, created exactly once with their
//! tokens, and their drift shown and put back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use logzio_tokens::simulator::SimConfig;

use crate::util::{Env, Run, files_under, interrupt, kill_when, possible_orphans, spawn_quiet};

/// A manifest that creates `new` accounts (team-00, team-01, ...) with two tokens each, the
/// later ones sharing with the first, plus `payments-prod` (existing) declared with
/// `retention_days: 30`.
pub fn onboarding_manifest(new: usize) -> String {
    let mut text = String::from(
        "version: 1\n\
         defaults:\n  tokens: [ci, grafana]\n  create:\n    email: platform@example.com\n    \
         retention_days: 7\n    max_daily_gb: 5\n\
         accounts:\n  - name: payments-prod\n    create: {retention_days: 30}\n",
    );
    for i in 0..new {
        if i == 0 {
            text.push_str("  - name: team-00\n    create: true\n");
        } else {
            text.push_str(&format!(
                "  - name: team-{i:02}\n    create:\n      sharing_objects_accounts: [team-00, 160343]\n"
            ));
        }
    }
    text
}

/// [`onboarding_manifest`] without `payments-prod`: only accounts to create (for the built-in
/// simulator, which has no `payments-prod` to compare with).
fn new_accounts_manifest(new: usize) -> String {
    onboarding_manifest(new).replace(
        "  - name: payments-prod\n    create: {retention_days: 30}\n",
        "",
    )
}

/// A default simulator and [`onboarding_manifest`]`(new)` written as `m.yaml`; its path.
fn onboarding(new: usize) -> (Env, String) {
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write("m.yaml", &onboarding_manifest(new));
    let manifest = manifest.to_str().unwrap().to_owned();
    (env, manifest)
}

/// `apply MANIFEST --yes --no-progress`, plus `extra`.
fn apply(env: &Env, manifest: &str, extra: &[&str]) -> Run {
    let mut args = vec!["apply", manifest, "--yes", "--no-progress"];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// The simulator's account named `name`.
fn account_named(
    sim: &logzio_tokens::simulator::SimHandle,
    name: &str,
) -> logzio_tokens::simulator::SimAccount {
    sim.accounts()
        .into_iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no account named {name}"))
}

#[test]
fn plan_shows_accounts_to_create_the_gb_they_add_and_drift_and_counts_both_as_changes() {
    let (env, manifest) = onboarding(3);
    let run = env.run(&["plan", &manifest, "--detailed-exitcode"]);
    run.expect_code(2);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("3 sub accounts to create, adding up to 15 GB a day"),
        "{all}"
    );
    assert!(all.contains("+ team-00 ("), "{all}");
    assert!(
        all.contains("payments-prod (id 160343) drifted: retention_days: 30 declared, 7 live"),
        "{all}"
    );
    assert_eq!(env.sim().handle().counters().accounts_created, 0);

    // Offline: the names could not be checked.
    let offline = env.run_cmd(
        env.cmd()
            .env_remove("LOGZIO_API_TOKEN")
            .env_remove("LOGZIO_API_URL")
            .args(["plan", &manifest]),
        Duration::from_secs(60),
    );
    let all = format!("{}{}", offline.stdout, offline.stderr);
    assert!(
        all.contains("could not check whether 4 sub accounts exist"),
        "{all}"
    );
}

#[test]
fn bad_create_settings_are_refused_at_their_line_with_nothing_sent() {
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write(
        "m.yaml",
        "version: 1\ndefaults:\n  tokens: [ci]\naccounts:\n  - name: team-x\n    create:\n      \
         email: not-an-email\n      retention_days: 7\n      max_daily_gb: 5\n",
    );
    let run = env.run(&["apply", manifest.to_str().unwrap(), "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("m.yaml:7:14"), "{}", run.stderr);
    assert_eq!(env.sim().handle().counters().requests, 0);
}

/// The names of the accounts `onboarding_manifest(n)` creates.
fn new_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("team-{i:02}")).collect()
}

/// Runs apply until it exits 0 (at most `runs` times); returns the exit codes. After the
/// first run, as an operator who checked the possible orphans would, it sends again the tokens
/// whose ambiguity budget earlier runs used up (`--resend-ambiguous`): the budget holds across
/// runs, and under these faults and kills a token can use it up.
fn converge(env: &Env, manifest: &str, extra: &[&str], runs: usize) -> Vec<Option<i32>> {
    let mut codes = Vec::new();
    for i in 0..runs {
        let mut args = Vec::new();
        if i > 0 {
            args.push("--resend-ambiguous");
        }
        args.extend_from_slice(extra);
        let run = apply(env, manifest, &args);
        codes.push(run.code);
        if run.code == Some(0) {
            break;
        }

        assert!(
            matches!(run.code, Some(1)),
            "apply ended {:?}\n{}",
            run.code,
            run.stderr
        );
    }
    codes
}

/// Every account of `names` exists exactly once on the simulator, the results map each name to
/// its id, every token the simulator created is recorded or a possible orphan, and each
/// account's shipping token is in the secrets file.
fn check_exactly_once(env: &Env, names: &[String], label: &str) {
    let sim = env.sim().handle();
    let accounts = sim.accounts();
    let results = env.json("m.results.json");
    let secrets = env.json("m.secrets.json");
    for name in names {
        let same: Vec<_> = accounts.iter().filter(|a| &a.name == name).collect();
        assert_eq!(same.len(), 1, "{label}: {name} exists {} times", same.len());
        let id = same[0].id;
        assert_eq!(
            results["accounts_created"][name]["account_id"], id,
            "{label}: results of {name}"
        );
        // Recorded as created by the run that sent the create, even when a later run found
        // it (replaying a killed run's journal, or looking it up).
        let run = results["accounts_created"][name]["run_id"]
            .as_str()
            .unwrap();
        assert!(
            run.len() > 4 && run != "recovered",
            "{label}: {name} is recorded as created by run `{run}`"
        );
        assert_eq!(
            secrets["shipping"][id.to_string()]["token"],
            same[0].shipping_token,
            "{label}: the shipping token of {name}"
        );
    }
    let orphans = possible_orphans(&results);
    for token in sim.ground_truth() {
        let recorded = &results["accounts"][token.account_id.to_string()][&token.name]["token_id"];
        assert!(
            *recorded == token.id || orphans.contains(&(token.account_id, token.name.clone())),
            "{label}: token {} ({} of {}) is neither recorded nor a possible orphan",
            token.id,
            token.name,
            token.account_id
        );
    }
}

fn chaos_config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        account_list_lag: Duration::from_millis(300),
        faults: logzio_tokens::simulator::FaultRates {
            error_after_create: 0.1,
            drop_after_create: 0.05,
            drop_before_create: 0.05,
            ..Default::default()
        },
        ..SimConfig::default()
    }
}

/// The onboarding manifest with a short lookup (the simulator's lag is 300 ms) and a budget
/// that lets a run finish in one or two passes.
fn chaos_text(n: usize) -> String {
    onboarding_manifest(n).replace(
        "accounts:\n",
        "settings:\n  account_lookup_seconds: 2\n  max_ambiguous: 4\n  max_attempts: 10\naccounts:\n",
    )
}

/// [`chaos_text`] written as `m.yaml`; its path.
fn chaos_manifest(env: &Env, n: usize) -> String {
    env.write("m.yaml", &chaos_text(n))
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_seeded_chaos_run_creates_24_accounts_and_their_tokens_each_exactly_once() {
    let env = Env::with_sim(chaos_config(2811));
    let manifest = chaos_manifest(&env, 24);
    let codes = converge(&env, &manifest, &[], 6);
    assert_eq!(codes.last(), Some(&Some(0)), "{codes:?}");
    let names = new_names(24);
    check_exactly_once(&env, &names, "chaos");
    let counters = env.sim().handle().counters();
    assert!(
        counters.error_500_after_create + counters.dropped_after_create > 0,
        "the faults played: {counters:?}"
    );
    assert_eq!(counters.account_deletes, 0);

    // A re-run sends no create.
    let before = env.sim().handle().counters();
    apply(&env, &manifest, &[]).expect_code(0);
    let after = env.sim().handle().counters();
    assert_eq!(after.accounts_created, before.accounts_created);
    assert_eq!(after.created, before.created);

    // Export holds each shipping token, with its kind.
    let export = env.run(&["export", &manifest, "--format", "csv", "--stdout"]);
    export.expect_code(0);
    for account in env
        .sim()
        .handle()
        .accounts()
        .iter()
        .filter(|a| a.created_by_api)
    {
        assert!(
            export
                .stdout
                .lines()
                .any(|l| l.ends_with(",shipping_token") && l.contains(&account.shipping_token)),
            "{}",
            export.stdout
        );
    }
}

#[test]
fn kill_9_at_random_points_then_resume_still_creates_each_account_once() {
    use rand::{Rng, SeedableRng};
    for seed in [7_u64, 99] {
        let env = Env::with_sim(chaos_config(seed));
        let manifest = chaos_manifest(&env, 24);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut killed_running = 0;
        for _ in 0..3 {
            let mut child =
                spawn_quiet(
                    env.cmd()
                        .args(["apply", &manifest, "--yes", "--no-progress"]),
                );
            let start = env.sim().handle().counters().accounts_created;
            let at = start + rng.random_range(1..8);
            if kill_when(&mut child, Duration::from_secs(60), || {
                env.sim().handle().counters().accounts_created >= at
            }) {
                killed_running += 1;
            }
        }
        assert!(
            killed_running > 0,
            "seed {seed}: no kill landed in a running apply"
        );
        let codes = converge(&env, &manifest, &[], 6);
        assert_eq!(codes.last(), Some(&Some(0)), "seed {seed}: {codes:?}");
        check_exactly_once(&env, &new_names(24), &format!("seed {seed}"));
    }
}

#[test]
fn drift_made_by_hand_shows_in_plan_and_update_accounts_puts_it_back() {
    let (env, manifest) = onboarding(2);
    let manifest = manifest.as_str();
    apply(&env, manifest, &[]).expect_code(0);
    let sim = env.sim().handle();
    let team = account_named(&sim, "team-01");
    // By hand: a declared field and one the manifest does not declare.
    assert!(sim.edit_account(team.id, |s| {
        s.retention_days = 3;
        s.doc_size_setting = true;
    }));
    let plan = env.run(&["plan", manifest, "--detailed-exitcode"]);
    plan.expect_code(2);
    let shown = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        shown.contains("team-01") && shown.contains("retention_days: 7 declared, 3 live"),
        "{shown}"
    );
    // Without --update-accounts: reported, nothing changed.
    apply(&env, manifest, &[]).expect_code(0);
    assert_eq!(sim.counters().account_updates, 0);
    apply(&env, manifest, &["--update-accounts"]).expect_code(0);
    let after = sim
        .accounts()
        .into_iter()
        .find(|a| a.id == team.id)
        .unwrap();
    assert_eq!(after.settings.retention_days, 7);
    assert!(
        after.settings.doc_size_setting,
        "an undeclared field is kept"
    );
    assert_eq!(after.settings.sharing_objects_accounts.len(), 2);
    // payments-prod drifted from the start (retention 7 live, 30 declared): put back too.
    let payments = account_named(&sim, "payments-prod");
    assert_eq!(payments.settings.retention_days, 30);
    env.run(&["plan", manifest, "--detailed-exitcode"])
        .expect_code(0);
    assert_eq!(sim.counters().account_deletes, 0);
}

#[test]
fn a_saved_plan_never_creates_sub_accounts() {
    let (env, manifest) = onboarding(1);
    env.run(&["plan", &manifest, "--out", "p.json"])
        .expect_code(0);
    let run = env.run(&["apply", "p.json", "--yes", "--no-progress"]);
    run.expect_code(2);
    assert!(run.stderr.contains("saved plan"), "{}", run.stderr);
    assert_eq!(env.sim().handle().counters().accounts_created, 0);
    assert_eq!(env.sim().handle().counters().created, 0);
}

#[test]
fn verify_compares_each_kept_shipping_token_with_the_accounts_own() {
    let (env, manifest) = onboarding(2);
    let manifest = manifest.as_str();
    apply(&env, manifest, &[]).expect_code(0);
    let run = env.run(&["verify", manifest, "--no-progress"]);
    run.expect_code(0);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains("2 log shipping tokens of the sub accounts this tool created: 2 current"),
        "{shown}"
    );
    let sim = env.sim().handle();
    let team = account_named(&sim, "team-01");
    assert!(sim.rotate_shipping_token(team.id));
    let run = env.run(&["verify", manifest, "--no-progress"]);
    run.expect_code(1);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains(&format!(
            "the log shipping token of team-01 (id {}) is no longer the one kept",
            team.id
        )),
        "{shown}"
    );
}

/// `--simulate-list-lag` makes the built-in simulator's list lag its creates (so a user can
/// watch the lookup), and is refused without `--simulate`; `simulate` takes the same lag.
#[test]
fn the_built_in_simulators_list_lag_is_a_flag() {
    let env = Env::new();
    let manifest = env.write("m.yaml", &new_accounts_manifest(2));
    let manifest = manifest.to_str().unwrap();
    let run = env.run(&[
        "apply",
        manifest,
        "--simulate",
        "--simulate-list-lag",
        "300ms",
        "--yes",
        "--no-progress",
    ]);
    run.expect_code(0);
    let results = env.json("m.simulated.results.json");
    for name in new_names(2) {
        assert!(
            results["accounts_created"][&name]["account_id"].is_u64(),
            "{name}: {results}"
        );
    }
    let refused = env.run(&["plan", manifest, "--simulate-list-lag", "300ms"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("--simulate"), "{}", refused.stderr);
    let bad = env.run(&["plan", manifest, "--simulate", "--simulate-list-lag", "3m"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("use ms or s"), "{}", bad.stderr);
    let help = env.run(&["simulate", "--help"]);
    assert!(
        help.stdout.contains("--account-list-lag-ms"),
        "{}",
        help.stdout
    );
}

/// With recipients, a new account's shipping token is sealed like every secret: through
/// faults, list lag and a kill -9, no file holds it (nor any token secret) in plaintext, and
/// `export --identity` gives each new account's shipping token.
#[test]
fn sealed_shipping_tokens_never_reach_the_disk_in_plaintext_and_export_unseals_them() {
    use age::secrecy::ExposeSecret;
    let env = Env::with_sim(chaos_config(4242));
    let id = age::x25519::Identity::generate();
    let identity = env.write("key.txt", &format!("{}\n", id.to_string().expose_secret()));
    crate::util::private(&identity);
    let text = chaos_text(8);
    let manifest = env.write(
        "m.yaml",
        &format!("{text}secrets:\n  recipients:\n    - {}\n", id.to_public()),
    );
    let manifest = manifest.to_str().unwrap();
    // One run killed once its third account exists, then runs until done.
    let mut child = spawn_quiet(
        env.cmd()
            .args(["apply", manifest, "--yes", "--no-progress"]),
    );
    kill_when(&mut child, Duration::from_secs(60), || {
        env.sim().handle().counters().accounts_created >= 3
    });
    let codes = converge(&env, manifest, &[], 6);
    assert_eq!(codes.last(), Some(&Some(0)), "{codes:?}");

    let sim = env.sim().handle();
    let new: Vec<_> = sim
        .accounts()
        .into_iter()
        .filter(|a| a.created_by_api)
        .collect();
    assert_eq!(new.len(), 8, "each account exactly once");
    let mut secrets: Vec<String> = new.iter().map(|a| a.shipping_token.clone()).collect();
    secrets.extend(sim.ground_truth().into_iter().map(|t| t.token));
    for path in files_under(env.dir.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{} holds a secret in plaintext",
                path.display()
            );
        }
    }
    let results = env.json("m.results.json");
    let export = env.run(&[
        "export",
        manifest,
        "--identity",
        identity.to_str().unwrap(),
        "--format",
        "csv",
        "--stdout",
    ]);
    export.expect_code(0);
    for account in &new {
        assert_eq!(
            results["accounts_created"][&account.name]["account_id"], account.id,
            "{}",
            account.name
        );
        assert_eq!(
            results["accounts_created"][&account.name]["shipping_token"], true,
            "{}",
            account.name
        );
        assert!(
            export
                .stdout
                .lines()
                .any(|l| l.ends_with(",shipping_token") && l.contains(&account.shipping_token)),
            "{}: {}",
            account.name,
            export.stdout
        );
    }
}

/// Ctrl-C while sub accounts are being created: the same drain as for tokens (exit 130, in
/// flight settled), every account the simulator made so far recorded or
/// still pending its lookup, and the next runs create each exactly once.
#[test]
fn ctrl_c_during_account_creates_drains_records_them_and_a_resume_creates_each_once() {
    let mut config = chaos_config(31);
    config.latency = Duration::from_millis(40);
    let env = Env::with_sim(config);
    let manifest = chaos_manifest(&env, 24);
    let child = env
        .cmd()
        .args(["apply", &manifest, "--yes", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sim = env.sim().handle();
    assert!(crate::util::wait_until(Duration::from_secs(60), || {
        sim.counters().accounts_created >= 4
    }));
    interrupt(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = env.json("m.results.json");
    for account in sim.accounts().into_iter().filter(|a| a.created_by_api) {
        let recorded = &results["accounts_created"][&account.name]["account_id"];
        let pending = &results["accounts_pending"][&account.name];
        assert!(
            *recorded == account.id || !pending.is_null(),
            "{} (id {}) is neither recorded nor pending: {results}",
            account.name,
            account.id
        );
    }
    let codes = converge(&env, &manifest, &[], 6);
    assert_eq!(codes.last(), Some(&Some(0)), "{codes:?}");
    check_exactly_once(&env, &new_names(24), "after Ctrl-C");
}

/// `--output json` has a line per sub account the run creates (`"kind": "account"`, its name
/// and id) beside the token lines (`"kind": "token"`), and never its log shipping token.
#[test]
fn json_output_has_a_line_per_new_account_and_never_its_shipping_token() {
    let env = Env::new();
    let manifest = env.write("m.yaml", &new_accounts_manifest(2));
    let run = env.run(&[
        "apply",
        manifest.to_str().unwrap(),
        "--simulate",
        "--yes",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results = env.json("m.simulated.results.json");
    let secrets = env.json("m.simulated.secrets.json");
    for name in new_names(2) {
        let id = &results["accounts_created"][&name]["account_id"];
        let line = lines
            .iter()
            .find(|l| l["type"] == "item" && l["kind"] == "account" && l["account_name"] == name)
            .unwrap_or_else(|| panic!("no line for {name}: {}", run.stdout));
        assert_eq!(line["result"], "created", "{line}");
        assert_eq!(&line["account_id"], id, "{line}");
        let shipping = secrets["shipping"][id.to_string()]["token"]
            .as_str()
            .unwrap();
        assert!(!run.stdout.contains(shipping), "{}", run.stdout);
    }
    let tokens = lines
        .iter()
        .filter(|l| l["type"] == "item" && l["kind"] == "token" && l["result"] == "created")
        .count();
    assert_eq!(tokens, 4, "{}", run.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(
        (&summary["accounts_created"], &summary["accounts_failed"]),
        (&serde_json::json!(2), &serde_json::json!(0)),
        "{summary}"
    );
}

/// An account's ambiguity budget holds across runs: creates that were ambiguous and that no
/// lookup found, recorded in the results file, count in the next run; at the budget the create
/// is not sent, the run says how to lift it, and `orphans clear` does.
#[test]
fn an_accounts_ambiguity_budget_holds_across_runs_until_orphans_clear() {
    let env = Env::with_sim(SimConfig {
        faults: logzio_tokens::simulator::FaultRates {
            drop_before_create: 1.0,
            ..Default::default()
        },
        ..SimConfig::default()
    });
    let text = "version: 1\nsettings:\n  account_lookup_seconds: 1\n  max_ambiguous: 2\n\
                defaults:\n  tokens: [ci]\n  create:\n    email: platform@example.com\n    \
                retention_days: 7\n    max_daily_gb: 5\n\
                accounts:\n  - name: team-00\n    create: true\n";
    let manifest = env.write("m.yaml", text);
    let manifest = manifest.to_str().unwrap();
    let sent = || env.sim().handle().counters().dropped_before_create;
    apply(&env, manifest, &[]).expect_code(1);
    assert_eq!(sent(), 2, "the first run spends the budget");
    let results = env.json("m.results.json");
    assert_eq!(
        results["accounts_ambiguous"]["team-00"]["ambiguous_attempts"], 2,
        "{results}"
    );

    // The plan it shows does not offer the account for creation (nor does the prompt).
    let again = apply(&env, manifest, &[]);
    again.expect_code(1);
    assert_eq!(sent(), 2, "not sent again: {}", again.stderr);
    assert!(
        !again.stderr.contains("sub account to create"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains("earlier runs made 2 ambiguous creates")
            && again.stderr.contains("orphans clear"),
        "{}",
        again.stderr
    );

    let list = env.run(&["orphans", "list", manifest]);
    list.expect_code(0);
    assert!(
        list.stdout
            .contains("sub account team-00: 2 ambiguous creates"),
        "{}",
        list.stdout
    );
    env.run(&["orphans", "clear", manifest]).expect_code(0);
    assert!(env.json("m.results.json")["accounts_ambiguous"].is_null());
    apply(&env, manifest, &[]).expect_code(1);
    assert_eq!(sent(), 4, "cleared: sent again, within a fresh budget");
}
