//! The state recorder.

mod task;

pub use task::*;
