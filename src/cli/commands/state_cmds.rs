//! Commands over the recorded state: `orphans`, `import`, `export`.

use crate::bounded::{MAX_SECRET_BYTES, read_first_line};

use crate::cli::args::{
    ExportArgs, ExportFormat, ImportArgs, OrphansAction, OrphansArgs, OrphansTarget,
};
use crate::cli::config::StateSettings;
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count, has};
use crate::fs::{FileKind, write_atomic, write_atomic_new};
use crate::key::TokenKey;
use crate::manifest::AccountSelector;
use crate::plan::AccountBook;
use crate::secret::Secret;
use crate::state::export;
use crate::state::{ImportFromRefused, ImportRefused, Store};
use crate::timestamp::now_rfc3339;

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
    let names = store.results().resolved_names.clone();
    let book = AccountBook::new(None, &names);
    let chosen_by = |o: &crate::state::PossibleOrphan| {
        settings
            .filter
            .admits(Some(o.account_id), book.name(o.account_id))
    };
    let chosen: Vec<_> = store
        .results()
        .possible_orphans
        .iter()
        .filter(|o| chosen_by(o))
        .cloned()
        .collect();
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
    // Sub accounts whose creates were ambiguous, with no account found since.
    let account_chosen_by =
        |name: &str| settings.filter.admits(names.get(name).copied(), Some(name));
    let accounts: Vec<(String, crate::state::AmbiguousCreates)> = store
        .results()
        .accounts_ambiguous
        .iter()
        .filter(|(n, _)| account_chosen_by(n))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    for (name, a) in &accounts {
        printer.out(&format!(
            "sub account {name}: {}, last at {}: {}",
            count(a.ambiguous_attempts as usize, "ambiguous create"),
            a.at,
            a.detail
        ));
    }
    if !accounts.is_empty() {
        match clear {
            false => printer.info(&format!(
                "{} may have been created without this tool learning of it: check the Logz.io UI for an account of each name (keep one per name; this tool never deletes an account), then run `logzio-tokens orphans clear` to let apply create those that do not exist.",
                count(accounts.len(), "sub account")
            )),
            true => {
                store.ledger_mut().clear_account_orphans(account_chosen_by);
                printer.info(&format!(
                    "Cleared the ambiguous creates of {} (marked as checked): apply creates each again if no account has its name.",
                    count(accounts.len(), "sub account")
                ));
            }
        }
    }
    match clear {
        false if chosen.is_empty() && !accounts.is_empty() => {}
        false if chosen.is_empty() => {
            printer.info(&format!(
                "No possible orphan in {}.",
                store.paths().results.display()
            ));
        }
        false => {
            printer.info(&format!(
                "{} in {}. Check each in the Logz.io UI (log into the sub account: Settings > Tools > Manage Tokens > API tokens); a token not recorded in the results is an orphan to delete there.",
                count(chosen.len(), "possible orphan"),
                store.paths().results.display()
            ));
        }
        true => {
            store.ledger_mut().clear_orphans(chosen_by);
            store.save()?;
            printer.info(&format!(
                "Cleared {} (marked as checked) in {}.",
                count(chosen.len(), "possible orphan"),
                store.paths().results.display()
            ));
        }
    }
    Ok(Exit::Success)
}

/// `import`: records a token created outside the tool, or every token of a JSON export.
pub fn import(args: &ImportArgs, printer: &Printer) -> Result<Exit, CliError> {
    let (Some(account_id), Some(token_name), Some(token_id)) =
        (args.account_id, args.token_name.clone(), args.token_id)
    else {
        return match &args.from {
            Some(path) => import_from(args, path, printer),
            None => Err(CliError::usage(
                "usage: logzio-tokens import MANIFEST (--account-id ID --token-name NAME --token-id ID | --from EXPORT)",
            )),
        };
    };
    let settings = StateSettings::resolve(&args.manifest, &args.state)?;
    let recipients = crate::cli::config::recipients(&settings.manifest, &args.seal)?;
    let mut store = Store::open(
        settings.paths,
        import_endpoint(&settings.manifest)?.as_deref(),
    )?;
    store.check_protection(recipients.is_some(), args.seal.allow_plaintext)?;
    let key = TokenKey {
        account_id,
        token_name,
    };
    let forget = super::forget::command(&args.manifest, &args.state, &key);
    check_importable(
        &settings.manifest,
        &args.manifest,
        &store,
        &key,
        token_id,
        &forget,
    )?;
    let secret = read_secret(args)?;
    store
        .ledger_mut()
        .import(&key, token_id, &now_rfc3339())
        .map_err(|e| import_refused(&key, token_id, &e, Some(&forget)))?;
    let mut doc = crate::state::SecretsFile::default();
    if let Some(s) = secret {
        doc.insert(&key, token_id, s);
    }
    let sealed = store.keep_imported(recipients.as_ref(), doc)?;
    store.save()?;
    if let Some(path) = sealed {
        printer.info(&format!("Sealed the secret in {}.", path.display()));
    }
    printer.info(&format!(
        "Recorded {key} as token {token_id} (imported); apply will not create it again."
    ));
    Ok(Exit::Success)
}

/// The endpoint an import binds the results file to (invariant 3): `LOGZIO_API_URL`, else
/// `LOGZIO_REGION`, else the manifest's `api_url` or `region`, else the default region, as
/// `apply` resolves them without flags. A results file bound to another endpoint is refused.
fn import_endpoint(manifest: &crate::manifest::Manifest) -> Result<Option<String>, CliError> {
    if crate::reintroduced::on(crate::reintroduced::Bug::ImportUnbound) {
        return Ok(None);
    }
    crate::cli::config::endpoint_identity(manifest).map(Some)
}

/// Whether `key` may be recorded as `token_id`: the manifest asks for it, the id is positive,
/// and neither the key nor the id is recorded otherwise.
fn check_importable(
    manifest: &crate::manifest::Manifest,
    manifest_path: &std::path::Path,
    store: &Store,
    key: &TokenKey,
    token_id: i64,
    forget: &str,
) -> Result<(), CliError> {
    if !wanted(manifest, &store.results().resolved_names, key) {
        return Err(not_wanted(manifest_path, key));
    }
    store
        .ledger()
        .check_import(key, token_id)
        .map_err(|e| import_refused(key, token_id, &e, Some(forget)))
}

/// Whether the manifest asks for `key`, its accounts given by name known by `names`.
fn wanted(
    manifest: &crate::manifest::Manifest,
    names: &std::collections::BTreeMap<String, u32>,
    key: &TokenKey,
) -> bool {
    let book = AccountBook::new(None, names);
    manifest
        .accounts
        .iter()
        .any(|a| book.id(&a.selector) == Ok(key.account_id) && a.tokens.contains(&key.token_name))
}

/// What to say when the manifest does not ask for `key`.
fn not_wanted(manifest_path: &std::path::Path, key: &TokenKey) -> CliError {
    CliError::usage(format!(
        "the manifest {} does not ask for token {:?} in account {}; add it to the manifest first (accounts given by name must have been resolved by a plan or apply)",
        manifest_path.display(),
        key.token_name,
        key.account_id
    ))
}

/// What to say when the state refuses to record `key` as `token_id`; `forget` is the command
/// that removes `key`'s record.
fn import_refused(
    key: &TokenKey,
    token_id: i64,
    e: &ImportRefused,
    forget: Option<&str>,
) -> CliError {
    CliError::usage(match e {
        ImportRefused::NotPositive => format!("the token id of {key} must be a positive number"),
        ImportRefused::KeyHasOtherId(existing) => format!(
            "{key} is already recorded with token id {existing}; if that record is wrong, remove it first with `{}`",
            forget.unwrap_or("logzio-tokens forget")
        ),
        ImportRefused::IdHasOtherKey(other) => {
            format!("token id {token_id} is already recorded for {other}")
        }
    })
}

/// `import --from EXPORT`: every token of a JSON export, and the tokens each replaced, exactly
/// as the export holds them ([`crate::state::Ledger::import_from`] checks every row before it
/// records anything).
fn import_from(
    args: &ImportArgs,
    path: &std::path::Path,
    printer: &Printer,
) -> Result<Exit, CliError> {
    let settings = StateSettings::resolve(&args.manifest, &args.state)?;
    let recipients = crate::cli::config::recipients(&settings.manifest, &args.seal)?;
    let bytes = crate::bounded::read_regular(
        path,
        crate::bounded::MAX_STATE_FILE_BYTES,
        crate::bounded::Symlinks::Follow,
    )
    .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let rows = export::parse_json(path, &bytes).map_err(|e| CliError::usage(e.to_string()))?;
    let mut store = Store::open(
        settings.paths,
        import_endpoint(&settings.manifest)?.as_deref(),
    )?;
    store.check_protection(recipients.is_some(), args.seal.allow_plaintext)?;
    let done = store
        .ledger_mut()
        .import_from(rows, &now_rfc3339(), |key, names| {
            wanted(&settings.manifest, names, key)
        })
        .map_err(|e| import_from_refused(args, path, store.paths(), e))?;
    let sealed = store.keep_imported(recipients.as_ref(), done.secrets)?;
    store.save()?;
    if let Some(sealed) = sealed {
        printer.info(&format!("Sealed the secrets in {}.", sealed.display()));
    }
    printer.info(&format!(
        "Recorded {} (imported) and {} from {}; apply will not create them again.",
        count(done.recorded.len(), "token"),
        count(done.replaced.len(), "replaced token"),
        path.display()
    ));
    Ok(Exit::Success)
}

/// What to say when the state refuses an export; nothing was recorded.
fn import_from_refused(
    args: &ImportArgs,
    path: &std::path::Path,
    paths: &crate::state::StatePaths,
    e: ImportFromRefused,
) -> CliError {
    match e {
        ImportFromRefused::NameConflict {
            name,
            exported,
            recorded,
        } => CliError::usage(format!(
            "{} says account {name:?} is {exported}, but {} resolved it to {recorded}",
            path.display(),
            paths.results.display()
        )),
        ImportFromRefused::NotWanted(key) => not_wanted(&args.manifest, &key),
        ImportFromRefused::Token { key, token_id, why } => {
            let forget = super::forget::command(&args.manifest, &args.state, &key);
            import_refused(&key, token_id, &why, Some(&forget))
        }
        ImportFromRefused::KeyTwice(key) => CliError::usage(format!(
            "{} lists {key} in two rows; nothing was recorded\n  = help: keep one row per token (the other tokens a name replaced go under its `superseded`)",
            path.display(),
        )),
        ImportFromRefused::IdTwice {
            token_id,
            first,
            second,
        } => CliError::usage(format!(
            "{} gives token id {token_id} to both {first} and {second}; nothing was recorded\n  = help: a token id belongs to one token: fix the row whose id is wrong",
            path.display(),
        )),
        // Recording it as replaced would have `plan` tell the admin to delete a token in use.
        ImportFromRefused::ReplacedButCurrent {
            replaced,
            row,
            current,
        } => CliError::usage(format!(
            "{} lists token {replaced} as replaced under {row}, but it is the current token of {current}; nothing was recorded\n  = help: fix the export: a token is either current or replaced, not both",
            path.display(),
        )),
    }
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
    if let Some(out) = &args.out {
        export::check_target(out)?;
    }
    let store = Store::read(settings.paths, None)?;
    let book = AccountBook::new(None, &store.results().resolved_names);
    let identities = super::identities(args.identity.as_deref())?;
    let (secrets, skipped) =
        store
            .all_secrets_named(identities.as_ref())
            .map_err(|e| CliError::Fatal {
                message: e.to_string(),
            })?;
    super::verify::warn_skipped(printer, &skipped);
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
                    // JSON carries the tokens the name replaced; CSV and dotenv cannot.
                    superseded: match args.format {
                        ExportFormat::Json => {
                            export::replaced(&key, &store.results().superseded, &secrets.superseded)
                        }
                        ExportFormat::Csv | ExportFormat::Dotenv => Vec::new(),
                    },
                    key,
                    account_name: name.clone(),
                    token_id: rec.token_id,
                    token: &rec.token,
                    kind: export::Kind::ApiToken,
                }),
                None => missing += 1,
            }
        }
        // A sub account this tool created: its log shipping token too.
        if let Some(shipping) = secrets.shipping.get(&id) {
            rows.push(export::Row {
                key: TokenKey {
                    account_id: id,
                    token_name: String::new(),
                },
                account_name: Some(shipping.account_name.clone()),
                token_id: 0,
                token: &shipping.token,
                superseded: Vec::new(),
                kind: export::Kind::ShippingToken,
            });
        }
    }
    let format = match args.format {
        ExportFormat::Json => export::Format::Json,
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Dotenv => export::Format::Dotenv,
    };
    let text = export::render(format, &rows).map_err(|e| match e {
        // The manifest's names, not the state, are in the way: nothing to recover from.
        export::ExportError::DotenvCollision { .. } => CliError::usage(e.to_string()),
        _ => CliError::Fatal {
            message: e.to_string(),
        },
    })?;
    if args.stdout {
        printer
            .out_bytes(text.as_bytes())
            .map_err(|e| CliError::Fatal {
                message: format!("cannot write the secrets to stdout: {e}"),
            })?;
    } else if let Some(out) = &args.out {
        if args.force {
            write_atomic(out, text.as_bytes(), FileKind::Secret, "export")?;
        } else {
            write_atomic_new(out, text.as_bytes(), FileKind::Secret, "export")?;
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
