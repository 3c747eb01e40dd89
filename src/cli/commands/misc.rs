//! `schema`, `completions`, `man`: generated from the Rust types and the clap definitions.

use clap::CommandFactory;

use crate::cli::args::{Cli, ManArgs, SchemaKind};
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

/// The binary's name, as completion scripts register it.
const BIN: &str = "logzio-tokens";

/// clap_complete's bash script names a subcommand's case arm after the binary name with its
/// hyphen turned into the subcommand separator (`logzio__subcmd__tokens__subcmd__apply`) while
/// the loop that walks the words computes `logzio__tokens__subcmd__apply`: no arm matches
/// and `apply --rec<TAB>` completes nothing (clap-rs/clap#6421). The arms get the loop's name.
fn fix_bash_arms(script: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    text.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"))
        .into_bytes()
}

/// Prints a completion script. Built in memory first: clap_complete panics on a failed write,
/// and a reader that stops early (`| head`) is no failure.
pub fn completions(shell: clap_complete::Shell, printer: &Printer) -> Result<Exit, CliError> {
    let mut cmd = Cli::command();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut text);
    if shell == clap_complete::Shell::Bash {
        text = fix_bash_arms(&text);
    }
    printer.out_bytes(&text).map_err(|e| CliError::Fatal {
        message: format!("cannot write the completion script: {e}"),
    })?;
    Ok(Exit::Success)
}

/// The sections every page ends with, before the version: what the exit codes mean, which
/// variables are read, which files are written.
const MAN_TAIL: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success: every token the manifest asks for is recorded (\fBplan \-\-detailed\-exitcode\fR: nothing to create or replace).
.TP
\fB1\fR
Finished, but some tokens failed or stayed unresolved (\fBverify\fR: a token is revoked, for another account, or unknown).
.TP
\fB2\fR
Usage, manifest or configuration error, a refused or stale saved plan, or a declined prompt: nothing was sent (\fBplan \-\-detailed\-exitcode\fR: changes present).
.TP
\fB3\fR
Fatal runtime error: the run stopped early; every secret received is saved.
.TP
\fB130\fR
Interrupted (Ctrl\-C, SIGTERM, SIGHUP): requests in flight were drained and everything received is saved.
.SH ENVIRONMENT
Settings are taken from the first of: a command\-line flag, an environment variable, the manifest, the default.
.TP
\fBLOGZIO_API_TOKEN\fR
The owner (main) account's API token. Never accepted as a flag; \fB\-\-api\-token\-file\fR reads it from a file instead.
.TP
\fBLOGZIO_API_URL\fR
API base URL (as \fB\-\-api\-url\fR); overrides \fBLOGZIO_REGION\fR and the manifest's \fBregion\fR/\fBapi_url\fR. \fBplan\fR says where the endpoint came from.
.TP
\fBLOGZIO_REGION\fR
Logz.io region code: us, eu, uk, au, ca (as \fB\-\-region\fR).
.TP
\fBLOGZIO_TOKENS_IDENTITY_FILE\fR
The age identity file that opens sealed secrets (as \fB\-\-identity\fR).
.TP
\fBCI\fR
When \fBtrue\fR, apply warns that a plaintext secrets file stays on the runner.
.TP
\fBNO_COLOR\fR
When set to anything, no colour.
.TP
\fBRUST_LOG\fR
Log filter; overrides \fB\-v\fR/\fB\-q\fR.
.SH FILES
Beside the manifest \fIM\fR.yaml unless \fB\-\-results\fR, \fB\-\-secrets\fR or \fB\-\-sealed\-dir\fR say otherwise:
.TP
\fIM\fR\fB.results.json\fR
Token ids, no secrets (commit it).
.TP
\fIM\fR\fB.secrets.json\fR
The secrets, mode 0600 (never commit it). Not written when secrets are sealed.
.TP
\fIM\fR\fB.sealed/\fR
Secrets sealed to the age recipients, one file per run (commit them).
.TP
\fIM\fR\fB.results.journal\fR, \fIM\fR\fB.results.lock\fR
The write\-ahead journal of a run (0600) and its lock.
.TP
\fIM\fR\fB.simulated.*\fR
The same files for runs with \fB\-\-simulate\fR.
"#;

/// One page: clap_mangen's sections, then [`MAN_TAIL`], then the version.
fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    out.extend_from_slice(MAN_TAIL.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Every command, the main one first, each named as its page is (`logzio-tokens-apply`).
fn all_commands(cmd: &clap::Command, into: &mut Vec<clap::Command>) {
    into.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all_commands(sub, into);
    }
}

/// Prints the main man page, or writes every command's page into `--out-dir`.
pub fn man(args: &ManArgs, printer: &Printer) -> Result<Exit, CliError> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let fatal = |e: std::io::Error| CliError::Fatal {
        message: format!("cannot write the man page: {e}"),
    };
    let Some(dir) = &args.out_dir else {
        let text = man_page(&cmd).map_err(fatal)?;
        printer.out_bytes(&text).map_err(fatal)?;
        return Ok(Exit::Success);
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::usage(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut commands = Vec::new();
    all_commands(&cmd, &mut commands);
    for c in &commands {
        let name = format!("{}.1", c.get_display_name().unwrap_or_else(|| c.get_name()));
        let path = dir.join(&name);
        let text = man_page(c).map_err(fatal)?;
        std::fs::write(&path, text).map_err(|e| CliError::Fatal {
            message: format!("cannot write {}: {e}", path.display()),
        })?;
    }
    printer.info(&format!(
        "Wrote {} man pages to {} (read one with `man {}/logzio-tokens-apply.1`)",
        commands.len(),
        dir.display(),
        dir.display()
    ));
    Ok(Exit::Success)
}
