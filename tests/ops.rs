//! Operations: import, export, orphans, completions, the man page, and the deploy examples.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logzio_tokens::simulator::{FaultRates, SimConfig};

use crate::util::{Env, manifest_yaml, mode};

fn state_args(env: &Env) -> Vec<String> {
    vec![
        "--results".into(),
        env.path("r.json").display().to_string(),
        "--secrets".into(),
        env.path("s.json").display().to_string(),
    ]
}

fn run(env: &Env, args: &[&str], extra: &[String]) -> crate::util::Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    env.run(&all)
}

#[test]
fn import_prevents_re_creation_and_keeps_the_secret() {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343, 160_344], &["ci"]));
    env.write("old-secret", "imported-secret-value-1\n");
    let st = state_args(&env);
    run(
        &env,
        &[
            "import",
            "m.yaml",
            "--account-id",
            "160343",
            "--token-name",
            "ci",
            "--token-id",
            "51234",
            "--secret-file",
            "old-secret",
        ],
        &st,
    )
    .expect_code(0);
    // Refused: a token the manifest does not ask for, and a second id for the same token.
    let r = run(
        &env,
        &[
            "import",
            "m.yaml",
            "--account-id",
            "999",
            "--token-name",
            "ci",
            "--token-id",
            "1",
        ],
        &st,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("does not ask for"), "{}", r.stderr);
    let r = run(
        &env,
        &[
            "import",
            "m.yaml",
            "--account-id",
            "160343",
            "--token-name",
            "ci",
            "--token-id",
            "7",
        ],
        &st,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);

    run(&env, &["apply", "m.yaml", "--yes"], &st).expect_code(0);
    // Only 160344/ci was created; the imported one was not created again.
    let truth = env.sim().ground_truth();
    assert_eq!(truth.len(), 1);
    assert_eq!(truth[0].account_id, 160_344);
    let results = env.json("r.json");
    assert_eq!(results["accounts"]["160343"]["ci"]["token_id"], 51234);
    assert_eq!(results["accounts"]["160343"]["ci"]["source"], "imported");
    let secrets = env.json("s.json");
    assert_eq!(
        secrets["accounts"]["160343"]["ci"]["token"],
        "imported-secret-value-1"
    );
    assert_eq!(mode(&env.path("s.json")), 0o600);
}

#[test]
fn export_formats_parse_are_0600_and_hold_every_secret() {
    let env = Env::with_sim(SimConfig::default());
    env.write(
        "m.yaml",
        &manifest_yaml(&[160_343, 160_345], &["ci", "grafana"]),
    );
    let st = state_args(&env);
    run(&env, &["apply", "m.yaml", "--yes"], &st).expect_code(0);
    let truth = env.sim().ground_truth();
    assert_eq!(truth.len(), 4);

    run(
        &env,
        &["export", "m.yaml", "--format", "json", "--out", "e.json"],
        &st,
    )
    .expect_code(0);
    assert_eq!(mode(&env.path("e.json")), 0o600);
    let rows = env.json("e.json");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for t in &truth {
        assert!(rows.iter().any(|r| r["token"] == t.token.as_str()
            && r["token_id"] == t.id
            && r["account_id"] == t.account_id
            && r["token_name"] == t.name.as_str()));
    }

    run(
        &env,
        &["export", "m.yaml", "--format", "csv", "--out", "e.csv"],
        &st,
    )
    .expect_code(0);
    assert_eq!(mode(&env.path("e.csv")), 0o600);
    let csv = std::fs::read_to_string(env.path("e.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("account_id,token_name,token_id,token,kind")
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 4);
    for t in &truth {
        assert!(body.contains(
            &format!("{},{},{},{},api_token", t.account_id, t.name, t.id, t.token).as_str()
        ));
    }

    run(
        &env,
        &["export", "m.yaml", "--format", "dotenv", "--out", "e.env"],
        &st,
    )
    .expect_code(0);
    assert_eq!(mode(&env.path("e.env")), 0o600);
    let dotenv = std::fs::read_to_string(env.path("e.env")).unwrap();
    for t in &truth {
        let var = format!(
            "LOGZIO_TOKEN_{}_{}='{}'",
            t.account_id,
            t.name.to_uppercase().replace('-', "_"),
            t.token
        );
        assert!(
            dotenv.lines().any(|l| l == var),
            "{var} missing from\n{dotenv}"
        );
    }

    // stdout only when asked; without --out or --stdout it is a usage error.
    let out = run(
        &env,
        &["export", "m.yaml", "--format", "json", "--stdout"],
        &st,
    );
    out.expect_code(0);
    assert!(out.stdout.contains(&truth[0].token));
    let none = run(&env, &["export", "m.yaml"], &st);
    assert_eq!(none.code, Some(2));
    assert!(!none.stdout.contains(&truth[0].token));
}

/// The replaced (`superseded`) entries of a results or secrets file, ordered by token id.
fn superseded(file: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut list = file["superseded"].as_array().cloned().unwrap_or_default();
    list.sort_by_key(|s| s["token_id"].as_i64());
    list
}

#[test]
fn export_then_import_into_a_fresh_state_keeps_the_replaced_tokens_exactly() {
    let env = Env::with_sim(SimConfig::default());
    env.write(
        "m.yaml",
        &manifest_yaml(&[160_343, 160_344], &["ci", "grafana"]),
    );
    let st = state_args(&env);
    run(&env, &["apply", "m.yaml", "--yes"], &st).expect_code(0);
    // 160343/ci is deleted in the UI twice, seen revoked by verify and recreated each time:
    // its first two tokens are replaced, each with a status and a kept secret.
    for _ in 0..2 {
        let id = env.json("r.json")["accounts"]["160343"]["ci"]["token_id"]
            .as_i64()
            .unwrap();
        assert!(env.sim().delete_token(id));
        run(&env, &["verify", "m.yaml"], &st).expect_code(1);
        run(
            &env,
            &["apply", "m.yaml", "--yes", "--recreate-revoked"],
            &st,
        )
        .expect_code(0);
    }
    run(&env, &["verify", "m.yaml"], &st).expect_code(0);
    let truth = env.sim().ground_truth();
    assert_eq!(truth.len(), 6);
    let (results, secrets) = (env.json("r.json"), env.json("s.json"));
    let replaced = superseded(&results);
    assert_eq!(replaced.len(), 2, "{results:#}");
    assert_eq!(superseded(&secrets).len(), 2, "{secrets:#}");

    run(
        &env,
        &["export", "m.yaml", "--format", "json", "--out", "e.json"],
        &st,
    )
    .expect_code(0);
    // The row of 160343/ci carries its replaced tokens, secrets included.
    let rows = env.json("e.json");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account_id"] == 160_343 && r["token_name"] == "ci")
        .unwrap();
    let exported = row["superseded"].as_array().cloned().unwrap_or_default();
    assert_eq!(exported.len(), 2, "{row:#}");
    for (e, r) in exported.iter().zip(&replaced) {
        assert_eq!(e["token_id"], r["token_id"]);
        assert_eq!(e["replaced_by"], r["replaced_by"]);
        let t = truth.iter().find(|t| e["token_id"] == t.id).unwrap();
        assert_eq!(e["token"], t.token.as_str());
    }

    // Into a fresh state, twice (the second import changes nothing).
    let fresh = vec![
        "--results".to_owned(),
        env.path("r2.json").display().to_string(),
        "--secrets".to_owned(),
        env.path("s2.json").display().to_string(),
    ];
    for _ in 0..2 {
        run(&env, &["import", "m.yaml", "--from", "e.json"], &fresh).expect_code(0);
        let (results2, secrets2) = (env.json("r2.json"), env.json("s2.json"));
        assert_eq!(superseded(&results2), replaced, "{results2:#}");
        assert_eq!(superseded(&secrets2), superseded(&secrets), "{secrets2:#}");
        assert_eq!(secrets2["accounts"], secrets["accounts"]);
        for (acc, tokens) in results["accounts"].as_object().unwrap() {
            for (name, rec) in tokens.as_object().unwrap() {
                assert_eq!(results2["accounts"][acc][name]["token_id"], rec["token_id"]);
            }
        }
    }
    assert_eq!(mode(&env.path("s2.json")), 0o600);
    // The imported state converges: nothing is created again.
    run(&env, &["apply", "m.yaml", "--yes"], &fresh).expect_code(0);
    assert_eq!(env.sim().ground_truth().len(), truth.len());

    // Into a fresh sealed state: exported again through the identity, it is the same export.
    let sealed = vec![
        "--results".to_owned(),
        env.path("r3.json").display().to_string(),
        "--secrets".to_owned(),
        env.path("s3.json").display().to_string(),
    ];
    let mut import = vec!["import", "m.yaml", "--from", "e.json", "--recipient"];
    import.push(crate::chaos::test_recipient());
    run(&env, &import, &sealed).expect_code(0);
    assert!(
        !env.path("s3.json").exists(),
        "a sealed import wrote plaintext"
    );
    let identity = crate::chaos::test_identity_file().display().to_string();
    run(
        &env,
        &[
            "export",
            "m.yaml",
            "--format",
            "json",
            "--out",
            "e3.json",
            "--identity",
            &identity,
        ],
        &sealed,
    )
    .expect_code(0);
    assert_eq!(env.json("e3.json"), env.json("e.json"));
}

#[test]
fn orphans_are_listed_then_cleared() {
    // Every create is answered 500 after the token was created: all are possible orphans.
    let env = Env::with_sim(SimConfig {
        faults: FaultRates {
            error_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    let st = state_args(&env);
    let r = run(
        &env,
        &["apply", "m.yaml", "--yes", "--max-attempts", "2"],
        &st,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("possible orphan"), "{}", r.stderr);
    let listed = run(&env, &["orphans", "list", "m.yaml"], &st);
    listed.expect_code(0);
    assert!(
        listed.stdout.contains("160343/ci: 2 ambiguous requests"),
        "{}",
        listed.stdout
    );
    let bare = run(&env, &["orphans", "m.yaml"], &st);
    assert_eq!(bare.stdout, listed.stdout);
    run(&env, &["orphans", "clear", "m.yaml"], &st).expect_code(0);
    assert_eq!(
        env.json("r.json")["possible_orphans"],
        serde_json::json!([])
    );
    let after = run(&env, &["orphans", "list", "m.yaml"], &st);
    assert!(after.stdout.is_empty(), "{}", after.stdout);
}

#[test]
fn completions_and_man_page_generate() {
    let env = Env::new();
    for (shell, marker) in [
        ("bash", "complete -F _logzio__tokens"),
        ("zsh", "#compdef logzio-tokens"),
        ("fish", "complete -c logzio-tokens"),
    ] {
        let r = env.run(&["completions", shell]);
        r.expect_code(0);
        assert!(
            r.stdout.contains(marker),
            "{shell}: {}",
            &r.stdout[..r.stdout.len().min(200)]
        );
        assert!(
            r.stdout.contains("apply"),
            "{shell} completions lack subcommands"
        );
    }
    let man = env.run(&["man"]);
    man.expect_code(0);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH"),
        "{}",
        &man.stdout[..100]
    );
    assert!(man.stdout.contains("logzio\\-tokens"));
}

#[test]
fn deploy_examples_apply_non_interactively_with_the_token_from_a_secret() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy");
    for name in ["github-actions-nightly.yml", "k8s-cronjob.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        // The Kubernetes example is a stream of documents (ConfigMap, PVC, CronJob).
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        assert!(
            !docs.is_empty() && docs.iter().all(|d| d.is_object()),
            "{name}"
        );
        let flat = text.replace(['\n', '-', ' '], "");
        assert!(flat.contains("apply"), "{name}");
        assert!(
            flat.contains("yes") && flat.contains("outputjson"),
            "{name}"
        );
        assert!(text.contains("LOGZIO_API_TOKEN"), "{name}");
        assert!(
            text.contains("secrets.LOGZIO_API_TOKEN") || text.contains("secretKeyRef"),
            "{name}: the token must come from a secret store"
        );
    }
}

#[test]
fn account_targeting_limits_plan_and_apply() {
    let env = Env::with_sim(SimConfig::default());
    env.write(
        "m.yaml",
        &manifest_yaml(&[160_343, 160_344, 160_345], &["ci"]),
    );
    let st = state_args(&env);
    // plan --account: only that account's token is planned.
    let plan = run(
        &env,
        &["plan", "m.yaml", "--json", "--account", "160344"],
        &st,
    );
    plan.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    let create = v["create"].as_array().unwrap();
    assert_eq!(create.len(), 1, "{v}");
    assert_eq!(create[0]["account_id"], 160_344);
    // apply --exclude-account (by id).
    run(
        &env,
        &["apply", "m.yaml", "--yes", "--exclude-account", "160343"],
        &st,
    )
    .expect_code(0);
    let mut created: Vec<i64> = env
        .sim()
        .ground_truth()
        .iter()
        .map(|t| t.account_id)
        .collect();
    created.sort_unstable();
    assert_eq!(created, vec![160_344, 160_345]);
    // A name selects an account given by id, through the live sub-account list.
    run(
        &env,
        &["apply", "m.yaml", "--yes", "--account", "search-prod"],
        &st,
    )
    .expect_code(0);
    assert_eq!(
        env.sim().ground_truth().len(),
        2,
        "160345 is already recorded"
    );
    run(
        &env,
        &["apply", "m.yaml", "--yes", "--account", "payments-prod"],
        &st,
    )
    .expect_code(0);
    let truth = env.sim().ground_truth();
    assert_eq!(truth.len(), 3);
    assert_eq!(truth[2].account_id, 160_343);
    // Accounts given by id are not written to `resolved_names` (that is for names).
    assert!(env.json("r.json").get("resolved_names").is_none());
}

#[test]
fn plan_takes_the_contracts_shared_options_and_checks_them_as_apply_does() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    let r = env.run(&[
        "plan",
        "m.yaml",
        "--json",
        "--concurrency",
        "4",
        "--rate",
        "5",
    ]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["execution"]["concurrency"], 4);
    assert_eq!(v["execution"]["rate_per_second"], 5.0);
    let bad = env.run(&["plan", "m.yaml", "--concurrency", "0"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--concurrency 0 is out of range"),
        "{}",
        bad.stderr
    );
}

/// Regression: "1 token of the manifest have no recorded secret".
#[test]
fn messages_that_count_agree_with_the_count() {
    let env = Env::new();
    let st = state_args(&env);
    for (accounts, expected) in [
        (
            &[160_343][..],
            "1 token of the manifest has no recorded secret",
        ),
        (
            &[160_343, 160_344][..],
            "2 tokens of the manifest have no recorded secret",
        ),
    ] {
        env.write("m.yaml", &manifest_yaml(accounts, &["ci"]));
        let out = env.path("out.json");
        let _ = std::fs::remove_file(&out);
        let export = run(
            &env,
            &["export", "m.yaml", "--out", out.to_str().unwrap()],
            &st,
        );
        export.expect_code(0);
        assert!(export.stderr.contains(expected), "{}", export.stderr);
    }
}
