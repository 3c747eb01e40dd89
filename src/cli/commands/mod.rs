//! One file per command; shared preparation (manifest, endpoint, preflight, plan) here.

pub mod apply;
pub mod misc;
pub mod onboard;
pub mod plan;
pub mod simulate;
pub mod state_cmds;
pub mod validate;
pub mod verify;

use super::config::{ApiSetup, RunSettings};
use super::error::CliError;
use super::output::{Printer, count};
use crate::api::{ApiClient, ClientConfig, Endpoint, Preflight, preflight};
use crate::manifest::Manifest;
use crate::plan::{self as planner, AccountBook, LiveAccounts, Plan};
use crate::simulator::{SimConfig, Simulator};
use crate::state::Store;

/// The API side of `plan` and `apply`: the in-process simulator when asked, the client when a
/// token (or the simulator) is there, and the sub accounts the preflight found.
#[derive(Debug)]
pub struct Connection {
    /// The client, when a token (or the simulator) is available.
    pub client: Option<ApiClient>,
    /// The in-process simulator, for `--simulate`.
    pub simulator: Option<Simulator>,
    /// The owner's sub accounts, when the preflight ran.
    pub live: Option<LiveAccounts>,
}

impl Connection {
    /// Starts the simulator if asked, builds the client, and runs the preflight when a token
    /// is available.
    pub async fn open(run: &RunSettings, pool_size: usize) -> Result<Connection, CliError> {
        let api = &run.api;
        let mut endpoint = api.endpoint.clone();
        let mut token = api.token.clone();
        let mut simulator = None;
        if api.simulate {
            let sim =
                Simulator::start(SimConfig::default())
                    .await
                    .map_err(|e| CliError::Fatal {
                        message: format!("could not start the built-in simulator: {e}"),
                    })?;
            endpoint = Endpoint::Url(sim.url());
            token = Some(crate::secret::Secret::new(
                crate::simulator::DEFAULT_OWNER_TOKEN,
            ));
            tracing::info!(url = %sim.url(), "started the built-in simulator");
            simulator = Some(sim);
        }
        let client = match token {
            Some(token) => Some(ApiClient::new(ClientConfig {
                endpoint,
                token,
                request_timeout: api.request_timeout,
                connect_timeout: api.request_timeout.min(std::time::Duration::from_secs(10)),
                pool_size,
            })?),
            None => None,
        };
        let live = match &client {
            Some(c) => Some(live_accounts(&preflight(c).await?)),
            None => None,
        };
        Ok(Connection {
            client,
            simulator,
            live,
        })
    }

    /// The plan of `run` against a store's recorded results.
    pub fn plan(&self, run: &RunSettings, store: &Store) -> Plan {
        planner::plan(
            &run.manifest,
            store.results(),
            self.live.as_ref(),
            &run.filter,
        )
    }

    /// Stops the simulator, if one runs.
    pub async fn close(self) {
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }
}

/// The plan's view of the preflight's listing. An id outside 32 bits cannot be in a manifest,
/// so it is left out.
fn live_accounts(found: &Preflight) -> LiveAccounts {
    let mut live: LiveAccounts = found
        .sub_accounts
        .iter()
        .filter_map(|a| Some((u32::try_from(a.account_id).ok()?, a.account_name.clone())))
        .collect();
    live.settings = found
        .sub_accounts
        .iter()
        .filter_map(|a| Some((u32::try_from(a.account_id).ok()?, a.settings.to_manifest())))
        .collect();
    live
}

/// The plan summary for people: counts first.
pub fn summary_lines(plan: &Plan, manifest: &Manifest, api: &ApiSetup) -> Vec<String> {
    let accounts: std::collections::BTreeSet<u32> =
        plan.create.iter().map(|k| k.account_id).collect();
    let mut lines = vec![format!(
        "Plan for {} against {} ({})",
        manifest.path.display(),
        if api.simulate {
            "the built-in simulator".to_owned()
        } else {
            api.endpoint.base_url()
        },
        if plan.live {
            "accounts checked live"
        } else {
            "offline: set LOGZIO_API_TOKEN to check accounts live"
        }
    )];
    lines.push(format!(
        "  {} to create in {} account{}",
        count(plan.create.len(), "token"),
        accounts.len(),
        if accounts.len() == 1 { "" } else { "s" }
    ));
    lines.push(format!(
        "  {} already recorded (skipped)",
        count(plan.present.len(), "token")
    ));
    if !plan.remove_by_hand.is_empty() {
        lines.push(format!(
            "  {} recorded but no longer in the manifest: remove by hand in the Logz.io UI (the API cannot delete tokens)",
            count(plan.remove_by_hand.len(), "token")
        ));
    }
    if !plan.revoked.is_empty() {
        lines.push(format!(
            "  {} revoked (verify saw them answer 403): not recreated unasked; `apply --recreate-revoked` creates new ones under the same names",
            count(plan.revoked.len(), "token")
        ));
    }
    if !plan.replaced_to_remove.is_empty() {
        let ids: Vec<String> = plan
            .replaced_to_remove
            .iter()
            .map(|r| {
                format!(
                    "{}/{} (id {})",
                    r.key.account_id, r.key.token_name, r.token_id
                )
            })
            .collect();
        lines.push(format!(
            "  {} replaced but still working: remove by hand in the Logz.io UI: {}",
            count(plan.replaced_to_remove.len(), "token"),
            ids.join(", ")
        ));
    }
    for u in &plan.unresolved {
        lines.push(format!(
            "  account named {:?}: {}",
            u.name,
            describe_unresolved(&u.why)
        ));
    }
    for u in &plan.unknown_accounts {
        lines.push(format!(
            "  account {} is not a sub account of this owner: its {} will fail",
            u.account_id,
            count(u.tokens.len(), "token")
        ));
    }
    if plan.possible_orphans > 0 {
        lines.push(format!(
            "  {} listed in the results file (check them in the UI, then `logzio-tokens orphans clear`)",
            count(plan.possible_orphans, "possible orphan")
        ));
    }
    lines.extend(onboard::plan_lines(
        plan,
        manifest.settings.update_accounts == Some(true),
    ));
    lines
}

/// Adds to `create` what apply replaces under the same names: the revoked tokens when
/// `recreate`, and every present token older than its rotation age (`older_than`, else the
/// manifest's `rotate_after_days`). The recorder moves each replaced id to `superseded` (to
/// remove by hand). Returns how many were added.
pub fn add_replacements(
    plan: &mut Plan,
    manifest: &Manifest,
    results: &crate::state::ResultsFile,
    recreate: bool,
    older_than: Option<std::time::Duration>,
) -> usize {
    use std::collections::HashMap;
    use std::time::Duration;
    let before = plan.create.len();
    if recreate {
        plan.create
            .extend(std::mem::take(&mut plan.revoked).into_iter().map(|r| r.key));
    }
    // Each account's rotation age, once: its own, else `defaults`', else `settings`'.
    let by_account: HashMap<u32, Duration> = manifest
        .accounts
        .iter()
        .filter_map(|a| {
            let id = match &a.selector {
                crate::manifest::AccountSelector::Id(id) => *id,
                crate::manifest::AccountSelector::Name(n) => *plan.resolved_names.get(n)?,
            };
            let days = manifest.rotate_after_days(a)?;
            Some((id, Duration::from_secs(u64::from(days) * 86_400)))
        })
        .collect();
    let age_of = |account_id: u32| older_than.or_else(|| by_account.get(&account_id).copied());
    let now = time::OffsetDateTime::now_utc();
    let (old, keep): (Vec<_>, Vec<_>) =
        std::mem::take(&mut plan.present)
            .into_iter()
            .partition(|r| {
                let Some(age) = age_of(r.key.account_id) else {
                    return false;
                };
                let Some(created) = results.get(&r.key).and_then(|rec| {
                    time::OffsetDateTime::parse(
                        &rec.created_at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                }) else {
                    // An unreadable creation time is not "old": never rotate on a guess.
                    return false;
                };
                (now - created).whole_seconds() >= i64::try_from(age.as_secs()).unwrap_or(i64::MAX)
            });
    plan.present = keep;
    plan.create.extend(old.into_iter().map(|r| r.key));
    plan.create.len() - before
}

/// Why an account name did not resolve, for people.
pub fn describe_unresolved(why: &planner::Unresolved) -> String {
    match why {
        planner::Unresolved::NeedsLookup => {
            "needs resolving through the sub-account list (needs a token)".into()
        }
        planner::Unresolved::NotFound { similar } => {
            if similar.is_empty() {
                "no sub account has this name".into()
            } else {
                format!(
                    "no sub account has this name (similar: {})",
                    similar.join(", ")
                )
            }
        }
        planner::Unresolved::Ambiguous { candidates } => format!(
            "several sub accounts have this name (ids {}): list the one you mean by `id`",
            candidates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Prints a line per token, grouped by account.
pub fn detail_lines(plan: &Plan) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for k in &plan.create {
        by.entry(k.account_id)
            .or_default()
            .push(format!("    + {} (create)", k.token_name));
    }
    for r in &plan.present {
        by.entry(r.key.account_id)
            .or_default()
            .push(format!("    = {} (token {})", r.key.token_name, r.token_id));
    }
    for r in &plan.revoked {
        by.entry(r.key.account_id).or_default().push(format!(
            "    ! {} (token {}): revoked; `apply --recreate-revoked` replaces it",
            r.key.token_name, r.token_id
        ));
    }
    for r in &plan.replaced_to_remove {
        by.entry(r.key.account_id).or_default().push(format!(
            "    - {} (token {}): replaced; remove by hand in the UI",
            r.key.token_name, r.token_id
        ));
    }
    for r in &plan.remove_by_hand {
        by.entry(r.key.account_id).or_default().push(format!(
            "    - {} (token {}): not in the manifest; remove by hand in the UI",
            r.key.token_name, r.token_id
        ));
    }
    let names = AccountBook::new(None, &plan.resolved_names);
    let mut out = Vec::new();
    for (acc, lines) in by {
        match names.name(acc) {
            Some(n) => out.push(format!("  account {acc} ({n}):")),
            None => out.push(format!("  account {acc}:")),
        }
        out.extend(lines);
    }
    out
}

/// Prints the lines through the printer.
pub fn print_lines(printer: &Printer, lines: &[String]) {
    for l in lines {
        printer.info(l);
    }
}
