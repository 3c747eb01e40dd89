//! The integration tests: one binary, one module per concern, a shared harness in `util`.
mod simulator;
mod util;
