//! Machine output: every JSON document or line written to stdout is one [`Message`], tagged by
//! `type` and versioned by `"v": 1`. One type name has one shape:
//!
//! - `plan`: `plan --json`'s document, the whole plan with its lists;
//! - `plan_counts`: the first line of `apply --output json`, what the run is about to do, as
//!   counts (earlier builds called this line `plan` too, with `create` a count);
//! - `item` / `ambiguous`: one line per token or sub account as its outcome becomes final,
//!   `kind` saying which (`token`, `account`);
//! - `summary`: the last line of `apply --output json`;
//! - `verified` / `unverifiable`: one line per token `verify` probed, or could not (no secret);
//! - `verify_summary`: the last line of `verify --output json`.
//!
//! No message holds a secret: none of these types has a field that could.

use serde::{Serialize, Serializer};

use super::output::Printer;
use crate::key::TokenKey;
use crate::plan::Plan;

/// One message on stdout.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message<'a> {
    /// `plan --json`.
    Plan(PlanDocument<'a>),
    /// `apply --output json`, first line.
    PlanCounts(PlanCounts<'a>),
    /// A token's or a sub account's final outcome.
    Item(Line<'a>),
    /// A request whose outcome is unknown (a possible orphan).
    Ambiguous(Line<'a>),
    /// `apply --output json`, last line.
    Summary(SummaryLine<'a>),
    /// `verify --output json`: a probed token's verdict.
    Verified(VerifiedLine<'a>),
    /// `verify --output json`: a recorded token without a known secret.
    Unverifiable(VerifiedLine<'a>),
    /// `verify --output json`, last line.
    VerifySummary(VerifySummaryLine<'a>),
}

/// A `verified` or `unverifiable` line.
#[derive(Debug, Serialize)]
pub struct VerifiedLine<'a> {
    /// The sub account.
    pub account_id: u32,
    /// Requests sent (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// For `wrong_account`, whose token it is; for `unknown`, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// The last HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// `valid`, `revoked`, `wrong_account` or `unknown` (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Whether the token is a replaced one (the results file's `superseded`).
    pub superseded: bool,
    /// The token's id.
    pub token_id: i64,
    /// The token's name.
    pub token_name: &'a str,
    /// Always 1.
    pub v: V1,
}

/// `verify_summary`: verify's last line.
#[derive(Debug, Serialize)]
pub struct VerifySummaryLine<'a> {
    /// Tokens probed to a verdict.
    pub checked: usize,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// The process exit code.
    pub exit_code: u8,
    /// Tokens not probed because the run stopped.
    pub not_checked: usize,
    /// Answers 429.
    pub rate_limited: u64,
    /// Replaced tokens still to be removed by hand after this run.
    pub remove_by_hand: usize,
    /// The results file.
    pub results_file: &'a str,
    /// Current tokens that answered 401/403.
    pub revoked: usize,
    /// The server's limit in words, of either kind or both ("~10 in flight"; null when the
    /// run met none), as apply's summary says it.
    pub server_limit: Option<String>,
    /// Why the run stopped: `completed`, `interrupted`, `fatal: ...`.
    pub stop: String,
    /// Current tokens still failing after the retries.
    pub unknown: usize,
    /// Recorded tokens without a known secret.
    pub unverifiable: usize,
    /// Current tokens that answered for their account.
    pub valid: usize,
    /// Current tokens that answered for another account.
    pub wrong_account: usize,
    /// Always 1.
    pub v: V1,
}

impl Message<'_> {
    /// Writes the message as one line on stdout.
    pub fn emit(&self, printer: &Printer) {
        if let Ok(text) = serde_json::to_string(self) {
            printer.out(&text);
        }
    }
}

/// The format version, written as `"v": 1` last in every message.
#[derive(Debug, Clone, Copy, Default)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(1)
    }
}

/// `plan --json`: the plan's own fields, then where it applies and how apply would send.
#[derive(Debug, Serialize)]
pub struct PlanDocument<'a> {
    /// `create`, `present`, `remove_by_hand`, `unresolved`, `unknown_accounts`,
    /// `resolved_names`, `account_names` (id -> the name it is known by), `possible_orphans`
    /// (a count), `live`.
    #[serde(flatten)]
    pub plan: &'a Plan,
    /// The manifest, as given.
    pub manifest: String,
    /// The endpoint identity (base URL, or `simulator`).
    pub endpoint: String,
    /// Where the endpoint came from: `--api-url`, `LOGZIO_API_URL`, `manifest`, `default`…
    pub endpoint_source: String,
    /// Every token apply would create, each with its `kind` (`create`, `replace`).
    pub changes: Vec<crate::plan::Change>,
    /// How apply would send.
    pub execution: Execution,
    /// The lists' lengths.
    pub summary: PlanSummary,
    /// Always 1.
    pub v: V1,
}

/// `execution` of a plan document.
#[derive(Debug, Serialize)]
pub struct Execution {
    /// Most requests in flight.
    pub concurrency: u32,
    /// Rate ceiling.
    pub rate_per_second: f64,
    /// Attempts per token.
    pub max_attempts: u32,
    /// Ambiguous attempts per token.
    pub max_ambiguous: u32,
}

/// `summary` of a plan document: counts.
#[derive(Debug, Serialize)]
pub struct PlanSummary {
    /// Tokens to create.
    pub create: usize,
    /// Recorded tokens to replace.
    pub replace: usize,
    /// Tokens already recorded.
    pub present: usize,
    /// Recorded tokens the manifest no longer wants.
    pub remove_by_hand: usize,
    /// Recorded tokens verify saw revoked.
    pub revoked: usize,
    /// Replaced tokens still working, to remove by hand.
    pub replaced_to_remove: usize,
    /// Accounts given by name without an id.
    pub unresolved: usize,
    /// Ids that are not sub accounts of the owner.
    pub unknown_accounts: usize,
    /// Possible orphans listed in the results file.
    pub possible_orphans: usize,
}

impl PlanSummary {
    /// The counts of a plan.
    pub fn of(plan: &Plan) -> PlanSummary {
        PlanSummary {
            create: plan.create.len(),
            replace: plan.replace.len(),
            present: plan.present.len(),
            remove_by_hand: plan.remove_by_hand.len(),
            revoked: plan.revoked.len(),
            replaced_to_remove: plan.replaced_to_remove.len(),
            unresolved: plan.unresolved.len(),
            unknown_accounts: plan.unknown_accounts.len(),
            possible_orphans: plan.possible_orphans,
        }
    }
}

/// `plan_counts`: apply's first line.
#[derive(Debug, Serialize)]
pub struct PlanCounts<'a> {
    /// Tokens to create.
    pub create: usize,
    /// Recorded tokens to replace (rotation, recreation).
    pub replace: usize,
    /// The endpoint identity.
    pub endpoint: &'a str,
    /// Tokens of accounts found unusable before any write (reported as failed).
    pub failed_before_start: usize,
    /// The manifest, as given.
    pub manifest: String,
    /// Tokens already recorded.
    pub present: usize,
    /// Recorded tokens the manifest no longer wants.
    pub remove_by_hand: usize,
    /// Always 1.
    pub v: V1,
}

/// An `item` or `ambiguous` line: about a token, or a sub account; its `kind` says which.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Line<'a> {
    /// `"kind": "token"`.
    Token(ItemLine<'a>),
    /// `"kind": "account"`.
    Account(AccountLine<'a>),
}

/// An `item` or `ambiguous` line about a sub account the run creates: its name, and its id
/// once known. Never its log shipping token.
#[derive(Debug, Serialize)]
pub struct AccountLine<'a> {
    /// The account's id (`created`, `adopted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<u32>,
    /// The account's name.
    pub account_name: &'a str,
    /// Creates sent (`item` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What made the outcome unknown (`ambiguous` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Present (possibly null) on failed items only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<Option<u16>>,
    /// Always `account`.
    pub kind: &'static str,
    /// `created`, `adopted` (found by a lookup after an ambiguous create) or `failed` (`item`
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    /// Always 1.
    pub v: V1,
}

impl<'a> AccountLine<'a> {
    /// A line about the account `name`, with no other field yet.
    pub fn of(name: &'a str) -> Self {
        AccountLine {
            account_id: None,
            account_name: name,
            attempts: None,
            detail: None,
            error: None,
            http_status: None,
            kind: "account",
            result: None,
            v: V1,
        }
    }
}

/// An `item` or `ambiguous` line about a token, written once per token: serialized straight
/// from borrowed fields, since a large run writes one per token.
#[derive(Debug, Serialize)]
pub struct ItemLine<'a> {
    /// The sub account.
    pub account_id: u32,
    /// Attempts made (`item` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What made the outcome unknown (`ambiguous` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Present (possibly null) on failed items only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<Option<u16>>,
    /// Always `token`.
    pub kind: &'static str,
    /// `created` or `failed` (`item` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    /// The created token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<i64>,
    /// The token's name.
    pub token_name: &'a str,
    /// Always 1.
    pub v: V1,
}

impl<'a> ItemLine<'a> {
    /// A line about `key`, with no other field yet.
    pub fn of(key: &'a TokenKey) -> Self {
        ItemLine {
            account_id: key.account_id,
            attempts: None,
            detail: None,
            error: None,
            http_status: None,
            kind: "token",
            result: None,
            token_id: None,
            token_name: &key.token_name,
            v: V1,
        }
    }
}

/// `summary`: apply's last line.
#[derive(Debug, Serialize)]
pub struct SummaryLine<'a> {
    /// Sub accounts this run created or found by a lookup after an ambiguous create.
    pub accounts_created: usize,
    /// Sub accounts the run was to create that it did not (each also has its `item` line).
    pub accounts_failed: usize,
    /// Tokens already recorded before the run.
    pub already_present: usize,
    /// Requests whose outcome was unknown.
    pub ambiguous: u64,
    /// Requests sent.
    pub attempts: u64,
    /// Tokens created and recorded.
    pub created: u64,
    /// Wall time of the run.
    pub elapsed_seconds: f64,
    /// The process exit code.
    pub exit_code: u8,
    /// Tokens that failed (before the start and during the run).
    pub failed: usize,
    /// The pacer's rate at the end.
    pub final_rate_per_second: f64,
    /// The server's limit as this run measured it (null when it met none).
    pub learned_limit_per_second: Option<f64>,
    /// The server's limit on requests in flight as this run measured it (null when it met
    /// none).
    pub learned_limit_in_flight: Option<u32>,
    /// The server's limit in words, of either kind or both ("~10 in flight"; null when the
    /// run met none).
    pub server_limit: Option<String>,
    /// Ambiguous attempts allowed per token.
    pub max_ambiguous: u32,
    /// Tokens not sent again because they used up their ambiguous attempts.
    pub ambiguity_exhausted: u64,
    /// Whether the run stopped because too many recent answers were ambiguous.
    pub ambiguity_breaker: bool,
    /// Tokens not attempted (a stop before they were sent).
    pub not_attempted: u64,
    /// Possible orphans listed in the results file after the run.
    pub possible_orphans: usize,
    /// Answers 429.
    pub rate_limited: u64,
    /// The results file.
    pub results_file: &'a str,
    /// Retries sent.
    pub retries: u64,
    /// The secrets file.
    pub secrets_file: &'a str,
    /// Why the run stopped: `completed`, `fail-fast`, `interrupted`, `fatal: ...`, `state: ...`.
    pub stop: String,
    /// When the final save failed: the requests answered or in flight after the state
    /// stopped taking writes, each a token that may be recorded nowhere (empty otherwise).
    pub unsaved: &'a [crate::key::TokenKey],
    /// Always 1.
    pub v: V1,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn json(m: &Message<'_>) -> serde_json::Value {
        serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap()
    }

    #[test]
    fn each_type_name_has_its_own_shape_and_a_version() {
        let key = TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        };
        let item = json(&Message::Item(Line::Token(ItemLine {
            attempts: Some(1),
            result: Some("created"),
            token_id: Some(9),
            ..ItemLine::of(&key)
        })));
        assert_eq!(
            item,
            serde_json::json!({"type": "item", "account_id": 7, "attempts": 1, "kind": "token",
                "result": "created", "token_id": 9, "token_name": "ci", "v": 1})
        );
        let account = json(&Message::Item(Line::Account(AccountLine {
            account_id: Some(12),
            attempts: Some(2),
            result: Some("adopted"),
            ..AccountLine::of("team-a")
        })));
        assert_eq!(
            account,
            serde_json::json!({"type": "item", "account_id": 12, "account_name": "team-a",
                "attempts": 2, "kind": "account", "result": "adopted", "v": 1})
        );
        let plan = Plan {
            create: vec![key.clone()],
            ..Plan::default()
        };
        let doc = json(&Message::Plan(PlanDocument {
            plan: &plan,
            manifest: "m.yaml".into(),
            endpoint: "simulator".into(),
            endpoint_source: "--simulate".into(),
            changes: plan.changes(),
            execution: Execution {
                concurrency: 8,
                rate_per_second: 20.0,
                max_attempts: 6,
                max_ambiguous: 2,
            },
            summary: PlanSummary::of(&plan),
            v: V1,
        }));
        assert_eq!(doc["type"], "plan");
        assert_eq!(doc["create"][0]["token_name"], "ci", "a list in `plan`");
        assert_eq!(
            doc["changes"][0]["kind"], "create",
            "each change has its kind"
        );
        assert_eq!(doc["summary"]["create"], 1);
        assert_eq!(doc["v"], 1);
        let counts = json(&Message::PlanCounts(PlanCounts {
            create: 1,
            replace: 0,
            endpoint: "simulator",
            failed_before_start: 0,
            manifest: "m.yaml".into(),
            present: 0,
            remove_by_hand: 0,
            v: V1,
        }));
        assert_eq!(counts["type"], "plan_counts");
        assert_eq!(counts["create"], 1, "a count in `plan_counts`");
    }
}
