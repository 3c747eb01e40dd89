//! `schema`, `completions`, `man`: generated from the Rust types and the clap definitions.

use clap::CommandFactory;

use crate::cli::args::{Cli, SchemaKind};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::Printer;

/// Prints a JSON Schema.
pub fn schema(kind: SchemaKind, printer: &Printer) -> Result<Exit, CliError> {
    let text = match kind {
        SchemaKind::Manifest => crate::manifest::manifest_schema_text(),
        SchemaKind::Results => crate::state::results::results_schema_text(),
    };
    printer.out(text.trim_end());
    Ok(Exit::Success)
}

/// Prints a completion script.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit, CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "logzio-tokens", &mut std::io::stdout());
    Ok(Exit::Success)
}

/// Prints the man page.
pub fn man() -> Result<Exit, CliError> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render(&mut std::io::stdout())
        .map_err(|e| CliError::Fatal {
            message: format!("cannot write the man page: {e}"),
        })?;
    Ok(Exit::Success)
}
