//! API errors, and what the executor may do about each: the classification reads the typed
//! error (reqwest's own predicates, the HTTP status), never the text of a message.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured; longer values are capped to this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);

/// What can be done about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was not processed (not sent, 429, 503): safe to send again.
    Retryable,
    /// The request may have been processed (timeout after sending, connection lost, a body cut
    /// short after a 2xx, 500/502/504): a token may exist. Retried, and reported.
    Ambiguous,
    /// Nothing more can succeed in this run (401, 403, wrong region, bad configuration).
    FatalRun,
    /// This item cannot succeed (400, 404, other 4xx); the run goes on.
    FatalItem,
}

/// A failed API call. Messages name the URL and what to do; they never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The connection could not be made (DNS, refused, connect timeout): nothing was sent.
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// No answer within the timeout, after the request was sent.
    #[error("no answer from {url} within {}s after the request was sent", timeout.as_secs_f64())]
    Timeout {
        /// The URL called.
        url: String,
        /// The request timeout.
        timeout: Duration,
    },
    /// The connection broke after the request was sent, before an answer arrived.
    #[error("the connection to {url} was lost after the request was sent: {source}")]
    ConnectionLost {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The answer's body was cut short.
    #[error("the answer from {url} (HTTP {status}) was cut short: {source}")]
    BodyCutShort {
        /// The URL called.
        url: String,
        /// The status that had arrived.
        status: u16,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The answer's body was larger than any legitimate answer.
    #[error(
        "the answer from {url} (HTTP {status}) is larger than {limit} bytes; refusing to read it"
    )]
    BodyTooLarge {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
        /// The limit.
        limit: usize,
    },
    /// An error status with the API's message.
    #[error("HTTP {status} from {url}: {message}{}", hint_for(*status))]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's message, or the raw body text.
        message: String,
        /// The `Retry-After` delay, when given (capped).
        retry_after: Option<Duration>,
    },
    /// The account lives in another region than the server called.
    #[error(
        "the API says the account is in region {account_region}, not {server_region}{}",
        match hint { Some(code) => format!(": use --region {code} (or `region: {code}` in the manifest)"), None => String::new() }
    )]
    RegionMismatch {
        /// The account's region, as the API named it.
        account_region: String,
        /// The server's region, as the API named it.
        server_region: String,
        /// The region code to use, when it is one this tool knows.
        hint: Option<String>,
    },
    /// A success status with a body that is not what the API documents.
    #[error("HTTP {status} from {url} with an unexpected body: {detail}")]
    Undecodable {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
        /// What was wrong (never the body itself, which may hold a secret).
        detail: String,
    },
    /// A redirect, which is never followed: the owner token would go with it, and a POST would
    /// turn into a GET. Every call of the run would get it, so the run stops.
    #[error(
        "HTTP {status} from {url}: a redirect to {}, which is not followed (the API token the request carries would go with it)\n  = help: check --region or --api-url; if the API moved, point --api-url at the new address yourself",
        match location_host { Some(h) => format!("host {h}"), None => "no location".to_owned() }
    )]
    Redirect {
        /// The URL called.
        url: String,
        /// The 3xx status.
        status: u16,
        /// The host the `Location` header names (never the whole URL: it may carry a query).
        location_host: Option<String>,
    },
    /// A 2xx that holds a secret but no usable token id: the token exists at Logz.io, but cannot
    /// be recorded as the item's. The secret is kept aside (never dropped, never retried over).
    #[error("HTTP {status} from {url} holds a token secret, but {detail}")]
    SecretWithoutId {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
        /// What is wrong with the id.
        detail: String,
        /// The secret received (redacted in `Debug`; never in the message).
        token: crate::secret::Secret,
        /// The id as the API gave it, when it was an integer at all.
        raw_id: Option<i64>,
    },
    /// A plain-http URL for a host that is not loopback.
    #[error(
        "refusing plain http:// for {url}: tokens would cross the network unencrypted; use https:// (http:// is allowed only for loopback hosts)"
    )]
    InsecureUrl {
        /// The URL.
        url: String,
    },
    /// A URL that cannot be used.
    #[error("invalid API URL {url}: {detail}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The owner token holds characters that cannot go in an HTTP header.
    #[error(
        "the API token contains characters that cannot be sent in an HTTP header (a line break or a control character?); check LOGZIO_API_TOKEN or the token file"
    )]
    InvalidToken,
    /// The HTTP client could not be built (with no trusted CA found, it says where to put one).
    #[error("could not set up the HTTP client: {source}{}", tls_hint(source))]
    Client {
        /// The builder error.
        source: reqwest::Error,
    },
    /// TLS refused the server's certificate (not trusted, expired, for another name): retrying
    /// cannot help.
    #[error(
        "the TLS certificate of {url} was refused ({detail}); if a proxy or your company's CA signs it, point SSL_CERT_FILE at a PEM file holding that CA"
    )]
    Certificate {
        /// The URL called.
        url: String,
        /// What rustls found wrong with the certificate.
        detail: String,
    },
}

/// The rustls error inside a transport error, if TLS is what failed. (An `io::Error` hides the
/// error it wraps from `source()`, so the walk goes into it with `get_ref`.)
pub(crate) fn rustls_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // The TLS stream's error arrives as an io::Error inside another one.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// What a client that could not be built needs: the TLS reason and, when no CA was found
/// (a `FROM scratch` image, an empty root), where to give one.
fn tls_hint(e: &reqwest::Error) -> String {
    match rustls_cause(e) {
        Some(r) => format!(
            ": {r}; install the system's CA bundle (ca-certificates) or point SSL_CERT_FILE at a PEM file of the CAs to trust"
        ),
        None => String::new(),
    }
}

fn hint_for(status: u16) -> &'static str {
    match status {
        401 => {
            " (the owner token is missing or lacks the right; check LOGZIO_API_TOKEN, and that API access is enabled for the account)"
        }
        403 => {
            " (the token is not a valid main-account API token: use a token of the main (owner) account, not a sub account's)"
        }
        404 => " (the sub account was not found under this owner: check the id and the region)",
        429 => " (rate limited by Logz.io)",
        _ => "",
    }
}

impl ApiError {
    /// What the executor may do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Connect { .. } => ErrorClass::Retryable,
            ApiError::Timeout { .. } | ApiError::ConnectionLost { .. } => ErrorClass::Ambiguous,
            ApiError::BodyCutShort { status, .. }
            | ApiError::BodyTooLarge { status, .. }
            | ApiError::Undecodable { status, .. } => {
                if (200..300).contains(status) {
                    ErrorClass::Ambiguous
                } else {
                    status_class(*status)
                }
            }
            ApiError::Status { status, .. } => status_class(*status),
            // Not retried: the secret is kept aside and the item reported as a possible orphan.
            ApiError::SecretWithoutId { .. } => ErrorClass::FatalItem,
            ApiError::Redirect { .. }
            | ApiError::RegionMismatch { .. }
            | ApiError::InsecureUrl { .. }
            | ApiError::InvalidUrl { .. }
            | ApiError::InvalidToken
            | ApiError::Client { .. }
            | ApiError::Certificate { .. } => ErrorClass::FatalRun,
        }
    }

    /// The HTTP status of the answer, when one arrived.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ApiError::BodyCutShort { status, .. }
            | ApiError::BodyTooLarge { status, .. }
            | ApiError::Status { status, .. }
            | ApiError::Redirect { status, .. }
            | ApiError::SecretWithoutId { status, .. }
            | ApiError::Undecodable { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's requested delay before retrying, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A secret that arrived in an answer that cannot be recorded as a created token, with the
    /// id to file it under (the API's, when it gave an integer; else 0). It must be kept.
    pub fn kept_secret(&self) -> Option<(&crate::secret::Secret, i64)> {
        match self {
            ApiError::SecretWithoutId { token, raw_id, .. } => Some((token, raw_id.unwrap_or(0))),
            _ => None,
        }
    }

    /// Whether this is a rate-limit answer.
    pub fn is_rate_limited(&self) -> bool {
        self.http_status() == Some(429)
    }

    /// A short description for journals, results and progress lines.
    pub fn short(&self) -> String {
        match self {
            ApiError::Connect { .. } => "could not connect".into(),
            ApiError::Timeout { timeout, .. } => format!(
                "no answer within {}s after the request was sent",
                timeout.as_secs_f64()
            ),
            ApiError::ConnectionLost { .. } => "connection lost after the request was sent".into(),
            ApiError::BodyCutShort { status, .. } => format!("HTTP {status} answer cut short"),
            ApiError::BodyTooLarge { status, .. } => format!("HTTP {status} answer too large"),
            ApiError::Status {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
            ApiError::Undecodable { status, detail, .. } => {
                format!("HTTP {status} with an unexpected body: {detail}")
            }
            ApiError::SecretWithoutId { status, detail, .. } => format!(
                "HTTP {status} with a token secret but {detail}: the secret was kept aside in the secrets file"
            ),
            ApiError::Redirect {
                status,
                location_host,
                ..
            } => format!(
                "HTTP {status} redirect to {}, not followed",
                location_host.as_deref().unwrap_or("no location")
            ),
            other => other.to_string(),
        }
    }
}

fn status_class(status: u16) -> ErrorClass {
    match status {
        200..=299 => ErrorClass::Ambiguous,
        408 | 429 | 503 => ErrorClass::Retryable,
        401 | 403 => ErrorClass::FatalRun,
        400..=499 => ErrorClass::FatalItem,
        _ => ErrorClass::Ambiguous,
    }
}

/// Parses `Retry-After` (delay-seconds or an HTTP date), capped at `RETRY_AFTER_CAP`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs.min(RETRY_AFTER_CAP.as_secs_f64()))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(RETRY_AFTER_CAP))
}

/// Recognises the API's region-mismatch message:
/// `Account region xx differs from current server region yy`.
pub(crate) fn region_mismatch(message: &str) -> Option<(String, String)> {
    let lower = message.to_ascii_lowercase();
    let start = lower.find("account region ")? + "account region ".len();
    let rest = &message[start..];
    let lower_rest = &lower[start..];
    let mid = lower_rest.find(" differs from current server region ")?;
    let account = rest[..mid].trim().to_owned();
    let server = rest[mid + " differs from current server region ".len()..]
        .trim()
        .trim_end_matches(['.', '"', '}'])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    Some((account, server))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_in_both_forms_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("100000", now), Some(RETRY_AFTER_CAP));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn status_classes() {
        let s = |status| ApiError::Status {
            url: "u".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(s(429).class(), ErrorClass::Retryable);
        assert_eq!(s(503).class(), ErrorClass::Retryable);
        for st in [500, 502, 504] {
            assert_eq!(s(st).class(), ErrorClass::Ambiguous);
        }
        assert_eq!(s(401).class(), ErrorClass::FatalRun);
        assert_eq!(s(403).class(), ErrorClass::FatalRun);
        assert_eq!(s(400).class(), ErrorClass::FatalItem);
        assert_eq!(s(404).class(), ErrorClass::FatalItem);
        assert_eq!(s(422).class(), ErrorClass::FatalItem);
    }

    #[test]
    fn region_mismatch_message() {
        assert_eq!(
            region_mismatch("Account region eu differs from current server region us"),
            Some(("eu".into(), "us".into()))
        );
        assert_eq!(region_mismatch("something else"), None);
    }
}
