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
    /// Per-request timeout.
    pub request_timeout: Duration,
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
    let endpoint = if let Some(url) = args.api_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Endpoint::Url(url.trim().to_owned())
    } else if let Some(region) = region_arg(args.region)? {
        Endpoint::Region(region)
    } else {
        manifest.endpoint.clone().unwrap_or_default()
    };
    if let Endpoint::Url(u) = &endpoint {
        // Same rule as the client, reported before anything else happens.
        crate::api::ApiClient::check_url(u)?;
    }
    let timeout = setting(
        "--request-timeout",
        args.request_timeout,
        manifest.settings.request_timeout_seconds,
        DEFAULT_REQUEST_TIMEOUT_SECONDS,
        limits::REQUEST_TIMEOUT_SECONDS,
    )?;
    let token = if args.simulate {
        None
    } else {
        read_token(args.api_token_file.as_deref())?
    };
    Ok(ApiSetup {
        endpoint,
        token,
        simulate: args.simulate,
        request_timeout: Duration::from_secs_f64(timeout),
    })
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

/// The owner token from `--api-token-file` or `LOGZIO_API_TOKEN`.
fn read_token(file: Option<&Path>) -> Result<Option<Secret>, CliError> {
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
            tracing::warn!(
                "the API token file {} can be read by other users (mode {:04o}); consider `chmod 600`",
                path.display(),
                meta.mode() & 0o7777
            );
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
}

/// Resolves concurrency, rate and attempts.
fn resolve_exec(manifest: &Manifest, args: &ExecArgs) -> Result<ExecSettings, CliError> {
    let from = &manifest.settings;
    Ok(ExecSettings {
        concurrency: setting(
            "--concurrency",
            args.concurrency,
            from.concurrency,
            DEFAULT_CONCURRENCY,
            limits::CONCURRENCY,
        )?,
        rate: setting(
            "--rate",
            args.rate,
            from.rate_per_second,
            DEFAULT_RATE_PER_SECOND,
            limits::RATE_PER_SECOND,
        )?,
        max_attempts: setting(
            "--max-attempts",
            args.max_attempts,
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
    Ok(Recipients::new(keys))
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
        let recipients = recipients(&manifest, &args.seal)?;
        Ok(RunSettings {
            manifest_path,
            manifest_bytes,
            manifest,
            api,
            exec,
            paths,
            filter: filter(&args.state),
            recipients,
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
}

impl PlanSettings {
    /// Resolves `plan`'s arguments.
    pub fn resolve(args: &PlanArgs) -> Result<PlanSettings, CliError> {
        let bytes = manifest::read(&args.manifest)?;
        Ok(PlanSettings {
            run: RunSettings::resolve(args.manifest.clone(), bytes, &args.run)?,
            detail: args.detail,
            json: args.json || args.output == OutputFormat::Json,
            detailed_exitcode: args.detailed_exitcode,
            out: args.out.clone(),
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
        let (manifest_path, manifest_bytes) = match &saved_plan {
            Some(plan) => (plan.manifest.clone(), manifest::read(&plan.manifest)?),
            None => (args.manifest.clone(), first),
        };
        let run = RunSettings::resolve(manifest_path, manifest_bytes, &args.run)?;
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
            json: args.output == OutputFormat::Json,
            no_progress: args.no_progress,
            recreate_revoked: args.recreate_revoked
                || run.manifest.settings.recreate_revoked == Some(true),
            rotate_older_than: args.rotate_older_than,
            update_accounts: args.update_accounts
                || run.manifest.settings.update_accounts == Some(true),
            account_lookup: run.manifest.settings.account_lookup_seconds.map_or(
                crate::execution::accounts::DEFAULT_ACCOUNT_LOOKUP,
                Duration::from_secs_f64,
            ),
            run,
        })
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
        if args.api.simulate {
            return Err(CliError::usage(
                "verify probes the tokens an API issued; --simulate would start a new simulator that knows none of them. Point --api-url at the simulator that created them instead",
            ));
        }
        let bytes = manifest::read(&args.manifest)?;
        let run_args = RunArgs {
            api: args.api.clone(),
            state: args.state.clone(),
            seal: SealArgs {
                recipients: Vec::new(),
                recipients_file: None,
            },
            exec: args.exec.clone(),
        };
        Ok(VerifySettings {
            run: RunSettings::resolve(args.manifest.clone(), bytes, &run_args)?,
            identity: args.identity.clone(),
            json: args.output == OutputFormat::Json,
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
    pub fn resolve(manifest_path: &Path, state: &StateArgs) -> Result<StateSettings, CliError> {
        Ok(StateSettings {
            manifest_path: manifest_path.to_owned(),
            manifest: manifest::load(manifest_path)?,
            paths: state_paths(manifest_path, state, false),
            filter: filter(state),
        })
    }
}
