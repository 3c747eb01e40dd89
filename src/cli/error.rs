//! The CLI's errors and the exit code each maps to (the contract's table).

use std::process::ExitCode;

use crate::api::ApiError;
use crate::manifest::ManifestError;
use crate::state::StateError;

/// How a command ended. Several endings share a documented code ([`Exit::code`]); each has
/// its own variant so that code reads as what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every desired token is recorded (or, for `plan --detailed-exitcode`, nothing to create).
    Success,
    /// Finished, but some items failed or stayed unresolved.
    ItemsFailed,
    /// Usage, manifest or configuration error: nothing was sent.
    Usage,
    /// `plan --detailed-exitcode`: there are tokens to create (Terraform's "changes present").
    ChangesPresent,
    /// The person at the prompt did not confirm: nothing was sent.
    Declined,
    /// Fatal runtime error: stopped early, all received secrets saved.
    Fatal,
    /// Interrupted (Ctrl-C).
    Interrupted,
}

impl Exit {
    /// The documented process exit code (README, "Exit codes").
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::ItemsFailed => 1,
            Exit::Usage | Exit::ChangesPresent | Exit::Declined => 2,
            Exit::Fatal => 3,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The manifest is invalid (its Display is the full located report).
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// A configuration or usage problem.
    #[error("{message}")]
    Usage {
        /// What is wrong and what to do.
        message: String,
    },
    /// The state files.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file of the command's own (a plan, an export).
    #[error(transparent)]
    File(#[from] crate::fs::FileError),
    /// An API error before any write (preflight).
    #[error("{0}")]
    Api(#[from] ApiError),
    /// Another fatal runtime problem.
    #[error("{message}")]
    Fatal {
        /// What happened.
        message: String,
    },
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage {
            message: message.into(),
        }
    }

    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Manifest(_) | CliError::Usage { .. } => Exit::Usage,
            CliError::State(StateError::OtherEndpoint { .. }) => Exit::Usage,
            // Another endpoint's file or journal, or a sealed state without recipients: a
            // configuration error, found before anything was sent.
            CliError::State(StateError::Broken {
                violation:
                    crate::state::invariants::promises::Violation::OtherEndpoint { .. }
                    | crate::state::invariants::promises::Violation::ProtectionDropped(_),
                ..
            }) => Exit::Usage,
            // A file that is there and not to be replaced without --force: the user's choice
            // of path, a usage error (nothing was written).
            CliError::State(StateError::Exists { .. })
            | CliError::File(crate::fs::FileError::Exists { .. }) => Exit::Usage,
            CliError::State(_) | CliError::File(_) | CliError::Fatal { .. } => Exit::Fatal,
            CliError::Api(e) => match e {
                ApiError::InsecureUrl { .. }
                | ApiError::InvalidUrl { .. }
                | ApiError::InvalidToken => Exit::Usage,
                _ => Exit::Fatal,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn each_ending_maps_to_its_documented_code() {
        for (exit, code) in [
            (Exit::Success, 0),
            (Exit::ItemsFailed, 1),
            (Exit::Usage, 2),
            (Exit::ChangesPresent, 2),
            (Exit::Declined, 2),
            (Exit::Fatal, 3),
            (Exit::Interrupted, 130),
        ] {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
