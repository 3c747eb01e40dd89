//! Hostile input: a corpus of bad manifests and corrupt state files under
//! `tests/cases/hostile/`, plus inputs generated here (a 70 MB manifest, a symlink loop, a
//! directory, an endless stream), fed to the real binary. A bad manifest must be refused by
//! `validate`, `plan` and `apply` with exit 2, a message naming the file (and the line and column
//! where the content is at fault), and not a single request sent. A corrupt results, secrets or
//! journal file must stop `apply` and `plan` with exit 3, a message naming the file, the file
//! left as it was, and no token-creation request sent. A proptest feeds arbitrary bytes and
//! YAML-ish text to the loader itself: it never panics, and every diagnostic is located at
//! line ≥ 1 and column ≥ 1, within the text.
//!
//! Corpus files are named by what they break: `syn_` (YAML syntax), `type_` (wrong types),
//! `sem_` (rules), `res_` (resource limits), `enc_` (encodings, garbage, empty), `state_`
//! (corrupt state files; the part after `state_results_`, `state_secrets_` or `state_journal_`
//! says how).
//!
//! Soak (more proptest cases):
//!
//! ```text
//! LOGZIO_TOKENS_SOAK=1 cargo test --release --test integration hostile -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use logzio_tokens::manifest::{ManifestError, load_bytes};
use logzio_tokens::simulator::SimConfig;
use proptest::prelude::*;

use crate::chaos::soak;
use crate::util::{Env, Run, manifest_yaml, wait_with_timeout};

/// Where a manifest error must be reported.
#[derive(Debug, Clone, Copy)]
enum Loc {
    /// `FILE:LINE:COLUMN:`.
    At(u32, u32),
    /// `FILE:LINE:` with some column.
    Line(u32),
    /// Each of these `FILE:LINE:COLUMN:`.
    All(&'static [(u32, u32)]),
    /// Some `FILE:LINE:COLUMN:` (resource limits: where the limit trips is the tool's choice).
    Somewhere,
    /// `FILE:` alone: the file as a whole is at fault (empty).
    File,
}

/// Every bad manifest of the corpus and where its problem is.
const CASES: &[(&str, Loc)] = &[
    ("syn_unclosed_flow_seq.yaml", Loc::At(4, 13)),
    ("syn_unclosed_quote.yaml", Loc::At(4, 14)),
    ("syn_bad_indent.yaml", Loc::Line(4)),
    ("syn_tab_indent.yaml", Loc::Line(4)),
    ("syn_double_colon.yaml", Loc::At(3, 15)),
    ("syn_bad_escape.yaml", Loc::Line(4)),
    ("syn_undefined_alias.yaml", Loc::At(4, 13)),
    ("syn_self_alias.yaml", Loc::At(4, 13)),
    ("syn_bad_directive.yaml", Loc::At(1, 1)),
    ("syn_complex_key.yaml", Loc::Line(3)),
    ("syn_stray_flow_end.yaml", Loc::At(2, 11)),
    ("syn_multi_document.yaml", Loc::At(5, 1)),
    ("syn_crlf_error.yaml", Loc::At(4, 18)),
    ("syn_bom_then_error.yaml", Loc::At(4, 13)),
    ("type_version_string.yaml", Loc::At(1, 10)),
    ("type_version_float.yaml", Loc::At(1, 10)),
    ("type_accounts_mapping.yaml", Loc::Line(3)),
    ("type_accounts_string.yaml", Loc::At(2, 11)),
    ("type_account_scalar.yaml", Loc::At(3, 5)),
    ("type_id_string.yaml", Loc::At(3, 9)),
    ("type_id_float.yaml", Loc::At(3, 9)),
    ("type_id_bool.yaml", Loc::At(3, 9)),
    ("type_id_list.yaml", Loc::At(3, 9)),
    ("type_tokens_string.yaml", Loc::At(4, 13)),
    ("type_tokens_nested_list.yaml", Loc::At(4, 14)),
    ("type_token_mapping.yaml", Loc::At(4, 14)),
    ("type_token_null.yaml", Loc::At(4, 18)),
    ("type_settings_string.yaml", Loc::At(3, 16)),
    ("type_rate_nan.yaml", Loc::At(3, 20)),
    ("type_timeout_inf.yaml", Loc::At(3, 28)),
    ("type_defaults_tokens_mapping.yaml", Loc::At(3, 11)),
    ("sem_version_2.yaml", Loc::At(1, 10)),
    ("sem_id_zero.yaml", Loc::At(3, 9)),
    ("sem_id_negative.yaml", Loc::At(3, 9)),
    ("sem_id_overflow.yaml", Loc::At(3, 9)),
    ("sem_id_over_u32.yaml", Loc::At(3, 9)),
    ("sem_empty_token.yaml", Loc::At(4, 18)),
    ("sem_long_token.yaml", Loc::At(4, 18)),
    ("sem_control_char_token.yaml", Loc::At(4, 14)),
    ("sem_newline_token.yaml", Loc::At(4, 14)),
    ("sem_nul_token.yaml", Loc::At(4, 14)),
    ("sem_duplicate_token.yaml", Loc::At(4, 27)),
    ("sem_duplicate_account.yaml", Loc::At(5, 9)),
    ("sem_duplicate_key.yaml", Loc::At(4, 5)),
    ("sem_id_and_name.yaml", Loc::Line(3)),
    ("sem_neither_id_nor_name.yaml", Loc::Line(3)),
    ("sem_unknown_region.yaml", Loc::At(2, 9)),
    ("sem_region_and_api_url.yaml", Loc::Line(3)),
    ("sem_api_url_not_url.yaml", Loc::At(2, 10)),
    // Regression: validate used to accept what apply then refused without a place.
    ("sem_insecure_api_url.yaml", Loc::At(2, 10)),
    // Regression: unknown tags used to be dropped silently (`!vault` text became a token name).
    ("sem_unknown_tags.yaml", Loc::At(3, 9)),
    ("sem_concurrency_zero.yaml", Loc::At(3, 16)),
    ("sem_unknown_setting.yaml", Loc::At(3, 3)),
    ("sem_unknown_top_key.yaml", Loc::All(&[(1, 1), (2, 1)])),
    ("sem_missing_env.yaml", Loc::At(4, 15)),
    ("sem_env_in_id.yaml", Loc::At(3, 9)),
    ("sem_no_accounts.yaml", Loc::Line(1)),
    ("sem_empty_accounts.yaml", Loc::Line(2)),
    ("sem_root_list.yaml", Loc::At(1, 1)),
    ("sem_root_scalar.yaml", Loc::At(1, 1)),
    ("sem_merge_key_scalar.yaml", Loc::Line(3)),
    ("res_deep_flow.yaml", Loc::Somewhere),
    ("res_deep_block.yaml", Loc::Somewhere),
    ("res_billion_laughs.yaml", Loc::Somewhere),
    ("res_aliases_then_unknown_key.yaml", Loc::At(15, 1)),
    ("enc_latin1.yaml", Loc::At(4, 17)),
    ("enc_utf16.yaml", Loc::At(1, 1)),
    ("enc_nul_byte.yaml", Loc::At(3, 15)),
    ("enc_lone_surrogate.yaml", Loc::At(4, 14)),
    ("enc_overlong.yaml", Loc::At(4, 14)),
    ("enc_elf_header.yaml", Loc::At(1, 25)),
    ("enc_zip_header.yaml", Loc::At(1, 11)),
    ("enc_random_bytes.yaml", Loc::Somewhere),
    ("enc_empty.yaml", Loc::File),
    ("enc_bom_only.yaml", Loc::File),
    ("enc_comments_only.yaml", Loc::File),
    ("enc_null_document.yaml", Loc::File),
    ("enc_whitespace_only.yaml", Loc::File),
];

/// Which state file a corrupt case replaces, and the line its message must name (if any).
const STATE_CASES: &[(&str, Option<&str>)] = &[
    ("state_results_truncated.json", Some("line 6")),
    ("state_results_version_2.json", Some("version 2")),
    ("state_results_wrong_types.json", Some("line 1")),
    ("state_results_bad_account_key.json", Some("line 1")),
    ("state_results_unknown_field.json", Some("line 1")),
    ("state_results_array.json", Some("line 1")),
    ("state_results_yaml.json", Some("line 1")),
    ("state_results_empty.json", None),
    ("state_results_nul.json", Some("line 1")),
    ("state_secrets_truncated.json", Some("line 1")),
    ("state_secrets_version_9.json", Some("version 9")),
    ("state_secrets_wrong_types.json", Some("line 1")),
    ("state_secrets_null.json", Some("line 1")),
    ("state_secrets_secret_in_token_id.json", Some("line 1")),
    ("state_journal_bad_middle_line.jsonl", Some("line 3")),
    ("state_journal_wrong_types.jsonl", Some("line 3")),
    ("state_journal_binary_middle.jsonl", Some("line 2")),
    ("state_journal_unknown_kind.jsonl", Some("line 2")),
    ("state_journal_secret_in_token_id.jsonl", Some("line 2")),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/hostile")
}

fn corpus(path: &str) -> PathBuf {
    corpus_dir().join(path)
}

/// The `FILE:LINE:COLUMN:` places in a stderr, for `file`.
fn places(stderr: &str, file: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (i, _) in stderr.match_indices(file) {
        let rest = &stderr[i + file.len()..];
        let mut parts = rest.splitn(4, ':');
        let (Some(""), Some(l), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(l), Ok(c)) = (l.parse(), c.parse()) {
            out.push((l, c));
        }
    }
    out
}

/// Checks one refusal of a bad manifest: exit 2, the file named, the place as expected.
fn check_manifest_refusal(what: &str, run: &Run, file: &str, loc: Loc) -> Vec<String> {
    let mut problems = Vec::new();
    if run.code != Some(2) {
        problems.push(format!(
            "{what}: exit {:?}, expected 2\n{}",
            run.code, run.stderr
        ));
        return problems;
    }
    if run.stderr.contains("panicked") {
        problems.push(format!("{what}: panicked\n{}", run.stderr));
    }
    if !run.stderr.contains(file) {
        problems.push(format!(
            "{what}: the message does not name {file}\n{}",
            run.stderr
        ));
        return problems;
    }
    let found = places(&run.stderr, file);
    let ok = match loc {
        Loc::At(l, c) => found.contains(&(l, c)),
        Loc::Line(l) => found.iter().any(|(fl, _)| *fl == l),
        Loc::All(all) => all.iter().all(|p| found.contains(p)),
        Loc::Somewhere => found.iter().any(|(l, c)| *l >= 1 && *c >= 1),
        Loc::File => run.stderr.contains(&format!("{file}: ")),
    };
    if !ok {
        problems.push(format!(
            "{what}: expected the problem at {loc:?}, found places {found:?}\n{}",
            run.stderr
        ));
    }
    problems
}

#[test]
fn the_corpus_lists_every_file_and_has_at_least_forty_bad_manifests() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES
        .iter()
        .map(|(f, _)| (*f).to_owned())
        .chain(STATE_CASES.iter().map(|(f, _)| (*f).to_owned()))
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every corpus file must be listed, once");
    assert!(CASES.len() >= 40, "{} bad manifests", CASES.len());
}

#[test]
fn validate_refuses_every_bad_manifest_at_its_place() {
    let env = Env::new();
    let mut problems = Vec::new();
    for (file, loc) in CASES {
        let path = corpus(file);
        let run = env.run(&["validate", path.to_str().unwrap()]);
        problems.extend(check_manifest_refusal(
            &format!("validate {file}"),
            &run,
            path.to_str().unwrap(),
            *loc,
        ));
        if !run.stdout.is_empty() {
            problems.push(format!("validate {file}: wrote to stdout: {}", run.stdout));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn plan_and_apply_send_nothing_for_a_bad_manifest() {
    let env = Env::with_sim(SimConfig::default());
    let results = env.path("r.json");
    let secrets = env.path("s.json");
    let mut problems = Vec::new();
    for (file, loc) in CASES {
        let path = corpus(file);
        let p = path.to_str().unwrap();
        let state = [
            "--results",
            results.to_str().unwrap(),
            "--secrets",
            secrets.to_str().unwrap(),
        ];
        for cmd in [&["apply", p, "--yes"][..], &["plan", p][..]] {
            let args: Vec<&str> = cmd.iter().chain(state.iter()).copied().collect();
            let run = env.run(&args);
            problems.extend(check_manifest_refusal(
                &format!("{} {file}", cmd[0]),
                &run,
                p,
                *loc,
            ));
            let requests = env.sim().counters().requests;
            if requests != 0 {
                problems.push(format!(
                    "{} {file}: the simulator received {requests} requests",
                    cmd[0]
                ));
                break;
            }
        }
    }
    assert!(
        !results.exists() && !secrets.exists(),
        "state files were written"
    );
    assert!(!env.path("r.journal").exists(), "a journal was written");
    // Nothing appeared beside the corpus either.
    let stray: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".results.") || n.contains(".secrets.") || n.ends_with(".lock"))
        .collect();
    assert!(
        stray.is_empty(),
        "files written beside the corpus: {stray:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Runs validate, plan and apply on a generated bad manifest: each must exit 2 naming the file,
/// with `needle` in the message, and send nothing.
fn refuse_generated(env: &Env, path: &Path, needle: &str) {
    let p = path.to_str().unwrap();
    let results = env.path("r.json");
    let secrets = env.path("s.json");
    let state = [
        "--results",
        results.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
    ];
    for cmd in [
        &["validate", p][..],
        &["plan", p][..],
        &["apply", p, "--yes"][..],
    ] {
        let args: Vec<&str> = if cmd[0] == "validate" {
            cmd.to_vec()
        } else {
            cmd.iter().chain(state.iter()).copied().collect()
        };
        let run = env.run_cmd(env.cmd().args(&args), Duration::from_secs(60));
        assert_eq!(run.code, Some(2), "{args:?}\n{}", run.stderr);
        assert!(
            run.stderr.contains(p),
            "{args:?}: file not named\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(needle),
            "{args:?}: expected {needle:?} in\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert_eq!(env.sim().counters().requests, 0, "a request was sent");
    assert!(!results.exists() && !secrets.exists());
}

#[test]
fn a_seventy_megabyte_manifest_is_refused_at_the_size_limit() {
    let env = Env::with_sim(SimConfig::default());
    let path = env.path("huge.yaml");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(b"version: 1\naccounts:\n").unwrap();
    let line =
        b"  - id: 160343\n    tokens: [ci]\n# padding padding padding padding padding padding\n";
    let mut written = 0usize;
    while written < 70 * 1024 * 1024 {
        f.write_all(line).unwrap();
        written += line.len();
    }
    f.flush().unwrap();
    drop(f);
    refuse_generated(&env, &path, "limit");
}

#[test]
fn a_symlink_loop_a_directory_and_a_missing_file_are_refused() {
    let env = Env::with_sim(SimConfig::default());
    let a = env.path("loop-a.yaml");
    let b = env.path("loop-b.yaml");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    refuse_generated(&env, &a, "cannot read");
    let dir = env.path("dir.yaml");
    std::fs::create_dir(&dir).unwrap();
    refuse_generated(&env, &dir, "cannot read");
    refuse_generated(&env, &env.path("missing.yaml"), "cannot read");
}

/// Feeds `bytes` to the binary's stdin (as `/dev/stdin`), up to a broken pipe.
fn feed_stdin(cmd: &mut Command, bytes: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in bytes {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let run = Run::from(wait_with_timeout(child, Duration::from_secs(60)));
    writer.join().unwrap();
    run
}

/// 80 MB of a YAML comment, in 1 MB chunks: more than the limit, bounded so that a tool that
/// reads without a bound still finishes.
fn endless_comment() -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    std::iter::once(b"version: 1\n".to_vec()).chain((0..80).map(|_| {
        let mut v = vec![b'#'; 1024 * 1024];
        v[1024 * 1024 - 1] = b'\n';
        v
    }))
}

#[test]
fn validate_stops_reading_an_endless_stream_at_the_size_limit() {
    let env = Env::new();
    let run = feed_stdin(
        env.cmd().args(["validate", "/dev/stdin"]),
        endless_comment(),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("/dev/stdin"), "{}", run.stderr);
    assert!(run.stderr.contains("limit"), "{}", run.stderr);
}

#[test]
fn apply_stops_reading_an_endless_stream_at_the_size_limit() {
    let env = Env::with_sim(SimConfig::default());
    let run = feed_stdin(
        env.cmd().args([
            "apply",
            "/dev/stdin",
            "--yes",
            "--results",
            env.path("r.json").to_str().unwrap(),
            "--secrets",
            env.path("s.json").to_str().unwrap(),
        ]),
        endless_comment(),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("limit"),
        "apply must refuse the stream as too large, as validate does:\n{}",
        run.stderr
    );
    assert_eq!(env.sim().counters().requests, 0);
}

#[test]
fn apply_reads_a_manifest_from_a_pipe() {
    // `logzio-tokens apply <(render-manifest) --yes` is the same as this.
    let env = Env::with_sim(SimConfig::default());
    let manifest = manifest_yaml(&[160_343], &["ci", "grafana"]).into_bytes();
    let results = env.path("r.json");
    let run = feed_stdin(
        env.cmd().args([
            "apply",
            "/dev/stdin",
            "--yes",
            "--results",
            results.to_str().unwrap(),
            "--secrets",
            env.path("s.json").to_str().unwrap(),
        ]),
        std::iter::once(manifest),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(env.sim().ground_truth().len(), 2);
}

#[test]
fn validate_reads_a_manifest_from_a_pipe() {
    let env = Env::new();
    let manifest = manifest_yaml(&[160_343], &["ci", "grafana"]).into_bytes();
    let run = feed_stdin(
        env.cmd().args(["validate", "/dev/stdin"]),
        std::iter::once(manifest),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("2 tokens"), "{}", run.stdout);
}

/// A workspace with a valid manifest, a simulator, and the corrupt `case` in place of its
/// state file.
fn corrupt_state_env(case: &str) -> (Env, PathBuf, PathBuf, Vec<u8>) {
    let env = Env::with_sim(SimConfig::default());
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    let target = if case.starts_with("state_results_") {
        env.path("r.json")
    } else if case.starts_with("state_secrets_") {
        env.path("s.json")
    } else {
        env.path("r.journal")
    };
    let bytes = std::fs::read(corpus(case)).unwrap();
    std::fs::write(&target, &bytes).unwrap();
    if target.ends_with("s.json") || target.ends_with("r.journal") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let manifest = env.path("m.yaml");
    (env, manifest, target, bytes)
}

fn state_args(env: &Env) -> [String; 4] {
    [
        "--results".into(),
        env.path("r.json").display().to_string(),
        "--secrets".into(),
        env.path("s.json").display().to_string(),
    ]
}

#[test]
fn a_corrupt_state_file_stops_apply_and_plan_before_any_create() {
    let mut problems = Vec::new();
    for (case, detail) in STATE_CASES {
        let (env, manifest, target, bytes) = corrupt_state_env(case);
        let m = manifest.to_str().unwrap();
        for cmd in [&["apply", m, "--yes"][..], &["plan", m][..]] {
            let run = env.run_cmd(
                env.cmd().args(cmd).args(state_args(&env)),
                Duration::from_secs(60),
            );
            let what = format!("{} with {case}", cmd[0]);
            if run.code != Some(3) {
                problems.push(format!(
                    "{what}: exit {:?}, expected 3\n{}",
                    run.code, run.stderr
                ));
                continue;
            }
            if !run.stderr.contains(&target.display().to_string()) {
                problems.push(format!(
                    "{what}: the message does not name the file\n{}",
                    run.stderr
                ));
            }
            if let Some(d) = detail
                && !run.stderr.contains(d)
            {
                problems.push(format!(
                    "{what}: the message does not say {d:?}\n{}",
                    run.stderr
                ));
            }
            if run.stderr.contains("panicked") {
                problems.push(format!("{what}: panicked\n{}", run.stderr));
            }
        }
        let counters = env.sim().counters();
        if counters.created != 0 || !env.sim().ground_truth().is_empty() {
            problems.push(format!("{case}: a token was created"));
        }
        if std::fs::read(&target).unwrap() != bytes {
            problems.push(format!("{case}: the corrupt file was changed"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn a_corrupt_secrets_file_or_journal_never_shows_a_secret_in_the_message() {
    for (case, secret) in [
        (
            "state_secrets_secret_in_token_id.json",
            "5b0c2f3e-7d1a-4f7e-9a2b-leakcheck0001",
        ),
        (
            "state_journal_secret_in_token_id.jsonl",
            "6c1d3a4f-8e2b-4a8f-8b3c-leakcheck0002",
        ),
    ] {
        let (env, manifest, _, _) = corrupt_state_env(case);
        let run = env.run_cmd(
            env.cmd()
                .args(["apply", manifest.to_str().unwrap(), "--yes"])
                .args(state_args(&env)),
            Duration::from_secs(60),
        );
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{case}: the message shows the secret:\n{}",
            run.stderr
        );
    }
}

/// The planted journals' records: the intent for 160343/ci, and its outcome with `SECRET`.
const SECRET: &str = "c498fbc3-a3ac-4676-ad09-689854b5cbbd";
const CI_INTENT: &str = r#"{"kind":"intent","seq":1,"account_id":160343,"token_name":"ci","attempt":1,"at":"2026-01-01T00:00:00.000Z"}"#;
const CI_CREATED: &str = r#"{"kind":"outcome","seq":1,"account_id":160343,"token_name":"ci","result":"created","token_id":7386,"token":"c498fbc3-a3ac-4676-ad09-689854b5cbbd","created_at":"2021-05-24T12:11:51Z","at":"2026-01-01T00:00:01.000Z"}"#;

/// After an apply of ci and grafana over a planted journal holding ci's secret: ci was
/// recorded from the journal (id and secret) and only grafana was created.
fn check_ci_recovered_and_only_grafana_created(env: &Env, run: &Run) {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        env.json("r.json")["accounts"]["160343"]["ci"]["token_id"],
        7386
    );
    assert_eq!(
        env.json("s.json")["accounts"]["160343"]["ci"]["token"],
        SECRET
    );
    let gt = env.sim().ground_truth();
    assert_eq!(gt.len(), 1, "{gt:?}");
    assert_eq!(gt[0].name, "grafana");
    assert!(!run.stderr.contains(SECRET));
}

/// Leaves `bytes` as the journal an interrupted run left, 0600 as the tool creates it (a
/// journal others could have written is refused).
fn plant_journal(env: &Env, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(env.path("r.journal"), bytes).unwrap();
    std::fs::set_permissions(
        env.path("r.journal"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// Runs the binary with `args` and this file's state paths.
fn run_with_state(env: &Env, args: &[&str]) -> Run {
    env.run_cmd(
        env.cmd().args(args).args(state_args(env)),
        Duration::from_secs(60),
    )
}

#[test]
fn a_journal_cut_short_at_its_last_line_is_recovered() {
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    let mut journal = format!("{CI_INTENT}\n{CI_CREATED}\n");
    journal.push_str(r#"{"kind":"intent","seq":2,"account_id":160343,"tok"#);
    plant_journal(&env, journal.as_bytes());
    let run = run_with_state(&env, &["apply", manifest.to_str().unwrap(), "--yes"]);
    check_ci_recovered_and_only_grafana_created(&env, &run);
}

#[test]
fn zeros_among_a_journals_records_are_reported_and_the_records_around_them_recovered() {
    // A write that failed part way, or one the disk lost: zeros between records.
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write("m.yaml", &manifest_yaml(&[160_343], &["ci", "grafana"]));
    let mut journal = CI_INTENT.as_bytes().to_vec();
    journal.extend(b"\n{\"kind\":\"intent\",\"seq\":2,\"acc");
    let gap_at = journal.len();
    journal.extend([0; 700]);
    journal.extend(b"\n");
    journal.extend(CI_CREATED.as_bytes());
    journal.extend(b"\n");
    journal.extend([0; 4096]);
    plant_journal(&env, &journal);
    let warning = format!(
        "has zeros among its records at byte {gap_at}: a write there failed or was lost (a full or failing disk, a power loss), and the records it held are gone. A token created by a request written between 2026-01-01T00:00:00.000Z and 2026-01-01T00:00:01.000Z may exist without a record"
    );
    let plan = run_with_state(&env, &["plan", manifest.to_str().unwrap()]);
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    assert!(plan.stderr.contains(&warning), "{}", plan.stderr);
    let run = run_with_state(&env, &["apply", manifest.to_str().unwrap(), "--yes"]);
    check_ci_recovered_and_only_grafana_created(&env, &run);
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(run.stderr.contains("Manage Tokens"), "{}", run.stderr);
    assert!(!plan.stderr.contains(SECRET));
}

// --- the loader, fed arbitrary input ---------------------------------------------------------

fn fake_env(name: &str) -> Option<String> {
    match name {
        "X" => Some("x".into()),
        "N" => Some("160343".into()),
        _ => None,
    }
}

/// Loads `bytes`; on error, every place is within the text and rendering works.
fn load_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = Path::new("fuzz.yaml");
    let lines = u32::try_from(bytes.split(|b| *b == b'\n').count()).unwrap();
    match load_bytes(path, bytes, &fake_env) {
        Ok(m) => {
            prop_assert!(m.token_count() >= 1, "a valid manifest asks for no token");
        }
        Err(e) => {
            for d in e.diagnostics() {
                prop_assert!(d.line >= 1 && d.column >= 1, "{d:?}");
                prop_assert!(d.line <= lines, "line {} of {lines}: {d:?}", d.line);
                for n in &d.notes {
                    prop_assert!(n.line >= 1 && n.column >= 1, "{n:?}");
                    prop_assert!(n.line <= lines, "note line {} of {lines}: {n:?}", n.line);
                }
            }
            if let ManifestError::NotUtf8 { line, column, .. } = &e {
                prop_assert!(*line >= 1 && *column >= 1 && *line <= lines);
            }
            if let ManifestError::Invalid { diagnostics, .. } = &e {
                prop_assert!(
                    !diagnostics.is_empty(),
                    "an Invalid error without diagnostics"
                );
            }
            let text = e.to_string();
            prop_assert!(text.contains("fuzz.yaml"), "{text}");
        }
    }
    Ok(())
}

/// Fragments of manifests, broken and whole.
const PIECES: &[&str] = &[
    "version: 1\n",
    "version: ",
    "accounts:\n",
    "accounts: ",
    "  - id: ",
    "  - name: ",
    "    tokens: ",
    "defaults:\n  tokens: ",
    "settings:\n  concurrency: ",
    "region: eu\n",
    "api_url: https://x\n",
    "160343",
    "-1",
    "0x1F",
    "1e9",
    "4294967296",
    ".nan",
    "~",
    "null",
    "true",
    "[",
    "]",
    "{",
    "}",
    ",",
    ", ",
    ": ",
    ":",
    "- ",
    "-",
    "? ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "!!str ",
    "!!int ",
    "!x ",
    "\"",
    "'",
    "\\",
    "\\u0000",
    "#",
    " # c\n",
    "\n",
    "\r\n",
    "\t",
    "  ",
    "    ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "${X}",
    "${N}",
    "${Y:-d}",
    "${",
    "$${X}",
    "ci",
    "grafana",
    "é",
    "\u{FEFF}",
    "\u{0}",
    "\u{7}",
    "💥",
    "|\n",
    ">-\n",
    "|2\n",
];

/// Valid manifests to mutate.
const VALID: &[&str] = &[
    "version: 1\naccounts:\n  - id: 160343\n    tokens: [ci, grafana]\n  - name: payments-prod\n",
    "version: 1\ndefaults:\n  tokens: [a]\nsettings:\n  concurrency: 4\n  rate_per_second: 2.5\naccounts:\n  - id: 1\n  - id: 2\n    tokens: [\"${X}\", b]\n",
    "version: 1\nregion: eu\naccounts: [{id: 5, tokens: [&t x, y]}, {id: 6, tokens: [*t]}]\n",
];

fn cases() -> u32 {
    if soak() { 4096 } else { 256 }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_loader_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        load_checked(&bytes)?;
    }

    #[test]
    fn the_loader_survives_yamlish_text(pieces in prop::collection::vec(prop::sample::select(PIECES), 0..60)) {
        load_checked(pieces.concat().as_bytes())?;
    }

    #[test]
    fn the_loader_survives_mutated_manifests(
        base in prop::sample::select(VALID),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        load_checked(&bytes)?;
    }
}
