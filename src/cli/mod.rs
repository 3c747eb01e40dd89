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
            match unknown_option(&e) {
                Some(text) => {
                    use std::io::Write;
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
                None => {
                    let _ = e.print();
                }
            }
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
        printer.warn(&format!(
            "could not turn core dumps off ({e}); a crash could write secrets to a core file"
        ));
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

/// For an option a command does not take, the message clap's tip gets wrong ("to pass
/// '--json' as a value, use '-- --json'"): which command does not take it, and what was
/// probably meant. `None` for any other error.
fn unknown_option(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if !arg.starts_with('-') {
        return None;
    }
    let flag = arg.split('=').next().unwrap_or(arg);
    let cli = args::Cli::command();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let sub = std::env::args()
        .skip(1)
        .find(|a| names.iter().any(|n| n == a));
    let suggested = match e.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let meant = match (sub.as_deref(), flag) {
        (Some("verify"), "--simulate") => Some(
            "`--api-url URL` of the running `logzio-tokens simulate` that created the tokens (a new simulator knows none of them)".to_owned(),
        ),
        (Some("verify"), "--api-token-file") => {
            Some("nothing: verify sends no owner token; each token is probed with its own secret".to_owned())
        }
        (Some("import"), "--account" | "--exclude-account") => {
            Some("`--account-id ID` (import records one token)".to_owned())
        }
        (Some(s), "--json") => Some(format!(
            "no such thing: `{s}` has no JSON output (`plan`, `apply` and `verify` have)"
        )),
        _ => suggested.map(|s| format!("`{s}`")),
    };
    let rendered = e.render().to_string();
    let usage = rendered
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .map(|u| format!("\n{u}\n"))
        .unwrap_or_default();
    let (of, help) = match &sub {
        Some(s) => (format!("`{s}`"), format!("logzio-tokens {s} --help")),
        None => (
            "`logzio-tokens`".to_owned(),
            "logzio-tokens --help".to_owned(),
        ),
    };
    Some(format!(
        "error: `{flag}` is not an option of {of}{}\n{usage}\nFor more information, try '{help}'.\n",
        meant.map_or(String::new(), |m| format!("; did you mean {m}?"))
    ))
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
        Command::Man(a) => commands::misc::man(&a, printer),
    }
}
