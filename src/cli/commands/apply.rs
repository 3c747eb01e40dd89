//! `apply`: resolve, lock and recover, connect, plan, confirm, execute under the recorder,
//! summarise. [`run`] is the recipe; each step is a function below it.

use std::sync::Arc;
use std::time::Duration;

use super::Connection;
use crate::cli::args::ApplyArgs;
use crate::cli::config::ApplySettings;
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count, count_as, was};
use crate::cli::progress::{self, Mode, Progress, server_limit};
use crate::cli::report::{AccountLine, ItemLine, Line, Message, PlanCounts, SummaryLine, V1};
use crate::execution::{
    AccountResult, Backoff, Cancel, ExecConfig, ItemEvent, ItemResult, Observer, Pacer, RunReport,
    Services, Stats, StopReason, execute,
};
use crate::plan::{Plan, Unresolved};
use crate::state::{Failure, Recorder, Store};
use crate::timestamp::now_rfc3339;

/// Runs `apply`.
pub async fn run(args: &ApplyArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = ApplySettings::resolve(args)?;
    let run = &settings.run;
    // Plan and confirm on a read of the state (the journal of an interrupted run replayed in
    // memory), then lock and check that nothing moved: a refused or declined run leaves no
    // lock file, and a second run still fails at the lock, having created nothing.
    let preview = Store::read(run.paths.clone(), Some(&run.api.identity()))?;
    report_recovery(printer, &preview);
    // A state whose secrets are sealed is not continued in plaintext unasked (invariant 2).
    preview.check_protection(run.recipients.is_some(), run.allow_plaintext)?;
    warn_plaintext_on_ci(printer, &settings, &preview);
    for warning in run.api.startup_warnings() {
        printer.warn(&warning);
    }
    let conn = Connection::open(run, run.exec.concurrency as usize).await?;
    // The secrets of earlier runs are scrubbed from server text too, not only this run's.
    if let Some(client) = &conn.client {
        let secrets = preview.secrets();
        let current = secrets
            .accounts
            .values()
            .flat_map(|t| t.values().map(|r| &r.token));
        for secret in current.chain(secrets.superseded.iter().map(|s| &s.token)) {
            client.scrub_also(secret);
        }
    }
    let mut plan = match plan_of(&settings, &conn, &preview) {
        Ok(plan) => plan,
        Err(e) => {
            conn.close().await;
            return Err(e);
        }
    };
    // The ambiguity budget holds across runs: a token whose earlier runs used it up is not sent
    // again until its possible orphans are checked and cleared.
    let (earlier_ambiguous, at_budget) = if run.exec.resend_ambiguous {
        Default::default()
    } else {
        plan.hold_ambiguity_budget(preview.results(), run.exec.max_ambiguous)
    };
    // And an account's, as a token's: one whose earlier runs used it up is taken out of the
    // plan (the prompt does not offer to create it), and the executor fails it unsent, saying
    // how to lift it.
    let earlier_accounts: std::collections::BTreeMap<String, u32> = if run.exec.resend_ambiguous {
        Default::default()
    } else {
        preview
            .results()
            .accounts_ambiguous
            .iter()
            .map(|(name, a)| (name.clone(), a.ambiguous_attempts))
            .collect()
    };
    let held_accounts =
        super::onboard::hold_accounts(&mut plan, &earlier_accounts, run.exec.max_ambiguous);
    // Accounts that cannot get tokens are this run's failures, reported by name, before any write.
    let mut pre_failures = failures_before_start(&plan);
    pre_failures.extend(at_budget);
    show_plan(printer, &settings, &plan, pre_failures.len());

    // --fail-fast: a failure found before any write stops the run before it starts.
    if settings.fail_fast && !pre_failures.is_empty() {
        drop(preview);
        let store = Store::open(run.paths.clone(), Some(&run.api.identity()))?;
        return stop_before_start(printer, store, &pre_failures, conn).await;
    }

    // Accounts to create are listed above and in the prompt: a person is spending money.
    let account_work =
        !plan.accounts_to_create.is_empty() || (settings.update_accounts && !plan.drift.is_empty());
    if (!plan.to_send().is_empty() || account_work)
        && !settings.yes
        && !confirm(&plan, settings.update_accounts).await
    {
        printer.info("Nothing was sent.");
        conn.close().await;
        return Ok(Exit::Declined);
    }
    let mut store = match Store::open(run.paths.clone(), Some(&run.api.identity())) {
        Ok(store) => store,
        Err(e) => {
            conn.close().await;
            return Err(e.into());
        }
    };
    if crate::plan::saved::state_digest(store.results())
        != crate::plan::saved::state_digest(preview.results())
    {
        conn.close().await;
        return Err(CliError::usage(format!(
            "the results file {} changed while this run planned (another run, or an edit): nothing was sent; run the command again to plan against it",
            store.paths().results.display()
        )));
    }
    drop(preview);
    if let Some(r) = &run.recipients {
        store.seal_to(r.clone());
    }

    let limit_before = super::LimitBefore::of(store.results(), run.api.identity());
    let pending_accounts = store.pending_accounts();
    let missing_shipping = store.accounts_missing_shipping();
    let recorder = Recorder::start(store)?;
    let handle = recorder.handle();
    for (name, id) in &plan.resolved_names {
        handle.resolved_name(name.clone(), *id);
    }
    for f in &pre_failures {
        handle.failure(f.clone());
    }

    let client = conn.client.clone().ok_or_else(|| CliError::Fatal {
        message: "internal error: no API client".into(),
    })?;
    let stats = Arc::new(Stats::default());
    let pacer = limit_before.pacer(&run.exec);
    let learned_into = (pacer.clone(), handle.clone());
    let cancel = Cancel::default();
    let beside = Beside::start(&settings, printer, &plan, &stats, &pacer, &cancel);
    // One executor for sub accounts (each exactly once) and tokens: a new account's tokens
    // wait for its id.
    let work = crate::execution::Work {
        tokens: plan.to_send(),
        accounts: super::onboard::account_work(
            &plan,
            &pending_accounts,
            &earlier_accounts,
            &held_accounts,
        ),
        ids: plan.resolved_names.clone(),
        shipping: missing_shipping,
        lookup: settings.account_lookup,
    };
    let update = (client.clone(), pacer.clone(), cancel.clone());
    let services = Services {
        creator: client,
        recorder: handle,
        pacer,
        stats,
        observer: observer(&settings, printer),
        cancel,
        rng: crate::random::from_os(),
    };
    let mut config = exec_config(&settings);
    config.earlier_ambiguous = earlier_ambiguous;
    let report = execute(work, config, services).await;
    beside.stop();
    let (mut account_lines, mut account_problems) =
        super::onboard::account_lines(&plan, &report.accounts);
    if report.stop.is_completed() {
        let mut ids = plan.resolved_names.clone();
        ids.extend(report.accounts.created.clone());
        let (lines, problems) = super::onboard::update_drift(
            &plan,
            &run.manifest,
            settings.update_accounts,
            &ids,
            &update.0,
            &update.1,
            &update.2,
        )
        .await;
        account_lines.extend(lines);
        account_problems += problems;
    }
    drop(update);
    super::print_lines(printer, &account_lines);
    let (pacer, handle) = learned_into;
    if let Some(learned) = limit_before.learned(&pacer, &now_rfc3339()) {
        handle.learned_rate(learned);
    }
    drop(handle);
    let snapshot = pacer.snapshot();
    let (limit, in_flight_limit) = (snapshot.limit, snapshot.in_flight_limit);
    let (store, saved_res) = recorder.finish().await;
    conn.close().await;

    let exit = match exit_code(&report, &pre_failures, &saved_res) {
        Exit::Success if account_problems > 0 => Exit::ItemsFailed,
        exit => exit,
    };
    let outcome = Outcome {
        exit,
        report: &report,
        present: plan.present.len(),
        pre_failures: &pre_failures,
        store: store.as_ref(),
        limit,
        in_flight_limit,
        max_ambiguous: run.exec.max_ambiguous,
        orphans_clear: crate::cli::config::command_line(
            "orphans clear",
            &run.manifest_path,
            &run.state_flags(),
        ),
        rerun: crate::cli::config::command_line(
            "apply",
            &run.manifest_path,
            &replan_flags(&settings),
        ),
    };
    if settings.json {
        outcome.emit(printer);
    } else {
        outcome.print(printer);
    }
    if let Err(e) = &saved_res {
        let journal = store
            .as_ref()
            .map_or(String::new(), |s| s.paths().journal.display().to_string());
        let unsaved = store.as_ref().map_or(&[][..], |s| s.unsaved());
        if unsaved.is_empty() {
            printer.error(&format!(
                "{e}\n  every secret received is in the journal {journal}; the next run recovers it"
            ));
        } else {
            // No file can hold these: the only record is this message.
            printer.error(&format!(
                "{e}\n  every other secret received is in the journal {journal}; the next run recovers it.\n  {} answered or still in flight after the state stopped taking writes, or journaled just before (a filesystem turned read-only after a disk error may drop the journal's last records): each may have created a token that no file records. Check them in the Logz.io UI (Settings > Tools > Manage Tokens): {}",
                count(unsaved.len(), "request"),
                unsaved
                    .iter()
                    .map(|k| format!("{} {}", k.account_id, k.token_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(outcome.exit)
}

/// Without recipients, on CI (`CI=true`), one warning that the plaintext secrets file lives
/// only on this machine.
fn warn_plaintext_on_ci(printer: &Printer, settings: &ApplySettings, store: &Store) {
    let run = &settings.run;
    match &run.recipients {
        Some(_) => {}
        None if std::env::var_os("CI").is_some_and(|v| v == "true") && !run.api.simulate => {
            printer.warn(&format!(
                "secrets will be written in plaintext to {}, which lives only on this machine: on a CI runner it is lost with the runner. Seal them to an age recipient (`secrets: {{ recipients: [age1…] }}` in the manifest, or --recipient) so they can be committed and read later with `export --identity`.",
                store.paths().secrets.display()
            ));
        }
        None => {}
    }
}

/// `--fail-fast` with failures found before any write: record them, send nothing.
async fn stop_before_start(
    printer: &Printer,
    store: Store,
    pre_failures: &[Failure],
    conn: Connection,
) -> Result<Exit, CliError> {
    let recorder = Recorder::start(store)?;
    let handle = recorder.handle();
    for f in pre_failures {
        handle.failure(f.clone());
    }
    drop(handle);
    let (_, saved) = recorder.finish().await;
    if let Some(first) = pre_failures.first() {
        printer.error(&format!(
            "stopped before sending anything (--fail-fast): {}",
            first.error
        ));
    }
    conn.close().await;
    saved?;
    Ok(Exit::ItemsFailed)
}

/// The plan against the recorded state, with the replacements chosen. For `apply
/// PLAN_FILE`, the same plan derived again with the plan's choices: applied only when the
/// saved plan is current and lists exactly its tokens (a hand-edited list is refused).
fn plan_of(settings: &ApplySettings, conn: &Connection, store: &Store) -> Result<Plan, CliError> {
    let run = &settings.run;
    let replan = || {
        super::super::config::command_line("plan", &run.manifest_path, &replan_flags(settings))
            + " --out PLAN_FILE"
    };
    if let Some(saved) = &settings.saved_plan {
        saved
            .check_current(
                &run.manifest_bytes,
                store.results(),
                &run.recipient_keys,
                &run.api.identity(),
            )
            .map_err(|e| CliError::usage(e.with_replan(&replan()).to_string()))?;
    }
    let mut plan = conn.plan(
        run,
        store,
        settings.recreate_revoked,
        settings.rotate_older_than,
    )?;
    if let Some(saved) = &settings.saved_plan {
        saved
            .check_changes(&plan.changes())
            .map_err(|e| CliError::usage(e.with_replan(&replan()).to_string()))?;
        // A saved plan lists tokens only: it cannot say which sub accounts to create (nor
        // which settings to put back), so applying it must not create or change any.
        if !plan.accounts_to_create.is_empty() {
            let names: Vec<&str> = plan
                .accounts_to_create
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            return Err(CliError::usage(format!(
                "a saved plan does not cover sub accounts to create ({}); nothing was sent: run \
                 `apply` on the manifest to create them",
                names.join(", ")
            )));
        }
        plan.drift.clear();
    }
    Ok(plan)
}

/// The flags that make the same plan again: the path flags, the accounts, the recipients
/// given on the command line and the replacement choices.
fn replan_flags(settings: &ApplySettings) -> Vec<String> {
    use crate::cli::output::shell_quote;
    let run = &settings.run;
    let mut flags = run.path_flags();
    for r in &run.filter.include {
        flags.push(format!("--account {}", shell_quote(r.as_str())));
    }
    for r in &run.filter.exclude {
        flags.push(format!("--exclude-account {}", shell_quote(r.as_str())));
    }
    for r in &run.args.seal.recipients {
        flags.push(format!("--recipient {}", shell_quote(r)));
    }
    if let Some(f) = &run.args.seal.recipients_file {
        flags.push(format!(
            "--recipients-file {}",
            crate::cli::config::quote_path(f)
        ));
    }
    if run.api.simulate {
        flags.push("--simulate".into());
    }
    if settings.recreate_revoked && run.manifest.settings.recreate_revoked != Some(true) {
        flags.push("--recreate-revoked".into());
    }
    if let Some(age) = settings.rotate_older_than {
        flags.push(format!(
            "--rotate-older-than {}",
            crate::plan::format_age(age.as_secs())
        ));
    }
    flags
}

/// The tokens of accounts found unusable before any write (a name that resolves to no sub
/// account or to several, an id that is not a sub account of this owner).
fn failures_before_start(plan: &Plan) -> Vec<Failure> {
    let mut out = Vec::new();
    for u in &plan.unresolved {
        if u.why == Unresolved::NeedsLookup {
            continue;
        }
        let why = super::describe_unresolved(&u.why);
        for t in &u.tokens {
            out.push(Failure {
                account_id: None,
                account_name: Some(u.name.clone()),
                token_name: t.clone(),
                http_status: None,
                error: format!("account named {:?}: {why}", u.name),
            });
        }
    }
    for u in &plan.unknown_accounts {
        for t in &u.tokens {
            out.push(Failure {
                account_id: Some(u.account_id),
                account_name: None,
                token_name: t.clone(),
                http_status: Some(404),
                error: "not a sub account of this owner account (checked before any write)".into(),
            });
        }
    }
    out
}

fn show_plan(printer: &Printer, settings: &ApplySettings, plan: &Plan, failed_before_start: usize) {
    let run = &settings.run;
    if settings.json {
        Message::PlanCounts(PlanCounts {
            create: plan.create.len(),
            replace: plan.replace.len(),
            endpoint: &run.api.identity(),
            failed_before_start,
            manifest: run.manifest.path.display().to_string(),
            present: plan.present.len(),
            remove_by_hand: plan.remove_by_hand.len(),
            v: V1,
        })
        .emit(printer);
    } else {
        super::print_lines(
            printer,
            &super::summary_lines(plan, &run.manifest, &run.api),
        );
    }
}

/// What runs beside the executor and stops with it: Ctrl-C handling and the progress display.
struct Beside {
    signals: tokio::task::JoinHandle<()>,
    progress: Progress,
}

impl Beside {
    fn start(
        settings: &ApplySettings,
        printer: &Printer,
        plan: &Plan,
        stats: &Arc<Stats>,
        pacer: &Arc<Pacer>,
        cancel: &Cancel,
    ) -> Beside {
        Beside {
            signals: tokio::spawn(watch_signals(
                cancel.clone(),
                stats.clone(),
                *printer,
                settings.run.paths.journal.clone(),
            )),
            progress: Progress::start(
                progress_mode(settings, printer, plan),
                (plan.create.len() + plan.replace.len()) as u64,
                stats.clone(),
                pacer.clone(),
            ),
        }
    }

    /// Clears the bar (before the summary is printed) and stops listening for Ctrl-C.
    fn stop(self) {
        self.progress.finish();
        self.signals.abort();
    }
}

fn exec_config(settings: &ApplySettings) -> ExecConfig {
    ExecConfig {
        concurrency: settings.run.exec.concurrency as usize,
        max_attempts: settings.run.exec.max_attempts,
        max_ambiguous: settings.run.exec.max_ambiguous,
        fail_fast: settings.fail_fast,
        backoff: Backoff::default(),
        drain_timeout: settings.run.api.request_timeout + Duration::from_secs(5),
        earlier_ambiguous: Default::default(),
    }
}

/// With `--output json`, an observer that prints each token's line.
fn observer(settings: &ApplySettings, printer: &Printer) -> Option<Arc<dyn Observer>> {
    if settings.json {
        Some(Arc::new(JsonObserver { printer: *printer }))
    } else {
        None
    }
}

fn progress_mode(settings: &ApplySettings, printer: &Printer, plan: &Plan) -> Mode {
    if settings.no_progress || printer.quiet || !plan.has_changes() {
        Mode::Off
    } else if printer.stderr_is_terminal() && !settings.json {
        Mode::Bar
    } else {
        Mode::Lines
    }
}

/// How a run ended, for the summary.
struct Outcome<'a> {
    exit: Exit,
    report: &'a RunReport,
    /// Tokens already recorded before the run.
    present: usize,
    pre_failures: &'a [Failure],
    store: Option<&'a Store>,
    /// The server's limit as this run measured it, if it met one.
    limit: Option<f64>,
    /// The server's limit on requests in flight, if it met one.
    in_flight_limit: Option<u32>,
    /// Ambiguous attempts allowed per token.
    max_ambiguous: u32,
    /// The command that clears the possible orphans of this run's state, to paste.
    orphans_clear: String,
    /// The command that runs apply again on the same state, to paste.
    rerun: String,
}

impl Outcome<'_> {
    fn orphans(&self) -> usize {
        self.store.map_or(0, |s| s.results().possible_orphans.len())
    }

    fn files(&self) -> (String, String) {
        self.store.map_or_else(
            || (String::new(), String::new()),
            |s| {
                // Sealed: where the run's sealed file went.
                let secrets = match s.sealing() {
                    Some(_) => &s.paths().sealed,
                    None => &s.paths().secrets,
                };
                (
                    s.paths().results.display().to_string(),
                    secrets.display().to_string(),
                )
            },
        )
    }

    /// The `summary` line of `--output json`.
    fn emit(&self, printer: &Printer) {
        let r = self.report;
        let (results, secrets) = self.files();
        Message::Summary(SummaryLine {
            accounts_created: r.accounts.created.len(),
            accounts_failed: r.accounts.failed.len(),
            already_present: self.present,
            ambiguous: r.ambiguous,
            attempts: r.attempts,
            created: r.created,
            elapsed_seconds: r.elapsed.as_secs_f64(),
            exit_code: self.exit.code(),
            failed: r.failures.len() + self.pre_failures.len(),
            final_rate_per_second: r.final_rate,
            learned_limit_per_second: self.limit,
            learned_limit_in_flight: self.in_flight_limit,
            server_limit: server_limit(self.limit, self.in_flight_limit),
            max_ambiguous: self.max_ambiguous,
            ambiguity_exhausted: r.ambiguity_exhausted,
            ambiguity_breaker: matches!(r.stop, StopReason::AmbiguityBreaker(_)),
            not_attempted: r.not_attempted,
            possible_orphans: self.orphans(),
            rate_limited: r.rate_limited,
            results_file: &results,
            retries: r.retries,
            secrets_file: &secrets,
            stop: stop_text(&r.stop),
            unsaved: self.store.map_or(&[][..], |s| s.unsaved()),
            v: V1,
        })
        .emit(printer);
    }
}

fn exit_code(
    report: &RunReport,
    pre_failures: &[Failure],
    saved: &Result<(), crate::state::StateError>,
) -> Exit {
    match &report.stop {
        StopReason::Interrupted => Exit::Interrupted,
        StopReason::Fatal(_) | StopReason::State(_) => Exit::Fatal,
        _ if saved.is_err() => Exit::Fatal,
        StopReason::AmbiguityBreaker(_) => Exit::ItemsFailed,
        _ if !report.failures.is_empty()
            || !pre_failures.is_empty()
            || report.not_attempted > 0 =>
        {
            Exit::ItemsFailed
        }
        _ => Exit::Success,
    }
}

fn stop_text(stop: &StopReason) -> String {
    match stop {
        StopReason::Completed => "completed".into(),
        StopReason::Fatal(m) => format!("fatal: {m}"),
        StopReason::State(m) => format!("state: {m}"),
        StopReason::FailFast => "fail-fast".into(),
        StopReason::Interrupted => "interrupted".into(),
        StopReason::AmbiguityBreaker(m) => format!("ambiguity breaker: {m}"),
    }
}

fn report_recovery(printer: &Printer, store: &Store) {
    let r = &store.recovery();
    if let Some(gap) = &r.gap {
        printer.warn(&gap.describe(&store.paths().journal));
    }
    if r.recovered_tokens > 0 || r.interrupted > 0 {
        printer.warn(&format!(
            "recovered an interrupted run from its journal: {} recorded, {} that {} in flight listed as {}{}",
            count(r.recovered_tokens, "received token"),
            count(r.interrupted, "request"),
            was(r.interrupted),
            if r.interrupted == 1 { "a possible orphan" } else { "possible orphans" },
            if r.truncated_tail {
                " (a record the interruption cut short was ignored)"
            } else {
                ""
            }
        ));
    }
}

/// How many tokens the prompt lists before "… and N more".
const PROMPT_LIST: usize = 20;

/// The question: the counts by kind, which tokens (up to [`PROMPT_LIST`]), and what to type.
fn question(plan: &Plan, update_accounts: bool) -> String {
    let changes = plan.changes();
    let mut kinds = Vec::new();
    let mut q = String::new();
    // Sub accounts first: they cost money, and their tokens are created right after them.
    let new = &plan.accounts_to_create;
    if !new.is_empty() {
        kinds.push(format!(
            "create {} adding up to {} GB a day, then their {}",
            count(new.len(), "sub account"),
            plan.added_daily_gb(),
            count(plan.new_account_token_count(), "token")
        ));
        for a in new.iter().take(PROMPT_LIST) {
            q.push_str(&format!("  + sub account {}\n", a.name));
        }
        if new.len() > PROMPT_LIST {
            q.push_str(&format!(
                "  … and {} more sub accounts\n",
                new.len() - PROMPT_LIST
            ));
        }
    }
    if update_accounts && !plan.drift.is_empty() {
        kinds.push(format!(
            "update {} to the declared settings",
            count(plan.drift.len(), "drifted sub account")
        ));
    }
    if !plan.create.is_empty() {
        // Beside new accounts, say whose these are: the new accounts' tokens are counted above.
        let whose = if new.is_empty() {
            ""
        } else {
            " in existing sub accounts"
        };
        kinds.push(format!(
            "create {}{whose}",
            count(plan.create.len(), "token")
        ));
    }
    if !plan.replace.is_empty() {
        kinds.push(format!(
            "replace {} (the old ones keep working until removed by hand)",
            plan.replace.len()
        ));
    }
    for c in changes.iter().take(PROMPT_LIST) {
        q.push_str(&format!("  {}\n", c.describe()));
    }
    if changes.len() > PROMPT_LIST {
        q.push_str(&format!("  … and {} more\n", changes.len() - PROMPT_LIST));
    }
    q.push_str(&format!(
        "This will {}. Tokens cannot be deleted through the API, and this tool never deletes a \
         sub account.\nType 'yes' to continue: ",
        kinds.join(" and ")
    ));
    q
}

/// Asks on the terminal; only the exact word `yes` goes on.
async fn confirm(plan: &Plan, update_accounts: bool) -> bool {
    let question = question(plan, update_accounts);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let _ = write!(std::io::stderr(), "{question}");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && answer.trim_end_matches(['\n', '\r']) == "yes"
    })
    .await
    .unwrap_or(false)
}

/// First Ctrl-C, SIGTERM or SIGHUP (a closed terminal, some CI cancellations): stop sending,
/// drain, save. Second Ctrl-C: exit at once, saying so; the journal lets the next run recover
/// everything received. The signal streams are registered before anything is printed, so no
/// signal is missed (SIGHUP's default would kill the run with creates in flight, unrecorded).
async fn watch_signals(
    cancel: Cancel,
    stats: Arc<Stats>,
    printer: Printer,
    journal: std::path::PathBuf,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        printer.warn("cannot listen for Ctrl-C; it will stop the run without draining");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    cancel.cancel();
    progress::leave_bar();
    printer.info(&format!(
        "Stopping: no new requests; waiting for {} in flight (press Ctrl-C again to exit now; the journal keeps what was received)",
        Stats::get(&stats.in_flight)
    ));
    int.recv().await;
    let left = Stats::get(&stats.in_flight);
    printer.info(&format!(
        "Second Ctrl-C: exited without waiting for {} in flight. The journal {} keeps every answer received: the next `apply` records them and lists {} as {}.",
        count(left as usize, "request"),
        journal.display(),
        if left == 1 { "the unanswered one" } else { "the unanswered ones" },
        if left == 1 { "a possible orphan" } else { "possible orphans" },
    ));
    std::process::exit(i32::from(Exit::Interrupted.code()));
}

impl Outcome<'_> {
    /// The summary for people, on stderr.
    fn print(&self, printer: &Printer) {
        let (report, present, pre_failures) = (self.report, self.present, self.pre_failures);
        let orphans = self.orphans();
        let (results, secrets) = self.files();
        let secs = report.elapsed.as_secs_f64();
        if report.attempts == 0 && report.failures.is_empty() && pre_failures.is_empty() {
            printer.info(&format!(
                "Nothing to create: {} of the manifest already recorded.",
                count(present, "token")
            ));
        } else {
            printer.info(&format!(
                "Created {} in {:.1}s ({:.1}/s; rate at the end {:.1}/s, {}); {} already present.",
                count(report.created as usize, "token"),
                secs,
                report.created as f64 / secs.max(0.001),
                report.final_rate,
                server_limit(self.limit, self.in_flight_limit)
                    .map_or("no server limit met".into(), |l| format!(
                        "server limit: {l}"
                    )),
                present
            ));
        }
        match &report.stop {
            StopReason::Fatal(m) => printer.error(&format!("stopped: {m}")),
            StopReason::State(m) => printer.error(&format!("stopped: cannot write the state: {m}")),
            StopReason::FailFast => printer.info("Stopped at the first failure (--fail-fast)."),
            StopReason::Interrupted => printer.info(
                "Interrupted: requests in flight were drained and everything received is saved.",
            ),
            StopReason::AmbiguityBreaker(m) => printer.error(&format!("stopped: {m}")),
            StopReason::Completed => {}
        }
        // Tokens not sent again at their ambiguity budget are among the failures, with the
        // reason; the possible orphans' warning below says what to do (once).
        let failures: Vec<&Failure> = pre_failures.iter().chain(report.failures.iter()).collect();
        if !failures.is_empty() {
            printer.info(&format!("Failed: {}", failures.len()));
            let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for f in &failures {
                let who = match (f.account_id, &f.account_name) {
                    (Some(id), _) => format!("{id}/{}", f.token_name),
                    (None, Some(n)) => format!("{n}/{}", f.token_name),
                    (None, None) => f.token_name.clone(),
                };
                groups.entry(f.error.clone()).or_default().push(who);
            }
            for (why, who) in groups {
                let shown: Vec<&String> = who.iter().take(10).collect();
                let more = if who.len() > 10 {
                    format!(" and {} more", who.len() - 10)
                } else {
                    String::new()
                };
                printer.info(&format!(
                    "  {why} ({}): {}{more}",
                    who.len(),
                    shown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if report.not_attempted > 0 {
            printer.info(&format!(
                "Not attempted: {} (run `{}` to continue)",
                report.not_attempted, self.rerun
            ));
        }
        if orphans > 0 {
            printer.warn(&format!(
                "{} listed: a request may have created a token that is not recorded. Check them in the Logz.io UI (Settings > Tools > Manage Tokens), then run `{}`.",
                count(orphans, "possible orphan"),
                self.orphans_clear
            ));
        }
        printer.info(&format!(
            "Requests: {} sent, {}, {} answered 429, {} ambiguous.",
            report.attempts,
            count_as(report.retries, "retry", "retries"),
            report.rate_limited,
            report.ambiguous
        ));
        let replaced = self
            .store
            .map_or(0, |s| s.results().superseded_to_remove().count());
        if replaced > 0 {
            printer.info(&format!(
                "{} replaced but still working: remove them by hand in the Logz.io UI (the API cannot delete tokens); `plan` lists them, and `verify` takes off the list those it sees deleted.",
                count(replaced, "token")
            ));
        }
        if !results.is_empty() {
            printer.info(&format!("Results: {results}"));
            match self.store.and_then(Store::sealing) {
                Some(sealing) => printer.info(&format!(
                    "Secrets: sealed to {} in {secrets} (read them with `export --identity`)",
                    count(sealing.recipients.len(), "recipient")
                )),
                None => printer.info(&format!("Secrets: {secrets} (mode 0600)")),
            }
        }
    }
}

/// `--output json`: an `item` or `ambiguous` line per token as its outcome becomes final.
struct JsonObserver {
    printer: Printer,
}

impl Observer for JsonObserver {
    fn event(&self, event: &ItemEvent) {
        let line = match event {
            ItemEvent::Done {
                key,
                attempts,
                result,
            } => {
                let (result, token_id, http_status, error) = match result {
                    ItemResult::Created { token_id } => ("created", Some(*token_id), None, None),
                    ItemResult::Failed { http_status, error } => {
                        ("failed", None, Some(*http_status), Some(error.as_str()))
                    }
                };
                Message::Item(Line::Token(ItemLine {
                    attempts: Some(*attempts),
                    error,
                    http_status,
                    result: Some(result),
                    token_id,
                    ..ItemLine::of(key)
                }))
            }
            ItemEvent::Ambiguous { key, detail } => Message::Ambiguous(Line::Token(ItemLine {
                detail: Some(detail),
                ..ItemLine::of(key)
            })),
            ItemEvent::AccountDone {
                name,
                attempts,
                result,
            } => {
                let (result, account_id, http_status, error) = match result {
                    AccountResult::Created { account_id } => {
                        ("created", Some(*account_id), None, None)
                    }
                    AccountResult::Adopted { account_id } => {
                        ("adopted", Some(*account_id), None, None)
                    }
                    AccountResult::Failed { http_status, error } => {
                        ("failed", None, Some(*http_status), Some(error.as_str()))
                    }
                };
                Message::Item(Line::Account(AccountLine {
                    account_id,
                    attempts: Some(*attempts),
                    error,
                    http_status,
                    result: Some(result),
                    ..AccountLine::of(name)
                }))
            }
            ItemEvent::AccountAmbiguous { name, detail } => {
                Message::Ambiguous(Line::Account(AccountLine {
                    detail: Some(detail),
                    ..AccountLine::of(name)
                }))
            }
            ItemEvent::Retry { .. } => return,
        };
        line.emit(&self.printer);
    }
}
