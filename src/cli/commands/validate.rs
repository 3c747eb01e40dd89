//! `validate`: load and check a manifest, print every problem, send nothing.

use std::path::Path;

use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count};
use crate::manifest;

/// Runs `validate`.
pub fn run(path: &Path, printer: &Printer) -> Result<Exit, CliError> {
    let m = manifest::load(path)?;
    let accounts = m.accounts.len();
    printer.out(&format!(
        "{}: valid: {} with {}",
        path.display(),
        count(accounts, "account"),
        count(m.token_count(), "token")
    ));
    Ok(Exit::Success)
}
