//! `forget`: removes one wrong record from the results file (Terraform's `state rm`). The
//! token is not deleted at Logz.io; its plaintext secret, if any, moves to the secrets
//! file's `forgotten` list, never deleted.

use std::path::Path;

use crate::cli::args::{ForgetArgs, PathArgs};
use crate::cli::config::{StateSettings, command_line, quote_path};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, shell_quote};
use crate::key::TokenKey;
use crate::state::Store;
use crate::timestamp::now_rfc3339;

/// The command that forgets `key` in the state files `state` names, to paste.
pub fn command(manifest: &Path, state: &PathArgs, key: &TokenKey) -> String {
    let mut flags = Vec::new();
    for (flag, value) in [
        ("--results", &state.results),
        ("--secrets", &state.secrets),
        ("--sealed-dir", &state.sealed_dir),
    ] {
        if let Some(v) = value {
            flags.push(format!("{flag} {}", quote_path(v)));
        }
    }
    flags.push(format!("--account-id {}", key.account_id));
    flags.push(format!("--token-name {}", shell_quote(&key.token_name)));
    command_line("forget", manifest, &flags)
}

/// Runs `forget`: under the state's lock, as `import` does.
pub fn run(args: &ForgetArgs, printer: &Printer) -> Result<Exit, CliError> {
    let settings = StateSettings::resolve(&args.manifest, &args.state)?;
    let mut store = Store::open(settings.paths, None)?;
    let key = TokenKey {
        account_id: args.account_id,
        token_name: args.token_name.clone(),
    };
    let results = store.paths().results.clone();
    let secrets = store.paths().secrets.clone();
    let Some(record) = store.ledger_mut().forget(&key, &now_rfc3339()) else {
        let recorded: Vec<String> = store
            .results()
            .accounts
            .get(&key.account_id)
            .map(|tokens| tokens.keys().map(|n| format!("{n:?}")).collect())
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "{key} is not recorded in {}: nothing to forget{}",
            results.display(),
            if recorded.is_empty() {
                format!(" (account {} has no record)", key.account_id)
            } else {
                format!(
                    " (account {} has records for {})",
                    key.account_id,
                    recorded.join(", ")
                )
            }
        )));
    };
    store.save()?;
    printer.info(&format!(
        "Forgot {key} (token {}) in {}; a plaintext secret it had is kept in {} under `forgotten`. The token still works at Logz.io: delete it in the UI (Settings > Tools > Manage Tokens) if it should not. The next apply creates {key} again if the manifest asks for it.",
        record.token_id,
        results.display(),
        secrets.display()
    ));
    Ok(Exit::Success)
}
