//! Onboarding: sub accounts declared in the manifest, planned, created exactly once with their
//! tokens, and their drift shown and put back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use logzio_tokens::simulator::SimConfig;

use crate::util::Env;

/// A manifest that creates `new` accounts (team-00, team-01, ...) with two tokens each, the
/// later ones sharing with the first, plus `payments-prod` (existing) declared with
/// `retention_days: 30`.
pub fn onboarding_manifest(new: usize) -> String {
    let mut text = String::from(
        "version: 1\n\
         defaults:\n  tokens: [ci, grafana]\n  create:\n    email: platform@example.com\n    \
         retention_days: 7\n    max_daily_gb: 5\n\
         accounts:\n  - name: payments-prod\n    create: {retention_days: 30}\n",
    );
    for i in 0..new {
        if i == 0 {
            text.push_str("  - name: team-00\n    create: true\n");
        } else {
            text.push_str(&format!(
                "  - name: team-{i:02}\n    create:\n      sharing_objects_accounts: [team-00, 160343]\n"
            ));
        }
    }
    text
}

#[test]
fn plan_shows_accounts_to_create_the_gb_they_add_and_drift_and_counts_both_as_changes() {
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write("m.yaml", &onboarding_manifest(3));
    let run = env.run(&["plan", manifest.to_str().unwrap(), "--detailed-exitcode"]);
    run.expect_code(2);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("3 sub accounts to create, adding up to 15 GB a day"),
        "{all}"
    );
    assert!(all.contains("+ team-00 ("), "{all}");
    assert!(
        all.contains("payments-prod (id 160343) drifted: retention_days: 30 declared, 7 live"),
        "{all}"
    );
    assert_eq!(env.sim().handle().counters().accounts_created, 0);

    // Offline: the names could not be checked.
    let offline = env.run_cmd(
        env.cmd()
            .env_remove("LOGZIO_API_TOKEN")
            .env_remove("LOGZIO_API_URL")
            .args(["plan", manifest.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let all = format!("{}{}", offline.stdout, offline.stderr);
    assert!(
        all.contains("could not check whether 4 sub accounts exist"),
        "{all}"
    );
}

#[test]
fn bad_create_settings_are_refused_at_their_line_with_nothing_sent() {
    let env = Env::with_sim(SimConfig::default());
    let manifest = env.write(
        "m.yaml",
        "version: 1\ndefaults:\n  tokens: [ci]\naccounts:\n  - name: team-x\n    create:\n      \
         email: not-an-email\n      retention_days: 7\n      max_daily_gb: 5\n",
    );
    let run = env.run(&["apply", manifest.to_str().unwrap(), "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("m.yaml:7:14"), "{}", run.stderr);
    assert_eq!(env.sim().handle().counters().requests, 0);
}
