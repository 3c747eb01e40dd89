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
//! The core (`manifest`, `plan`, `state`, `region`, `endpoint`, `recipient`, `secret`,
//! `backoff`) knows nothing of HTTP, terminals or clap.

pub mod api;
pub mod backoff;
pub mod bounded;
pub mod cli;
pub mod endpoint;
pub mod execution;
pub mod hardening;
pub mod manifest;
pub mod plan;
pub mod recipient;
pub mod region;
pub mod secret;
pub mod simulator;
pub mod state;
pub mod text;
pub mod verify;
