//! The manifest's shape as serde + schemars types, the source of `schemas/manifest.schema.json`
//! (the JSON Schema editors use to complete and check manifests), and the known keys of each
//! section, which the validator uses for "unknown key" errors.
//!
//! The validator does not deserialize into these types (it walks a located tree so it can report
//! every problem with its line and column); unit tests keep the key lists, the region codes and
//! the limits here in step with the validator.

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};

use serde::Deserialize;

use super::{MAX_TOKEN_NAME_CHARS, SUPPORTED_VERSION, limits};
use crate::region::Region;

/// The known keys of each section: the single list the validator checks against.
pub(crate) mod keys {
    /// Keys of the top-level mapping.
    pub(crate) const ROOT: &[&str] = &[
        "version", "region", "api_url", "defaults", "settings", "secrets", "accounts",
    ];
    /// Keys of `defaults`.
    pub(crate) const DEFAULTS: &[&str] = &["tokens", "rotate_after_days", "create"];
    /// Keys of `settings`.
    pub(crate) const SETTINGS: &[&str] = &[
        "concurrency",
        "rate_per_second",
        "max_attempts",
        "max_ambiguous",
        "request_timeout_seconds",
        "recreate_revoked",
        "rotate_after_days",
        "update_accounts",
        "account_lookup_seconds",
    ];
    /// Keys of `secrets`.
    pub(crate) const SECRETS: &[&str] = &["recipients", "recipients_file"];
    /// Keys of one account.
    pub(crate) const ACCOUNT: &[&str] = &["id", "name", "tokens", "rotate_after_days", "create"];
    /// Keys of `create` (an account's, and `defaults.create`).
    pub(crate) const CREATE: &[&str] = &[
        "email",
        "retention_days",
        "max_daily_gb",
        "reserved_daily_gb",
        "flexible",
        "searchable",
        "accessible",
        "doc_size_setting",
        "sharing_objects_accounts",
        "utilization",
        "soft_limit_gb",
        "snapsearch_retention_days",
    ];
    /// Keys of `create.utilization`.
    pub(crate) const UTILIZATION: &[&str] = &["enabled", "frequency_minutes"];
}

/// The largest account id the API accepts (its ids are 32-bit signed integers).
pub const MAX_ACCOUNT_ID: u32 = 2_147_483_647;

/// A regular expression (ECMA-262) matching text without control characters.
const NO_CONTROL_CHARACTERS: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

// On the optional fields: `with = "T"` describes them as `T`, not `T | null` (a key written
// without a value is an error), and `skip_serializing_if` keeps schemars from adding a
// `"default": null` that no editor needs.

/// A logzio-tokens manifest: which Logz.io sub accounts get which API token names.
///
/// `logzio-tokens apply` creates the tokens that do not exist yet and records them; nothing is
/// ever deleted.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "logzio-tokens manifest", transform = region_or_api_url)]
pub struct RawManifest {
    /// The manifest format version. Always `1`.
    #[schemars(range(min = SUPPORTED_VERSION, max = SUPPORTED_VERSION))]
    pub version: u64,
    /// The Logz.io region whose API serves the accounts (`us` when neither this, `api_url`,
    /// `--region` nor `--api-url` says otherwise). Not together with `api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "region_schema")]
    pub region: Option<String>,
    /// A custom API base URL, `http(s)://host[:port][/path]`, instead of a region (a proxy, a
    /// test server, the simulator). Not together with `region`. `http://` is only accepted for
    /// loopback hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", regex(pattern = r"^(https?://|\$\{)"))]
    pub api_url: Option<String>,
    /// Values for accounts that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawDefaults")]
    pub defaults: Option<RawDefaults>,
    /// How to talk to the API. Command-line options win over these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawSettings")]
    pub settings: Option<RawSettings>,
    /// Where the secrets of created tokens go. Without recipients they are written in plaintext
    /// to the secrets file (0600), which lives only on the machine that ran `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawSecrets")]
    pub secrets: Option<RawSecrets>,
    /// The sub accounts and their token names, each identified by `id` or by `name`.
    #[schemars(length(min = 1))]
    pub accounts: Vec<RawAccount>,
}

/// Sealing: every secret is encrypted to these age recipients (public keys) and written to a
/// new file in `<stem>.sealed/` per run; no plaintext secret is written to disk. Only the
/// holder of a matching private key can read them (`logzio-tokens export --identity KEYFILE`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Secrets")]
pub struct RawSecrets {
    /// age X25519 recipients (`age1…`, as `age-keygen` prints them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Vec<String>",
        inner(regex(pattern = r"^(age1[0-9a-z]+|\$\{.*)$"))
    )]
    pub recipients: Option<Vec<String>>,
    /// A file of recipients in age's `-R` format (one a line, `#` comments), relative to the
    /// manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub recipients_file: Option<String>,
}

/// Values for accounts that do not set their own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct RawDefaults {
    /// The token names of every account that has no `tokens` of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Vec<String>",
        extend("uniqueItems" = true),
        inner(length(min = 1, max = MAX_TOKEN_NAME_CHARS), regex(pattern = NO_CONTROL_CHARACTERS))
    )]
    pub tokens: Option<Vec<String>>,
    /// Create a successor for every recorded token older than this many days (overrides
    /// `settings.rotate_after_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::ROTATE_AFTER_DAYS.0, max = limits::ROTATE_AFTER_DAYS.1)
    )]
    pub rotate_after_days: Option<u32>,
    /// Settings for the sub accounts this manifest may create: each account with `create`
    /// takes these, with its own `create` fields laid over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawCreate")]
    pub create: Option<RawCreate>,
}

/// How to talk to the API. Command-line options win over these.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub struct RawSettings {
    /// The most requests in flight at once (default 8, below the ~10 parallel calls at which
    /// Logz.io was seen answering 429; `--concurrency` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::CONCURRENCY.0, max = limits::CONCURRENCY.1)
    )]
    pub concurrency: Option<u32>,
    /// The most requests started per second (default 20; `--rate` overrides it). A ceiling: the
    /// tool starts lower and adapts to the server's limit below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "f64",
        range(min = limits::RATE_PER_SECOND.0, max = limits::RATE_PER_SECOND.1)
    )]
    pub rate_per_second: Option<f64>,
    /// The most attempts per token before it is reported as failed (default 6). A request whose
    /// outcome is unknown is retried too, and listed in `possible_orphans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::MAX_ATTEMPTS.0, max = limits::MAX_ATTEMPTS.1)
    )]
    pub max_attempts: Option<u32>,
    /// The most attempts per token whose outcome is ambiguous (default 2; `--max-ambiguous`
    /// overrides it). Each may have created a token that is not recorded, which only a person
    /// can find and delete in the UI; after this many the token is not sent again and ends
    /// unresolved, its possible orphans listed. A missing token costs a re-run; an orphan costs
    /// a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::MAX_AMBIGUOUS.0, max = limits::MAX_AMBIGUOUS.1)
    )]
    pub max_ambiguous: Option<u32>,
    /// How long to wait for one response, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "f64",
        range(
            min = limits::REQUEST_TIMEOUT_SECONDS.0,
            max = limits::REQUEST_TIMEOUT_SECONDS.1
        )
    )]
    pub request_timeout_seconds: Option<f64>,
    /// Recreate tokens that `verify` saw revoked (deleted in the UI) on every apply, as
    /// `--recreate-revoked` does (default false: an admin may have deleted one on purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub recreate_revoked: Option<bool>,
    /// Create a successor for every recorded token older than this many days (the replaced
    /// ones are listed for removal by hand). `defaults` and each account may set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::ROTATE_AFTER_DAYS.0, max = limits::ROTATE_AFTER_DAYS.1)
    )]
    pub rotate_after_days: Option<u32>,
    /// PUT the declared `create` settings of existing sub accounts whose live settings differ
    /// (drift), as `apply --update-accounts` does (default false: apply only reports drift).
    /// Fields the manifest does not declare are kept as they are; no account is ever deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub update_accounts: Option<bool>,
    /// How long, in seconds, to keep listing the sub accounts after a create whose outcome is
    /// unknown (a timeout, a 5xx, a dropped connection), to find the account if it was made,
    /// before sending the create again (default 30; lists lag creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "f64",
        range(
            min = limits::ACCOUNT_LOOKUP_SECONDS.0,
            max = limits::ACCOUNT_LOOKUP_SECONDS.1
        )
    )]
    pub account_lookup_seconds: Option<f64>,
}

/// Settings of a sub account to create (`defaults.create`, or an account's `create`), named
/// after the fields of Logz.io's `TimeBasedAccountCreateRequest` in snake_case. `email` and
/// `retention_days` are required (here or in `defaults.create`), and `max_daily_gb` unless the
/// account is `flexible`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateSettings")]
pub struct RawCreate {
    /// The account's admin email (`email`): an existing user of the main account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "String",
        regex(
            pattern = r"^([_A-Za-z0-9\-+]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(\.[A-Za-z]{2,})|\$\{.*)$"
        )
    )]
    pub email: Option<String>,
    /// Days logs are kept (`retentionDays`), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = limits::ACCOUNT_DAYS.0, max = limits::ACCOUNT_DAYS.1))]
    pub retention_days: Option<u32>,
    /// The daily volume cap in GB (`maxDailyGB`); required unless `flexible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub max_daily_gb: Option<f64>,
    /// The reserved daily volume in GB of a flexible account (`reservedDailyGB`); required when
    /// `flexible`, not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub reserved_daily_gb: Option<f64>,
    /// A flexible account of a Subscription plan (`isFlexible`, default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub flexible: Option<bool>,
    /// Whether the account's data is searchable from the main account (`searchable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub searchable: Option<bool>,
    /// Whether users of the main account can open this account (`accessible`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub accessible: Option<bool>,
    /// Whether each log gets a field with its size (`docSizeSetting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub doc_size_setting: Option<bool>,
    /// The accounts this one shares objects (dashboards, visualizations) with
    /// (`sharingObjectsAccounts`): ids, or names of accounts of this manifest, including ones
    /// created in the same run (those are created first). References must not form a cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<RawAccountRef>", extend("uniqueItems" = true))]
    pub sharing_objects_accounts: Option<Vec<RawAccountRef>>,
    /// Data-volume utilization metrics (`utilizationSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawUtilization")]
    pub utilization: Option<RawUtilization>,
    /// The soft volume limit in GB of a Consumption plan (`softLimitGB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub soft_limit_gb: Option<f64>,
    /// Days Snap Search keeps data (`snapsearchRetentionDays`), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = limits::ACCOUNT_DAYS.0, max = limits::ACCOUNT_DAYS.1))]
    pub snapsearch_retention_days: Option<u32>,
}

/// An account in `sharing_objects_accounts`: its id, or the name of a manifest account.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "AccountRef")]
pub enum RawAccountRef {
    /// An account id.
    Id(#[schemars(range(min = 1, max = MAX_ACCOUNT_ID))] u32),
    /// The name of an account listed in this manifest.
    Name(#[schemars(length(min = 1))] String),
}

/// `utilization`: the API's `utilizationSettings`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Utilization")]
pub struct RawUtilization {
    /// Whether utilization metrics are collected (`utilizationEnabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub enabled: Option<bool>,
    /// How often they are collected, in minutes (`frequencyMinutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::FREQUENCY_MINUTES.0, max = limits::FREQUENCY_MINUTES.1)
    )]
    pub frequency_minutes: Option<u32>,
}

/// An account's `create`: `true` (create it with `defaults.create`) or its own settings laid
/// over `defaults.create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Create")]
pub enum RawCreateField {
    /// `true`: create it with `defaults.create`; `false`: never create it.
    Flag(bool),
    /// These settings over `defaults.create`.
    Settings(RawCreate),
}

/// One sub account: `id` or `name` (exactly one), and optionally its own token names.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Account", transform = exactly_one_selector)]
pub struct RawAccount {
    /// The sub account's numeric id. Give `id` or `name`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1, max = MAX_ACCOUNT_ID))]
    pub id: Option<u32>,
    /// The sub account's name, resolved to its id through the account list; it must match
    /// exactly one account. Give `id` or `name`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "String",
        length(min = 1),
        regex(pattern = NO_CONTROL_CHARACTERS)
    )]
    pub name: Option<String>,
    /// The token names this account must have; replaces `defaults.tokens` for it. Each name is
    /// 1 to 128 characters without control characters, and unique within the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Vec<String>",
        length(min = 1),
        extend("uniqueItems" = true),
        inner(length(min = 1, max = MAX_TOKEN_NAME_CHARS), regex(pattern = NO_CONTROL_CHARACTERS))
    )]
    pub tokens: Option<Vec<String>>,
    /// Create a successor for every recorded token older than this many days (overrides
    /// `settings.rotate_after_days` and `defaults.rotate_after_days` for this account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "u32",
        range(min = limits::ROTATE_AFTER_DAYS.0, max = limits::ROTATE_AFTER_DAYS.1)
    )]
    pub rotate_after_days: Option<u32>,
    /// Create this sub account when no account has its name, then its tokens, in the same run
    /// (only for an account given by `name`). `true` takes `defaults.create`; a mapping lays
    /// its fields over `defaults.create`. An existing account whose settings differ from those
    /// declared is drift (shown by `plan`, fixed by `apply --update-accounts`), never a second
    /// account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawCreateField")]
    pub create: Option<RawCreateField>,
}

/// `region`: one of the codes of [`Region::ALL`].
fn region_schema(_: &mut SchemaGenerator) -> Schema {
    let codes: Vec<&str> = Region::ALL.iter().map(|r| r.code()).collect();
    json_schema!({
        "type": "string",
        "enum": codes,
    })
}

/// A manifest has at most one of `region` and `api_url`.
fn region_or_api_url(schema: &mut Schema) {
    schema.insert(
        "not".to_owned(),
        serde_json::json!({ "required": ["region", "api_url"] }),
    );
}

/// An account has exactly one of `id` and `name`, and one with `create` is given by `name`.
fn exactly_one_selector(schema: &mut Schema) {
    schema.insert(
        "oneOf".to_owned(),
        serde_json::json!([{ "required": ["id"] }, { "required": ["name"] }]),
    );
    schema.insert(
        "not".to_owned(),
        serde_json::json!({ "required": ["id", "create"] }),
    );
}

/// The manifest's JSON Schema (draft 2020-12), with object keys sorted so the text is stable.
///
/// Optional keys are not nullable: `key:` with no value is an error, as the validator says.
pub fn manifest_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<RawManifest>();
    sorted(schema.to_value())
}

/// The committed text of `schemas/manifest.schema.json`: pretty JSON and a trailing newline.
pub fn manifest_schema_text() -> String {
    let value = manifest_schema();
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Rebuilds objects with sorted keys (whichever map type serde_json was built with) and joins
/// the lines of each paragraph of a description (doc comments are wrapped at 100 columns).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(text) if k == "description" => {
                            let joined = text
                                .split("\n\n")
                                .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                                .collect::<Vec<_>>()
                                .join("\n\n");
                            (k, Value::String(joined))
                        }
                        v => (k, sorted(v)),
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn property_names(schema: &serde_json::Value) -> Vec<String> {
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn sorted_keys(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn known_keys_match_the_schema() {
        let schema = manifest_schema();
        let defs = &schema["$defs"];
        assert_eq!(property_names(&schema), sorted_keys(keys::ROOT));
        assert_eq!(
            property_names(&defs["Defaults"]),
            sorted_keys(keys::DEFAULTS)
        );
        assert_eq!(
            property_names(&defs["Settings"]),
            sorted_keys(keys::SETTINGS)
        );
        assert_eq!(property_names(&defs["Account"]), sorted_keys(keys::ACCOUNT));
        assert_eq!(
            property_names(&defs["CreateSettings"]),
            sorted_keys(keys::CREATE)
        );
        assert_eq!(
            property_names(&defs["Utilization"]),
            sorted_keys(keys::UTILIZATION)
        );
        for section in [
            &schema,
            &defs["Defaults"],
            &defs["Settings"],
            &defs["Account"],
            &defs["CreateSettings"],
            &defs["Utilization"],
        ] {
            assert_eq!(section["additionalProperties"], false);
        }
    }

    #[test]
    fn schema_states_the_limits() {
        let schema = manifest_schema();
        let defs = &schema["$defs"];
        assert_eq!(
            schema["properties"]["region"]["enum"],
            serde_json::json!(["us", "eu", "uk", "au", "ca"])
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["version", "accounts"])
        );
        assert_eq!(
            defs["Account"]["properties"]["id"]["maximum"],
            2_147_483_647
        );
        assert_eq!(defs["Account"]["properties"]["id"]["minimum"], 1);
        let token = &defs["Account"]["properties"]["tokens"]["items"];
        assert_eq!(token["maxLength"], 128);
        assert_eq!(token["minLength"], 1);
        assert_eq!(
            defs["Settings"]["properties"]["rate_per_second"]["minimum"],
            0.1
        );
        assert_eq!(
            defs["Settings"]["properties"]["concurrency"]["maximum"],
            100
        );
        assert!(schema.get("$id").is_none());
        assert!(defs["Account"]["properties"]["id"]["description"].is_string());
    }

    #[test]
    fn schema_text_is_stable() {
        assert_eq!(manifest_schema_text(), manifest_schema_text());
        assert!(manifest_schema_text().ends_with("}\n"));
    }
}
