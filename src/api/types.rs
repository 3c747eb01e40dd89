//! The API's request and response bodies, parsed leniently where the API is inconsistent.

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// The token's id (the spec says int32; kept as i64). Always positive.
    pub id: i64,
    /// The token's name as the API recorded it.
    pub name: Option<String>,
    /// The secret value.
    pub token: Secret,
    /// Epoch seconds, an integer or a decimal; `None` when missing or out of range.
    pub created_at: Option<f64>,
}

impl<'de> Deserialize<'de> for CreatedToken {
    /// The same lenient reading as the client's; an answer without a secret or a usable id is
    /// an error here.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match CreateAnswer::from_value(serde_json::Value::deserialize(d)?) {
            CreateAnswer::Created(c) => Ok(c),
            CreateAnswer::SecretWithoutId { problem, .. } | CreateAnswer::NoSecret(problem) => {
                Err(serde::de::Error::custom(problem))
            }
        }
    }
}

/// What a 2xx answer to a create holds, read leniently: the secret is what matters, and a
/// schema drift in any other field must never cost it.
#[derive(Debug)]
pub(crate) enum CreateAnswer {
    /// Everything needed to record the token.
    Created(CreatedToken),
    /// A secret, but no usable id: the token exists, yet cannot be recorded as the item's.
    SecretWithoutId {
        /// The secret.
        token: Secret,
        /// The id as the API gave it, when it was an integer at all.
        raw_id: Option<i64>,
        /// What is wrong with the id (never quotes the body).
        problem: &'static str,
    },
    /// No secret in the answer (never quotes the body).
    NoSecret(&'static str),
}

/// The latest `createdAt` believed: the end of year 9999. Larger values (`1e308`) are not
/// a time, and would overflow into 1969 if converted.
const MAX_EPOCH_SECONDS: f64 = 253_402_300_799.0;

impl CreateAnswer {
    /// Reads a create answer's body. Only `token` must be a non-empty string; `id` may be a
    /// number or a string of digits; `name` and `createdAt` are dropped when odd.
    pub(crate) fn parse(bytes: &[u8]) -> Result<CreateAnswer, serde_json::Error> {
        Ok(CreateAnswer::from_value(serde_json::from_slice(bytes)?))
    }

    fn from_value(value: serde_json::Value) -> CreateAnswer {
        let serde_json::Value::Object(mut obj) = value else {
            return CreateAnswer::NoSecret("the body is not a JSON object");
        };
        let token = match obj.remove("token") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => Secret::new(t),
            Some(serde_json::Value::String(_)) => {
                return CreateAnswer::NoSecret("the `token` field is empty");
            }
            Some(_) => return CreateAnswer::NoSecret("the `token` field is not a string"),
            None => return CreateAnswer::NoSecret("the `token` field is missing"),
        };
        let (id, raw_id, problem) = match obj.get("id") {
            None | Some(serde_json::Value::Null) => (None, None, "the token id is missing"),
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) if i > 0 => (Some(i), Some(i), ""),
                Some(i) => (None, Some(i), "the token id is not a positive number"),
                None => (None, None, "the token id is not an integer"),
            },
            Some(serde_json::Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(i) if i > 0 && s.trim().bytes().all(|b| b.is_ascii_digit()) => {
                    (Some(i), Some(i), "")
                }
                Ok(i) => (None, Some(i), "the token id is not a positive number"),
                Err(_) => (None, None, "the token id is not a number"),
            },
            Some(_) => (None, None, "the token id is not a number"),
        };
        let Some(id) = id else {
            return CreateAnswer::SecretWithoutId {
                token,
                raw_id,
                problem,
            };
        };
        let name = match obj.get("name") {
            Some(serde_json::Value::String(n)) => Some(n.clone()),
            _ => None,
        };
        let created_at = obj.get("createdAt").and_then(epoch_seconds);
        CreateAnswer::Created(CreatedToken {
            id,
            name,
            token,
            created_at,
        })
    }
}

/// Epoch seconds from a number (integer or decimal) or a numeric string, within 0..=year 9999.
fn epoch_seconds(v: &serde_json::Value) -> Option<f64> {
    let f = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (f.is_finite() && (0.0..=MAX_EPOCH_SECONDS).contains(&f)).then_some(f)
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

/// One entry of `GET /v1/account-management/time-based-accounts` (and `GET …/{id}`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
    /// Its settings, each `None` when missing, null or of an unexpected type.
    #[serde(flatten)]
    pub settings: LiveSettings,
}

/// The settings of a sub account as the API shows them, read leniently: a field that is
/// missing or odd is unknown (`None`), never an error that would cost the whole list.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSettings {
    /// `email`.
    #[serde(default, deserialize_with = "lenient")]
    pub email: Option<String>,
    /// `retentionDays`.
    #[serde(default, deserialize_with = "lenient")]
    pub retention_days: Option<i64>,
    /// `maxDailyGB`.
    #[serde(default, rename = "maxDailyGB", deserialize_with = "lenient")]
    pub max_daily_gb: Option<f64>,
    /// `reservedDailyGB`.
    #[serde(default, rename = "reservedDailyGB", deserialize_with = "lenient")]
    pub reserved_daily_gb: Option<f64>,
    /// `isFlexible`.
    #[serde(default, deserialize_with = "lenient")]
    pub is_flexible: Option<bool>,
    /// `searchable`.
    #[serde(default, deserialize_with = "lenient")]
    pub searchable: Option<bool>,
    /// `accessible`.
    #[serde(default, deserialize_with = "lenient")]
    pub accessible: Option<bool>,
    /// `docSizeSetting`.
    #[serde(default, deserialize_with = "lenient")]
    pub doc_size_setting: Option<bool>,
    /// `sharingObjectsAccounts`, as ids.
    #[serde(default, deserialize_with = "lenient")]
    pub sharing_objects_accounts: Option<Vec<i64>>,
    /// `utilizationSettings`.
    #[serde(default, deserialize_with = "lenient")]
    pub utilization_settings: Option<UtilizationSettings>,
    /// `softLimitGB`.
    #[serde(default, rename = "softLimitGB", deserialize_with = "lenient")]
    pub soft_limit_gb: Option<f64>,
    /// `snapsearchRetentionDays`.
    #[serde(default, deserialize_with = "lenient")]
    pub snapsearch_retention_days: Option<i64>,
}

impl LiveSettings {
    /// The same settings in the manifest's terms, for the plan's drift check (a value out of
    /// the manifest's range is left unknown).
    pub fn to_manifest(&self) -> crate::manifest::AccountSettings {
        use crate::manifest::{AccountRef, AccountSettings, Utilization};
        let days = |v: Option<i64>| v.and_then(|d| u32::try_from(d).ok());
        AccountSettings {
            email: self.email.clone(),
            retention_days: days(self.retention_days),
            max_daily_gb: self.max_daily_gb,
            reserved_daily_gb: self.reserved_daily_gb,
            flexible: self.is_flexible,
            searchable: self.searchable,
            accessible: self.accessible,
            doc_size_setting: self.doc_size_setting,
            sharing_objects_accounts: self.sharing_objects_accounts.as_ref().map(|ids| {
                ids.iter()
                    .filter_map(|id| u32::try_from(*id).ok().map(AccountRef::Id))
                    .collect()
            }),
            utilization: self.utilization_settings.map(|u| Utilization {
                enabled: u.utilization_enabled,
                frequency_minutes: days(u.frequency_minutes),
            }),
            soft_limit_gb: self.soft_limit_gb,
            snapsearch_retention_days: days(self.snapsearch_retention_days),
        }
    }
}

/// `utilizationSettings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationSettings {
    /// `frequencyMinutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_minutes: Option<i64>,
    /// `utilizationEnabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_enabled: Option<bool>,
}

/// A field read as `T` when it is one, else `None`.
fn lenient<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// `POST …/time-based-accounts` (`TimeBasedAccountCreateRequest`) and `PUT …/{id}`
/// (`TimeBasedAccountUpdateRequest`): optional fields are left out when `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRequest {
    /// `accountName` (required).
    pub account_name: String,
    /// `email` (required on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `retentionDays` (required on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    /// `sharingObjectsAccounts` (required, may be empty).
    pub sharing_objects_accounts: Vec<i64>,
    /// `maxDailyGB`.
    #[serde(rename = "maxDailyGB", skip_serializing_if = "Option::is_none")]
    pub max_daily_gb: Option<f64>,
    /// `reservedDailyGB`.
    #[serde(rename = "reservedDailyGB", skip_serializing_if = "Option::is_none")]
    pub reserved_daily_gb: Option<f64>,
    /// `isFlexible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_flexible: Option<bool>,
    /// `searchable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searchable: Option<bool>,
    /// `accessible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accessible: Option<bool>,
    /// `docSizeSetting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_size_setting: Option<bool>,
    /// `utilizationSettings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_settings: Option<UtilizationSettings>,
    /// `softLimitGB`.
    #[serde(rename = "softLimitGB", skip_serializing_if = "Option::is_none")]
    pub soft_limit_gb: Option<f64>,
    /// `snapsearchRetentionDays`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapsearch_retention_days: Option<i64>,
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
        // One readable line, without terminal control sequences.
        crate::text::one_line(&text, 300)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn created(body: &str) -> CreatedToken {
        match CreateAnswer::parse(body.as_bytes()).unwrap() {
            CreateAnswer::Created(c) => c,
            other => panic!("not created: {other:?}"),
        }
    }

    #[test]
    fn created_at_integer_decimal_or_missing() {
        let a = created(r#"{"id": 7386, "name": "n", "token": "c498", "createdAt": 1621858311}"#);
        assert_eq!(a.created_at, Some(1621858311.0));
        let b = created(
            r#"{"id": 7386, "name": "n", "token": "c498", "createdAt": 1621858311.000000000}"#,
        );
        assert_eq!(b.created_at, Some(1621858311.0));
        let c = created(r#"{"id": 1, "token": "x"}"#);
        assert_eq!(c.created_at, None);
        assert!(!format!("{a:?}").contains("c498"));
        assert!(matches!(
            CreateAnswer::parse(br#"{"id": 1}"#).unwrap(),
            CreateAnswer::NoSecret(_)
        ));
    }

    #[test]
    fn a_secret_is_kept_whatever_else_drifted() {
        // Odd name and createdAt: still a created token.
        let c = created(r#"{"id": "7386", "name": 12, "token": "s-1", "createdAt": true}"#);
        assert_eq!((c.id, c.name, c.created_at), (7386, None, None));
        // An out-of-range time is unknown, not 1969.
        for t in ["1e308", "-5", "\"1e308\"", "253402300800"] {
            let c = created(&format!(r#"{{"id": 1, "token": "s", "createdAt": {t}}}"#));
            assert_eq!(c.created_at, None, "{t}");
        }
        // An unusable id: the secret is still there, set aside.
        for (body, raw) in [
            (r#"{"token": "s-2"}"#, None),
            (r#"{"id": -7, "token": "s-2"}"#, Some(-7)),
            (r#"{"id": 0, "token": "s-2"}"#, Some(0)),
            (r#"{"id": "x7", "token": "s-2"}"#, None),
            (r#"{"id": 1.5, "token": "s-2"}"#, None),
            (r#"{"id": {}, "token": "s-2"}"#, None),
            (r#"{"id": "-7", "token": "s-2"}"#, Some(-7)),
        ] {
            match CreateAnswer::parse(body.as_bytes()).unwrap() {
                CreateAnswer::SecretWithoutId { token, raw_id, .. } => {
                    assert_eq!(token.expose(), "s-2", "{body}");
                    assert_eq!(raw_id, raw, "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        for body in [
            r#"[]"#,
            r#"{"id": 1, "token": 5}"#,
            r#"{"id": 1, "token": " "}"#,
        ] {
            assert!(
                matches!(
                    CreateAnswer::parse(body.as_bytes()).unwrap(),
                    CreateAnswer::NoSecret(_)
                ),
                "{body}"
            );
        }
        assert!(CreateAnswer::parse(b"{").is_err());
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
