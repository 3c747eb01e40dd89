//! The clock seam: the wall clock (timestamps written into files) and the one monotonic
//! instant (`tokio::time::Instant`: deadlines, rates, save intervals) come from a [`Clock`]
//! passed in, so that a simulation can run the real code on a clock it controls.
//! [`SystemClock`] is the default and the only one in the tool.

use std::fmt::Debug;
use std::sync::Arc;

use tokio::time::Instant;

/// Where the time comes from.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The wall-clock time now, for timestamps written into files and records.
    fn now_utc(&self) -> time::OffsetDateTime;

    /// The monotonic time now. Under a paused tokio clock (tests) it is the paused time.
    fn now(&self) -> Instant;

    /// The wall-clock time now as RFC 3339 with milliseconds, in UTC.
    fn now_rfc3339(&self) -> String {
        crate::timestamp::format_rfc3339(self.now_utc())
    }
}

/// A clock shared by the parts of a run.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clocks: the real wall clock and tokio's monotonic one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

#[allow(clippy::disallowed_methods)] // the injected default: the real clocks are read here
impl Clock for SystemClock {
    fn now_utc(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_formats_its_wall_time_with_milliseconds() {
        let c = SystemClock::shared();
        let t = c.now_rfc3339();
        assert!(
            t.ends_with('Z') && t.len() == "2026-11-23T20:00:00.500Z".len(),
            "{t}"
        );
        let a = c.now();
        assert!(c.now() >= a);
    }
}
