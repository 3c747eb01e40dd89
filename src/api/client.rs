//! The HTTP client: one shared `reqwest` client per run, typed calls, bodies read as bytes
//! (capped) and then parsed.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use zeroize::Zeroizing;

use super::endpoint::{Endpoint, check_base_url};
use super::error::{ApiError, parse_retry_after, region_mismatch};
use super::types::{
    AccountRequest, CreateAnswer, CreateTokenRequest, CreatedToken, ErrorBody, SubAccountInfo,
    WhoAmI,
};
use crate::region::Region;
use crate::secret::Secret;
use crate::text::Scrubber;

/// The token create, the hot path (its URL is parsed once).
const CREATE_PATH: &str = "v1/api-tokens/sub-account";
/// The sub-account collection (relative to the base URL).
const ACCOUNTS_PATH: &str = "v1/account-management/time-based-accounts";

/// What a call is addressed to.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// `POST /v1/api-tokens/sub-account`.
    Create,
    /// Another path under the base URL.
    Path(&'a str),
}

/// No legitimate answer of this API is larger than this; more is refused, not buffered.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How to build an [`ApiClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where the API is.
    pub endpoint: Endpoint,
    /// The owner account's API token.
    pub token: Secret,
    /// Per-request timeout (connect + send + answer).
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle connections kept per host (the concurrency).
    pub pool_size: usize,
}

/// A Logz.io API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    base_text: String,
    create_url: Url,
    /// The `X-API-TOKEN` value, built once from the owner token and marked sensitive, so the
    /// HTTP stack's debug output (and this type's `Debug`) never show it.
    token: HeaderValue,
    timeout: Duration,
    /// The owner token and every secret received: scrubbed from all text a server sends, so
    /// that an echo of them reaches no log, error, results file or output line.
    scrubber: Scrubber,
}

impl ApiClient {
    /// Builds the client, refusing plain http:// except for loopback hosts.
    pub fn new(config: ClientConfig) -> Result<ApiClient, ApiError> {
        let base_text = config.endpoint.base_url();
        let base = check_base_url(&base_text)?;
        // reqwest is built without a bundled crypto provider; use ring (installing it twice is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let builder = reqwest::Client::builder();
        // A loopback API (the simulator, a local proxy) is never reached through a proxy: with
        // HTTP_PROXY set, plain http:// would carry the owner token to it in cleartext. For
        // https, HTTPS_PROXY / ALL_PROXY / NO_PROXY are honoured, and a proxy is only a CONNECT
        // tunnel: TLS runs end to end, the proxy sees neither the token nor the secrets.
        let builder = if super::endpoint::is_loopback(&base) {
            builder.no_proxy()
        } else {
            builder
        };
        // Plain http:// (loopback only) needs no trust store: skipping the platform's saves
        // reading and parsing every CA file at start (tens of milliseconds of CPU), and with
        // redirects off this client reaches no other URL, so nothing can need one.
        let builder = if base.scheme() == "http" {
            builder.tls_certs_only([])
        } else {
            builder
        };
        let http = builder
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.pool_size.max(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            // A redirect is not followed: the owner token would go with it (reqwest strips only
            // the standard credential headers), and a POST would turn into a GET.
            .redirect(reqwest::redirect::Policy::none())
            // Retries of a create (not idempotent) are the executor's alone, each journaled;
            // no retry layer below it may re-send, nor keep a copy of each request to do so.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .https_only(base.scheme() == "https")
            .build()
            .map_err(|source| ApiError::Client { source })?;
        let create_url = base.join(CREATE_PATH).map_err(|e| ApiError::InvalidUrl {
            url: base_text.clone(),
            detail: e.to_string(),
        })?;
        // The one place the owner token leaves its secret type: into the header it is sent in.
        let mut token =
            HeaderValue::from_str(config.token.expose()).map_err(|_| ApiError::InvalidToken)?;
        token.set_sensitive(true);
        Ok(ApiClient {
            http,
            create_url,
            base,
            base_text,
            token,
            timeout: config.request_timeout,
            scrubber: Scrubber::with(&config.token),
        })
    }

    /// Checks a base URL the way [`ApiClient::new`] will (http:// only for loopback).
    pub fn check_url(url: &str) -> Result<(), ApiError> {
        check_base_url(url).map(|_| ())
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base_text
    }

    /// `POST /v1/api-tokens/sub-account`: creates a token. Not idempotent.
    pub async fn create_token(
        &self,
        account_id: u32,
        name: &str,
    ) -> Result<CreatedToken, ApiError> {
        let body = serde_json::to_vec(&CreateTokenRequest { name, account_id }).unwrap_or_default();
        let (status, bytes, url) = self.call(Method::POST, Target::Create, Some(body)).await?;
        // Lenient: a secret in the answer is kept whatever else is odd about it.
        let answer = CreateAnswer::parse(&bytes).map_err(|e| ApiError::Undecodable {
            url: url.clone(),
            status: status.as_u16(),
            detail: describe_decode_error(&e, &bytes),
        })?;
        match answer {
            CreateAnswer::Created(created) => {
                self.scrubber.learn(&created.token);
                Ok(created)
            }
            CreateAnswer::SecretWithoutId {
                token,
                raw_id,
                problem,
            } => {
                self.scrubber.learn(&token);
                Err(ApiError::SecretWithoutId {
                    url,
                    status: status.as_u16(),
                    detail: problem.to_owned(),
                    token,
                    raw_id,
                })
            }
            CreateAnswer::NoSecret(problem) => Err(ApiError::Undecodable {
                url,
                status: status.as_u16(),
                detail: format!("{problem} ({} bytes)", bytes.len()),
            }),
        }
    }

    /// `GET /v2/whoami`: the token's own account.
    pub async fn whoami(&self) -> Result<WhoAmI, ApiError> {
        let mut who: WhoAmI = self.get_json("v2/whoami").await?;
        who.account_name = self.server_text(&who.account_name);
        Ok(who)
    }

    /// `GET /v2/whoami` with another token than the owner's (a sub-account token to verify),
    /// on the same connection pool. A 401/403 comes back as [`ApiError::Status`] with that
    /// status: for a probe it means the token no longer works, not that the run must stop.
    pub async fn whoami_as(&self, token: &Secret) -> Result<WhoAmI, ApiError> {
        // A server that echoes the probed token in an error has it scrubbed like any other.
        self.scrubber.learn(token);
        // The probed token leaves its secret type only into the header it is sent in.
        let mut header =
            HeaderValue::from_str(token.expose()).map_err(|_| ApiError::InvalidToken)?;
        header.set_sensitive(true);
        let (status, bytes, url) = self
            .call_as(&header, Method::GET, Target::Path("v2/whoami"), None)
            .await?;
        let mut who: WhoAmI =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Undecodable {
                url,
                status: status.as_u16(),
                detail: describe_decode_error(&e, &bytes),
            })?;
        // The account name is server text like any other: a server that echoes the probed
        // token (or another one) in it must not get it printed.
        who.account_name = self.server_text(&who.account_name);
        Ok(who)
    }

    /// Teaches the scrubber `secret` before any request: `verify` gives it every secret it
    /// will probe, so that a server echoing one token's secret in the answer for another is
    /// scrubbed too, whichever is probed first.
    pub fn scrub_also(&self, secret: &Secret) {
        self.scrubber.learn(secret);
    }

    /// `GET /v1/account-management/time-based-accounts`: the owner and its sub accounts.
    pub async fn list_accounts(&self) -> Result<Vec<SubAccountInfo>, ApiError> {
        let mut list: Vec<SubAccountInfo> = self.get_json(ACCOUNTS_PATH).await?;
        for a in &mut list {
            a.account_name = self.server_text(&a.account_name);
        }
        Ok(list)
    }

    /// `POST /v1/account-management/time-based-accounts`: creates a sub account. Not
    /// idempotent, and names are not unique: a blind re-send can make a second account.
    pub async fn create_account(&self, request: &AccountRequest) -> Result<u32, ApiError> {
        let body = serde_json::to_vec(request).unwrap_or_default();
        let (status, bytes, url) = self
            .call(Method::POST, Target::Path(ACCOUNTS_PATH), Some(body))
            .await?;
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(rename = "accountId")]
            account_id: i64,
        }
        let created: Created =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Undecodable {
                url: url.clone(),
                status: status.as_u16(),
                detail: describe_decode_error(&e, &bytes),
            })?;
        u32::try_from(created.account_id)
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| ApiError::Undecodable {
                url,
                status: status.as_u16(),
                detail: "the account id is not a positive 32-bit number".into(),
            })
    }

    /// `GET …/time-based-accounts/{id}`: one sub account with its settings.
    pub async fn get_account(&self, account_id: u32) -> Result<SubAccountInfo, ApiError> {
        let mut info: SubAccountInfo = self
            .get_json(&format!("{ACCOUNTS_PATH}/{account_id}"))
            .await?;
        info.account_name = self.server_text(&info.account_name);
        Ok(info)
    }

    /// `PUT …/time-based-accounts/{id}`: replaces the fields sent. Idempotent.
    pub async fn update_account(
        &self,
        account_id: u32,
        request: &AccountRequest,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_vec(request).unwrap_or_default();
        let path = format!("{ACCOUNTS_PATH}/{account_id}");
        self.call(Method::PUT, Target::Path(&path), Some(body))
            .await
            .map(|_| ())
    }

    /// `GET …/time-based-accounts/detailed/{id}`: the account's log shipping token
    /// (`account.accountToken`), a secret.
    pub async fn shipping_token(&self, account_id: u32) -> Result<Secret, ApiError> {
        let path = format!("{ACCOUNTS_PATH}/detailed/{account_id}");
        let (status, bytes, url) = self.call(Method::GET, Target::Path(&path), None).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Undecodable {
                url: url.clone(),
                status: status.as_u16(),
                detail: describe_decode_error(&e, &bytes),
            })?;
        match value.pointer("/account/accountToken") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => {
                let secret = Secret::new(t.clone());
                self.scrubber.learn(&secret);
                Ok(secret)
            }
            _ => Err(ApiError::Undecodable {
                url,
                status: status.as_u16(),
                detail: "`account.accountToken` is missing or empty".into(),
            }),
        }
    }

    /// Server-provided text made safe to log, print and store: the secrets of this run
    /// scrubbed, terminal control sequences removed. Ordinary text comes back unchanged.
    fn server_text(&self, text: &str) -> String {
        let clean = crate::text::for_terminal(text);
        self.scrubber.scrub(&clean)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (status, bytes, url) = self.call(Method::GET, Target::Path(path), None).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Undecodable {
            url,
            status: status.as_u16(),
            detail: describe_decode_error(&e, &bytes),
        })
    }

    /// Sends one request with the owner token (see [`ApiClient::call_as`]).
    async fn call(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>, String), ApiError> {
        self.call_as(&self.token, method, target, body).await
    }

    /// Sends one request, built afresh, with `token` as `X-API-TOKEN`, and returns a success
    /// status with its body.
    async fn call_as(
        &self,
        token: &HeaderValue,
        method: Method,
        target: Target<'_>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>, String), ApiError> {
        let url = match target {
            // The hot path: the create URL is parsed once, when the client is built.
            Target::Create => self.create_url.clone(),
            Target::Path(path) => self.base.join(path).map_err(|e| ApiError::InvalidUrl {
                url: format!("{}/{path}", self.base_text),
                detail: e.to_string(),
            })?,
        };
        let url_text = url.to_string();
        let mut req = self
            .http
            .request(method, url)
            .header("X-API-TOKEN", token.clone());
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let mut resp = req.send().await.map_err(|e| self.transport(e, &url_text))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if status.is_redirection() {
            let location_host = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| resp.url().join(v).ok())
                .and_then(|u| {
                    u.host_str()
                        .map(|h| self.server_text(&crate::text::one_line(h, 255)))
                });
            return Err(ApiError::Redirect {
                url: url_text,
                status: status.as_u16(),
                location_host,
            });
        }
        // Read the body as bytes, capped, then parse. A create's body holds a secret: the
        // buffer is zeroed when dropped.
        let mut bytes = Zeroizing::new(Vec::new());
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(ApiError::BodyTooLarge {
                            url: url_text,
                            status: status.as_u16(),
                            limit: MAX_BODY_BYTES,
                        });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(ApiError::Timeout {
                        url: url_text,
                        timeout: self.timeout,
                    });
                }
                Err(source) => {
                    return Err(ApiError::BodyCutShort {
                        url: url_text,
                        status: status.as_u16(),
                        source,
                    });
                }
            }
        }
        if status.is_success() {
            return Ok((status, bytes, url_text));
        }
        let message = self.scrubber.scrub(&ErrorBody::message_of(&bytes));
        if let Some((account_region, server_region)) = region_mismatch(&message) {
            let hint = Region::from_code(&account_region).map(|r| r.code().to_owned());
            return Err(ApiError::RegionMismatch {
                account_region,
                server_region,
                hint,
            });
        }
        Err(ApiError::Status {
            url: url_text,
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    /// Turns a transport error into what it means for the request.
    fn transport(&self, e: reqwest::Error, url: &str) -> ApiError {
        // A refused certificate is not a network hiccup: it stops the run, saying why.
        if let Some(rustls::Error::InvalidCertificate(cert)) = super::error::rustls_cause(&e) {
            return ApiError::Certificate {
                url: url.to_owned(),
                detail: format!("{cert:?}"),
            };
        }
        if e.is_connect() {
            ApiError::Connect {
                url: url.to_owned(),
                source: e,
            }
        } else if e.is_timeout() {
            ApiError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            }
        } else if e.is_builder() {
            ApiError::InvalidUrl {
                url: url.to_owned(),
                detail: e.to_string(),
            }
        } else {
            ApiError::ConnectionLost {
                url: url.to_owned(),
                source: e,
            }
        }
    }
}

/// A decode error's description that never quotes the body (it may hold a secret).
fn describe_decode_error(e: &serde_json::Error, bytes: &[u8]) -> String {
    let looks_html = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if looks_html {
        return format!("HTML instead of JSON ({} bytes)", bytes.len());
    }
    if bytes.is_empty() {
        return "empty body".into();
    }
    // Never serde_json's message: it may quote a value of the body, which may be the secret.
    let what = match e.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Eof => "JSON cut short",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
    };
    format!("{what} ({} bytes)", bytes.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_client_never_shows_the_token_and_refuses_one_that_cannot_be_sent() {
        let config = |token: &str| ClientConfig {
            endpoint: Endpoint::Url("http://127.0.0.1:1".into()),
            token: Secret::new(token),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_size: 1,
        };
        let client = ApiClient::new(config("owner-tok-9f8e7d")).unwrap();
        assert!(!format!("{client:?}").contains("owner-tok-9f8e7d"));
        let err = ApiClient::new(config("bad\ntoken")).unwrap_err();
        assert!(matches!(err, ApiError::InvalidToken));
        assert!(!err.to_string().contains("bad"));
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        assert!(check_base_url("http://[::1]:1").is_ok());
        assert!(check_base_url("https://api-eu.logz.io").is_ok());
        let err = check_base_url("http://api.logz.io").unwrap_err();
        assert!(matches!(err, ApiError::InsecureUrl { .. }));
        assert!(err.to_string().contains("https://"));
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://user:pw@x").is_err());
        assert_eq!(
            check_base_url("https://proxy.example/logz")
                .unwrap()
                .join("v2/whoami")
                .unwrap()
                .as_str(),
            "https://proxy.example/logz/v2/whoami"
        );
    }
}
