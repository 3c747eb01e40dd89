//! The sub-account endpoints (`/v1/account-management/time-based-accounts`): the settings each
//! account has, the create and update bodies checked against the spec's
//! `TimeBasedAccountCreateRequest` / `TimeBasedAccountUpdateRequest`, and the bodies the list,
//! get and detailed calls answer. Pure: `state` keeps the accounts and decides, `server` routes.
//!
//! As on Logz.io, names are not unique: a create with a name already taken makes a second
//! account. A new account shows in the list only after the configured list lag.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `utilizationSettings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationSettings {
    /// `frequencyMinutes`.
    pub frequency_minutes: Option<i64>,
    /// `utilizationEnabled`.
    pub utilization_enabled: Option<bool>,
}

/// The settings of one account, under the API's field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    /// `email` (the lists often show null).
    pub email: Option<String>,
    /// `retentionDays`.
    pub retention_days: i64,
    /// `maxDailyGB`.
    #[serde(rename = "maxDailyGB")]
    pub max_daily_gb: Option<f64>,
    /// `reservedDailyGB`.
    #[serde(rename = "reservedDailyGB")]
    pub reserved_daily_gb: Option<f64>,
    /// `isFlexible`.
    pub is_flexible: bool,
    /// `searchable`.
    pub searchable: bool,
    /// `accessible`.
    pub accessible: bool,
    /// `docSizeSetting`.
    pub doc_size_setting: bool,
    /// `sharingObjectsAccounts`: account ids.
    pub sharing_objects_accounts: Vec<i64>,
    /// `utilizationSettings`.
    pub utilization_settings: Option<UtilizationSettings>,
    /// `softLimitGB`.
    #[serde(rename = "softLimitGB")]
    pub soft_limit_gb: Option<f64>,
    /// `snapsearchRetentionDays`.
    pub snapsearch_retention_days: Option<i64>,
}

impl AccountSettings {
    /// What a pre-configured sub account has (`retention` days, searchable and accessible).
    pub fn preset(retention: i64) -> Self {
        AccountSettings {
            email: None,
            retention_days: retention,
            max_daily_gb: None,
            reserved_daily_gb: None,
            is_flexible: false,
            searchable: true,
            accessible: true,
            doc_size_setting: false,
            sharing_objects_accounts: Vec::new(),
            utilization_settings: None,
            soft_limit_gb: None,
            snapsearch_retention_days: None,
        }
    }
}

/// A create or update request, checked.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AccountRequest {
    /// `accountName`.
    pub(crate) name: String,
    /// Every other field, as sent (absent optional fields as the spec's defaults).
    pub(crate) settings: AccountSettings,
    /// Which optional fields the request carried (an update changes only those, plus the
    /// required ones).
    pub(crate) present: Vec<&'static str>,
}

/// The fields of the create request (plus `snapsearchRetentionDays`, which the official client
/// sends on create too).
const CREATE_FIELDS: &[&str] = &[
    "accountName",
    "email",
    "retentionDays",
    "sharingObjectsAccounts",
    "searchable",
    "accessible",
    "docSizeSetting",
    "utilizationSettings",
    "isFlexible",
    "reservedDailyGB",
    "maxDailyGB",
    "softLimitGB",
    "snapsearchRetentionDays",
];

/// Whether a name holds only what the spec allows: letters, digits, `-`, `.`, `_`, space.
pub(crate) fn valid_account_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ' '))
}

/// Checks a `POST` (create) or `PUT` (update) body. `Err` is the 400 message.
pub(crate) fn parse_request(body: &[u8], create: bool) -> Result<AccountRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Malformed request body: {e}"))?;
    let Value::Object(object) = value else {
        return Err("Malformed request body: expected a JSON object".into());
    };
    if let Some(unknown) = object.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(format!("Unrecognized field '{unknown}'"));
    }
    let mut present = Vec::new();
    let name = match object.get("accountName") {
        Some(Value::String(n)) if valid_account_name(n) => n.clone(),
        Some(Value::String(_)) => {
            return Err(
                "Field 'accountName' may hold letters, digits, '-', '.', '_' and spaces only"
                    .into(),
            );
        }
        None | Some(Value::Null) => return Err("Missing required field 'accountName'".into()),
        Some(_) => return Err("Field 'accountName' must be a string".into()),
    };
    let email = match object.get("email") {
        Some(Value::String(e)) if crate::manifest::is_api_email(e) => Some(e.clone()),
        Some(Value::String(_)) => return Err("Field 'email' is not a valid email".into()),
        None | Some(Value::Null) if create => {
            return Err("Missing required field 'email'".into());
        }
        None | Some(Value::Null) => None,
        Some(_) => return Err("Field 'email' must be a string".into()),
    };
    let retention_days = match int(&object, "retentionDays")? {
        Some(days) if days >= 1 => days,
        Some(_) => return Err("Field 'retentionDays' must be at least 1".into()),
        None if create => return Err("Missing required field 'retentionDays'".into()),
        None => 0,
    };
    if retention_days > 0 {
        present.push("retentionDays");
    }
    let sharing = match object.get("sharingObjectsAccounts") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    "Field 'sharingObjectsAccounts' must hold account ids".to_owned()
                })
            })
            .collect::<Result<Vec<i64>, String>>()?,
        None | Some(Value::Null) => {
            return Err("Missing required field 'sharingObjectsAccounts'".into());
        }
        Some(_) => return Err("Field 'sharingObjectsAccounts' must be an array".into()),
    };
    let is_flexible = boolean(&object, "isFlexible", &mut present)?.unwrap_or(false);
    let max_daily_gb = number(&object, "maxDailyGB", &mut present)?;
    let reserved_daily_gb = number(&object, "reservedDailyGB", &mut present)?;
    if is_flexible && reserved_daily_gb.is_none() {
        return Err("Field 'reservedDailyGB' is required when 'isFlexible' is true".into());
    }
    if !is_flexible && reserved_daily_gb.is_some() {
        return Err("Field 'reservedDailyGB' must be null when 'isFlexible' is false".into());
    }
    if create && !is_flexible && max_daily_gb.is_none() {
        return Err("Field 'maxDailyGB' cannot be null when 'isFlexible' is false".into());
    }
    let utilization_settings = match object.get("utilizationSettings") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            present.push("utilizationSettings");
            Some(
                serde_json::from_value::<UtilizationSettings>(v.clone())
                    .map_err(|_| "Field 'utilizationSettings' is malformed".to_owned())?,
            )
        }
        Some(_) => return Err("Field 'utilizationSettings' must be an object".into()),
    };
    let snapsearch = int(&object, "snapsearchRetentionDays")?;
    if snapsearch.is_some_and(|d| d < 1) {
        return Err("Field 'snapsearchRetentionDays' must be at least 1".into());
    }
    if snapsearch.is_some() {
        present.push("snapsearchRetentionDays");
    }
    if email.is_some() {
        present.push("email");
    }
    let settings = AccountSettings {
        email,
        retention_days,
        max_daily_gb,
        reserved_daily_gb,
        is_flexible,
        searchable: boolean(&object, "searchable", &mut present)?.unwrap_or(false),
        accessible: boolean(&object, "accessible", &mut present)?.unwrap_or(false),
        doc_size_setting: boolean(&object, "docSizeSetting", &mut present)?.unwrap_or(false),
        sharing_objects_accounts: sharing,
        utilization_settings,
        soft_limit_gb: number(&object, "softLimitGB", &mut present)?,
        snapsearch_retention_days: snapsearch,
    };
    Ok(AccountRequest {
        name,
        settings,
        present,
    })
}

fn int(object: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| format!("Field '{key}' must be a 32-bit integer")),
    }
}

fn number(
    object: &Map<String, Value>,
    key: &'static str,
    present: &mut Vec<&'static str>,
) -> Result<Option<f64>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            present.push(key);
            v.as_f64()
                .map(Some)
                .ok_or_else(|| format!("Field '{key}' must be a number"))
        }
    }
}

fn boolean(
    object: &Map<String, Value>,
    key: &'static str,
    present: &mut Vec<&'static str>,
) -> Result<Option<bool>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => {
            present.push(key);
            Ok(Some(*b))
        }
        Some(_) => Err(format!("Field '{key}' must be a boolean")),
    }
}

/// One account as the list and get calls show it.
pub(crate) fn account_json(id: i64, name: &str, is_owner: bool, s: &AccountSettings) -> Value {
    let mut value = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("accountId".into(), Value::from(id));
        map.insert("accountName".into(), Value::from(name));
        map.insert("isOwner".into(), Value::from(is_owner));
    }
    value
}

/// `GET …/detailed/{id}`: the account with its log shipping token, and its relation.
pub(crate) fn detailed_json(
    owner_id: i64,
    id: i64,
    name: &str,
    s: &AccountSettings,
    shipping_token: &str,
) -> Value {
    serde_json::json!({
        "subAccountRelation": {
            "ownerAccountId": owner_id,
            "subAccountId": id,
            "searchable": s.searchable,
            "accessible": s.accessible,
            "type": "SUB_ACCOUNT",
        },
        "account": {
            "accountId": id,
            "accountName": name,
            "active": true,
            "maxDailyGB": s.max_daily_gb,
            "reservedDailyGB": s.reserved_daily_gb,
            "isFlexible": s.is_flexible,
            "retentionDays": s.retention_days,
            "accountToken": shipping_token,
        },
        "sharingObjectsAccounts": s.sharing_objects_accounts.iter()
            .map(|a| serde_json::json!({"accountId": a}))
            .collect::<Vec<_>>(),
        "utilizationSettings": s.utilization_settings,
        "docSizeSetting": s.doc_size_setting,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_create_is_checked_against_the_spec() {
        let ok = br#"{"accountName":"team a","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5}"#;
        let r = parse_request(ok, true).unwrap();
        assert_eq!(r.name, "team a");
        assert_eq!(r.settings.retention_days, 7);
        for (body, message) in [
            (
                r#"{"email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5}"#,
                "accountName",
            ),
            (
                r#"{"accountName":"a/b","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5}"#,
                "accountName",
            ),
            (
                r#"{"accountName":"a","email":"a@b","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5}"#,
                "email",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":0,"sharingObjectsAccounts":[],"maxDailyGB":5}"#,
                "retentionDays",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":7,"maxDailyGB":5}"#,
                "sharingObjectsAccounts",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[]}"#,
                "maxDailyGB",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"isFlexible":true}"#,
                "reservedDailyGB",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5,"reservedDailyGB":1}"#,
                "reservedDailyGB",
            ),
            (
                r#"{"accountName":"a","email":"a@example.com","retentionDays":7,"sharingObjectsAccounts":[],"maxDailyGB":5,"retention":1}"#,
                "retention",
            ),
        ] {
            let e = parse_request(body.as_bytes(), true).unwrap_err();
            assert!(e.contains(message), "{body}: {e}");
        }
    }

    #[test]
    fn an_update_needs_the_name_and_the_sharing_list_only() {
        let r = parse_request(
            br#"{"accountName":"a","sharingObjectsAccounts":[1]}"#,
            false,
        )
        .unwrap();
        assert!(r.present.is_empty());
        assert!(parse_request(br#"{"accountName":"a"}"#, false).is_err());
    }
}
