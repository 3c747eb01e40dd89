//! The ground-truth check shared by the suites that drive the real binary against the
//! simulator (apply's, chaos's, crash's, disk-full's): what the state files record, held
//! against every token the simulator really created.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use logzio_tokens::simulator::CreatedToken;

/// A (sub account id, token name) pair.
pub(crate) type Key = (u32, String);

/// What a suite read from the results and secrets files.
pub(crate) trait Records {
    /// key -> token id, from the results file.
    fn tokens(&self) -> &BTreeMap<Key, i64>;
    /// key -> (token id, secret), from the secrets file (or the sealed files).
    fn secrets(&self) -> &BTreeMap<Key, (i64, String)>;
    /// The possible orphans' keys, from the results file.
    fn orphans(&self) -> &BTreeSet<Key>;
}

pub(crate) fn key_of(t: &CreatedToken) -> Key {
    (u32::try_from(t.account_id).unwrap(), t.name.clone())
}

/// What [`check_records`] demands beyond "nothing recorded is wrong".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    /// Every desired token is recorded (after a converged run).
    pub complete: bool,
    /// Every token the server created is recorded or a possible orphan (false only for files
    /// read right after a crash, before the journal was replayed).
    pub lossless: bool,
}

/// After a run that ended normally: nothing lost, maybe not complete.
pub(crate) const LOSSLESS: Expect = Expect {
    complete: false,
    lossless: true,
};

/// After convergence.
pub(crate) const CONVERGED: Expect = Expect {
    complete: true,
    lossless: true,
};

/// Checks the records against the ground truth. Returns the problems found, each a sentence.
pub(crate) fn check_records(
    desired: &BTreeSet<Key>,
    ground_truth: &[CreatedToken],
    rec: &impl Records,
    expect: Expect,
) -> Vec<String> {
    let (tokens, secrets, orphans) = (rec.tokens(), rec.secrets(), rec.orphans());
    let mut problems = Vec::new();
    let by_id: HashMap<i64, &CreatedToken> = ground_truth.iter().map(|t| (t.id, t)).collect();
    let mut by_key: BTreeMap<Key, Vec<&CreatedToken>> = BTreeMap::new();
    for t in ground_truth {
        by_key.entry(key_of(t)).or_default().push(t);
    }
    // Nothing recorded is wrong.
    for (key, id) in tokens {
        match by_id.get(id) {
            None => problems.push(format!(
                "{key:?} is recorded with token id {id}, which the server never created"
            )),
            Some(t) if key_of(t) != *key => problems.push(format!(
                "{key:?} is recorded with token id {id}, which the server created for {:?}",
                key_of(t)
            )),
            Some(t) => match secrets.get(key) {
                None => problems.push(format!(
                    "{key:?} is recorded (token {id}) but its secret is not in the secrets file"
                )),
                Some((sid, secret)) if *sid != *id || *secret != t.token => {
                    problems.push(format!(
                    "{key:?}: the secrets file holds token {sid} with a secret that is not the one the server gave for token {id}"
                ));
                }
                Some(_) => {}
            },
        }
    }
    if expect.complete {
        for key in desired {
            if !tokens.contains_key(key) {
                problems.push(format!("desired token {key:?} is not recorded"));
            }
        }
    }
    // Nothing lost: each token the server created is recorded or reported.
    for t in ground_truth {
        let key = key_of(t);
        if expect.lossless && tokens.get(&key) != Some(&t.id) && !orphans.contains(&key) {
            problems.push(format!(
                "the server created token {} for {key:?}, which is neither recorded nor a possible orphan",
                t.id
            ));
        }
        if !desired.contains(&key) {
            problems.push(format!(
                "the server created token {} for {key:?}, which the manifest does not ask for",
                t.id
            ));
        }
    }
    for (key, tokens) in &by_key {
        if expect.lossless && tokens.len() > 1 && !orphans.contains(key) {
            problems.push(format!(
                "{} tokens were created for {key:?} (ids {:?}) but it is not a possible orphan",
                tokens.len(),
                tokens.iter().map(|t| t.id).collect::<Vec<_>>()
            ));
        }
    }
    problems
}
