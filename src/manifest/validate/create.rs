//! `defaults.create` and an account's `create`: each field checked at its line, the fields a
//! create needs checked once an entry's settings are laid over the defaults, and the sharing
//! references checked against the manifest's names (none naming nothing, no cycle).

use std::collections::{BTreeMap, HashMap};

use super::super::account_settings::{
    AccountRef, AccountSettings, Utilization, bad_account_name_char, is_api_email,
};
use super::super::diagnostic::Diagnostic;
use super::super::node::{Node, NodeValue};
use super::super::schema::MAX_ACCOUNT_ID;
use super::super::{AccountEntry, AccountSelector, limits};
use super::{Checker, Section};

/// A sharing reference by name, where it is written.
#[derive(Debug, Clone)]
pub(super) struct NameRef {
    pub(super) name: String,
    pub(super) line: u32,
    pub(super) column: u32,
    pub(super) length: u32,
}

impl NameRef {
    fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, self.column, self.length, message)
    }
}

/// Checked `create` settings with the places of their name references.
#[derive(Debug, Clone, Default)]
pub(super) struct Located {
    pub(super) settings: AccountSettings,
    pub(super) name_refs: Vec<NameRef>,
}

/// What an account's `create` says.
pub(super) enum CreateField {
    /// Absent, or `create: false`.
    No,
    /// Wrong (reported).
    Invalid,
    /// `true` or a mapping: its own settings (empty for `true`), and the `create` key's node.
    Yes(Located),
}

impl Checker<'_> {
    /// `defaults.create`: `None` when absent or wrong (reported; `ok` false then).
    pub(super) fn default_create(&mut self, defaults: &Node) -> (Option<Located>, bool) {
        let NodeValue::Map(pairs) = &defaults.value else {
            return (None, true);
        };
        let Some((_, node)) = pairs
            .iter()
            .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == "create"))
        else {
            return (None, true);
        };
        match self.create_settings(node, "`defaults.create`") {
            Some(located) => (Some(located), true),
            None => (None, false),
        }
    }

    /// An account's `create`.
    pub(super) fn create_field(&mut self, node: &Node) -> CreateField {
        match &node.value {
            NodeValue::Bool(false) => CreateField::No,
            NodeValue::Bool(true) => CreateField::Yes(Located::default()),
            NodeValue::Map(_) => match self.create_settings(node, "`create`") {
                Some(located) => CreateField::Yes(located),
                None => CreateField::Invalid,
            },
            _ => {
                let d = self
                    .wrong_type(node, "`create`", "true, false or a mapping of settings")
                    .with_help(
                        "write `create: true` to create it with `defaults.create`, or a mapping \
                         such as `create: {retention_days: 30}`",
                    );
                self.report(d);
                CreateField::Invalid
            }
        }
    }

    /// A mapping of create settings, every field checked; `None` after reporting a problem.
    fn create_settings(&mut self, node: &Node, what: &str) -> Option<Located> {
        let NodeValue::Map(pairs) = &node.value else {
            let d = self
                .wrong_type(node, what, "a mapping")
                .with_help("write `email:`, `retention_days:`, `max_daily_gb:` ... under it");
            self.report(d);
            return None;
        };
        let fields = self.fields(pairs, Section::Create);
        let mut ok = true;
        let mut out = Located::default();
        let s = &mut out.settings;
        if let Some(v) = fields.value("email") {
            s.email = self.email(v);
            ok &= s.email.is_some();
        }
        let mut days = |this: &mut Self, key: &str, range: (u32, u32)| {
            let v = fields.value(key)?;
            let parsed = this.integer_setting(v, key, range);
            ok &= parsed.is_some();
            parsed
        };
        s.retention_days = days(self, "retention_days", limits::ACCOUNT_DAYS);
        s.snapsearch_retention_days = days(self, "snapsearch_retention_days", limits::ACCOUNT_DAYS);
        let mut gb = |this: &mut Self, key: &str| {
            let v = fields.value(key)?;
            let parsed = this.gigabytes(v, key);
            ok &= parsed.is_some();
            parsed
        };
        s.max_daily_gb = gb(self, "max_daily_gb");
        s.reserved_daily_gb = gb(self, "reserved_daily_gb");
        s.soft_limit_gb = gb(self, "soft_limit_gb");
        let mut flag = |this: &mut Self, key: &str| {
            let v = fields.value(key)?;
            let parsed = this.flag(v, key);
            ok &= parsed.is_some();
            parsed
        };
        s.flexible = flag(self, "flexible");
        s.searchable = flag(self, "searchable");
        s.accessible = flag(self, "accessible");
        s.doc_size_setting = flag(self, "doc_size_setting");
        if let Some(v) = fields.value("utilization") {
            s.utilization = self.utilization(v);
            ok &= s.utilization.is_some();
        }
        if let Some(v) = fields.value("sharing_objects_accounts") {
            match self.sharing(v) {
                Some((refs, names)) => {
                    out.settings.sharing_objects_accounts = Some(refs);
                    out.name_refs = names;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn email(&mut self, node: &Node) -> Option<String> {
        let NodeValue::Str(raw) = &node.value else {
            let d = self.wrong_type(node, "`email`", "a string");
            self.report(d);
            return None;
        };
        let text = self.expand(node, raw)?;
        if is_api_email(&text.value) {
            return Some(text.value);
        }
        let shown = self.show(&text);
        self.report(
            node.diagnostic(format!("`email` {shown} is not an address the API accepts"))
                .with_help(
                    "write `name@example.com` (letters, digits, `_`, `-`, `+` and dots before the \
                     `@`); it must be a user of the main account",
                ),
        );
        None
    }

    /// A volume in GB: a finite number above 0.
    fn gigabytes(&mut self, node: &Node, key: &str) -> Option<f64> {
        let value = self.number(node, &format!("`{key}`"), "a number of GB", None)?;
        if value.is_finite() && value > 0.0 {
            return Some(value);
        }
        let found = self.raw(node).trim();
        self.report(node.diagnostic(format!(
            "`{key}` must be a number of GB above 0, found {found}"
        )));
        None
    }

    fn flag(&mut self, node: &Node, key: &str) -> Option<bool> {
        if let NodeValue::Bool(b) = node.value {
            return Some(b);
        }
        let d = self
            .wrong_type(node, &format!("`{key}`"), "true or false")
            .with_help(format!("write `{key}: true` or `{key}: false`"));
        self.report(d);
        None
    }

    fn utilization(&mut self, node: &Node) -> Option<Utilization> {
        let NodeValue::Map(pairs) = &node.value else {
            let d = self
                .wrong_type(node, "`utilization`", "a mapping")
                .with_help("write `utilization: {enabled: true, frequency_minutes: 5}`");
            self.report(d);
            return None;
        };
        let fields = self.fields(pairs, Section::Utilization);
        let mut ok = true;
        let enabled = fields.value("enabled").and_then(|v| {
            let parsed = self.flag(v, "enabled");
            ok &= parsed.is_some();
            parsed
        });
        let frequency_minutes = fields.value("frequency_minutes").and_then(|v| {
            let parsed = self.integer_setting(v, "frequency_minutes", limits::FREQUENCY_MINUTES);
            ok &= parsed.is_some();
            parsed
        });
        ok.then_some(Utilization {
            enabled,
            frequency_minutes,
        })
    }

    /// `sharing_objects_accounts`: ids and names, each checked, no duplicate.
    fn sharing(&mut self, node: &Node) -> Option<(Vec<AccountRef>, Vec<NameRef>)> {
        let NodeValue::Seq(items) = &node.value else {
            let d = self
                .wrong_type(
                    node,
                    "`sharing_objects_accounts`",
                    "a list of account ids or names",
                )
                .with_help(
                    "write a list, even for one account: `sharing_objects_accounts: [160343]`",
                );
            self.report(d);
            return None;
        };
        let mut refs = Vec::with_capacity(items.len());
        let mut names = Vec::new();
        let mut seen: HashMap<AccountRef, &Node> = HashMap::new();
        let mut ok = true;
        for item in items {
            let reference = match &item.value {
                NodeValue::Int(v) => match u32::try_from(*v) {
                    Ok(id) if (1..=MAX_ACCOUNT_ID).contains(&id) => AccountRef::Id(id),
                    _ => {
                        self.report(item.diagnostic(format!(
                            "account id must be between 1 and {MAX_ACCOUNT_ID}, found {v}"
                        )));
                        ok = false;
                        continue;
                    }
                },
                NodeValue::Str(raw) => {
                    let Some(text) = self.expand(item, raw) else {
                        ok = false;
                        continue;
                    };
                    if text.value.trim().is_empty() {
                        self.report(
                            item.diagnostic("empty account name in `sharing_objects_accounts`"),
                        );
                        ok = false;
                        continue;
                    }
                    names.push(NameRef {
                        name: text.value.clone(),
                        line: item.line,
                        column: item.column,
                        length: item.length,
                    });
                    AccountRef::Name(text.value)
                }
                _ => {
                    let d = self.wrong_type(item, "a shared account", "an account id or name");
                    self.report(d);
                    ok = false;
                    continue;
                }
            };
            if let Some(first) = seen.get(&reference) {
                self.report(
                    item.diagnostic(format!("account {reference} is listed twice"))
                        .with_note(first.line, first.column, "first listed here")
                        .with_help("list each shared account once"),
                );
                ok = false;
                continue;
            }
            seen.insert(reference.clone(), item);
            refs.push(reference);
        }
        ok.then_some((refs, names))
    }

    /// The settings an entry is created with (its own over the defaults), with the rules that
    /// need them all: `email` and `retention_days` given, `max_daily_gb` unless flexible,
    /// `reserved_daily_gb` exactly when flexible, a name the API accepts. Reported at `key`.
    pub(super) fn creatable(
        &mut self,
        key: &Node,
        selector: Option<&AccountSelector>,
        own: &Located,
        defaults: Option<&Located>,
    ) -> Option<(AccountSettings, Vec<NameRef>)> {
        let merged = match defaults {
            Some(d) => own.settings.over(&d.settings),
            None => own.settings.clone(),
        };
        // The references in effect, where they are written (the entry's, else the defaults').
        let refs = if own.settings.sharing_objects_accounts.is_some() {
            own.name_refs.clone()
        } else {
            defaults.map(|d| d.name_refs.clone()).unwrap_or_default()
        };
        let name = match selector {
            Some(AccountSelector::Name(n)) => n.clone(),
            Some(AccountSelector::Id(id)) => {
                self.report(
                    key.diagnostic(format!(
                        "account {id} has `create`, but an account to create is given by `name`"
                    ))
                    .with_help(
                        "write `name: <new account's name>` instead of `id:` (a new account has \
                         no id yet), or remove `create`",
                    ),
                );
                return None;
            }
            // Reported already.
            None => return None,
        };
        let mut ok = true;
        if let Some(c) = bad_account_name_char(&name) {
            self.report(
                key.diagnostic(format!(
                    "account name `{name}` cannot be created: the API does not accept {c:?} in \
                     a name"
                ))
                .with_help("a new account's name holds letters, digits, `-`, `.`, `_` and spaces"),
            );
            ok = false;
        }
        let mut missing = |this: &mut Self, field: &str, why: &str| {
            this.report(
                key.diagnostic(format!(
                    "account `{name}` cannot be created without `{field}`{why}"
                ))
                .with_help(format!(
                    "set `{field}` under its `create:` or under `defaults.create:`"
                )),
            );
            ok = false;
        };
        if merged.email.is_none() {
            missing(self, "email", "");
        }
        if merged.retention_days.is_none() {
            missing(self, "retention_days", "");
        }
        if merged.is_flexible() {
            if merged.reserved_daily_gb.is_none() {
                missing(self, "reserved_daily_gb", " (it is `flexible`)");
            }
        } else {
            if merged.max_daily_gb.is_none() {
                missing(self, "max_daily_gb", " (it is not `flexible`)");
            }
            if merged.reserved_daily_gb.is_some() {
                self.report(
                    key.diagnostic(format!(
                        "account `{name}` has `reserved_daily_gb` but is not `flexible`"
                    ))
                    .with_help(
                        "`reserved_daily_gb` is for flexible accounts only: add `flexible: true` \
                         or remove it",
                    ),
                );
                ok = false;
            }
        }
        ok.then_some((merged, refs))
    }

    /// Every name reference names an account of the manifest, and references between accounts
    /// to create form no cycle. `names`: every name the manifest lists.
    pub(super) fn check_sharing(
        &mut self,
        entries: &[(AccountEntry, Vec<NameRef>)],
        names: &dyn Fn(&str) -> bool,
    ) -> bool {
        let mut ok = true;
        let created: BTreeMap<&str, usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| e.create.is_some())
            .filter_map(|(i, (e, _))| match &e.selector {
                AccountSelector::Name(n) => Some((n.as_str(), i)),
                AccountSelector::Id(_) => None,
            })
            .collect();
        for (entry, refs) in entries {
            if entry.create.is_none() {
                continue;
            }
            for r in refs {
                if !names(&r.name) {
                    let d = r
                        .diagnostic(format!(
                            "`sharing_objects_accounts` names `{}`, which is no account of this \
                             manifest",
                            r.name
                        ))
                        .with_help(
                            "give the account's id, or list it under `accounts:` (a name is \
                             resolved through the manifest)",
                        );
                    self.report(d);
                    ok = false;
                }
            }
        }
        if !ok {
            return false;
        }
        // Depth-first search over the accounts to create; a reference back to an account on
        // the current path closes a cycle, reported at that reference.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; entries.len()];
        let mut reported = false;
        for start in created.values().copied() {
            if marks[start] != Mark::New {
                continue;
            }
            // (entry, next reference to follow)
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::OnPath;
            while let Some(&mut (at, ref mut next)) = stack.last_mut() {
                let refs = &entries[at].1;
                let Some(r) = refs.get(*next) else {
                    marks[at] = Mark::Done;
                    stack.pop();
                    continue;
                };
                *next += 1;
                let Some(&to) = created.get(r.name.as_str()) else {
                    continue;
                };
                match marks[to] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[to] = Mark::OnPath;
                        stack.push((to, 0));
                    }
                    Mark::OnPath => {
                        if !reported {
                            let from = stack.iter().position(|(i, _)| *i == to).unwrap_or(0);
                            let mut path: Vec<String> = stack[from..]
                                .iter()
                                .map(|(i, _)| entry_name(&entries[*i].0))
                                .collect();
                            path.push(r.name.clone());
                            self.report(
                                r.diagnostic(format!(
                                    "sharing references form a cycle: {}",
                                    path.join(" -> ")
                                ))
                                .with_help(
                                    "an account to create can only share with one that exists \
                                     before it: remove one reference, and add it once both \
                                     exist with `apply --update-accounts`",
                                ),
                            );
                            reported = true;
                        }
                        ok = false;
                    }
                }
            }
        }
        ok
    }
}

fn entry_name(entry: &AccountEntry) -> String {
    match &entry.selector {
        AccountSelector::Name(n) => n.clone(),
        AccountSelector::Id(id) => id.to_string(),
    }
}
