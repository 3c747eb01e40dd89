//! The simulator without a socket: the same state, limits and seeded fault draw as the server
//! ([`Shared::admit`] decides), answered as values instead of HTTP, for the deterministic
//! simulation (`tests/sim/`). A caller plays the answer's latency on its own clock and maps
//! the answer to what a client would have seen.
//!
//! The sub-account endpoints are here too ([`InProcess::create_account`], the list, the
//! detailed read with the log shipping token), through the same decision and fault draw.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::config::{SimConfig, SimConfigError};
use super::faults::Fault;
use super::state::{AnswerFate, Call, CreatedToken, Decision, Shared};
use super::{Counters, CreateAttempt, SimAccount};

/// What a token-creation request got, as the client would see it (before decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateAnswer {
    /// 200 with this body (a token was created and its answer arrives in full).
    Created(Bytes),
    /// 500 after the token was created.
    ErrorAfterCreate,
    /// The connection closed without an answer; `created` says whether a token exists.
    Lost {
        /// Whether the server created a token before the connection closed.
        created: bool,
    },
    /// 200 whose body was cut at this many bytes (the token exists).
    Truncated(Bytes),
    /// 429 (a limit or an injected fault); nothing was created.
    RateLimited,
    /// 503; nothing was created.
    Unavailable,
    /// 404: the account is not a sub account of the owner.
    UnknownAccount,
}

impl CreateAnswer {
    /// Whether the server created a token for this request.
    pub fn created(&self) -> bool {
        match self {
            CreateAnswer::Created(_)
            | CreateAnswer::ErrorAfterCreate
            | CreateAnswer::Truncated(_) => true,
            CreateAnswer::Lost { created } => *created,
            _ => false,
        }
    }
}

/// What a whoami probe with a sub-account token got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// 200: the token is live, for this account.
    Live(i64),
    /// 403: unknown or deleted token.
    Forbidden,
    /// 429 or 503: nothing learnt.
    Refused(u16),
}

/// The simulator's state without a listener.
#[derive(Debug, Clone)]
pub struct InProcess {
    shared: Arc<Shared>,
}

impl InProcess {
    /// A simulator for this configuration (its `listen` address is ignored).
    pub fn new(config: &SimConfig) -> Result<InProcess, SimConfigError> {
        config.validate()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Ok(InProcess {
            shared: Arc::new(Shared::new(config, addr)),
        })
    }

    /// Decides a token-creation request for `account_id` named `name`, and how long its
    /// answer takes (latency, jitter and the slow delay, drawn from the seed).
    pub fn create(&self, account_id: i64, name: &str) -> (CreateAnswer, Duration) {
        let admission = self.shared.admit(Call::Create {
            account_id,
            name: name.to_owned(),
        });
        let answer = create_answer(admission.decision);
        if let Some(i) = admission.attempt {
            let fate = match &answer {
                CreateAnswer::Created(_)
                | CreateAnswer::RateLimited
                | CreateAnswer::Unavailable
                | CreateAnswer::UnknownAccount => AnswerFate::Delivered,
                _ => AnswerFate::Withheld,
            };
            self.shared.settle_answer(i, fate);
        }
        (answer, admission.delay)
    }

    /// Decides a sub-account create (`POST …/time-based-accounts` with this JSON body), and
    /// how long its answer takes. The answer is a create's: `Created` with the `{"accountId"}`
    /// body, a fault after the create, or a refusal (429, 503); a body the endpoint refuses
    /// (400) answers `UnknownAccount`. The account lists at once (`account_list_lag` plays on
    /// the real clock: a caller on a paused clock plays the lag itself).
    pub fn create_account(&self, body: &[u8]) -> (CreateAnswer, Duration) {
        let request = match super::accounts::parse_request(body, true) {
            Ok(r) => r,
            Err(_) => return (CreateAnswer::UnknownAccount, Duration::ZERO),
        };
        let admission = self.shared.admit(Call::CreateAccount(request));
        let answer = create_answer(admission.decision);
        (answer, admission.delay)
    }

    /// Decides `GET …/time-based-accounts`: the list's JSON body (owner first), or the status
    /// of a refusal (429 from a limit).
    pub fn list_accounts(&self) -> (Result<Bytes, u16>, Duration) {
        let admission = self.shared.admit(Call::TimeBasedAccounts);
        let answer = match admission.decision {
            Decision::Json(body) => Ok(body),
            _ => Err(429),
        };
        (answer, admission.delay)
    }

    /// Decides `GET …/time-based-accounts/detailed/{id}`: its JSON body (with the log shipping
    /// token), or the status of a refusal (404 for an id the owner does not have, 429).
    pub fn detailed_account(&self, id: i64) -> (Result<Bytes, u16>, Duration) {
        let admission = self.shared.admit(Call::DetailedAccount(id));
        let answer = match admission.decision {
            Decision::Json(body) => Ok(body),
            Decision::NoSuchAccount(_) | Decision::UnknownAccount { .. } => Err(404),
            _ => Err(429),
        };
        (answer, admission.delay)
    }

    /// Every sub account (configured and created through the API), shipping tokens included:
    /// the ground truth of the account side.
    pub fn accounts(&self) -> Vec<SimAccount> {
        self.shared.sim_accounts()
    }

    /// Decides a whoami probe with a sub-account token (verify).
    pub fn probe(&self, token: &str) -> (ProbeAnswer, Duration) {
        let admission = self.shared.admit(Call::WhoAmIToken {
            token: token.to_owned(),
        });
        let answer = match admission.decision {
            Decision::Json(body) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("accountId").and_then(serde_json::Value::as_i64))
                .map_or(ProbeAnswer::Forbidden, ProbeAnswer::Live),
            Decision::Limited(_) | Decision::Fault429 => ProbeAnswer::Refused(429),
            Decision::Fault503 => ProbeAnswer::Refused(503),
            _ => ProbeAnswer::Forbidden,
        };
        (answer, admission.delay)
    }

    /// Every token created so far, secrets included.
    pub fn ground_truth(&self) -> Vec<CreatedToken> {
        self.shared.ground_truth()
    }

    /// Every token-creation request so far.
    pub fn create_attempts(&self) -> Vec<CreateAttempt> {
        self.shared.attempts()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Deletes a token as an admin would in the UI.
    pub fn delete_token(&self, id: i64) -> bool {
        self.shared.delete_token(id)
    }
}

/// A create's answer (a token's or a sub account's) from the simulator's decision: created, a
/// fault after the create, or a refusal before it.
fn create_answer(decision: Decision) -> CreateAnswer {
    match decision {
        Decision::Limited(_) | Decision::Fault429 => CreateAnswer::RateLimited,
        Decision::Fault503 => CreateAnswer::Unavailable,
        Decision::DropBeforeCreate => CreateAnswer::Lost { created: false },
        Decision::Created { body, fault } => match fault {
            None | Some(Fault::SlowAfterCreate) => CreateAnswer::Created(body),
            Some(Fault::ErrorAfterCreate) => CreateAnswer::ErrorAfterCreate,
            Some(Fault::DropAfterCreate) => CreateAnswer::Lost { created: true },
            Some(Fault::TruncateAfterCreate) => {
                CreateAnswer::Truncated(body.slice(..body.len() / 2))
            }
            // The draw for a create only ever yields the faults above.
            Some(_) => CreateAnswer::Lost { created: true },
        },
        // A valid create is never rejected before the state nor answered with a list (nor
        // with an answer of another endpoint); a body the endpoint refuses lands here too.
        Decision::UnknownAccount { .. }
        | Decision::Reject(_)
        | Decision::Json(_)
        | Decision::NoContent
        | Decision::NoSuchAccount(_)
        | Decision::IllegalAccountRequest(_) => CreateAnswer::UnknownAccount,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::simulator::FaultRates;

    #[test]
    fn an_in_process_create_is_ground_truth_and_its_body_is_the_servers() {
        let sim = InProcess::new(&SimConfig::default()).unwrap();
        let (answer, _) = sim.create(160_343, "ci");
        let CreateAnswer::Created(body) = answer else {
            panic!("{answer:?}")
        };
        let truth = sim.ground_truth();
        assert_eq!(truth.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], truth[0].id);
        assert_eq!(v["token"], truth[0].token.as_str());
        assert_eq!(sim.probe(&truth[0].token).0, ProbeAnswer::Live(160_343));
        assert!(sim.delete_token(truth[0].id));
        assert_eq!(sim.probe(&truth[0].token).0, ProbeAnswer::Forbidden);
        assert_eq!(sim.create(1, "x").0, CreateAnswer::UnknownAccount);
    }

    #[test]
    fn an_in_process_account_create_lists_and_reads_its_shipping_token() {
        let sim = InProcess::new(&SimConfig::default()).unwrap();
        let body = br#"{"accountName":"team-a","email":"a@example.com","retentionDays":7,"maxDailyGB":5,"sharingObjectsAccounts":[]}"#;
        let (answer, _) = sim.create_account(body);
        let CreateAnswer::Created(created) = answer else {
            panic!("{answer:?}")
        };
        let v: serde_json::Value = serde_json::from_slice(&created).unwrap();
        let made: Vec<SimAccount> = sim
            .accounts()
            .into_iter()
            .filter(|a| a.created_by_api)
            .collect();
        assert_eq!(made.len(), 1);
        assert_eq!(v["accountId"], made[0].id);
        let list: serde_json::Value =
            serde_json::from_slice(&sim.list_accounts().0.unwrap()).unwrap();
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|a| a["accountName"] == "team-a")
        );
        let detailed: serde_json::Value =
            serde_json::from_slice(&sim.detailed_account(made[0].id).0.unwrap()).unwrap();
        assert_eq!(
            detailed["account"]["accountToken"],
            made[0].shipping_token.as_str()
        );
        assert_eq!(sim.detailed_account(1).0, Err(404));
        assert_eq!(sim.create_account(b"{}").0, CreateAnswer::UnknownAccount);
    }

    #[test]
    fn faults_after_create_keep_the_token_and_withhold_the_answer() {
        let config = SimConfig {
            faults: FaultRates {
                truncate_after_create: 1.0,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        };
        let sim = InProcess::new(&config).unwrap();
        let (answer, _) = sim.create(160_343, "ci");
        assert!(matches!(answer, CreateAnswer::Truncated(_)));
        assert!(answer.created());
        assert_eq!(sim.ground_truth().len(), 1);
        assert!(!sim.create_attempts()[0].answered());
    }
}
