//! The random source seam: everything random in a run (backoff jitter, run ids) is drawn
//! from a [`Random`] passed in, so that a simulation replays a run exactly from one seed.
//! [`from_os`] is the default and the only source the tool uses.

/// The random source a run draws from.
pub type Random = rand::rngs::StdRng;

/// A random source seeded by the operating system.
#[allow(clippy::disallowed_methods)] // the injected default: the OS's randomness is read here
pub fn from_os() -> Random {
    rand::SeedableRng::from_os_rng()
}

/// A random source that draws the same numbers for the same `seed` (tests, simulations).
pub fn seeded(seed: u64) -> Random {
    rand::SeedableRng::seed_from_u64(seed)
}
