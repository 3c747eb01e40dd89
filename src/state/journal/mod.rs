//! The write-ahead journal: one JSON object per line, appended and fsync'd by a single writer
//! (the recorder), read back by the next run ([`replay`]).

mod records;
mod replay;
pub(crate) mod room;
mod writer;

pub use records::{HeldSecret, JournalRecord, Outcome};
pub use replay::{Gap, replay};
pub(crate) use writer::JournalWriter;
