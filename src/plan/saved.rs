//! A plan saved by `plan --out` and applied by `apply PLAN_FILE`: its format, its checksum,
//! and the checks that refuse a plan modified after it was written or made against another
//! manifest, recorded state or endpoint (a stale plan).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Change;
use crate::state::ResultsFile;

/// Why a saved plan cannot be applied. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// It claims to be a plan but does not parse as one.
    #[error("plan file {path} is malformed: {detail}")]
    Malformed {
        /// The plan file.
        path: PathBuf,
        /// Where and what kind of problem (line, column, kind; never the file's content).
        detail: String,
    },
    /// A plan of another format version (an older release wrote it).
    #[error(
        "plan file {path} has format version {found}; this release applies version {SAVED_PLAN_VERSION} only: make a new one with `plan --out`"
    )]
    Version {
        /// The plan file.
        path: PathBuf,
        /// Its version.
        found: u64,
    },
    /// Its checksum does not match its content.
    #[error(
        "plan file {path} was modified after it was written (checksum mismatch); make a new one with `plan --out`"
    )]
    Modified {
        /// The plan file.
        path: PathBuf,
    },
    /// What it was made from has changed.
    #[error(
        "stale plan: {what} changed since the plan was made (plan checksum {checksum}); make a new plan with `{replan}` and review it"
    )]
    Stale {
        /// What changed, for people.
        what: String,
        /// The plan's checksum.
        checksum: String,
        /// The command that makes a new plan (filled in by the caller; may be empty).
        replan: String,
    },
    /// Its token list is not what the manifest and the recorded results call for now (a
    /// hand-edited plan, or accounts that moved on the server since).
    #[error(
        "the plan does not match what the manifest and the results call for now: {differences}; nothing was sent. Make a new plan with `{replan}` and review it"
    )]
    Differs {
        /// What differs, for people.
        differences: String,
        /// The command that makes a new plan.
        replan: String,
    },
}

impl SavedPlanError {
    /// The same error with the command that makes a new plan.
    pub fn with_replan(self, command: &str) -> SavedPlanError {
        match self {
            SavedPlanError::Stale { what, checksum, .. } => SavedPlanError::Stale {
                what,
                checksum,
                replan: command.to_owned(),
            },
            SavedPlanError::Differs { differences, .. } => SavedPlanError::Differs {
                differences,
                replan: command.to_owned(),
            },
            other => other,
        }
    }
}

/// The saved plan format this release writes and applies.
pub const SAVED_PLAN_VERSION: u64 = 2;

/// A plan saved by `plan --out` for a later `apply PLAN_FILE`: the whole decision (where the
/// API is, which files, which recipients, which accounts, which tokens of which kind), no
/// secrets, and checksums of what it was made from so that a stale plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// Always `logzio-tokens-plan`.
    pub kind: String,
    /// Format version ([`SAVED_PLAN_VERSION`]).
    pub version: u64,
    /// The manifest it was made from, as given on the command line.
    pub manifest: PathBuf,
    /// SHA-256 of the manifest file's bytes.
    pub manifest_sha256: String,
    /// The endpoint identity (base URL, or `simulator`).
    pub endpoint: String,
    /// The results file.
    pub results: PathBuf,
    /// The plaintext secrets file (used when `recipients` is empty).
    pub secrets: PathBuf,
    /// The directory of sealed secrets files (used when `recipients` is not empty).
    pub sealed_dir: PathBuf,
    /// SHA-256 of the recorded tokens and orphans it was planned against.
    pub state_sha256: String,
    /// Every age recipient the secrets are sealed to (the manifest's and the command
    /// line's); empty: plaintext secrets.
    pub recipients: Vec<String>,
    /// The `--recipient` values given to `plan`.
    pub recipient_args: Vec<String>,
    /// The `--recipients-file` given to `plan`.
    pub recipients_file: Option<PathBuf>,
    /// `--account` values.
    pub accounts: Vec<String>,
    /// `--exclude-account` values.
    pub exclude_accounts: Vec<String>,
    /// Whether revoked tokens are recreated (flag or manifest setting).
    pub recreate_revoked: bool,
    /// `--rotate-older-than`, in seconds (the manifest's `rotate_after_days` apply without it).
    pub rotate_older_than_seconds: Option<u64>,
    /// The tokens to create, each with its kind.
    pub changes: Vec<Change>,
    /// SHA-256 over all of the above: what a reviewer approves.
    pub checksum: String,
}

/// The `kind` of a saved plan file.
pub const SAVED_PLAN_KIND: &str = "logzio-tokens-plan";

/// What a saved plan is made of, before its digests and checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The manifest, as given.
    pub manifest: PathBuf,
    /// The endpoint identity.
    pub endpoint: String,
    /// The results file.
    pub results: PathBuf,
    /// The secrets file.
    pub secrets: PathBuf,
    /// The sealed directory.
    pub sealed_dir: PathBuf,
    /// Every recipient.
    pub recipients: Vec<String>,
    /// `--recipient` values.
    pub recipient_args: Vec<String>,
    /// `--recipients-file`.
    pub recipients_file: Option<PathBuf>,
    /// `--account` values.
    pub accounts: Vec<String>,
    /// `--exclude-account` values.
    pub exclude_accounts: Vec<String>,
    /// Recreate revoked tokens.
    pub recreate_revoked: bool,
    /// `--rotate-older-than` in seconds.
    pub rotate_older_than_seconds: Option<u64>,
    /// The tokens.
    pub changes: Vec<Change>,
}

impl SavedPlan {
    /// Builds a saved plan and its checksum.
    pub fn new(d: Decision, manifest_bytes: &[u8], recorded: &ResultsFile) -> SavedPlan {
        let mut p = SavedPlan {
            kind: SAVED_PLAN_KIND.into(),
            version: SAVED_PLAN_VERSION,
            manifest: d.manifest,
            manifest_sha256: sha256_hex(manifest_bytes),
            endpoint: d.endpoint,
            results: d.results,
            secrets: d.secrets,
            sealed_dir: d.sealed_dir,
            state_sha256: state_digest(recorded),
            recipients: d.recipients,
            recipient_args: d.recipient_args,
            recipients_file: d.recipients_file,
            accounts: d.accounts,
            exclude_accounts: d.exclude_accounts,
            recreate_revoked: d.recreate_revoked,
            rotate_older_than_seconds: d.rotate_older_than_seconds,
            changes: d.changes,
            checksum: String::new(),
        };
        p.checksum = p.compute_checksum();
        p
    }

    /// The checksum over every field but itself.
    pub fn compute_checksum(&self) -> String {
        let mut copy = self.clone();
        copy.checksum = String::new();
        sha256_hex(&serde_json::to_vec(&copy).unwrap_or_default())
    }

    /// Reads `bytes` (the file given to `apply`) as a saved plan if they are one: `None` for
    /// anything else (a manifest). A plan of another version, or whose checksum does not
    /// match, is refused.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Option<SavedPlan>, SavedPlanError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Ok(None);
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some(SAVED_PLAN_KIND) {
            return Ok(None);
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(SAVED_PLAN_VERSION) | None => {}
            Some(found) => {
                return Err(SavedPlanError::Version {
                    path: path.to_owned(),
                    found,
                });
            }
        }
        // From the bytes, not the value: for the line and column. The detail is where and the
        // kind of problem, never serde's message, which quotes the file's content (`invalid
        // type: string "..."`, `unknown field ...`): a plan file can be anything a user points
        // at. A key twice is refused: it would show a reviewer one value and apply another.
        let plan: SavedPlan =
            crate::state::parse_strict(bytes).map_err(|detail| SavedPlanError::Malformed {
                path: path.to_owned(),
                detail,
            })?;
        if plan.compute_checksum() != plan.checksum {
            return Err(SavedPlanError::Modified {
                path: path.to_owned(),
            });
        }
        Ok(Some(plan))
    }

    fn stale(&self, what: String) -> SavedPlanError {
        SavedPlanError::Stale {
            what,
            checksum: self.checksum.clone(),
            replan: String::new(),
        }
    }

    /// Refuses the plan if the manifest (`manifest_bytes`), the recorded results, the
    /// recipients (`recipients`, as resolved now) or the endpoint changed since it was made.
    pub fn check_current(
        &self,
        manifest_bytes: &[u8],
        recorded: &ResultsFile,
        recipients: &[String],
        endpoint: &str,
    ) -> Result<(), SavedPlanError> {
        if sha256_hex(manifest_bytes) != self.manifest_sha256 {
            return Err(self.stale(format!("the manifest {}", self.manifest.display())));
        }
        if state_digest(recorded) != self.state_sha256 {
            return Err(self.stale(format!("the recorded results ({})", self.results.display())));
        }
        if recipients != self.recipients.as_slice() {
            return Err(self.stale(format!(
                "the recipients (plan: {}; now: {})",
                list_or_none(&self.recipients),
                list_or_none(recipients)
            )));
        }
        if self.endpoint != endpoint {
            return Err(self.stale(format!(
                "the endpoint (plan: {}, now: {endpoint})",
                self.endpoint
            )));
        }
        Ok(())
    }

    /// Refuses the plan unless `now` (the plan derived again from the manifest, the results
    /// and the live accounts, with the plan's choices) lists exactly its tokens.
    pub fn check_changes(&self, now: &[Change]) -> Result<(), SavedPlanError> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in &self.changes {
            if !seen.insert(c.key()) {
                problems.push(format!("it lists {} twice", c.key()));
            }
        }
        let extra: Vec<String> = self
            .changes
            .iter()
            .filter(|c| !now.contains(c))
            .map(Change::describe)
            .collect();
        let missing: Vec<String> = now
            .iter()
            .filter(|c| !self.changes.contains(c))
            .map(Change::describe)
            .collect();
        if !extra.is_empty() {
            problems.push(format!(
                "it lists {} that the manifest and the results do not call for now: {}",
                counted(extra.len()),
                first_few(&extra)
            ));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{} called for now {} not in it: {}",
                counted(missing.len()),
                if missing.len() == 1 { "is" } else { "are" },
                first_few(&missing)
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SavedPlanError::Differs {
                differences: problems.join("; "),
                replan: String::new(),
            })
        }
    }
}

fn counted(n: usize) -> String {
    if n == 1 {
        "1 token".into()
    } else {
        format!("{n} tokens")
    }
}

/// The first five items, then how many more.
fn first_few(items: &[String]) -> String {
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" and {} more", items.len() - 5));
    }
    s
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none (plaintext secrets)".into()
    } else {
        items.join(", ")
    }
}

/// SHA-256 of the recorded state that a plan depends on (tokens and orphans, not timestamps).
pub fn state_digest(recorded: &ResultsFile) -> String {
    let v = serde_json::json!({
        "accounts": recorded.accounts,
        "possible_orphans": recorded.possible_orphans,
    });
    sha256_hex(&serde_json::to_vec(&v).unwrap_or_default())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::TokenKey;
    use crate::plan::ReplaceReason;
    use crate::state::TokenRecord;

    fn key(n: &str) -> TokenKey {
        TokenKey {
            account_id: 7,
            token_name: n.into(),
        }
    }

    fn create(n: &str) -> Change {
        Change::Create {
            account_id: 7,
            token_name: n.into(),
        }
    }

    fn recorded(with: &[(&str, i64)]) -> ResultsFile {
        let mut r = ResultsFile::new(None);
        for (n, id) in with {
            r.insert(
                &key(n),
                TokenRecord {
                    token_id: *id,
                    ..TokenRecord::default()
                },
            );
        }
        r
    }

    fn plan() -> SavedPlan {
        SavedPlan::new(
            Decision {
                manifest: "m.yaml".into(),
                endpoint: "https://api.logz.io".into(),
                results: "m.results.json".into(),
                secrets: "m.secrets.json".into(),
                sealed_dir: "m.sealed".into(),
                changes: vec![
                    create("b"),
                    Change::Replace {
                        account_id: 7,
                        token_name: "a".into(),
                        replaces: 1,
                        reason: ReplaceReason::Rotation {
                            older_than_seconds: 86_400,
                        },
                    },
                ],
                ..Decision::default()
            },
            b"tokens: []\n",
            &recorded(&[("a", 1)]),
        )
    }

    #[test]
    fn sha256_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_saved_plan_reads_back_and_anything_else_is_not_a_plan() {
        let p = plan();
        assert_eq!(p.checksum, p.compute_checksum());
        assert_eq!(p.checksum.len(), 64);
        let bytes = serde_json::to_vec_pretty(&p).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""kind": "replace""#), "{text}");
        assert!(text.contains(r#""reason": "rotation""#), "{text}");
        let mut spaced = b"\n  ".to_vec();
        spaced.extend(&bytes);
        let path = Path::new("p.json");
        assert_eq!(SavedPlan::parse(path, &spaced).unwrap(), Some(p.clone()));
        // A manifest, JSON that is not an object, or an object of another kind: not a plan.
        assert_eq!(SavedPlan::parse(path, b"tokens: []\n").unwrap(), None);
        assert_eq!(SavedPlan::parse(path, b"{ not json").unwrap(), None);
        assert_eq!(SavedPlan::parse(path, b"[1]").unwrap(), None);
        assert_eq!(
            SavedPlan::parse(path, br#"{"kind": "something-else"}"#).unwrap(),
            None
        );
        // A plan with a field missing is malformed, not "not a plan".
        let err = SavedPlan::parse(path, br#"{"kind": "logzio-tokens-plan"}"#).unwrap_err();
        assert!(matches!(err, SavedPlanError::Malformed { .. }), "{err}");
        // A plan of the first format (no paths, no recipients) is refused by its version.
        let err =
            SavedPlan::parse(path, br#"{"kind": "logzio-tokens-plan", "version": 1}"#).unwrap_err();
        assert!(
            matches!(err, SavedPlanError::Version { found: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_plan_edited_after_it_was_written_is_refused() {
        let mut p = plan();
        p.changes.push(create("evil"));
        let bytes = serde_json::to_vec(&p).unwrap();
        let err = SavedPlan::parse(Path::new("p.json"), &bytes).unwrap_err();
        assert!(matches!(err, SavedPlanError::Modified { .. }), "{err}");
        // Every field counts in the checksum.
        let base = plan();
        for change in [
            |p: &mut SavedPlan| p.endpoint = "https://api-eu.logz.io".into(),
            |p: &mut SavedPlan| p.results = "other.json".into(),
            |p: &mut SavedPlan| p.secrets = "other.json".into(),
            |p: &mut SavedPlan| p.sealed_dir = "other".into(),
            |p: &mut SavedPlan| p.recipients = vec!["age1x".into()],
            |p: &mut SavedPlan| p.accounts = vec!["7".into()],
            |p: &mut SavedPlan| p.recreate_revoked = true,
            |p: &mut SavedPlan| p.rotate_older_than_seconds = Some(1),
        ] {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.compute_checksum(), base.checksum, "{other:?}");
        }
    }

    #[test]
    fn a_plan_is_stale_once_the_manifest_the_state_the_recipients_or_the_endpoint_changed() {
        let p = plan();
        let state = recorded(&[("a", 1)]);
        let api = "https://api.logz.io";
        p.check_current(b"tokens: []\n", &state, &[], api).unwrap();
        let stale = |res: Result<(), SavedPlanError>| match res.unwrap_err() {
            SavedPlanError::Stale { what, checksum, .. } => {
                assert_eq!(checksum, p.checksum);
                what
            }
            other => panic!("{other}"),
        };
        let what = stale(p.check_current(b"tokens: [x]\n", &state, &[], api));
        assert!(what.contains("manifest"), "{what}");
        let what = stale(p.check_current(b"tokens: []\n", &recorded(&[("a", 2)]), &[], api));
        assert!(what.contains("recorded results"), "{what}");
        let what = stale(p.check_current(b"tokens: []\n", &state, &["age1new".into()], api));
        assert!(
            what.contains("recipients") && what.contains("age1new"),
            "{what}"
        );
        let what = stale(p.check_current(b"tokens: []\n", &state, &[], "https://api-eu.logz.io"));
        assert!(what.contains("endpoint"), "{what}");
    }

    #[test]
    fn a_plan_must_list_exactly_the_tokens_derived_again() {
        let p = plan();
        p.check_changes(&p.changes).unwrap();
        let differs =
            |changes: &[Change], saved: &SavedPlan| match saved.check_changes(changes).unwrap_err()
            {
                SavedPlanError::Differs { differences, .. } => differences,
                other => panic!("{other}"),
            };
        // A token the manifest does not want, and a repeated one.
        let mut edited = p.clone();
        edited.changes.push(create("evil"));
        edited.changes.push(create("b"));
        let d = differs(&p.changes, &edited);
        assert!(d.contains("7/evil"), "{d}");
        assert!(d.contains("7/b twice"), "{d}");
        // A replacement now due that the plan does not list.
        let d = differs(&[create("b")], &p);
        assert!(d.contains("-/+ 7/a (replaces 1, older than 1d)"), "{d}");
        // The same token of another kind differs.
        let d = differs(
            &[
                create("b"),
                Change::Replace {
                    account_id: 7,
                    token_name: "a".into(),
                    replaces: 1,
                    reason: ReplaceReason::Revoked,
                },
            ],
            &p,
        );
        assert!(d.contains("revoked"), "{d}");
    }

    #[test]
    fn the_state_digest_covers_tokens_and_orphans_but_not_timestamps() {
        let a = recorded(&[("a", 1)]);
        let mut later = a.clone();
        later.updated_at = "2030-01-01T00:00:00Z".into();
        assert_eq!(state_digest(&a), state_digest(&later));
        let mut orphan = a.clone();
        orphan.note_orphan(&key("b"), "timeout", "2026-01-01T00:00:00Z");
        assert_ne!(state_digest(&a), state_digest(&orphan));
        assert_ne!(state_digest(&a), state_digest(&recorded(&[])));
    }
}
