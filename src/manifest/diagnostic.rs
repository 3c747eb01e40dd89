//! Manifest problems: the located [`Diagnostic`], the [`ManifestError`] that carries them, and
//! their human rendering (`FILE:LINE:COLUMN: error: ...`, a snippet of the source line with a
//! caret under the offending token, then help and notes).
//!
//! The rendering has no colours and never shows an expanded `${VAR}` value: the snippet is the raw
//! source line (which shows `${VAR}`, not its value) and messages about expanded values refer to
//! them by place, never by content.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// At most this many diagnostics are rendered in full; the summary line still counts them all.
pub const MAX_RENDERED_DIAGNOSTICS: usize = 50;

/// Source lines longer than this (in characters) are cropped around the caret when rendered.
const MAX_SNIPPET_CHARS: usize = 120;

/// One problem in a manifest, at a 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The line of the offending key or value (1-based).
    pub line: u32,
    /// The column of the offending key or value (1-based, in characters).
    pub column: u32,
    /// How many characters to underline (0 when unknown: one caret is shown).
    pub length: u32,
    /// What is wrong, as a sentence fragment naming the offending thing.
    pub message: String,
    /// A short text shown right after the carets, if any.
    pub label: Option<String>,
    /// Other places that explain the problem (the first definition of a duplicate, ...).
    pub notes: Vec<Note>,
    /// What to do about it, if there is something useful to say.
    pub help: Option<String>,
    /// The source line is not shown (it holds something that must not be echoed, such as a
    /// private key).
    pub hide_source: bool,
}

/// A secondary place mentioned by a [`Diagnostic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The line (1-based).
    pub line: u32,
    /// The column (1-based, in characters).
    pub column: u32,
    /// What is there.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `line:column` underlining `length` characters.
    pub fn new(line: u32, column: u32, length: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            line: line.max(1),
            column: column.max(1),
            length,
            message: message.into(),
            label: None,
            notes: Vec::new(),
            help: None,
            hide_source: false,
        }
    }

    /// Shows no snippet of the source line (it holds a value that must not be echoed).
    #[must_use]
    pub fn hiding_source(mut self) -> Self {
        self.hide_source = true;
        self
    }

    /// Adds the text shown after the carets.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a note pointing at another place.
    #[must_use]
    pub fn with_note(mut self, line: u32, column: u32, message: impl Into<String>) -> Self {
        self.notes.push(Note {
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
        });
        self
    }
}

/// Why a manifest could not be loaded.
///
/// `Display` is the complete human rendering, ready for stderr.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: error: cannot read the manifest: {source}", path.display())]
    Io {
        /// The manifest path, as given.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`super::MAX_MANIFEST_BYTES`].
    #[error(
        "{}: error: the manifest is {size} bytes, more than the limit of {limit} bytes",
        path.display()
    )]
    TooLarge {
        /// The manifest path, as given.
        path: PathBuf,
        /// Its size in bytes (at least `limit + 1` when the file grew while being read).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error(
        "{}:{line}:{column}: error: the manifest is not valid UTF-8 text (the first invalid byte is here); save it as UTF-8",
        path.display()
    )]
    NotUtf8 {
        /// The manifest path, as given.
        path: PathBuf,
        /// The line of the first invalid byte (1-based).
        line: u32,
        /// The column of the first invalid byte (1-based, counting the valid characters before it).
        column: u32,
    },
    /// The file holds nothing but whitespace and comments.
    #[error(
        "{}: error: the manifest is empty; it needs at least `version: 1` and `accounts:`",
        path.display()
    )]
    Empty {
        /// The manifest path, as given.
        path: PathBuf,
    },
    /// The YAML is malformed or breaks one or more rules; every problem found is listed.
    #[error("{}", render(path, text, diagnostics))]
    Invalid {
        /// The manifest path, as given.
        path: PathBuf,
        /// Every problem found, ordered by line then column (never empty).
        diagnostics: Vec<Diagnostic>,
        /// The manifest text, for the snippets.
        text: String,
    },
}

impl ManifestError {
    /// The located problems (empty for the kinds that are not about the content).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ManifestError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }

    /// The manifest path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ManifestError::Io { path, .. }
            | ManifestError::TooLarge { path, .. }
            | ManifestError::NotUtf8 { path, .. }
            | ManifestError::Empty { path }
            | ManifestError::Invalid { path, .. } => path,
        }
    }
}

/// Byte offsets of line starts, to find a line by number and a character column within it.
#[derive(Debug)]
pub(crate) struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    /// Indexes `text`. Lines end at `\n`; a `\r` before it is not part of the line.
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    /// The text of a 1-based line, without its line break.
    pub(crate) fn line(&self, line: u32) -> Option<&'a str> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.starts.get(index)?;
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.text.len(), |next| next - 1);
        let text = self.text.get(start..end)?;
        Some(text.strip_suffix('\r').unwrap_or(text))
    }

    /// The byte offset of a 1-based line and character column, if inside the text.
    fn offset(&self, line: u32, column: u32) -> Option<usize> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.starts.get(index)?;
        let skip = usize::try_from(column).ok()?.checked_sub(1)?;
        let rest = self.text.get(start..)?;
        match rest.char_indices().nth(skip) {
            Some((i, _)) => Some(start + i),
            None if rest.chars().count() == skip => Some(self.text.len()),
            None => None,
        }
    }

    /// The raw source text of `length` characters starting at `line:column` (possibly spanning
    /// lines), or `""` when out of range.
    pub(crate) fn raw(&self, line: u32, column: u32, length: u32) -> &'a str {
        let Some(start) = self.offset(line, column) else {
            return "";
        };
        let rest = &self.text[start..];
        let take = usize::try_from(length).unwrap_or(usize::MAX);
        let end = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    /// The raw source text of `length` characters starting at byte `offset`, or `""` when out
    /// of range.
    pub(crate) fn raw_at(&self, offset: usize, length: u32) -> &'a str {
        let Some(rest) = self.text.get(offset..) else {
            return "";
        };
        let take = usize::try_from(length).unwrap_or(usize::MAX);
        let end = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    /// The 1-based line and column of a byte offset inside `raw(line, column, ..)`, given that
    /// `raw` starts at `line:column`.
    pub(crate) fn position_within(
        line: u32,
        column: u32,
        raw: &str,
        byte_offset: usize,
    ) -> (u32, u32) {
        let before = raw.get(..byte_offset).unwrap_or(raw);
        let (mut l, mut c) = (line, column);
        for ch in before.chars() {
            if ch == '\n' {
                l = l.saturating_add(1);
                c = 1;
            } else {
                c = c.saturating_add(1);
            }
        }
        (l, c)
    }
}

/// The full human rendering of an invalid manifest.
fn render(path: &Path, text: &str, diagnostics: &[Diagnostic]) -> String {
    let lines = Lines::new(text);
    let mut out = String::new();
    for diagnostic in diagnostics.iter().take(MAX_RENDERED_DIAGNOSTICS) {
        render_one(&mut out, path, &lines, diagnostic);
        out.push('\n');
    }
    if diagnostics.len() > MAX_RENDERED_DIAGNOSTICS {
        let _ = writeln!(
            out,
            "... and {} more not shown\n",
            diagnostics.len() - MAX_RENDERED_DIAGNOSTICS
        );
    }
    let n = diagnostics.len();
    let _ = write!(
        out,
        "{n} problem{} found in {}; nothing was sent.",
        if n == 1 { "" } else { "s" },
        path.display()
    );
    out
}

fn render_one(out: &mut String, path: &Path, lines: &Lines<'_>, d: &Diagnostic) {
    let _ = writeln!(
        out,
        "{}:{}:{}: error: {}",
        path.display(),
        d.line,
        d.column,
        d.message
    );
    let number = d.line.to_string();
    let gutter = " ".repeat(number.len() + 2);
    if let Some(source) = lines.line(d.line).filter(|_| !d.hide_source) {
        let (shown, caret_col) = snippet(source, d.column);
        let _ = writeln!(out, "{gutter}|");
        let _ = writeln!(out, " {number} | {shown}");
        // Pad with the same whitespace characters as the shown line so tabs line up.
        let pad: String = shown
            .chars()
            .take(caret_col)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let available = shown.chars().count().saturating_sub(caret_col).max(1);
        let wanted = usize::try_from(d.length).unwrap_or(1).max(1);
        let carets = "^".repeat(wanted.min(available));
        match &d.label {
            Some(label) => {
                let _ = writeln!(out, "{gutter}| {pad}{carets} {label}");
            }
            None => {
                let _ = writeln!(out, "{gutter}| {pad}{carets}");
            }
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "{gutter}= help: {help}");
    }
    for note in &d.notes {
        let _ = writeln!(
            out,
            "{gutter}= note: {}:{}: {}",
            note.line, note.column, note.message
        );
    }
}

/// The line as shown (control characters replaced, cropped around the column when long) and the
/// 0-based character index of the caret within it.
fn snippet(source: &str, column: u32) -> (String, usize) {
    let clean = |c: char| {
        if c.is_control() && c != '\t' {
            '\u{FFFD}'
        } else {
            c
        }
    };
    let chars: Vec<char> = source.chars().map(clean).collect();
    let caret = usize::try_from(column)
        .unwrap_or(1)
        .saturating_sub(1)
        .min(chars.len());
    if chars.len() <= MAX_SNIPPET_CHARS {
        return (chars.into_iter().collect(), caret);
    }
    let start = caret.saturating_sub(MAX_SNIPPET_CHARS / 3);
    let end = (start + MAX_SNIPPET_CHARS).min(chars.len());
    let mut shown = String::new();
    let mut caret_col = caret - start;
    if start > 0 {
        shown.push('…');
        caret_col += 1;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret_col)
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn invalid(text: &str, diagnostics: Vec<Diagnostic>) -> String {
        ManifestError::Invalid {
            path: PathBuf::from("examples/bad.yaml"),
            diagnostics,
            text: text.to_owned(),
        }
        .to_string()
    }

    #[test]
    fn renders_like_the_brief() {
        let text = "version: 1\nx: 1\nz: 2\nregion: xx\n";
        let d = Diagnostic::new(4, 9, 2, "unknown region `xx`")
            .with_label("valid regions: us, eu, uk, au, ca");
        assert_eq!(
            invalid(text, vec![d]),
            "examples/bad.yaml:4:9: error: unknown region `xx`\n   \
             |\n 4 | region: xx\n   |         ^^ valid regions: us, eu, uk, au, ca\n\n\
             1 problem found in examples/bad.yaml; nothing was sent."
        );
    }

    #[test]
    fn help_notes_plural_and_wide_gutter() {
        let mut text = "a: 1\n".repeat(11);
        text.push_str("\tb: 2\n");
        let d1 = Diagnostic::new(12, 2, 1, "unknown key `b`")
            .with_help("remove it")
            .with_note(1, 1, "something");
        let d2 = Diagnostic::new(99, 1, 0, "past the end");
        assert_eq!(
            invalid(&text, vec![d1, d2]),
            "examples/bad.yaml:12:2: error: unknown key `b`\n    |\n 12 | \tb: 2\n    | \t^\n    \
             = help: remove it\n    = note: 1:1: something\n\n\
             examples/bad.yaml:99:1: error: past the end\n\n\
             2 problems found in examples/bad.yaml; nothing was sent."
        );
    }

    #[test]
    fn long_lines_are_cropped_and_control_characters_hidden() {
        let line = format!("k: [{}\u{7}x]", "a, ".repeat(100));
        let d = Diagnostic::new(1, 306, 1, "here");
        let out = invalid(&line, vec![d]);
        let snippet = out.lines().nth(2).unwrap();
        assert!(snippet.starts_with(" 1 | …"), "{snippet}");
        assert!(snippet.contains('\u{FFFD}'));
        assert!(!snippet.contains('\u{7}'));
        let caret_line = out.lines().nth(3).unwrap();
        let caret_at = caret_line.chars().position(|c| c == '^').unwrap();
        assert_eq!(snippet.chars().nth(caret_at), Some('x'));
    }

    #[test]
    fn lines_raw_and_positions() {
        let lines = Lines::new("ab\r\ncé: \"x\n  y\"\n");
        assert_eq!(lines.line(1), Some("ab"));
        assert_eq!(lines.line(2), Some("cé: \"x"));
        assert_eq!(lines.line(4), Some(""));
        assert_eq!(lines.line(5), None);
        assert_eq!(lines.raw(2, 5, 7), "\"x\n  y\"");
        assert_eq!(lines.raw(2, 3, 2), ": ");
        assert_eq!(lines.raw(9, 1, 1), "");
        assert_eq!(lines.raw_at(9, 7), "\"x\n  y\"");
        assert_eq!(lines.raw_at(99, 7), "");
        assert_eq!(Lines::position_within(2, 5, "\"x\n  y\"", 6), (3, 4));
    }

    #[test]
    fn many_problems_are_counted_but_not_all_rendered() {
        let ds: Vec<_> = (1..=60)
            .map(|i| Diagnostic::new(i, 1, 1, "problem"))
            .collect();
        let out = invalid("", ds);
        assert!(out.contains("... and 10 more not shown"));
        assert!(out.ends_with("60 problems found in examples/bad.yaml; nothing was sent."));
    }
}
