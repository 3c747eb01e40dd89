//! The server-side limits: a token bucket for requests per second, a counter of requests in
//! flight, and the `Retry-After` value a limited answer carries.
//!
//! Logz.io documents a limit on concurrent requests and users observe plain-text 429s well below
//! it; the simulator plays both kinds so the client's backoff is exercised. The bucket and the
//! admission decision run under the state lock (see `state`), so they need no locking of their own;
//! the in-flight count is an atomic so that a finished (or aborted) request releases its slot
//! without taking the lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hyper::header::HeaderValue;

use super::config::RetryAfterMode;

/// A token bucket: `capacity` tokens at most, refilled at `rate` per second.
///
/// The capacity is a tenth of a second's worth (at least one token): enough to absorb a small
/// burst, small enough that a client sending faster than the rate meets 429s within a second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` requests per second (`rate` is positive and finite: the config
    /// was validated).
    pub(crate) fn new(rate: f64, now: Instant) -> Self {
        let capacity = (rate / 10.0).max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes one token, or tells how long until one is available. A refused request takes nothing.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// How many requests are being handled right now (admitted, answer not yet written).
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

impl InFlight {
    /// The current count.
    pub(crate) fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Admits one request; the slot is released when the guard drops (also when the connection
    /// task is aborted). Returns the guard and the count including this request.
    pub(crate) fn enter(&self) -> (InFlightGuard<'_>, usize) {
        let now = self.0.fetch_add(1, Ordering::AcqRel) + 1;
        (InFlightGuard(&self.0), now)
    }
}

/// One admitted request's slot in [`InFlight`].
#[derive(Debug)]
pub(crate) struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `Retry-After` header value for a 429 whose client should wait `wait`, per `mode`.
///
/// Seconds are rounded up and at least 1; a date is rounded up to the next whole second, so it
/// never names a moment that has already passed.
pub(crate) fn retry_after(mode: RetryAfterMode, wait: Duration) -> Option<HeaderValue> {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    match mode {
        RetryAfterMode::None => None,
        RetryAfterMode::Seconds => Some(HeaderValue::from(secs)),
        RetryAfterMode::HttpDate => {
            // `fmt_http_date` drops the sub-second part: add one second so the rounding goes up.
            let at = SystemTime::now() + Duration::from_secs(secs + 1);
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_allows_its_capacity_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(50.0, start);
        // Capacity is max(1, 50 / 10) = 5.
        for _ in 0..5 {
            assert_eq!(bucket.try_take(start), Ok(()));
        }
        let wait = bucket.try_take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.02).abs() < 1e-9, "{wait:?}");
        // A refused request consumed nothing: after 20 ms exactly one token is back.
        let later = start + Duration::from_millis(20);
        assert_eq!(bucket.try_take(later), Ok(()));
        assert!(bucket.try_take(later).is_err());
        // A long pause refills no more than the capacity.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(bucket.try_take(much_later), Ok(()));
        }
        assert!(bucket.try_take(much_later).is_err());
    }

    #[test]
    fn slow_rates_have_a_capacity_of_one() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.5, start);
        assert_eq!(bucket.try_take(start), Ok(()));
        let wait = bucket
            .try_take(start + Duration::from_millis(500))
            .unwrap_err();
        assert!((wait.as_secs_f64() - 1.5).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn in_flight_guard_releases_its_slot() {
        let in_flight = InFlight::default();
        let (a, n) = in_flight.enter();
        assert_eq!(n, 1);
        let (_b, n) = in_flight.enter();
        assert_eq!(n, 2);
        drop(a);
        assert_eq!(in_flight.current(), 1);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(RetryAfterMode::None, Duration::from_secs(3)),
            None
        );
        let short = retry_after(RetryAfterMode::Seconds, Duration::from_millis(10)).unwrap();
        assert_eq!(short, "1");
        let long = retry_after(RetryAfterMode::Seconds, Duration::from_millis(2100)).unwrap();
        assert_eq!(long, "3");
        let date = retry_after(RetryAfterMode::HttpDate, Duration::from_secs(2)).unwrap();
        let at = httpdate::parse_http_date(date.to_str().unwrap()).unwrap();
        let ahead = at.duration_since(SystemTime::now()).unwrap();
        assert!(
            ahead >= Duration::from_secs(1) && ahead <= Duration::from_secs(3),
            "{ahead:?}"
        );
    }
}
