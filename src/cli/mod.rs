//! The command line: arguments ([`args`]), their resolution into one settings value per
//! command ([`config`]), output ([`output`] for people, [`report`] for machines), progress,
//! logging, and one module per command. [`run`] is all `main` calls.

pub mod args;
pub mod commands;
pub mod config;
pub mod error;
pub mod logging;
pub mod output;
pub mod progress;
pub mod report;
pub mod version;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use error::{CliError, Exit};
use output::Printer;

/// Parses the command line, runs the command, and returns the documented exit code.
pub fn run() -> ExitCode {
    // Before anything reads a secret: a core dump would hold every one of them.
    let dumps_off = crate::hardening::disable_core_dumps();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Success.into()
                }
                _ => Exit::Usage.into(),
            };
        }
    };
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    let printer = Printer { quiet: cli.quiet };
    if let Err(e) = dumps_off {
        tracing::warn!(
            "could not turn core dumps off ({e}); a crash could write secrets to a core file"
        );
    }
    let detailed = matches!(&cli.command, Command::Plan(p) if p.detailed_exitcode);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            printer.error(&format!("cannot start the async runtime: {e}"));
            return Exit::Fatal.into();
        }
    };
    let result = runtime.block_on(dispatch(cli.command, &printer));
    // Do not wait for stray tasks (a slow request abandoned at drain time).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            report(&printer, &e);
            if detailed {
                Exit::ItemsFailed.into()
            } else {
                e.exit().into()
            }
        }
    }
}

fn report(printer: &Printer, e: &CliError) {
    match e {
        // The manifest report is complete as it is (locations, snippets, count).
        CliError::Manifest(m) => printer.error_raw(&m.to_string()),
        other => printer.error(&other.to_string()),
    }
}

async fn dispatch(command: Command, printer: &Printer) -> Result<Exit, CliError> {
    match command {
        Command::Validate { manifest } => commands::validate::run(&manifest, printer),
        Command::Plan(a) => commands::plan::run(&a, printer).await,
        Command::Apply(a) => commands::apply::run(&a, printer).await,
        Command::Simulate(a) => commands::simulate::run(&a, printer).await,
        Command::Schema { kind } => commands::misc::schema(kind, printer),
        Command::Orphans(a) => commands::state_cmds::orphans(&a, printer),
        Command::Import(a) => commands::state_cmds::import(&a, printer),
        Command::Export(a) => commands::state_cmds::export(&a, printer),
        Command::Verify(a) => commands::verify::run(&a, printer).await,
        Command::Completions { shell } => commands::misc::completions(shell, printer),
        Command::Man => commands::misc::man(printer),
    }
}
