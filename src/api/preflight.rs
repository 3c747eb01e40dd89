//! The preflight run by `plan` and `apply` before any write: the token works and is for this
//! region (`whoami`), and the owner's sub accounts, to check ids and resolve names.

use std::time::Duration;

use super::{ApiClient, ApiError, ErrorClass, WhoAmI};
use crate::plan::LiveAccounts;

/// What the preflight learned.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The owner account the token belongs to.
    pub owner: WhoAmI,
    /// The owner's sub accounts.
    pub accounts: LiveAccounts,
}

/// Attempts for each read; reads are idempotent, so any transient failure is retried.
const READ_ATTEMPTS: u32 = 4;

/// Checks the token and region, then lists the sub accounts.
pub async fn preflight(client: &ApiClient) -> Result<Preflight, ApiError> {
    let owner = with_retries(|| client.whoami()).await?;
    let list = with_retries(|| client.list_accounts()).await?;
    let mut accounts = LiveAccounts::default();
    for a in list {
        if a.is_owner || a.account_id == owner.account_id {
            continue;
        }
        if let Ok(id) = u32::try_from(a.account_id) {
            accounts.sub_accounts.insert(id, a.account_name);
        }
    }
    Ok(Preflight { owner, accounts })
}

async fn with_retries<T, F, Fut>(mut f: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < READ_ATTEMPTS
                    && matches!(e.class(), ErrorClass::Retryable | ErrorClass::Ambiguous) =>
            {
                let backoff = e
                    .retry_after()
                    .unwrap_or(Duration::from_millis(250 * 2u64.pow(attempt)));
                tracing::debug!(attempt, error = %e, "preflight read failed; retrying");
                tokio::time::sleep(backoff.min(Duration::from_secs(10))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
