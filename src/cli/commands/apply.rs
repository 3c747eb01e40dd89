//! `apply`: preflight, plan, confirm, execute under the recorder, summarise.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::args::{ApplyArgs, OutputFormat};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, json_line};
use crate::cli::progress::{Mode, Progress};
use crate::execution::{
    Backoff, Cancel, ExecConfig, ItemEvent, ItemResult, Observer, Pacer, RunReport, Stats,
    StopReason, execute,
};
use crate::plan::{SAVED_PLAN_KIND, SavedPlan, Unresolved, sha256_hex, state_digest};
use crate::state::{Failure, LearnedRate, Recorder, Store, now_rfc3339};

/// Runs `apply`.
pub async fn run(args: &ApplyArgs, printer: &Printer) -> Result<Exit, CliError> {
    let json = args.output == OutputFormat::Json;
    // Read once: the manifest may come from a pipe. It may also be a plan saved by `plan --out`.
    let first = crate::manifest::read(&args.manifest)?;
    let saved = parse_saved_plan(&args.manifest, &first)?;
    let (manifest_path, manifest_bytes) = match &saved {
        Some(plan) => (
            plan.manifest.clone(),
            crate::manifest::read(&plan.manifest)?,
        ),
        None => (args.manifest.clone(), first),
    };

    // Configuration first: nothing is sent before the whole manifest and every option is valid.
    let manifest_probe = super::load_manifest(&manifest_path, &manifest_bytes)?;
    let exec = crate::cli::config::resolve_exec(
        &manifest_probe,
        args.exec.concurrency,
        args.exec.rate,
        args.exec.max_attempts,
        args.exec.max_ambiguous,
    )?;
    let api_probe = crate::cli::config::resolve_api(&args.api, &manifest_probe)?;
    if api_probe.token.is_none() && !api_probe.simulate {
        return Err(CliError::usage(
            "no API token: set LOGZIO_API_TOKEN (or pass --api-token-file PATH) to the main account's API token; \
             to try the tool without one, add --simulate",
        ));
    }
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively",
        ));
    }

    let paths = crate::cli::config::state_paths(&manifest_path, &args.state, api_probe.simulate);
    // Lock and recover before talking to the API: a second run fails here, having sent nothing.
    let store = Store::open(paths, Some(&api_probe.identity()))?;
    report_recovery(printer, &store);

    let prepared = super::prepare(
        &manifest_path,
        manifest_probe,
        api_probe,
        &args.state,
        exec.concurrency as usize,
    )
    .await?;
    let filter = crate::cli::config::filter(&args.state);
    let mut plan = prepared.plan(&store, &filter);

    if let Some(saved) = &saved {
        check_saved_plan(
            saved,
            &manifest_path,
            &manifest_bytes,
            &store,
            &prepared.api.identity(),
        )?;
        plan.create = saved
            .create
            .iter()
            .filter(|k| store.results.get(k).is_none())
            .cloned()
            .collect();
    }

    // Accounts that cannot get tokens are this run's failures, reported by name, before any write.
    let mut pre_failures = Vec::new();
    for u in &plan.unresolved {
        let why = super::describe_unresolved(&u.why);
        if u.why == Unresolved::NeedsLookup {
            continue;
        }
        for t in &u.tokens {
            pre_failures.push(Failure {
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
            pre_failures.push(Failure {
                account_id: Some(u.account_id),
                account_name: None,
                token_name: t.clone(),
                http_status: Some(404),
                error: "not a sub account of this owner account (checked before any write)".into(),
            });
        }
    }

    let summary = super::summary_lines(&plan, &prepared.manifest, &prepared.api);
    if json {
        json_line(
            printer,
            serde_json::json!({
                "type": "plan",
                "manifest": prepared.manifest.path.display().to_string(),
                "endpoint": prepared.api.identity(),
                "create": plan.create.len(),
                "present": plan.present.len(),
                "remove_by_hand": plan.remove_by_hand.len(),
                "failed_before_start": pre_failures.len(),
            }),
        );
    } else {
        super::print_lines(printer, &summary);
    }

    // --fail-fast: a failure found before any write stops the run before it starts.
    if args.fail_fast && !pre_failures.is_empty() {
        let recorder = Recorder::start(store)?;
        let handle = recorder.handle();
        for f in &pre_failures {
            handle.failure(f.clone());
        }
        drop(handle);
        let (_, saved) = recorder.finish().await;
        printer.error(&format!(
            "stopped before sending anything (--fail-fast): {}",
            pre_failures[0].error
        ));
        if let Some(sim) = prepared.simulator {
            sim.shutdown().await;
        }
        saved?;
        return Ok(Exit::ItemsFailed);
    }

    if !plan.create.is_empty() && !args.yes && !confirm(plan.create.len()).await {
        printer.info("Nothing was sent.");
        return Ok(Exit::Usage);
    }

    // Start just under the limit the last run against this endpoint found.
    let endpoint = prepared.api.identity();
    let learned_before = store
        .results
        .learned_rate
        .as_ref()
        .filter(|l| l.endpoint == endpoint)
        .map(|l| l.per_second);
    let recorder = Recorder::start(store)?;
    let handle = recorder.handle();
    for (name, id) in &plan.resolved_names {
        handle.resolved_name(name.clone(), *id);
    }
    for f in &pre_failures {
        handle.failure(f.clone());
    }

    let stats = Arc::new(Stats::default());
    let pacer = Arc::new(Pacer::with_learned(exec.rate, true, learned_before));
    let learned_into = (pacer.clone(), handle.clone());
    let cancel = Cancel::default();
    let signals = tokio::spawn(watch_signals(cancel.clone(), stats.clone(), *printer));
    let mode = if args.no_progress || printer.quiet || plan.create.is_empty() {
        Mode::Off
    } else if printer.stderr_is_terminal() && !json {
        Mode::Bar
    } else {
        Mode::Lines
    };
    let progress = Progress::start(mode, stats.clone(), pacer.clone());
    let observer: Option<Arc<dyn Observer>> = if json {
        Some(Arc::new(JsonObserver { printer: *printer }))
    } else {
        None
    };
    let client = match &prepared.client {
        Some(c) => c.clone(),
        None => {
            return Err(CliError::Fatal {
                message: "internal error: no API client".into(),
            });
        }
    };
    let config = ExecConfig {
        concurrency: exec.concurrency as usize,
        max_attempts: exec.max_attempts,
        max_ambiguous: exec.max_ambiguous,
        fail_fast: args.fail_fast,
        backoff: Backoff::default(),
        drain_timeout: prepared.api.request_timeout + Duration::from_secs(5),
    };
    let present = plan.present.len();
    let report = execute(
        std::mem::take(&mut plan.create),
        client,
        handle,
        config,
        pacer,
        stats,
        observer,
        cancel,
    )
    .await;
    progress.finish();
    signals.abort();
    let (pacer, handle) = learned_into;
    let learned = pacer.learned_rate(learned_before);
    if learned != learned_before {
        handle.learned_rate(learned.map(|per_second| LearnedRate {
            per_second,
            endpoint: endpoint.clone(),
            at: now_rfc3339(),
        }));
    }
    drop(handle);
    let limit = pacer.snapshot().limit;
    let (store, saved_res) = recorder.finish().await;
    if let Some(sim) = prepared.simulator {
        sim.shutdown().await;
    }

    let exit = exit_code(&report, &pre_failures, &saved_res);
    let orphans = store
        .as_ref()
        .map_or(0, |s| s.results.possible_orphans.len());
    let (results_path, secrets_path) = store.as_ref().map_or_else(
        || (String::new(), String::new()),
        |s| {
            (
                s.paths.results.display().to_string(),
                s.paths.secrets.display().to_string(),
            )
        },
    );
    if json {
        json_line(
            printer,
            serde_json::json!({
                "type": "summary",
                "exit_code": exit as u8,
                "stop": stop_text(&report.stop),
                "created": report.created,
                "already_present": present,
                "failed": report.failures.len() + pre_failures.len(),
                "not_attempted": report.not_attempted,
                "possible_orphans": orphans,
                "attempts": report.attempts,
                "retries": report.retries,
                "rate_limited": report.rate_limited,
                "ambiguous": report.ambiguous,
                "elapsed_seconds": report.elapsed.as_secs_f64(),
                "final_rate_per_second": report.final_rate,
                "learned_limit_per_second": limit,
                "max_ambiguous": exec.max_ambiguous,
                "ambiguity_exhausted": report.ambiguity_exhausted,
                "ambiguity_breaker": matches!(report.stop, StopReason::AmbiguityBreaker(_)),
                "results_file": results_path,
                "secrets_file": secrets_path,
            }),
        );
    } else {
        print_summary(
            printer,
            &report,
            (limit, exec.max_ambiguous),
            present,
            &pre_failures,
            orphans,
            &results_path,
            &secrets_path,
        );
    }
    if let Err(e) = &saved_res {
        printer.error(&format!(
            "{e}\n  every secret received is in the journal {}; the next run recovers it",
            store
                .as_ref()
                .map_or(String::new(), |s| s.paths.journal.display().to_string())
        ));
    }
    Ok(exit)
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

#[allow(clippy::too_many_arguments)]
fn print_summary(
    printer: &Printer,
    report: &RunReport,
    (limit, max_ambiguous): (Option<f64>, u32),
    present: usize,
    pre_failures: &[Failure],
    orphans: usize,
    results: &str,
    secrets: &str,
) {
    let secs = report.elapsed.as_secs_f64();
    if report.attempts == 0 && report.failures.is_empty() && pre_failures.is_empty() {
        printer.info(&format!(
            "Nothing to create: {} of the manifest already recorded.",
            super::count(present, "token")
        ));
    } else {
        printer.info(&format!(
            "Created {} in {:.1}s ({:.1}/s; rate at the end {:.1}/s, {}); {} already present.",
            super::count(report.created as usize, "token"),
            secs,
            report.created as f64 / secs.max(0.001),
            report.final_rate,
            limit.map_or("no server limit met".into(), |l| format!(
                "server limit learned {l:.1}/s"
            )),
            present
        ));
    }
    match &report.stop {
        StopReason::Fatal(m) => printer.error(&format!("stopped: {m}")),
        StopReason::State(m) => printer.error(&format!("stopped: cannot write the state: {m}")),
        StopReason::FailFast => printer.info("Stopped at the first failure (--fail-fast)."),
        StopReason::Interrupted => printer
            .info("Interrupted: requests in flight were drained and everything received is saved."),
        StopReason::AmbiguityBreaker(m) => printer.error(&format!("stopped: {m}")),
        StopReason::Completed => {}
    }
    if report.ambiguity_exhausted > 0 {
        printer.warn(&format!(
            "{} not sent again after {max_ambiguous} ambiguous attempts (--max-ambiguous): each may have left a token only a person can delete",
            super::count(report.ambiguity_exhausted as usize, "token")
        ));
    }
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
            "Not attempted: {} (run apply again to continue)",
            report.not_attempted
        ));
    }
    if orphans > 0 {
        printer.warn(&format!(
            "{} listed: a request may have created a token that is not recorded. Check them in the Logz.io UI (Settings > Tools > Manage Tokens), then run `logzio-tokens orphans clear MANIFEST`.",
            super::count(orphans, "possible orphan")
        ));
    }
    printer.info(&format!(
        "Requests: {} sent, {} retries, {} answered 429, {} ambiguous.",
        report.attempts, report.retries, report.rate_limited, report.ambiguous
    ));
    if !results.is_empty() {
        printer.info(&format!("Results: {results}"));
        printer.info(&format!("Secrets: {secrets} (mode 0600)"));
    }
}

fn report_recovery(printer: &Printer, store: &Store) {
    let r = &store.recovery;
    if r.recovered_tokens > 0 || r.interrupted > 0 {
        printer.warn(&format!(
            "recovered an interrupted run from its journal: {} recorded, {} that were in flight listed as possible orphans{}",
            super::count(r.recovered_tokens, "received token"),
            super::count(r.interrupted, "request"),
            if r.truncated_tail {
                " (its last line was cut short and ignored)"
            } else {
                ""
            }
        ));
    }
}

async fn confirm(n: usize) -> bool {
    let question = format!(
        "Create {}? Tokens cannot be deleted through the API. Type 'yes' to continue: ",
        super::count(n, "token")
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let _ = write!(std::io::stderr(), "{question}");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && matches!(answer.trim(), "yes" | "y" | "YES" | "Yes")
    })
    .await
    .unwrap_or(false)
}

/// First Ctrl-C (or SIGTERM): stop sending, drain, save. Second Ctrl-C: exit at once; the
/// journal lets the next run recover everything received. Both signal streams are registered
/// before anything is printed, so no Ctrl-C is missed.
async fn watch_signals(cancel: Cancel, stats: Arc<Stats>, printer: Printer) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for Ctrl-C; it will stop the run without draining");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
    printer.info(&format!(
        "Stopping: no new requests; waiting for {} in flight (press Ctrl-C again to exit now; the journal keeps what was received)",
        Stats::get(&stats.in_flight)
    ));
    int.recv().await;
    std::process::exit(Exit::Interrupted as i32);
}

struct JsonObserver {
    printer: Printer,
}

/// An `item` or `ambiguous` line of `--output json`, written once per token: serialized
/// straight from borrowed fields (fields in the order the other lines print theirs).
#[derive(serde::Serialize)]
struct ItemLine<'a> {
    account_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Present (possibly null) on failed items only.
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<i64>,
    token_name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    v: u32,
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
                ItemLine {
                    attempts: Some(*attempts),
                    error,
                    http_status,
                    result: Some(result),
                    token_id,
                    ..ItemLine::of(key, "item")
                }
            }
            ItemEvent::Ambiguous { key, detail } => ItemLine {
                detail: Some(detail),
                ..ItemLine::of(key, "ambiguous")
            },
            ItemEvent::Retry { .. } => return,
        };
        if let Ok(text) = serde_json::to_string(&line) {
            self.printer.out(&text);
        }
    }
}

impl<'a> ItemLine<'a> {
    /// A line of `kind` about `key`, with no other field yet.
    fn of(key: &'a crate::state::TokenKey, kind: &'static str) -> Self {
        ItemLine {
            account_id: key.account_id,
            attempts: None,
            detail: None,
            error: None,
            http_status: None,
            result: None,
            token_id: None,
            token_name: &key.token_name,
            kind,
            v: 1,
        }
    }
}

/// Parses `bytes` as a saved plan if they are one.
fn parse_saved_plan(path: &Path, bytes: &[u8]) -> Result<Option<SavedPlan>, CliError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Ok(None);
    }
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    if value.get("kind").and_then(|k| k.as_str()) != Some(SAVED_PLAN_KIND) {
        return Ok(None);
    }
    let plan: SavedPlan = serde_json::from_value(value)
        .map_err(|e| CliError::usage(format!("plan file {} is malformed: {e}", path.display())))?;
    if plan.compute_checksum() != plan.checksum {
        return Err(CliError::usage(format!(
            "plan file {} was modified after it was written (checksum mismatch); make a new one with `plan --out`",
            path.display()
        )));
    }
    Ok(Some(plan))
}

fn check_saved_plan(
    saved: &SavedPlan,
    manifest: &Path,
    bytes: &[u8],
    store: &Store,
    endpoint: &str,
) -> Result<(), CliError> {
    let stale = |what: &str| {
        CliError::usage(format!(
            "stale plan: {what} changed since the plan was made (plan checksum {}); run `logzio-tokens plan --out` again and review it",
            saved.checksum
        ))
    };
    if sha256_hex(bytes) != saved.manifest_sha256 {
        return Err(stale(&format!("the manifest {}", manifest.display())));
    }
    if state_digest(&store.results) != saved.state_sha256 {
        return Err(stale(&format!(
            "the recorded results ({})",
            store.paths.results.display()
        )));
    }
    if saved.endpoint != endpoint {
        return Err(stale(&format!(
            "the endpoint (plan: {}, now: {endpoint})",
            saved.endpoint
        )));
    }
    Ok(())
}
