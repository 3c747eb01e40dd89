//! `schema`, `completions`, `man`: generated from the Rust types and the clap definitions.

use clap::CommandFactory;

use crate::cli::args::{Cli, SchemaKind};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::Printer;

/// Prints a JSON Schema.
pub fn schema(kind: SchemaKind, printer: &Printer) -> Result<Exit, CliError> {
    let text = match kind {
        SchemaKind::Manifest => crate::manifest::manifest_schema_text(),
        SchemaKind::Results => crate::state::results_schema_text(),
    };
    printer.out(text.trim_end());
    Ok(Exit::Success)
}

/// Prints a completion script. Built in memory first: clap_complete panics on a failed write,
/// and a reader that stops early (`| head`) is no failure.
pub fn completions(shell: clap_complete::Shell, printer: &Printer) -> Result<Exit, CliError> {
    let mut cmd = Cli::command();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "logzio-tokens", &mut text);
    printer.out_bytes(&text).map_err(|e| CliError::Fatal {
        message: format!("cannot write the completion script: {e}"),
    })?;
    Ok(Exit::Success)
}

/// Prints the man page.
pub fn man(printer: &Printer) -> Result<Exit, CliError> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut text = Vec::new();
    man.render(&mut text)
        .and_then(|()| printer.out_bytes(&text))
        .map_err(|e| CliError::Fatal {
            message: format!("cannot write the man page: {e}"),
        })?;
    Ok(Exit::Success)
}
