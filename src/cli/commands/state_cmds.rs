//! Commands over the recorded state: `orphans`, `import`, `export`.

use crate::bounded::{MAX_SECRET_BYTES, read_first_line};

use crate::cli::args::{
    ExportArgs, ExportFormat, ImportArgs, OrphansAction, OrphansArgs, OrphansTarget,
};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::Printer;
use crate::manifest::{self, AccountSelector};
use crate::secret::Secret;
use crate::state::export;
use crate::state::{
    FileKind, Store, TokenKey, TokenRecord, now_rfc3339, write_atomic, write_atomic_new,
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
    manifest::load(&target.manifest)?;
    let paths = crate::cli::config::state_paths(&target.manifest, &target.state, false);
    let filter = crate::cli::config::filter(&target.state);
    let mut store = Store::open(paths, None)?;
    // Accounts are known by id, and by name where a run resolved one.
    let names: std::collections::HashMap<u32, &str> = store
        .results
        .resolved_names
        .iter()
        .map(|(n, id)| (*id, n.as_str()))
        .collect();
    let admits = |id: u32| filter.admits(Some(id), names.get(&id).copied());
    let (chosen, kept): (Vec<_>, Vec<_>) = store
        .results
        .possible_orphans
        .iter()
        .cloned()
        .partition(|o| admits(o.account_id));
    for o in &chosen {
        printer.out(&format!(
            "{}/{}: {} ambiguous request{}, last at {}: {}",
            o.account_id,
            o.token_name,
            o.ambiguous_attempts,
            if o.ambiguous_attempts == 1 { "" } else { "s" },
            o.at,
            o.detail
        ));
    }
    match clear {
        false => {
            printer.info(&format!(
                "{} in {}. Check each in the Logz.io UI (log into the sub account: Settings > Tools > Manage Tokens > API tokens); a token not recorded in the results is an orphan to delete there.",
                super::count(chosen.len(), "possible orphan"),
                store.paths.results.display()
            ));
        }
        true => {
            store.results.possible_orphans = kept;
            store.save()?;
            printer.info(&format!(
                "Cleared {} (marked as checked) in {}.",
                super::count(chosen.len(), "possible orphan"),
                store.paths.results.display()
            ));
        }
    }
    Ok(Exit::Success)
}

/// `import`: records a token created outside the tool.
pub fn import(args: &ImportArgs, printer: &Printer) -> Result<Exit, CliError> {
    let m = manifest::load(&args.manifest)?;
    let paths = crate::cli::config::state_paths(&args.manifest, &args.state, false);
    let mut store = Store::open(paths, None)?;
    let wanted = m.accounts.iter().any(|a| {
        let id_matches = match &a.selector {
            AccountSelector::Id(id) => *id == args.account_id,
            AccountSelector::Name(n) => {
                store.results.resolved_names.get(n) == Some(&args.account_id)
            }
        };
        id_matches && a.tokens.iter().any(|t| t == &args.token_name)
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
            source: Some("imported".into()),
        },
    );
    if let Some(s) = secret {
        store.secrets.insert(&key, args.token_id, s);
    }
    store.save()?;
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
    let m = manifest::load(&args.manifest)?;
    let paths = crate::cli::config::state_paths(&args.manifest, &args.state, false);
    let store = Store::read(paths, None)?;
    let mut rows: Vec<export::Row<'_>> = Vec::new();
    let mut missing = 0usize;
    for a in &m.accounts {
        let (id, name) = match &a.selector {
            AccountSelector::Id(id) => (Some(*id), None),
            AccountSelector::Name(n) => (
                store.results.resolved_names.get(n).copied(),
                Some(n.clone()),
            ),
        };
        let Some(id) = id else {
            missing += a.tokens.len();
            continue;
        };
        for t in &a.tokens {
            let key = TokenKey {
                account_id: id,
                token_name: t.clone(),
            };
            match store.secrets.get(&key) {
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
        use std::io::Write;
        // A full disk or a closed pipe must not look like a successful export.
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Fatal {
                message: format!("could not write the export to stdout: {e}"),
            })?;
    } else if let Some(out) = &args.out {
        if args.force {
            write_atomic(out, text.as_bytes(), FileKind::Secret, "export")?;
        } else {
            write_atomic_new(out, text.as_bytes(), FileKind::Secret, "export")?;
        }
        printer.info(&format!(
            "Wrote {} to {} (mode 0600).",
            super::count(rows.len(), "secret"),
            out.display()
        ));
    }
    if missing > 0 {
        printer.warn(&format!(
            "{} of the manifest have no recorded secret (not created yet, or created outside the tool)",
            super::count(missing, "token")
        ));
    }
    Ok(Exit::Success)
}
