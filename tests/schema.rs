//! Generated files stay in step with the code: both JSON Schemas, and the `schema` command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::util::Env;

fn committed(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(name),
    )
    .unwrap()
}

#[test]
fn results_schema_file_is_up_to_date() {
    let generated = logzio_tokens::state::results_schema_text();
    assert!(
        committed("results.schema.json") == generated,
        "schemas/results.schema.json differs from the Rust types; regenerate it with:\n  cargo run -- schema results > schemas/results.schema.json"
    );
}

#[test]
fn the_schema_command_prints_the_committed_files() {
    let env = Env::new();
    for (kind, file) in [
        ("manifest", "manifest.schema.json"),
        ("results", "results.schema.json"),
    ] {
        let run = env.run(&["schema", kind]);
        run.expect_code(0);
        assert_eq!(
            run.stdout,
            committed(file),
            "`schema {kind}` differs from schemas/{file}"
        );
    }
}

#[test]
fn results_files_written_by_real_runs_validate_against_the_schema() {
    use logzio_tokens::simulator::{FaultRates, SimConfig};
    // Runs that fill every part of the file: created tokens, an account given by name
    // (resolved_names), an unknown account (failures), ambiguous faults (possible_orphans),
    // and an imported token (source).
    let env = crate::util::Env::with_sim(SimConfig {
        seed: 3,
        faults: FaultRates {
            error_after_create: 0.3,
            drop_after_create: 0.1,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    let accounts = "version: 1\naccounts:\n  - id: 160343\n    tokens: [a, b, c, d, e, f]\n  - name: payments-staging\n    tokens: [ci]\n  - id: 999999\n    tokens: [x]\n  - id: 160345\n    tokens: [imported]\n";
    env.write("m.yaml", accounts);
    let secret = env.write("s.txt", "imported-secret");
    env.run(&[
        "import",
        "m.yaml",
        "--account-id",
        "160345",
        "--token-name",
        "imported",
        "--token-id",
        "424242",
        "--secret-file",
        secret.to_str().unwrap(),
    ])
    .expect_code(0);
    let run = env.run(&["apply", "m.yaml", "--yes"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let instance = env.json("m.results.json");
    // The run really filled the optional parts the schema describes.
    for part in ["resolved_names", "failures", "possible_orphans"] {
        assert!(
            instance[part].as_object().is_some_and(|o| !o.is_empty())
                || instance[part].as_array().is_some_and(|a| !a.is_empty()),
            "the run left `{part}` empty: {instance}"
        );
    }
    assert_eq!(
        instance["accounts"]["160345"]["imported"]["source"],
        "imported"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&committed("results.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // And a file that breaks the schema is caught (the check can fail).
    let bad = serde_json::json!({"version": 1, "updated_at": "x", "accounts": {"1": {"ci": {"token_id": "seven"}}}});
    assert!(!validator.is_valid(&bad));
}
