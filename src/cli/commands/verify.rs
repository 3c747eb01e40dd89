//! `verify`: probe every recorded token of the manifest with its own secret, record what each
//! answer means in the results file (under the state lock), and list every token that no
//! longer works. [`run`] is the recipe; each step is a function below it.
//!
//! The owner token is not needed (nor sent): each probe carries the probed token. Replaced
//! tokens still listed for removal by hand are probed too, and leave that list once they
//! answer 403 (an admin deleted them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::api::{ApiClient, ClientConfig};
use crate::cli::args::VerifyArgs;
use crate::cli::config::VerifySettings;
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count};
use crate::cli::progress::{self, Mode, Progress};
use crate::cli::report::{Message, V1, VerifiedLine, VerifySummaryLine};
use crate::execution::{Backoff, Stats};
use crate::key::TokenKey;
use crate::plan::{self as planner};
use crate::secret::Secret;
use crate::state::{SecretsFile, Store, TokenStatus};
use crate::verify::{OnVerdict, Probe, ProbeConfig, ProbeReport, Stop, Verdict, probe_all};

/// A recorded token with no known secret.
#[derive(Debug)]
struct Unverifiable {
    key: TokenKey,
    token_id: i64,
    superseded: bool,
}

/// Runs `verify`.
pub async fn run(args: &VerifyArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = VerifySettings::resolve(args)?;
    let run = &settings.run;
    // The lock is held from here to the save: verify's statuses never race an apply.
    let mut store = Store::open(run.paths.clone(), Some(&run.api.identity()))?;
    let secrets = secrets_of(&settings, &store, printer)?;
    let (probes, unverifiable) = probes_of(&settings, &store, &secrets);
    // The log shipping tokens of created sub accounts: compared with the accounts' own.
    let (shipping_lines, shipping_problems) =
        super::onboard::verify_shipping(&store, &secrets, &run.api).await;
    drop(secrets);
    if let Some(warning) = foreign_host_warning(&settings, probes.len()) {
        printer.warn(&warning);
    }

    let client = probe_client(&settings, run.exec.concurrency as usize)?;
    // Every secret about to be sent is scrubbed from every answer, not only from the answers
    // after its own probe: a server may echo one token's secret in another's answer.
    for p in &probes {
        client.scrub_also(&p.secret);
    }
    let stats = Arc::new(Stats::default());
    // The probes go through the same control as apply's creates, from what the last run
    // against this endpoint learned (one owner token, one limit), and hand on what they learn.
    let limit_before = super::LimitBefore::of(store.results(), run.api.identity());
    let pacer = limit_before.pacer(&run.exec);
    let control = pacer.clone();
    let stop = Stop::default();
    let signals = tokio::spawn(watch_signals(stop.clone(), stats.clone(), *printer));
    let mode = if settings.no_progress || printer.quiet || probes.is_empty() {
        Mode::Off
    } else if printer.stderr_is_terminal() && !settings.json {
        Mode::Bar
    } else {
        Mode::Lines
    };
    let progress = Progress::start_labelled(
        mode,
        probes.len() as u64,
        stats.clone(),
        pacer.clone(),
        ("valid", "not valid"),
    );
    if settings.json {
        for u in &unverifiable {
            Message::Unverifiable(VerifiedLine {
                account_id: u.key.account_id,
                attempts: None,
                detail: None,
                http_status: None,
                status: None,
                superseded: u.superseded,
                token_id: u.token_id,
                token_name: &u.key.token_name,
                v: V1,
            })
            .emit(printer);
        }
    }
    let started = Instant::now();
    let report = probe_all(
        probes,
        ProbeConfig {
            concurrency: run.exec.concurrency as usize,
            max_attempts: run.exec.max_attempts,
            backoff: Backoff::READS,
        },
        Arc::new(client),
        pacer,
        stats.clone(),
        settings.json.then(|| json_lines(*printer)),
        stop,
    )
    .await;
    progress.finish();
    signals.abort();

    let seen: HashMap<i64, TokenStatus> = report
        .verdicts
        .iter()
        .map(|v| (v.token_id, v.status))
        .collect();
    store
        .ledger_mut()
        .set_statuses(&seen, &crate::timestamp::now_rfc3339());
    if let Some(learned) = limit_before.learned(&control, &crate::timestamp::now_rfc3339()) {
        store.ledger_mut().set_learned_rate(learned);
    }
    let snapshot = control.snapshot();
    let limit = progress::server_limit(snapshot.limit, snapshot.in_flight_limit);
    let saved = store.save();
    let summary = Summary::of(&report, saved.is_err());
    if settings.json {
        summary.emit(
            printer,
            &report,
            (started, Stats::get(&stats.rate_limited)),
            unverifiable.len(),
            &store,
            limit,
        );
    } else {
        summary.print(
            printer,
            &report,
            (&unverifiable, &store),
            started,
            limit.as_deref(),
        );
    }
    if !settings.json {
        super::print_lines(printer, &shipping_lines);
    }
    saved?;
    Ok(match summary.exit {
        Exit::Success if shipping_problems > 0 => Exit::ItemsFailed,
        exit => exit,
    })
}

/// Every secret known for the manifest: the plaintext secrets file and, with `--identity`,
/// every sealed file.
fn secrets_of(
    settings: &VerifySettings,
    store: &Store,
    printer: &Printer,
) -> Result<SecretsFile, CliError> {
    let identities = super::identities(settings.identity.as_deref())?;
    let (secrets, skipped) =
        store
            .all_secrets_named(identities.as_ref())
            .map_err(|e| CliError::Fatal {
                message: format!(
                    "{e}; pass --identity KEYFILE (or set LOGZIO_TOKENS_IDENTITY_FILE)"
                ),
            })?;
    warn_skipped(printer, &skipped);
    Ok(secrets)
}

/// Names each sealed file found but not used, and why (invariant 4).
pub(crate) fn warn_skipped(printer: &Printer, skipped: &[(std::path::PathBuf, String)]) {
    for (path, why) in skipped {
        printer.warn(&format!("sealed file {}: {why}", path.display()));
    }
}

/// The probes: every recorded token of the manifest (within `--account` filters) and every
/// replaced token still listed for removal by hand, each with its secret; those without one
/// are unverifiable.
fn probes_of(
    settings: &VerifySettings,
    store: &Store,
    secrets: &SecretsFile,
) -> (Vec<Probe>, Vec<Unverifiable>) {
    let run = &settings.run;
    let mut by_id: HashMap<i64, &Secret> = HashMap::new();
    for tokens in secrets.accounts.values() {
        for rec in tokens.values() {
            by_id.insert(rec.token_id, &rec.token);
        }
    }
    for s in &secrets.superseded {
        by_id.entry(s.token_id).or_insert(&s.token);
    }
    let plan = planner::plan(&run.manifest, store.results(), None, &run.filter);
    // Revoked ones too: a token seen revoked once is probed again (it is recorded as it is).
    let recorded: Vec<&planner::Recorded> = plan.present.iter().chain(&plan.revoked).collect();
    // Replaced tokens of the same (account, name) as a token of the manifest being verified.
    let names: std::collections::HashSet<(u32, &str)> = recorded
        .iter()
        .map(|p| (p.key.account_id, p.key.token_name.as_str()))
        .collect();
    let replaced = store
        .results()
        .superseded_to_remove()
        .filter(|s| names.contains(&(s.account_id, s.token_name.as_str())));
    let wanted = recorded
        .iter()
        .map(|p| (p.key.clone(), p.token_id, false))
        .chain(replaced.map(|s| {
            let key = TokenKey {
                account_id: s.account_id,
                token_name: s.token_name.clone(),
            };
            (key, s.token_id, true)
        }));
    let (mut probes, mut unverifiable) = (Vec::new(), Vec::new());
    for (key, token_id, superseded) in wanted {
        match by_id.get(&token_id) {
            Some(secret) => probes.push(Probe {
                key,
                token_id,
                superseded,
                secret: (*secret).clone(),
            }),
            None => unverifiable.push(Unverifiable {
                key,
                token_id,
                superseded,
            }),
        }
    }
    (probes, unverifiable)
}

/// apply's warning for an API URL whose host is not a Logz.io API host (a proxy, a typo, a
/// look-alike), said for what verify sends there: every probed token's own secret. Like
/// apply's, a warning and not a refusal: a proxy in front of the API is legitimate.
fn foreign_host_warning(settings: &VerifySettings, probes: usize) -> Option<String> {
    let api = &settings.run.api;
    if api.simulate || probes == 0 {
        return None;
    }
    let crate::api::Endpoint::Url(url) = &api.endpoint else {
        return None;
    };
    crate::api::endpoint::foreign_host(url).map(|host| {
        format!(
            "the API URL's host {host} is not a Logz.io API host (api*.logz.io): the secret of each of the {} verified is sent to it; check that it is your proxy",
            count(probes, "token")
        )
    })
}

/// A client for the probes only: it never sends the owner token (an empty one stands in for
/// it, so that verify needs none).
fn probe_client(settings: &VerifySettings, pool_size: usize) -> Result<ApiClient, CliError> {
    let api = &settings.run.api;
    Ok(ApiClient::new(ClientConfig {
        endpoint: api.endpoint.clone(),
        token: Secret::new(""),
        request_timeout: api.request_timeout,
        connect_timeout: api.request_timeout.min(std::time::Duration::from_secs(10)),
        pool_size,
    })?)
}

/// `--output json`: a `verified` line per token as its verdict is final.
fn json_lines(printer: Printer) -> OnVerdict {
    Arc::new(move |v: &Verdict| {
        Message::Verified(VerifiedLine {
            account_id: v.key.account_id,
            attempts: Some(v.attempts),
            detail: v.detail.as_deref(),
            http_status: v.http_status,
            status: Some(v.status.as_str()),
            superseded: v.superseded,
            token_id: v.token_id,
            token_name: &v.key.token_name,
            v: V1,
        })
        .emit(&printer);
    })
}

/// Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a cancelled CI job): stop sending; probes in
/// flight finish; what was seen is recorded. A second Ctrl-C (or SIGTERM or SIGHUP): stop
/// waiting for the probes in flight too (they only read, so nothing is lost) and record what
/// was seen. All three streams are registered before the first probe is sent.
async fn watch_signals(stop: Stop, stats: Arc<Stats>, printer: Printer) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!(
            "cannot listen for Ctrl-C; it will stop verify without recording what was probed"
        );
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    stop.stop.cancel();
    progress::leave_bar();
    printer.info(&format!(
        "Stopping: no new probes; waiting for {} in flight (press Ctrl-C again to stop waiting; what was probed is recorded either way)",
        Stats::get(&stats.in_flight)
    ));
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    stop.abandon.cancel();
}

/// The counts of current tokens by status, and the exit code.
struct Summary {
    valid: usize,
    revoked: usize,
    wrong_account: usize,
    unknown: usize,
    exit: Exit,
}

impl Summary {
    fn of(report: &ProbeReport, save_failed: bool) -> Summary {
        let current = |status| {
            report
                .verdicts
                .iter()
                .filter(|v| !v.superseded && v.status == status)
                .count()
        };
        let (valid, revoked, wrong_account, unknown) = (
            current(TokenStatus::Valid),
            current(TokenStatus::Revoked),
            current(TokenStatus::WrongAccount),
            current(TokenStatus::Unknown),
        );
        let exit = if report.fatal.is_some() || save_failed {
            Exit::Fatal
        } else if report.interrupted {
            Exit::Interrupted
        } else if revoked + wrong_account + unknown > 0 || report.not_checked > 0 {
            Exit::ItemsFailed
        } else {
            Exit::Success
        };
        Summary {
            valid,
            revoked,
            wrong_account,
            unknown,
            exit,
        }
    }

    fn stop(report: &ProbeReport) -> String {
        match (&report.fatal, report.interrupted) {
            (Some(m), _) => format!("fatal: {m}"),
            (None, true) => "interrupted".into(),
            (None, false) => "completed".into(),
        }
    }

    fn emit(
        &self,
        printer: &Printer,
        report: &ProbeReport,
        (started, rate_limited): (Instant, u64),
        unverifiable: usize,
        store: &Store,
        server_limit: Option<String>,
    ) {
        Message::VerifySummary(VerifySummaryLine {
            checked: report.verdicts.len(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            exit_code: self.exit.code(),
            not_checked: report.not_checked,
            rate_limited,
            remove_by_hand: store.results().superseded_to_remove().count(),
            results_file: &store.paths().results.display().to_string(),
            revoked: self.revoked,
            server_limit,
            stop: Summary::stop(report),
            unknown: self.unknown,
            unverifiable,
            valid: self.valid,
            wrong_account: self.wrong_account,
            v: V1,
        })
        .emit(printer);
    }

    /// The summary for people, on stderr: counts, then every current token that is not valid,
    /// by account, then the replaced tokens still to remove by hand.
    fn print(
        &self,
        printer: &Printer,
        report: &ProbeReport,
        (unverifiable, store): (&[Unverifiable], &Store),
        started: Instant,
        limit: Option<&str>,
    ) {
        printer.info(&format!(
            "Verified {} in {:.1}s ({}): {} valid, {} revoked, {} for another account, {} unknown.",
            count(
                report.verdicts.iter().filter(|v| !v.superseded).count(),
                "token"
            ),
            started.elapsed().as_secs_f64(),
            limit.map_or("no server limit met".into(), |l| format!(
                "server limit: {l}"
            )),
            self.valid,
            self.revoked,
            self.wrong_account,
            self.unknown
        ));
        if let Some(m) = &report.fatal {
            printer.error(&format!("stopped: {m}"));
        } else if report.abandoned > 0 {
            printer.info(&format!(
                "Interrupted twice: stopped waiting for {} in flight (a probe only reads: nothing is lost); what was probed is recorded.",
                count(report.abandoned, "probe")
            ));
        } else if report.interrupted {
            printer.info("Interrupted: what was probed is recorded.");
        }
        if report.not_checked > 0 {
            printer.info(&format!(
                "Not checked: {} (the run stopped early; run verify again)",
                report.not_checked
            ));
        }
        let mut by_account: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut bad: Vec<&Verdict> = report
            .verdicts
            .iter()
            .filter(|v| !v.superseded && v.status != TokenStatus::Valid)
            .collect();
        bad.sort_by(|a, b| a.key.cmp(&b.key));
        for v in bad {
            let what = match &v.detail {
                Some(d) => format!("{}: {d}", v.status.as_str()),
                None => v.status.as_str().to_owned(),
            };
            by_account
                .entry(v.key.account_id)
                .or_default()
                .push(format!("{} (id {}, {what})", v.key.token_name, v.token_id));
        }
        if !by_account.is_empty() {
            printer.info("Not valid:");
            let lines = super::summarised(
                by_account
                    .iter()
                    .map(|(account, tokens)| format!("  account {account}: {}", tokens.join(", ")))
                    .collect(),
                "`verify --json` lists every one",
            );
            for line in lines {
                printer.info(&line);
            }
            if self.revoked > 0 {
                printer.info(
                    "Revoked tokens are not recreated unasked (an admin may have deleted one on purpose): `apply --recreate-revoked` creates new ones under the same names.",
                );
            }
        }
        // Each list: its count first, then one token a line, cut to the first few and where
        // every one is (a state of thousands must not print thousands of lines).
        if !unverifiable.is_empty() {
            printer.warn(&format!(
                "{} without a known secret, not verified:",
                count(unverifiable.len(), "token")
            ));
            let lines = super::summarised(
                unverifiable
                    .iter()
                    .map(|u| {
                        format!(
                            "  {}/{} (id {}{})",
                            u.key.account_id,
                            u.key.token_name,
                            u.token_id,
                            if u.superseded { ", replaced" } else { "" }
                        )
                    })
                    .collect(),
                "`verify --json` lists every one",
            );
            for line in lines {
                printer.info(&line);
            }
        }
        let to_remove: Vec<String> = store
            .results()
            .superseded_to_remove()
            .map(|s| format!("  {}/{} (id {})", s.account_id, s.token_name, s.token_id))
            .collect();
        if !to_remove.is_empty() {
            printer.info(&format!(
                "{} replaced but still working: remove by hand in the Logz.io UI (Settings > Tools > Manage Tokens):",
                count(to_remove.len(), "token")
            ));
            let results = store.paths().results.display().to_string();
            let lines = super::summarised(
                to_remove,
                &format!(
                    "every one is in the `superseded` list of {}",
                    crate::cli::output::shell_quote(&results)
                ),
            );
            for line in lines {
                printer.info(&line);
            }
        }
        printer.info(&format!("Results: {}", store.paths().results.display()));
    }
}
