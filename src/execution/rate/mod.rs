//! The send rate of a run: the [pacer](pacer) hands out send slots at the rate the
//! [controller](controller) decides from the server's answers.

pub mod controller;
pub mod pacer;
mod significance;
pub mod window;

pub use controller::{Answer, Ticket};
pub use pacer::{Pacer, PacerSnapshot};
