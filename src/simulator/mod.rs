//! An in-repo stand-in for the Logz.io API: stateful, rate-limited and fault-injecting.
//!
//! The tool's hardest paths (429s with and without `Retry-After`, a token created behind a 500,
//! a dropped connection, a body cut short, an answer slower than the client's timeout) cannot be
//! provoked on a real account, so this module plays them, on loopback, from a seed. It serves the
//! endpoints and error shapes of `logzio-api.md`, keeps the ground truth of every token it created
//! (so a test can check the tool's records against what really exists), and counts every outcome.
//!
//! It is used in-process by the integration tests and benchmarks ([`Simulator::start`]), by
//! `apply --simulate`, by synchronous tests that drive the real binary
//! ([`Simulator::start_background`]), and standalone by the `simulate` command.
//!
//! The parts: `config` (what to play), `state` (accounts, tokens, counters and the one locked
//! decision per request), `limits` (rate bucket, in-flight count, `Retry-After`), `faults` (the
//! seeded fault draw), `server` (hyper, routing, validation, answers) and `conn` (the raw-socket
//! path for dropped and truncated answers).
//!
//! Admin endpoints, outside the API (no auth, no limits, no faults, not counted):
//! `GET /__sim/ground-truth` (every [`CreatedToken`], secrets included), `GET /__sim/counters`
//! ([`Counters`]), `DELETE /__sim/tokens/ID` (deletes a token as an admin would in the UI: its
//! `GET /v2/whoami` answers 403 from then on) and `GET /__sim/deleted-tokens` (their ids).
//!
//! Every token-creation request is kept with what became of its answer
//! ([`SimHandle::create_attempts`]): delivered in full, withheld by a fault, never written
//! because the client went away first, or written and then found unread (the client reset the
//! connection with it unread). A test can so tell the creates a client may legitimately report
//! as possible orphans from those whose answer it received.
//!
//! The sub-account endpoints (`accounts`): `POST`, `GET` (list), `GET …/{id}`, `PUT …/{id}`,
//! `GET …/detailed/{id}` (with the log shipping token in `account.accountToken`) and `DELETE
//! …/{id}` (counted, so tests can show the tool never sends one). Names are not unique; an
//! account created through the API joins the list only after [`SimConfig::account_list_lag`];
//! account creates meet the same seeded faults as token creates. `GET /__sim/accounts` and
//! [`SimHandle::accounts`] give every account, settings and shipping token included.
//!
//! `GET /v2/whoami` answers for the owner token with the owner account, and for a token the
//! simulator created with its sub account (`{accountName, accountId}`); a deleted or unknown
//! token gets 403 `{"code":403,"message":"Insufficient privileges"}`. Probes with a sub-account
//! token meet the configured 429 and 503 faults; the owner's whoami meets none.

mod accounts;
mod config;
mod conn;
mod faults;
mod inproc;
mod limits;
mod server;
mod state;

use std::fmt;
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

pub use accounts::{AccountSettings, UtilizationSettings};
pub use config::{
    DEFAULT_OWNER_ID, DEFAULT_OWNER_NAME, DEFAULT_OWNER_TOKEN, DEFAULT_SLOW_DELAY, FaultRates,
    RegionMismatch, RetryAfterMode, SimConfig, SimConfigError, SubAccount, default_sub_accounts,
};
pub use inproc::{CreateAnswer, InProcess, ProbeAnswer};
pub use state::{AnswerFate, Counters, CreateAttempt, CreatedToken, SimAccount, SimHandle};

use state::Shared;

/// A running simulator on the current tokio runtime.
///
/// Dropping it stops the server too (without waiting); [`Simulator::shutdown`] stops it and waits.
pub struct Simulator {
    handle: SimHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Validates the configuration, binds the listener and spawns the accept loop on the current
    /// tokio runtime. Returns as soon as the port is bound.
    ///
    /// An invalid configuration is an [`io::ErrorKind::InvalidInput`] error wrapping a
    /// [`SimConfigError`].
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        config
            .validate()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config, addr));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared), stopped));
        info!(%addr, "simulator listening");
        Ok(Simulator {
            handle: SimHandle { shared },
            stop,
            task,
        })
    }

    /// Starts a simulator on its own thread with its own tokio runtime, for synchronous code
    /// (tests that drive the real binary). Returns once the port is bound.
    pub fn start_background(config: SimConfig) -> io::Result<BackgroundSimulator> {
        BackgroundSimulator::start(config)
    }

    /// A cheap, cloneable handle to the state, usable from any thread (and after shutdown).
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting, aborts every connection (slow answers included) and returns when done.
    pub async fn shutdown(self) {
        let Simulator { stop, task, .. } = self;
        // The loop also stops if the sender is gone, so a failed send changes nothing.
        let _ = stop.send(());
        if let Err(error) = task.await
            && error.is_panic()
        {
            tracing::warn!("simulator: the accept loop panicked");
        }
    }
}

/// A simulator on its own thread and tokio runtime; stopped by [`BackgroundSimulator::shutdown`]
/// or on drop (both wait until the port is closed).
pub struct BackgroundSimulator {
    handle: SimHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for BackgroundSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundSimulator")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl BackgroundSimulator {
    fn start(config: SimConfig) -> io::Result<BackgroundSimulator> {
        let (ready, started) = std::sync::mpsc::channel::<io::Result<SimHandle>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("logzio-simulator".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("logzio-simulator-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Simulator::start(config).await {
                        Ok(simulator) => {
                            let _ = ready.send(Ok(simulator.handle()));
                            // Stop on request, or when the BackgroundSimulator is gone.
                            let _ = stopped.await;
                            simulator.shutdown().await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error));
                        }
                    }
                });
            })?;
        match started.recv() {
            Ok(Ok(handle)) => Ok(BackgroundSimulator {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "the simulator thread ended before it started",
                ))
            }
        }
    }

    /// A cheap, cloneable handle to the state, usable from any thread (and after shutdown).
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops the server and its thread, and waits for both.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("simulator: the background thread panicked");
        }
    }
}

// Both kinds of simulator read their state (`url()`, `addr()`, `ground_truth()`, `counters()`)
// through the shared handle.
impl std::ops::Deref for Simulator {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::ops::Deref for BackgroundSimulator {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for BackgroundSimulator {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
