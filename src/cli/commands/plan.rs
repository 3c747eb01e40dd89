//! `plan`: what `apply` would do, offline or checked against the live account list.

use super::Connection;
use crate::cli::args::PlanArgs;
use crate::cli::config::PlanSettings;
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count};
use crate::cli::report::{Execution, Message, PlanDocument, PlanSummary, V1};
use crate::fs::{FileKind, write_atomic};
use crate::plan::{Plan, SavedPlan};
use crate::state::Store;

/// Runs `plan`.
pub async fn run(args: &PlanArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = PlanSettings::resolve(args)?;
    let run = &settings.run;
    if let Some(warning) = run.api.foreign_host_warning() {
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
    let mut plan = conn.plan(run, &store);
    // What apply would replace by the manifest's settings (its flags are apply's own).
    let replaced = super::add_replacements(
        &mut plan,
        &run.manifest,
        store.results(),
        run.manifest.settings.recreate_revoked == Some(true),
        None,
    );
    if settings.json {
        show_json(printer, &settings, &plan);
    } else {
        show_text(printer, &settings, &plan);
    }
    if let Some(out) = &settings.out {
        if replaced > 0 {
            printer.warn(&format!(
                "{} to replace (revoked or due for rotation) cannot be carried by a plan file: `apply PLAN_FILE` creates only tokens not recorded yet; run `apply MANIFEST` for the replacements",
                count(replaced, "token")
            ));
        }
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

/// `--out`: the plan file a reviewer approves and `apply PLAN_FILE` checks.
fn save(
    printer: &Printer,
    settings: &PlanSettings,
    store: &Store,
    plan: &Plan,
    out: &std::path::Path,
) -> Result<(), CliError> {
    let run = &settings.run;
    let saved = SavedPlan::new(
        run.manifest_path.clone(),
        &run.manifest_bytes,
        store.results(),
        run.api.identity(),
        plan.create.clone(),
    );
    let mut text = serde_json::to_vec_pretty(&saved).unwrap_or_default();
    text.push(b'\n');
    write_atomic(out, &text, FileKind::Public, "plan")?;
    printer.info(&format!(
        "Saved the plan to {} (checksum {}); apply it with `logzio-tokens apply {}`",
        out.display(),
        saved.checksum,
        out.display()
    ));
    Ok(())
}
