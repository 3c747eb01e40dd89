//! The fault draw: which (if any) injected fault a token-creation call meets.
//!
//! One uniform draw per call, walked against the cumulative probabilities in a fixed order, picks
//! at most one fault. With one seeded RNG behind every draw, a run with the same seed and the same
//! sequence of calls meets the same faults, which is what makes fault tests deterministic.

use super::config::FaultRates;

/// A fault injected into a token-creation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 429 plain text, nothing created.
    RateLimited,
    /// 503, nothing created.
    Unavailable,
    /// Created, then 500.
    ErrorAfterCreate,
    /// Nothing created, connection closed without a byte.
    DropBeforeCreate,
    /// Created, connection closed without a byte.
    DropAfterCreate,
    /// Created, 200 head and half the body, then closed.
    TruncateAfterCreate,
    /// Created, the 200 comes after the slow delay.
    SlowAfterCreate,
}

impl Fault {
    /// Whether the token exists (in the ground truth) when this fault plays.
    pub(crate) fn creates(self) -> bool {
        !matches!(
            self,
            Fault::RateLimited | Fault::Unavailable | Fault::DropBeforeCreate
        )
    }
}

/// The fault rates as cumulative thresholds, ready for a draw.
#[derive(Debug, Clone)]
pub(crate) struct FaultTable {
    thresholds: [(f64, Fault); 7],
}

impl FaultTable {
    /// The table for these (validated) rates.
    pub(crate) fn new(rates: &FaultRates) -> Self {
        let mut sum = 0.0;
        let mut step = |rate: f64, fault: Fault| {
            sum += rate;
            (sum, fault)
        };
        FaultTable {
            thresholds: [
                step(rates.rate_limited, Fault::RateLimited),
                step(rates.unavailable, Fault::Unavailable),
                step(rates.error_after_create, Fault::ErrorAfterCreate),
                step(rates.drop_before_create, Fault::DropBeforeCreate),
                step(rates.drop_after_create, Fault::DropAfterCreate),
                step(rates.truncate_after_create, Fault::TruncateAfterCreate),
                step(rates.slow_after_create, Fault::SlowAfterCreate),
            ],
        }
    }

    /// The fault for a uniform draw `u` in `0.0..1.0`, or `None` for a normal answer.
    pub(crate) fn choose(&self, u: f64) -> Option<Fault> {
        self.thresholds
            .iter()
            .find(|(threshold, _)| u < *threshold)
            .map(|&(_, fault)| fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rates_no_faults() {
        let table = FaultTable::new(&FaultRates::default());
        assert_eq!(table.choose(0.0), None);
        assert_eq!(table.choose(0.999_999), None);
    }

    #[test]
    fn cumulative_order() {
        let table = FaultTable::new(&FaultRates {
            rate_limited: 0.1,
            unavailable: 0.1,
            error_after_create: 0.1,
            drop_before_create: 0.1,
            drop_after_create: 0.1,
            truncate_after_create: 0.1,
            slow_after_create: 0.1,
        });
        assert_eq!(table.choose(0.0), Some(Fault::RateLimited));
        assert_eq!(table.choose(0.15), Some(Fault::Unavailable));
        assert_eq!(table.choose(0.25), Some(Fault::ErrorAfterCreate));
        assert_eq!(table.choose(0.35), Some(Fault::DropBeforeCreate));
        assert_eq!(table.choose(0.45), Some(Fault::DropAfterCreate));
        assert_eq!(table.choose(0.55), Some(Fault::TruncateAfterCreate));
        assert_eq!(table.choose(0.65), Some(Fault::SlowAfterCreate));
        assert_eq!(table.choose(0.75), None);
    }

    #[test]
    fn a_zero_rate_is_never_chosen_and_one_always_is() {
        let table = FaultTable::new(&FaultRates {
            drop_after_create: 1.0,
            ..FaultRates::default()
        });
        for u in [0.0, 0.3, 0.999_999_999] {
            assert_eq!(table.choose(u), Some(Fault::DropAfterCreate));
        }
    }

    #[test]
    fn which_faults_create() {
        assert!(!Fault::RateLimited.creates());
        assert!(!Fault::Unavailable.creates());
        assert!(!Fault::DropBeforeCreate.creates());
        assert!(Fault::ErrorAfterCreate.creates());
        assert!(Fault::DropAfterCreate.creates());
        assert!(Fault::TruncateAfterCreate.creates());
        assert!(Fault::SlowAfterCreate.creates());
    }

    #[test]
    fn seeded_draws_meet_the_rates() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let table = FaultTable::new(&FaultRates {
            unavailable: 0.2,
            slow_after_create: 0.05,
            ..FaultRates::default()
        });
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let mut unavailable = 0;
        let mut slow = 0;
        for _ in 0..n {
            match table.choose(rng.random()) {
                Some(Fault::Unavailable) => unavailable += 1,
                Some(Fault::SlowAfterCreate) => slow += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
        }
        // Expected 4000 ± 57 (one sigma) and 1000 ± 31.
        assert!((3800..=4200).contains(&unavailable), "{unavailable}");
        assert!((880..=1120).contains(&slow), "{slow}");
    }
}
