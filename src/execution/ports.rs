//! The two ports of a run: what sends the calls (the API client in a run) and what makes
//! intents and outcomes durable (the state recorder in a run). Both speak of the run's items by
//! their [`CreateKey`]: a token, or a sub account. The executor runs against fakes of both in
//! its unit tests.

use std::future::Future;

use crate::api::{AccountRequest, ApiClient, ApiError, CreatedToken, SubAccountInfo};
use crate::key::{CreateKey, TokenKey};
use crate::secret::Secret;
use crate::state::Applied;
pub use crate::state::accounts::Settled;
use crate::state::{Failure, RecorderHandle, StateError};

/// Sends the calls of a run's items (the API client in a run). The sub-account calls have
/// defaults that refuse, for senders of tokens alone (test fakes).
pub trait SendCreate: Send + Sync + 'static {
    /// Creates the token `key`. Not idempotent.
    fn create(&self, key: &TokenKey)
    -> impl Future<Output = Result<CreatedToken, ApiError>> + Send;

    /// `POST …/time-based-accounts`: creates a sub account and answers its id. Not idempotent,
    /// and names are not unique.
    fn create_account(
        &self,
        request: &AccountRequest,
    ) -> impl Future<Output = Result<u32, ApiError>> + Send {
        let _ = request;
        async { Err(no_accounts()) }
    }

    /// `GET …/time-based-accounts`: every account (the lookup after an ambiguous create).
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<SubAccountInfo>, ApiError>> + Send {
        async { Err(no_accounts()) }
    }

    /// `GET …/detailed/{id}`: a sub account's log shipping token.
    fn shipping_token(
        &self,
        account_id: u32,
    ) -> impl Future<Output = Result<Secret, ApiError>> + Send {
        let _ = account_id;
        async { Err(no_accounts()) }
    }
}

fn no_accounts() -> ApiError {
    ApiError::Status {
        url: "time-based-accounts".into(),
        status: 405,
        message: "this sender does not make sub-account calls".into(),
        retry_after: None,
    }
}

impl SendCreate for ApiClient {
    fn create(
        &self,
        key: &TokenKey,
    ) -> impl Future<Output = Result<CreatedToken, ApiError>> + Send {
        self.create_token(key.account_id, &key.token_name)
    }

    fn create_account(
        &self,
        request: &AccountRequest,
    ) -> impl Future<Output = Result<u32, ApiError>> + Send {
        ApiClient::create_account(self, request)
    }

    fn list_accounts(&self) -> impl Future<Output = Result<Vec<SubAccountInfo>, ApiError>> + Send {
        ApiClient::list_accounts(self)
    }

    fn shipping_token(
        &self,
        account_id: u32,
    ) -> impl Future<Output = Result<Secret, ApiError>> + Send {
        ApiClient::shipping_token(self, account_id)
    }
}

/// Makes intents and outcomes durable (the recorder in a run).
pub trait RecordOutcomes: Send + Sync + 'static {
    /// Journals the intent to send attempt `attempt` of `key`; returns its sequence number once
    /// it is durable. An error means the request must not be sent.
    fn intent(
        &self,
        key: &CreateKey,
        attempt: u32,
    ) -> impl Future<Output = Result<u64, StateError>> + Send;

    /// Journals and applies the outcome of intent `seq`; returns once it is durable.
    fn outcome(
        &self,
        seq: u64,
        settled: Settled,
    ) -> impl Future<Output = Result<Applied, StateError>> + Send;

    /// Records an item of this run that did not get a token.
    fn failure(&self, failure: Failure);

    /// Says whether more requests are waiting to be sent (beyond those in flight).
    fn sends_ahead(&self, _more: bool) {}
}

impl RecordOutcomes for RecorderHandle {
    fn intent(
        &self,
        key: &CreateKey,
        attempt: u32,
    ) -> impl Future<Output = Result<u64, StateError>> + Send {
        RecorderHandle::intent(self, key.clone(), attempt)
    }

    fn outcome(
        &self,
        seq: u64,
        settled: Settled,
    ) -> impl Future<Output = Result<Applied, StateError>> + Send {
        RecorderHandle::settle(self, seq, settled)
    }

    fn failure(&self, failure: Failure) {
        RecorderHandle::failure(self, failure);
    }

    fn sends_ahead(&self, more: bool) {
        RecorderHandle::sends_ahead(self, more);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::Outcome;
    use crate::state::accounts::AccountOutcome;
    use crate::state::{StatePaths, Store};

    #[tokio::test]
    async fn the_recorder_handle_records_what_an_attempt_sends_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::for_manifest(&dir.path().join("m.yaml"), None, None);
        let store = Store::open(paths, Some("http://127.0.0.1:1")).unwrap();
        let rec = crate::state::Recorder::start(store).unwrap();
        let h = rec.handle();
        let key = TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        };
        let seq = RecordOutcomes::intent(&h, &CreateKey::Token(key.clone()), 1)
            .await
            .unwrap();
        let outcome = Outcome::NotCreated {
            http_status: Some(400),
            detail: "refused".into(),
        };
        assert_eq!(
            RecordOutcomes::outcome(&h, seq, Settled::Token(key, outcome))
                .await
                .unwrap(),
            Applied::Noted
        );
        RecordOutcomes::failure(
            &h,
            Failure {
                account_id: Some(7),
                account_name: None,
                token_name: "ci".into(),
                http_status: Some(400),
                error: "refused".into(),
            },
        );
        // A sub account through the same two calls.
        let account = CreateKey::Account("team-a".into());
        let seq = RecordOutcomes::intent(&h, &account, 1).await.unwrap();
        let created = AccountOutcome::Created {
            account_id: 9,
            created_at: "2026-11-23T20:00:00.000Z".into(),
        };
        assert_eq!(
            RecordOutcomes::outcome(&h, seq, Settled::Account("team-a".into(), created))
                .await
                .unwrap(),
            Applied::Recorded
        );
        drop(h);
        let (store, res) = rec.finish().await;
        res.unwrap();
        let store = store.unwrap();
        let failures = store.results().failures.clone();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].error, "refused");
        assert_eq!(store.results().accounts_created["team-a"].account_id, 9);
    }
}
