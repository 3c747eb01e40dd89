//! All human and machine output goes through here: stdout carries data (JSON, the simulator's
//! URL, summaries asked for), stderr carries progress, logs and errors. Writes that fail
//! (a closed pipe) are ignored rather than panicking.

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

/// A JSON line on stdout for `--output json` (versioned: every line has `"v": 1`).
pub fn json_line(printer: &Printer, mut value: serde_json::Value) {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("v".into(), serde_json::Value::from(1));
    }
    printer.out(&value.to_string());
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
