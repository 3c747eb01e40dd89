//! Commands over the recorded state: `orphans`, `import`, `export`.

use crate::bounded::{MAX_SECRET_BYTES, read_first_line};
use crate::state::StateFile;

use crate::cli::args::{
    ExportArgs, ExportFormat, ImportArgs, OrphansAction, OrphansArgs, OrphansTarget,
};
use crate::cli::config::StateSettings;
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count, has};
use crate::manifest::AccountSelector;
use crate::plan::AccountBook;
use crate::secret::Secret;
use crate::state::export;
use crate::state::{
    FileKind, Store, TokenKey, TokenRecord, TokenSource, now_rfc3339, write_atomic,
    write_atomic_new,
};

/// `orphans list|clear`.
pub fn orphans(args: &OrphansArgs, printer: &Printer) -> Result<Exit, CliError> {
    let default_target;
    let (target, clear) = match &args.action {
        Some(OrphansAction::List(t)) => (t, false),
        Some(OrphansAction::Clear(t)) => (t, true),
        None => {
            let Some(manifest) = args.list.manifest.clone() else {
                return Err(CliError::usage(
                    "usage: logzio-tokens orphans [list|clear] MANIFEST",
                ));
            };
            default_target = OrphansTarget {
                manifest,
                state: args.list.state.clone(),
            };
            (&default_target, false)
        }
    };
    let settings = StateSettings::resolve(&target.manifest, &target.state)?;
    let mut store = Store::open(settings.paths, None)?;
    // Accounts are known by id, and by name where a run resolved one.
    let book = AccountBook::new(None, &store.results.resolved_names);
    let (chosen, kept): (Vec<_>, Vec<_>) = store
        .results
        .possible_orphans
        .iter()
        .cloned()
        .partition(|o| {
            settings
                .filter
                .admits(Some(o.account_id), book.name(o.account_id))
        });
    for o in &chosen {
        printer.out(&format!(
            "{}/{}: {}, last at {}: {}",
            o.account_id,
            o.token_name,
            count(o.ambiguous_attempts as usize, "ambiguous request"),
            o.at,
            o.detail
        ));
    }
    match clear {
        false => {
            printer.info(&format!(
                "{} in {}. Check each in the Logz.io UI (log into the sub account: Settings > Tools > Manage Tokens > API tokens); a token not recorded in the results is an orphan to delete there.",
                count(chosen.len(), "possible orphan"),
                store.paths.results.display()
            ));
        }
        true => {
            store.results.possible_orphans = kept;
            store.save()?;
            printer.info(&format!(
                "Cleared {} (marked as checked) in {}.",
                count(chosen.len(), "possible orphan"),
                store.paths.results.display()
            ));
        }
    }
    Ok(Exit::Success)
}

/// `import`: records a token created outside the tool.
pub fn import(args: &ImportArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = StateSettings::resolve(&args.manifest, &args.state)?;
    let recipients = crate::cli::config::recipients(&settings.manifest, &args.seal)?;
    let mut store = Store::open(settings.paths, None)?;
    let book = AccountBook::new(None, &store.results.resolved_names);
    let wanted = settings.manifest.accounts.iter().any(|a| {
        book.id(&a.selector) == Ok(args.account_id)
            && a.tokens.iter().any(|t| t == &args.token_name)
    });
    if !wanted {
        return Err(CliError::usage(format!(
            "the manifest {} does not ask for token {:?} in account {}; add it to the manifest first (accounts given by name must have been resolved by a plan or apply)",
            args.manifest.display(),
            args.token_name,
            args.account_id
        )));
    }
    if args.token_id <= 0 {
        return Err(CliError::usage("--token-id must be a positive number"));
    }
    let key = TokenKey {
        account_id: args.account_id,
        token_name: args.token_name.clone(),
    };
    if let Some(existing) = store.results.get(&key)
        && existing.token_id != args.token_id
    {
        return Err(CliError::usage(format!(
            "{key} is already recorded with token id {}; remove that record first if it is wrong",
            existing.token_id
        )));
    }
    if let Some(other) = store.results.find_token_id(args.token_id)
        && other != key
    {
        return Err(CliError::usage(format!(
            "token id {} is already recorded for {other}",
            args.token_id
        )));
    }
    let secret = read_secret(args)?;
    store.results.insert(
        &key,
        TokenRecord {
            token_id: args.token_id,
            created_at: now_rfc3339(),
            source: Some(TokenSource::Imported),
            ..TokenRecord::default()
        },
    );
    let sealed = match (secret, recipients) {
        (Some(s), Some(r)) => {
            // Sealed: the secret goes to a new sealed file only, never in plaintext to disk.
            let mut doc = crate::state::SecretsFile::default();
            doc.insert(&key, args.token_id, s);
            let armored = r.seal_secrets(&doc).map_err(|e| CliError::Fatal {
                message: e.to_string(),
            })?;
            let name = crate::state::sealed::file_name(
                time::OffsetDateTime::now_utc(),
                &crate::state::sealed::new_run_id(),
            );
            Some(crate::state::sealed::write_new(
                &store.paths.sealed,
                &name,
                &armored,
            )?)
        }
        (Some(s), None) => {
            store.secrets.insert(&key, args.token_id, s);
            None
        }
        (None, _) => None,
    };
    store.save()?;
    if let Some(path) = sealed {
        printer.info(&format!("Sealed the secret in {}.", path.display()));
    }
    printer.info(&format!(
        "Recorded {key} as token {} (imported); apply will not create it again.",
        args.token_id
    ));
    Ok(Exit::Success)
}

fn read_secret(args: &ImportArgs) -> Result<Option<Secret>, CliError> {
    // Regular files only and a size cap, for the file and for stdin alike.
    let line = if let Some(path) = &args.secret_file {
        crate::bounded::open_regular(path, crate::bounded::Symlinks::Follow)
            .and_then(|f| read_first_line(std::io::BufReader::new(f), MAX_SECRET_BYTES))
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?
            .trim()
            .to_owned()
    } else if args.secret_stdin {
        read_first_line(std::io::stdin().lock(), MAX_SECRET_BYTES)
            .map_err(|e| CliError::usage(format!("cannot read the secret from stdin: {e}")))?
            .trim()
            .to_owned()
    } else {
        return Ok(None);
    };
    if line.is_empty() {
        return Err(CliError::usage("the secret is empty"));
    }
    Ok(Some(Secret::new(line)))
}

/// `export`: the secrets of the manifest's tokens, to a 0600 file or (explicitly) stdout.
pub fn export(args: &ExportArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = StateSettings::resolve(&args.manifest, &args.state)?;
    let store = Store::read(settings.paths, None)?;
    let book = AccountBook::new(None, &store.results.resolved_names);
    let identities = match &args.identity {
        Some(path) => Some(
            crate::state::Identities::load(path).map_err(|e| CliError::Fatal {
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    let secrets = store
        .all_secrets(identities.as_ref())
        .map_err(|e| CliError::Fatal {
            message: e.to_string(),
        })?;
    let mut rows: Vec<export::Row<'_>> = Vec::new();
    let mut missing = 0usize;
    for a in &settings.manifest.accounts {
        let name = match &a.selector {
            AccountSelector::Id(_) => None,
            AccountSelector::Name(n) => Some(n.clone()),
        };
        let Ok(id) = book.id(&a.selector) else {
            missing += a.tokens.len();
            continue;
        };
        for t in &a.tokens {
            let key = TokenKey {
                account_id: id,
                token_name: t.clone(),
            };
            match secrets.get(&key) {
                Some(rec) => rows.push(export::Row {
                    key,
                    account_name: name.clone(),
                    token_id: rec.token_id,
                    token: &rec.token,
                }),
                None => missing += 1,
            }
        }
    }
    let format = match args.format {
        ExportFormat::Json => export::Format::Json,
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Dotenv => export::Format::Dotenv,
    };
    let text = export::render(format, &rows).map_err(|e| CliError::Fatal {
        message: e.to_string(),
    })?;
    if args.stdout {
        printer
            .out_bytes(text.as_bytes())
            .map_err(|e| CliError::Fatal {
                message: format!("cannot write the secrets to stdout: {e}"),
            })?;
    } else if let Some(out) = &args.out {
        if args.force {
            write_atomic(out, text.as_bytes(), FileKind::Secret, StateFile::Export)?;
        } else {
            write_atomic_new(out, text.as_bytes(), FileKind::Secret, StateFile::Export)?;
        }
        printer.info(&format!(
            "Wrote {} to {} (mode 0600).",
            count(rows.len(), "secret"),
            out.display()
        ));
    }
    if missing > 0 {
        printer.warn(&format!(
            "{} of the manifest {} no recorded secret (not created yet, or created outside the tool)",
            count(missing, "token"),
            has(missing)
        ));
    }
    Ok(Exit::Success)
}
