//! Logging setup: `tracing` to stderr through the progress-aware writer, text or JSON.
//! Dependency crates are capped below their trace level, where HTTP stacks may dump headers
//! or bodies; the owner token is also marked sensitive on the request itself.

use tracing_subscriber::EnvFilter;

use super::args::LogFormat;
use super::progress::LogWriter;

/// Installs the global subscriber. `RUST_LOG` overrides the verbosity flags for this crate.
pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let ours = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let deps = if verbose >= 2 { "info" } else { "warn" };
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("{deps},logzio_tokens={ours}"));
    // Whatever RUST_LOG says, HTTP internals never log below debug.
    let filter = EnvFilter::try_new(format!(
        "{directives},hyper=info,hyper_util=info,h2=info,reqwest=debug,rustls=info"
    ))
    .unwrap_or_else(|_| EnvFilter::new(format!("warn,logzio_tokens={ours}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter::default)
        .with_target(verbose >= 2);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything (no-color.org).
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
