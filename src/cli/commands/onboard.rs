//! The onboarding part of the plan, for people: accounts to create (a person is spending
//! money), those that exist, drift, and names an offline plan could not check.

use crate::plan::Plan;

/// The lines `plan` and the apply confirmation show about sub accounts (none when the manifest
/// creates none).
pub fn plan_lines(plan: &Plan, update_accounts: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let n = plan.accounts_to_create.len();
    if n > 0 {
        lines.push(format!(
            "  {n} sub account{} to create, adding up to {} GB a day (a person is spending money):",
            if n == 1 { "" } else { "s" },
            plan.added_daily_gb()
        ));
        for account in &plan.accounts_to_create {
            let settings = serde_json::to_value(&account.settings)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let shown: Vec<String> = settings
                .iter()
                .map(|(k, v)| format!("{k} {}", crate::text::one_line(&v.to_string(), 200)))
                .collect();
            lines.push(format!(
                "    + {} ({}), then its {} token{}",
                account.name,
                shown.join(", "),
                account.tokens.len(),
                if account.tokens.len() == 1 { "" } else { "s" }
            ));
        }
    }
    if !plan.accounts_existing.is_empty() {
        let names: Vec<String> = plan
            .accounts_existing
            .iter()
            .map(|a| format!("{} (id {})", a.name, a.account_id))
            .collect();
        lines.push(format!(
            "  {} with `create` exist already (not created again): {}",
            count(names.len(), "sub account"),
            names.join(", ")
        ));
    }
    for d in &plan.drift {
        let fields: Vec<String> = d.fields.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "  ~ {} (id {}) drifted: {}{}",
            d.name,
            d.account_id,
            fields.join("; "),
            if update_accounts {
                " (apply updates it)"
            } else {
                " (`apply --update-accounts` puts it back; apply alone changes nothing)"
            }
        ));
    }
    if !plan.accounts_unchecked.is_empty() {
        lines.push(format!(
            "  could not check whether {} exist (offline: set LOGZIO_API_TOKEN): {}",
            count(plan.accounts_unchecked.len(), "sub account"),
            plan.accounts_unchecked.join(", ")
        ));
    }
    lines
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Takes out of the plan the accounts to create whose earlier runs made `max_ambiguous` or
/// more ambiguous creates that no lookup found (`earlier`: name -> count): the confirmation
/// does not offer them; they go to the executor as held (see [`account_work`]), which fails
/// them unsent with what to do.
pub fn hold_accounts(
    plan: &mut Plan,
    earlier: &std::collections::BTreeMap<String, u32>,
    max_ambiguous: u32,
) -> Vec<crate::plan::NewAccount> {
    let max_ambiguous = max_ambiguous.max(1);
    let (held, kept) = std::mem::take(&mut plan.accounts_to_create)
        .into_iter()
        .partition(|a| earlier.get(&a.name).is_some_and(|n| *n >= max_ambiguous));
    plan.accounts_to_create = kept;
    held
}

/// The sub accounts of a run, as the executor's items: an interrupted run's creates to look
/// up first, and the plan's accounts to create, in dependency order, with their tokens and the
/// ambiguous creates earlier runs made of each (`earlier`: name -> count; empty with
/// `--resend-ambiguous`), then those `held` at their budget (failed unsent).
pub fn account_work(
    plan: &Plan,
    pending: &[crate::execution::accounts::PendingAccount],
    earlier: &std::collections::BTreeMap<String, u32>,
    held: &[crate::plan::NewAccount],
) -> Vec<crate::execution::AccountWork> {
    let mut work: Vec<crate::execution::AccountWork> =
        crate::plan::creation_order(&plan.accounts_to_create)
            .into_iter()
            .chain(held)
            .map(|a| crate::execution::AccountWork {
                name: a.name.clone(),
                settings: Some(a.settings.clone()),
                tokens: a.tokens.clone(),
                pending: pending.iter().find(|p| p.name == a.name).cloned(),
                earlier_ambiguous: earlier.get(&a.name).copied().unwrap_or(0),
            })
            .collect();
    for p in pending {
        if !work.iter().any(|w| w.name == p.name) {
            work.insert(
                0,
                crate::execution::AccountWork {
                    name: p.name.clone(),
                    settings: None,
                    tokens: Vec::new(),
                    pending: Some(p.clone()),
                    earlier_ambiguous: earlier.get(&p.name).copied().unwrap_or(0),
                },
            );
        }
    }
    work
}

/// The summary's lines about the sub accounts of a run, and how many problems they had (not
/// created, duplicates, a shipping token not read): each makes the run exit 1.
pub fn account_lines(
    plan: &Plan,
    report: &crate::execution::AccountsReport,
) -> (Vec<String>, usize) {
    let (mut lines, mut problems) = (Vec::new(), 0);
    for (name, id) in &report.created {
        let planned = plan.accounts_to_create.iter().any(|a| a.name == *name);
        lines.push(match (report.adopted.contains(name), planned) {
            (false, _) => format!("  + sub account {name} created (id {id})"),
            (true, true) => format!(
                "  + sub account {name} created (id {id}; found by a lookup after an ambiguous create)"
            ),
            (true, false) => format!(
                "  found sub account {name} (id {id}), created by an interrupted run"
            ),
        });
    }
    for (name, why) in &report.failed {
        problems += 1;
        lines.push(format!("  sub account {name} was not created: {why}"));
    }
    for (name, id, why) in &report.shipping_failed {
        problems += 1;
        lines.push(format!(
            "  the log shipping token of {name} (id {id}) could not be read: {why}; it is shown \
             in the Logz.io UI, and the next apply reads it again"
        ));
    }
    (lines, problems)
}

/// `--update-accounts`: PUTs the declared settings of drifted accounts over their live ones
/// (idempotent; under the run's pacer), or says they were left as they are. Returns lines and
/// how many could not be updated.
pub async fn update_drift(
    plan: &Plan,
    manifest: &crate::manifest::Manifest,
    update: bool,
    ids: &std::collections::BTreeMap<String, u32>,
    client: &crate::api::ApiClient,
    pacer: &crate::execution::Pacer,
    cancel: &crate::execution::Cancel,
) -> (Vec<String>, usize) {
    let (mut lines, mut problems) = (Vec::new(), 0);
    if !update {
        if !plan.drift.is_empty() {
            lines.push(format!(
                "  {} drifted and left as they are (`apply --update-accounts` puts them back)",
                count(plan.drift.len(), "sub account")
            ));
        }
        return (lines, problems);
    }
    for drift in &plan.drift {
        if cancel.is_cancelled() {
            problems += 1;
            lines.push(format!(
                "  sub account {} (id {}) not updated: the run stopped",
                drift.name, drift.account_id
            ));
            continue;
        }
        let declared = manifest.accounts.iter().find_map(|e| match &e.selector {
            crate::manifest::AccountSelector::Name(n) if *n == drift.name => e.create.as_ref(),
            _ => None,
        });
        let Some(declared) = declared else { continue };
        let updated = async {
            let live = client
                .get_account(drift.account_id)
                .await
                .map_err(|e| e.to_string())?;
            let request = crate::execution::accounts::update_request(&live, declared, ids)?;
            let ticket = pacer.acquire().await;
            let sent = client.update_account(drift.account_id, &request).await;
            let answer = match &sent {
                Err(e) if e.is_rate_limited() => crate::execution::Answer::Limited,
                Err(e) if e.http_status().is_none() => crate::execution::Answer::Lost,
                _ => crate::execution::Answer::Served,
            };
            pacer.on_answer(ticket, answer, None);
            sent.map_err(|e| e.to_string())
        }
        .await;
        match updated {
            Ok(()) => {
                let fields: Vec<&str> = drift.fields.iter().map(|f| f.field.as_str()).collect();
                lines.push(format!(
                    "  ~ sub account {} (id {}) updated: {}",
                    drift.name,
                    drift.account_id,
                    fields.join(", ")
                ));
            }
            Err(why) => {
                problems += 1;
                lines.push(format!(
                    "  sub account {} (id {}) could not be updated: {why}",
                    drift.name, drift.account_id
                ));
            }
        }
    }
    (lines, problems)
}

/// `verify` for the log shipping tokens of the sub accounts this tool created: each kept token
/// is compared with the account's current one (`GET …/detailed/{id}`, with the owner token).
/// Returns lines for the summary and how many are not current or could not be checked.
pub async fn verify_shipping(
    store: &crate::state::Store,
    secrets: &crate::state::SecretsFile,
    api: &crate::cli::config::ApiSetup,
) -> (Vec<String>, usize) {
    let created = &store.results().accounts_created;
    let kept: Vec<(&String, u32, &crate::secret::Secret)> = created
        .iter()
        .filter_map(|(name, c)| {
            secrets
                .shipping
                .get(&c.account_id)
                .map(|s| (name, c.account_id, &s.token))
        })
        .collect();
    if kept.is_empty() {
        return (Vec::new(), 0);
    }
    let Some(token) = &api.token else {
        return (
            vec![format!(
                "{} not checked: set LOGZIO_API_TOKEN to the main account's token to compare them",
                count(kept.len(), "log shipping token")
            )],
            0,
        );
    };
    let client = match crate::api::ApiClient::new(crate::api::ClientConfig {
        endpoint: api.endpoint.clone(),
        token: token.clone(),
        request_timeout: api.request_timeout,
        connect_timeout: api.request_timeout.min(std::time::Duration::from_secs(10)),
        pool_size: 2,
    }) {
        Ok(c) => c,
        Err(e) => {
            return (
                vec![format!("log shipping tokens not checked: {e}")],
                kept.len(),
            );
        }
    };
    let clock = crate::clock::SystemClock::shared();
    let mut rng = crate::random::from_os();
    let (mut current, mut lines, mut problems) = (0usize, Vec::new(), 0usize);
    for (name, id, kept) in kept {
        client.scrub_also(kept);
        let live = crate::execution::accounts::read_shipping_token(
            &client,
            id,
            std::time::Duration::from_secs(10),
            &clock,
            &mut rng,
            None,
        )
        .await;
        match live {
            Ok(live) if live.same_as(kept) => current += 1,
            Ok(_) => {
                problems += 1;
                lines.push(format!(
                    "  the log shipping token of {name} (id {id}) is no longer the one kept \
                     (changed in the Logz.io UI?): read it there"
                ));
            }
            Err(e) => {
                problems += 1;
                lines.push(format!(
                    "  the log shipping token of {name} (id {id}) could not be checked: {e}"
                ));
            }
        }
    }
    lines.insert(
        0,
        format!(
            "{} of the sub accounts this tool created: {current} current",
            count(current + problems, "log shipping token")
        ),
    );
    (lines, problems)
}
