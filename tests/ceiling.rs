//! The rate ceiling and the concurrency cap, end to end: the simulator notes when every request
//! arrives and how many were in flight at most; through the real binary, with 429s served,
//! no one-second window holds more than `--rate` plus the pacer's burst allowance, and no more
//! than `--concurrency` requests are ever in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use logzio_tokens::simulator::{FaultRates, SimConfig};

use crate::util::{Env, manifest_yaml};

/// Most arrivals in any window of `width` (sliding over the arrivals themselves).
fn busiest_window(arrivals: &[std::time::Instant], width: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..arrivals.len() {
        while arrivals[end].duration_since(arrivals[start]) >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[test]
fn no_second_exceeds_the_rate_and_no_moment_the_concurrency_even_with_429s() {
    const RATE: usize = 25;
    const CONCURRENCY: usize = 4;
    let env = Env::with_sim(SimConfig {
        seed: 11,
        latency: Duration::from_millis(20),
        faults: FaultRates {
            rate_limited: 0.15,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    });
    let names: Vec<String> = (0..90).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    env.write("m.yaml", &manifest_yaml(&[160_343], &refs));
    let run = env.run(&[
        "apply",
        "m.yaml",
        "--yes",
        "--rate",
        &RATE.to_string(),
        "--concurrency",
        &CONCURRENCY.to_string(),
    ]);
    run.expect_code(0);
    let counters = env.sim().counters();
    assert!(counters.fault_429 > 0, "the seed served no 429");
    let arrivals = env.sim().arrivals();
    assert_eq!(arrivals.len() as u64, counters.requests);
    // The run is long enough for the windows to mean something.
    let span = arrivals.last().unwrap().duration_since(arrivals[0]);
    assert!(span >= Duration::from_secs(3), "the run took only {span:?}");
    // The allowance: the pacer's burst (a tenth of a second's worth), a send group taking its
    // slots a little early, and the two preflight reads.
    let allowed = RATE + RATE.div_ceil(10) + 4 + 2;
    let busiest = busiest_window(&arrivals, Duration::from_secs(1));
    assert!(
        busiest <= allowed,
        "{busiest} requests arrived within one second at --rate {RATE} (allowed {allowed})"
    );
    // And it was not trivially low: the ceiling was used.
    assert!(busiest >= RATE / 2, "only {busiest} in the busiest second");
    assert!(
        counters.max_in_flight_seen as usize <= CONCURRENCY,
        "{} in flight at once at --concurrency {CONCURRENCY}",
        counters.max_in_flight_seen
    );
}

#[test]
fn the_window_count_can_fail() {
    let t0 = std::time::Instant::now();
    let arrivals: Vec<_> = (0..10)
        .map(|i| t0 + Duration::from_millis(i * 50))
        .collect();
    assert_eq!(busiest_window(&arrivals, Duration::from_secs(1)), 10);
    assert_eq!(busiest_window(&arrivals, Duration::from_millis(100)), 2);
}

/// Many callers at once share one pacer: together they never exceed its ceiling in any second
/// (a paused clock, so the count is exact and the test takes no time).
#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_the_ceiling() {
    use std::sync::Arc;
    use std::sync::Mutex;

    use logzio_tokens::execution::Pacer;
    use tokio::time::Instant;

    const RATE: f64 = 50.0;
    let pacer = Arc::new(Pacer::new(RATE, false));
    let sends = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (pacer, sends) = (pacer.clone(), sends.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_secs(5) {
                pacer.acquire().await;
                sends.lock().unwrap().push(Instant::now());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sends: Vec<std::time::Instant> = {
        let mut v: Vec<_> = sends.lock().unwrap().iter().map(|i| i.into_std()).collect();
        v.sort();
        v
    };
    let busiest = busiest_window(&sends, Duration::from_secs(1));
    let allowed = RATE as usize + (RATE as usize).div_ceil(10) + 4;
    assert!(
        busiest <= allowed,
        "{busiest} sends in one second at {RATE}/s"
    );
    // All 16 callers together still get the rate (about 5 s × 50/s).
    assert!(sends.len() >= 200, "only {} sends in 5 s", sends.len());
}
