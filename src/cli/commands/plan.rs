//! `plan`: what `apply` would do, offline or checked against the live account list.

use super::Connection;
use crate::cli::args::PlanArgs;
use crate::cli::config::{PlanSettings, command_line, quote_path};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count};
use crate::cli::report::{Execution, Message, PlanDocument, PlanSummary, V1};
use crate::fs::{FileKind, write_atomic};
use crate::plan::{Decision, Plan, SavedPlan};
use crate::state::Store;

/// Runs `plan`.
pub async fn run(args: &PlanArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = PlanSettings::resolve(args)?;
    let run = &settings.run;
    for warning in run.api.startup_warnings() {
        printer.warn(&warning);
    }
    let conn = Connection::open(run, 4).await?;
    let store = Store::read(run.paths.clone(), Some(&run.api.identity()))?;
    if let Some(gap) = &store.recovery().gap {
        printer.warn(&gap.describe(&store.paths().journal));
    }
    if store.recovery().recovered_tokens > 0 || store.recovery().interrupted > 0 {
        printer.warn(&format!(
            "a journal from an interrupted run holds {} and {} in flight; the next apply records them",
            count(store.recovery().recovered_tokens, "received token"),
            count(store.recovery().interrupted, "request")
        ));
    }
    let plan = conn.plan(
        run,
        &store,
        settings.recreate_revoked,
        settings.rotate_older_than,
    )?;
    if settings.json {
        show_json(printer, &settings, &plan);
    } else {
        show_text(printer, &settings, &plan);
    }
    if let Some(out) = &settings.out {
        save(printer, &settings, &store, &plan, out)?;
    }
    conn.close().await;
    Ok(if settings.detailed_exitcode {
        if plan.has_changes() {
            Exit::ChangesPresent
        } else {
            Exit::Success
        }
    } else if plan.has_blockers() {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}

fn show_json(printer: &Printer, settings: &PlanSettings, plan: &Plan) {
    let run = &settings.run;
    Message::Plan(PlanDocument {
        plan,
        manifest: run.manifest.path.display().to_string(),
        endpoint: run.api.identity(),
        endpoint_source: run.api.source.key(),
        changes: plan.changes(),
        execution: Execution {
            concurrency: run.exec.concurrency,
            rate_per_second: run.exec.rate,
            max_attempts: run.exec.max_attempts,
            max_ambiguous: run.exec.max_ambiguous,
        },
        summary: PlanSummary::of(plan),
        v: V1,
    })
    .emit(printer);
}

fn show_text(printer: &Printer, settings: &PlanSettings, plan: &Plan) {
    let run = &settings.run;
    let mut lines = super::summary_lines(plan, &run.manifest, &run.api);
    lines.push(match &run.recipients {
        Some(r) => format!(
            "  secrets would be sealed to {} in {}",
            count(r.len(), "recipient"),
            run.paths.sealed.display()
        ),
        None => format!(
            "  secrets would be written in plaintext to {} (0600)",
            run.paths.secrets.display()
        ),
    });
    lines.push(format!(
        "  apply would send at most {} at once, at most {}/s (adapting below that), {} per token, \
         of which at most {} ambiguous (each may leave a token to delete by hand)",
        count(run.exec.concurrency as usize, "request"),
        run.exec.rate,
        count(run.exec.max_attempts as usize, "attempt"),
        run.exec.max_ambiguous
    ));
    if settings.detail {
        lines.extend(super::detail_lines(plan));
    }
    for l in lines {
        printer.out(&l);
    }
}

/// `--out`: the plan file a reviewer approves and `apply PLAN_FILE` applies as it is.
fn save(
    printer: &Printer,
    settings: &PlanSettings,
    store: &Store,
    plan: &Plan,
    out: &std::path::Path,
) -> Result<(), CliError> {
    let run = &settings.run;
    let args = &run.args;
    let saved = SavedPlan::new(
        Decision {
            manifest: run.manifest_path.clone(),
            endpoint: run.api.identity(),
            results: store.paths().results.clone(),
            secrets: store.paths().secrets.clone(),
            sealed_dir: store.paths().sealed.clone(),
            recipients: run.recipient_keys.clone(),
            recipient_args: args.seal.recipients.clone(),
            recipients_file: args.seal.recipients_file.clone(),
            accounts: run
                .filter
                .include
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            exclude_accounts: run
                .filter
                .exclude
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            recreate_revoked: settings.recreate_revoked,
            rotate_older_than_seconds: settings.rotate_older_than.map(|d| d.as_secs()),
            changes: plan.changes(),
        },
        &run.manifest_bytes,
        store.results(),
    );
    let mut text = serde_json::to_vec_pretty(&saved).unwrap_or_default();
    text.push(b'\n');
    write_atomic(out, &text, FileKind::Public, "plan")?;
    // The plan carries every choice; only the owner token's file is not part of it.
    let mut flags = Vec::new();
    if let Some(f) = &args.api.api_token_file {
        flags.push(format!("--api-token-file {}", quote_path(f)));
    }
    printer.info(&format!(
        "Saved the plan to {} (checksum {}). It holds the endpoint, the files, the recipients and every token; apply exactly it with:\n  {}",
        out.display(),
        saved.checksum,
        command_line("apply", out, &flags)
    ));
    Ok(())
}
