//! `${VAR}` expansion in the manifest's string values.
//!
//! - `${NAME}` is replaced by the variable's value; unset, it is an error naming `NAME`.
//! - `${NAME:-default}` uses `default` when `NAME` is unset or empty (as in POSIX shells); the
//!   default is literal text up to the first `}`.
//! - `$${` is a literal `${`; any other `$` is literal.
//! - Names are `[A-Za-z_][A-Za-z0-9_]*`; anything else inside `${...}` is an error.
//! - The tool's own secret variables (`LOGZIO_API_TOKEN`, and the `LOGZIO_TOKEN_*` that
//!   `export --format dotenv` writes) are refused, with or without a default: a manifest's
//!   values are printed, stored and sent, so `tokens: [${LOGZIO_API_TOKEN}]` would leak it.
//!
//! Expansion happens after YAML parsing and only in string values, so it never changes a value's
//! type: `id: ${ID}` is a string, whatever `ID` holds. The values read here can be sensitive: they
//! are never put into a message, only the `${...}` reference as written.

/// A string value after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    /// The text with every reference replaced.
    pub(crate) value: String,
    /// Whether any part of `value` came from a variable's value (not from the file): such a
    /// value must never be echoed in a message.
    pub(crate) from_env: bool,
}

/// One bad or unresolved reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvProblem {
    /// The reference as written (`${NAME}`, or `${NAME...` up to the end when unclosed).
    pub(crate) reference: String,
    /// Byte offset of the reference in the unexpanded value.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) message: String,
    /// What to do.
    pub(crate) help: String,
}

/// The environment variables this tool reads secrets from, and the prefix of those its dotenv
/// export writes: never expanded into a manifest (names are printed, stored and sent).
pub(crate) const OWN_SECRET_VARIABLES: &[&str] = &["LOGZIO_API_TOKEN"];
/// The prefix of the variables `export --format dotenv` writes, each holding a token secret.
pub(crate) const EXPORTED_SECRET_PREFIX: &str = "LOGZIO_TOKEN_";

/// Whether `name` is one of this tool's secret variables.
pub(crate) fn is_own_secret(name: &str) -> bool {
    OWN_SECRET_VARIABLES.contains(&name) || name.starts_with(EXPORTED_SECRET_PREFIX)
}

/// Is `name` a valid variable name?
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Expands every reference in `input`, or lists every problem.
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvProblem>> {
    // Fast path: most values have no `$` at all.
    if !input.contains('$') {
        return Ok(Expanded {
            value: input.to_owned(),
            from_env: false,
        });
    }
    let mut value = String::with_capacity(input.len());
    let mut from_env = false;
    let mut problems = Vec::new();
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        let at = &rest[dollar..];
        let offset = input.len() - at.len();
        if let Some(after) = at.strip_prefix("$${") {
            value.push_str("${");
            rest = after;
        } else if let Some(after) = at.strip_prefix("${") {
            let Some(close) = after.find('}') else {
                problems.push(EnvProblem {
                    reference: at.to_owned(),
                    offset,
                    message: "unclosed `${`: the variable reference has no closing `}`".to_owned(),
                    help: "close it (`${NAME}`), or write `$${` for a literal `${`".to_owned(),
                });
                rest = "";
                break;
            };
            let inner = &after[..close];
            let reference = &at[..close + 3];
            rest = &after[close + 1..];
            match resolve(inner, reference, env) {
                Ok((text, used_env)) => {
                    value.push_str(&text);
                    from_env |= used_env;
                }
                Err((message, help)) => problems.push(EnvProblem {
                    reference: reference.to_owned(),
                    offset,
                    message,
                    help,
                }),
            }
        } else {
            value.push('$');
            rest = &at[1..];
        }
    }
    value.push_str(rest);
    if problems.is_empty() {
        Ok(Expanded { value, from_env })
    } else {
        Err(problems)
    }
}

/// The replacement text of one `${inner}` and whether it came from the environment.
fn resolve(
    inner: &str,
    reference: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), (String, String)> {
    const FORMS: &str = "write `${NAME}` or `${NAME:-default}` (names are letters, digits and `_`, \
                         not starting with a digit); for a literal `${` write `$${`";
    let name_end = inner
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(inner.len());
    let (name, operator) = inner.split_at(name_end);
    if inner.is_empty() {
        return Err((
            "empty variable reference `${}`".to_owned(),
            FORMS.to_owned(),
        ));
    }
    if !is_valid_name(name) {
        return Err((
            format!("invalid variable name in `{reference}`"),
            FORMS.to_owned(),
        ));
    }
    if is_own_secret(name) {
        return Err((
            format!("`{reference}` names a secret of this tool, which a manifest may not read"),
            format!(
                "`{name}` holds a secret (the owner token, or an exported token); a manifest's values are printed, stored and sent, so the secret would leak: write the value you mean instead"
            ),
        ));
    }
    let default = if operator.is_empty() {
        None
    } else if let Some(default) = operator.strip_prefix(":-") {
        Some(default)
    } else {
        return Err((
            format!("unsupported variable reference `{reference}`"),
            format!("only `${{{name}}}` and `${{{name}:-default}}` are supported"),
        ));
    };
    match (env(name), default) {
        (Some(v), Some(default)) if v.is_empty() => Ok((default.to_owned(), false)),
        (Some(v), _) => Ok((v, true)),
        (None, Some(default)) => Ok((default.to_owned(), false)),
        (None, None) => Err((
            format!("environment variable `{name}` is not set"),
            format!("set it, or give a default: `${{{name}:-default}}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TEAM" => Some("payments".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(input: &str) -> (String, bool) {
        let e = expand(input, &env).unwrap();
        (e.value, e.from_env)
    }

    fn problems(input: &str) -> Vec<(String, usize, String)> {
        expand(input, &env)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.reference, p.offset, p.message))
            .collect()
    }

    #[test]
    fn expands_and_marks_values_from_the_environment() {
        assert_eq!(ok("plain"), ("plain".into(), false));
        assert_eq!(ok("${TEAM}-ci"), ("payments-ci".into(), true));
        assert_eq!(ok("${NOPE:-x}"), ("x".into(), false));
        assert_eq!(ok("${EMPTY:-x}"), ("x".into(), false));
        assert_eq!(ok("${EMPTY}"), (String::new(), true));
        assert_eq!(ok("${TEAM:-x}"), ("payments".into(), true));
        assert_eq!(ok("${NOPE:-}"), (String::new(), false));
    }

    #[test]
    fn dollars_and_escapes() {
        assert_eq!(ok("$${TEAM}"), ("${TEAM}".into(), false));
        assert_eq!(ok("a$b$$c$"), ("a$b$$c$".into(), false));
        // Only `$${` is special, scanning from the left: `$` then `$${TEAM}`.
        assert_eq!(ok("$$${TEAM}"), ("$${TEAM}".into(), false));
        assert_eq!(ok("é${TEAM}é"), ("épaymentsé".into(), true));
    }

    #[test]
    fn reports_every_problem_with_its_offset() {
        assert_eq!(
            problems("x${A}y${1B}${}${C-d}${D:=e}${E"),
            vec![
                (
                    "${A}".into(),
                    1,
                    "environment variable `A` is not set".into()
                ),
                ("${1B}".into(), 6, "invalid variable name in `${1B}`".into()),
                ("${}".into(), 11, "empty variable reference `${}`".into()),
                (
                    "${C-d}".into(),
                    14,
                    "unsupported variable reference `${C-d}`".into()
                ),
                (
                    "${D:=e}".into(),
                    20,
                    "unsupported variable reference `${D:=e}`".into()
                ),
                (
                    "${E".into(),
                    27,
                    "unclosed `${`: the variable reference has no closing `}`".into()
                ),
            ]
        );
    }

    #[test]
    fn the_tools_own_secrets_are_never_expanded() {
        let env = |name: &str| (name != "UNSET").then(|| "owner-tok-5e1d".to_owned());
        for input in [
            "${LOGZIO_API_TOKEN}",
            "ci-${LOGZIO_API_TOKEN:-x}",
            "${LOGZIO_TOKEN_160343_CI}",
        ] {
            let problems = expand(input, &env).unwrap_err();
            assert_eq!(problems.len(), 1, "{input}");
            let text = format!("{} {}", problems[0].message, problems[0].help);
            assert!(text.contains("secret"), "{text}");
            assert!(!text.contains("owner-tok"), "{text}");
        }
        // Other LOGZIO_ variables (not secrets) still expand.
        assert_eq!(
            expand("${LOGZIO_REGION}", &env).unwrap().value,
            "owner-tok-5e1d"
        );
    }

    #[test]
    fn names() {
        assert!(is_valid_name("_A1"));
        assert!(is_valid_name("a"));
        assert!(!is_valid_name("1a"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("A-B"));
        assert!(!is_valid_name("É"));
    }
}
