//! The journal's records: one JSON object per line, appended and fsync'd by a single writer.
//!
//! Before each request an `intent` record; after it an outcome record (`created` with the
//! secret, `ambiguous`, or `not_created`), durable before the executor does anything else with
//! the response. A run that dies at any point leaves a journal from which the next run recovers
//! every received secret; an intent without an outcome becomes a possible orphan.
//! The journal holds secrets, so it is created 0600 and never followed through a symlink.

use serde::{Deserialize, Serialize};

use crate::key::CreateKind;
use crate::secret::Secret;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalRecord {
    /// A request is about to be sent.
    Intent {
        /// Sequence number, unique within the journal.
        seq: u64,
        /// What the request creates (absent in journals written before there was more than
        /// one kind: a token).
        #[serde(default, skip_serializing_if = "CreateKind::is_default")]
        create: CreateKind,
        /// The account id.
        account_id: u32,
        /// The token name.
        token_name: String,
        /// Which attempt for this item (1-based).
        attempt: u32,
        /// When (RFC 3339).
        at: String,
    },
    /// A sub-account create is about to be sent.
    AccountIntent {
        /// Sequence number, unique within the journal (shared with token intents).
        seq: u64,
        /// The account name.
        name: String,
        /// Which attempt for this account (1-based).
        attempt: u32,
        /// The ids that carried the name before the send.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        known: Vec<u32>,
        /// The run that sends it (absent in journals written before it was recorded): the run
        /// an account found after a crash is recorded as created by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// When (RFC 3339).
        at: String,
    },
    /// The sub-account create of intent `seq` ended, or the lookup after it did, or (`seq` 0)
    /// the new account's shipping token was read.
    AccountOutcome {
        /// The intent's sequence number (0 for a shipping token).
        seq: u64,
        /// The account name.
        name: String,
        /// What happened.
        #[serde(flatten)]
        outcome: crate::state::accounts::AccountOutcome,
        /// When (RFC 3339).
        at: String,
    },
    /// The request of intent `seq` ended.
    Outcome {
        /// The intent's sequence number.
        seq: u64,
        /// What the request created (as its intent says).
        #[serde(default, skip_serializing_if = "CreateKind::is_default")]
        create: CreateKind,
        /// The account id.
        account_id: u32,
        /// The token name.
        token_name: String,
        /// What happened.
        #[serde(flatten)]
        outcome: Outcome,
        /// When (RFC 3339).
        at: String,
    },
    /// The first record of every journal: the endpoint its requests go to. Every record after
    /// it is bound to that endpoint (invariant 3): a journal is never replayed into the state of
    /// another. A journal without one (written before it existed) is bound to the endpoint of
    /// the results file it is replayed into.
    Begin {
        /// The API base URL of the run (its identity, as the results file records it).
        endpoint: String,
        /// When (RFC 3339).
        at: String,
    },
    /// A sealed file is about to be written (journaled first, so that a run killed between
    /// that write and the next save of the results file still gets it listed: the replay lists
    /// it when the file holds exactly these bytes).
    Sealed {
        /// Its name, digest and run, as `sealed_files` in the results file lists them.
        #[serde(flatten)]
        file: crate::state::SealedFile,
        /// When (RFC 3339).
        at: String,
    },
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// A token was created and its secret received. The secret is `token` in plaintext mode
    /// and `sealed` (an armored age file holding a one-token secrets document) when the run
    /// seals its secrets; a record read back has exactly one of the two.
    Created {
        /// The token's id.
        token_id: i64,
        /// The secret, in plaintext or sealed.
        #[serde(flatten)]
        secret: HeldSecret,
        /// When Logz.io created it (RFC 3339).
        created_at: String,
    },
    /// A token may have been created (timeout, connection lost, 5xx, cut-short body).
    Ambiguous {
        /// What happened.
        detail: String,
    },
    /// A token was created and its secret received, but it cannot be recorded as the item's
    /// (no usable id): the secret is kept aside and the item is a possible orphan.
    KeptAside {
        /// The id as the API gave it, or 0.
        token_id: i64,
        /// The secret, in plaintext or sealed (a sealed document lists it under
        /// `superseded`).
        #[serde(flatten)]
        secret: HeldSecret,
        /// What was wrong.
        detail: String,
    },
    /// Definitely no token (the request was refused or never reached the server).
    NotCreated {
        /// The HTTP status, if an answer came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        /// What happened.
        detail: String,
    },
}

/// A received secret as a journal record holds it: `token` in plaintext mode, or `sealed` (an
/// armored age file holding a one-token secrets document) when the run seals its secrets. A
/// record read back has exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldSecret {
    /// The secret itself.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "Secret::serialize_exposed_opt"
    )]
    pub token: Option<Secret>,
    /// The secret, sealed to the run's recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

impl HeldSecret {
    /// A secret as received, before the recorder seals it (when the run seals).
    pub fn plain(secret: Secret) -> HeldSecret {
        HeldSecret {
            token: Some(secret),
            sealed: None,
        }
    }

    /// A secret sealed to the run's recipients.
    pub fn sealed(armored: String) -> HeldSecret {
        HeldSecret {
            token: None,
            sealed: Some(armored),
        }
    }
}

impl JournalRecord {
    /// The record as one line (with its newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

impl JournalRecord {
    /// When the record was written (RFC 3339).
    pub(super) fn at(&self) -> &str {
        match self {
            JournalRecord::Intent { at, .. }
            | JournalRecord::Outcome { at, .. }
            | JournalRecord::Begin { at, .. }
            | JournalRecord::Sealed { at, .. }
            | JournalRecord::AccountIntent { at, .. }
            | JournalRecord::AccountOutcome { at, .. } => at,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_written_before_there_were_kinds_reads_as_a_token_and_tokens_write_the_same() {
        // Journals written by earlier versions have no `create` field.
        let old = r#"{"kind":"intent","seq":3,"account_id":7,"token_name":"ci","attempt":1,"at":"2026-11-23T20:00:00.000Z"}"#;
        let rec: JournalRecord = serde_json::from_str(old).unwrap();
        let JournalRecord::Intent { create, seq, .. } = &rec else {
            panic!("{rec:?}");
        };
        assert_eq!((*create, *seq), (CreateKind::Token, 3));
        // A token's record is written exactly as before, so older versions read it too.
        assert_eq!(rec.to_line(), format!("{old}\n").into_bytes());
        let old = r#"{"kind":"outcome","seq":3,"account_id":7,"token_name":"ci","result":"created","token_id":9,"token":"sek","created_at":"x","at":"y"}"#;
        let rec: JournalRecord = serde_json::from_str(old).unwrap();
        assert!(matches!(
            rec,
            JournalRecord::Outcome {
                create: CreateKind::Token,
                outcome: Outcome::Created { token_id: 9, .. },
                ..
            }
        ));
        assert_eq!(rec.to_line(), format!("{old}\n").into_bytes());
    }
}
