//! The manifest loader, from the outside.
//!
//! - Case files: every `tests/cases/manifest/NAME.yaml` must fail to load, and its rendered error
//!   must equal `NAME.stderr` exactly; every `NAME.ok.yaml` must load, with the account and token
//!   counts its first line states (`# expect: accounts=N tokens=M`). Regenerate the expected
//!   files with `UPDATE_CASES=1 cargo test --test integration manifest`, then review the diff.
//! - The committed JSON Schema matches the code, and every example loads and satisfies it.
//! - Property tests: no input panics the loader, and every located problem has a line and column.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::Env;
use logzio_tokens::manifest::{
    self, AccountSelector, Endpoint, Manifest, ManifestError, load_bytes, load_str,
};
use logzio_tokens::region::Region;
use proptest::prelude::*;

/// A value that must never appear in any output.
const SECRET: &str = "supersecretvalue";

/// The environment every case file is loaded with.
fn fake_env(name: &str) -> Option<String> {
    match name {
        "HOME_REGION" => Some("eu".to_owned()),
        "SECRET_THING" => Some(SECRET.to_owned()),
        "TEAM" => Some("payments".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CASES: &str = "tests/cases/manifest";

/// The case files, by file name, in a stable order.
fn case_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate_dir().join(CASES))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn updating() -> bool {
    let updating = std::env::var_os("UPDATE_CASES").is_some_and(|v| v == "1");
    // Rewriting the expected files makes every case pass: never in CI.
    assert!(
        !(updating && std::env::var_os("CI").is_some_and(|v| v == "true")),
        "UPDATE_CASES=1 rewrites the expected output and cannot fail; it is refused under CI=true"
    );
    updating
}

fn load_case(file: &str) -> Result<Manifest, ManifestError> {
    let relative = Path::new(CASES).join(file);
    let bytes = std::fs::read(crate_dir().join(&relative)).unwrap();
    load_bytes(&relative, &bytes, &fake_env)
}

#[test]
fn error_cases_match_their_stderr_files() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in case_files() {
        let Some(stem) = file.strip_suffix(".yaml") else {
            continue;
        };
        if stem.ends_with(".ok") {
            continue;
        }
        checked += 1;
        let rendered = match load_case(&file) {
            Ok(_) => {
                failures.push(format!("{file}: loaded, but an error was expected"));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        assert!(
            !rendered.contains(SECRET),
            "{file}: the rendering shows an environment variable's value:\n{rendered}"
        );
        let expected_path = crate_dir().join(CASES).join(format!("{stem}.stderr"));
        if updating() {
            std::fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == rendered => {}
            Ok(expected) => failures.push(format!(
                "{file}: the error differs from {stem}.stderr\n--- expected\n{expected}--- actual\n{rendered}"
            )),
            Err(_) => failures.push(format!(
                "{file}: {stem}.stderr is missing; the error is\n{rendered}"
            )),
        }
    }
    assert!(checked >= 30, "only {checked} error cases found");
    assert!(
        failures.is_empty(),
        "{}\n\n(run `UPDATE_CASES=1 cargo test --test integration manifest` to accept the new \
         output, then review the diff)",
        failures.join("\n\n")
    );
}

#[test]
fn every_stderr_file_has_its_case() {
    let files = case_files();
    for file in &files {
        if let Some(stem) = file.strip_suffix(".stderr") {
            assert!(
                files.contains(&format!("{stem}.yaml")),
                "{file} has no {stem}.yaml"
            );
        }
    }
}

#[test]
fn ok_cases_load_with_the_stated_counts() {
    let mut checked = 0;
    for file in case_files() {
        if !file.ends_with(".ok.yaml") {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(crate_dir().join(CASES).join(&file)).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{file}: the first line must be `# expect: ...`"));
        let counts: BTreeMap<&str, usize> = expect
            .split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let manifest = load_case(&file).unwrap_or_else(|e| panic!("{file}:\n{e}"));
        assert_eq!(manifest.accounts.len(), counts["accounts"], "{file}");
        assert_eq!(manifest.token_count(), counts["tokens"], "{file}");
        assert_eq!(manifest.version, 1);
    }
    assert!(checked >= 5);
}

#[test]
fn env_case_expands_values_and_escapes() {
    let m = load_case("env.ok.yaml").unwrap();
    assert_eq!(m.endpoint, Some(Endpoint::Region(Region::Eu)));
    assert_eq!(m.default_tokens, ["ci-staging", "${literal}", "cost$"]);
    let selectors: Vec<_> = m.accounts.iter().map(|a| a.selector.clone()).collect();
    assert_eq!(
        selectors,
        [
            AccountSelector::Name("payments-prod".into()),
            AccountSelector::Name("payments-staging".into()),
            AccountSelector::Id(160_345),
        ]
    );
    assert_eq!(m.accounts[2].tokens, ["fallback", "x"]);
}

#[test]
fn full_case_builds_the_model() {
    let m = load_case("full.ok.yaml").unwrap();
    assert_eq!(m.path, Path::new(CASES).join("full.ok.yaml"));
    assert_eq!(m.endpoint, Some(Endpoint::Region(Region::Eu)));
    assert_eq!(m.settings.concurrency, Some(100));
    assert_eq!(m.settings.rate_per_second, Some(0.1));
    assert_eq!(m.settings.max_attempts, Some(20));
    assert_eq!(m.settings.request_timeout_seconds, Some(600.0));
    assert_eq!(m.default_tokens, ["log-shipping", "grafana"]);
    assert_eq!(m.accounts[0].selector, AccountSelector::Id(1));
    assert_eq!(m.accounts[0].tokens, m.default_tokens);
    assert_eq!((m.accounts[0].line, m.accounts[0].column), (13, 5));
    assert_eq!(m.accounts[1].tokens[..3], ["2024", "yes", "on"]);
    assert_eq!(m.accounts[1].tokens[3].chars().count(), 128);
    assert_eq!(
        m.accounts[3].selector,
        AccountSelector::Name("données ✓".into())
    );

    let m = load_case("api_url.ok.yaml").unwrap();
    assert_eq!(
        m.endpoint,
        Some(Endpoint::Url("http://127.0.0.1:8080/".into()))
    );
    assert_eq!(m.settings.rate_per_second, Some(2.5));
    assert_eq!(m.settings.concurrency, None);
}

#[test]
fn problems_are_ordered_and_reported_together() {
    let err = load_case("many_problems.yaml").unwrap_err();
    let ds = err.diagnostics();
    assert!(ds.len() >= 9, "{err}");
    assert!(
        ds.windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column))
    );
    assert_eq!(err.path(), Path::new(CASES).join("many_problems.yaml"));
    assert!(err.to_string().ends_with(&format!(
        "{} problems found in tests/cases/manifest/many_problems.yaml; nothing was sent.",
        ds.len()
    )));
}

#[test]
fn non_utf8_is_refused_with_the_place_of_the_first_bad_byte() {
    let path = Path::new("bad.yaml");
    let err = load_bytes(
        path,
        b"version: 1\naccounts:\n  - name: caf\xE9\n",
        &fake_env,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::NotUtf8 {
                line: 3,
                column: 14,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "bad.yaml:3:14: error: the manifest is not valid UTF-8 text (the first invalid byte is \
         here); save it as UTF-8"
    );
    assert!(err.diagnostics().is_empty());
}

#[test]
fn too_large_is_refused_before_parsing() {
    let limit = usize::try_from(manifest::MAX_MANIFEST_BYTES).unwrap();
    let text = "#".repeat(limit + 1);
    let err = load_str(Path::new("big.yaml"), &text, &fake_env).unwrap_err();
    assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("big.yaml: error: the manifest is ")
    );
}

#[test]
fn load_reads_the_file_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = manifest::load(&missing).unwrap_err();
    assert!(matches!(err, ManifestError::Io { .. }));
    let shown = err.to_string();
    assert!(
        shown.contains("missing.yaml") && shown.contains("cannot read the manifest"),
        "{shown}"
    );

    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"version: 1\n\xFF").unwrap();
    assert!(matches!(
        manifest::load(&path).unwrap_err(),
        ManifestError::NotUtf8 {
            line: 2,
            column: 1,
            ..
        }
    ));
}

/// A manifest with `n` accounts, ids 1..=n, all on the default tokens.
fn big_manifest(n: u32) -> String {
    let mut text = String::from("version: 1\ndefaults:\n  tokens: [log-shipping]\naccounts:\n");
    for id in 1..=n {
        text.push_str("  - id: ");
        text.push_str(&id.to_string());
        text.push('\n');
    }
    text
}

#[test]
fn a_hundred_thousand_accounts_load() {
    let text = big_manifest(100_000);
    let m = load_str(Path::new("big.yaml"), &text, &fake_env).unwrap();
    assert_eq!(m.accounts.len(), 100_000);
    assert_eq!(m.token_count(), 100_000);
    assert_eq!(m.accounts[99_999].selector, AccountSelector::Id(100_000));
}

#[test]
fn ten_thousand_duplicates_are_all_counted_but_not_all_shown() {
    let mut text = big_manifest(2);
    for _ in 0..10_000 {
        text.push_str("  - id: 1\n");
    }
    let err = load_str(Path::new("dup.yaml"), &text, &fake_env).unwrap_err();
    assert_eq!(err.diagnostics().len(), 10_000);
    let shown = err.to_string();
    assert!(shown.contains("... and 9950 more not shown"));
    assert!(shown.ends_with("10000 problems found in dup.yaml; nothing was sent."));
}

#[test]
fn many_keys_in_one_mapping_are_all_reported() {
    let mut text = String::from("version: 1\naccounts: [{id: 1, tokens: [a]}]\n");
    for i in 0..5_000 {
        text.push_str(&format!("k{i}: 1\n"));
    }
    text.push_str("k7: 2\n");
    let err = load_str(Path::new("keys.yaml"), &text, &fake_env).unwrap_err();
    let ds = err.diagnostics();
    assert_eq!(ds.len(), 5_001);
    let last = &ds[5_000];
    assert_eq!(last.message, "duplicate key `k7`");
    assert_eq!((last.notes[0].line, last.notes[0].column), (10, 1));
}

// ---------------------------------------------------------------------------------------------
// Schema and examples.

const SCHEMA_FILE: &str = "schemas/manifest.schema.json";

#[test]
fn schema_file_is_up_to_date() {
    let committed = std::fs::read_to_string(crate_dir().join(SCHEMA_FILE)).unwrap_or_default();
    assert!(
        committed == manifest::manifest_schema_text(),
        "{SCHEMA_FILE} differs from the schema the code generates; regenerate it with\n\n    \
         cargo run -- schema manifest > {SCHEMA_FILE}\n\nand review the diff"
    );
}

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(crate_dir().join(SCHEMA_FILE)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn yaml_to_json(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn examples_load_and_satisfy_the_schema() {
    let validator = schema_validator();
    let dir = crate_dir().join("examples");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    for path in names {
        let manifest = manifest::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert!(!manifest.accounts.is_empty());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/manifest.schema.json\n"),
            "{}: the first line must point editors at the schema",
            path.display()
        );
        let raw: Result<manifest::schema::RawManifest, _> = serde_saphyr::from_str(&text);
        assert!(
            raw.is_ok(),
            "{}: the schema types refuse it: {raw:?}",
            path.display()
        );
        let json = yaml_to_json(&text);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn quickstart_uses_the_simulator_accounts() {
    let m = manifest::load(&crate_dir().join("examples/quickstart.yaml")).unwrap();
    assert_eq!(
        m.endpoint, None,
        "the quickstart leaves the endpoint to the command line"
    );
    let known_ids = 160_343..=160_348;
    let known_names = [
        "payments-prod",
        "payments-staging",
        "search-prod",
        "search-staging",
        "data-platform",
        "ml-sandbox",
    ];
    for account in &m.accounts {
        match &account.selector {
            AccountSelector::Id(id) => assert!(known_ids.contains(id), "{id}"),
            AccountSelector::Name(name) => assert!(known_names.contains(&name.as_str()), "{name}"),
        }
    }
    assert!((8..=10).contains(&m.token_count()), "{}", m.token_count());
}

#[test]
fn the_schema_agrees_with_the_loader_on_plain_cases() {
    // Files without `${...}` that the loader accepts must satisfy the schema, and a few it
    // refuses must not.
    let validator = schema_validator();
    for file in [
        "minimal.ok.yaml",
        "anchors.ok.yaml",
        "api_url.ok.yaml",
        "flow.ok.yaml",
    ] {
        let text = std::fs::read_to_string(crate_dir().join(CASES).join(file)).unwrap();
        assert!(validator.is_valid(&yaml_to_json(&text)), "{file}");
    }
    for file in [
        "unknown_key_suggestion.yaml",
        "region_and_api_url.yaml",
        "bad_ids.yaml",
        "duplicate_token.yaml",
        "long_token.yaml",
        "control_char_token.yaml",
        "numeric_token.yaml",
        "id_and_name.yaml",
        "empty_accounts.yaml",
        "unsupported_version.yaml",
        "unknown_region.yaml",
        "settings_out_of_range.yaml",
    ] {
        let text = std::fs::read_to_string(crate_dir().join(CASES).join(file)).unwrap();
        assert!(!validator.is_valid(&yaml_to_json(&text)), "{file}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn check_never_panics(result: Result<Manifest, ManifestError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        for d in e.diagnostics() {
            prop_assert!(d.line >= 1 && d.column >= 1, "{d:?}");
            for n in &d.notes {
                prop_assert!(n.line >= 1 && n.column >= 1, "{n:?}");
            }
        }
        let shown = e.to_string();
        prop_assert!(!shown.is_empty());
        prop_assert!(!shown.contains(SECRET));
    }
    Ok(())
}

/// YAML-ish text: manifest words, YAML punctuation, `${...}`, odd characters and line breaks.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("version: 1\n".to_owned()),
        Just("accounts:\n".to_owned()),
        Just("  - id: 160343\n".to_owned()),
        Just("  - name: x\n".to_owned()),
        Just("    tokens: [a, b]\n".to_owned()),
        Just("defaults: {tokens: [c]}\n".to_owned()),
        Just("region: eu\n".to_owned()),
        Just("${SECRET_THING}".to_owned()),
        Just("${".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\t".to_owned()),
        Just("é".to_owned()),
        Just("\r\n".to_owned()),
        "[ -~]{0,12}",
        "[\\[\\]{}:,#&*!|>'\"%@` -]{1,4}",
        "\n {0,6}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_never_panics(load_bytes(Path::new("p.yaml"), &bytes, &fake_env))?;
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        check_never_panics(load_str(Path::new("p.yaml"), &text, &fake_env))?;
    }

    #[test]
    fn generated_manifests_load_and_round_trip(
        defaults in prop::option::of(prop::collection::btree_set("[a-z][a-z0-9-]{0,20}", 1..4)),
        accounts in prop::collection::btree_map(
            1u32..=2_147_483_647,
            (any::<bool>(), prop::option::of(prop::collection::btree_set("[a-zA-Z0-9 _.-]{1,30}", 1..5))),
            1..20,
        ),
        flow in any::<bool>(),
    ) {
        let mut text = String::from("version: 1\n");
        if let Some(defaults) = &defaults {
            let names: Vec<String> = defaults.iter().map(|n| format!("{n:?}")).collect();
            text.push_str(&format!("defaults:\n  tokens: [{}]\n", names.join(", ")));
        }
        text.push_str("accounts:\n");
        let mut expected = Vec::new();
        for (id, (by_name, tokens)) in &accounts {
            let selector = if *by_name {
                AccountSelector::Name(format!("acct-{id}"))
            } else {
                AccountSelector::Id(*id)
            };
            let key = match &selector {
                AccountSelector::Id(id) => format!("id: {id}"),
                AccountSelector::Name(name) => format!("name: {name}"),
            };
            let tokens = tokens.clone().or_else(|| defaults.clone());
            let Some(tokens) = tokens else { continue };
            match (&selector, flow) {
                (_, true) => {
                    let names: Vec<String> = tokens.iter().map(|n| format!("{n:?}")).collect();
                    text.push_str(&format!("  - {{{key}, tokens: [{}]}}\n", names.join(", ")));
                }
                (_, false) => {
                    text.push_str(&format!("  - {key}\n    tokens:\n"));
                    for n in &tokens {
                        text.push_str(&format!("      - {n:?}\n"));
                    }
                }
            }
            expected.push((selector, tokens.into_iter().collect::<Vec<_>>()));
        }
        prop_assume!(!expected.is_empty());
        let m = load_str(Path::new("gen.yaml"), &text, &fake_env)
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
        prop_assert_eq!(m.accounts.len(), expected.len());
        let got: Vec<_> = m.accounts.into_iter().map(|a| (a.selector, a.tokens)).collect();
        prop_assert_eq!(got, expected);
    }
}

/// The ```yaml blocks of a Markdown file that are manifests (a top-level `accounts:`).
fn manifest_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => {
                block = Some((i + 2, String::new()))
            }
            Some((start, text)) if line.trim_start().starts_with("```") => {
                if text.lines().any(|l| l.starts_with("accounts:")) {
                    out.push((*start, std::mem::take(text)));
                }
                block = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Validates each manifest text with the binary; returns the failures.
fn invalid_manifests(texts: Vec<(String, String)>) -> Vec<String> {
    let env = Env::new();
    let mut bad = Vec::new();
    for (i, (label, text)) in texts.into_iter().enumerate() {
        let name = format!("example-{i}.yaml");
        env.write(&name, &text);
        let run = env.run(&["validate", &name]);
        if run.code != Some(0) {
            bad.push(format!("{label}:\n{}", run.stderr));
        }
    }
    bad
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_manifest_in_examples_validates() {
    let mut texts = Vec::new();
    let mut dirs = vec![repo_file("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.lines().any(|l| l.starts_with("accounts:")) {
                    texts.push((path.display().to_string(), text));
                }
            }
        }
    }
    assert!(texts.len() >= 3, "found only {} manifests", texts.len());
    let bad = invalid_manifests(texts);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Every ```yaml manifest of README.md and docs/*.md validates. Ignored until the README's
/// example is fixed (issue 26: `tokens: [ci-${DEPLOY_ENV:-staging}]` must be quoted); the
/// fixed text is in the surface report. Run with `--ignored`.
#[test]
#[ignore = "README.md's manifest example does not parse until its fix is integrated"]
fn every_manifest_in_the_readme_and_docs_validates() {
    let mut files = vec![repo_file("README.md")];
    if let Ok(dir) = std::fs::read_dir(repo_file("docs")) {
        for entry in dir {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut texts = Vec::new();
    for f in &files {
        let md = std::fs::read_to_string(f).unwrap();
        for (line, text) in manifest_blocks(&md) {
            texts.push((format!("{}:{line}", f.display()), text));
        }
    }
    assert!(!texts.is_empty(), "no manifest example found in {files:?}");
    let bad = invalid_manifests(texts);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A tab in indentation is reported where it is (it was reported a line above, at the start
/// of the scalar the scanner was reading); `${…}` in a flow sequence gets the hint to quote it.
#[test]
fn a_tab_is_reported_at_its_place_and_an_unquoted_variable_gets_a_hint() {
    let env = Env::new();
    env.write(
        "tab.yaml",
        "version: 1\naccounts:\n  - id: 1\n\ttokens: [ci]\n",
    );
    let run = env.run(&["validate", "tab.yaml"]);
    run.expect_code(2);
    assert!(
        run.stderr.starts_with("tab.yaml:4:1: error:"),
        "{}",
        run.stderr
    );
    env.write(
        "flow.yaml",
        "version: 1\naccounts:\n  - id: 1\n    tokens: [ci-${DEPLOY_ENV:-staging}]\n",
    );
    let run = env.run(&["validate", "flow.yaml"]);
    run.expect_code(2);
    assert!(run.stderr.contains("must be quoted"), "{}", run.stderr);
    env.write(
        "quoted.yaml",
        "version: 1\naccounts:\n  - id: 1\n    tokens: [\"ci-${DEPLOY_ENV:-staging}\"]\n",
    );
    env.run(&["validate", "quoted.yaml"]).expect_code(0);
}
