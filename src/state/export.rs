//! Rendering secrets for `export`: JSON, CSV and dotenv. The one place secrets are formatted
//! for another program, so the quoting rules of each format live here.
//!
//! dotenv files are read by shells (`. ./tokens.env`, `set -a`) as well as by dotenv libraries,
//! so each value is single-quoted: inside single quotes a shell and the common dotenv readers
//! (docker compose, python-dotenv, Node's dotenv) take every character literally, `$(...)` and
//! backquotes included. What single quotes cannot hold safely — a `'`, a `\`, a line break or
//! any other control character — is refused rather than escaped: no escaping is read the same
//! way by all of them, and a real token never holds such characters.

use zeroize::Zeroizing;

use super::TokenKey;
use crate::secret::Secret;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[{"account_id", "account_name"?, "token_name", "token_id", "token"}]`.
    Json,
    /// `account_id,token_name,token_id,token` with a header line.
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
}

/// A secret that cannot be written in the asked format.
#[derive(Debug, thiserror::Error)]
#[error(
    "the secret of {key} cannot be written safely as dotenv: {why}\n  = help: export it as --format json or csv, which quote every character"
)]
pub struct ExportError {
    /// Which token.
    pub key: TokenKey,
    /// What is in the way (never the secret itself).
    pub why: &'static str,
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
                        "account_id": r.key.account_id,
                        "token_name": r.key.token_name,
                        "token_id": r.token_id,
                        "token": r.token.expose(),
                    });
                    if let (Some(n), Some(obj)) = (&r.account_name, o.as_object_mut()) {
                        obj.insert("account_name".into(), n.clone().into());
                    }
                    o
                })
                .collect();
            t.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
            t.push('\n');
        }
        Format::Csv => {
            t.push_str("account_id,token_name,token_id,token\n");
            for r in rows {
                t.push_str(&format!(
                    "{},{},{},{}\n",
                    r.key.account_id,
                    csv_field(&r.key.token_name),
                    r.token_id,
                    csv_field(r.token.expose())
                ));
            }
        }
        Format::Dotenv => {
            for r in rows {
                let value = r.token.expose();
                if let Some(why) = dotenv_refusal(value) {
                    return Err(ExportError {
                        key: r.key.clone(),
                        why,
                    });
                }
                t.push_str(&format!("{}='{value}'\n", dotenv_name(&r.key)));
            }
        }
    }
    Ok(t)
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

    #[test]
    fn csv_quotes_what_needs_it() {
        let s = Secret::new("x,\"y\"");
        let text = render(Format::Csv, &[row("a", &s)]).unwrap();
        assert_eq!(
            &*text,
            "account_id,token_name,token_id,token\n7,a,1,\"x,\"\"y\"\"\"\n"
        );
    }
}
