//! The command line as clap sees it (the "low-level" arguments). [`super::config`] turns these
//! into ready-to-use settings. No token is ever accepted as an argument value (it would show
//! in `ps`): it comes from `LOGZIO_API_TOKEN` or `--api-token-file`.

// The doc comments here are clap's help text, read in a terminal: `<manifest stem>` is a
// placeholder there, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::AccountRef;
use crate::region::Region;

/// Provision Logz.io sub-account API tokens in bulk from a YAML manifest.
///
/// List your sub accounts and the token names each must have; `plan` shows what would be
/// created, `apply` creates the missing tokens concurrently under a rate limit and records
/// them: token ids in the results file, secrets in a separate owner-only file.
///
/// Every setting is taken from the first of: a command-line flag, its environment variable
/// (LOGZIO_API_URL, LOGZIO_REGION, LOGZIO_TOKENS_IDENTITY_FILE), the manifest, the default.
/// `plan` says where the endpoint came from.
#[derive(Debug, Parser)]
#[command(
    name = "logzio-tokens",
    version = super::version::VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    pub verbose: u8,
    /// Less output: only errors, and the data asked for on stdout.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Output"
    )]
    pub quiet: bool,
    /// Format of the log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Output")]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of `plan`, `apply` and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text for people: `plan` prints it on stdout; `apply` and `verify` print their progress
    /// and summary on stderr and nothing on stdout.
    Text,
    /// A versioned stream of JSON lines on stdout (no secrets).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check a manifest; print every problem with file:line:column; send nothing.
    Validate {
        /// The manifest file.
        manifest: PathBuf,
    },
    /// Show what `apply` would do; with a token, check the accounts live (no write is sent).
    Plan(PlanArgs),
    /// Create the missing tokens and record them.
    Apply(ApplyArgs),
    /// Run the built-in Logz.io API simulator on a loopback port until stopped.
    ///
    /// Prints its URL as the first line on stdout. Point the tool at it with
    /// `LOGZIO_API_URL=URL LOGZIO_API_TOKEN=sim-owner-token` (the owner token is
    /// --owner-token's). Besides the API it answers, without a token and uncounted:
    ///
    ///   GET    /__sim/ground-truth     every token created, with its secret (JSON)
    ///   GET    /__sim/deleted-tokens   the tokens deleted through DELETE below
    ///   GET    /__sim/counters         requests, creates, faults and 429s so far
    ///   DELETE /__sim/tokens/ID        delete a token, as an admin would in the UI (204;
    ///                                  404 for an unknown id); `verify` then sees it revoked
    #[command(verbatim_doc_comment)]
    Simulate(SimulateArgs),
    /// Print a JSON Schema (the same text as schemas/*.schema.json).
    Schema {
        /// Which schema.
        #[arg(value_enum, default_value_t = SchemaKind::Manifest)]
        kind: SchemaKind,
    },
    /// List or clear the possible orphans recorded in the results file.
    Orphans(OrphansArgs),
    /// Record tokens created outside this tool so that apply does not create them again.
    Import(ImportArgs),
    /// Remove a wrong record from the results file (as Terraform's `state rm`): the token is
    /// not deleted at Logz.io; its secret, if the secrets file has it, moves to that file's
    /// `forgotten` list, never deleted.
    Forget(ForgetArgs),
    /// Write the secrets of the manifest's tokens to a file (0600) or, when asked, stdout.
    Export(ExportArgs),
    /// Probe every recorded token of the manifest with its own secret (GET /v2/whoami) and
    /// record which still work; exit 1 when any is revoked, for another account, or unknown.
    Verify(VerifyArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `logzio-tokens.1` and one `logzio-tokens-COMMAND.1` per command into this
    /// directory (created if missing) instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Which schema to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The manifest.
    Manifest,
    /// The results file.
    Results,
}

/// Where the API is and how long a request may take: the options every command that talks to
/// the API takes (`plan`, `apply` and `verify`), defined once so that their names, help and
/// environment variables cannot drift apart.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct EndpointArgs {
    /// Logz.io region: us (default), eu, uk, au, ca. Overrides the manifest. [env: LOGZIO_REGION]
    // The variable is read in `config` rather than by clap, which would refuse an empty one:
    // an empty LOGZIO_REGION means "not set", as it always has.
    #[arg(
        long,
        value_name = "CODE",
        value_enum,
        ignore_case = true,
        hide_possible_values = true
    )]
    pub region: Option<Region>,
    /// API base URL; overrides the region. http:// only for loopback hosts. [env: LOGZIO_API_URL]
    // Read in `config` rather than by clap, so that the plan can say where the endpoint came
    // from (flag > environment > manifest > default).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Per-request timeout in seconds (overrides settings.request_timeout_seconds).
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
}

/// Where the API is and how to reach it: the endpoint, and the owner token or the simulator
/// that stands in for it (`plan`, `apply`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ApiArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub endpoint: EndpointArgs,
    /// Read the owner API token from this file (first line, trimmed) instead of LOGZIO_API_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,
    /// Start the built-in simulator in-process and run against it (no token needed; the
    /// region, URL and token settings are ignored).
    #[arg(long)]
    pub simulate: bool,
    /// With --simulate: how long a sub account the simulator creates stays out of its account
    /// list (read lag, e.g. `300ms` or `2s`), to watch the lookup after an ambiguous create.
    #[arg(long, value_name = "DURATION", value_parser = parse_lag, requires = "simulate")]
    pub simulate_list_lag: Option<std::time::Duration>,
}

/// A short delay: a whole number of milliseconds or seconds (`300ms`, `2s`), at most 10 minutes.
pub fn parse_lag(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. `300ms` or `2s`"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number: write e.g. `300ms`"))?;
    let lag = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use ms or s (e.g. `300ms`)"
            ));
        }
    };
    if lag > std::time::Duration::from_secs(600) {
        return Err(format!("`{text}` is more than 10 minutes"));
    }
    Ok(lag)
}

/// Where the state files are and which accounts to cover.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "State files")]
pub struct StateArgs {
    /// Results file [default: <manifest dir>/<manifest stem>.results.json].
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Secrets file [default: <manifest dir>/<manifest stem>.secrets.json].
    #[arg(long, value_name = "PATH")]
    pub secrets: Option<PathBuf>,
    /// Only this account (id or name); repeatable. A value naming no entry of the manifest
    /// is refused.
    #[arg(long = "account", value_name = "ID|NAME", help_heading = "Accounts")]
    pub accounts: Vec<AccountRef>,
    /// Never this account (id or name); repeatable. A value naming no entry of the
    /// manifest is refused.
    #[arg(
        long = "exclude-account",
        value_name = "ID|NAME",
        help_heading = "Accounts"
    )]
    pub exclude_accounts: Vec<AccountRef>,
    /// Directory of sealed secrets files [default: <stem>.sealed beside the results file].
    #[arg(long, value_name = "DIR")]
    pub sealed_dir: Option<PathBuf>,
}

/// The state files alone (`import`, which records one token and takes no account filter).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "State files")]
pub struct PathArgs {
    /// Results file [default: <manifest dir>/<manifest stem>.results.json].
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Secrets file [default: <manifest dir>/<manifest stem>.secrets.json].
    #[arg(long, value_name = "PATH")]
    pub secrets: Option<PathBuf>,
    /// Directory of sealed secrets files [default: <stem>.sealed beside the results file].
    #[arg(long, value_name = "DIR")]
    pub sealed_dir: Option<PathBuf>,
}

impl From<&PathArgs> for StateArgs {
    fn from(p: &PathArgs) -> StateArgs {
        StateArgs {
            results: p.results.clone(),
            secrets: p.secrets.clone(),
            accounts: Vec::new(),
            exclude_accounts: Vec::new(),
            sealed_dir: p.sealed_dir.clone(),
        }
    }
}

impl From<&StateArgs> for StateArgs {
    fn from(s: &StateArgs) -> StateArgs {
        s.clone()
    }
}

/// Sealing: the age recipients secrets are encrypted to (added to the manifest's).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Secrets")]
pub struct SealArgs {
    /// Seal every secret to this age recipient (age1…, a public key); repeatable. No
    /// plaintext secret is then written to disk.
    #[arg(long = "recipient", value_name = "KEY")]
    pub recipients: Vec<String>,
    /// Seal to the recipients listed in this file (age's -R format).
    #[arg(long, value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,
    /// Write secrets in plaintext (the 0600 secrets file) on a state whose secrets are sealed;
    /// without recipients, such a state is refused (exit 2) unless this is given.
    #[arg(long)]
    pub allow_plaintext: bool,
}

/// How fast requests are sent and how often each is tried (plan, apply and verify alike).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate and retries")]
pub struct PaceArgs {
    /// Most requests in flight (overrides settings.concurrency).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Most requests per second (overrides settings.rate_per_second). Apply starts at this rate
    /// (or just under the limit a previous run against the endpoint learned) and slows down
    /// when the server answers 429, never going above it; verify's probes do the same.
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// Most attempts per token (overrides settings.max_attempts).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
}

/// How requests are sent (shared by plan, which checks and shows them, and apply).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate and retries")]
pub struct ExecArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pace: PaceArgs,
    /// Most ambiguous attempts per token (overrides settings.max_ambiguous; default 2). Each
    /// may have created a token that is not recorded; after this many the token is not sent
    /// again and is reported unresolved with its possible orphans.
    #[arg(long, value_name = "N")]
    pub max_ambiguous: Option<u32>,
    /// Send again the tokens whose earlier runs used up the ambiguity budget (their possible
    /// orphans checked in the UI); without it they are not sent until `orphans clear`.
    #[arg(long)]
    pub resend_ambiguous: bool,
}

/// The options `plan` and `apply` share: the API, the state files, how requests are sent.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub api: ApiArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub seal: SealArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub exec: ExecArgs,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifest file.
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: RunArgs,
    /// Show every token, per account, after the counts.
    #[arg(long, help_heading = "Output")]
    pub detail: bool,
    /// Print the plan as one JSON document on stdout (same as --output json).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help_heading = "Output")]
    pub output: OutputFormat,
    /// Exit 0 when there is nothing to create or replace, 2 when there is, 1 on error
    /// (Terraform's convention).
    #[arg(long, help_heading = "Output")]
    pub detailed_exitcode: bool,
    /// Write the plan to this file (no secrets) for a later `apply PLAN_FILE`: it holds the
    /// endpoint, the state files, the recipients, the account filter, the replacements
    /// chosen and every token, and apply does exactly that or refuses.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub choices: ReplaceArgs,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest file, or a plan file written by `plan --out`.
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: RunArgs,
    /// Apply without asking; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Stop at the first token that fails for good.
    #[arg(long)]
    pub fail_fast: bool,
    /// Output format: text (progress and summary on stderr, nothing on stdout) or json (a
    /// line per event on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help_heading = "Output")]
    pub output: OutputFormat,
    /// No progress bar or progress lines.
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,
    /// Print JSON lines on stdout (same as --output json).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub choices: ReplaceArgs,
}

/// Which recorded tokens are replaced (shared by plan, which previews, and apply).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Replacements")]
pub struct ReplaceArgs {
    /// Create a new token under the same name for each token `verify` saw revoked (the old
    /// id is kept in the results file's `superseded`). Same as settings.recreate_revoked.
    #[arg(long)]
    pub recreate_revoked: bool,
    /// Create a successor for every recorded token older than this (`90d`, `12h`, `30m`,
    /// `1s`); the replaced ones are listed for removal by hand. Overrides rotate_after_days.
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub rotate_older_than: Option<std::time::Duration>,
    /// PUT the declared `create` settings of existing sub accounts whose live settings differ
    /// (drift), keeping every field the manifest does not declare. Without it, drift is only
    /// reported. Same as settings.update_accounts. No account is ever deleted.
    #[arg(long)]
    pub update_accounts: bool,
}

/// A token age: a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`90d`, `12h`).
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. `90d`, `12h` or `1s`"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number: write e.g. `90d`"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h, d or w (e.g. `90d`)"
            ));
        }
    };
    match n.checked_mul(seconds) {
        Some(0) => Err("the age must be more than zero".into()),
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
        None => Err(format!("`{text}` is too long")),
    }
}

/// `simulate`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct SimulateArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// The owner account's API token the simulator accepts.
    #[arg(long, default_value = "sim-owner-token", hide_default_value = false)]
    pub owner_token: String,
    /// Sub accounts as a JSON file: [{"id": 1, "name": "a"}, ...] (default: a built-in set).
    #[arg(long, value_name = "PATH")]
    pub accounts: Option<PathBuf>,
    /// Server-side limit, requests per second (answered with 429).
    #[arg(long, value_name = "N")]
    pub max_rps: Option<f64>,
    /// Server-side limit on requests in flight (answered with 429).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Whether limit 429s carry Retry-After.
    #[arg(long, value_enum, default_value_t = RetryAfterArg::None)]
    pub retry_after: RetryAfterArg,
    /// Latency added to every answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Plus a random 0..N milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// A sub account created through the API joins the account list only this many
    /// milliseconds later (reads lag a create, as Logz.io's may).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub account_list_lag_ms: u64,
    /// Seed for faults, jitter and secrets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Probability of a 429 fault on a create call.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_429: f64,
    /// Probability of a 503.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_503: f64,
    /// Probability of a 500 after the token was created.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_500_after_create: f64,
    /// Probability of the connection being dropped before creating.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_drop_before: f64,
    /// Probability of the connection being dropped after creating.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_drop_after: f64,
    /// Probability of a 200 whose body is cut short.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_truncate: f64,
    /// Probability of an answer slower than the client's timeout, after creating.
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Faults")]
    pub fault_slow: f64,
    /// How long a slow answer takes, seconds.
    #[arg(long, default_value_t = 120.0, help_heading = "Faults")]
    pub slow_seconds: f64,
    /// Play another region: every call answers "Account region A differs from current server region S".
    #[arg(long, value_name = "ACCOUNT:SERVER", help_heading = "Faults")]
    pub region_mismatch: Option<String>,
    /// On exit, print the ground truth (every token created, with secrets) to this file (0600).
    #[arg(long, value_name = "PATH")]
    pub dump_on_exit: Option<PathBuf>,
}

/// Retry-After on limit 429s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetryAfterArg {
    /// No header.
    None,
    /// Delay in seconds.
    Seconds,
    /// An HTTP date.
    HttpDate,
}

/// `orphans [list|clear] MANIFEST`: without an action, lists.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OrphansArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<OrphansAction>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub list: OptionalTarget,
}

/// The target of `orphans MANIFEST` without an action.
#[derive(Debug, Args)]
pub struct OptionalTarget {
    /// The manifest file.
    #[arg(required = true)]
    pub manifest: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
}

/// What to do with possible orphans.
#[derive(Debug, Subcommand)]
pub enum OrphansAction {
    /// Print them.
    List(OrphansTarget),
    /// Mark them as checked: print them, then remove them from the results file.
    Clear(OrphansTarget),
}

/// Which state files `orphans` works on.
#[derive(Debug, Args)]
pub struct OrphansTarget {
    /// The manifest file.
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The manifest file (the token must be one it asks for).
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: PathArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub seal: SealArgs,
    /// The sub account's id.
    #[arg(
        long = "account-id",
        value_name = "ID",
        required_unless_present = "from"
    )]
    pub account_id: Option<u32>,
    /// The token's name.
    #[arg(
        long = "token-name",
        value_name = "NAME",
        required_unless_present = "from"
    )]
    pub token_name: Option<String>,
    /// The token's id at Logz.io.
    #[arg(long = "token-id", value_name = "ID", required_unless_present = "from")]
    pub token_id: Option<i64>,
    /// Read the token's secret from this file (first line), to keep it in the secrets file.
    #[arg(long, value_name = "PATH", conflicts_with = "secret_stdin")]
    pub secret_file: Option<PathBuf>,
    /// Read the token's secret from stdin (first line).
    #[arg(long)]
    pub secret_stdin: bool,
    /// Record every token of a JSON export (`export --format json`) instead, with the tokens
    /// each replaced (their ids, successors, verify status and kept secrets).
    #[arg(
        long,
        value_name = "EXPORT",
        conflicts_with_all = ["account_id", "token_name", "token_id", "secret_file", "secret_stdin"]
    )]
    pub from: Option<PathBuf>,
}

/// `forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The manifest file (for the default state file paths).
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: PathArgs,
    /// The sub account's id.
    #[arg(long = "account-id", value_name = "ID")]
    pub account_id: u32,
    /// The token's name.
    #[arg(long = "token-name", value_name = "NAME")]
    pub token_name: String,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The manifest file.
    pub manifest: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
    /// Format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
    /// Write to this file, created 0600.
    #[arg(long, value_name = "PATH", required_unless_present = "stdout")]
    pub out: Option<PathBuf>,
    /// Write to stdout instead (you asked for secrets on your terminal or pipe).
    #[arg(long, conflicts_with = "out")]
    pub stdout: bool,
    /// The age identity file (private key, as `age-keygen` writes it) that opens the sealed
    /// secrets files.
    #[arg(long, value_name = "KEYFILE", env = "LOGZIO_TOKENS_IDENTITY_FILE")]
    pub identity: Option<PathBuf>,
    /// Replace the --out file if it exists (otherwise an existing file is refused).
    #[arg(long, requires = "out")]
    pub force: bool,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest file.
    pub manifest: PathBuf,
    // The endpoint alone: no owner token is sent (each token is probed with its own secret),
    // and no simulator can be started (it would know none of the tokens).
    #[command(flatten)]
    #[allow(missing_docs)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
    // A probe creates nothing: no ambiguity budget, so the pace alone.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pace: PaceArgs,
    /// The age identity file that opens the sealed secrets files (needed when secrets are
    /// sealed: each token is probed with its own secret).
    #[arg(
        long,
        value_name = "KEYFILE",
        env = "LOGZIO_TOKENS_IDENTITY_FILE",
        help_heading = "Secrets"
    )]
    pub identity: Option<PathBuf>,
    /// Output format: text (progress and summary on stderr) or json (a line per token on
    /// stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help_heading = "Output")]
    pub output: OutputFormat,
    /// Print JSON lines on stdout (same as --output json).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// No progress bar or progress lines.
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `[{"kind", "account_id", "account_name"?, "token_name", "token_id", "token"}]`.
    Json,
    /// `account_id,token_name,token_id,token,kind` with a header line (kind: api_token or
    /// shipping_token).
    Csv,
    /// `LOGZIO_TOKEN_<ACCOUNT>_<NAME>='secret'` lines (secrets a shell could misread are refused).
    Dotenv,
}

/// `--region` and `LOGZIO_REGION` take a region's code; clap lists the valid ones on a typo.
impl ValueEnum for Region {
    fn value_variants<'a>() -> &'a [Self] {
        &Region::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.code()))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn ages_take_a_number_and_a_unit() {
        use std::time::Duration;
        assert_eq!(
            super::parse_age("90d"),
            Ok(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(super::parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(super::parse_lag("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(super::parse_lag("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(super::parse_lag("0ms"), Ok(Duration::ZERO));
        for bad in ["300", "3m", "ms", "11000s"] {
            assert!(super::parse_lag(bad).is_err(), "{bad}");
        }
        assert_eq!(super::parse_age("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(super::parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "90",
            "d",
            "0d",
            "1.5d",
            "9y",
            "-1d",
            "99999999999999999999d",
        ] {
            assert!(super::parse_age(bad).is_err(), "{bad}");
        }
    }
}
