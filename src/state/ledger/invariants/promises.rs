//! The promises the state keeps whatever features a run combines, written down once as pure
//! functions, so that a new feature cannot break them silently. The store calls them when it
//! loads the state and before every save; each has unit tests below.
//!
//! 1. No token id is written to a results file unless its secret is already durable in a file
//!    that travels with it: the 0600 secrets file in plain mode, a listed sealed file in sealed
//!    mode ([`secrets_durable`]). Imported tokens recorded without a secret are exempt: the
//!    tool never had their secret.
//! 2. A state never silently changes its protection: once its secrets are sealed, a run
//!    without recipients refuses unless the user passed `--allow-plaintext`
//!    ([`protection_kept`]).
//! 3. Every state file and journal is bound to one endpoint; another endpoint's is refused,
//!    naming both ([`same_endpoint`]).
//! 4. Only sealed files this tool wrote are trusted: listed in the results file with the
//!    SHA-256 of their bytes, which must still match ([`sealed_file_trusted`]).
//! 5. The lock is taken on the real results file, whatever path names it: the lock file is
//!    derived from the results path with its symlinks resolved ([`lock_subject`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::key::TokenKey;
use crate::state::TokenSource;
use crate::state::{ResultsFile, SealedFile};

/// An invariant a write or a load would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Invariant 1: tokens whose secret is on no disk file that travels with the results.
    #[error(
        "it would record {} whose secret is not yet in the secrets file or a sealed file: {}; the journal keeps them, and the next run recovers them",
        if .0.len() == 1 { "1 token".to_owned() } else { format!("{} tokens", .0.len()) },
        .0.iter().map(|(k, id)| format!("{k} (token {id})")).collect::<Vec<_>>().join(", ")
    )]
    SecretNotDurable(Vec<(TokenKey, i64)>),
    /// Invariant 2: a run without recipients on a state whose secrets are sealed.
    #[error(
        "the secrets of this state are sealed (in {}), but this run has no recipients, so it would write new secrets in plaintext\n  = help: add the recipients back (`secrets: {{ recipients: [age1…] }}` in the manifest, or --recipient / --recipients-file); pass --allow-plaintext only if plaintext secrets are what you want from now on",
        .0.display()
    )]
    ProtectionDropped(PathBuf),
    /// Invariant 3: a file or journal of another endpoint.
    #[error(
        "{what} was made against {recorded}, but this run targets {current}\n  = help: pass --results/--secrets for a separate pair of files per region or endpoint, or run against {recorded}"
    )]
    OtherEndpoint {
        /// What is bound to the other endpoint ("journal file x").
        what: String,
        /// The endpoint it is bound to.
        recorded: String,
        /// This run's.
        current: String,
    },
    /// Invariant 4: a listed sealed file whose bytes are not the ones this tool wrote.
    #[error(
        "its SHA-256 is {actual}, but the results file lists {listed}: it was changed or replaced after this tool wrote it"
    )]
    SealedFileChanged {
        /// The digest listed.
        listed: String,
        /// The digest of the bytes found.
        actual: String,
    },
}

/// Invariant 1. `results` is what is about to be written; `baseline` the token ids the results
/// file on disk already names (written by an earlier save, each checked then); `durable`
/// says whether the secret of a token is durable in a file that travels with the results (the
/// secrets file being written before this results file, or a sealed file already written and
/// listed). Every other token id must be durable.
pub fn secrets_durable(
    results: &ResultsFile,
    baseline: &HashSet<i64>,
    durable: impl Fn(&TokenKey, i64) -> bool,
) -> Result<(), Violation> {
    let mut missing = Vec::new();
    for (account_id, tokens) in &results.accounts {
        for (name, rec) in tokens {
            if rec.source == Some(TokenSource::Imported) || baseline.contains(&rec.token_id) {
                continue;
            }
            let key = TokenKey {
                account_id: *account_id,
                token_name: name.clone(),
            };
            if !durable(&key, rec.token_id) {
                missing.push((key, rec.token_id));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Violation::SecretNotDurable(missing))
    }
}

/// Whether a state holds sealed secrets: its results file lists sealed files, or its sealed
/// directory holds any (written before the list existed).
pub fn state_is_sealed(results: &ResultsFile, sealed_files_found: usize) -> bool {
    !results.sealed_files.is_empty() || sealed_files_found > 0
}

/// Invariant 2. `state_sealed`: whether the state's secrets are sealed ([`state_is_sealed`]);
/// `run_seals`: whether this run has recipients.
pub fn protection_kept(
    state_sealed: bool,
    run_seals: bool,
    allow_plaintext: bool,
    sealed_dir: &Path,
) -> Result<(), Violation> {
    if state_sealed && !run_seals && !allow_plaintext {
        return Err(Violation::ProtectionDropped(sealed_dir.to_path_buf()));
    }
    Ok(())
}

/// The form in which two endpoints are compared: without trailing slashes.
pub fn endpoint_norm(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Invariant 3. `recorded`: the endpoint a file or journal is bound to (none: not bound yet,
/// it takes this run's); `current`: this run's.
pub fn same_endpoint(what: &str, recorded: Option<&str>, current: &str) -> Result<(), Violation> {
    match recorded {
        Some(r) if endpoint_norm(r) != endpoint_norm(current) => Err(Violation::OtherEndpoint {
            what: what.to_owned(),
            recorded: r.to_owned(),
            current: current.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Invariant 4: the bytes of a listed sealed file are the ones this tool wrote.
pub fn sealed_file_trusted(listed: &SealedFile, bytes: &[u8]) -> Result<(), Violation> {
    let actual = crate::state::sealed::sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(&listed.sha256) {
        Ok(())
    } else {
        Err(Violation::SealedFileChanged {
            listed: listed.sha256.clone(),
            actual,
        })
    }
}

/// Invariant 5: the path whose lock guards a results file: the results file itself with every
/// symlink on its way resolved (`resolved`, when it could be: the file or its directory may not
/// exist yet, and then the directory is resolved and the name kept), so that two paths to one
/// file take one lock.
pub fn lock_subject(results: &Path, resolved: impl Fn(&Path) -> Option<PathBuf>) -> PathBuf {
    if let Some(real) = resolved(results) {
        return real;
    }
    let dir = crate::fs::parent_dir(results);
    match (resolved(dir), results.file_name()) {
        (Some(d), Some(name)) => d.join(name),
        _ => results.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::TokenRecord;

    fn key(n: &str) -> TokenKey {
        TokenKey {
            account_id: 7,
            token_name: n.into(),
        }
    }

    fn results(tokens: &[(&str, i64, Option<TokenSource>)]) -> ResultsFile {
        let mut r = ResultsFile::new(Some("https://api.logz.io".into()));
        for (n, id, source) in tokens {
            r.insert(
                &key(n),
                TokenRecord {
                    token_id: *id,
                    source: *source,
                    ..TokenRecord::default()
                },
            );
        }
        r
    }

    #[test]
    fn a_new_token_needs_a_durable_secret_an_old_or_imported_one_does_not() {
        let r = results(&[
            ("a", 1, None),
            ("b", 2, None),
            ("c", 3, Some(TokenSource::Imported)),
        ]);
        let baseline: HashSet<i64> = [1].into();
        // b is new and its secret is durable: fine.
        assert!(secrets_durable(&r, &baseline, |_, id| id == 2).is_ok());
        // b's secret is nowhere: refused, naming it.
        let err = secrets_durable(&r, &baseline, |_, _| false).unwrap_err();
        assert_eq!(err, Violation::SecretNotDurable(vec![(key("b"), 2)]));
        assert!(err.to_string().contains("7/b (token 2)"), "{err}");
        // Nothing is new: nothing to check.
        assert!(secrets_durable(&r, &[1, 2].into(), |_, _| false).is_ok());
        // A key durable under another id does not count.
        assert!(secrets_durable(&r, &baseline, |k, id| k == &key("b") && id == 99).is_err());
    }

    #[test]
    fn a_sealed_state_needs_recipients_or_an_explicit_opt_out() {
        let dir = Path::new("/x/m.sealed");
        let mut r = results(&[]);
        assert!(!state_is_sealed(&r, 0));
        assert!(state_is_sealed(&r, 1));
        r.sealed_files.push(SealedFile {
            file: "a.age".into(),
            sha256: "00".into(),
            run_id: "1".into(),
        });
        assert!(state_is_sealed(&r, 0));
        let err = protection_kept(true, false, false, dir).unwrap_err();
        assert!(err.to_string().contains("/x/m.sealed"), "{err}");
        assert!(err.to_string().contains("--allow-plaintext"), "{err}");
        assert!(protection_kept(true, false, true, dir).is_ok());
        assert!(protection_kept(true, true, false, dir).is_ok());
        assert!(protection_kept(false, false, false, dir).is_ok());
    }

    #[test]
    fn another_endpoint_is_refused_naming_both() {
        assert!(same_endpoint("x", None, "https://a").is_ok());
        assert!(same_endpoint("x", Some("https://a/"), "https://a").is_ok());
        let err = same_endpoint("journal j", Some("https://a"), "https://b").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("journal j was made against https://a"),
            "{msg}"
        );
        assert!(msg.contains("targets https://b"), "{msg}");
    }

    #[test]
    fn a_sealed_file_is_trusted_only_with_its_listed_digest() {
        let listed = SealedFile {
            file: "a.age".into(),
            sha256: crate::state::sealed::sha256_hex(b"bytes"),
            run_id: "1".into(),
        };
        assert!(sealed_file_trusted(&listed, b"bytes").is_ok());
        let mut upper = listed.clone();
        upper.sha256 = upper.sha256.to_uppercase();
        assert!(sealed_file_trusted(&upper, b"bytes").is_ok());
        assert!(matches!(
            sealed_file_trusted(&listed, b"other"),
            Err(Violation::SealedFileChanged { .. })
        ));
    }

    #[test]
    fn the_lock_subject_is_the_resolved_file_or_its_resolved_directory() {
        let real = |p: &Path| (p == Path::new("/l/r.json")).then(|| PathBuf::from("/real/r.json"));
        assert_eq!(
            lock_subject(Path::new("/l/r.json"), real),
            PathBuf::from("/real/r.json")
        );
        let dir_only = |p: &Path| (p == Path::new("/l")).then(|| PathBuf::from("/real"));
        assert_eq!(
            lock_subject(Path::new("/l/new.json"), dir_only),
            PathBuf::from("/real/new.json")
        );
        assert_eq!(
            lock_subject(Path::new("/l/new.json"), |_| None),
            PathBuf::from("/l/new.json")
        );
    }
}
