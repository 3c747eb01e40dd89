//! Rate control and the ambiguity budget through the binary (issue 12). These check behaviour
//! with generous margins, never timing: the figures belong in `cargo bench --bench throughput`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logzio_tokens::simulator::{FaultRates, SimConfig};
use serde_json::Value;

use crate::util::{Env, Run, manifest_yaml};

fn summary(run: &Run) -> Value {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line:\n{}\n{}", run.stdout, run.stderr))
}

fn apply(env: &Env, extra: &[&str]) -> Run {
    let mut args = vec![
        "apply",
        "m.yaml",
        "--yes",
        "--output",
        "json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn write_manifest(env: &Env, tokens: &[String]) {
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    env.write("m.yaml", &manifest_yaml(&[160_343], &refs));
}

#[test]
fn a_token_is_not_sent_again_after_its_ambiguous_attempts() {
    // Every create succeeds on the server and then answers 500: each attempt leaves a token.
    let env = Env::with_sim(SimConfig {
        seed: 1,
        faults: FaultRates {
            error_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    write_manifest(&env, &names("a", 3));
    let run = apply(&env, &[]);
    run.expect_code(1);
    let s = summary(&run);
    // Two ambiguous attempts each (the default), not max_attempts' six.
    assert_eq!(env.sim().ground_truth().len(), 6, "{s}");
    assert_eq!(s["attempts"], 6, "{s}");
    assert_eq!(s["ambiguity_exhausted"], 3, "{s}");
    assert_eq!(s["max_ambiguous"], 2, "{s}");
    let results = env.json("m.results.json");
    let orphans = results["possible_orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 3, "{results}");
    let failures = results["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{results}");
    assert!(
        failures.iter().all(|f| f["error"]
            .as_str()
            .unwrap()
            .contains("not sent again after 2 ambiguous attempts")),
        "{results}"
    );

    // `--max-ambiguous 1`: one attempt per token.
    write_manifest(&env, &names("b", 3));
    let run = apply(&env, &["--max-ambiguous", "1"]);
    run.expect_code(1);
    assert_eq!(env.sim().ground_truth().len(), 9);
    // And settings.max_ambiguous, which the flag overrides.
    let mut m = manifest_yaml(&[160_343], &["c-0", "c-1"]);
    m.push_str("settings:\n  max_ambiguous: 3\n");
    env.write("m.yaml", &m);
    let run = apply(&env, &[]);
    run.expect_code(1);
    assert_eq!(env.sim().ground_truth().len(), 15);
    assert_eq!(summary(&run)["max_ambiguous"], 3);
}

#[test]
fn the_run_stops_sending_when_the_service_mostly_creates_then_errs() {
    let env = Env::with_sim(SimConfig {
        seed: 2,
        faults: FaultRates {
            error_after_create: 0.6,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    write_manifest(&env, &names("t", 300));
    // A high per-item budget, so that only the breaker stops the run.
    let run = apply(&env, &["--max-ambiguous", "20", "--rate", "1000"]);
    run.expect_code(1);
    let s = summary(&run);
    assert_eq!(s["ambiguity_breaker"], true, "{s}");
    assert!(
        s["stop"]
            .as_str()
            .unwrap()
            .contains("the service answers errors after creating"),
        "{s}"
    );
    assert!(s["not_attempted"].as_u64().unwrap() > 100, "{s}");
    // It stopped within the window and the requests then in flight.
    assert!(s["attempts"].as_u64().unwrap() < 200, "{s}");
    // Everything the server created is recorded or listed.
    let results = env.json("m.results.json");
    let secrets = env.json("m.secrets.json");
    let recorded: usize = secrets["accounts"].as_object().map_or(0, |a| {
        a.values().map(|m| m.as_object().unwrap().len()).sum()
    });
    let orphans = results["possible_orphans"].as_array().unwrap().len();
    let truth = env.sim().ground_truth();
    let names_created: std::collections::BTreeSet<&str> =
        truth.iter().map(|t| t.name.as_str()).collect();
    assert!(recorded + orphans >= names_created.len(), "{results}");

    // The text summary says why.
    write_manifest(&env, &names("u", 300));
    let run = env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--no-progress",
        "--max-ambiguous",
        "20",
    ]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("stopped: the service answers errors after creating"),
        "{}",
        run.stderr
    );
}

/// A server that admits 4 requests at once (the kind of limit Logz.io documents), 200 ms
/// each: far longer than a loaded machine takes to read an answer, so that this process's
/// count of its requests at the server can be judged against the server's own.
fn four_in_flight(seed: u64) -> Env {
    Env::with_sim(SimConfig {
        seed,
        max_in_flight: Some(4),
        latency: std::time::Duration::from_millis(200),
        ..SimConfig::default()
    })
}

#[test]
fn an_in_flight_limit_is_found_said_and_handed_on_to_the_next_run() {
    // Told 16: the run finds a limit in flight, not a rate, says so, and the next run starts
    // there. Answers read late (a loaded machine) make this process count one request too
    // many at the server at times; never the server's one too few, so never above 4.
    let env = four_in_flight(5);
    write_manifest(&env, &names("first", 60));
    let run = apply(&env, &["--rate", "400", "--concurrency", "16"]);
    run.expect_code(0);
    let first_429 = env.sim().counters().limited_429;
    let results = env.json("m.results.json");
    let learned = &results["learned_rate"];
    let found = learned["in_flight"]
        .as_u64()
        .unwrap_or_else(|| panic!("{results}\n{}", run.stderr));
    assert!((3..=4).contains(&found), "{results}");
    assert_eq!(learned["kind"], "in_flight", "{results}");
    assert!(learned.get("per_second").is_none(), "{results}");
    let said = summary(&run);
    assert_eq!(
        said["server_limit"],
        format!("~{found} in flight"),
        "{said}"
    );
    assert_eq!(said["learned_limit_in_flight"], found);
    assert!(said["learned_limit_per_second"].is_null(), "{said}");
    assert!(env.sim().counters().max_in_flight_seen <= 4);

    let mut tokens = names("first", 60);
    tokens.extend(names("next", 60));
    write_manifest(&env, &tokens);
    let run = apply(&env, &["--rate", "400", "--concurrency", "16"]);
    run.expect_code(0);
    let next_429 = env.sim().counters().limited_429 - first_429;
    assert!(first_429 >= 1, "the first run met no limit");
    // From the learned limit, the next run meets none (its probes above it come 10 s in).
    assert!(
        next_429 == 0,
        "the next run met {next_429} 429s, the first {first_429}"
    );
}

#[test]
fn verify_probes_under_the_learned_limit_and_hands_on_what_it_finds() {
    // apply told 4 at once meets no limit; verify told 16 probes its 60 tokens, finds the
    // limit in flight, says so and hands it on; the next apply starts from it.
    let env = four_in_flight(6);
    write_manifest(&env, &names("v", 60));
    apply(&env, &["--rate", "400", "--concurrency", "4"]).expect_code(0);
    assert_eq!(env.sim().counters().limited_429, 0);
    assert!(env.json("m.results.json")["learned_rate"].is_null());
    let run = env.run(&[
        "verify",
        "m.yaml",
        "--no-progress",
        "--rate",
        "400",
        "--concurrency",
        "16",
    ]);
    run.expect_code(0);
    let verify_429 = env.sim().counters().limited_429;
    assert!(verify_429 >= 1, "verify met no limit");
    let results = env.json("m.results.json");
    let found = results["learned_rate"]["in_flight"]
        .as_u64()
        .unwrap_or_else(|| panic!("{results}\n{}", run.stderr));
    assert!((3..=4).contains(&found), "{results}");
    assert_eq!(
        results["learned_rate"]["kind"], "in_flight",
        "{results}\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("server limit: ~{found} in flight")),
        "{}",
        run.stderr
    );
    assert!(env.sim().counters().max_in_flight_seen <= 4);

    // verify again, from the learned limit: no 429, the limit stays, and the JSON summary
    // says it as apply's does.
    let run = env.run(&[
        "verify",
        "m.yaml",
        "--no-progress",
        "--output",
        "json",
        "--rate",
        "400",
        "--concurrency",
        "16",
    ]);
    run.expect_code(0);
    let said = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "verify_summary")
        .unwrap_or_else(|| panic!("no verify summary:\n{}", run.stdout));
    assert_eq!(
        said["server_limit"],
        format!("~{found} in flight"),
        "{said}"
    );
    assert_eq!(
        env.sim().counters().limited_429,
        verify_429,
        "{}",
        run.stderr
    );
    assert_eq!(
        env.json("m.results.json")["learned_rate"]["in_flight"],
        found
    );
    // And apply starts from it too.
    let mut tokens = names("v", 60);
    tokens.extend(names("w", 40));
    write_manifest(&env, &tokens);
    let run = apply(&env, &["--rate", "400", "--concurrency", "16"]);
    run.expect_code(0);
    assert_eq!(
        env.sim().counters().limited_429,
        verify_429,
        "{}",
        run.stderr
    );
}

#[test]
fn the_rate_learned_on_one_run_starts_the_next() {
    let env = Env::with_sim(SimConfig {
        seed: 3,
        max_requests_per_second: Some(40.0),
        ..SimConfig::default()
    });
    write_manifest(&env, &names("first", 60));
    let run = apply(&env, &["--rate", "400", "--concurrency", "16"]);
    run.expect_code(0);
    let first_429 = env.sim().counters().limited_429;
    let results = env.json("m.results.json");
    let learned = &results["learned_rate"];
    let rate = learned["per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("{results}"));
    assert!((15.0..=80.0).contains(&rate), "{learned}");
    assert_eq!(learned["endpoint"], env.sim().url().as_str());
    assert!(summary(&run)["learned_limit_per_second"].as_f64().is_some());

    // The next run starts near the learned rate instead of 10x above the limit.
    let mut tokens = names("first", 60);
    tokens.extend(names("next", 60));
    write_manifest(&env, &tokens);
    let run = apply(&env, &["--rate", "400", "--concurrency", "16"]);
    run.expect_code(0);
    let next_429 = env.sim().counters().limited_429 - first_429;
    assert!(first_429 >= 6, "the first run met no limit: {first_429}");
    assert!(
        next_429 < first_429 && next_429 <= 10,
        "429s: first run {first_429}, next run {next_429}"
    );
}
