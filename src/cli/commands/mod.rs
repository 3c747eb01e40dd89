//! One file per command; shared preparation (manifest, endpoint, preflight, plan) here.

pub mod apply;
pub mod forget;
pub mod misc;
pub mod onboard;
pub mod plan;
pub mod simulate;
pub mod state_cmds;
pub mod validate;
pub mod verify;

use std::sync::Arc;

use super::config::{ApiSetup, ExecSettings, RunSettings};
use super::error::CliError;
use super::output::{Printer, count};
use crate::api::{ApiClient, ClientConfig, Endpoint, Preflight, preflight};
use crate::execution::Pacer;
use crate::manifest::Manifest;
use crate::plan::{self as planner, AccountBook, LiveAccounts, Plan};
use crate::simulator::{SimConfig, Simulator};
use crate::state::{LearnedRate, LimitKind, ResultsFile, Store};

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
            let sim = Simulator::start(SimConfig {
                account_list_lag: api.simulate_list_lag,
                ..SimConfig::default()
            })
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

    /// The plan of `run` against a store's recorded results, with the replacements chosen
    /// (`recreate_revoked`, `rotate_older_than`): what `plan` shows is what `apply` does, so
    /// both derive it here. An `--account` or `--exclude-account` that names no entry of the
    /// manifest is refused (a typo would otherwise silently do nothing, or everything).
    pub fn plan(
        &self,
        run: &RunSettings,
        store: &Store,
        recreate_revoked: bool,
        rotate_older_than: Option<std::time::Duration>,
    ) -> Result<Plan, CliError> {
        let book = AccountBook::new(self.live.as_ref(), &store.results().resolved_names);
        check_filter(&run.filter, &run.manifest, &book)?;
        let mut plan = planner::plan(
            &run.manifest,
            store.results(),
            self.live.as_ref(),
            &run.filter,
        );
        plan.add_replacements(
            &run.manifest,
            store.results(),
            recreate_revoked,
            rotate_older_than,
            time::OffsetDateTime::now_utc(),
        );
        Ok(plan)
    }

    /// Stops the simulator, if one runs.
    pub async fn close(self) {
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }
}

/// The age identities of `--identity KEYFILE`, when one is given (export, verify).
pub fn identities(
    path: Option<&std::path::Path>,
) -> Result<Option<crate::state::sealed::Identities>, CliError> {
    path.map(|p| {
        crate::state::sealed::Identities::load_key_file(p).map_err(|e| CliError::Fatal {
            message: e.to_string(),
        })
    })
    .transpose()
}

/// Refuses an `--account` / `--exclude-account` value that names no manifest entry, naming
/// it and the closest entries.
pub fn check_filter(
    filter: &planner::AccountFilter,
    manifest: &Manifest,
    book: &AccountBook<'_>,
) -> Result<(), CliError> {
    let unmatched = filter.unmatched(manifest, book);
    if unmatched.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = unmatched
        .iter()
        .map(|(exclude, r, closest)| {
            format!(
                "`{} {}` names no account of the manifest {}{}",
                if *exclude {
                    "--exclude-account"
                } else {
                    "--account"
                },
                r.as_str(),
                manifest.path.display(),
                if closest.is_empty() {
                    String::new()
                } else {
                    format!(" (closest: {})", closest.join(", "))
                }
            )
        })
        .collect();
    Err(CliError::usage(format!(
        "{}; give an id or a name the manifest lists (an account by id is also known by its name once a run resolved it)",
        lines.join("; ")
    )))
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

/// How many of a repeated finding are shown by id before "and N more".
const FIRST_FEW: usize = 3;

/// The first few of `items`, then how many more: `1, 2, 3 and 9997 more`.
pub fn first_few(items: &[String], few: usize) -> String {
    let mut s = items
        .iter()
        .take(few)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > few {
        s.push_str(&format!(" and {} more", items.len() - few));
    }
    s
}

/// How many lines of a list are printed before it is cut to "… and N more".
const LINES_SHOWN: usize = 10;

/// `lines` when there are few; else the first `LINES_SHOWN`, then how many more and
/// `where_all` (where the full list is).
pub fn summarised(mut lines: Vec<String>, where_all: &str) -> Vec<String> {
    if lines.len() > LINES_SHOWN {
        let more = lines.len() - LINES_SHOWN;
        lines.truncate(LINES_SHOWN);
        lines.push(format!("  … and {more} more ({where_all})"));
    }
    lines
}

/// The counts line: `3 to create, 1 to replace, 5 recorded`.
pub fn counts_line(plan: &Plan) -> String {
    format!(
        "{} to create, {} to replace, {} recorded",
        plan.create.len(),
        plan.replace.len(),
        plan.present.len()
    )
}

/// The plan summary for people: the header, the counts, then each finding once (repeated
/// findings summarised: a count, the first few, where the full list is).
pub fn summary_lines(plan: &Plan, manifest: &Manifest, api: &ApiSetup) -> Vec<String> {
    let mut lines = vec![format!(
        "Plan for {} against {}; {}",
        manifest.path.display(),
        api.describe(),
        if plan.live {
            "accounts checked live"
        } else {
            "offline: set LOGZIO_API_TOKEN to check accounts live"
        }
    )];
    let accounts: std::collections::BTreeSet<u32> =
        plan.to_send().iter().map(|k| k.account_id).collect();
    lines.push(if accounts.is_empty() {
        format!("  Tokens: {}", counts_line(plan))
    } else {
        format!(
            "  Tokens: {} (changes in {})",
            counts_line(plan),
            count(accounts.len(), "account")
        )
    });
    let full_list = "`plan --detail` or `plan --json` lists every one";
    if !plan.replace.is_empty() {
        let shown = 10;
        for r in plan.replace.iter().take(shown) {
            lines.push(format!("    {}", replace_line(r, true)));
        }
        if plan.replace.len() > shown {
            lines.push(format!(
                "    … and {} more to replace ({full_list})",
                plan.replace.len() - shown
            ));
        }
    }
    if !plan.unknown_accounts.is_empty() {
        let ids: Vec<String> = plan
            .unknown_accounts
            .iter()
            .map(|u| u.account_id.to_string())
            .collect();
        let tokens: usize = plan.unknown_accounts.iter().map(|u| u.tokens.len()).sum();
        let who = if ids.len() == 1 {
            "1 account is".to_owned()
        } else {
            format!("{} accounts are", ids.len())
        };
        let theirs = if tokens == 1 {
            "its 1 token".to_owned()
        } else {
            format!("their {tokens} tokens")
        };
        let mut which = format!(
            "{} {}",
            if ids.len() == 1 { "id" } else { "ids" },
            first_few(&ids, FIRST_FEW)
        );
        if ids.len() > FIRST_FEW {
            which.push_str(&format!("; {full_list}"));
        }
        lines.push(format!(
            "  {who} not a sub account of this owner: {theirs} will fail ({which})"
        ));
    }
    // Names that did not resolve, grouped by why.
    let mut by_why: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for u in &plan.unresolved {
        by_why
            .entry(describe_unresolved_kind(&u.why))
            .or_default()
            .push(u.name.clone());
    }
    for (why, names) in by_why {
        if names.len() <= FIRST_FEW {
            for u in plan
                .unresolved
                .iter()
                .filter(|u| describe_unresolved_kind(&u.why) == why)
            {
                lines.push(format!(
                    "  account named {:?}: {}",
                    u.name,
                    describe_unresolved(&u.why)
                ));
            }
        } else {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            lines.push(format!(
                "  {} accounts named in the manifest: {why} ({}; {full_list})",
                names.len(),
                first_few(&quoted, FIRST_FEW)
            ));
        }
    }
    if !plan.revoked.is_empty() {
        lines.push(format!(
            "  {} revoked (verify saw them answer 403): not recreated unasked; `--recreate-revoked` creates new ones under the same names",
            count(plan.revoked.len(), "token")
        ));
    }
    if !plan.remove_by_hand.is_empty() {
        lines.push(format!(
            "  {} recorded but no longer in the manifest: remove by hand in the Logz.io UI (the API cannot delete tokens)",
            count(plan.remove_by_hand.len(), "token")
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
            first_few(&ids, 10)
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

/// `-/+ ci (replaces 7749, created 2026-01-02, older than 90d)`; with `account`, the name
/// is `7/ci`.
pub fn replace_line(r: &planner::Replacement, account: bool) -> String {
    let name = if account {
        format!("{}/{}", r.key.account_id, r.key.token_name)
    } else {
        r.key.token_name.clone()
    };
    match &r.reason {
        planner::ReplaceReason::Revoked => {
            format!("-/+ {name} (replaces {}, revoked)", r.replaces)
        }
        reason => format!(
            "-/+ {name} (replaces {}, created {}, {})",
            r.replaces,
            r.created_at.get(..10).unwrap_or(&r.created_at),
            reason.describe()
        ),
    }
}

/// The kind of an unresolved name, without its particulars (for grouping).
fn describe_unresolved_kind(why: &planner::Unresolved) -> String {
    match why {
        planner::Unresolved::NeedsLookup => {
            "need resolving through the sub-account list (needs a token)".into()
        }
        planner::Unresolved::NotFound { .. } => "no sub account has these names".into(),
        planner::Unresolved::Ambiguous { .. } => "several sub accounts have each name".into(),
    }
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
    for r in &plan.replace {
        by.entry(r.key.account_id)
            .or_default()
            .push(format!("    {}", replace_line(r, false)));
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
    let mut out = Vec::new();
    for u in &plan.unknown_accounts {
        by.entry(u.account_id).or_default().push(format!(
            "    ! not a sub account of this owner: {} will fail ({})",
            count(u.tokens.len(), "token"),
            u.tokens.join(", ")
        ));
    }
    for (acc, lines) in by {
        match plan.account_names.get(&acc) {
            Some(n) => out.push(format!("  account {acc} ({n}):")),
            None => out.push(format!("  account {acc}:")),
        }
        out.extend(lines);
    }
    for u in &plan.unresolved {
        out.push(format!(
            "  account named {:?}: {}",
            u.name,
            describe_unresolved(&u.why)
        ));
    }
    out
}

/// Prints the lines through the printer.
pub fn print_lines(printer: &Printer, lines: &[String]) {
    for l in lines {
        printer.info(l);
    }
}

/// What the last run against an endpoint learned of its limit: where apply's and verify's
/// pacer starts, and what each records after its run (one owner token, one limit).
#[derive(Debug)]
pub struct LimitBefore {
    endpoint: String,
    per_second: Option<f64>,
    in_flight: Option<u32>,
}

impl LimitBefore {
    /// What `results` records of the limit of `endpoint` (nothing, if it was learned against
    /// another endpoint).
    pub fn of(results: &ResultsFile, endpoint: String) -> LimitBefore {
        let (per_second, in_flight) = results.learned_limit(&endpoint);
        LimitBefore {
            endpoint,
            per_second,
            in_flight,
        }
    }

    /// The run's pacer: at most `exec.rate` requests a second and `exec.concurrency` in
    /// flight, adapting to the server's limit, and starting just under what was learned (a
    /// rate, a number of requests in flight, or both).
    pub fn pacer(&self, exec: &ExecSettings) -> Arc<Pacer> {
        Arc::new(Pacer::with_in_flight(
            exec.rate,
            true,
            self.per_second,
            exec.concurrency,
            self.in_flight,
        ))
    }

    /// What to record of the limit after a run that `pacer` paced, at `at`, when it differs
    /// from what was recorded (`Some(None)`: nothing is known of it any more).
    pub fn learned(&self, pacer: &Pacer, at: &str) -> Option<Option<LearnedRate>> {
        let per_second = pacer.learned_rate(self.per_second);
        let in_flight = pacer.learned_in_flight(self.in_flight);
        if (per_second, in_flight) == (self.per_second, self.in_flight) {
            return None;
        }
        Some(
            LimitKind::of(per_second, in_flight).map(|kind| LearnedRate {
                per_second,
                in_flight,
                kind,
                endpoint: self.endpoint.clone(),
                at: at.to_owned(),
            }),
        )
    }
}
