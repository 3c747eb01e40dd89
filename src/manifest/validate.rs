//! Validation: every rule of the manifest format, checked against the located YAML tree in one
//! pass that collects *every* problem, then the [`Manifest`] built only when there is none.
//!
//! Values from `${VAR}` expansion are checked like any other, but a message never shows them:
//! it names the `${...}` reference as written in the file instead.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use super::diagnostic::{Diagnostic, Lines};
use super::env::{self, Expanded};
use super::node::{Node, NodeValue, UNKNOWN_OFFSET};
use super::schema::{MAX_ACCOUNT_ID, keys};
use super::{
    AccountEntry, AccountSelector, Endpoint, MAX_TOKEN_NAME_CHARS, Manifest, SUPPORTED_VERSION,
    Settings, limits,
};
use crate::region::Region;

mod create;

/// Region codes Logz.io no longer serves, named as such instead of "unknown".
const DEPRECATED_REGIONS: &[&str] = &["nl", "wa"];

/// Checks `root` (parsed from `text`) and builds the manifest, or returns every problem, ordered
/// by line then column.
pub(crate) fn validate(
    path: &Path,
    text: &str,
    root: &Node,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Manifest, Vec<Diagnostic>> {
    let mut checker = Checker {
        path,
        lines: Lines::new(text),
        env,
        diagnostics: Vec::new(),
    };
    let parts = checker.manifest(root);
    let mut diagnostics = checker.diagnostics;
    match parts {
        Some(parts) if diagnostics.is_empty() => Ok(Manifest {
            path: path.to_path_buf(),
            version: SUPPORTED_VERSION,
            endpoint: parts.endpoint,
            settings: parts.settings,
            recipients: parts.recipients,
            default_tokens: parts.default_tokens,
            default_rotate_after_days: parts.default_rotate_after_days,
            default_create: parts.default_create,
            accounts: parts.accounts,
        }),
        _ => {
            diagnostics.sort_by_key(|d| (d.line, d.column));
            Err(diagnostics)
        }
    }
}

/// The pieces of a manifest whose every check passed.
struct Parts {
    endpoint: Option<Endpoint>,
    settings: Settings,
    recipients: Vec<String>,
    default_tokens: Vec<String>,
    default_rotate_after_days: Option<u32>,
    default_create: Option<super::AccountSettings>,
    accounts: Vec<AccountEntry>,
}

/// The mappings of the format, for messages and key lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Root,
    Defaults,
    Settings,
    Secrets,
    Account,
    Create,
    Utilization,
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Root,
        Section::Defaults,
        Section::Settings,
        Section::Secrets,
        Section::Account,
        Section::Create,
        Section::Utilization,
    ];

    fn keys(self) -> &'static [&'static str] {
        match self {
            Section::Root => keys::ROOT,
            Section::Defaults => keys::DEFAULTS,
            Section::Settings => keys::SETTINGS,
            Section::Secrets => keys::SECRETS,
            Section::Account => keys::ACCOUNT,
            Section::Create => keys::CREATE,
            Section::Utilization => keys::UTILIZATION,
        }
    }

    /// Where the section is, for "unknown key ... here" messages.
    fn place(self) -> &'static str {
        match self {
            Section::Root => "at the top level",
            Section::Defaults => "in `defaults`",
            Section::Settings => "in `settings`",
            Section::Secrets => "in `secrets`",
            Section::Account => "in an account",
            Section::Create => "in `create`",
            Section::Utilization => "in `utilization`",
        }
    }

    /// Where a key of this section goes, for "it belongs elsewhere" hints.
    fn home(self) -> &'static str {
        match self {
            Section::Root => "at the top level",
            Section::Defaults => "under `defaults:`",
            Section::Settings => "under `settings:`",
            Section::Secrets => "under `secrets:`",
            Section::Account => "in an account",
            Section::Create => "under `create:`",
            Section::Utilization => "under `utilization:`",
        }
    }
}

/// The first occurrence of each known key of a mapping, as (key node, value node).
struct Fields<'n> {
    keys: &'static [&'static str],
    found: Vec<Option<(&'n Node, &'n Node)>>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<(&'n Node, &'n Node)> {
        let index = self.keys.iter().position(|k| *k == key)?;
        self.found.get(index).copied().flatten()
    }

    fn value(&self, key: &str) -> Option<&'n Node> {
        self.get(key).map(|(_, v)| v)
    }
}

/// A string value after expansion, with its node.
struct Text<'n> {
    node: &'n Node,
    value: String,
    from_env: bool,
}

/// The token names known for `defaults.tokens`.
enum Defaults {
    /// Not given.
    Absent,
    /// Given but wrong (already reported): do not pile "no token names" errors on top.
    Invalid,
    /// Given and valid (possibly empty).
    Valid(Vec<String>),
}

/// An account's own `tokens`.
enum OwnTokens<'n> {
    Absent,
    Invalid,
    Valid(&'n Node, Vec<String>),
}

struct Checker<'a> {
    /// The manifest's path, for files named relative to it.
    path: &'a Path,
    lines: Lines<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The source text of a node, for hints (never an expanded value).
    fn raw(&self, node: &Node) -> &'a str {
        if node.offset == UNKNOWN_OFFSET {
            self.lines.raw(node.line, node.column, node.length)
        } else {
            self.lines.raw_at(
                usize::try_from(node.offset).unwrap_or(usize::MAX),
                node.length,
            )
        }
    }

    /// How a string value is named in a message: quoted, or by its `${...}` reference when it
    /// holds anything from the environment.
    fn show(&self, text: &Text<'_>) -> String {
        if text.from_env {
            let raw = self.raw(text.node).trim();
            let unquoted = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                .unwrap_or(raw);
            let one_line: String = unquoted
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(80)
                .collect();
            format!("from `{one_line}` (value not shown)")
        } else {
            format!("`{}`", text.value)
        }
    }

    fn wrong_type(&self, node: &Node, what: &str, expected: &str) -> Diagnostic {
        node.diagnostic(format!(
            "wrong type for {what}: expected {expected}, found {}",
            node.value.kind()
        ))
    }

    /// A wrong-type diagnostic for a string where a number is expected, with a hint when the
    /// string is a quoted number or a `${...}` reference.
    fn string_for_number(&self, node: &Node, what: &str, expected: &str) -> Diagnostic {
        let d = self.wrong_type(node, what, expected);
        let NodeValue::Str(s) = &node.value else {
            return d;
        };
        if s.contains("${") {
            d.with_help(
                "`${...}` always expands to a string; environment variables can only set string \
                 values",
            )
        } else if s.trim().parse::<f64>().is_ok() {
            d.with_help(format!("write it without quotes: `{}`", s.trim()))
        } else {
            d
        }
    }

    /// Expands a string value, reporting each bad or missing `${...}` at its own place.
    fn expand<'n>(&mut self, node: &'n Node, raw_value: &str) -> Option<Text<'n>> {
        match env::expand(raw_value, self.env) {
            Ok(Expanded { value, from_env }) => Some(Text {
                node,
                value,
                from_env,
            }),
            Err(problems) => {
                let raw = self.raw(node);
                let mut cursor = 0;
                for problem in problems {
                    let found = raw
                        .get(cursor..)
                        .and_then(|rest| rest.find(&problem.reference))
                        .map(|i| cursor + i);
                    let d = match found {
                        Some(at) => {
                            cursor = at + problem.reference.len();
                            let (line, column) =
                                Lines::position_within(node.line, node.column, raw, at);
                            let length = problem.reference.chars().count();
                            Diagnostic::new(
                                line,
                                column,
                                u32::try_from(length).unwrap_or(1),
                                problem.message,
                            )
                        }
                        // Written with escapes the reference is not in the source as is:
                        // point at the whole value.
                        None => node.diagnostic(problem.message),
                    };
                    self.report(d.with_help(problem.help));
                }
                None
            }
        }
    }

    /// Reports unknown and duplicate keys; returns the first occurrence of each known key.
    fn fields<'n>(&mut self, pairs: &'n [(Node, Node)], section: Section) -> Fields<'n> {
        let known = section.keys();
        let mut found: Vec<Option<(&'n Node, &'n Node)>> = vec![None; known.len()];
        // Most mappings have a handful of keys: a linear search beats hashing there, but a
        // hostile mapping with thousands of keys must not make this quadratic.
        let mut seen_few: Vec<(&str, &Node)> = Vec::new();
        let mut seen_many: HashMap<&str, &Node> = HashMap::new();
        let many = pairs.len() > 16;
        for (key, value) in pairs {
            let name = match &key.value {
                NodeValue::Str(s) => s.as_str(),
                NodeValue::Seq(_) | NodeValue::Map(_) => {
                    self.report(key.diagnostic(format!(
                        "unexpected {} used as a key {}",
                        key.value.kind(),
                        section.place()
                    )));
                    continue;
                }
                _ => self.raw(key).trim(),
            };
            let first = if many {
                seen_many.get(name).copied()
            } else {
                seen_few.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
            };
            if let Some(first) = first {
                let d = key
                    .diagnostic(format!("duplicate key `{name}`"))
                    .with_note(first.line, first.column, "first defined here")
                    .with_help("keep one of them");
                self.report(d);
                continue;
            }
            if many {
                seen_many.insert(name, key);
            } else {
                seen_few.push((name, key));
            }
            match known.iter().position(|k| *k == name) {
                Some(index) => {
                    if let Some(slot) = found.get_mut(index) {
                        *slot = Some((key, value));
                    }
                }
                None => {
                    let d = self.unknown_key(key, name, section);
                    self.report(d);
                }
            }
        }
        Fields { keys: known, found }
    }

    fn unknown_key(&self, key: &Node, name: &str, section: Section) -> Diagnostic {
        let d = key.diagnostic(format!("unknown key `{name}` {}", section.place()));
        let known = section.keys();
        if let Some(suggestion) = closest(name, known) {
            return d.with_help(format!("did you mean `{suggestion}`?"));
        }
        let homes: Vec<&str> = Section::ALL
            .into_iter()
            .filter(|s| *s != section && s.keys().contains(&name))
            .map(Section::home)
            .collect();
        if !homes.is_empty() {
            return d.with_help(format!("`{name}` goes {}", homes.join(" or ")));
        }
        d.with_help(format!("known keys here: {}", known.join(", ")))
    }

    fn manifest(&mut self, root: &Node) -> Option<Parts> {
        let NodeValue::Map(pairs) = &root.value else {
            self.report(root.diagnostic(format!(
                "the manifest must be a mapping with `version:` and `accounts:`, found {}",
                root.value.kind()
            )));
            return None;
        };
        let fields = self.fields(pairs, Section::Root);

        let version_ok = match fields.value("version") {
            None => {
                self.report(
                    Diagnostic::new(root.line, root.column, 0, "missing `version`")
                        .with_help(format!("add `version: {SUPPORTED_VERSION}`")),
                );
                false
            }
            Some(node) => self.version(node),
        };

        let endpoint = self.endpoint(&fields);
        let defaults = match fields.value("defaults") {
            None => Defaults::Absent,
            Some(node) => self.defaults(node),
        };
        // `defaults.rotate_after_days` (its key is checked with the rest of `defaults`).
        let default_rotate_after_days = fields
            .value("defaults")
            .and_then(|node| match &node.value {
                NodeValue::Map(pairs) => pairs
                    .iter()
                    .find(
                        |(k, _)| matches!(&k.value, NodeValue::Str(s) if s == "rotate_after_days"),
                    )
                    .map(|(_, v)| v),
                _ => None,
            })
            .and_then(|v| self.integer_setting(v, "rotate_after_days", limits::ROTATE_AFTER_DAYS));
        let (default_create, default_create_ok) = match fields.value("defaults") {
            Some(node) => self.default_create(node),
            None => (None, true),
        };
        let settings = match fields.value("settings") {
            None => Some(Settings::default()),
            Some(node) => self.settings(node),
        };
        let recipients = match fields.value("secrets") {
            None => Some(Vec::new()),
            Some(node) => self.secrets(node),
        };
        let accounts = match fields.get("accounts") {
            None => {
                self.report(
                    Diagnostic::new(root.line, root.column, 0, "missing `accounts`").with_help(
                        "add `accounts:` with one entry per account, e.g. `- id: 160343` or \
                         `- name: payments-prod`",
                    ),
                );
                None
            }
            Some((key, value)) => self.accounts(key, value, &defaults, default_create.as_ref()),
        };

        let default_tokens = match defaults {
            Defaults::Valid(tokens) => tokens,
            Defaults::Absent => Vec::new(),
            Defaults::Invalid => return None,
        };
        if !version_ok || !default_create_ok {
            return None;
        }
        Some(Parts {
            endpoint: endpoint?,
            settings: settings?,
            recipients: recipients?,
            default_tokens,
            default_rotate_after_days,
            default_create: default_create.map(|d| d.settings),
            accounts: accounts?,
        })
    }

    fn version(&mut self, node: &Node) -> bool {
        const WHAT: &str = "`version`";
        match &node.value {
            NodeValue::Int(v) if *v == i128::from(SUPPORTED_VERSION) => true,
            NodeValue::Int(v) => {
                self.report(
                    node.diagnostic(format!("unsupported manifest version {v}"))
                        .with_help(format!(
                            "this build supports version {SUPPORTED_VERSION} only: write \
                             `version: {SUPPORTED_VERSION}`"
                        )),
                );
                false
            }
            NodeValue::Str(_) => {
                let d = self.string_for_number(node, WHAT, "an integer");
                self.report(d);
                false
            }
            _ => {
                let d = self
                    .wrong_type(node, WHAT, "an integer")
                    .with_help(format!("write `version: {SUPPORTED_VERSION}`"));
                self.report(d);
                false
            }
        }
    }

    /// `region` / `api_url`: `Some(None)` when neither is set, `None` when something is wrong.
    fn endpoint(&mut self, fields: &Fields<'_>) -> Option<Option<Endpoint>> {
        let region = fields.get("region");
        let api_url = fields.get("api_url");
        let mut ok = true;
        if let (Some((region_key, _)), Some((url_key, _))) = (region, api_url) {
            let (first, first_name, second) =
                if (region_key.line, region_key.column) < (url_key.line, url_key.column) {
                    (region_key, "region", url_key)
                } else {
                    (url_key, "api_url", region_key)
                };
            self.report(
                second
                    .diagnostic("`region` and `api_url` cannot both be set")
                    .with_note(
                        first.line,
                        first.column,
                        format!("`{first_name}` is set here"),
                    )
                    .with_help(
                        "keep one: `region` for a Logz.io region, or `api_url` for a custom server",
                    ),
            );
            ok = false;
        }
        let region = region.and_then(|(_, node)| {
            let parsed = self.region(node);
            ok &= parsed.is_some();
            parsed
        });
        let url = api_url.and_then(|(_, node)| {
            let parsed = self.api_url(node);
            ok &= parsed.is_some();
            parsed
        });
        if !ok {
            return None;
        }
        Some(match (region, url) {
            (Some(region), _) => Some(Endpoint::Region(region)),
            (None, Some(url)) => Some(Endpoint::Url(url)),
            (None, None) => None,
        })
    }

    fn region(&mut self, node: &Node) -> Option<Region> {
        let NodeValue::Str(raw) = &node.value else {
            let d = self
                .wrong_type(node, "`region`", "a string")
                .with_help(format!("valid regions: {}", Region::codes_list()));
            self.report(d);
            return None;
        };
        let text = self.expand(node, raw)?;
        if let Some(region) = Region::from_code(&text.value) {
            return Some(region);
        }
        let code = text.value.trim().to_ascii_lowercase();
        let message = if DEPRECATED_REGIONS.contains(&code.as_str()) {
            format!(
                "region {} is deprecated: Logz.io no longer serves it",
                self.show(&text)
            )
        } else {
            format!("unknown region {}", self.show(&text))
        };
        self.report(
            node.diagnostic(message)
                .with_label(format!("valid regions: {}", Region::codes_list())),
        );
        None
    }

    fn api_url(&mut self, node: &Node) -> Option<String> {
        let NodeValue::Str(raw) = &node.value else {
            let d = self.wrong_type(node, "`api_url`", "a string");
            self.report(d);
            return None;
        };
        let text = self.expand(node, raw)?;
        match crate::endpoint::parse_base_url(&text.value) {
            Ok(_) => Some(text.value),
            Err(reason) => {
                let what = if text.from_env {
                    "invalid `api_url` (expanded value not shown)"
                } else {
                    "invalid `api_url`"
                };
                self.report(node.diagnostic(format!("{what}: {reason}")).with_help(
                    "write it as `http(s)://host[:port][/path]`, e.g. \
                         `https://api-eu.logz.io`",
                ));
                None
            }
        }
    }

    fn defaults(&mut self, node: &Node) -> Defaults {
        let NodeValue::Map(pairs) = &node.value else {
            let d = self
                .wrong_type(node, "`defaults`", "a mapping")
                .with_help("write `defaults:` with `tokens: [name, ...]` under it");
            self.report(d);
            return Defaults::Invalid;
        };
        let fields = self.fields(pairs, Section::Defaults);
        match fields.value("tokens") {
            None => Defaults::Absent,
            Some(tokens) => match self.token_list(tokens, "`defaults.tokens`") {
                Some(names) => Defaults::Valid(names),
                None => Defaults::Invalid,
            },
        }
    }

    fn settings(&mut self, node: &Node) -> Option<Settings> {
        let NodeValue::Map(pairs) = &node.value else {
            let d = self.wrong_type(node, "`settings`", "a mapping");
            self.report(d);
            return None;
        };
        let fields = self.fields(pairs, Section::Settings);
        let mut ok = true;
        let mut integer = |this: &mut Self, key: &str, range: (u32, u32)| {
            let value = fields.value(key)?;
            let parsed = this.integer_setting(value, key, range);
            ok &= parsed.is_some();
            parsed
        };
        let concurrency = integer(self, "concurrency", limits::CONCURRENCY);
        let max_attempts = integer(self, "max_attempts", limits::MAX_ATTEMPTS);
        let max_ambiguous = integer(self, "max_ambiguous", limits::MAX_AMBIGUOUS);
        let rotate_after_days = integer(self, "rotate_after_days", limits::ROTATE_AFTER_DAYS);
        let mut boolean = |this: &mut Self, key: &str| match fields.value(key) {
            None => None,
            Some(node) => match &node.value {
                NodeValue::Bool(b) => Some(*b),
                _ => {
                    let d = this
                        .wrong_type(node, &format!("`{key}`"), "true or false")
                        .with_help(format!("write `{key}: true` or remove the line"));
                    this.report(d);
                    ok = false;
                    None
                }
            },
        };
        let recreate_revoked = boolean(self, "recreate_revoked");
        let update_accounts = boolean(self, "update_accounts");
        let mut number = |this: &mut Self, key: &str, range: (f64, f64)| {
            let value = fields.value(key)?;
            let parsed = this.number_setting(value, key, range);
            ok &= parsed.is_some();
            parsed
        };
        let rate_per_second = number(self, "rate_per_second", limits::RATE_PER_SECOND);
        let request_timeout_seconds = number(
            self,
            "request_timeout_seconds",
            limits::REQUEST_TIMEOUT_SECONDS,
        );
        let account_lookup_seconds = number(
            self,
            "account_lookup_seconds",
            limits::ACCOUNT_LOOKUP_SECONDS,
        );
        ok.then_some(Settings {
            concurrency,
            rate_per_second,
            max_attempts,
            max_ambiguous,
            request_timeout_seconds,
            recreate_revoked,
            rotate_after_days,
            update_accounts,
            account_lookup_seconds,
        })
    }

    /// `secrets:`: the recipients, inline and from `recipients_file`, each checked.
    fn secrets(&mut self, node: &Node) -> Option<Vec<String>> {
        let NodeValue::Map(pairs) = &node.value else {
            let d = self
                .wrong_type(node, "`secrets`", "a mapping")
                .with_help("write `secrets:` with `recipients: [age1...]` under it");
            self.report(d);
            return None;
        };
        let fields = self.fields(pairs, Section::Secrets);
        let mut out = Vec::new();
        let mut ok = true;
        if let Some(list) = fields.value("recipients") {
            let NodeValue::Seq(items) = &list.value else {
                let d = self
                    .wrong_type(list, "`secrets.recipients`", "a list of age recipients")
                    .with_help("write a list, even for one key: `recipients: [age1...]`");
                self.report(d);
                return None;
            };
            for item in items {
                let NodeValue::Str(raw) = &item.value else {
                    let d = self.wrong_type(item, "a recipient", "a string");
                    self.report(d);
                    ok = false;
                    continue;
                };
                let Some(text) = self.expand(item, raw) else {
                    ok = false;
                    continue;
                };
                match crate::recipient::parse_recipient(&text.value) {
                    Ok(r) => out.push(r.to_string()),
                    Err(e) => {
                        let message = if text.from_env {
                            "invalid recipient (expanded value not shown): not an age X25519 \
                             recipient"
                                .to_owned()
                        } else {
                            format!("invalid recipient: {e}")
                        };
                        let mut d = item.diagnostic(message).with_help(
                            "a recipient is an age public key, `age1…`; make a key pair with \
                             `age-keygen -o key.txt` and give the public key it prints",
                        );
                        if e == crate::recipient::RecipientError::PrivateKey || text.from_env {
                            d = d.hiding_source();
                        }
                        self.report(d);
                        ok = false;
                    }
                }
            }
        }
        if let Some(file) = fields.value("recipients_file") {
            match self.recipients_file(file) {
                Some(keys) => out.extend(keys),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Reads and checks `secrets.recipients_file` (relative to the manifest).
    fn recipients_file(&mut self, node: &Node) -> Option<Vec<String>> {
        let NodeValue::Str(raw) = &node.value else {
            let d = self.wrong_type(node, "`secrets.recipients_file`", "a path");
            self.report(d);
            return None;
        };
        let text = self.expand(node, raw)?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let path = dir.join(&text.value);
        match crate::recipient::read_recipients_file(&path) {
            Ok(keys) => Some(keys.iter().map(ToString::to_string).collect()),
            Err(e) => {
                self.report(
                    node.diagnostic(e.to_string())
                        .with_help("the file lists age recipients, one a line (age's -R format)"),
                );
                None
            }
        }
    }

    fn integer_setting(&mut self, node: &Node, key: &str, (min, max): (u32, u32)) -> Option<u32> {
        let what = format!("`{key}`");
        match &node.value {
            NodeValue::Int(v) => match u32::try_from(*v) {
                Ok(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.report(node.diagnostic(format!(
                        "`{key}` must be between {min} and {max}, found {v}"
                    )));
                    None
                }
            },
            NodeValue::Str(_) => {
                let d = self.string_for_number(node, &what, "an integer");
                self.report(d);
                None
            }
            _ => {
                let d = self
                    .wrong_type(node, &what, "an integer")
                    .with_help(format!(
                        "write a whole number from {min} to {max}, or remove the line to use the \
                         default"
                    ));
                self.report(d);
                None
            }
        }
    }

    /// A number (an integer or a float) for `what`, or the type error reported: a quoted
    /// number, or another type, which should have been `expected` (with `help`, if any).
    pub(super) fn number(
        &mut self,
        node: &Node,
        what: &str,
        expected: &str,
        help: Option<String>,
    ) -> Option<f64> {
        match &node.value {
            NodeValue::Float(v) => Some(*v),
            // Settings and volumes are small numbers: the conversion is exact where it matters.
            #[allow(clippy::cast_precision_loss)]
            NodeValue::Int(v) => Some(*v as f64),
            NodeValue::Str(_) => {
                let d = self.string_for_number(node, what, "a number");
                self.report(d);
                None
            }
            _ => {
                let mut d = self.wrong_type(node, what, expected);
                if let Some(help) = help {
                    d = d.with_help(help);
                }
                self.report(d);
                None
            }
        }
    }

    fn number_setting(&mut self, node: &Node, key: &str, (min, max): (f64, f64)) -> Option<f64> {
        let help =
            format!("write a number from {min} to {max}, or remove the line to use the default");
        let value = self.number(node, &format!("`{key}`"), "a number", Some(help))?;
        if (min..=max).contains(&value) {
            Some(value)
        } else {
            let found = self.raw(node).trim();
            self.report(node.diagnostic(format!(
                "`{key}` must be between {min} and {max}, found {found}"
            )));
            None
        }
    }

    fn accounts(
        &mut self,
        key: &Node,
        node: &Node,
        defaults: &Defaults,
        default_create: Option<&create::Located>,
    ) -> Option<Vec<AccountEntry>> {
        const HOW: &str = "list at least one account, e.g. `- id: 160343` or \
                           `- name: payments-prod`";
        let items = match &node.value {
            NodeValue::Seq(items) if !items.is_empty() => items,
            NodeValue::Seq(_) | NodeValue::Null => {
                self.report(
                    key.diagnostic("no accounts: `accounts` is empty")
                        .with_help(HOW),
                );
                return None;
            }
            _ => {
                let d = self
                    .wrong_type(node, "`accounts`", "a list of accounts")
                    .with_help(HOW);
                self.report(d);
                return None;
            }
        };
        let mut ids: HashMap<u32, &Node> = HashMap::with_capacity(items.len());
        let mut names: HashMap<String, &Node> = HashMap::new();
        let mut entries = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.account(item, defaults, default_create, &mut ids, &mut names) {
                Some(entry) if ok => entries.push(entry),
                Some(_) => {}
                None => {
                    ok = false;
                    entries = Vec::new();
                }
            }
        }
        if !ok {
            return None;
        }
        if !self.check_sharing(&entries, &|name| names.contains_key(name)) {
            return None;
        }
        Some(entries.into_iter().map(|(entry, _)| entry).collect())
    }

    fn account<'n>(
        &mut self,
        item: &'n Node,
        defaults: &Defaults,
        default_create: Option<&create::Located>,
        ids: &mut HashMap<u32, &'n Node>,
        names: &mut HashMap<String, &'n Node>,
    ) -> Option<(AccountEntry, Vec<create::NameRef>)> {
        let NodeValue::Map(pairs) = &item.value else {
            let d = self.wrong_type(item, "an account", "a mapping with `id` or `name`");
            let d = match &item.value {
                NodeValue::Int(_) => d.with_help(format!("write `- id: {}`", self.raw(item))),
                NodeValue::Str(_) => d.with_help("write `- name: ...` (or `- id: ...`)"),
                _ => d.with_help("write `- id: 160343` or `- name: payments-prod`"),
            };
            self.report(d);
            return None;
        };
        let fields = self.fields(pairs, Section::Account);
        let id_node = fields.value("id");
        let name_node = fields.value("name");
        let mut ok = true;

        let selector = match (id_node, name_node) {
            (Some(_), Some(_)) => {
                self.report(
                    item.diagnostic("account has both `id` and `name`")
                        .with_help("keep one: `id` is the account's number, `name` its name"),
                );
                ok = false;
                // Still check both values.
                let _ = self.account_id(id_node, ids);
                let _ = self.account_name(name_node, names);
                None
            }
            (None, None) => {
                self.report(
                    item.diagnostic("account has neither `id` nor `name`")
                        .with_help("add `id: <account id>` or `name: <account name>`"),
                );
                ok = false;
                None
            }
            (Some(_), None) => self.account_id(id_node, ids),
            (None, Some(_)) => self.account_name(name_node, names),
        };
        // Only for messages: built when needed (most accounts have no problem).
        let describe = |selector: &Option<(AccountSelector, bool)>| match selector {
            Some((selector, false)) => selector.to_string(),
            _ => format!("the account at {}:{}", item.line, item.column),
        };
        ok &= selector.is_some();

        let own = match fields.value("tokens") {
            None => OwnTokens::Absent,
            Some(node) => match self.token_list(node, "`tokens`") {
                Some(names) => OwnTokens::Valid(node, names),
                None => OwnTokens::Invalid,
            },
        };
        let tokens = match own {
            OwnTokens::Valid(node, names) if names.is_empty() => {
                self.report(
                    node.diagnostic(format!("{} gets no token names", describe(&selector)))
                        .with_help(
                            "list at least one name in its `tokens`, or remove `tokens: []` to \
                             use `defaults.tokens`",
                        ),
                );
                None
            }
            OwnTokens::Valid(_, names) => Some(names),
            OwnTokens::Invalid => None,
            OwnTokens::Absent => match defaults {
                Defaults::Valid(names) if !names.is_empty() => Some(names.clone()),
                Defaults::Invalid => None,
                Defaults::Valid(_) | Defaults::Absent => {
                    self.report(
                        item.diagnostic(format!("{} gets no token names", describe(&selector)))
                            .with_help("list `tokens:` for it or set `defaults.tokens`"),
                    );
                    None
                }
            },
        };
        let rotate_after_days = fields
            .value("rotate_after_days")
            .and_then(|v| self.integer_setting(v, "rotate_after_days", limits::ROTATE_AFTER_DAYS));
        let (create, name_refs) = match fields.get("create") {
            None => (None, Vec::new()),
            Some((key, value)) => match self.create_field(value) {
                create::CreateField::No => (None, Vec::new()),
                create::CreateField::Invalid => {
                    ok = false;
                    (None, Vec::new())
                }
                create::CreateField::Yes(own) => {
                    let selector = selector.as_ref().map(|(s, _)| s);
                    match self.creatable(key, selector, &own, default_create) {
                        Some((settings, refs)) => (Some(settings), refs),
                        None => {
                            ok = false;
                            (None, Vec::new())
                        }
                    }
                }
            },
        };
        if !ok {
            return None;
        }
        Some((
            AccountEntry {
                selector: selector?.0,
                tokens: tokens?,
                rotate_after_days,
                create,
                line: item.line,
                column: item.column,
            },
            name_refs,
        ))
    }

    /// The account id, and whether it came from the environment (never: ids are integers).
    fn account_id<'n>(
        &mut self,
        node: Option<&'n Node>,
        ids: &mut HashMap<u32, &'n Node>,
    ) -> Option<(AccountSelector, bool)> {
        let node = node?;
        let id = match &node.value {
            NodeValue::Int(v) => match u32::try_from(*v) {
                Ok(id) if (1..=MAX_ACCOUNT_ID).contains(&id) => id,
                _ => {
                    self.report(
                        node.diagnostic(format!(
                            "account id must be between 1 and {MAX_ACCOUNT_ID}, found {v}"
                        ))
                        .with_help("use the sub account's id as shown by Logz.io"),
                    );
                    return None;
                }
            },
            NodeValue::Str(_) => {
                let d = self.string_for_number(node, "`id`", "an integer");
                self.report(d);
                return None;
            }
            _ => {
                let d = self.wrong_type(node, "`id`", "an integer");
                self.report(d);
                return None;
            }
        };
        match ids.entry(id) {
            Entry::Occupied(first) => {
                let first = first.get();
                self.report(
                    node.diagnostic(format!("duplicate account {id}"))
                        .with_note(first.line, first.column, "first listed here")
                        .with_help("list each account once"),
                );
                None
            }
            Entry::Vacant(slot) => {
                slot.insert(node);
                Some((AccountSelector::Id(id), false))
            }
        }
    }

    /// The account name, and whether it holds anything from the environment.
    fn account_name<'n>(
        &mut self,
        node: Option<&'n Node>,
        names: &mut HashMap<String, &'n Node>,
    ) -> Option<(AccountSelector, bool)> {
        let node = node?;
        let NodeValue::Str(raw) = &node.value else {
            let d = self.wrong_type(node, "`name`", "a string");
            let d = if matches!(node.value, NodeValue::Int(_) | NodeValue::Float(_)) {
                d.with_help(format!(
                    "for an account id write `id: {}`; for a name that looks like a number, \
                     quote it",
                    self.raw(node).trim()
                ))
            } else {
                d
            };
            self.report(d);
            return None;
        };
        let text = self.expand(node, raw)?;
        if text.value.is_empty() {
            self.report(
                node.diagnostic("account name is empty")
                    .with_help("write the sub account's name, or use `id:`"),
            );
            return None;
        }
        if let Some(c) = text.value.chars().find(|c| c.is_control()) {
            self.report(node.diagnostic(format!(
                "account name {} contains the control character U+{:04X}",
                self.show(&text),
                u32::from(c)
            )));
            return None;
        }
        if let Some(first) = names.get(&text.value) {
            let (line, column) = (first.line, first.column);
            let shown = self.show(&text);
            self.report(
                node.diagnostic(format!("duplicate account name {shown}"))
                    .with_note(line, column, "first listed here")
                    .with_help("list each account once"),
            );
            return None;
        }
        names.insert(text.value.clone(), node);
        Some((AccountSelector::Name(text.value), text.from_env))
    }

    /// A list of token names, or `None` after reporting every problem in it.
    fn token_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let NodeValue::Seq(items) = &node.value else {
            let d = self
                .wrong_type(node, what, "a list of token names")
                .with_help("write a list, even for one name: `tokens: [name]`");
            self.report(d);
            return None;
        };
        let mut names: Vec<String> = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, &Node> = HashMap::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.token_name(item) {
                Some(text) => match seen.entry(text.value.clone()) {
                    Entry::Occupied(first) => {
                        let first = *first.get();
                        let shown = self.show(&text);
                        self.report(
                            item.diagnostic(format!("duplicate token name {shown}"))
                                .with_note(first.line, first.column, "first listed here")
                                .with_help("list each token name once per account"),
                        );
                        ok = false;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(item);
                        names.push(text.value);
                    }
                },
                None => ok = false,
            }
        }
        ok.then_some(names)
    }

    /// One token name, or `None` after reporting every problem with it.
    fn token_name<'n>(&mut self, node: &'n Node) -> Option<Text<'n>> {
        let raw = match &node.value {
            NodeValue::Str(raw) => raw,
            NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
                let written = self.raw(node).trim();
                let d = self
                    .wrong_type(node, "a token name", "a string")
                    .with_help(format!("quote it: `\"{written}\"`"));
                self.report(d);
                return None;
            }
            NodeValue::Null => {
                let d = self
                    .wrong_type(node, "a token name", "a string")
                    .with_help("write the name, or remove the empty entry");
                self.report(d);
                return None;
            }
            NodeValue::Seq(_) | NodeValue::Map(_) => {
                let d = self
                    .wrong_type(node, "a token name", "a string")
                    .with_help("each entry of `tokens` is one name; lists do not nest");
                self.report(d);
                return None;
            }
        };
        let text = self.expand(node, raw)?;
        let mut ok = true;
        let chars = text.value.chars().count();
        if chars == 0 {
            self.report(
                node.diagnostic("empty token name")
                    .with_help("write a name of 1 to 128 characters, or remove the entry"),
            );
            ok = false;
        }
        if chars > MAX_TOKEN_NAME_CHARS {
            self.report(node.diagnostic(format!(
                "token name is {chars} characters long; the limit is {MAX_TOKEN_NAME_CHARS}"
            )));
            ok = false;
        }
        if let Some(c) = text.value.chars().find(|c| c.is_control()) {
            let shown = if text.from_env {
                format!("{} ", self.show(&text))
            } else {
                String::new()
            };
            self.report(node.diagnostic(format!(
                "token name {shown}contains the control character U+{:04X}",
                u32::from(c)
            )));
            ok = false;
        }
        ok.then_some(text)
    }
}

/// The known key closest to `name`, if it is close enough to be a likely typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_lowercase();
    let len = lower.chars().count();
    known
        .iter()
        .map(|k| (*k, distance(&lower, k)))
        .filter(|(_, d)| *d <= 2 && *d < len.max(2))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// Optimal string alignment distance: edits, counting a swap of neighbours as one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest("regoin", keys::ROOT), Some("region"));
        assert_eq!(closest("Region", keys::ROOT), Some("region"));
        assert_eq!(closest("acounts", keys::ROOT), Some("accounts"));
        assert_eq!(closest("tokns", keys::ACCOUNT), Some("tokens"));
        assert_eq!(closest("ib", keys::ACCOUNT), Some("id"));
        assert_eq!(closest("colour", keys::ROOT), None);
        assert_eq!(closest("x", keys::ACCOUNT), None);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
