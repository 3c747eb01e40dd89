//! The results file: which tokens exist, by account id and token name, with their ids. No
//! secrets, so it is safe to keep in version control. Read and written through typed structs.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fs::{Fs, RealFs};
use crate::key::TokenKey;
use crate::state::json::load_json;
use crate::state::{StateError, StateFile};

/// The results file format version this build reads and writes.
pub const RESULTS_VERSION: u32 = 1;

/// The results file: what exists, what failed in the last run, what may have been created
/// without being recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsFile {
    /// Format version; always 1.
    pub version: u32,
    /// The API base URL the tokens were created against. A run against another URL refuses to
    /// use this file, so ids of one region are never mixed with another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// When the file was last written (RFC 3339, UTC).
    pub updated_at: String,
    /// Created tokens: account id -> token name -> the token's id. An entry exists only for a
    /// token that was created and whose id is known.
    #[serde(default)]
    pub accounts: BTreeMap<u32, BTreeMap<String, TokenRecord>>,
    /// Account names resolved to ids through the sub-account list, remembered so that an
    /// offline `plan` can place accounts given by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resolved_names: BTreeMap<String, u32>,
    /// Items of the last run that did not get a token, with the reason.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Every (account, token name) for which a request may have created a token that is not
    /// the one recorded. Kept across runs until cleared with `logzio-tokens orphans clear`.
    #[serde(default)]
    pub possible_orphans: Vec<PossibleOrphan>,
    /// The server's rate limit as the last run against `api_url` found it; the next run starts
    /// just under it instead of at its ceiling. Not a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_rate: Option<LearnedRate>,
    /// Tokens replaced under the same account and name (recreated after a revocation, or
    /// rotated), kept for the record. Those not seen deleted (`status` other than `revoked`)
    /// still work and are to be removed by hand in the Logz.io UI: the API cannot delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededToken>,
    /// The sealed files this tool wrote for this state, oldest first, with the SHA-256 of
    /// each. Only these are read by `export`, `verify` and recovery: anyone can seal a file to
    /// a public recipient, so any other `.age` file in the sealed directory is named, not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_files: Vec<SealedFile>,
    /// The sub accounts this tool created: account name -> its id, when, and in which run.
    /// A name here is never created again, even while the account list lags the create.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts_created: BTreeMap<String, CreatedAccount>,
    /// Sub-account creates whose outcome is not known yet (a run stopped after sending one, or
    /// its answer was lost): account name -> the ids the name had before. The next apply looks
    /// for each before anything else, and adopts the account if exactly one new one has the
    /// name; it never sends the create blindly again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts_pending: BTreeMap<String, PendingCreate>,
    /// Sub accounts whose creates ended ambiguously with no account found since (each may have
    /// made one): account name -> how many. The ambiguity budget holds across runs: a name at
    /// the budget is not sent again until `orphans clear` (or `apply --resend-ambiguous`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts_ambiguous: BTreeMap<String, AmbiguousCreates>,
}

/// The ambiguous creates of a sub account no lookup has found (a possible orphan account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmbiguousCreates {
    /// How many creates of the name ended without a known outcome.
    pub ambiguous_attempts: u32,
    /// What happened the last time.
    pub detail: String,
    /// When it last happened (RFC 3339, UTC).
    pub at: String,
}

/// A sealed file this tool wrote (`sealed_files` in the results file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedFile {
    /// Its name in the sealed directory (`20261129T210306Z-1a2b3c4d.age`).
    pub file: String,
    /// The lower-case hex SHA-256 of its bytes.
    pub sha256: String,
    /// The run that wrote it (`1a2b3c4d`, or `1a2b3c4d-recovered` for what a run recovered
    /// from an interrupted run's journal).
    pub run_id: String,
}

/// A sub-account create that may have made the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingCreate {
    /// The ids that carried the name before the create was sent.
    #[serde(default)]
    pub known: Vec<u32>,
    /// When it was sent (RFC 3339).
    pub since: String,
    /// The run that sent it: an account a later lookup finds is recorded as that run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A sub account this tool created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatedAccount {
    /// Its id.
    pub account_id: u32,
    /// When the create was answered (RFC 3339, UTC), or when a lookup found it.
    pub created_at: String,
    /// The run that created it.
    pub run_id: String,
    /// Whether its log shipping token is kept with the secrets (false until it was read).
    #[serde(default)]
    pub shipping_token: bool,
}

/// A server limit learned by a run: on requests per second, on requests in flight, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnedRate {
    /// Requests per second the server accepted (absent when only an in-flight limit was
    /// found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// Requests the server admits at once (absent when none was found; files written before
    /// it was learned have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Which kind of limit binds: `rate`, `in_flight` or `both` (files written before in-flight
    /// limits were learned: `rate`).
    #[serde(default)]
    pub kind: LimitKind,
    /// The endpoint it applies to (the results file's `api_url`).
    pub endpoint: String,
    /// When it was learned (RFC 3339, UTC).
    pub at: String,
}

/// The kind of a learned server limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests per second (a token bucket).
    #[default]
    Rate,
    /// Requests in flight at once (what Logz.io documents: concurrent requests).
    InFlight,
    /// Both.
    Both,
}

impl LimitKind {
    /// The kind of these limits, when there is one.
    pub fn of(per_second: Option<f64>, in_flight: Option<u32>) -> Option<LimitKind> {
        match (per_second, in_flight) {
            (Some(_), Some(_)) => Some(LimitKind::Both),
            (Some(_), None) => Some(LimitKind::Rate),
            (None, Some(_)) => Some(LimitKind::InFlight),
            (None, None) => None,
        }
    }
}

/// What `logzio-tokens verify` last saw of a token when it probed its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// `GET /v2/whoami` answered with the recorded account.
    Valid,
    /// 401 or 403: the token no longer works (deleted in the UI).
    Revoked,
    /// 200, but for another account than the one recorded.
    WrongAccount,
    /// Still failing after the retries: nothing is known.
    Unknown,
}

impl TokenStatus {
    /// The name used in the results file and the output.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Valid => "valid",
            TokenStatus::Revoked => "revoked",
            TokenStatus::WrongAccount => "wrong_account",
            TokenStatus::Unknown => "unknown",
        }
    }
}

/// A token replaced by another under the same account and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupersededToken {
    /// The account id.
    pub account_id: u32,
    /// The token name.
    pub token_name: String,
    /// The replaced token's id.
    pub token_id: i64,
    /// When Logz.io created it (RFC 3339, UTC).
    pub created_at: String,
    /// The id of the token that replaced it.
    pub replaced_by: i64,
    /// What `verify` last saw of it; `revoked` takes it off the remove-by-hand list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TokenStatus>,
    /// When `verify` last probed it (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
}

impl SupersededToken {
    /// Whether it is still to be removed by hand (not seen deleted).
    pub fn remove_by_hand(&self) -> bool {
        self.status != Some(TokenStatus::Revoked)
    }
}

/// One created token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The token's id at Logz.io.
    pub token_id: i64,
    /// When Logz.io created it (RFC 3339, UTC).
    pub created_at: String,
    /// How the record came to be, when not created by this tool: `imported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TokenSource>,
    /// What `logzio-tokens verify` last saw: `valid`, `revoked`, `wrong_account`, `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TokenStatus>,
    /// When `verify` last probed it (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
}

/// An item of the last run that did not get a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The account id, when known (an account given by name may not have resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<u32>,
    /// The account name, for accounts given by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// The token name.
    pub token_name: String,
    /// The HTTP status of the last answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What went wrong.
    pub error: String,
}

/// A request that may have created a token which is not the one recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PossibleOrphan {
    /// The account id.
    pub account_id: u32,
    /// The token name.
    pub token_name: String,
    /// How many requests for this item ended without a known outcome.
    pub ambiguous_attempts: u32,
    /// What happened the last time.
    pub detail: String,
    /// When it last happened (RFC 3339, UTC).
    pub at: String,
}

impl ResultsFile {
    /// What the last run against `endpoint` learned of its limit, as `(requests per second,
    /// requests in flight)`: a run starts from it. A limit learned against another endpoint
    /// says nothing of this one.
    pub fn learned_limit(&self, endpoint: &str) -> (Option<f64>, Option<u32>) {
        self.learned_rate
            .as_ref()
            .filter(|l| l.endpoint == endpoint)
            .map_or((None, None), |l| (l.per_second, l.in_flight))
    }

    /// An empty results file for a first run, made now (by the system clock).
    pub fn new(api_url: Option<String>) -> Self {
        use crate::clock::Clock;
        ResultsFile::new_at(api_url, crate::clock::SystemClock.now_rfc3339())
    }

    /// An empty results file for a first run, made at `at` (RFC 3339).
    pub fn new_at(api_url: Option<String>, at: String) -> Self {
        ResultsFile {
            version: RESULTS_VERSION,
            api_url,
            updated_at: at,
            accounts: BTreeMap::new(),
            resolved_names: BTreeMap::new(),
            failures: Vec::new(),
            possible_orphans: Vec::new(),
            learned_rate: None,
            superseded: Vec::new(),
            sealed_files: Vec::new(),
            accounts_created: BTreeMap::new(),
            accounts_pending: BTreeMap::new(),
            accounts_ambiguous: BTreeMap::new(),
        }
    }

    /// Reads the file; a missing file is a first run (an empty record). Anything unreadable or
    /// malformed is an error, never "nothing exists".
    pub fn load(path: &Path) -> Result<Option<ResultsFile>, StateError> {
        ResultsFile::load_in(&RealFs, path)
    }

    /// [`ResultsFile::load`] on the filesystem `fs`.
    pub fn load_in<F: Fs>(fs: &F, path: &Path) -> Result<Option<ResultsFile>, StateError> {
        let Some(file) = load_json::<F, ResultsFile>(fs, path, StateFile::Results)? else {
            return Ok(None);
        };
        if file.version != RESULTS_VERSION {
            return Err(StateError::Corrupt {
                kind: StateFile::Results,
                path: path.to_path_buf(),
                detail: format!(
                    "version {} is not supported (this build reads version {RESULTS_VERSION})",
                    file.version
                ),
            });
        }
        Ok(Some(file))
    }

    /// The recorded token for a key, if any.
    pub fn get(&self, key: &TokenKey) -> Option<&TokenRecord> {
        self.accounts
            .get(&key.account_id)
            .and_then(|m| m.get(&key.token_name))
    }

    /// Whether a token id is already recorded, and for which key.
    pub fn find_token_id(&self, token_id: i64) -> Option<TokenKey> {
        self.accounts.iter().find_map(|(acc, m)| {
            m.iter()
                .find(|(_, r)| r.token_id == token_id)
                .map(|(name, _)| TokenKey {
                    account_id: *acc,
                    token_name: name.clone(),
                })
        })
    }

    /// Records a created token. A different token recorded under the same key (recreated or
    /// rotated) moves to `superseded`, never dropped.
    pub fn insert(&mut self, key: &TokenKey, record: TokenRecord) {
        let new_id = record.token_id;
        let old = self
            .accounts
            .entry(key.account_id)
            .or_default()
            .insert(key.token_name.clone(), record);
        if let Some(old) = old
            && old.token_id != new_id
            && !self.superseded.iter().any(|s| s.token_id == old.token_id)
        {
            self.superseded.push(SupersededToken {
                account_id: key.account_id,
                token_name: key.token_name.clone(),
                token_id: old.token_id,
                created_at: old.created_at,
                replaced_by: new_id,
                // A current token's 401/403 is not proof that it was deleted (a misrouted
                // endpoint answers 403 to every token), so a token replaced for being `revoked`
                // stays on the remove-by-hand list until a verify confirms its deletion by a
                // 200 from the account's new token.
                status: old.status.filter(|s| *s != TokenStatus::Revoked),
                checked_at: old.checked_at,
            });
        }
    }

    /// Notes what `verify` saw of each token id in `seen`, current or superseded, in one pass.
    /// Returns how many were found (an id recorded nowhere is skipped: the file changed since
    /// the probe was planned).
    pub fn set_statuses(
        &mut self,
        seen: &std::collections::HashMap<i64, TokenStatus>,
        at: &str,
    ) -> usize {
        let mut found = 0;
        let records = self.accounts.values_mut().flat_map(BTreeMap::values_mut);
        for r in records {
            if let Some(status) = seen.get(&r.token_id) {
                r.status = Some(*status);
                r.checked_at = Some(at.to_owned());
                found += 1;
            }
        }
        for s in &mut self.superseded {
            if let Some(status) = seen.get(&s.token_id) {
                s.status = Some(*status);
                s.checked_at = Some(at.to_owned());
                found += 1;
            }
        }
        found
    }

    /// The replaced tokens still to be removed by hand (not seen deleted).
    pub fn superseded_to_remove(&self) -> impl Iterator<Item = &SupersededToken> {
        self.superseded.iter().filter(|s| s.remove_by_hand())
    }

    /// Notes an ambiguous outcome for a key. Idempotent for the same event (same `at`), so
    /// replaying a journal twice does not count an event twice.
    pub fn note_orphan(&mut self, key: &TokenKey, detail: &str, at: &str) {
        if let Some(o) = self
            .possible_orphans
            .iter_mut()
            .find(|o| o.account_id == key.account_id && o.token_name == key.token_name)
        {
            if crate::timestamp::rfc3339_cmp(at, &o.at).is_le() {
                return;
            }
            o.ambiguous_attempts += 1;
            o.detail = detail.to_owned();
            o.at = at.to_owned();
        } else {
            self.possible_orphans.push(PossibleOrphan {
                account_id: key.account_id,
                token_name: key.token_name.clone(),
                ambiguous_attempts: 1,
                detail: detail.to_owned(),
                at: at.to_owned(),
            });
        }
    }

    /// The number of recorded tokens.
    pub fn token_count(&self) -> usize {
        self.accounts.values().map(BTreeMap::len).sum()
    }

    /// Serializes with `updated_at` set to `at` (RFC 3339), pretty, with a trailing newline.
    pub fn to_bytes(&mut self, at: &str) -> Vec<u8> {
        self.updated_at = at.to_owned();
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// How a recorded token came to be, when not created by this tool (`source` in the results
/// file; absent for tokens this tool created).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Recorded by `logzio-tokens import`: created outside the tool.
    Imported,
}

/// The JSON Schema of the results file.
pub fn results_schema_text() -> String {
    let schema = schemars::schema_for!(ResultsFile);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::json::json_error_detail;

    #[test]
    fn a_learned_limit_is_of_the_kind_its_figures_say() {
        assert_eq!(LimitKind::of(Some(50.0), Some(8)), Some(LimitKind::Both));
        assert_eq!(LimitKind::of(Some(50.0), None), Some(LimitKind::Rate));
        assert_eq!(LimitKind::of(None, Some(8)), Some(LimitKind::InFlight));
        assert_eq!(LimitKind::of(None, None), None);
    }

    fn key(a: u32, n: &str) -> TokenKey {
        TokenKey {
            account_id: a,
            token_name: n.into(),
        }
    }

    #[test]
    fn a_token_replaced_for_being_revoked_stays_to_remove_until_a_verify_confirms_it() {
        let mut f = ResultsFile::new_at(None, "2026-12-07T00:00:00Z".into());
        let k = key(160343, "ci");
        let record = |id, status| TokenRecord {
            token_id: id,
            created_at: "2026-12-07T00:00:00Z".into(),
            status,
            ..TokenRecord::default()
        };
        f.insert(&k, record(7000, Some(TokenStatus::Revoked)));
        f.insert(&k, record(7001, None));
        let ids: Vec<i64> = f.superseded_to_remove().map(|s| s.token_id).collect();
        assert_eq!(
            ids,
            [7000],
            "a 403 alone must not take a live token off the list"
        );
    }

    #[test]
    fn a_learned_limit_is_read_only_for_its_own_endpoint() {
        let mut f = ResultsFile::new_at(None, "2026-12-07T00:00:00Z".into());
        assert_eq!(f.learned_limit("https://api.logz.io"), (None, None));
        f.learned_rate = Some(LearnedRate {
            per_second: Some(32.5),
            in_flight: Some(10),
            kind: LimitKind::Both,
            endpoint: "https://api.logz.io".into(),
            at: "2026-12-07T00:00:00Z".into(),
        });
        assert_eq!(
            f.learned_limit("https://api.logz.io"),
            (Some(32.5), Some(10))
        );
        assert_eq!(f.learned_limit("https://api-eu.logz.io"), (None, None));
    }

    #[test]
    fn contract_example_parses() {
        let text = r#"{
  "version": 1,
  "api_url": "https://api-eu.logz.io",
  "updated_at": "2026-11-23T20:00:00Z",
  "accounts": {
    "160343": {
      "ci":      { "token_id": 7386, "created_at": "2021-05-24T12:11:51Z" },
      "grafana": { "token_id": 7387, "created_at": "2021-05-24T12:11:52Z" }
    }
  },
  "failures": [
    { "account_id": 160344, "token_name": "log-automation", "http_status": 404, "error": "sub account not found" }
  ],
  "possible_orphans": [
    { "account_id": 160343, "token_name": "ci", "ambiguous_attempts": 1, "detail": "connection lost after the request was sent", "at": "2026-11-23T19:59:58Z" }
  ]
}"#;
        let f: ResultsFile = serde_json::from_str(text).unwrap();
        assert_eq!(f.get(&key(160343, "ci")).unwrap().token_id, 7386);
        assert_eq!(f.failures[0].http_status, Some(404));
        assert_eq!(f.possible_orphans[0].ambiguous_attempts, 1);
        assert_eq!(f.find_token_id(7387), Some(key(160343, "grafana")));
    }

    #[test]
    fn missing_is_first_run_and_corrupt_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        assert!(ResultsFile::load(&p).unwrap().is_none());
        std::fs::write(&p, "{\"version\": 1, \"accounts\": ").unwrap();
        let err = ResultsFile::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("is corrupt") && err.contains("line 1"),
            "{err}"
        );
        std::fs::write(&p, "").unwrap();
        assert!(ResultsFile::load(&p).is_err());
    }

    #[test]
    fn statuses_have_the_names_of_the_results_file() {
        let names = [
            (TokenStatus::Valid, "valid"),
            (TokenStatus::Revoked, "revoked"),
            (TokenStatus::WrongAccount, "wrong_account"),
            (TokenStatus::Unknown, "unknown"),
        ];
        for (status, name) in names {
            assert_eq!(status.as_str(), name);
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn a_results_file_of_this_version_loads_and_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let mut f = ResultsFile::new(None);
        f.insert(
            &key(1, "ci"),
            TokenRecord {
                token_id: 5,
                ..TokenRecord::default()
            },
        );
        std::fs::write(&p, f.to_bytes("2026-11-23T20:00:00.000Z")).unwrap();
        let back = ResultsFile::load(&p).unwrap().unwrap();
        assert_eq!(back.get(&key(1, "ci")).unwrap().token_id, 5);
        let text =
            std::fs::read_to_string(&p)
                .unwrap()
                .replacen("\"version\": 1", "\"version\": 2", 1);
        std::fs::write(&p, text).unwrap();
        let err = ResultsFile::load(&p).unwrap_err().to_string();
        assert!(err.contains("version 2 is not supported"), "{err}");
        // A path that is not a readable file is an error, not a first run.
        assert!(ResultsFile::load(dir.path()).is_err());
    }

    #[test]
    fn json_errors_say_what_kind_of_problem_without_the_content() {
        let detail =
            |text: &str| json_error_detail(&serde_json::from_str::<ResultsFile>(text).unwrap_err());
        assert_eq!(
            detail("{\"version\": 1,"),
            "line 1 column 14: it ends too early (cut short?)"
        );
        assert_eq!(detail("{]"), "line 1 column 2: it is not valid JSON");
        let data = detail("{\"version\": \"sek-secret\"}");
        assert_eq!(data, "line 1 column 24: a value has the wrong type");
        let unknown = detail("{\"sek-secret\": 1}");
        assert!(unknown.ends_with("an unknown field"), "{unknown}");
        assert!(!unknown.contains("sek-secret"), "{unknown}");
        assert!(detail("{}").ends_with("a required field is missing"));
    }

    #[test]
    fn a_replaced_token_is_listed_once_even_when_ids_come_back() {
        let mut f = ResultsFile::new(None);
        let k = key(1, "ci");
        for id in [10, 11, 10, 11] {
            f.insert(
                &k,
                TokenRecord {
                    token_id: id,
                    ..TokenRecord::default()
                },
            );
        }
        let ids: Vec<(i64, i64)> = f
            .superseded
            .iter()
            .map(|s| (s.token_id, s.replaced_by))
            .collect();
        assert_eq!(ids, [(10, 11), (11, 10)]);
        assert_eq!(f.token_count(), 1);
        f.insert(&key(1, "other"), TokenRecord::default());
        f.insert(&key(2, "ci"), TokenRecord::default());
        assert_eq!(f.token_count(), 3);
    }

    #[test]
    fn orphan_notes_are_kept_per_key() {
        let mut f = ResultsFile::new(None);
        f.note_orphan(&key(1, "a"), "timeout", "2026-01-01T00:00:00.001Z");
        f.note_orphan(&key(1, "b"), "timeout", "2026-01-01T00:00:00.002Z");
        f.note_orphan(&key(2, "a"), "timeout", "2026-01-01T00:00:00.003Z");
        assert_eq!(f.possible_orphans.len(), 3);
        assert!(f.possible_orphans.iter().all(|o| o.ambiguous_attempts == 1));
    }

    #[test]
    fn the_schema_text_is_the_committed_schema() {
        assert_eq!(
            results_schema_text(),
            include_str!("../../../schemas/results.schema.json")
        );
    }

    #[test]
    fn a_replaced_token_moves_to_superseded_and_leaves_the_list_once_seen_deleted() {
        let mut f = ResultsFile::new(None);
        let k = key(1, "ci");
        let rec = |id| TokenRecord {
            token_id: id,
            created_at: "2026-01-01T00:00:00Z".into(),
            ..TokenRecord::default()
        };
        f.insert(&k, rec(10));
        f.insert(&k, rec(10));
        assert!(f.superseded.is_empty());
        let seen = |id, status| std::collections::HashMap::from([(id, status)]);
        assert_eq!(
            f.set_statuses(&seen(10, TokenStatus::Valid), "2026-01-02T00:00:00Z"),
            1
        );
        f.insert(&k, rec(11));
        assert_eq!(f.get(&k).unwrap().token_id, 11);
        assert_eq!(f.get(&k).unwrap().status, None);
        assert_eq!(f.superseded.len(), 1);
        assert_eq!(
            (f.superseded[0].token_id, f.superseded[0].replaced_by),
            (10, 11)
        );
        assert_eq!(f.superseded[0].status, Some(TokenStatus::Valid));
        assert_eq!(f.superseded_to_remove().count(), 1);
        assert_eq!(
            f.set_statuses(&seen(10, TokenStatus::Revoked), "2026-01-03T00:00:00Z"),
            1
        );
        assert_eq!(f.superseded_to_remove().count(), 0);
        assert_eq!(
            f.set_statuses(&seen(99, TokenStatus::Valid), "2026-01-03T00:00:00Z"),
            0
        );
        // Written and read back: the new fields round-trip, old files (without them) still load.
        let back: ResultsFile =
            serde_json::from_slice(&f.clone().to_bytes("2026-11-23T20:00:00.000Z")).unwrap();
        assert_eq!(back.superseded, f.superseded);
        let text = serde_json::to_string(&back).unwrap();
        assert!(text.contains("\"status\":\"revoked\""), "{text}");
    }

    #[test]
    fn orphan_notes_are_idempotent_per_event() {
        let mut f = ResultsFile::new(None);
        let k = key(1, "ci");
        f.note_orphan(&k, "timeout", "2026-01-01T00:00:00.001Z");
        f.note_orphan(&k, "timeout", "2026-01-01T00:00:00.001Z");
        assert_eq!(f.possible_orphans[0].ambiguous_attempts, 1);
        f.note_orphan(&k, "500", "2026-01-01T00:00:00.002Z");
        assert_eq!(f.possible_orphans[0].ambiguous_attempts, 2);
        assert_eq!(f.possible_orphans[0].detail, "500");
    }
}
