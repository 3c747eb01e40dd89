//! The API's request and response bodies, parsed leniently where the API is inconsistent.

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;

/// `POST /v1/api-tokens/sub-account` request body.
#[derive(Debug, Serialize)]
pub struct CreateTokenRequest<'a> {
    /// The token's name.
    pub name: &'a str,
    /// The sub account.
    #[serde(rename = "accountId")]
    pub account_id: u32,
}

/// A created token, as returned once by the API.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedToken {
    /// The token's id (the spec says int32; kept as i64).
    pub id: i64,
    /// The token's name as the API recorded it.
    #[serde(default)]
    pub name: Option<String>,
    /// The secret value.
    pub token: Secret,
    /// Epoch seconds, an integer or a decimal.
    #[serde(rename = "createdAt", deserialize_with = "epoch_seconds", default)]
    pub created_at: Option<f64>,
}

fn epoch_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    // serde_json gives integers and decimals alike as a number; a string form is accepted too.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        F(f64),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::F(f)) => Some(f),
        Some(N::S(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// `GET /v2/whoami`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WhoAmI {
    /// The token's account name.
    #[serde(rename = "accountName", default)]
    pub account_name: String,
    /// The token's account id.
    #[serde(rename = "accountId")]
    pub account_id: i64,
}

/// One entry of `GET /v1/account-management/time-based-accounts`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SubAccountInfo {
    /// The account id.
    #[serde(rename = "accountId")]
    pub account_id: i64,
    /// The account name.
    #[serde(rename = "accountName", default)]
    pub account_name: String,
    /// Whether this is the owner (main) account.
    #[serde(rename = "isOwner", default)]
    pub is_owner: bool,
}

/// An error body, in any of the shapes the API uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "errorCode")]
    pub error_code: Option<String>,
    #[serde(default, rename = "requestId")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// The message of a JSON error body (`{"message"}`, `{"code","message"}`,
    /// `{"errorCode","message",...}`), or the raw text (e.g. `Too Many Requests`).
    pub fn message_of(body: &[u8]) -> String {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let text = match parsed {
            Some(ErrorBody {
                message: Some(m),
                error_code,
                request_id,
            }) => {
                let mut s = m;
                if let Some(code) = error_code {
                    s = format!("{s} ({code})");
                }
                if let Some(id) = request_id {
                    s = format!("{s} [request id {id}]");
                }
                s
            }
            _ => String::from_utf8_lossy(body).trim().to_owned(),
        };
        // Keep messages to one readable line.
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > 300 {
            let cut: String = one_line.chars().take(300).collect();
            format!("{cut}…")
        } else {
            one_line
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_at_integer_decimal_or_missing() {
        let a: CreatedToken = serde_json::from_str(
            r#"{"id": 7386, "name": "n", "token": "c498", "createdAt": 1621858311}"#,
        )
        .unwrap();
        assert_eq!(a.created_at, Some(1621858311.0));
        let b: CreatedToken = serde_json::from_str(
            r#"{"id": 7386, "name": "n", "token": "c498", "createdAt": 1621858311.000000000}"#,
        )
        .unwrap();
        assert_eq!(b.created_at, Some(1621858311.0));
        let c: CreatedToken = serde_json::from_str(r#"{"id": 1, "token": "x"}"#).unwrap();
        assert_eq!(c.created_at, None);
        assert!(!format!("{a:?}").contains("c498"));
        assert!(serde_json::from_str::<CreatedToken>(r#"{"id": 1}"#).is_err());
    }

    #[test]
    fn every_error_body_shape() {
        assert_eq!(ErrorBody::message_of(br#"{"message":"bad"}"#), "bad");
        assert_eq!(
            ErrorBody::message_of(br#"{"code":403,"message":"Insufficient privileges"}"#),
            "Insufficient privileges"
        );
        assert_eq!(
            ErrorBody::message_of(
                br#"{"errorCode":"NOT_FOUND","message":"gone","requestId":"r1","parameters":{}}"#
            ),
            "gone (NOT_FOUND) [request id r1]"
        );
        assert_eq!(
            ErrorBody::message_of(b"Too Many Requests\n"),
            "Too Many Requests"
        );
    }

    #[test]
    fn fixtures_parse() {
        let list: Vec<SubAccountInfo> =
            serde_json::from_str(include_str!("../../tests/fixtures/list_subaccounts.json"))
                .unwrap();
        assert!(!list.is_empty());
    }
}
