//! The checker: the state directory against the simulated servers' ground truth, after every
//! step of a run. Each problem is a sentence; a run with any problem fails its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use logzio_tokens::key::TokenKey;
use logzio_tokens::simulator::{CreatedToken, SimAccount};
use logzio_tokens::state::sealed::Identities;
use logzio_tokens::state::{ResultsFile, SecretsFile, StatePaths};

use super::fs::SimFs;

/// What the steps so far allow.
#[derive(Debug, Clone, Default)]
pub struct Allowance {
    /// Per key: creates the plan legitimately asked for (the first, and one per rotation).
    pub planned: BTreeMap<TokenKey, u32>,
    /// `orphans clear` runs so far (each resets the ambiguity budget).
    pub clears: u32,
    /// The most ambiguous attempts per key per budget.
    pub max_ambiguous: u32,
    /// Tokens that existed at an `orphans clear`: the user said they checked them.
    pub cleared: BTreeSet<i64>,
    /// Account names whose ambiguous creates an `orphans clear` cleared.
    pub cleared_accounts: BTreeSet<String>,
}

/// What one step left, as the checker reads it.
#[derive(Debug, Default)]
pub struct Seen {
    /// The results file (None: absent).
    pub results: Option<ResultsFile>,
    /// key -> (id, secret) from the secrets file and every sealed file.
    pub secrets: BTreeMap<(TokenKey, i64), String>,
    /// Created sub accounts' shipping tokens from the secrets file and every sealed file:
    /// account id -> (account name, token).
    pub shipping: BTreeMap<u32, (String, String)>,
}

fn key_of(t: &CreatedToken) -> TokenKey {
    TokenKey {
        account_id: u32::try_from(t.account_id).unwrap_or(u32::MAX),
        token_name: t.name.clone(),
    }
}

/// Reads the state files as the disk holds them now (without counting as calls of the
/// process); a file that does not parse is a problem.
pub fn read(fs: &SimFs, paths: &StatePaths, ids: &Identities, problems: &mut Vec<String>) -> Seen {
    let mut seen = Seen::default();
    if let Some(bytes) = fs.read(&paths.results) {
        match serde_json::from_slice::<ResultsFile>(&bytes) {
            Ok(r) => seen.results = Some(r),
            Err(e) => problems.push(format!("the results file does not parse: {e}")),
        }
    }
    let mut add = |doc: SecretsFile| {
        for (id, s) in doc.shipping {
            seen.shipping
                .entry(id)
                .or_insert_with(|| (s.account_name, s.token.expose().to_owned()));
        }
        for (acc, tokens) in doc.accounts {
            for (name, rec) in tokens {
                let key = TokenKey {
                    account_id: acc,
                    token_name: name,
                };
                seen.secrets
                    .insert((key, rec.token_id), rec.token.expose().to_owned());
            }
        }
        // A replaced token's secret is as durable under `superseded` (a save whose secrets
        // file was written and whose results file was not leaves the old ids recorded).
        for s in doc.superseded {
            let key = TokenKey {
                account_id: s.account_id,
                token_name: s.token_name,
            };
            seen.secrets
                .entry((key, s.token_id))
                .or_insert_with(|| s.token.expose().to_owned());
        }
    };
    if let Some(bytes) = fs.read(&paths.secrets) {
        match serde_json::from_slice::<SecretsFile>(&bytes) {
            Ok(doc) => add(doc),
            Err(e) => problems.push(format!("the secrets file does not parse: {e}")),
        }
    }
    for (path, bytes) in fs.files_under(&paths.sealed) {
        // Another program's file (`Op::PlantSealed`) holds no secret of the tool's.
        let planted = path.to_string_lossy().contains("-planted");
        if path.extension().is_some_and(|e| e == "age") && !planted {
            match ids.open_bytes(&path, &bytes) {
                Ok(doc) => add(doc),
                Err(e) => problems.push(format!(
                    "issue 25 defect 11: sealed file {} does not open: {e}",
                    path.display()
                )),
            }
        }
    }
    seen
}

/// Invariant 1, after every step (a crash included): every id the results file records is a
/// token the server created for that key, with its secret durable in a file that travels with
/// it (the secrets file or a sealed file; not the journal).
pub fn recorded_ids_have_durable_secrets(
    seen: &Seen,
    truth: &[CreatedToken],
    other_endpoint: &[CreatedToken],
    problems: &mut Vec<String>,
) {
    let Some(results) = &seen.results else {
        return;
    };
    let by_id: BTreeMap<i64, &CreatedToken> = truth.iter().map(|t| (t.id, t)).collect();
    let current = results.accounts.iter().flat_map(|(acc, tokens)| {
        tokens.iter().map(move |(name, rec)| {
            (
                TokenKey {
                    account_id: *acc,
                    token_name: name.clone(),
                },
                rec.token_id,
            )
        })
    });
    for (key, id) in current {
        if key.account_id == super::driver::FOREIGN_ACCOUNT {
            continue;
        }
        // Both simulated servers number their tokens from the same id, as two real endpoints
        // may: a token of the other endpoint shows as an id of this one made for another key.
        let ours = by_id.get(&id).is_some_and(|t| key_of(t) == key);
        match by_id.get(&id) {
            _ if !ours
                && other_endpoint
                    .iter()
                    .any(|t| t.id == id && key_of(t) == key) =>
            {
                problems.push(format!(
                    "issue 25 defect 8: {key} is recorded with token id {id}, which the other endpoint created: a state of one endpoint was taken into another's"
                ));
            }
            None => problems.push(format!(
                "{key} is recorded with token id {id}, which this endpoint never created"
            )),
            Some(t) if key_of(t) != key => problems.push(format!(
                "{key} is recorded with token id {id}, which the server created for {}",
                key_of(t)
            )),
            Some(t) => match seen.secrets.get(&(key.clone(), id)) {
                None => problems.push(format!(
                    "issue 25 defect 1: invariant 1: {key} is recorded (token {id}) but no secrets file or sealed file holds its secret"
                )),
                Some(s) if *s != t.token => problems.push(format!(
                    "{key}: the secret recorded for token {id} is not the one the server gave"
                )),
                Some(_) => {}
            },
        }
    }
}

/// With recipients, no plaintext secret anywhere on the disk.
pub fn no_plaintext(fs: &SimFs, dir: &Path, truth: &[CreatedToken], problems: &mut Vec<String>) {
    for (path, bytes) in fs.files_under(dir) {
        let text = String::from_utf8_lossy(&bytes);
        if let Some(t) = truth.iter().find(|t| text.contains(&t.token)) {
            problems.push(format!(
                "{} holds the secret of token {} in plaintext",
                path.display(),
                t.id
            ));
        }
    }
}

/// After a step that ended (not crashed) and reopened the state: every token the server
/// created is recorded (current or superseded) or its key is a possible orphan; superseded
/// entries name this key's tokens, never the current one.
pub fn nothing_lost(
    seen: &Seen,
    truth: &[CreatedToken],
    allow: &Allowance,
    problems: &mut Vec<String>,
) {
    let Some(results) = &seen.results else {
        if let Some(t) = truth.first() {
            problems.push(format!(
                "the server created token {} for {} and there is no results file",
                t.id,
                key_of(t)
            ));
        }
        return;
    };
    let orphans: BTreeSet<TokenKey> = results
        .possible_orphans
        .iter()
        .map(|o| TokenKey {
            account_id: o.account_id,
            token_name: o.token_name.clone(),
        })
        .collect();
    let superseded: BTreeMap<i64, &logzio_tokens::state::SupersededToken> =
        results.superseded.iter().map(|s| (s.token_id, s)).collect();
    let by_id: BTreeMap<i64, &CreatedToken> = truth.iter().map(|t| (t.id, t)).collect();
    for t in truth {
        let key = key_of(t);
        let current = results.get(&key).map(|r| r.token_id) == Some(t.id);
        if !current
            && !superseded.contains_key(&t.id)
            && !orphans.contains(&key)
            && !allow.cleared.contains(&t.id)
        {
            problems.push(format!(
                "the server created token {} for {key}, which is neither recorded, superseded nor a possible orphan",
                t.id
            ));
        }
    }
    for s in &results.superseded {
        let key = TokenKey {
            account_id: s.account_id,
            token_name: s.token_name.clone(),
        };
        match by_id.get(&s.token_id) {
            Some(t) if key_of(t) == key => {}
            _ => problems.push(format!(
                "superseded entry {} for {key} is not a token the server created for it",
                s.token_id
            )),
        }
        if results.get(&key).map(|r| r.token_id) == Some(s.token_id) {
            problems.push(format!(
                "token {} of {key} is both current and superseded",
                s.token_id
            ));
        }
    }
}

/// No key gets more sends that created a token than the plan asked for plus its ambiguity
/// budget (per `orphans clear`), across runs.
pub fn within_budget(truth: &[CreatedToken], allow: &Allowance, problems: &mut Vec<String>) {
    let mut made: BTreeMap<TokenKey, u32> = BTreeMap::new();
    for t in truth {
        *made.entry(key_of(t)).or_default() += 1;
    }
    for (key, n) in made {
        let most = allow.planned.get(&key).copied().unwrap_or(0)
            + allow.max_ambiguous * (1 + allow.clears);
        if n > most {
            problems.push(format!(
                "issue 25 defect 6: {n} tokens were created for {key}, more than the {most} its plans and ambiguity budget allow"
            ));
        }
    }
}

/// After a step that ended: every created token whose outcome the recorder acknowledged (on
/// this endpoint) is recorded, current or superseded; a possible orphan is not enough, since the
/// tool said its secret was durable.
pub fn acknowledged_are_recorded(
    seen: &Seen,
    durable: &[(TokenKey, i64)],
    problems: &mut Vec<String>,
) {
    let Some(results) = &seen.results else {
        if let Some((key, id)) = durable.first() {
            problems.push(format!(
                "token {id} of {key} was acknowledged durable and there is no results file"
            ));
        }
        return;
    };
    for (key, id) in durable {
        let current = results.get(key).map(|r| r.token_id) == Some(*id);
        let superseded = results.superseded.iter().any(|s| s.token_id == *id);
        if !current && !superseded {
            problems.push(format!(
                "token {id} of {key} was acknowledged durable but the results file does not record it"
            ));
        }
    }
}

/// After every step: no token is both a key's current token and listed as replaced (a
/// replaced token is one `plan` tells the admin to delete by hand).
pub fn replaced_never_current(seen: &Seen, problems: &mut Vec<String>) {
    let Some(results) = &seen.results else {
        return;
    };
    for s in &results.superseded {
        if let Some(current) = results.find_token_id(s.token_id) {
            problems.push(format!(
                "issue 25 defect 14: token {} is listed as replaced under {}/{} (to delete by hand) but is the current token of {current}",
                s.token_id, s.account_id, s.token_name
            ));
        }
    }
}

/// With recipients, no created account's shipping token in plaintext anywhere on the disk.
pub fn no_plaintext_shipping(
    fs: &SimFs,
    dir: &Path,
    accounts: &[SimAccount],
    problems: &mut Vec<String>,
) {
    for (path, bytes) in fs.files_under(dir) {
        let text = String::from_utf8_lossy(&bytes);
        if let Some(a) = accounts
            .iter()
            .filter(|a| a.created_by_api && !a.shipping_token.is_empty())
            .find(|a| text.contains(&a.shipping_token))
        {
            problems.push(format!(
                "{} holds the shipping token of account {} ({}) in plaintext",
                path.display(),
                a.id,
                a.name
            ));
        }
    }
}

/// After every step: every account the results file records as created is one the server
/// created with that name, and one recorded with its shipping token kept has it durable (the
/// secrets file or a sealed file), the server's own, under its id and name; a token of an
/// account the tool created is kept only under an account the results file records.
pub fn recorded_accounts_are_the_servers(
    seen: &Seen,
    accounts: &[SimAccount],
    problems: &mut Vec<String>,
) {
    let Some(results) = &seen.results else {
        return;
    };
    let by_id: BTreeMap<i64, &SimAccount> = accounts.iter().map(|a| (a.id, a)).collect();
    for (name, c) in &results.accounts_created {
        match by_id.get(&i64::from(c.account_id)) {
            None => problems.push(format!(
                "account {name} is recorded with id {}, which this endpoint never created",
                c.account_id
            )),
            Some(a) if a.name != *name || !a.created_by_api => problems.push(format!(
                "account {name} is recorded with id {}, the server's account {:?}",
                c.account_id, a.name
            )),
            Some(a) => match seen.shipping.get(&c.account_id) {
                None if c.shipping_token => problems.push(format!(
                    "account {name} ({}) is recorded with its shipping token kept, but no secrets file or sealed file holds it",
                    c.account_id
                )),
                Some((n, t)) if *n != *name || *t != a.shipping_token => problems.push(format!(
                    "account {name} ({}): the shipping token kept under its id is not the server's for it",
                    c.account_id
                )),
                _ => {}
            },
        }
    }
    for (id, (name, token)) in &seen.shipping {
        match by_id.get(&i64::from(*id)) {
            Some(a) if a.shipping_token == *token && a.name == *name => {}
            _ => problems.push(format!(
                "a shipping token is kept under account {id} ({name}) that is not that account's"
            )),
        }
    }
    let recorded: BTreeSet<u32> = results
        .accounts_created
        .values()
        .map(|c| c.account_id)
        .collect();
    for (acc, tokens) in &results.accounts {
        let Some(a) = by_id.get(&i64::from(*acc)).filter(|a| a.created_by_api) else {
            continue;
        };
        // Recorded as created, or placed by the list while its create waits for the lookup
        // that records it (the plan resolves a name the list shows; a crash before the next
        // save leaves the tokens journaled and the name pending).
        let placed = recorded.contains(acc) || results.accounts_pending.contains_key(&a.name);
        if !placed && !tokens.is_empty() {
            problems.push(format!(
                "tokens are recorded under account {acc} ({}), which the tool created but neither records as created nor looks up",
                a.name
            ));
        }
    }
}

/// After a step that ended: every account the server created is recorded as created (with
/// that id) or its name is a possible orphan (a create pending a lookup, or ambiguous creates
/// no lookup found), or an `orphans clear` cleared it; every account whose outcome the tool
/// acknowledged durable is recorded.
pub fn no_account_lost(
    seen: &Seen,
    accounts: &[SimAccount],
    durable: &[(String, u32)],
    allow: &Allowance,
    problems: &mut Vec<String>,
) {
    let Some(results) = &seen.results else {
        if let Some(a) = accounts.iter().find(|a| a.created_by_api) {
            problems.push(format!(
                "the server created account {} ({}) and there is no results file",
                a.id, a.name
            ));
        }
        return;
    };
    for a in accounts.iter().filter(|a| a.created_by_api) {
        let recorded = results
            .accounts_created
            .get(&a.name)
            .is_some_and(|c| i64::from(c.account_id) == a.id);
        if !recorded
            && !results.accounts_pending.contains_key(&a.name)
            && !results.accounts_ambiguous.contains_key(&a.name)
            && !allow.cleared_accounts.contains(&a.name)
        {
            problems.push(format!(
                "the server created account {} ({}), which is neither recorded nor a possible orphan",
                a.id, a.name
            ));
        }
    }
    for (name, id) in durable {
        if results.accounts_created.get(name).map(|c| c.account_id) != Some(*id) {
            problems.push(format!(
                "account {name} ({id}) was acknowledged durable but the results file does not record it"
            ));
        }
    }
}

/// After every step: each account name is created once. The list lag stays within the lookup's
/// time, so a lookup after an ambiguous create always finds an account it made: a second one
/// is a create sent blindly. Only a name whose ambiguous creates an `orphans clear` cleared
/// may get the ambiguity budget's more.
pub fn accounts_once(accounts: &[SimAccount], allow: &Allowance, problems: &mut Vec<String>) {
    let mut made: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in accounts.iter().filter(|a| a.created_by_api) {
        made.entry(&a.name).or_default().push(a.id);
    }
    for (name, ids) in made {
        let most = if allow.cleared_accounts.contains(name) {
            1 + allow.max_ambiguous * (1 + allow.clears)
        } else {
            1
        };
        if ids.len() as u32 > most {
            problems.push(format!(
                "account {name} was created {} times (ids {ids:?}), more than the {most} allowed",
                ids.len()
            ));
        }
    }
}
