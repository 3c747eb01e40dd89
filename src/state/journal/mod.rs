//! The write-ahead journal.

mod replay;
pub(crate) mod room;

pub use replay::*;
