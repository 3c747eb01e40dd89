//! Where the API is: a Logz.io region or a custom base URL, and the one rule every base URL
//! must pass. The manifest validator (which reports a [`UrlProblem`] at the `api_url` line), the
//! command line (`--api-url`, `LOGZIO_API_URL`) and the client all check through
//! [`parse_base_url`], so a URL one of them accepts is never refused by another. Pure: it sits
//! beside [`crate::region`] so the manifest (core) needs nothing from the API client.
//!
//! The rule: `https://host[:port][/path]`, or `http://` for a loopback host only (localhost,
//! 127.x.x.x, `[::1]`): the owner token goes in a header of every request and must not cross
//! the network unencrypted. No credentials, query or fragment; an ASCII host name or an IP
//! address; a port from 1 to 65535. Parsing is the `url` crate's (WHATWG); the checks it does
//! not make (a loopback host for http, label syntax, port 0, extra slashes) are made here.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use crate::region::Region;

/// Where the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Logz.io region.
    Region(Region),
    /// A custom base URL (a proxy, a test server, the simulator), checked by [`parse_base_url`].
    Url(String),
}

impl Default for Endpoint {
    /// The `us` region, Logz.io's default.
    fn default() -> Self {
        Endpoint::Region(Region::Us)
    }
}

impl Endpoint {
    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        match self {
            Endpoint::Region(r) => r.base_url().to_owned(),
            Endpoint::Url(u) => u.trim_end_matches('/').to_owned(),
        }
    }
}

/// Why a text is not a usable base URL. The messages complete "invalid `api_url`: ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    /// Spaces or control characters.
    Whitespace,
    /// Neither `https://` nor `http://`.
    Scheme,
    /// A `?query` or a `#fragment`.
    QueryOrFragment,
    /// `user:password@`.
    Credentials,
    /// Nothing where the host goes.
    NoHost,
    /// Not a host name or an IP address.
    BadHost,
    /// `http://` for a host other than loopback.
    InsecureHttp,
    /// Not a number from 1 to 65535.
    BadPort,
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlProblem::Whitespace => "it must not contain spaces or control characters",
            UrlProblem::Scheme => "it must start with `https://` or `http://`",
            UrlProblem::QueryOrFragment => "it must not have a query (`?`) or a fragment (`#`)",
            UrlProblem::Credentials => "it must not contain credentials (`user@`)",
            UrlProblem::NoHost => "the host is missing",
            UrlProblem::BadHost => "the host is not a valid host name or IP address",
            UrlProblem::InsecureHttp => {
                "plain `http://` is allowed only for loopback hosts (localhost, 127.x.x.x, [::1]): \
                 tokens would cross the network unencrypted; use `https://`"
            }
            UrlProblem::BadPort => "the port must be a number from 1 to 65535",
        })
    }
}

/// Parses a base URL and applies the rule above. The URL's path ends with `/`, so that
/// relative API paths join under it (`https://proxy/logz/` + `v2/whoami`).
pub fn parse_base_url(text: &str) -> Result<Url, UrlProblem> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlProblem::Whitespace);
    }
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &text[8..]
    } else if lower.starts_with("http://") {
        &text[7..]
    } else {
        return Err(UrlProblem::Scheme);
    };
    // The url crate reads `https:///x` as host `x` and turns a non-ASCII host into punycode;
    // both would accept what the user did not write.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.is_empty() || authority.starts_with(':') {
        return Err(UrlProblem::NoHost);
    }
    if !authority.is_ascii() {
        return Err(UrlProblem::BadHost);
    }
    let mut url = Url::parse(text).map_err(|e| match e {
        url::ParseError::EmptyHost => UrlProblem::NoHost,
        url::ParseError::InvalidPort => UrlProblem::BadPort,
        _ => UrlProblem::BadHost,
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlProblem::QueryOrFragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    let host_ok = match url.host() {
        Some(Host::Domain(d)) => d.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => true,
        None => return Err(UrlProblem::NoHost),
    };
    if !host_ok {
        return Err(UrlProblem::BadHost);
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(UrlProblem::InsecureHttp);
    }
    if url.port() == Some(0) {
        return Err(UrlProblem::BadPort);
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The host of a custom base URL that is neither a Logz.io API host (`api*.logz.io`) nor
/// loopback: the owner token would go to a third party, which deserves a warning naming it.
pub fn foreign_host(base_url: &str) -> Option<String> {
    let url = Url::parse(base_url).ok()?;
    if is_loopback(&url) {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let logzio = host
        .strip_suffix(".logz.io")
        .is_some_and(|sub| sub == "api" || sub.starts_with("api-"));
    (!logzio).then_some(host)
}

/// Whether the URL's host is `localhost` or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_rule_accepts_https_anywhere_and_http_on_loopback() {
        for ok in [
            "https://api.logz.io",
            "https://api-eu.logz.io/",
            "http://127.0.0.1:8080",
            "http://localhost:1/api/v1",
            "http://[::1]:9000/x",
            "HTTPS://API.LOGZ.IO",
        ] {
            assert!(parse_base_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn each_problem_is_named() {
        for (bad, problem) in [
            ("api.logz.io", UrlProblem::Scheme),
            ("ftp://x", UrlProblem::Scheme),
            ("https://", UrlProblem::NoHost),
            ("https:///path", UrlProblem::NoHost),
            ("https://:80", UrlProblem::NoHost),
            ("https://host:0", UrlProblem::BadPort),
            ("https://host:65536", UrlProblem::BadPort),
            ("https://host:x", UrlProblem::BadPort),
            ("https://127.0.0.1:99999/api", UrlProblem::BadPort),
            ("https://user:pw@host", UrlProblem::Credentials),
            ("https://ho st", UrlProblem::Whitespace),
            ("https://host/?q=1", UrlProblem::QueryOrFragment),
            ("https://host/#f", UrlProblem::QueryOrFragment),
            ("https://-host", UrlProblem::BadHost),
            ("https://a..b", UrlProblem::BadHost),
            ("https://[::1", UrlProblem::BadHost),
            ("https://[zz]", UrlProblem::BadHost),
            ("https://[::1]x", UrlProblem::BadHost),
            ("https://hóst", UrlProblem::BadHost),
            ("http://api.logz.io", UrlProblem::InsecureHttp),
            ("not a url", UrlProblem::Whitespace),
        ] {
            assert_eq!(parse_base_url(bad), Err(problem), "{bad}");
        }
    }

    #[test]
    fn the_base_path_ends_with_a_slash_so_paths_join_under_it() {
        let url = parse_base_url("https://proxy.example/logz").unwrap();
        assert_eq!(
            url.join("v2/whoami").unwrap().as_str(),
            "https://proxy.example/logz/v2/whoami"
        );
    }

    #[test]
    fn a_host_that_is_not_logzio_is_named() {
        assert_eq!(foreign_host("https://api-eu.logz.io/"), None);
        assert_eq!(foreign_host("https://api.logz.io"), None);
        assert_eq!(foreign_host("http://127.0.0.1:8080"), None);
        assert_eq!(foreign_host("http://localhost:1/x/"), None);
        assert_eq!(
            foreign_host("https://api.logz.io.evil.example"),
            Some("api.logz.io.evil.example".to_owned())
        );
        assert_eq!(
            foreign_host("https://proxy.corp.example/logzio/"),
            Some("proxy.corp.example".to_owned())
        );
        assert_eq!(
            foreign_host("https://app.logz.io"),
            Some("app.logz.io".to_owned())
        );
    }
}
