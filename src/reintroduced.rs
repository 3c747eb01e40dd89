//! Past bugs put back, one at a time, to measure how soon the test suites find them (issue
//! 27: the deterministic simulation and the SIGKILL suites are compared on the same bugs).
//!
//! Compiled in only with the `reintroduce` feature, which no build but that measurement
//! enables; without it [`on`] is a constant `false` and every switch below folds away. With
//! it, `LOGZIO_TOKENS_REINTRODUCE=<name>` (read once per process, so the binary a crash suite
//! starts inherits it) chooses the bug:
//!
//! ```sh
//! LOGZIO_TOKENS_REINTRODUCE=intent-unsynced LOGZIO_TOKENS_SIM_SEEDS=200 \
//!   cargo test --features reintroduce --test integration sim::seeds -- --exact --nocapture
//! ```

/// One bug this project had, or nearly had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// An intent is acknowledged (and its request sent) before it is fsync'd.
    IntentUnsynced,
    /// Replaying a journal drops its first outcome.
    ReplayDropsOutcome,
    /// A mid-run checkpoint saves the results file before sealing the secrets it names
    /// (issue 25, defect 1).
    CheckpointAheadOfSealed,
    /// The results file's stamp is taken by path after the rename, so a replacement right
    /// after the rename passes for the file written (the save race).
    StampAfterRename,
    /// The ambiguity budget is spent afresh by every run (issue 25, defect 6).
    BudgetResets,
    /// A journal's endpoint is not compared with the run's (issue 25, defect 8).
    JournalAnyEndpoint,
    /// A sealed file is written in place, not through a temp file and a rename, so a full
    /// disk leaves a truncated one under its final name (issue 25, defect 11).
    SealedInPlace,
    /// The results file is checked unchanged only before the secrets file is written (the
    /// simulation's save-window finding).
    SaveWindow,
    /// A sealed state is continued in plaintext without `--allow-plaintext` (issue 25,
    /// defect 12).
    ProtectionDropped,
    /// Sealed files the results file does not list are trusted (issue 25, defect 10).
    TrustUnlisted,
    /// `import` binds the results file to no endpoint (issue 25, defect 9).
    ImportUnbound,
    /// `import --from` records as replaced a token another row (or the results file) has as
    /// current (issue 25, defect 14).
    ImportReplacedCurrent,
    /// One 401 or 403 takes a replaced token off the remove-by-hand list, whatever the run's
    /// current tokens answered (issue 25, defect 15).
    DeletionUnconfirmed,
    /// A lookup for an account after an ambiguous or interrupted create that was cut short
    /// (the run stopped, or no read of the list succeeded) says none was found, where it must
    /// leave the create pending for the next run to look again.
    AccountLookupCutShort,
    /// An account create is sent without its intent journaled first.
    AccountCreateUnjournaled,
}

impl Bug {
    /// Every bug, with the name that chooses it.
    pub const ALL: [(Bug, &'static str); 15] = [
        (Bug::IntentUnsynced, "intent-unsynced"),
        (Bug::ReplayDropsOutcome, "replay-drops-outcome"),
        (Bug::CheckpointAheadOfSealed, "checkpoint-ahead-of-sealed"),
        (Bug::StampAfterRename, "stamp-after-rename"),
        (Bug::BudgetResets, "budget-resets"),
        (Bug::JournalAnyEndpoint, "journal-any-endpoint"),
        (Bug::SealedInPlace, "sealed-in-place"),
        (Bug::SaveWindow, "save-window"),
        (Bug::ProtectionDropped, "protection-dropped"),
        (Bug::TrustUnlisted, "trust-unlisted"),
        (Bug::ImportUnbound, "import-unbound"),
        (Bug::ImportReplacedCurrent, "import-replaced-current"),
        (Bug::DeletionUnconfirmed, "deletion-unconfirmed"),
        (Bug::AccountLookupCutShort, "account-lookup-cut-short"),
        (Bug::AccountCreateUnjournaled, "account-create-unjournaled"),
    ];
}

/// Whether `bug` is put back in this process.
#[cfg(feature = "reintroduce")]
pub fn on(bug: Bug) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<Bug>> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let name = std::env::var("LOGZIO_TOKENS_REINTRODUCE").ok()?;
        Bug::ALL
            .iter()
            .find(|(_, n)| *n == name.trim())
            .map(|(b, _)| *b)
    }) == Some(bug)
}

/// Whether `bug` is put back in this process: never, without the `reintroduce` feature.
#[cfg(not(feature = "reintroduce"))]
#[inline(always)]
pub const fn on(_bug: Bug) -> bool {
    false
}
