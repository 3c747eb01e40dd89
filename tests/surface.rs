//! The surface a person touches (issue 26): a saved plan is the whole decision, replacements
//! are visible before they happen, filters that match nothing are refused, hints carry the
//! paths actually used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;

use logzio_tokens::plan::SavedPlan;
use logzio_tokens::simulator::SimConfig;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::util::{Env, Run, interrupt, manifest_yaml};

const A: i64 = 160_343;
const B: i64 = 160_344;

fn workspace(tokens: &[&str]) -> Env {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[A, B], tokens));
    env
}

fn created(env: &Env) -> usize {
    env.sim().ground_truth().len()
}

/// An age key pair: (recipient, identity file).
fn keygen(env: &Env, name: &str) -> (String, std::path::PathBuf) {
    let id = age::x25519::Identity::generate();
    let file = env.write(name, &format!("{}\n", id.to_string().expose_secret()));
    crate::util::private(&file);
    (id.to_public().to_string(), file)
}

/// Changes a recorded token of the results file `file`.
fn edit_record(env: &Env, file: &str, account: i64, name: &str, field: &str, value: &str) {
    let mut r = env.json(file);
    r["accounts"][account.to_string()][name][field] = Value::String(value.into());
    env.write(file, &serde_json::to_string_pretty(&r).unwrap());
}

fn token_id(env: &Env, file: &str, account: i64, name: &str) -> i64 {
    env.json(file)["accounts"][account.to_string()][name]["token_id"]
        .as_i64()
        .unwrap()
}

fn kinds(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                format!("{}/{}", c["account_id"], c["token_name"].as_str().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_plan_with_recipients_applies_sealed_and_never_in_plaintext() {
    let env = workspace(&["ci"]);
    let (recipient, identity) = keygen(&env, "key.txt");
    let plan = env.run(&[
        "plan",
        "m.yaml",
        "--recipient",
        &recipient,
        "--out",
        "p.json",
    ]);
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("sealed to 1 recipient"),
        "{}",
        plan.stdout
    );
    let saved = env.json("p.json");
    assert_eq!(saved["recipients"][0], recipient.as_str());
    // The apply command `plan --out` prints, as printed.
    assert!(
        plan.stderr.contains("logzio-tokens apply p.json\n"),
        "{}",
        plan.stderr
    );
    env.run(&["apply", "p.json", "--yes"]).expect_code(0);
    assert_eq!(created(&env), 2);
    assert!(
        !env.path("m.secrets.json").exists(),
        "the plan said sealed; apply wrote plaintext"
    );
    let sealed: Vec<_> = std::fs::read_dir(env.path("m.sealed")).unwrap().collect();
    assert!(!sealed.is_empty());
    let out = env.run(&[
        "export",
        "m.yaml",
        "--stdout",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    out.expect_code(0);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
}

#[test]
fn a_plan_carries_every_path_flag_and_apply_refuses_a_flag_that_contradicts_it() {
    let env = workspace(&["ci"]);
    std::fs::create_dir(env.path("state")).unwrap();
    let plan = env.run(&[
        "plan",
        "m.yaml",
        "--results",
        "state/reg.results.json",
        "--secrets",
        "state/reg.secrets.json",
        "--sealed-dir",
        "state/sealed",
        "--out",
        "p.json",
    ]);
    plan.expect_code(0);
    // A flag that says otherwise than the plan: refused, naming it; nothing sent.
    for (flag, value) in [
        ("--results", "other.results.json"),
        ("--secrets", "other.secrets.json"),
        ("--sealed-dir", "other.sealed"),
        ("--account", "160343"),
        ("--rotate-older-than", "1d"),
        ("--api-url", "http://127.0.0.1:9"),
    ] {
        let run = env.run(&["apply", "p.json", "--yes", flag, value]);
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("`{flag}` {value} contradicts the plan p.json")),
            "{flag}: {}",
            run.stderr
        );
    }
    for flag in ["--recreate-revoked", "--simulate"] {
        let run = env.run(&["apply", "p.json", "--yes", flag]);
        run.expect_code(2);
        assert!(run.stderr.contains(&format!("`{flag}`")), "{}", run.stderr);
    }
    let run = env.run_cmd(
        env.cmd()
            .args(["apply", "p.json", "--yes"])
            .env("LOGZIO_API_URL", "http://127.0.0.1:9"),
        std::time::Duration::from_secs(60),
    );
    run.expect_code(2);
    assert!(run.stderr.contains("`LOGZIO_API_URL`"), "{}", run.stderr);
    assert_eq!(created(&env), 0);
    assert!(!env.path("state/reg.results.lock").exists());

    // The same flag as the plan's is fine; the files are the plan's, none at the defaults.
    env.run(&[
        "apply",
        "p.json",
        "--yes",
        "--results",
        "state/reg.results.json",
        "--sealed-dir",
        "./state/sealed",
    ])
    .expect_code(0);
    assert_eq!(created(&env), 2);
    assert!(env.path("state/reg.results.json").exists());
    assert!(env.path("state/reg.secrets.json").exists());
    for default in ["m.results.json", "m.secrets.json", "m.results.lock"] {
        assert!(!env.path(default).exists(), "{default} written");
    }
}

#[test]
fn a_plan_made_against_one_state_is_stale_once_the_manifest_results_or_recipients_change() {
    let env = workspace(&["ci"]);
    let (r1, _) = keygen(&env, "k1.txt");
    let (r2, _) = keygen(&env, "k2.txt");
    env.write("recipients.txt", &format!("{r1}\n"));
    let plan = |out: &str| {
        env.run(&[
            "plan",
            "m.yaml",
            "--recipients-file",
            "recipients.txt",
            "--out",
            out,
        ])
        .expect_code(0);
    };
    // The recipients file changes.
    plan("p1.json");
    env.write("recipients.txt", &format!("{r1}\n{r2}\n"));
    let run = env.run(&["apply", "p1.json", "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("stale plan: the recipients"),
        "{}",
        run.stderr
    );
    // The hint is a command to paste, with the flags of this plan.
    assert!(
        run.stderr.contains(
            "`logzio-tokens plan m.yaml --recipients-file recipients.txt --out PLAN_FILE`"
        ),
        "{}",
        run.stderr
    );
    // The manifest changes.
    plan("p2.json");
    env.write("m.yaml", &manifest_yaml(&[A], &["ci"]));
    let run = env.run(&["apply", "p2.json", "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("stale plan: the manifest m.yaml"),
        "{}",
        run.stderr
    );
    // The results change (another run recorded tokens).
    plan("p3.json");
    env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--recipients-file",
        "recipients.txt",
    ])
    .expect_code(0);
    let before = created(&env);
    let run = env.run(&["apply", "p3.json", "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("stale plan: the recorded results"),
        "{}",
        run.stderr
    );
    assert_eq!(created(&env), before);
}

/// Issue 25, item 7: a plan edited by hand, its checksum recomputed, lists a token the
/// manifest does not have and another twice. Apply derives the plan again and refuses.
#[test]
fn a_hand_edited_plan_with_a_recomputed_checksum_is_refused() {
    let env = workspace(&["ci"]);
    env.run(&["plan", "m.yaml", "--out", "p.json"])
        .expect_code(0);
    let bytes = std::fs::read(env.path("p.json")).unwrap();
    let mut plan = SavedPlan::parse(Path::new("p.json"), &bytes)
        .unwrap()
        .unwrap();
    let first = plan.changes[0].clone();
    plan.changes.push(first);
    plan.changes.push(logzio_tokens::plan::Change::Create {
        account_id: A as u32,
        token_name: "evil".into(),
    });
    plan.checksum = plan.compute_checksum();
    env.write("p.json", &serde_json::to_string_pretty(&plan).unwrap());
    let run = env.run(&["apply", "p.json", "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("160343/evil"), "{}", run.stderr);
    assert!(run.stderr.contains("160343/ci twice"), "{}", run.stderr);
    assert_eq!(created(&env), 0, "nothing is sent");
    assert!(!env.path("m.results.json").exists());
    assert!(
        !env.path("m.results.lock").exists(),
        "the lock file is left"
    );
}

#[test]
fn plan_previews_rotation_and_recreation_and_the_saved_plan_does_exactly_that() {
    let env = workspace(&["ci", "web"]);
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    let results = "m.results.json";
    edit_record(&env, results, A, "ci", "created_at", "2026-01-02T00:00:00Z");
    edit_record(&env, results, B, "web", "status", "revoked");
    let old_ci = token_id(&env, results, A, "ci");
    let revoked_web = token_id(&env, results, B, "web");

    // Without the flags: nothing to replace, the revoked one is reported.
    let run = env.run(&["plan", "m.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("0 to create, 0 to replace, 3 recorded"),
        "{}",
        run.stdout
    );

    let run = env.run(&[
        "plan",
        "m.yaml",
        "--rotate-older-than",
        "90d",
        "--recreate-revoked",
        "--out",
        "p.json",
    ]);
    run.expect_code(0);
    let text = &run.stdout;
    assert!(
        text.contains("0 to create, 2 to replace, 2 recorded"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "-/+ {A}/ci (replaces {old_ci}, created 2026-01-02, older than 90d)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("-/+ {B}/web (replaces {revoked_web}, revoked)")),
        "{text}"
    );
    // The JSON plan has the kinds.
    let json = env.run(&[
        "plan",
        "m.yaml",
        "--json",
        "--rotate-older-than",
        "90d",
        "--recreate-revoked",
    ]);
    json.expect_code(0);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        kinds(&doc),
        [
            ("replace".into(), format!("{A}/ci")),
            ("replace".into(), format!("{B}/web"))
        ]
    );
    assert_eq!(doc["changes"][0]["reason"], "rotation");
    assert_eq!(doc["changes"][0]["replaces"], old_ci);
    assert_eq!(doc["changes"][1]["reason"], "revoked");
    assert_eq!(doc["summary"]["replace"], 2);
    let saved = env.json("p.json");
    assert_eq!(saved["rotate_older_than_seconds"], 90 * 86_400);
    assert_eq!(saved["recreate_revoked"], true);
    assert_eq!(kinds(&saved), kinds(&doc));

    // Apply the plan file: exactly the two replacements, counted as such.
    let before = created(&env);
    let run = env.run(&["apply", "p.json", "--yes"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("0 to create, 2 to replace, 2 recorded"),
        "{}",
        run.stderr
    );
    assert_eq!(created(&env), before + 2);
    let r = env.json(results);
    assert_ne!(token_id(&env, results, A, "ci"), old_ci);
    assert_ne!(token_id(&env, results, B, "web"), revoked_web);
    let superseded: Vec<i64> = r["superseded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["token_id"].as_i64().unwrap())
        .collect();
    assert!(superseded.contains(&old_ci) && superseded.contains(&revoked_web));
}

#[test]
fn an_account_filter_that_names_no_entry_is_refused_with_the_closest_entries() {
    let env = workspace(&["ci"]);
    for (flag, value) in [("--account", "160349"), ("--exclude-account", "16034")] {
        for cmd in ["plan", "apply"] {
            let mut args = vec![cmd, "m.yaml", flag, value];
            if cmd == "apply" {
                args.push("--yes");
            }
            let run = env.run(&args);
            run.expect_code(2);
            assert!(
                run.stderr.contains(&format!(
                    "`{flag} {value}` names no account of the manifest m.yaml (closest: 160343"
                )),
                "{cmd}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(created(&env), 0);
    assert!(!env.path("m.results.lock").exists());
}

/// `plan --detail` heads each account with the name the live list gives it, an entry given by
/// id as much as one given by name, and an account the manifest no longer lists (whose tokens
/// are to remove by hand); `plan --json` carries the same names.
#[test]
fn plan_detail_names_the_accounts_given_by_id() {
    let env = workspace(&["ci"]);
    let run = env.run(&["plan", "m.yaml", "--detail"]);
    run.expect_code(0);
    for head in [
        "  account 160343 (payments-prod):",
        "  account 160344 (payments-staging):",
    ] {
        assert!(run.stdout.contains(head), "{head}:\n{}", run.stdout);
    }
    let doc: Value = serde_json::from_str(&env.run(&["plan", "m.yaml", "--json"]).stdout).unwrap();
    assert_eq!(doc["account_names"]["160343"], "payments-prod", "{doc}");
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    env.write("m.yaml", &manifest_yaml(&[A], &["ci"]));
    let run = env.run(&["plan", "m.yaml", "--detail"]);
    run.expect_code(0);
    let dropped = run
        .stdout
        .find("  account 160344 (payments-staging):\n    - ci (token ")
        .is_some();
    assert!(dropped, "{}", run.stdout);
}

#[test]
fn the_plan_header_says_where_the_endpoint_came_from() {
    let env = workspace(&["ci"]);
    let url = env.sim().url();
    let run = env.run(&["plan", "m.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("against {url} (from LOGZIO_API_URL)")),
        "{}",
        run.stdout
    );
    let run = env.run(&["plan", "m.yaml", "--api-url", &url]);
    assert!(run.stdout.contains("(from --api-url)"), "{}", run.stdout);
    // Without either, the manifest's region, then the default.
    let offline = Env::new();
    offline.write(
        "m.yaml",
        "version: 1\nregion: eu\naccounts:\n  - id: 1\n    tokens: [ci]\n",
    );
    offline.write("d.yaml", &manifest_yaml(&[1], &["ci"]));
    let run: Run = offline.run(&["plan", "m.yaml"]);
    assert!(run.stdout.contains("(from the manifest)"), "{}", run.stdout);
    let run = offline.run(&["plan", "d.yaml"]);
    assert!(
        run.stdout.contains("(the default region)"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_option_a_command_does_not_take_is_named_with_what_was_meant() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[1], &["ci"]));
    for (args, want) in [
        (
            &["validate", "m.yaml", "--json"][..],
            "error: `--json` is not an option of `validate`; did you mean no such thing: `validate` has no JSON output",
        ),
        (
            &["apply", "m.yaml", "--recipent", "x"],
            "error: `--recipent` is not an option of `apply`; did you mean `--recipient`?",
        ),
        // Flags that never applied are gone from these commands.
        (
            &["verify", "m.yaml", "--simulate"],
            "error: `--simulate` is not an option of `verify`; did you mean `--api-url URL`",
        ),
        (
            &["verify", "m.yaml", "--api-token-file", "t"],
            "error: `--api-token-file` is not an option of `verify`",
        ),
        (
            &["verify", "m.yaml", "--max-ambiguous", "2"],
            "error: `--max-ambiguous` is not an option of `verify`",
        ),
        (
            &["import", "m.yaml", "--account", "1"],
            "error: `--account` is not an option of `import`; did you mean `--account-id ID`",
        ),
    ] {
        let run = env.run(args);
        run.expect_code(2);
        assert!(run.stderr.starts_with(want), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("tip:"), "{}", run.stderr);
        assert!(
            run.stderr.contains("Usage: logzio-tokens "),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn json_is_accepted_by_every_command_with_json_output() {
    let env = workspace(&["ci"]);
    let run = env.run(&["apply", "m.yaml", "--yes", "--json"]);
    run.expect_code(0);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "summary");
    let run = env.run(&["verify", "m.yaml", "--json"]);
    run.expect_code(0);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "verify_summary", "{}", run.stdout);
    let run = env.run(&["plan", "m.yaml", "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["endpoint_source"], "LOGZIO_API_URL");
}

#[test]
fn help_groups_options_under_headings_and_says_what_is_true() {
    let env = Env::new();
    let help = |cmd: &str| {
        let run = env.run(&[cmd, "--help"]);
        run.expect_code(0);
        run.stdout
    };
    let apply = help("apply");
    let at = |h: &str| {
        apply
            .find(&format!("\n{h}:\n"))
            .unwrap_or_else(|| panic!("{h}: {apply}"))
    };
    for heading in [
        "Connection",
        "State files",
        "Secrets",
        "Rate and retries",
        "Output",
    ] {
        at(heading);
    }
    // Each option under its heading.
    assert!(at("Connection") < apply.find("--api-url").unwrap());
    let output = at("Output");
    for opt in [
        "--verbose",
        "--quiet",
        "--log-format",
        "--json",
        "--no-progress",
    ] {
        assert!(
            apply.find(opt).unwrap() > output,
            "{opt} not under Output:\n{apply}"
        );
    }
    assert!(apply.contains("nothing on stdout"), "{apply}");
    assert!(!apply.contains("the summary on stdout"), "{apply}");
    assert!(apply.contains("Apply starts at this"), "{apply}");
    assert!(!apply.contains("starts lower"), "{apply}");
    let sim = help("simulate");
    let server = sim.find("\nServer:\n").expect("Server heading");
    let faults = sim.find("\nFaults:\n").expect("Faults heading");
    assert!(server < sim.find("--listen").unwrap());
    assert!(faults < sim.find("--fault-503").unwrap());
    let verify = help("verify");
    for gone in ["--simulate", "--api-token-file", "--max-ambiguous"] {
        assert!(!verify.contains(gone), "{gone}:\n{verify}");
    }
    assert!(!help("import").contains("--exclude-account"));
}

#[test]
fn man_writes_a_page_per_command_with_exit_status_environment_and_files() {
    let env = Env::new();
    let run = env.run(&["man", "--out-dir", "pages"]);
    run.expect_code(0);
    for cmd in [
        "",
        "-plan",
        "-apply",
        "-verify",
        "-simulate",
        "-orphans-clear",
        "-man",
    ] {
        let page = std::fs::read_to_string(env.path(&format!("pages/logzio-tokens{cmd}.1")))
            .unwrap_or_else(|e| panic!("logzio-tokens{cmd}.1: {e}"));
        for section in [
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH NAME",
        ] {
            assert!(page.contains(section), "{cmd}: {section}");
        }
        assert!(page.contains("LOGZIO_API_URL"));
    }
    let main = env.run(&["man"]);
    assert!(main.stdout.contains(".SH \"EXIT STATUS\""));
}

/// clap_complete's bash script never matched a subcommand's arm for a hyphenated binary name
/// (clap-rs/clap#6421): `apply --rec<TAB>` completed nothing.
#[test]
fn bash_completes_a_subcommands_options() {
    let env = Env::new();
    let run = env.run(&["completions", "bash"]);
    run.expect_code(0);
    env.write("c.bash", &run.stdout);
    let complete = |words: &str, cword: usize, cur: &str, prev: &str| {
        let script = format!(
            "source c.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; _logzio__tokens logzio-tokens '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let got = complete("logzio-tokens apply --rec", 2, "--rec", "apply");
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        ["--recipient", "--recipients-file", "--recreate-revoked"],
        "{got}"
    );
    let got = complete(
        "logzio-tokens simulate --fault-5",
        2,
        "--fault-5",
        "simulate",
    );
    assert!(got.contains("--fault-503"), "{got}");
    let got = complete("logzio-tokens pl", 1, "pl", "logzio-tokens");
    assert_eq!(got.trim(), "plan");
}

/// fish completes a subcommand's options from its script; zsh's script parses (its completion
/// system needs an interactive shell). Each is checked where the shell is installed.
#[test]
fn fish_and_zsh_completion_scripts_work_where_the_shells_are_installed() {
    let env = Env::new();
    let has = |shell: &str| {
        std::process::Command::new(shell)
            .arg("-c")
            .arg("true")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("fish") {
        let run = env.run(&["completions", "fish"]);
        env.write("c.fish", &run.stdout);
        let out = std::process::Command::new("fish")
            .arg("-c")
            .arg("source c.fish; complete -C 'logzio-tokens apply --rec'")
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = got.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(
            names,
            ["--recipient", "--recipients-file", "--recreate-revoked"],
            "{got}"
        );
    } else {
        eprintln!("fish is not installed: its completion script is not run");
    }
    if has("zsh") {
        let run = env.run(&["completions", "zsh"]);
        env.write("_logzio-tokens", &run.stdout);
        let out = std::process::Command::new("zsh")
            .args(["-n", "_logzio-tokens"])
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("zsh is not installed: its completion script is not checked");
    }
}

/// The start-up line says which owner token to use, as a command to paste, and where the
/// ground truth is; `simulate --help` documents the `/__sim` endpoints.
#[test]
fn the_simulator_says_which_owner_token_to_use() {
    use std::io::BufRead;
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut l = String::new();
        stderr.read_line(&mut l).unwrap();
        lines.push(l);
    }
    let _ = child.kill();
    let _ = child.wait();
    let url = url.trim();
    let text = lines.concat();
    assert!(text.contains("Owner token: sim-owner-token"), "{text}");
    assert!(
        text.contains(&format!(
            "export LOGZIO_API_URL={url} LOGZIO_API_TOKEN=sim-owner-token"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{url}/__sim/ground-truth")),
        "{text}"
    );
    let help = env.run(&["simulate", "--help"]);
    for endpoint in [
        "GET    /__sim/ground-truth",
        "GET    /__sim/deleted-tokens",
        "GET    /__sim/counters",
        "DELETE /__sim/tokens/ID",
    ] {
        assert!(
            help.stdout.contains(endpoint),
            "{endpoint}: {}",
            help.stdout
        );
    }
}

/// After a run on other files, the hint to clear its possible orphans names them, and the
/// command as printed works.
#[test]
fn the_orphans_hint_carries_the_paths_of_the_run() {
    use logzio_tokens::simulator::FaultRates;
    let env = Env::with_sim(SimConfig {
        faults: FaultRates {
            error_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    env.write("m.yaml", &manifest_yaml(&[A], &["ci"]));
    let run = env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--results",
        "faulty.results.json",
        "--secrets",
        "faulty.secrets.json",
    ]);
    run.expect_code(1);
    let hint = "`logzio-tokens orphans clear m.yaml --results faulty.results.json --secrets faulty.secrets.json`";
    assert!(run.stderr.contains(hint), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("orphans clear").count(),
        1,
        "{}",
        run.stderr
    );
    let cmd = hint.trim_matches('`');
    let words: Vec<&str> = cmd.split(' ').skip(1).collect();
    let run = env.run(&words);
    run.expect_code(0);
    assert!(
        run.stderr.contains("Cleared 1 possible orphan"),
        "{}",
        run.stderr
    );
}

/// 2,000 accounts the owner does not have: one summarised line with the first ids and where
/// the full list is, after the counts; not 2,000 lines. The same in apply.
#[test]
fn repeated_findings_are_summarised_after_the_counts() {
    let env = Env::with_sim(SimConfig::default());
    let ids: Vec<i64> = std::iter::once(A).chain(900_000..902_000).collect();
    env.write("m.yaml", &manifest_yaml(&ids, &["ci"]));
    let run = env.run(&["plan", "m.yaml"]);
    run.expect_code(1);
    let out = &run.stdout;
    assert!(out.lines().count() < 10, "{out}");
    let counts = out
        .find("1 to create, 0 to replace, 0 recorded")
        .expect(out);
    let finding = out
        .find(
            "2000 accounts are not a sub account of this owner: their 2000 tokens will fail \
             (ids 900000, 900001, 900002 and 1997 more; `plan --detail` or `plan --json` lists every one)",
        )
        .expect(out);
    assert!(counts < finding, "{out}");
    // The full list is where the line says (read while it is written: it fills a pipe).
    let big = |args: &[&str]| {
        let out = env.cmd().args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let detail = big(&["plan", "m.yaml", "--detail"]);
    assert!(detail.contains("account 901999:"), "{detail}");
    let doc: Value = serde_json::from_str(&big(&["plan", "m.yaml", "--json"])).unwrap();
    assert_eq!(doc["unknown_accounts"].as_array().unwrap().len(), 2000);
    let run = env.run(&["apply", "m.yaml", "--yes"]);
    run.expect_code(1);
    assert!(run.stderr.lines().count() < 20, "{}", run.stderr);
    assert!(run.stderr.contains("and 1997 more"), "{}", run.stderr);
}

/// verify with 30 accounts whose tokens were all deleted: the counts first, then ten
/// accounts and how many more, not 30 lines.
#[test]
fn verify_summarises_repeated_findings() {
    use logzio_tokens::simulator::SubAccount;
    let ids: Vec<i64> = (0..30).map(|i| 700_000 + i).collect();
    let env = Env::with_sim(SimConfig {
        sub_accounts: ids
            .iter()
            .map(|id| SubAccount::new(*id, format!("acc-{id}")))
            .collect(),
        ..SimConfig::default()
    });
    env.write("m.yaml", &manifest_yaml(&ids, &["ci"]));
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    for t in env.sim().ground_truth() {
        assert!(env.sim().delete_token(t.id));
    }
    let run = env.run(&["verify", "m.yaml"]);
    run.expect_code(1);
    let err = &run.stderr;
    assert!(err.starts_with("Verified 30 tokens in"), "{err}");
    assert!(err.contains("0 valid, 30 revoked"), "{err}");
    assert!(
        err.contains("  … and 20 more (`verify --json` lists every one)"),
        "{err}"
    );
    assert_eq!(err.matches("  account 7000").count(), 10, "{err}");
}

/// The token file's permission warning is a `warning:` line on stderr, once, with the command
/// that fixes it; no log line.
#[test]
fn a_token_file_others_can_read_draws_one_warning_line() {
    use std::os::unix::fs::PermissionsExt;
    let env = workspace(&["ci"]);
    let token = env.write("token", crate::util::OWNER_TOKEN);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    for cmd in ["plan", "apply"] {
        let mut args = vec![cmd, "m.yaml", "--api-token-file", "token"];
        if cmd == "apply" {
            args.push("--yes");
        }
        let run = env.run(&args);
        run.expect_code(0);
        let want = "warning: the API token file token can be read by other users (mode 0644); run `chmod 600 token`\n";
        assert!(run.stderr.starts_with(want), "{cmd}: {}", run.stderr);
        assert_eq!(run.stderr.matches("can be read by other users").count(), 1);
        assert!(!run.stderr.contains("WARN"), "{}", run.stderr);
    }
}

/// A run stopped early says how to continue with a command to paste: the same files, the
/// same accounts.
#[test]
fn the_continue_hint_is_a_command_with_the_run_s_flags() {
    let env = Env::with_sim(SimConfig {
        latency: std::time::Duration::from_millis(300),
        ..SimConfig::default()
    });
    env.write("m.yaml", &manifest_yaml(&[A, B], &["a", "b", "c", "d"]));
    let child = env
        .cmd()
        .args([
            "apply",
            "m.yaml",
            "--yes",
            "--concurrency",
            "1",
            "--results",
            "r.json",
            "--account",
            &A.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(crate::util::wait_until(
        std::time::Duration::from_secs(30),
        || env.sim().counters().created >= 1
    ));
    interrupt(child.id());
    let out = crate::util::wait_with_timeout(child, std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "(run `logzio-tokens apply m.yaml --results r.json --account {A}` to continue)"
        )),
        "{stderr}"
    );
}

/// A wrong record (imported with the wrong id) is removed with `forget`, which import's
/// refusal names as a command to paste; its secret moves to `forgotten`, never deleted.
#[test]
fn forget_removes_a_wrong_record_and_keeps_its_secret() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[A], &["ci"]));
    env.write("wrong.txt", "the-wrong-secret\n");
    let import = |id: &str, secret: &str| {
        env.run(&[
            "import",
            "m.yaml",
            "--results",
            "r.json",
            "--secrets",
            "s.json",
            "--account-id",
            &A.to_string(),
            "--token-name",
            "ci",
            "--token-id",
            id,
            "--secret-file",
            secret,
        ])
    };
    import("111", "wrong.txt").expect_code(0);
    env.write("right.txt", "the-right-secret\n");
    let refused = import("222", "right.txt");
    refused.expect_code(2);
    let forget = format!(
        "logzio-tokens forget m.yaml --results r.json --secrets s.json --account-id {A} --token-name ci"
    );
    assert!(
        refused
            .stderr
            .contains(&format!("remove it first with `{forget}`")),
        "{}",
        refused.stderr
    );
    let words: Vec<&str> = forget.split(' ').skip(1).collect();
    let run = env.run(&words);
    run.expect_code(0);
    assert!(
        run.stderr.contains(&format!("Forgot {A}/ci (token 111)")),
        "{}",
        run.stderr
    );
    let results = env.json("r.json");
    assert!(
        results["accounts"][A.to_string()]["ci"].is_null(),
        "{results}"
    );
    let secrets = std::fs::read_to_string(env.path("s.json")).unwrap();
    assert!(
        secrets.contains("forgotten") && secrets.contains("the-wrong-secret"),
        "{secrets}"
    );
    // Forgetting what is not recorded is refused, naming the file.
    let again = env.run(&words);
    again.expect_code(2);
    assert!(
        again.stderr.contains("is not recorded in r.json"),
        "{}",
        again.stderr
    );
    // The right one can now be imported.
    import("222", "right.txt").expect_code(0);
}

/// No "0 possible orphans … Check each in the Logz.io UI".
#[test]
fn no_advice_about_zero_possible_orphans() {
    let env = workspace(&["ci"]);
    env.run(&["apply", "m.yaml", "--yes"]).expect_code(0);
    let run = env.run(&["orphans", "list", "m.yaml"]);
    run.expect_code(0);
    assert_eq!(run.stderr, "No possible orphan in ./m.results.json.\n");
    assert!(!run.stderr.contains("Check each"));
}
