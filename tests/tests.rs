//! The integration tests: one binary, one module per concern, a shared harness in `util`.
// Tests and benchmarks drive the real binary on real files and clocks; the seams rule
// (clippy.toml) is for src/state and src/execution.
#![allow(clippy::disallowed_methods)]
mod adversarial;
mod apply;
mod ceiling;
mod chaos;
mod client;
mod crash;
mod diskfull;
mod docs;
mod exits;
mod hostile;
mod hygiene;
mod manifest;
mod onboard;
mod ops;
mod promises;
mod rate;
mod schema;
mod sealed;
mod seams_edges;
mod sim;
mod simulator;
mod surface;
mod terminal;
mod truth;
mod util;
mod verify;
