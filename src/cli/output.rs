//! All human and machine output goes through here: stdout carries data (JSON, the simulator's
//! URL, summaries asked for), stderr carries progress, logs and errors.
//!
//! A closed stdout (`logzio-tokens man | head`) is a normal end for the reader, as for `cat`
//! and ripgrep: the write is dropped quietly and the command ends with its usual status. An
//! `apply` whose reader went away keeps running to its end: its records are on disk, not on
//! stdout. Other write errors on stderr are ignored rather than panicking.

use std::io::{IsTerminal, Write};

// Whatever a server or a state file put in a line, no terminal control sequence is printed.
use crate::text::for_terminal;

/// Where output goes and how much of it.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Only errors and requested data.
    pub quiet: bool,
}

impl Printer {
    /// A line of data on stdout.
    pub fn out(&self, line: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{}", for_terminal(line));
        let _ = o.flush();
    }

    /// Data on stdout exactly as given. A closed pipe is not an error (see the module doc);
    /// any other failure (a full disk behind `>`) is.
    pub fn out_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut o = std::io::stdout().lock();
        match o.write_all(bytes).and_then(|()| o.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// Informational text on stderr (suppressed by `--quiet`), above any progress bar.
    pub fn info(&self, text: &str) {
        if !self.quiet {
            super::progress::with_bar_suspended(|| {
                let _ = writeln!(std::io::stderr().lock(), "{}", for_terminal(text));
            });
        }
    }

    /// A warning on stderr (suppressed by `--quiet`).
    pub fn warn(&self, text: &str) {
        self.info(&format!("warning: {text}"));
    }

    /// An error on stderr (always shown).
    pub fn error(&self, text: &str) {
        super::progress::with_bar_suspended(|| {
            let _ = writeln!(std::io::stderr().lock(), "error: {}", for_terminal(text));
        });
    }

    /// Whether stderr is a terminal (for progress bars).
    pub fn stderr_is_terminal(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

impl Printer {
    /// Text on stderr exactly as given (already formatted reports).
    pub fn error_raw(&self, text: &str) {
        super::progress::with_bar_suspended(|| {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                for_terminal(text.trim_end())
            );
        });
    }
}

/// A word as a POSIX shell reads it back: as is when it holds only safe characters, else in
/// single quotes.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// "1 token", "3 tokens": a count with its noun agreeing.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// [`count`] for a noun whose plural is not `-s`: "1 retry", "2 retries".
pub fn count_as(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "has" for one, "have" for any other count.
pub fn has(n: usize) -> &'static str {
    if n == 1 { "has" } else { "have" }
}

/// "was" for one, "were" for any other count.
pub fn was(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_round_trip() {
        assert_eq!(shell_quote("a/b.json"), "a/b.json");
        assert_eq!(shell_quote("my plan.json"), "'my plan.json'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn wording_agrees_with_the_count() {
        assert_eq!(count(1, "token"), "1 token");
        assert_eq!(count(0, "token"), "0 tokens");
        assert_eq!(count(2, "token"), "2 tokens");
        assert_eq!(format!("{} {}", count(1, "token"), has(1)), "1 token has");
        assert_eq!(format!("{} {}", count(3, "token"), has(3)), "3 tokens have");
        assert_eq!(count_as(1, "retry", "retries"), "1 retry");
        assert_eq!(count_as(4, "retry", "retries"), "4 retries");
        assert_eq!(was(1), "was");
        assert_eq!(was(0), "were");
    }
}
