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
            "  {} to create exist already (not created again): {}",
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

/// What the account items of a run left for the rest of it.
#[derive(Debug, Default)]
pub struct AccountsDone {
    /// The tokens of the accounts created (or adopted), to create next.
    pub tokens: Vec<crate::key::TokenKey>,
    /// The tokens of accounts that were not created, as failures.
    pub failures: Vec<crate::state::Failure>,
    /// Lines for the summary.
    pub lines: Vec<String>,
    /// Problems with accounts (not created, duplicates, an update that failed): exit 1.
    pub problems: usize,
    /// A run-wide stop (authentication, the state).
    pub fatal: Option<String>,
}

/// How the account items run.
#[derive(Debug, Clone)]
pub struct AccountRun {
    /// PUT the declared settings of drifted accounts.
    pub update: bool,
    /// The account items' attempts and lookup time.
    pub config: crate::execution::accounts::AccountConfig,
}

/// What the account items talk to: the API, the recorder, the run's pacer and Ctrl-C.
#[derive(Debug)]
pub struct AccountServices<R> {
    /// The API client.
    pub client: std::sync::Arc<crate::api::ApiClient>,
    /// The recorder.
    pub recorder: std::sync::Arc<R>,
    /// The rate shared with the tokens.
    pub pacer: std::sync::Arc<crate::execution::Pacer>,
    /// Ctrl-C.
    pub cancel: crate::execution::Cancel,
}

/// Looks up what a crashed run may have created, creates the missing accounts (dependency
/// order, exactly once), reads their shipping tokens, and puts drifted accounts back when asked.
pub async fn run_accounts<R: crate::execution::accounts::RecordAccounts>(
    plan: &Plan,
    manifest: &crate::manifest::Manifest,
    pending: &[crate::execution::accounts::PendingAccount],
    missing_shipping: &[(String, u32)],
    how: &AccountRun,
    with: AccountServices<R>,
) -> AccountsDone {
    let AccountServices {
        client,
        recorder,
        pacer,
        cancel,
    } = with;
    let cancel = &cancel;
    let clock = &how.config.clock;
    let mut rng = crate::random::from_os();
    use crate::execution::accounts::{self, AccountJob};
    use crate::state::HeldSecret;
    use crate::state::accounts::AccountOutcome;
    use std::collections::BTreeMap;

    let mut done = AccountsDone::default();
    // Ids by name: the manifest's existing accounts, then the new ones as they come.
    let mut ids: BTreeMap<String, u32> = plan.resolved_names.clone();

    // An interrupted run's creates first: adopted, or left to be created below.
    let mut adopted = BTreeMap::new();
    if !pending.is_empty() {
        match accounts::recover(
            pending,
            &*client,
            &*recorder,
            how.config.lookup,
            cancel,
            clock,
        )
        .await
        {
            Ok((found, problems)) => {
                for (name, id) in &found {
                    done.lines.push(format!(
                        "  found sub account {name} (id {id}), created by an interrupted run"
                    ));
                }
                adopted = found;
                for (name, why) in problems {
                    done.problems += 1;
                    done.lines.push(format!("  sub account {name}: {why}"));
                }
            }
            Err(why) => {
                done.fatal = Some(why);
                return done;
            }
        }
    }

    let mut jobs = Vec::new();
    for account in crate::plan::creation_order(&plan.accounts_to_create) {
        match adopted.get(&account.name) {
            Some(id) => {
                ids.insert(account.name.clone(), *id);
            }
            None => jobs.push(AccountJob {
                name: account.name.clone(),
                settings: account.settings.clone(),
            }),
        }
    }
    let report = accounts::create_accounts(
        jobs,
        &mut ids,
        &how.config,
        (client.clone(), recorder.clone(), pacer.clone()),
        cancel,
        &mut rng,
    )
    .await;
    let mut made: BTreeMap<String, u32> = adopted;
    made.extend(report.created.clone());
    for account in &plan.accounts_to_create {
        match made.get(&account.name) {
            Some(id) => {
                done.lines.push(format!(
                    "  + sub account {} created (id {id})",
                    account.name
                ));
                // Its shipping token, a secret like the others.
                match accounts::read_shipping_token(
                    &*client,
                    *id,
                    how.config.lookup,
                    clock,
                    &mut rng,
                )
                .await
                {
                    Ok(token) => {
                        let outcome = AccountOutcome::Shipping {
                            account_id: *id,
                            secret: HeldSecret::plain(token),
                        };
                        if let Err(e) = recorder.account_outcome(0, &account.name, outcome).await {
                            done.fatal = Some(e.to_string());
                            return done;
                        }
                    }
                    Err(e) => {
                        done.problems += 1;
                        done.lines.push(format!(
                            "  the log shipping token of {} (id {id}) could not be read: {e}; it \
                             is shown in the Logz.io UI",
                            account.name
                        ));
                    }
                }
                done.tokens
                    .extend(account.tokens.iter().map(|t| crate::key::TokenKey {
                        account_id: *id,
                        token_name: t.clone(),
                    }));
            }
            None => {
                let why = report
                    .failed
                    .iter()
                    .find(|(n, _)| *n == account.name)
                    .map_or("not created", |(_, w)| w.as_str());
                done.problems += 1;
                done.lines.push(format!(
                    "  sub account {} was not created: {why}",
                    account.name
                ));
                for t in &account.tokens {
                    done.failures.push(crate::state::Failure {
                        account_id: None,
                        account_name: Some(account.name.clone()),
                        token_name: t.clone(),
                        http_status: None,
                        error: format!("its sub account was not created: {why}"),
                    });
                }
            }
        }
    }
    if report.fatal.is_some() {
        done.fatal = report.fatal;
        return done;
    }
    // Accounts an earlier run created whose shipping token it did not get to read.
    for (name, id) in missing_shipping {
        if made.contains_key(name) {
            continue;
        }
        match accounts::read_shipping_token(&*client, *id, how.config.lookup, clock, &mut rng).await
        {
            Ok(token) => {
                let outcome = AccountOutcome::Shipping {
                    account_id: *id,
                    secret: HeldSecret::plain(token),
                };
                if let Err(e) = recorder.account_outcome(0, name, outcome).await {
                    done.fatal = Some(e.to_string());
                    return done;
                }
            }
            Err(e) => {
                done.problems += 1;
                done.lines.push(format!(
                    "  the log shipping token of {name} (id {id}) could not be read: {e}"
                ));
            }
        }
    }

    if how.update {
        for drift in &plan.drift {
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
                let request = accounts::update_request(&live, declared, &ids)?;
                let ticket = pacer.acquire().await;
                let sent = client.update_account(drift.account_id, &request).await;
                pacer.on_answer(ticket, crate::execution::Answer::Served, None);
                sent.map_err(|e| e.to_string())
            }
            .await;
            match updated {
                Ok(()) => {
                    let fields: Vec<&str> = drift.fields.iter().map(|f| f.field.as_str()).collect();
                    done.lines.push(format!(
                        "  ~ sub account {} (id {}) updated: {}",
                        drift.name,
                        drift.account_id,
                        fields.join(", ")
                    ));
                }
                Err(why) => {
                    done.problems += 1;
                    done.lines.push(format!(
                        "  sub account {} (id {}) could not be updated: {why}",
                        drift.name, drift.account_id
                    ));
                }
            }
        }
    } else if !plan.drift.is_empty() {
        done.lines.push(format!(
            "  {} drifted and left as they are (`apply --update-accounts` puts them back)",
            count(plan.drift.len(), "sub account")
        ));
    }
    done
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
