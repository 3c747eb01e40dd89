//! The two statistical tests the [controller](super::controller) judges a round by: whether a
//! round's 429s are more than the background share explains (a binomial tail), and whether
//! the 429s of two rounds at different rates fell in the faster one by more than chance (a
//! hypergeometric tail).

/// The significance level of the excess test.
const SIGNIFICANCE: f64 = 0.01;
/// The least background share assumed by the excess test.
const MIN_BACKGROUND: f64 = 0.005;

/// Whether `x` 429s in `n` answers are significantly more than a background share `p` explains:
/// `P[Binomial(n, max(p, 0.5%)) ≥ x] < 1%`.
pub fn excess(x: u32, n: u32, p: f64) -> bool {
    if x == 0 {
        return false;
    }
    binomial_tail(x, n.max(x), p.max(MIN_BACKGROUND)) < SIGNIFICANCE
}

/// Given `cx + x` 429s over a round of `cn` answers and one of `n`, the chance that at least
/// `cx` of them fall in the first if they are spread at random (the hypergeometric tail): small
/// when the first round's 429s depended on its higher rate.
pub(super) fn concentrated(cx: u32, cn: u32, x: u32, n: u32) -> f64 {
    let (total, k, draws) = (cn + n, cx + x, cn);
    let ln_choose = |a: u32, b: u32| -> f64 {
        if b > a {
            return f64::NEG_INFINITY;
        }
        ln_factorial(a) - ln_factorial(b) - ln_factorial(a - b)
    };
    let all = ln_choose(total, draws);
    (cx..=k.min(draws))
        .map(|j| (ln_choose(k, j) + ln_choose(total - k, draws - j) - all).exp())
        .sum::<f64>()
        .min(1.0)
}

fn ln_factorial(n: u32) -> f64 {
    (2..=n).map(|i| f64::from(i).ln()).sum()
}

/// `P[X ≥ x]` for `X ~ Binomial(n, p)`, `0 < p < 1`.
fn binomial_tail(x: u32, n: u32, p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let ratio = p / (1.0 - p);
    let mut pmf = (1.0 - p).powi(n as i32);
    let mut below = 0.0;
    for k in 0..x.min(n + 1) {
        below += pmf;
        pmf *= f64::from(n - k) / f64::from(k + 1) * ratio;
    }
    (1.0 - below).max(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn the_binomial_tail_matches_known_values() {
        // P[Bin(16, 0.5) >= 8] = 0.5982
        assert!((binomial_tail(8, 16, 0.5) - 0.598_2).abs() < 1e-3);
        // P[Bin(20, 0.1) >= 5] = 0.0432
        assert!((binomial_tail(5, 20, 0.1) - 0.043_2).abs() < 1e-3);
        assert_eq!(binomial_tail(0, 10, 0.3), 1.0);
        // All of them: P[Bin(2, 0.5) >= 2] = 0.25.
        assert!((binomial_tail(2, 2, 0.5) - 0.25).abs() < 1e-9);
        // Two 429s in 16 against no background is excess; against 8% it is not.
        assert!(excess(2, 16, 0.0));
        assert!(!excess(2, 16, 0.08));
        assert!(!excess(0, 16, 0.0));
        // Six 429s in a round of 64 and none in the next 64: all six in the first by chance
        // is C(64,6)/C(128,6) = 0.0135.
        assert!((concentrated(6, 64, 0, 64) - 0.013_5).abs() < 1e-3);
        // Four in 64 and none in 16: C(64,4)/C(80,4) = 0.40, noise.
        assert!((concentrated(4, 64, 0, 16) - 0.400).abs() < 2e-3);
        assert!((concentrated(0, 16, 3, 16) - 1.0).abs() < 1e-9);
    }
}
