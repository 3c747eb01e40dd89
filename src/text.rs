//! Text the tool did not write: what a server answers and what state files hold.
//!
//! Two defences, each one function, applied where such text enters or leaves:
//!
//! - [`Scrubber`]: the owner token and every secret received in this run, replaced by
//!   `[redacted]` in server-provided text before anything downstream (logs, errors, the results
//!   file, `--output json`) sees it. A server that echoes the token it was sent is enough to leak
//!   it otherwise.
//! - [`for_terminal`]: terminal control sequences (CSI, OSC — which can set the window title or
//!   write the clipboard —, DCS and the like), other control characters and bidirectional
//!   overrides, removed from text before it is printed.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::secret::Secret;

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: replacing every `ab` of a message would make it
/// unreadable and protect nothing (real tokens are UUIDs).
const MIN_SCRUBBED_LEN: usize = 4;

/// The secrets of this run (the owner token, and every created token's secret once received),
/// to be removed from server-provided text. Cheap to clone; clones share what they learned.
///
/// Scrubbing costs a hash lookup per character per distinct secret length (one or two: tokens
/// are UUIDs), not a search per secret, so it stays cheap however many tokens a run creates.
#[derive(Clone, Default)]
pub struct Scrubber {
    known: Arc<Mutex<BTreeMap<usize, HashSet<Known>>>>,
}

/// A secret, hashed and compared by its value, so that a slice of text can be looked up.
#[derive(Clone, PartialEq, Eq)]
struct Known(Secret);

impl Hash for Known {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups agree.
        self.0.expose().hash(state);
    }
}

impl Borrow<str> for Known {
    fn borrow(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber([redacted])")
    }
}

impl Scrubber {
    /// A scrubber that knows `secret` already.
    pub fn with(secret: &Secret) -> Scrubber {
        let s = Scrubber::default();
        s.learn(secret);
        s
    }

    /// Remembers one more secret to scrub.
    pub fn learn(&self, secret: &Secret) {
        let len = secret.expose().len();
        if len < MIN_SCRUBBED_LEN {
            return;
        }
        if let Ok(mut known) = self.known.lock() {
            known.entry(len).or_default().insert(Known(secret.clone()));
        }
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let Ok(known) = self.known.lock() else {
            // A poisoned lock: nothing trustworthy is known, so say nothing of the text.
            return REDACTED.to_owned();
        };
        let mut out = text.to_owned();
        // Longest first, so that a secret inside a longer one cannot break the longer one up.
        for (&len, set) in known.iter().rev() {
            if out.len() < len {
                continue;
            }
            let mut next = String::with_capacity(out.len());
            let mut copied = 0;
            let mut i = 0;
            while i + len <= out.len() {
                if out.is_char_boundary(i)
                    && out.is_char_boundary(i + len)
                    && set.contains(&out[i..i + len])
                {
                    next.push_str(&out[copied..i]);
                    next.push_str(REDACTED);
                    i += len;
                    copied = i;
                } else {
                    i += 1;
                }
            }
            if copied > 0 {
                next.push_str(&out[copied..]);
                out = next;
            }
        }
        out
    }
}

/// `text` without terminal control sequences, control characters (newlines and tabs are kept)
/// or bidirectional overrides: safe to print on a terminal whatever a server or a state file
/// put in it.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            // C1 introducers of strings (DCS, SOS, OSC, PM, APC): skip to the terminator.
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            // C1 CSI: skip its parameters and final byte.
            '\u{9b}' => skip_csi(&mut chars),
            c if is_unprintable(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of server text: [`for_terminal`], with every run of whitespace (newlines
/// included) made one space, cut to `max_chars`.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let clean = for_terminal(text);
    let line = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max_chars {
        let cut: String = line.chars().take(max_chars).collect();
        format!("{cut}…")
    } else {
        line
    }
}

fn is_unprintable(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// After ESC: a CSI (`ESC [`), a string (`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _`), or a
/// two-character sequence.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.next() {
        Some('[') => skip_csi(chars),
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars),
        // `ESC ( B` and the like: an intermediate byte, then a final one.
        Some(' '..='/') => {
            chars.next();
        }
        _ => {}
    }
}

/// CSI parameters and intermediates (0x20..=0x3f), then one final byte (0x40..=0x7e).
fn skip_csi(chars: &mut Chars<'_>) {
    while let Some(&c) = chars.peek() {
        chars.next();
        if ('\u{40}'..='\u{7e}').contains(&c) || !(' '..='?').contains(&c) {
            return;
        }
    }
}

/// A control string, up to BEL, ST (`ESC \` or U+009C), or the end of the text.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn osc_csi_and_control_characters_are_removed() {
        // Clipboard write (OSC 52), title change (OSC 0, ended by ST), colours, a cursor move.
        let evil =
            "a\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}b\u{1b}]0;owned\u{1b}\\c\u{1b}[31;1md\u{1b}[2Je";
        assert_eq!(for_terminal(evil), "abcde");
        assert_eq!(for_terminal("x\u{9b}31my\u{9d}0;t\u{9c}z"), "xyz");
        assert_eq!(for_terminal("bell\u{7}\rdel\u{7f}"), "belldel");
        assert_eq!(for_terminal("rtl\u{202e}txt"), "rtltxt");
        // Ordinary text, newlines and tabs are kept as they are (and not copied).
        assert!(matches!(
            for_terminal("plain é\n\tline"),
            Cow::Borrowed("plain é\n\tline")
        ));
        // A sequence cut short at the end of the text.
        assert_eq!(for_terminal("ok\u{1b}]52;c;AAAA"), "ok");
        assert_eq!(for_terminal("ok\u{1b}"), "ok");
    }

    #[test]
    fn one_line_collapses_whitespace_and_cuts() {
        assert_eq!(one_line(" a\n b \u{1b}[1m c ", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn the_scrubber_removes_what_it_learned_and_shares_it_with_clones() {
        let s = Scrubber::with(&Secret::new("owner-tok-1234"));
        let clone = s.clone();
        clone.learn(&Secret::new("c498fbc3-a3ac"));
        clone.learn(&Secret::new("ab"));
        assert_eq!(
            s.scrub("bad token owner-tok-1234 (new c498fbc3-a3ac) ab"),
            "bad token [redacted] (new [redacted]) ab"
        );
        assert!(!format!("{s:?}").contains("owner"));
        // Next to each other, at the ends, beside multi-byte text, twice.
        assert_eq!(
            s.scrub("owner-tok-1234owner-tok-1234é c498fbc3-a3ac"),
            "[redacted][redacted]é [redacted]"
        );
        assert_eq!(s.scrub("owner-tok-123"), "owner-tok-123");
    }

    #[test]
    fn scrubbing_stays_cheap_with_many_secrets() {
        let s = Scrubber::default();
        for i in 0..20_000 {
            s.learn(&Secret::new(format!("{i:08}-a3ac-4676-ad09-689854b5cbbd")));
        }
        let message = format!("bad request {}", "x".repeat(300));
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(s.scrub(&message), message);
        }
        // A search per secret would take seconds here; a lookup per character, milliseconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            s.scrub("x 00012345-a3ac-4676-ad09-689854b5cbbd y"),
            "x [redacted] y"
        );
    }
}
