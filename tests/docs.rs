//! The documentation stays true: every relative link in the README, CONTRIBUTING, SECURITY,
//! the changelog and `docs/` resolves (the file, and the heading an anchor names); the README's
//! set-up commands and every command of its tour run against the simulator; every shell block
//! in the README is one of those or says why a test cannot run it; every manifest in the
//! README, `docs/` and the Kubernetes example validates; and every manifest field is in the
//! reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{Run, wait_until, wait_with_timeout};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Markdown files whose links must resolve.
fn markdown_files() -> Vec<String> {
    let mut files: Vec<String> = [
        "README.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "CHANGELOG.md",
    ]
    .map(String::from)
    .to_vec();
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A fenced block: its info string (`sh`, `yaml`, ...), its text, and the line before the
/// fence that is not blank (for a "not run by tests" marker).
#[derive(Debug)]
struct Block {
    lang: String,
    text: String,
    before: String,
}

/// The text outside fenced blocks, and the blocks.
fn split_blocks(markdown: &str) -> (String, Vec<Block>) {
    let mut prose = String::new();
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut last_line = String::new();
    for line in markdown.lines() {
        match &mut current {
            Some(block) => {
                if line.trim_start().starts_with("```") {
                    blocks.push(current.take().unwrap());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    current = Some(Block {
                        lang: info.trim().to_owned(),
                        text: String::new(),
                        before: last_line.clone(),
                    });
                } else {
                    prose.push_str(line);
                    prose.push('\n');
                    if !line.trim().is_empty() {
                        last_line = line.trim().to_owned();
                    }
                }
            }
        }
    }
    assert!(current.is_none(), "a fenced block is never closed");
    (prose, blocks)
}

/// `[text](target)` link targets in prose, with inline code spans removed first.
fn link_targets(prose: &str) -> Vec<String> {
    let mut without_code = String::new();
    let mut in_code = false;
    for c in prose.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            without_code.push(c);
        }
    }
    let mut targets = Vec::new();
    let mut rest = without_code.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        targets.push(after[..end].trim().to_owned());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let (prose, _) = split_blocks(markdown);
    prose
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#').replace('`', "").as_str()))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        let (prose, _) = split_blocks(&text);
        for target in link_targets(&prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let resolved: PathBuf = if path.is_empty() {
                PathBuf::from(&file)
            } else {
                dir.join(path)
            };
            let full = repo().join(&resolved);
            if !full.exists() {
                broken.push(format!("{file}: {target} (no {})", resolved.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let target_text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&target_text).iter().any(|a| a == fragment) {
                    broken.push(format!(
                        "{file}: {target} (no heading #{fragment} in {})",
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} relative links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_finds_a_broken_link_and_a_missing_anchor() {
    let (prose, _) = split_blocks("see [a](docs/none.md) and `[b](x)`\n```\n[c](y)\n```\n");
    assert_eq!(link_targets(&prose), vec!["docs/none.md"]);
    assert_eq!(
        anchor("Drift, rotation and removal by hand"),
        "drift-rotation-and-removal-by-hand"
    );
    assert_eq!(
        anchor("Running it against Logz.io"),
        "running-it-against-logzio"
    );
}

/// The README's shell blocks, by the heading above them.
fn readme_sh_blocks() -> Vec<(String, Block)> {
    let readme = read("README.md");
    let mut heading = String::new();
    let mut out = Vec::new();
    // Walk sections: a block belongs to the last `## ` heading before it.
    for section in readme.split("\n## ") {
        let title = section.lines().next().unwrap_or("").trim().to_owned();
        if !title.is_empty() {
            heading = title;
        }
        let (_, blocks) = split_blocks(section);
        for b in blocks.into_iter().filter(|b| b.lang == "sh") {
            out.push((heading.clone(), b));
        }
    }
    out
}

/// Logical lines of a shell block: continuations joined, comments and blanks dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in block.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        out.push(std::mem::take(&mut pending));
    }
    out
}

/// A command's text without a trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i > 0 && line[..i].ends_with(' ') => return line[..i].trim().into(),
            _ => {}
        }
    }
    line.trim().into()
}

#[test]
fn every_shell_block_of_the_readme_is_tested_or_says_why_not() {
    let mut untested = Vec::new();
    for (heading, block) in readme_sh_blocks() {
        let tested = heading == "Set up" || heading.starts_with("A five-minute tour");
        let marked = block.before.starts_with("<!-- not run by tests:");
        if !tested && !marked {
            untested.push(format!(
                "## {heading}: {}",
                block.text.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        untested.is_empty(),
        "shell blocks neither run by tests/docs.rs nor marked `<!-- not run by tests: why -->`:\n{}",
        untested.join("\n")
    );
}

#[test]
fn the_readme_set_up_is_two_commands_and_ci_runs_the_second() {
    let (_, block) = readme_sh_blocks()
        .into_iter()
        .find(|(h, _)| h == "Set up")
        .expect("a Set up section with a shell block");
    let cmds: Vec<String> = commands(&block.text)
        .iter()
        .map(|c| strip_comment(c))
        .collect();
    assert_eq!(
        cmds,
        vec![
            "cargo run --release -- apply examples/quickstart.yaml --simulate --yes",
            "cargo test --locked"
        ],
        "the README's two set-up commands"
    );
    let ci = read(".ci/run");
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("cargo test --locked")),
        ".ci/run must run the README's test command"
    );
}

/// A workspace holding copies of what the tour reads, so that its state files land there.
fn tour_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "examples/quickstart.yaml",
        "examples/onboarding.yaml",
        "examples/migration.yaml",
        "tests/cases/manifest/many_problems.yaml",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(rel), &to).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    dir
}

/// `sh -c LINE` in `dir`, the binary first on PATH, with `vars` and nothing of LOGZIO_* from
/// outside.
fn shell(dir: &Path, vars: &BTreeMap<String, String>, line: &str) -> Command {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_logzio-tokens"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg("-c").arg(line).current_dir(dir).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("LOGZIO_") || k == "RUST_LOG" || k == "CI" {
            c.env_remove(k);
        }
    }
    c.env("PATH", path).envs(vars);
    c
}

fn run_line(dir: &Path, vars: &BTreeMap<String, String>, line: &str) -> Run {
    let child = shell(dir, vars, line)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Run::from(wait_with_timeout(child, Duration::from_secs(120)))
}

/// A simulator started by a tour line; its first stdout line is its URL.
struct TourSim {
    child: Child,
    url: String,
}

impl TourSim {
    fn start(dir: &Path, vars: &BTreeMap<String, String>, line: &str) -> TourSim {
        let out = dir.join("sim.out");
        let file = std::fs::File::create(&out).unwrap();
        let child = shell(dir, vars, &format!("exec {line}"))
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut url = String::new();
        let started = wait_until(Duration::from_secs(30), || {
            url = std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            url.starts_with("http://127.0.0.1:")
        });
        assert!(started, "`{line}` printed no URL");
        TourSim { child, url }
    }
}

impl Drop for TourSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_command_of_the_readme_tour_runs_against_the_simulator() {
    let (_, block) = readme_sh_blocks()
        .into_iter()
        .find(|(h, _)| h.starts_with("A five-minute tour"))
        .expect("the README has its tour");
    if !curl_available() {
        assert!(
            std::env::var("CI").is_err(),
            "the README tour uses curl, which is not installed (CI must have it)"
        );
        eprintln!("the README tour test did NOT run: curl is not installed");
        return;
    }
    let dir = tour_workspace();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut sim: Option<TourSim> = None;
    let mut ran = 0;
    for line in commands(&block.text) {
        let cmd = strip_comment(&line);
        if cmd.starts_with("logzio-tokens simulate") {
            drop(sim.take());
            let started = TourSim::start(dir.path(), &vars, &cmd);
            // "then set LOGZIO_API_URL to its new URL", as the tour says.
            if vars.contains_key("LOGZIO_API_URL") {
                vars.insert("LOGZIO_API_URL".into(), started.url.clone());
            }
            sim = Some(started);
            ran += 1;
            continue;
        }
        if let Some(value) = cmd.strip_prefix("URL=") {
            assert_eq!(value, "http://127.0.0.1:PORT", "the tour's URL line");
            let url = sim
                .as_ref()
                .expect("a simulator runs before URL=")
                .url
                .clone();
            vars.insert("URL".into(), url);
            continue;
        }
        if let Some(assignments) = cmd.strip_prefix("export ") {
            for pair in assignments.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("export K=V");
                let v = v.replace("$URL", &vars["URL"]);
                vars.insert(k.into(), v);
            }
            continue;
        }
        let run = run_line(dir.path(), &vars, &cmd);
        ran += 1;
        let context = format!(
            "`{cmd}`\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        );
        let code = run.code.unwrap_or(-1);
        if cmd.contains("many_problems.yaml") {
            // Shown on purpose: the errors, with exit 2.
            assert_eq!(code, 2, "{context}");
            assert!(run.stderr.contains("many_problems.yaml:"), "{context}");
        } else if cmd.contains("--results faulty.results.json --secrets") {
            // Under faults an item may end unresolved (exit 1): recorded or listed, never lost.
            assert!(code == 0 || code == 1, "{context}");
        } else {
            assert_eq!(code, 0, "{context}");
        }
        if cmd.starts_with("curl -s -X POST") {
            assert!(run.stdout.contains("\"token\""), "{context}");
        }
        if cmd.contains("/__sim/ground-truth") {
            assert!(run.stdout.contains("from-curl"), "{context}");
        }
    }
    assert!(ran >= 10, "only {ran} commands of the tour ran");
    // The tour's applies recorded the quickstart's tokens where the README says.
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("examples/quickstart.results.json")).unwrap(),
    )
    .unwrap();
    let recorded: usize = results["accounts"]
        .as_object()
        .unwrap()
        .values()
        .map(|a| a.as_object().unwrap().len())
        .sum();
    assert_eq!(recorded, 8, "{results}");
}

#[test]
fn the_readme_set_up_command_creates_the_quickstart_tokens_and_then_nothing() {
    let dir = tour_workspace();
    let vars = BTreeMap::new();
    // `cargo run --release -- ARGS` is the binary with ARGS.
    let args = "apply examples/quickstart.yaml --simulate --yes";
    let first = run_line(
        dir.path(),
        &vars,
        &format!("logzio-tokens {args} --output json"),
    );
    first.expect_code(0);
    assert!(first.stdout.contains("\"created\":8"), "{}", first.stdout);
    for file in [
        "examples/quickstart.simulated.results.json",
        "examples/quickstart.simulated.secrets.json",
    ] {
        assert!(
            dir.path().join(file).is_file(),
            "the README says {file} is written"
        );
    }
    let again = run_line(
        dir.path(),
        &vars,
        &format!("logzio-tokens {args} --output json"),
    );
    again.expect_code(0);
    assert!(again.stdout.contains("\"created\":0"), "{}", again.stdout);
}

/// Every YAML block that is a whole manifest (it has `version:` and `accounts:`).
fn manifests_in(markdown: &str) -> Vec<String> {
    let (_, blocks) = split_blocks(markdown);
    blocks
        .into_iter()
        .filter(|b| b.lang == "yaml" && b.text.contains("version:") && b.text.contains("accounts:"))
        .map(|b| b.text)
        .collect()
}

#[test]
fn every_manifest_in_the_readme_docs_and_the_kubernetes_example_validates() {
    let mut manifests: Vec<(String, String)> = Vec::new();
    for file in markdown_files() {
        for (i, m) in manifests_in(&read(&file)).into_iter().enumerate() {
            manifests.push((format!("{file} (manifest {})", i + 1), m));
        }
    }
    // The ConfigMap's manifest.yaml in the Kubernetes example.
    let k8s = read("examples/deploy/k8s-cronjob.yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&k8s).unwrap();
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the Kubernetes example has its ConfigMap");
    manifests.push((
        "examples/deploy/k8s-cronjob.yaml (ConfigMap)".into(),
        config["data"]["manifest.yaml"].as_str().unwrap().to_owned(),
    ));
    assert!(manifests.len() >= 2, "{manifests:?}");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in manifests {
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, text).unwrap();
        let run = run_line(
            dir.path(),
            &BTreeMap::new(),
            "logzio-tokens validate m.yaml",
        );
        assert_eq!(
            run.code,
            Some(0),
            "{name} does not validate:\n{}",
            run.stderr
        );
    }
}

#[test]
fn every_manifest_field_is_in_the_reference() {
    let schema: serde_json::Value =
        serde_json::from_str(&read("schemas/manifest.schema.json")).unwrap();
    let reference = read("docs/reference.md");
    let mut fields: Vec<String> = Vec::new();
    let props = |v: &serde_json::Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for key in props(&schema) {
        match key.as_str() {
            "accounts" => {
                for k in props(&schema["$defs"]["Account"]) {
                    fields.push(format!("accounts[].{k}"));
                }
            }
            "secrets" | "defaults" | "settings" => {
                let def = format!("{}{}", key[..1].to_uppercase(), &key[1..]);
                for k in props(&schema["$defs"][&def]) {
                    fields.push(format!("{key}.{k}"));
                }
            }
            _ => fields.push(key),
        }
    }
    assert!(fields.len() > 10, "{fields:?}");
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !reference.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "manifest fields not in docs/reference.md's table: {missing:?}"
    );
}
