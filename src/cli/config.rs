//! Turning arguments, environment and manifest settings into ready-to-use settings (the
//! "high-level" arguments, as ripgrep's `HiArgs` to [`super::args`]' `LowArgs`): each command
//! resolves its arguments once, here, into one value ([`PlanSettings`], [`ApplySettings`],
//! [`StateSettings`]) and hands that down. Command-line options win over the manifest, the
//! manifest over the defaults; every check that can fail before anything is sent fails here.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{
    ApiArgs, ApplyArgs, ExecArgs, OutputFormat, PlanArgs, RunArgs, SealArgs, StateArgs, VerifyArgs,
};
use super::error::CliError;
use crate::api::{Endpoint, Region};
use crate::execution::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_AMBIGUOUS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE_PER_SECOND,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
};
use crate::manifest::{self, Manifest, limits};
use crate::plan::{AccountFilter, SavedPlan};
use crate::secret::Secret;
use crate::state::StatePaths;
use crate::state::sealed::Recipients;

/// The identity recorded in results files made against the built-in simulator.
pub const SIMULATOR_IDENTITY: &str = "simulator";

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct ApiSetup {
    /// The endpoint (ignored with `simulate`, which starts its own).
    pub endpoint: Endpoint,
    /// The owner token, when one was given.
    pub token: Option<Secret>,
    /// Run against the built-in simulator.
    pub simulate: bool,
    /// The built-in simulator's account list lag (`--simulate-list-lag`).
    pub simulate_list_lag: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Where the endpoint came from (precedence: flag > environment > manifest > default).
    pub source: EndpointSource,
    /// Warnings found while resolving (a token file other users can read).
    pub warnings: Vec<String>,
}

/// Where the endpoint came from: the first of the command line, the environment, the
/// manifest and the default that sets one (or the saved plan, for `apply PLAN_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// `--api-url`, `--region` or `--simulate`.
    Flag(&'static str),
    /// `LOGZIO_API_URL` or `LOGZIO_REGION`.
    Env(&'static str),
    /// The manifest's `region` or `api_url`.
    Manifest,
    /// The `us` region, for want of any other.
    Default,
    /// The saved plan given to `apply`.
    Plan,
}

impl EndpointSource {
    /// For machines: the flag or variable, `manifest`, `default`, `plan`.
    pub fn key(&self) -> String {
        match self {
            EndpointSource::Flag(n) | EndpointSource::Env(n) => (*n).to_owned(),
            EndpointSource::Manifest => "manifest".into(),
            EndpointSource::Default => "default".into(),
            EndpointSource::Plan => "plan".into(),
        }
    }
}

impl std::fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointSource::Flag(flag) | EndpointSource::Env(flag) => write!(f, "from {flag}"),
            EndpointSource::Manifest => f.write_str("from the manifest"),
            EndpointSource::Default => f.write_str("the default region"),
            EndpointSource::Plan => f.write_str("from the saved plan"),
        }
    }
}

impl ApiSetup {
    /// A warning when the owner token goes to a host that is not a Logz.io API host (a proxy
    /// or a typo), naming the host; none for regions, loopback and the simulator.
    pub fn foreign_host_warning(&self) -> Option<String> {
        if self.simulate {
            return None;
        }
        let Endpoint::Url(url) = &self.endpoint else {
            return None;
        };
        crate::api::endpoint::foreign_host(url).map(|host| {
            format!(
                "the API URL's host {host} is not a Logz.io API host (api*.logz.io): the owner token is sent to it; check that it is your proxy"
            )
        })
    }

    /// Every warning about this setup, each once: resolving's, then the foreign host's.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut all = self.warnings.clone();
        all.extend(self.foreign_host_warning());
        all
    }

    /// The endpoint for people, with where it came from: `https://api.logz.io (from
    /// LOGZIO_API_URL)`, or the built-in simulator.
    pub fn describe(&self) -> String {
        if self.simulate {
            "the built-in simulator".to_owned()
        } else {
            format!("{} ({})", self.endpoint.base_url(), self.source)
        }
    }

    /// The name the results file records for this endpoint.
    pub fn identity(&self) -> String {
        if self.simulate {
            SIMULATOR_IDENTITY.to_owned()
        } else {
            self.endpoint.base_url()
        }
    }
}

/// Resolves the endpoint, token and timeout.
fn resolve_api(args: &ApiArgs, manifest: &Manifest) -> Result<ApiSetup, CliError> {
    let env_url = std::env::var("LOGZIO_API_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let (endpoint, source) = if args.simulate {
        (Endpoint::default(), EndpointSource::Flag("--simulate"))
    } else if let Some(url) = args
        .endpoint
        .api_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        (
            Endpoint::Url(url.trim().to_owned()),
            EndpointSource::Flag("--api-url"),
        )
    } else if let Some(region) = args.endpoint.region {
        (Endpoint::Region(region), EndpointSource::Flag("--region"))
    } else if let Some(url) = env_url {
        (
            Endpoint::Url(url.trim().to_owned()),
            EndpointSource::Env("LOGZIO_API_URL"),
        )
    } else if let Some(region) = region_arg(None)? {
        (
            Endpoint::Region(region),
            EndpointSource::Env("LOGZIO_REGION"),
        )
    } else if let Some(e) = manifest.endpoint.clone() {
        (e, EndpointSource::Manifest)
    } else {
        (Endpoint::default(), EndpointSource::Default)
    };
    if let Endpoint::Url(u) = &endpoint {
        // Same rule as the client, reported before anything else happens.
        crate::api::ApiClient::check_url(u)?;
    }
    let timeout = setting(
        "--request-timeout",
        args.endpoint.request_timeout,
        manifest.settings.request_timeout_seconds,
        DEFAULT_REQUEST_TIMEOUT_SECONDS,
        limits::REQUEST_TIMEOUT_SECONDS,
    )?;
    let mut warnings = Vec::new();
    let token = if args.simulate {
        None
    } else {
        token_from(args.api_token_file.as_deref(), &mut warnings)?
    };
    Ok(ApiSetup {
        endpoint,
        token,
        simulate: args.simulate,
        simulate_list_lag: args.simulate_list_lag.unwrap_or_default(),
        request_timeout: Duration::from_secs_f64(timeout),
        source,
        warnings,
    })
}

/// The endpoint identity a command without API flags (`import`) binds the state to:
/// `LOGZIO_API_URL`, else `LOGZIO_REGION`, else the manifest's, else the default region.
pub fn endpoint_identity(manifest: &Manifest) -> Result<String, CliError> {
    let url = std::env::var("LOGZIO_API_URL").ok();
    let endpoint = if let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) {
        crate::api::ApiClient::check_url(url.trim())?;
        Endpoint::Url(url.trim().to_owned())
    } else if let Some(region) = region_arg(None)? {
        Endpoint::Region(region)
    } else {
        manifest.endpoint.clone().unwrap_or_default()
    };
    Ok(endpoint.base_url())
}

/// `--region`, else a non-empty `LOGZIO_REGION`, read with the same parser (clap's).
fn region_arg(flag: Option<Region>) -> Result<Option<Region>, CliError> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var("LOGZIO_REGION") {
        Ok(code) if !code.trim().is_empty() => {
            <Region as clap::ValueEnum>::from_str(code.trim(), true)
                .map(Some)
                .map_err(|_| {
                    CliError::usage(format!(
                        "unknown region `{}` in LOGZIO_REGION; valid regions: {}",
                        code.trim(),
                        Region::codes_list()
                    ))
                })
        }
        _ => Ok(None),
    }
}

/// The owner token from `--api-token-file` or `LOGZIO_API_TOKEN`, noting a token file other
/// users can read in `warnings`.
fn token_from(file: Option<&Path>, warnings: &mut Vec<String>) -> Result<Option<Secret>, CliError> {
    if let Some(path) = file {
        // A regular file, read only up to its first line's end and a size cap (`/dev/zero`
        // or a FIFO would exhaust memory or hang).
        let first = crate::bounded::open_regular(path, crate::bounded::Symlinks::Follow)
            .and_then(|f| {
                crate::bounded::read_first_line(
                    std::io::BufReader::new(f),
                    crate::bounded::MAX_SECRET_BYTES,
                )
            })
            .map_err(|e| {
                CliError::usage(format!(
                    "cannot read the API token file {}: {e}",
                    path.display()
                ))
            })?;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.mode() & 0o077 != 0
        {
            warnings.push(format!(
                "the API token file {} can be read by other users (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                meta.mode() & 0o7777,
                crate::cli::output::shell_quote(&path.display().to_string())
            ));
        }
        let first = first.trim();
        if first.is_empty() {
            return Err(CliError::usage(format!(
                "the API token file {} is empty; its first line must hold the owner account's API token",
                path.display()
            )));
        }
        return Ok(Some(Secret::new(first)));
    }
    match std::env::var("LOGZIO_API_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(Secret::new(t.trim()))),
        _ => Ok(None),
    }
}

/// Execution settings after precedence.
#[derive(Debug, Clone, Copy)]
pub struct ExecSettings {
    /// Most requests in flight.
    pub concurrency: u32,
    /// Rate ceiling.
    pub rate: f64,
    /// Attempts per token.
    pub max_attempts: u32,
    /// Ambiguous attempts per token.
    pub max_ambiguous: u32,
    /// `--resend-ambiguous`: earlier runs' ambiguous attempts do not count.
    pub resend_ambiguous: bool,
}

/// Resolves concurrency, rate and attempts.
fn resolve_exec(manifest: &Manifest, args: &ExecArgs) -> Result<ExecSettings, CliError> {
    let from = &manifest.settings;
    Ok(ExecSettings {
        concurrency: setting(
            "--concurrency",
            args.pace.concurrency,
            from.concurrency,
            DEFAULT_CONCURRENCY,
            limits::CONCURRENCY,
        )?,
        rate: setting(
            "--rate",
            args.pace.rate,
            from.rate_per_second,
            DEFAULT_RATE_PER_SECOND,
            limits::RATE_PER_SECOND,
        )?,
        max_attempts: setting(
            "--max-attempts",
            args.pace.max_attempts,
            from.max_attempts,
            DEFAULT_MAX_ATTEMPTS,
            limits::MAX_ATTEMPTS,
        )?,
        max_ambiguous: setting(
            "--max-ambiguous",
            args.max_ambiguous,
            from.max_ambiguous,
            DEFAULT_MAX_AMBIGUOUS,
            limits::MAX_AMBIGUOUS,
        )?,
        resend_ambiguous: args.resend_ambiguous,
    })
}

/// A setting: the command line's value, checked against `range` (NaN and infinities fail it),
/// else the manifest's (checked by the validator against the same range), else the default.
fn setting<T: PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    arg: Option<T>,
    manifest: Option<T>,
    default: T,
    (lo, hi): (T, T),
) -> Result<T, CliError> {
    match arg {
        Some(v) if v >= lo && v <= hi => Ok(v),
        Some(v) => Err(CliError::usage(format!(
            "{flag} {v} is out of range: it must be between {lo} and {hi}"
        ))),
        None => Ok(manifest.unwrap_or(default)),
    }
}

/// The state file paths. Runs against the simulator get their own files by default, so a demo
/// never mixes with real records.
fn state_paths(manifest: &Path, args: &StateArgs, simulate: bool) -> StatePaths {
    if simulate && args.results.is_none() && args.secrets.is_none() {
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "manifest".into());
        let fake = manifest.with_file_name(format!("{stem}.simulated.yaml"));
        return StatePaths::for_manifest(&fake, None, None)
            .with_sealed_dir(args.sealed_dir.as_deref());
    }
    StatePaths::for_manifest(manifest, args.results.as_deref(), args.secrets.as_deref())
        .with_sealed_dir(args.sealed_dir.as_deref())
}

/// The recipients secrets are sealed to: the manifest's and the command line's together.
/// `None` for plaintext secrets.
pub fn recipients(manifest: &Manifest, args: &SealArgs) -> Result<Option<Recipients>, CliError> {
    Ok(recipient_keys(manifest, args)?.0)
}

/// [`recipients`], and each recipient's canonical text, sorted, once.
fn recipient_keys(
    manifest: &Manifest,
    args: &SealArgs,
) -> Result<(Option<Recipients>, Vec<String>), CliError> {
    let mut keys = Vec::new();
    for text in manifest.recipients.iter().chain(&args.recipients) {
        let key = crate::recipient::parse_recipient(text)
            .map_err(|e| CliError::usage(format!("--recipient: {e}")))?;
        keys.push(key);
    }
    if let Some(path) = &args.recipients_file {
        let more = crate::recipient::read_recipients_file(path)
            .map_err(|e| CliError::usage(format!("--recipients-file: {e}")))?;
        keys.extend(more);
    }
    let mut text: Vec<String> = keys.iter().map(ToString::to_string).collect();
    text.sort();
    text.dedup();
    Ok((Recipients::new(keys), text))
}

/// The account filter.
fn filter(args: &StateArgs) -> AccountFilter {
    AccountFilter {
        include: args.accounts.clone(),
        exclude: args.exclude_accounts.clone(),
    }
}

/// What `plan` and `apply` both need, resolved once.
#[derive(Debug)]
pub struct RunSettings {
    /// The manifest file (for `apply PLAN_FILE`, the one the plan names).
    pub manifest_path: PathBuf,
    /// The manifest's bytes, read once: it may come from a pipe, and a saved plan holds their
    /// digest.
    pub manifest_bytes: Vec<u8>,
    /// The validated manifest.
    pub manifest: Manifest,
    /// Where and how to reach the API.
    pub api: ApiSetup,
    /// Concurrency, rate and attempts.
    pub exec: ExecSettings,
    /// The state files.
    pub paths: StatePaths,
    /// `--account` / `--exclude-account`.
    pub filter: AccountFilter,
    /// The recipients secrets are sealed to (manifest and command line); `None`: plaintext.
    pub recipients: Option<Recipients>,
    /// `--allow-plaintext`: run without recipients on a state whose secrets are sealed.
    pub allow_plaintext: bool,
    /// The recipients' canonical text, sorted (empty: plaintext).
    pub recipient_keys: Vec<String>,
    /// The arguments as given (a saved plan records the choices among them).
    pub args: RunArgs,
}

impl RunSettings {
    /// The options of this run that a pasted command needs to reach the same state files
    /// and the same API: every path flag not at its default, shell-quoted.
    pub fn path_flags(&self) -> Vec<String> {
        let mut flags = self.state_flags();
        if let Some(f) = &self.args.api.api_token_file {
            flags.push(format!("--api-token-file {}", quote_path(f)));
        }
        flags
    }

    /// The state file flags (`--results`, `--secrets`, `--sealed-dir`) of this run that are
    /// not at their defaults, shell-quoted: what `orphans`, `export` and `verify` need.
    pub fn state_flags(&self) -> Vec<String> {
        // The commands these flags go to take no `--simulate`: a simulated run's files are
        // named explicitly.
        let defaults = state_paths(&self.manifest_path, &no_state_args(), false);
        // The sealed directory's default sits beside the results file, wherever that is.
        let mut beside = no_state_args();
        beside.results = Some(self.paths.results.clone());
        let sealed_default = state_paths(&self.manifest_path, &beside, false).sealed;
        let mut flags = Vec::new();
        for (flag, now, default) in [
            ("--results", &self.paths.results, &defaults.results),
            ("--secrets", &self.paths.secrets, &defaults.secrets),
            ("--sealed-dir", &self.paths.sealed, &sealed_default),
        ] {
            if now != default {
                flags.push(format!("{flag} {}", quote_path(now)));
            }
        }
        flags
    }
}

/// State arguments with nothing given.
fn no_state_args() -> StateArgs {
    StateArgs {
        results: None,
        secrets: None,
        accounts: Vec::new(),
        exclude_accounts: Vec::new(),
        sealed_dir: None,
    }
}

/// A path as a shell word.
pub fn quote_path(p: &Path) -> String {
    super::output::shell_quote(&p.display().to_string())
}

/// A command a person can paste: `logzio-tokens SUB MANIFEST FLAGS…`.
pub fn command_line(sub: &str, manifest: &Path, flags: &[String]) -> String {
    let mut s = format!("logzio-tokens {sub} {}", quote_path(manifest));
    for f in flags {
        s.push(' ');
        s.push_str(f);
    }
    s
}

impl RunSettings {
    /// Configuration first: nothing is sent before the whole manifest and every option is valid.
    fn resolve(
        manifest_path: PathBuf,
        manifest_bytes: Vec<u8>,
        args: &RunArgs,
    ) -> Result<RunSettings, CliError> {
        let manifest = load_manifest(&manifest_path, &manifest_bytes)?;
        let exec = resolve_exec(&manifest, &args.exec)?;
        let api = resolve_api(&args.api, &manifest)?;
        let paths = state_paths(&manifest_path, &args.state, api.simulate);
        let (recipients, recipient_keys) = recipient_keys(&manifest, &args.seal)?;
        Ok(RunSettings {
            manifest_path,
            manifest_bytes,
            manifest,
            api,
            exec,
            paths,
            filter: filter(&args.state),
            recipients,
            allow_plaintext: args.seal.allow_plaintext,
            recipient_keys,
            args: args.clone(),
        })
    }
}

/// Loads a manifest from bytes read once.
fn load_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, CliError> {
    Ok(manifest::load_bytes(path, bytes, &|name| {
        std::env::var(name).ok()
    })?)
}

/// `plan`, resolved.
#[derive(Debug)]
pub struct PlanSettings {
    /// Shared with apply: checked here as apply would, so a plan never passes options that
    /// apply then refuses.
    pub run: RunSettings,
    /// Every token, per account, after the counts.
    pub detail: bool,
    /// One JSON document on stdout instead of text.
    pub json: bool,
    /// Terraform's exit codes.
    pub detailed_exitcode: bool,
    /// Where to save the plan.
    pub out: Option<PathBuf>,
    /// Recreate tokens verify saw revoked (`--recreate-revoked` or the manifest's setting).
    pub recreate_revoked: bool,
    /// `--rotate-older-than`: overrides every `rotate_after_days` of the manifest.
    pub rotate_older_than: Option<Duration>,
}

impl PlanSettings {
    /// Resolves `plan`'s arguments.
    pub fn resolve(args: &PlanArgs) -> Result<PlanSettings, CliError> {
        let bytes = manifest::read(&args.manifest)?;
        let run = RunSettings::resolve(args.manifest.clone(), bytes, &args.run)?;
        Ok(PlanSettings {
            detail: args.detail,
            json: args.json || args.output == OutputFormat::Json,
            detailed_exitcode: args.detailed_exitcode,
            out: args.out.clone(),
            recreate_revoked: args.choices.recreate_revoked
                || run.manifest.settings.recreate_revoked == Some(true),
            rotate_older_than: args.choices.rotate_older_than,
            run,
        })
    }
}

/// `apply`, resolved.
#[derive(Debug)]
pub struct ApplySettings {
    /// The manifest (the saved plan's, for `apply PLAN_FILE`), endpoint, state files.
    pub run: RunSettings,
    /// The plan given instead of a manifest, checksum verified.
    pub saved_plan: Option<SavedPlan>,
    /// No prompt.
    pub yes: bool,
    /// Stop at the first token that fails for good.
    pub fail_fast: bool,
    /// JSON lines on stdout instead of text.
    pub json: bool,
    /// No progress display.
    pub no_progress: bool,
    /// Recreate tokens verify saw revoked (`--recreate-revoked` or the manifest's setting).
    pub recreate_revoked: bool,
    /// `--rotate-older-than`: overrides every `rotate_after_days` of the manifest.
    pub rotate_older_than: Option<Duration>,
    /// PUT the declared settings of drifted accounts (`--update-accounts` or the manifest's).
    pub update_accounts: bool,
    /// How long to look for an account after an ambiguous create.
    pub account_lookup: Duration,
}

impl ApplySettings {
    /// Resolves `apply`'s arguments; refuses a run without a token or a way to confirm.
    pub fn resolve(args: &ApplyArgs) -> Result<ApplySettings, CliError> {
        // Read once: the manifest may come from a pipe. It may also be a plan saved by `plan --out`.
        let first = manifest::read(&args.manifest)?;
        let saved_plan =
            SavedPlan::parse(&args.manifest, &first).map_err(|e| CliError::usage(e.to_string()))?;
        let (run, recreate_revoked, rotate_older_than) = match &saved_plan {
            Some(plan) => {
                let bytes = manifest::read(&plan.manifest)?;
                let merged = plan_args(plan, &args.manifest, args)?;
                let mut run = RunSettings::resolve(plan.manifest.clone(), bytes, &merged)?;
                plan_endpoint(plan, &args.manifest, &mut run)?;
                (
                    run,
                    plan.recreate_revoked,
                    plan.rotate_older_than_seconds.map(Duration::from_secs),
                )
            }
            None => {
                let run = RunSettings::resolve(args.manifest.clone(), first, &args.run)?;
                let recreate = args.choices.recreate_revoked
                    || run.manifest.settings.recreate_revoked == Some(true);
                (run, recreate, args.choices.rotate_older_than)
            }
        };
        if run.api.token.is_none() && !run.api.simulate {
            return Err(CliError::usage(
                "no API token: set LOGZIO_API_TOKEN (or pass --api-token-file PATH) to the main account's API token; \
                 to try the tool without one, add --simulate",
            ));
        }
        if !args.yes && !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively",
            ));
        }
        Ok(ApplySettings {
            saved_plan,
            yes: args.yes,
            fail_fast: args.fail_fast,
            json: args.json || args.output == OutputFormat::Json,
            no_progress: args.no_progress,
            recreate_revoked,
            rotate_older_than,
            update_accounts: args.choices.update_accounts
                || run.manifest.settings.update_accounts == Some(true),
            account_lookup: run.manifest.settings.account_lookup_seconds.map_or(
                crate::execution::accounts::DEFAULT_ACCOUNT_LOOKUP,
                Duration::from_secs_f64,
            ),
            run,
        })
    }
}

/// A flag given to `apply PLAN_FILE` that says otherwise than the plan: refused, since the
/// plan is what was reviewed.
fn contradiction(plan_file: &Path, flag: &str, given: &str, planned: &str) -> CliError {
    CliError::usage(format!(
        "`{flag}` {given} contradicts the plan {}, which uses {planned}: the plan is applied as it was made. Drop the flag, or make a new plan with it",
        plan_file.display()
    ))
}

/// Whether two paths name the same file: as written, or once resolved.
fn same_path(a: &Path, b: &Path) -> bool {
    let lexical = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    a == b
        || lexical(a) == lexical(b)
        || match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// The run arguments of `apply PLAN_FILE`: the plan's choices (files, recipients, accounts,
/// endpoint kind), after refusing every flag that contradicts one of them.
fn plan_args(plan: &SavedPlan, plan_file: &Path, args: &ApplyArgs) -> Result<RunArgs, CliError> {
    let given = &args.run;
    let no = |what: &str| format!("none ({what})");
    for (flag, value, planned) in [
        ("--results", &given.state.results, &plan.results),
        ("--secrets", &given.state.secrets, &plan.secrets),
        ("--sealed-dir", &given.state.sealed_dir, &plan.sealed_dir),
    ] {
        if let Some(v) = value
            && !same_path(v, planned)
        {
            return Err(contradiction(
                plan_file,
                flag,
                &v.display().to_string(),
                &planned.display().to_string(),
            ));
        }
    }
    let texts = |refs: &[crate::plan::AccountRef]| -> Vec<String> {
        refs.iter().map(|r| r.as_str().to_owned()).collect()
    };
    for (flag, value, planned) in [
        ("--account", texts(&given.state.accounts), &plan.accounts),
        (
            "--exclude-account",
            texts(&given.state.exclude_accounts),
            &plan.exclude_accounts,
        ),
    ] {
        if !value.is_empty() && &value != planned {
            let planned = if planned.is_empty() {
                no("every account of the manifest")
            } else {
                planned.join(", ")
            };
            return Err(contradiction(plan_file, flag, &value.join(", "), &planned));
        }
    }
    if !given.seal.recipients.is_empty() {
        let mut now = Vec::new();
        for r in &given.seal.recipients {
            let key = crate::recipient::parse_recipient(r)
                .map_err(|e| CliError::usage(format!("--recipient: {e}")))?;
            now.push(key.to_string());
        }
        let mut planned: Vec<String> = Vec::new();
        for r in &plan.recipient_args {
            if let Ok(k) = crate::recipient::parse_recipient(r) {
                planned.push(k.to_string());
            }
        }
        now.sort();
        planned.sort();
        if now != planned {
            return Err(contradiction(
                plan_file,
                "--recipient",
                &now.join(", "),
                &if planned.is_empty() {
                    no("no --recipient")
                } else {
                    planned.join(", ")
                },
            ));
        }
    }
    if let Some(f) = &given.seal.recipients_file
        && !plan
            .recipients_file
            .as_deref()
            .is_some_and(|p| same_path(f, p))
    {
        return Err(contradiction(
            plan_file,
            "--recipients-file",
            &f.display().to_string(),
            &plan
                .recipients_file
                .as_ref()
                .map_or(no("no --recipients-file"), |p| p.display().to_string()),
        ));
    }
    if args.choices.recreate_revoked && !plan.recreate_revoked {
        return Err(contradiction(
            plan_file,
            "--recreate-revoked",
            "",
            "no recreation of revoked tokens",
        ));
    }
    if let Some(age) = args.choices.rotate_older_than
        && plan.rotate_older_than_seconds != Some(age.as_secs())
    {
        return Err(contradiction(
            plan_file,
            "--rotate-older-than",
            &crate::plan::format_age(age.as_secs()),
            &plan
                .rotate_older_than_seconds
                .map_or(no("the manifest's rotate_after_days"), |s| {
                    crate::plan::format_age(s)
                }),
        ));
    }
    let simulator = plan.endpoint == SIMULATOR_IDENTITY;
    if given.api.simulate && !simulator {
        return Err(contradiction(
            plan_file,
            "--simulate",
            "",
            &format!("the endpoint {}", plan.endpoint),
        ));
    }
    let mut merged = given.clone();
    merged.api.simulate = simulator;
    merged.state.results = Some(plan.results.clone());
    merged.state.secrets = Some(plan.secrets.clone());
    merged.state.sealed_dir = Some(plan.sealed_dir.clone());
    merged.state.accounts = plan.accounts.iter().map(|t| t.as_str().into()).collect();
    merged.state.exclude_accounts = plan
        .exclude_accounts
        .iter()
        .map(|t| t.as_str().into())
        .collect();
    merged.seal.recipients = plan.recipient_args.clone();
    merged.seal.recipients_file = plan.recipients_file.clone();
    Ok(merged)
}

/// `apply PLAN_FILE`'s endpoint: the plan's. An endpoint given on the command line or in the
/// environment must be the plan's; one from the manifest or the default yields to it.
fn plan_endpoint(
    plan: &SavedPlan,
    plan_file: &Path,
    run: &mut RunSettings,
) -> Result<(), CliError> {
    if run.api.simulate {
        run.api.source = EndpointSource::Plan;
        return Ok(());
    }
    let now = run.api.identity();
    match &run.api.source {
        EndpointSource::Flag(name) | EndpointSource::Env(name) if now != plan.endpoint => {
            Err(contradiction(
                plan_file,
                name,
                &now,
                &format!("the endpoint {}", plan.endpoint),
            ))
        }
        EndpointSource::Flag(_) | EndpointSource::Env(_) => Ok(()),
        _ => {
            if now != plan.endpoint {
                crate::api::ApiClient::check_url(&plan.endpoint)?;
                run.api.endpoint = Endpoint::Url(plan.endpoint.clone());
                run.api.source = EndpointSource::Plan;
            }
            Ok(())
        }
    }
}

/// `verify`, resolved.
#[derive(Debug)]
pub struct VerifySettings {
    /// The manifest, endpoint, state files, concurrency and rate (its recipients unused).
    pub run: RunSettings,
    /// The age identity file for sealed secrets.
    pub identity: Option<PathBuf>,
    /// JSON lines on stdout instead of text.
    pub json: bool,
    /// No progress display.
    pub no_progress: bool,
}

impl VerifySettings {
    /// Resolves `verify`'s arguments. The owner token is not needed: each token is probed
    /// with its own secret.
    pub fn resolve(args: &VerifyArgs) -> Result<VerifySettings, CliError> {
        let bytes = manifest::read(&args.manifest)?;
        let run_args = RunArgs {
            api: ApiArgs {
                endpoint: args.endpoint.clone(),
                api_token_file: None,
                simulate: false,
                simulate_list_lag: None,
            },
            state: args.state.clone(),
            seal: SealArgs {
                recipients: Vec::new(),
                recipients_file: None,
                allow_plaintext: false,
            },
            exec: ExecArgs {
                pace: args.pace.clone(),
                max_ambiguous: None,
                resend_ambiguous: false,
            },
        };
        Ok(VerifySettings {
            run: RunSettings::resolve(args.manifest.clone(), bytes, &run_args)?,
            identity: args.identity.clone(),
            json: args.json || args.output == OutputFormat::Json,
            no_progress: args.no_progress,
        })
    }
}

/// `orphans`, `import` and `export`, resolved: they read the manifest and the state files,
/// and never reach the API.
#[derive(Debug)]
pub struct StateSettings {
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The state files.
    pub paths: StatePaths,
    /// `--account` / `--exclude-account`.
    pub filter: AccountFilter,
}

impl StateSettings {
    /// Resolves the manifest and state arguments of a state command.
    pub fn resolve<'a>(
        manifest_path: &Path,
        state: impl Into<StateArgs> + 'a,
    ) -> Result<StateSettings, CliError> {
        let state: StateArgs = state.into();
        let state = &state;
        Ok(StateSettings {
            manifest_path: manifest_path.to_owned(),
            manifest: manifest::load(manifest_path)?,
            paths: state_paths(manifest_path, state, false),
            filter: filter(state),
        })
    }
}
