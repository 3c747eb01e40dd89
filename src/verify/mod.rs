//! Probing recorded tokens against the live service: `GET /v2/whoami` with each token's own
//! secret, concurrently, under the run's rate controller, with apply's bounded retries.
//!
//! whoami is a read, so unlike a create every failure may simply be tried again; what needs
//! care is what an answer means. 200 with the recorded account: `valid`; 200 with another
//! account: `wrong_account`; 401 or 403: `revoked` (an admin deleted it); still failing after
//! the retries, or an answer that says nothing about the token (400, 404): `unknown`, never a
//! guess. Only what says no probe can succeed (a wrong region, a refused URL) stops the run.
//!
//! Each probe is its own task: it waits for a concurrency slot, then a send slot from the
//! [`Pacer`], sends, and gives its slot back before any backoff, so a probe waiting to retry
//! holds nothing. A 429 does not use up an attempt (it is bounded on its own, as in apply).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::{ApiClient, ApiError, ErrorClass, WhoAmI};
use crate::backoff::Backoff;
use crate::execution::{Answer as RateAnswer, Cancel, Pacer, Stats};
use crate::key::TokenKey;
use crate::secret::Secret;
use crate::state::TokenStatus;

/// A 429 does not use up an attempt; these are bounded on their own.
pub const MAX_RATE_LIMITED_PER_PROBE: u32 = 30;

/// Sends a whoami probe with a given token: the API client in a run, a fake in tests.
pub trait SendProbe: Send + Sync + 'static {
    /// `GET /v2/whoami` with `token`.
    fn probe(&self, token: &Secret) -> impl Future<Output = Result<WhoAmI, ApiError>> + Send;
}

impl SendProbe for ApiClient {
    fn probe(&self, token: &Secret) -> impl Future<Output = Result<WhoAmI, ApiError>> + Send {
        self.whoami_as(token)
    }
}

/// One recorded token to probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Account and name.
    pub key: TokenKey,
    /// The token id.
    pub token_id: i64,
    /// Whether it is a replaced token (from the results file's `superseded`).
    pub superseded: bool,
    /// Its secret.
    pub secret: Secret,
}

/// What a probe found (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Account and name.
    pub key: TokenKey,
    /// The token id.
    pub token_id: i64,
    /// Whether it is a replaced token.
    pub superseded: bool,
    /// What the answer means.
    pub status: TokenStatus,
    /// Requests sent for it.
    pub attempts: u32,
    /// The last HTTP status, when an answer came.
    pub http_status: Option<u16>,
    /// For `wrong_account`, the account the token belongs to; for `unknown`, why.
    pub detail: Option<String>,
}

/// How probes are sent.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Most probes in flight.
    pub concurrency: usize,
    /// Most attempts per token.
    pub max_attempts: u32,
    /// Retry delays.
    pub backoff: Backoff,
}

/// What a verify run found.
#[derive(Debug, Default)]
pub struct ProbeReport {
    /// One verdict per probe that finished, in no particular order.
    pub verdicts: Vec<Verdict>,
    /// Set when an error stopped the run (no probe can succeed).
    pub fatal: Option<String>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Probes in flight given up on at a second Ctrl-C (their answers never came). A probe only
    /// reads, so nothing is lost: the next verify checks them.
    pub abandoned: usize,
    /// Probes not finished because the run stopped.
    pub not_checked: usize,
}

/// Receives each verdict as it is final (progress, JSON lines). Must be quick.
pub type OnVerdict = Arc<dyn Fn(&Verdict) + Send + Sync>;

/// What a probe task ends with.
enum Ended {
    Verdict(Verdict),
    Fatal(String),
    Cancelled,
}

/// How a verify run is stopped: `stop` (a first Ctrl-C) sends nothing more and lets the probes
/// in flight finish; `abandon` (a second one) gives up on those too, at once.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Send nothing more.
    pub stop: Cancel,
    /// Wait for nothing more.
    pub abandon: Cancel,
}

/// Probes every token. `stats.created` counts valid tokens, `stats.failed` the others.
pub async fn probe_all<S: SendProbe>(
    probes: Vec<Probe>,
    config: ProbeConfig,
    sender: Arc<S>,
    pacer: Arc<Pacer>,
    stats: Arc<Stats>,
    on_verdict: Option<OnVerdict>,
    stop: Stop,
) -> ProbeReport {
    let Stop {
        stop: cancel,
        abandon,
    } = stop;
    let total = probes.len();
    stats
        .total
        .fetch_add(total as u64, std::sync::atomic::Ordering::Relaxed);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for probe in probes {
        let ctx = Ctx {
            sender: sender.clone(),
            pacer: pacer.clone(),
            stats: stats.clone(),
            slots: slots.clone(),
            cancel: cancel.clone(),
            config,
        };
        tasks.spawn(async move { ctx.run(probe).await });
    }
    let mut report = ProbeReport::default();
    // A replaced token seen revoked is told once the run's current tokens have answered.
    let mut held_back = Vec::new();
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            () = wait_cancelled(abandon.clone()) => {
                // Only reads are in flight: nothing is lost by not waiting for their answers.
                // Those waiting for a slot had not sent anything: not checked, not abandoned.
                tasks.abort_all();
                report.abandoned = stats.in_flight.swap(0, std::sync::atomic::Ordering::Relaxed)
                    as usize;
                break;
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ended::Verdict(v)) => {
                let counter = if v.status == TokenStatus::Valid {
                    &stats.created
                } else {
                    &stats.failed
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if v.superseded && v.status == TokenStatus::Revoked {
                    held_back.push(report.verdicts.len());
                } else if let Some(f) = &on_verdict {
                    f(&v);
                }
                report.verdicts.push(v);
            }
            Ok(Ended::Fatal(message)) => {
                if report.fatal.is_none() {
                    report.fatal = Some(message);
                    // No probe can succeed: stop sending; those in flight end on their own.
                    slots.close();
                }
            }
            Ok(Ended::Cancelled) => {}
            Err(e) => tracing::error!(error = %e, "a probe task failed"),
        }
    }
    confirm_deletions(&mut report.verdicts);
    if let Some(f) = &on_verdict {
        for i in held_back {
            f(&report.verdicts[i]);
        }
    }
    report.interrupted = cancel.is_cancelled() || abandon.is_cancelled();
    report.not_checked = total - report.verdicts.len();
    report
}

/// A replaced token answered 401 or 403 counts as deleted (`revoked`, which takes it off the
/// remove-by-hand list for good) only when the same run's probe of a current token of the same
/// account answered 200 with that account: a misrouted or failing endpoint answers 403 to
/// everything, and one such answer must not hide a live token. Otherwise it is `unknown`.
pub fn confirm_deletions(verdicts: &mut [Verdict]) {
    if crate::reintroduced::on(crate::reintroduced::Bug::DeletionUnconfirmed) {
        return;
    }
    let confirmed: std::collections::HashSet<u32> = verdicts
        .iter()
        .filter(|v| !v.superseded && v.status == TokenStatus::Valid)
        .map(|v| v.key.account_id)
        .collect();
    for v in verdicts.iter_mut() {
        if v.superseded
            && v.status == TokenStatus::Revoked
            && !confirmed.contains(&v.key.account_id)
        {
            v.status = TokenStatus::Unknown;
            v.detail = Some(format!(
                "answered {}, but no current token of account {} answered 200 in this run, so the answer is not taken to mean deleted; verify again once the current tokens check out",
                v.http_status
                    .map_or_else(|| "an error".to_owned(), |c| c.to_string()),
                v.key.account_id
            ));
        }
    }
}

/// What every probe task shares.
struct Ctx<S> {
    sender: Arc<S>,
    pacer: Arc<Pacer>,
    stats: Arc<Stats>,
    slots: Arc<Semaphore>,
    cancel: Cancel,
    config: ProbeConfig,
}

impl<S: SendProbe> Ctx<S> {
    async fn run(self, probe: Probe) -> Ended {
        let max_attempts = self.config.max_attempts.max(1);
        let (mut attempts, mut limited) = (0u32, 0u32);
        let verdict = |status, attempts, http_status, detail| {
            Ended::Verdict(Verdict {
                key: probe.key.clone(),
                token_id: probe.token_id,
                superseded: probe.superseded,
                status,
                attempts,
                http_status,
                detail,
            })
        };
        loop {
            // A slot, then a send slot; the slot is given back before any backoff.
            let Ok(slot) = self.slots.acquire().await else {
                return Ended::Cancelled;
            };
            if self.cancel.is_cancelled() {
                return Ended::Cancelled;
            }
            let ticket = self.pacer.acquire().await;
            attempts += 1;
            add(&self.stats.attempts);
            add(&self.stats.in_flight);
            let answer = self.sender.probe(&probe.secret).await;
            self.stats
                .in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(slot);
            // Every answer goes back with its ticket, as apply's do: the rate and the
            // in-flight window learn from whoami probes as from creates (one owner token,
            // one limit). Any HTTP answer but a 429 was served; no answer says nothing.
            let (seen, retry_after) = match &answer {
                Ok(_) => (RateAnswer::Served, None),
                Err(e) if e.is_rate_limited() => (RateAnswer::Limited, e.retry_after()),
                Err(e) if e.http_status().is_some() => (RateAnswer::Served, None),
                Err(_) => (RateAnswer::Lost, None),
            };
            self.pacer.on_answer(ticket, seen, retry_after);
            let error = match answer {
                Ok(who) => {
                    return if who.account_id == i64::from(probe.key.account_id) {
                        verdict(TokenStatus::Valid, attempts, Some(200), None)
                    } else {
                        verdict(
                            TokenStatus::WrongAccount,
                            attempts,
                            Some(200),
                            Some(format!(
                                "the token belongs to account {} ({:?})",
                                who.account_id, who.account_name
                            )),
                        )
                    };
                }
                Err(e) => e,
            };
            let status = error.http_status();
            if matches!(status, Some(401 | 403)) {
                return verdict(TokenStatus::Revoked, attempts, status, None);
            }
            if error.is_rate_limited() {
                add(&self.stats.rate_limited);
                limited += 1;
                attempts -= 1;
                if limited >= MAX_RATE_LIMITED_PER_PROBE {
                    return verdict(
                        TokenStatus::Unknown,
                        attempts,
                        status,
                        Some(format!("{} (after {limited} answers 429)", error.short())),
                    );
                }
            } else {
                match error.class() {
                    ErrorClass::Retryable | ErrorClass::Ambiguous => {}
                    // A secret that cannot be sent as a header says nothing about the token.
                    ErrorClass::FatalRun if matches!(error, ApiError::InvalidToken) => {
                        return verdict(
                            TokenStatus::Unknown,
                            attempts,
                            None,
                            Some("the recorded secret cannot be sent in a header".into()),
                        );
                    }
                    ErrorClass::FatalRun => return Ended::Fatal(error.to_string()),
                    ErrorClass::FatalItem => {
                        return verdict(
                            TokenStatus::Unknown,
                            attempts,
                            status,
                            Some(error.short()),
                        );
                    }
                }
                if attempts >= max_attempts {
                    return verdict(
                        TokenStatus::Unknown,
                        attempts,
                        status,
                        Some(format!("{} (after {attempts} attempts)", error.short())),
                    );
                }
            }
            add(&self.stats.retries);
            let delay =
                self.config
                    .backoff
                    .delay(attempts + limited + 1, retry_after, &mut rand::rng());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wait_cancelled(self.cancel.clone()) => return Ended::Cancelled,
            }
        }
    }
}

fn add(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

async fn wait_cancelled(cancel: Cancel) {
    // Cancel's own wait is private to the executor; polling it at a backoff's scale is enough.
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod confirm_tests {
    use super::*;

    fn verdict(account_id: u32, superseded: bool, status: TokenStatus) -> Verdict {
        Verdict {
            key: TokenKey {
                account_id,
                token_name: "ci".into(),
            },
            token_id: i64::from(account_id) * 10 + i64::from(superseded),
            superseded,
            status,
            attempts: 1,
            http_status: Some(if status == TokenStatus::Valid {
                200
            } else {
                403
            }),
            detail: None,
        }
    }

    #[test]
    fn a_replaced_token_counts_as_deleted_only_beside_a_current_one_that_answered_200() {
        let mut v = vec![
            verdict(1, false, TokenStatus::Valid),
            verdict(1, true, TokenStatus::Revoked),
            verdict(2, false, TokenStatus::Revoked),
            verdict(2, true, TokenStatus::Revoked),
            verdict(3, true, TokenStatus::Revoked),
        ];
        confirm_deletions(&mut v);
        let statuses: Vec<TokenStatus> = v.iter().map(|v| v.status).collect();
        assert_eq!(
            statuses,
            [
                TokenStatus::Valid,
                TokenStatus::Revoked,
                TokenStatus::Revoked,
                TokenStatus::Unknown,
                TokenStatus::Unknown
            ]
        );
        assert!(
            v[3].detail
                .as_deref()
                .is_some_and(|d| d.contains("answered 403"))
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Answers per secret, in order; then the last one again.
    struct Fake {
        answers: Mutex<HashMap<String, Vec<Result<i64, u16>>>>,
    }

    impl SendProbe for Fake {
        fn probe(&self, token: &Secret) -> impl Future<Output = Result<WhoAmI, ApiError>> + Send {
            let mut all = self.answers.lock().unwrap();
            let list = all.get_mut(token.expose()).unwrap();
            let answer = if list.len() > 1 {
                list.remove(0)
            } else {
                list[0]
            };
            async move {
                match answer {
                    Ok(account_id) => Ok(WhoAmI {
                        account_name: "a".into(),
                        account_id,
                    }),
                    Err(status) => Err(ApiError::Status {
                        url: "http://x/v2/whoami".into(),
                        status,
                        message: "m".into(),
                        retry_after: None,
                    }),
                }
            }
        }
    }

    fn probe(secret: &str, id: i64) -> Probe {
        Probe {
            key: TokenKey {
                account_id: 1,
                token_name: secret.into(),
            },
            token_id: id,
            superseded: false,
            secret: Secret::new(secret),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_answer_is_classified_and_retries_are_bounded() {
        let fake = Fake {
            answers: Mutex::new(HashMap::from([
                ("valid".to_owned(), vec![Err(503), Err(429), Ok(1)]),
                ("revoked".to_owned(), vec![Err(403)]),
                ("other".to_owned(), vec![Ok(2)]),
                ("down".to_owned(), vec![Err(500)]),
                ("gone".to_owned(), vec![Err(404)]),
            ])),
        };
        let probes = ["valid", "revoked", "other", "down", "gone"]
            .iter()
            .enumerate()
            .map(|(i, s)| probe(s, i as i64))
            .collect();
        let stats = Arc::new(Stats::default());
        let report = probe_all(
            probes,
            ProbeConfig {
                concurrency: 2,
                max_attempts: 3,
                backoff: Backoff::default(),
            },
            Arc::new(fake),
            Arc::new(Pacer::new(1000.0, false)),
            stats.clone(),
            None,
            Stop::default(),
        )
        .await;
        let by: HashMap<&str, &Verdict> = report
            .verdicts
            .iter()
            .map(|v| (v.key.token_name.as_str(), v))
            .collect();
        assert_eq!(by["valid"].status, TokenStatus::Valid);
        // The 429 did not use up an attempt.
        assert_eq!(by["valid"].attempts, 2);
        assert_eq!(by["revoked"].status, TokenStatus::Revoked);
        assert_eq!(by["other"].status, TokenStatus::WrongAccount);
        assert_eq!(by["down"].status, TokenStatus::Unknown);
        assert_eq!(by["down"].attempts, 3);
        assert_eq!(by["gone"].status, TokenStatus::Unknown);
        assert_eq!(by["gone"].attempts, 1);
        assert_eq!(report.not_checked, 0);
        assert!(report.fatal.is_none());
        assert_eq!(Stats::get(&stats.created), 1);
        assert_eq!(Stats::get(&stats.failed), 4);
        assert_eq!(Stats::get(&stats.rate_limited), 1);
    }

    /// Never answers.
    struct Silent;

    impl SendProbe for Silent {
        fn probe(&self, _: &Secret) -> impl Future<Output = Result<WhoAmI, ApiError>> + Send {
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_stop_gives_up_on_the_probes_in_flight_at_once() {
        let stop = Stop::default();
        let stats = Arc::new(Stats::default());
        let run = tokio::spawn(probe_all(
            vec![probe("a", 1), probe("b", 2), probe("c", 3)],
            ProbeConfig {
                concurrency: 2,
                max_attempts: 3,
                backoff: Backoff::default(),
            },
            Arc::new(Silent),
            Arc::new(Pacer::new(1000.0, false)),
            stats.clone(),
            None,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(Stats::get(&stats.in_flight), 2);
        // A first stop sends nothing more but waits for what is in flight.
        stop.stop.cancel();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!run.is_finished());
        stop.abandon.cancel();
        let report = tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.abandoned, 2);
        assert_eq!(report.not_checked, 3);
        assert!(report.interrupted && report.verdicts.is_empty());
        assert_eq!(Stats::get(&stats.in_flight), 0);
    }
}
