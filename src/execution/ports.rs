//! The two ports of a run: what sends a create call (the API client in a run) and what makes
//! intents and outcomes durable (the state recorder in a run). The executor runs against fakes
//! of both in its unit tests.

use std::future::Future;

use crate::api::{ApiClient, ApiError, CreatedToken};
use crate::key::TokenKey;
use crate::state::Applied;
use crate::state::Outcome;
use crate::state::{Failure, RecorderHandle, StateError};

/// Sends the create call for a token (the API client in a run).
pub trait SendCreate: Send + Sync + 'static {
    /// Creates the token `key`. Not idempotent.
    fn create(&self, key: &TokenKey)
    -> impl Future<Output = Result<CreatedToken, ApiError>> + Send;
}

impl SendCreate for ApiClient {
    fn create(
        &self,
        key: &TokenKey,
    ) -> impl Future<Output = Result<CreatedToken, ApiError>> + Send {
        self.create_token(key.account_id, &key.token_name)
    }
}

/// Makes intents and outcomes durable (the recorder in a run).
pub trait RecordOutcomes: Send + Sync + 'static {
    /// Journals the intent to send attempt `attempt` of `key`; returns its sequence number once
    /// it is durable. An error means the request must not be sent.
    fn intent(
        &self,
        key: &TokenKey,
        attempt: u32,
    ) -> impl Future<Output = Result<u64, StateError>> + Send;

    /// Journals and applies the outcome of intent `seq`; returns once it is durable.
    fn outcome(
        &self,
        seq: u64,
        key: &TokenKey,
        outcome: Outcome,
    ) -> impl Future<Output = Result<Applied, StateError>> + Send;

    /// Records an item of this run that did not get a token.
    fn failure(&self, failure: Failure);

    /// Says whether more requests are waiting to be sent (beyond those in flight).
    fn sends_ahead(&self, _more: bool) {}
}

impl RecordOutcomes for RecorderHandle {
    fn intent(
        &self,
        key: &TokenKey,
        attempt: u32,
    ) -> impl Future<Output = Result<u64, StateError>> + Send {
        RecorderHandle::intent(self, key, attempt)
    }

    fn outcome(
        &self,
        seq: u64,
        key: &TokenKey,
        outcome: Outcome,
    ) -> impl Future<Output = Result<Applied, StateError>> + Send {
        RecorderHandle::outcome(self, seq, key, outcome)
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
        let seq = RecordOutcomes::intent(&h, &key, 1).await.unwrap();
        let outcome = Outcome::NotCreated {
            http_status: Some(400),
            detail: "refused".into(),
        };
        assert_eq!(
            RecordOutcomes::outcome(&h, seq, &key, outcome)
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
        drop(h);
        let (store, res) = rec.finish().await;
        res.unwrap();
        let failures = store.unwrap().results().failures.clone();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].error, "refused");
    }
}
