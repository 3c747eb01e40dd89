//! What `--version` prints: the package version and, when the build knew it, the commit it was
//! built from and that commit's date (`build.rs` finds them; a build without git has neither).

/// `0.1.0 (abcdef123456 2026-12-07)`, or `0.1.0` when the build did not know the commit.
pub const VERSION: &str = version(env!("LOGZIO_TOKENS_COMMIT"));

const fn version(commit: &'static str) -> &'static str {
    if commit.is_empty() {
        env!("CARGO_PKG_VERSION")
    } else {
        WITH_COMMIT
    }
}

const WITH_COMMIT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LOGZIO_TOKENS_COMMIT"),
    ")"
);

/// The commit part alone (empty when unknown), for the tests.
pub const COMMIT: &str = env!("LOGZIO_TOKENS_COMMIT");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_starts_with_the_package_version() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_commit_is_shown_when_known_and_nothing_else_when_not() {
        if COMMIT.is_empty() {
            assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
        } else {
            assert_eq!(VERSION, format!("{} ({COMMIT})", env!("CARGO_PKG_VERSION")));
        }
    }

    #[test]
    fn without_a_commit_the_version_is_the_package_version() {
        assert_eq!(version(""), env!("CARGO_PKG_VERSION"));
    }
}
