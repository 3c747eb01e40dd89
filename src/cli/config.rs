//! Turning arguments, environment and manifest settings into ready-to-use parts (the
//! "high-level" arguments): command-line options win over the manifest, the manifest over the
//! defaults.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::args::{ApiArgs, StateArgs};
use super::error::CliError;
use crate::api::{Endpoint, Region};
use crate::execution::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_AMBIGUOUS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE_PER_SECOND,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
};
use crate::manifest::{self, Manifest, limits};
use crate::plan::AccountFilter;
use crate::secret::Secret;
use crate::state::StatePaths;

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
pub fn resolve_api(args: &ApiArgs, manifest: &Manifest) -> Result<ApiSetup, CliError> {
    let endpoint = if let Some(url) = args.api_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Endpoint::Url(url.trim().to_owned())
    } else if let Some(code) = args.region.as_deref().filter(|c| !c.trim().is_empty()) {
        Endpoint::Region(Region::from_code(code).ok_or_else(|| {
            CliError::usage(format!(
                "unknown region `{code}` (from --region or LOGZIO_REGION); valid regions: {}",
                Region::codes_list()
            ))
        })?)
    } else {
        match &manifest.endpoint {
            Some(manifest::Endpoint::Region(r)) => Endpoint::Region(*r),
            Some(manifest::Endpoint::Url(u)) => Endpoint::Url(u.clone()),
            None => Endpoint::Region(Region::Us),
        }
    };
    if let Endpoint::Url(u) = &endpoint {
        // Same rule as the client, reported before anything else happens.
        crate::api::ApiClient::check_url(u)?;
    }
    let timeout = match args.request_timeout {
        Some(t) => check_range("--request-timeout", t, limits::REQUEST_TIMEOUT_SECONDS)?,
        None => manifest
            .settings
            .request_timeout_seconds
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECONDS),
    };
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

/// The owner token from `--api-token-file` or `LOGZIO_API_TOKEN`.
fn read_token(file: Option<&Path>) -> Result<Option<Secret>, CliError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
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
        let first = text.lines().next().unwrap_or_default().trim();
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
pub fn resolve_exec(
    manifest: &Manifest,
    concurrency: Option<u32>,
    rate: Option<f64>,
    max_attempts: Option<u32>,
    max_ambiguous: Option<u32>,
) -> Result<ExecSettings, CliError> {
    let concurrency = match concurrency {
        Some(c) => check_range_u32("--concurrency", c, limits::CONCURRENCY)?,
        None => manifest.settings.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
    };
    let rate = match rate {
        Some(r) => check_range("--rate", r, limits::RATE_PER_SECOND)?,
        None => manifest
            .settings
            .rate_per_second
            .unwrap_or(DEFAULT_RATE_PER_SECOND),
    };
    let max_attempts = match max_attempts {
        Some(a) => check_range_u32("--max-attempts", a, limits::MAX_ATTEMPTS)?,
        None => manifest
            .settings
            .max_attempts
            .unwrap_or(DEFAULT_MAX_ATTEMPTS),
    };
    let max_ambiguous = match max_ambiguous {
        Some(a) => check_range_u32("--max-ambiguous", a, limits::MAX_AMBIGUOUS)?,
        None => manifest
            .settings
            .max_ambiguous
            .unwrap_or(DEFAULT_MAX_AMBIGUOUS),
    };
    Ok(ExecSettings {
        concurrency,
        rate,
        max_attempts,
        max_ambiguous,
    })
}

fn check_range(name: &str, v: f64, (lo, hi): (f64, f64)) -> Result<f64, CliError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(CliError::usage(format!(
            "{name} {v} is out of range: it must be between {lo} and {hi}"
        )))
    }
}

fn check_range_u32(name: &str, v: u32, (lo, hi): (u32, u32)) -> Result<u32, CliError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(CliError::usage(format!(
            "{name} {v} is out of range: it must be between {lo} and {hi}"
        )))
    }
}

/// The state file paths. Runs against the simulator get their own files by default, so a demo
/// never mixes with real records.
pub fn state_paths(manifest: &Path, args: &StateArgs, simulate: bool) -> StatePaths {
    if simulate && args.results.is_none() && args.secrets.is_none() {
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "manifest".into());
        let fake = manifest.with_file_name(format!("{stem}.simulated.yaml"));
        return StatePaths::for_manifest(&fake, None, None);
    }
    StatePaths::for_manifest(manifest, args.results.as_deref(), args.secrets.as_deref())
}

/// The account filter.
pub fn filter(args: &StateArgs) -> AccountFilter {
    AccountFilter {
        include: args.accounts.clone(),
        exclude: args.exclude_accounts.clone(),
    }
}
