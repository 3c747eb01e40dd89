//! The integration tests: one binary, one module per concern, a shared harness in `util`.
mod apply;
mod chaos;
mod client;
mod crash;
mod hostile;
mod hygiene;
mod manifest;
mod ops;
mod schema;
mod sealed;
mod simulator;
mod terminal;
mod util;
mod verify;
