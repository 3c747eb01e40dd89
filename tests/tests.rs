//! The integration tests: one binary, one module per concern, a shared harness in `util`.
mod adversarial;
mod apply;
mod ceiling;
mod chaos;
mod client;
mod crash;
mod exits;
mod hostile;
mod hygiene;
mod manifest;
mod ops;
mod rate;
mod schema;
mod sealed;
mod simulator;
mod terminal;
mod util;
