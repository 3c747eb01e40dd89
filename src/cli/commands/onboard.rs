//! The onboarding part of the plan, for people: accounts to create (a person is spending
//! money), those that exist, drift, and names an offline plan could not check.

use crate::plan::Plan;

/// The lines `plan` and the apply confirmation show about sub accounts (none when the manifest
/// creates none).
pub fn plan_lines(plan: &Plan, update_accounts: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let n = plan.accounts_to_create.len();
    if n > 0 {
        lines.push(format!(
            "  {n} sub account{} to create, adding up to {} GB a day (a person is spending money):",
            if n == 1 { "" } else { "s" },
            plan.added_daily_gb()
        ));
        for account in &plan.accounts_to_create {
            let settings = serde_json::to_value(&account.settings)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let shown: Vec<String> = settings
                .iter()
                .map(|(k, v)| format!("{k} {}", crate::text::one_line(&v.to_string(), 200)))
                .collect();
            lines.push(format!(
                "    + {} ({}), then its {} token{}",
                account.name,
                shown.join(", "),
                account.tokens.len(),
                if account.tokens.len() == 1 { "" } else { "s" }
            ));
        }
    }
    if !plan.accounts_existing.is_empty() {
        let names: Vec<String> = plan
            .accounts_existing
            .iter()
            .map(|a| format!("{} (id {})", a.name, a.account_id))
            .collect();
        lines.push(format!(
            "  {} to create exist already (not created again): {}",
            count(names.len(), "sub account"),
            names.join(", ")
        ));
    }
    for d in &plan.drift {
        let fields: Vec<String> = d.fields.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "  ~ {} (id {}) drifted: {}{}",
            d.name,
            d.account_id,
            fields.join("; "),
            if update_accounts {
                " (apply updates it)"
            } else {
                " (`apply --update-accounts` puts it back; apply alone changes nothing)"
            }
        ));
    }
    if !plan.accounts_unchecked.is_empty() {
        lines.push(format!(
            "  could not check whether {} exist (offline: set LOGZIO_API_TOKEN): {}",
            count(plan.accounts_unchecked.len(), "sub account"),
            plan.accounts_unchecked.join(", ")
        ));
    }
    lines
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
