//! `plan`: what `apply` would do, offline or checked against the live account list.

use crate::cli::args::{OutputFormat, PlanArgs};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, json_line};
use crate::plan::SavedPlan;
use crate::state::{FileKind, Store, write_atomic};

/// Runs `plan`.
pub async fn run(args: &PlanArgs, printer: &Printer) -> Result<Exit, CliError> {
    let bytes = crate::manifest::read(&args.manifest)?;
    let manifest = super::load_manifest(&args.manifest, &bytes)?;
    // Checked here as apply would, so a plan never passes options that apply then refuses.
    let exec = crate::cli::config::resolve_exec(
        &manifest,
        args.exec.concurrency,
        args.exec.rate,
        args.exec.max_attempts,
        args.exec.max_ambiguous,
    )?;
    let api = crate::cli::config::resolve_api(&args.api, &manifest)?;
    let prepared = super::prepare(&args.manifest, manifest, api, &args.state, 4).await?;
    let store = Store::read(prepared.paths.clone(), Some(&prepared.api.identity()))?;
    if store.recovery.recovered_tokens > 0 || store.recovery.interrupted > 0 {
        printer.warn(&format!(
            "a journal from an interrupted run holds {} and {} in flight; the next apply records them",
            super::count(store.recovery.recovered_tokens, "received token"),
            super::count(store.recovery.interrupted, "request")
        ));
    }
    let filter = crate::cli::config::filter(&args.state);
    let plan = prepared.plan(&store, &filter);

    if args.json || args.output == OutputFormat::Json {
        let mut v = serde_json::to_value(&plan).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "plan".into());
            o.insert(
                "manifest".into(),
                prepared.manifest.path.display().to_string().into(),
            );
            o.insert("endpoint".into(), prepared.api.identity().into());
            o.insert(
                "execution".into(),
                serde_json::json!({
                    "concurrency": exec.concurrency,
                    "rate_per_second": exec.rate,
                    "max_attempts": exec.max_attempts,
                    "max_ambiguous": exec.max_ambiguous,
                }),
            );
            o.insert(
                "summary".into(),
                serde_json::json!({
                    "create": plan.create.len(),
                    "present": plan.present.len(),
                    "remove_by_hand": plan.remove_by_hand.len(),
                    "unresolved": plan.unresolved.len(),
                    "unknown_accounts": plan.unknown_accounts.len(),
                    "possible_orphans": plan.possible_orphans,
                }),
            );
        }
        json_line(printer, v);
    } else {
        let mut lines = super::summary_lines(&plan, &prepared.manifest, &prepared.api);
        lines.push(format!(
            "  apply would send at most {} requests at once, at most {}/s (adapting below that), {} attempts per token, \
             of which at most {} ambiguous (each may leave a token to delete by hand)",
            exec.concurrency, exec.rate, exec.max_attempts, exec.max_ambiguous
        ));
        if args.detail {
            lines.extend(super::detail_lines(&plan));
        }
        for l in lines {
            printer.out(&l);
        }
    }

    if let Some(out) = &args.out {
        let saved = SavedPlan::new(
            args.manifest.clone(),
            &bytes,
            &store.results,
            prepared.api.identity(),
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
    }

    if let Some(sim) = prepared.simulator {
        sim.shutdown().await;
    }
    Ok(if args.detailed_exitcode {
        if plan.has_changes() {
            Exit::Usage // 2 = changes present, in Terraform's convention
        } else {
            Exit::Success
        }
    } else if plan.has_blockers() {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}
