//! The Logz.io API: endpoints, typed calls, response parsing that matches reality, and the
//! classification of every failure into what the executor can do about it.

mod client;
pub mod endpoint;
mod error;
mod preflight;
pub mod types;

pub use crate::region::Region;
pub use client::{ApiClient, ClientConfig};
pub use endpoint::{Endpoint, UrlProblem, parse_base_url};
pub use error::{ApiError, ErrorClass, parse_retry_after};
pub use preflight::{Preflight, preflight};
pub use types::{
    AccountRequest, CreatedToken, LiveSettings, SubAccountInfo, UtilizationSettings, WhoAmI,
};
