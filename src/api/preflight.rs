//! The preflight run by `plan` and `apply` before any write: the token works and is for this
//! region (`whoami`), and the owner's sub accounts, to check ids and resolve names. What the
//! plan makes of the listing is the plan's business: this returns it as the API gave it, less
//! the owner account.

use super::{ApiClient, ApiError, ErrorClass, SubAccountInfo, WhoAmI};
use crate::backoff::Backoff;

/// What the preflight learned.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The owner account the token belongs to.
    pub owner: WhoAmI,
    /// The owner's sub accounts (the owner itself left out), in the API's order.
    pub sub_accounts: Vec<SubAccountInfo>,
}

/// Attempts for each read; reads are idempotent, so any transient failure is retried.
const READ_ATTEMPTS: u32 = 4;

/// Checks the token and region, then lists the sub accounts.
pub async fn preflight(client: &ApiClient) -> Result<Preflight, ApiError> {
    // Both reads at once: one round trip before the first create instead of two. The owner
    // check's error is the one reported when both fail (a refused token fails both).
    let (owner, sub_accounts) = tokio::join!(
        with_retries(|| client.whoami()),
        with_retries(|| client.list_accounts())
    );
    let owner = owner?;
    let mut sub_accounts = sub_accounts?;
    sub_accounts.retain(|a| !a.is_owner && a.account_id != owner.account_id);
    Ok(Preflight {
        owner,
        sub_accounts,
    })
}

async fn with_retries<T, F, Fut>(mut f: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let policy = Backoff::READS;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < READ_ATTEMPTS
                    && matches!(e.class(), ErrorClass::Retryable | ErrorClass::Ambiguous) =>
            {
                let delay = policy
                    .delay(attempt + 1, e.retry_after(), &mut rand::rng())
                    .min(policy.cap);
                tracing::debug!(attempt, error = %e, "preflight read failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
