//! What a person sees on a terminal. `apply` runs on a pseudo-terminal (rexpect), a test answers
//! its prompt as a person would, and everything it wrote is replayed on a terminal emulator
//! (vt100) so that the assertions are about the screen: the prompt, a bar counting toward the
//! plan's total, the summary, no bar left behind, no colour under NO_COLOR. And a closed stdout
//! pipe (`man | head`) ends every command that writes to stdout quietly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use logzio_tokens::simulator::SimConfig;
use rexpect::process::WaitStatus;
use rexpect::session::spawn_command;

use crate::util::{Env, manifest_yaml};

const ACCOUNTS: [i64; 4] = [160_343, 160_344, 160_345, 160_346];
const TOKENS: [&str; 6] = ["ci", "grafana", "ship", "alerts", "audit", "backup"];
const TOTAL: usize = ACCOUNTS.len() * TOKENS.len();
const PROMPT: &str = "Type 'yes' to continue: ";

/// A simulator slow enough (80 ms an answer, two requests at a time) for the bar to be drawn
/// several times, and the manifest.
fn workspace() -> Env {
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(80),
        ..SimConfig::default()
    });
    env.write("m.yaml", &manifest_yaml(&ACCOUNTS, &TOKENS));
    env
}

/// What one run on a terminal wrote, and how it ended.
struct Seen {
    /// Every byte written to the terminal (stdout and stderr share it, as on a real one).
    bytes: Vec<u8>,
    /// The exit code.
    code: i32,
}

impl Seen {
    /// The bytes as text (escape sequences included).
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The screen once the run has ended, as a 40x120 terminal shows it.
    fn final_screen(&self) -> String {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        let mut term = vt100::Parser::new(size(40), size(120), 0);
        term.process(&self.bytes);
        term.screen().contents()
    }

    /// Every `N/M tokens` the bar drew, in order.
    fn bar_counts(&self) -> Vec<(usize, usize)> {
        bar_counts(&self.text())
    }
}

/// The `N/M` before each `tokens, ` of the bar.
fn bar_counts(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(" tokens, ") {
        let head = &text[..i];
        let start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '/'))
            .map_or(0, |p| p + 1);
        if let Some((n, m)) = head[start..].split_once('/')
            && let (Ok(n), Ok(m)) = (n.parse(), m.parse())
        {
            out.push((n, m));
        }
    }
    out
}

/// Runs `apply` on a pseudo-terminal with more `args` and `vars` set, answers `answer` at the
/// prompt.
fn apply_on_a_terminal(env: &Env, args: &[&str], vars: &[(&str, &str)], answer: &str) -> Seen {
    let mut cmd = env.cmd();
    cmd.args(["apply", "m.yaml", "--concurrency", "2", "--rate", "50"]);
    cmd.args(args);
    // The pseudo-terminal is the child's stdin, stdout and stderr: keep them.
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd.env("TERM", "xterm-256color").env_remove("NO_COLOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut p = spawn_command(cmd, Some(60_000)).expect("spawn on a pty");
    let mut seen = p.exp_string(PROMPT).expect("the prompt");
    seen.push_str(PROMPT);
    p.send_line(answer).unwrap();
    seen.push_str(&p.exp_eof().expect("the run ends"));
    let code = match p.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("apply ended with {other:?}\n{seen}"),
    };
    // rexpect hands over each byte as a char.
    Seen {
        bytes: seen.chars().map(|c| c as u32 as u8).collect(),
        code,
    }
}

/// Each frame of the bar: its `N/M tokens` count, and the `X created + Y failed` under it.
fn frames(text: &str) -> Vec<(usize, usize, usize)> {
    let number_before = |head: &str| {
        let start = head
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |p| p + 1);
        head[start..].parse::<usize>().ok()
    };
    let number_after = |tail: &str| {
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        tail[..end].parse::<usize>().ok()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices(" tokens, ") {
        let head = &text[..i];
        let Some(slash) = head.rfind('/') else {
            continue;
        };
        let Some(count) = number_before(&head[..slash]) else {
            continue;
        };
        let rest = &text[i..];
        let Some(j) = rest.find(" created + ") else {
            continue;
        };
        // The figures of this frame, not of a later one.
        if rest[..j].contains(" tokens, ") && rest[9..j].contains(" tokens, ") {
            continue;
        }
        let (Some(created), Some(failed)) = (
            number_before(&rest[..j]),
            number_after(&rest[j + " created + ".len()..]),
        ) else {
            continue;
        };
        out.push((count, created, failed));
    }
    out
}

/// Whether the bytes hold an SGR (colour) sequence: ESC [ digits/semicolons m.
fn has_colour(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w == b"\x1b["
            && bytes[i + 2..]
                .iter()
                .find(|b| !(b.is_ascii_digit() || **b == b';'))
                .is_some_and(|b| *b == b'm')
    })
}

#[test]
fn apply_on_a_terminal_prompts_counts_toward_the_total_and_leaves_only_the_summary() {
    let env = workspace();
    let seen = apply_on_a_terminal(&env, &[], &[], "yes");
    let text = seen.text();
    assert_eq!(seen.code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "This will create {TOTAL} tokens. Tokens cannot be deleted"
        )),
        "{text}"
    );

    // The bar counts toward the plan's total (it used to read 227/0, drawn full).
    let counts = seen.bar_counts();
    assert!(!counts.is_empty(), "no bar was drawn:\n{text}");
    assert!(
        counts.iter().all(|(_, total)| *total == TOTAL),
        "{counts:?}"
    );
    assert!(
        counts.iter().any(|(done, _)| *done > 0 && *done < TOTAL),
        "the bar never showed a run part-way: {counts:?}"
    );
    assert!(
        counts.windows(2).all(|w| w[0].0 <= w[1].0),
        "the bar went backwards: {counts:?}"
    );
    assert!(text.contains("ETA"), "{text}");
    // Each frame's count is the sum of the two figures under it, drawn from one reading.
    let frames = frames(&text);
    assert!(!frames.is_empty(), "{text}");
    for (count, created, failed) in &frames {
        assert_eq!(*count, created + failed, "{frames:?}");
    }

    // Once it ends, the screen holds the summary and no bar.
    let screen = seen.final_screen();
    assert!(
        screen.contains(&format!("Created {TOTAL} tokens in")),
        "{screen}"
    );
    assert!(screen.contains("Results: "), "{screen}");
    assert!(
        !screen.contains(" tokens, "),
        "a bar line is left:\n{screen}"
    );
    assert!(
        !screen.contains(" done ("),
        "a progress line is left:\n{screen}"
    );
    assert_eq!(env.sim().ground_truth().len(), TOTAL);
}

#[test]
fn no_colour_when_no_color_is_set() {
    // `-v` draws a log line ("started the built-in simulator"), whose level is coloured on a terminal: without NO_COLOR there is
    // colour, so the check can fail.
    let verbose = |vars: &[(&str, &str)]| {
        let env = workspace();
        apply_on_a_terminal(&env, &["--simulate", "-v"], vars, "yes")
    };
    let coloured = verbose(&[]);
    assert_eq!(coloured.code, 0, "{}", coloured.text());
    assert!(has_colour(&coloured.bytes), "{}", coloured.text());

    let plain = verbose(&[("NO_COLOR", "1")]);
    assert_eq!(plain.code, 0, "{}", plain.text());
    assert!(!has_colour(&plain.bytes), "{:?}", plain.text());
    assert!(!plain.bar_counts().is_empty(), "{}", plain.text());
}

#[test]
fn declining_at_the_prompt_sends_nothing_and_leaves_no_lock_file() {
    // Only the exact word goes on: `y`, `YES`, `Yes` decline.
    for answer in ["no", "y", "YES", "Yes", " yes"] {
        let env = workspace();
        let seen = apply_on_a_terminal(&env, &[], &[], answer);
        assert_eq!(seen.code, 2, "{answer}: {}", seen.text());
        assert!(seen.final_screen().contains("Nothing was sent."));
        assert!(env.sim().ground_truth().is_empty(), "{answer}");
        assert!(
            !env.path("m.results.lock").exists(),
            "{answer}: a lock file is left"
        );
        assert!(!env.path("m.results.json").exists(), "{answer}");
    }
}

#[test]
fn the_prompt_counts_by_kind_and_lists_twenty_tokens_then_how_many_more() {
    let env = workspace();
    let seen = apply_on_a_terminal(&env, &["--no-progress"], &[], "yes");
    let text = seen.text();
    assert_eq!(seen.code, 0, "{text}");
    let listed = text
        .lines()
        .filter(|l| l.trim_start().starts_with("+ 16034"))
        .count();
    assert_eq!(listed, 20, "{text}");
    assert!(text.contains("  + 160343/ci\r\n"), "{text}");
    assert!(
        text.contains(&format!("… and {} more", TOTAL - 20)),
        "{text}"
    );

    // Replacements are counted apart and shown as such.
    let results = env.path("m.results.json");
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    r["accounts"]["160343"]["ci"]["status"] = "revoked".into();
    std::fs::write(&results, serde_json::to_vec(&r).unwrap()).unwrap();
    let id = r["accounts"]["160343"]["ci"]["token_id"].as_i64().unwrap();
    let seen = apply_on_a_terminal(&env, &["--recreate-revoked"], &[], "no");
    let text = seen.text();
    assert_eq!(seen.code, 2, "{text}");
    assert!(
        text.contains(&format!("-/+ 160343/ci (replaces {id}, revoked)")),
        "{text}"
    );
    assert!(
        text.contains("This will replace 1 (the old ones keep working"),
        "{text}"
    );
}

/// A reader that stops early (`| head`) is a normal end: no error, the usual status. `apply`
/// runs to its end (its records are on disk), so the token is created and recorded.
#[test]
fn a_closed_stdout_pipe_ends_every_command_quietly() {
    let env = Env::new();
    env.write("m.yaml", &manifest_yaml(&[160_343], &["ci"]));
    for args in [
        &["man"][..],
        &["completions", "bash"],
        &["schema", "manifest"],
        &["schema", "results"],
        &["validate", "m.yaml"],
        &["plan", "m.yaml"],
        &["plan", "m.yaml", "--json"],
        &["apply", "m.yaml", "--simulate", "--yes", "--output", "json"],
        &[
            "orphans",
            "list",
            "m.yaml",
            "--results",
            "m.simulated.results.json",
        ],
        &[
            "export",
            "m.yaml",
            "--stdout",
            "--results",
            "m.simulated.results.json",
            "--secrets",
            "m.simulated.secrets.json",
        ],
    ] {
        // The reading end is closed before the command starts, so its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .cmd()
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    let results = env.json("m.simulated.results.json");
    assert!(results["accounts"]["160343"]["ci"]["token_id"].is_i64());
}
