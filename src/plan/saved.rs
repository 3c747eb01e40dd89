//! A plan saved by `plan --out` and applied by `apply PLAN_FILE`: its format, its checksum,
//! and the checks that refuse a plan modified after it was written or made against another
//! manifest, recorded state or endpoint (a stale plan).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::key::TokenKey;
use crate::state::ResultsFile;

/// Why a saved plan cannot be applied. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// It claims to be a plan but does not parse as one.
    #[error("plan file {path} is malformed: {detail}")]
    Malformed {
        /// The plan file.
        path: PathBuf,
        /// What is wrong (serde's position; a plan holds no secret).
        detail: String,
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
        "stale plan: {what} changed since the plan was made (plan checksum {checksum}); run `logzio-tokens plan --out` again and review it"
    )]
    Stale {
        /// What changed, for people.
        what: String,
        /// The plan's checksum.
        checksum: String,
    },
}

/// A plan saved by `plan --out` for a later `apply PLAN_FILE`: no secrets, and checksums of
/// what it was made from so that a stale plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// Always `logzio-tokens-plan`.
    pub kind: String,
    /// Format version (1).
    pub version: u32,
    /// The manifest it was made from, as given on the command line.
    pub manifest: PathBuf,
    /// SHA-256 of the manifest file's bytes.
    pub manifest_sha256: String,
    /// SHA-256 of the recorded tokens and orphans it was planned against.
    pub state_sha256: String,
    /// The endpoint identity (base URL, or `simulator`).
    pub endpoint: String,
    /// The tokens to create.
    pub create: Vec<TokenKey>,
    /// SHA-256 over all of the above: what a reviewer approves.
    pub checksum: String,
}

/// The `kind` of a saved plan file.
pub const SAVED_PLAN_KIND: &str = "logzio-tokens-plan";

impl SavedPlan {
    /// Builds a saved plan and its checksum.
    pub fn new(
        manifest: PathBuf,
        manifest_bytes: &[u8],
        recorded: &ResultsFile,
        endpoint: String,
        create: Vec<TokenKey>,
    ) -> SavedPlan {
        let mut p = SavedPlan {
            kind: SAVED_PLAN_KIND.into(),
            version: 1,
            manifest,
            manifest_sha256: sha256_hex(manifest_bytes),
            state_sha256: state_digest(recorded),
            endpoint,
            create,
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
    /// anything else (a manifest). A plan whose checksum does not match is refused.
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
        let plan: SavedPlan =
            serde_json::from_value(value).map_err(|e| SavedPlanError::Malformed {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        if plan.compute_checksum() != plan.checksum {
            return Err(SavedPlanError::Modified {
                path: path.to_owned(),
            });
        }
        Ok(Some(plan))
    }

    /// Refuses the plan if the manifest (`manifest_bytes`, read from `manifest`), the recorded
    /// results (read from `results_path`) or the endpoint changed since it was made.
    pub fn check_current(
        &self,
        manifest: &Path,
        manifest_bytes: &[u8],
        recorded: &ResultsFile,
        results_path: &Path,
        endpoint: &str,
    ) -> Result<(), SavedPlanError> {
        let stale = |what: String| SavedPlanError::Stale {
            what,
            checksum: self.checksum.clone(),
        };
        if sha256_hex(manifest_bytes) != self.manifest_sha256 {
            return Err(stale(format!("the manifest {}", manifest.display())));
        }
        if state_digest(recorded) != self.state_sha256 {
            return Err(stale(format!(
                "the recorded results ({})",
                results_path.display()
            )));
        }
        if self.endpoint != endpoint {
            return Err(stale(format!(
                "the endpoint (plan: {}, now: {endpoint})",
                self.endpoint
            )));
        }
        Ok(())
    }

    /// The plan's tokens not recorded yet (a run of it that stopped half-way resumes).
    pub fn remaining(&self, recorded: &ResultsFile) -> Vec<TokenKey> {
        self.create
            .iter()
            .filter(|k| recorded.get(k).is_none())
            .cloned()
            .collect()
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
    use crate::state::TokenRecord;

    fn key(n: &str) -> TokenKey {
        TokenKey {
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
            "m.yaml".into(),
            b"tokens: []\n",
            &recorded(&[("a", 1)]),
            "https://api.logz.io".into(),
            vec![key("a"), key("b"), key("c")],
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
    }

    #[test]
    fn a_plan_edited_after_it_was_written_is_refused() {
        let mut p = plan();
        p.create.push(key("evil"));
        let bytes = serde_json::to_vec(&p).unwrap();
        let err = SavedPlan::parse(Path::new("p.json"), &bytes).unwrap_err();
        assert!(matches!(err, SavedPlanError::Modified { .. }), "{err}");
        // Every field counts in the checksum.
        let base = plan();
        let mut other = base.clone();
        other.endpoint = "https://api-eu.logz.io".into();
        assert_ne!(other.compute_checksum(), base.checksum);
    }

    #[test]
    fn a_plan_is_stale_once_the_manifest_the_state_or_the_endpoint_changed() {
        let p = plan();
        let m = Path::new("m.yaml");
        let r = Path::new("m.results.json");
        let state = recorded(&[("a", 1)]);
        p.check_current(m, b"tokens: []\n", &state, r, "https://api.logz.io")
            .unwrap();
        let stale = |res: Result<(), SavedPlanError>| match res.unwrap_err() {
            SavedPlanError::Stale { what, checksum } => {
                assert_eq!(checksum, p.checksum);
                what
            }
            other => panic!("{other}"),
        };
        let what = stale(p.check_current(m, b"tokens: [x]\n", &state, r, "https://api.logz.io"));
        assert!(what.contains("manifest"), "{what}");
        let what = stale(p.check_current(
            m,
            b"tokens: []\n",
            &recorded(&[("a", 2)]),
            r,
            "https://api.logz.io",
        ));
        assert!(what.contains("recorded results"), "{what}");
        let what = stale(p.check_current(m, b"tokens: []\n", &state, r, "https://api-eu.logz.io"));
        assert!(what.contains("endpoint"), "{what}");
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

    #[test]
    fn a_half_applied_plan_resumes_with_what_is_not_recorded() {
        let p = plan();
        assert_eq!(
            p.remaining(&recorded(&[("a", 1)])),
            vec![key("b"), key("c")]
        );
        assert_eq!(
            p.remaining(&recorded(&[("a", 1), ("b", 2), ("c", 3)])),
            Vec::<TokenKey>::new()
        );
    }
}
