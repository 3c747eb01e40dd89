//! Executing a plan: a concurrency cap and an adaptive rate shared by every request, bounded
//! retries with backoff, and every outcome made durable (through the state recorder) before
//! it is acted on.

pub mod accounts;
mod ambiguity;
mod attempt;
mod cancel;
mod dispatcher;
mod ports;
mod rate;
mod report;

pub use crate::backoff::Backoff;
pub use accounts::{AccountWork, AccountsReport, Work};
pub use ambiguity::DEFAULT_MAX_AMBIGUOUS;
pub use cancel::Cancel;
pub use dispatcher::{ExecConfig, Services, execute};
pub use ports::{RecordOutcomes, SendCreate, Settled};
pub use rate::{Answer, Pacer, PacerSnapshot, Ticket};
pub use report::{AccountResult, ItemEvent, ItemResult, Observer, RunReport, Stats, StopReason};

/// Default concurrency: Logz.io users saw 429s at about ten parallel calls.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Default rate ceiling, requests per second; the adaptive pacer starts below it.
pub const DEFAULT_RATE_PER_SECOND: f64 = 20.0;
/// Default attempts per token.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default per-request timeout, seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: f64 = 30.0;
