//! The client's side of the base-URL rule: [`crate::endpoint`]'s problems as [`ApiError`]s.

use url::Url;

use super::ApiError;
pub use crate::endpoint::{Endpoint, UrlProblem, foreign_host, is_loopback, parse_base_url};

/// [`parse_base_url`] with the problem as the client's error.
pub(crate) fn check_base_url(text: &str) -> Result<Url, ApiError> {
    parse_base_url(text).map_err(|problem| match problem {
        UrlProblem::InsecureHttp => ApiError::InsecureUrl {
            url: text.to_owned(),
        },
        // The URL is not repeated: its user:password part may be a secret.
        UrlProblem::Credentials => ApiError::InvalidUrl {
            url: "(a URL with credentials)".into(),
            detail: "credentials in the URL are not supported; the token goes in LOGZIO_API_TOKEN"
                .into(),
        },
        other => ApiError::InvalidUrl {
            url: text.to_owned(),
            detail: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_client_error_never_repeats_credentials() {
        let e = check_base_url("https://user:hunter2@host").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(matches!(
            check_base_url("http://example.com"),
            Err(ApiError::InsecureUrl { .. })
        ));
    }
}
