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
pub mod endpoint;
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
pub mod reintroduced;
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

#[cfg(test)]
mod layering {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]

    /// The core modules import nothing from the layers above them (the API client, the
    /// executor, the command line), nor an HTTP or command-line crate.
    #[test]
    fn the_core_imports_nothing_from_above() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for core in ["manifest", "plan", "state"] {
            let mut dirs = vec![root.join(core)];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if path.extension().is_some_and(|e| e == "rs") {
                        files.push(path);
                    }
                }
            }
        }
        for single in [
            "region.rs",
            "endpoint.rs",
            "recipient.rs",
            "secret.rs",
            "backoff.rs",
        ] {
            files.push(root.join(single));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for upward in [
                "crate::api",
                "crate::cli",
                "crate::execution",
                "crate::simulator",
                "reqwest::",
                "clap::",
            ] {
                assert!(
                    !text.contains(upward),
                    "{} uses `{upward}`: the core must not depend on it",
                    file.display()
                );
            }
        }
    }
}
