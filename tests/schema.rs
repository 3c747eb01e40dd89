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
    let generated = logzio_tokens::state::results::results_schema_text();
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
fn a_results_file_written_by_the_tool_validates_against_its_schema() {
    use logzio_tokens::state::{ResultsFile, TokenKey, TokenRecord};
    let mut r = ResultsFile::new(Some("https://api-eu.logz.io".into()));
    let key = TokenKey {
        account_id: 160343,
        token_name: "ci".into(),
    };
    r.insert(
        &key,
        TokenRecord {
            token_id: 7386,
            created_at: "2021-05-24T12:11:51Z".into(),
            source: None,
            ..TokenRecord::default()
        },
    );
    r.note_orphan(
        &key,
        "connection lost after the request was sent",
        "2026-11-23T19:59:58.000Z",
    );
    let instance: serde_json::Value = serde_json::from_slice(&r.to_bytes()).unwrap();
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
