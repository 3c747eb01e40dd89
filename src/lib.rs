//! logzio-tokens: provision Logz.io sub-account API tokens in bulk from a YAML manifest.
//!
//! The stages, each in its own module, with dependencies pointing one way:
//!
//! - [`manifest`]: the YAML manifest, loaded and validated with source locations;
//! - [`plan`]: a pure function of (manifest, recorded state) to the actions to take;
//! - [`state`]: the results, secrets and journal files, written durably;
//! - [`api`]: the Logz.io HTTP client and its error classification;
//! - [`execution`]: concurrent, rate-limited, retried execution of a plan;
//! - [`verify`]: probing recorded tokens against the live service;
//! - [`simulator`]: an in-repo stand-in for the Logz.io API, for tests, benchmarks and demos;
//! - [`cli`]: the command line, output and progress.
//!
//! The core (`manifest`, `plan`, `state`, `region`, `recipient`, `secret`, `backoff`) knows
//! nothing of HTTP, terminals or clap.

// The HTTP client times its own requests and jitters the preflight's retries: not part of
// the simulated run (clippy.toml's seams rule is for `state` and `execution`).
#[allow(clippy::disallowed_methods)]
pub mod api;
pub mod backoff;
// Reads input files the user points at (tokens, identities), not the state.
#[allow(clippy::disallowed_methods)]
pub mod bounded;
// The command line reads the user's files and the real clock, and builds the run's seams.
#[allow(clippy::disallowed_methods)]
pub mod cli;
pub mod clock;
pub mod execution;
pub mod fs;
pub mod hardening;
pub mod key;
// Reads the manifest file the user points at.
#[allow(clippy::disallowed_methods)]
pub mod manifest;
pub mod plan;
pub mod random;
// Reads the recipients file the manifest names.
#[allow(clippy::disallowed_methods)]
pub mod recipient;
pub mod region;
pub mod secret;
// The API simulator keeps its own time and randomness (its own process, in a real run).
#[allow(clippy::disallowed_methods)]
pub mod simulator;
pub mod state;
pub mod text;
pub mod timestamp;
// `verify` probes the live service with its own jittered retries, outside the recorder.
#[allow(clippy::disallowed_methods)]
pub mod verify;
