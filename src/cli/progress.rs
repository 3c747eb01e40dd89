//! Progress on stderr: an `indicatif` bar on a terminal, a plain line every few seconds
//! otherwise. Log lines go through [`LogWriter`], which suspends the bar while writing, so
//! they never tear it. Progress lines carry counts and rates only, never a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::execution::{Pacer, Stats};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with the progress bar (if any) hidden, for writing to stderr.
pub fn with_bar_suspended<R>(f: impl FnOnce() -> R) -> R {
    let bar = BAR.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// After Ctrl-C: leaves the bar on screen as last drawn, draws it no more, and moves below it,
/// so that what is printed next starts on a line of its own.
///
/// The bar is not cleared here, as it is at the end of a run: it keeps the cursor at the end of
/// its last line, filled to the terminal's width, so the terminal's own echo of `^C` wraps onto
/// a new line, and clearing from there left the bar's first line on screen. Left as it is, it
/// shows where the run was when it was interrupted.
pub fn leave_bar() {
    let bar = BAR.lock().ok().and_then(|mut b| b.take());
    if let Some(bar) = bar {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        let _ = std::io::stderr().lock().write_all(b"\r\n");
    }
}

/// A `tracing` writer that keeps log lines from tearing the progress bar.
#[derive(Debug, Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            with_bar_suspended(|| {
                let _ = std::io::stderr().lock().write_all(&buf);
            });
        }
    }
}

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An animated bar (stderr is a terminal).
    Bar,
    /// A plain line every few seconds.
    Lines,
    /// Nothing.
    Off,
}

/// A running progress display; stops on [`Progress::finish`] or drop.
#[derive(Debug)]
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What the two outcome counters are called: `created`/`failed` for apply.
pub type Labels = (&'static str, &'static str);

/// The plain progress line (stderr is not a terminal): everything, on one line.
fn line(stats: &Stats, pacer: &Pacer, started: Instant, (good, bad): Labels) -> String {
    let total = Stats::get(&stats.total);
    let created = Stats::get(&stats.created);
    let failed = Stats::get(&stats.failed);
    let done = created + failed;
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let rate = created as f64 / elapsed;
    let eta = if rate > 0.0 && total > done {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else {
        "-".into()
    };
    let (requests, control) = status(stats, pacer);
    format!(
        "{done}/{total} done ({created} {good}, {failed} {bad}), {requests}, {rate:.1}/s achieved, {control}, ETA {eta}"
    )
}

/// The widest the line under the bar may be: it must fit an 80-column terminal (two
/// columns of indent).
const BAR_MESSAGE_WIDTH: usize = 78;

/// The message under the bar: what the bar's own line (done, total, rate achieved, ETA) does
/// not show. Every figure has its word: the bar's `done` is `good` plus `bad`. Parts that do
/// not fit in [`BAR_MESSAGE_WIDTH`] columns are left out, least useful first.
fn bar_message(
    (created, failed): (u64, u64),
    stats: &Stats,
    pacer: &Pacer,
    (good, bad): Labels,
) -> String {
    let snap = pacer.snapshot();
    let mut parts = vec![
        format!("{created} {good} + {failed} {bad}"),
        format!("{} in flight", Stats::get(&stats.in_flight)),
        format!(
            "{:.1}/s{}",
            snap.rate,
            if snap.cooling_down {
                " (Retry-After)"
            } else {
                ""
            }
        ),
        format!(
            "limit {}",
            server_limit(snap.limit, snap.in_flight_limit).unwrap_or_else(|| "not met".into())
        ),
        super::output::count_as(Stats::get(&stats.retries), "retry", "retries"),
        format!("{} x 429", Stats::get(&stats.rate_limited)),
    ];
    loop {
        let text = parts.join(", ");
        if text.chars().count() <= BAR_MESSAGE_WIDTH || parts.len() == 1 {
            return text;
        }
        parts.pop();
    }
}

/// The server's limit as the run knows it, of either kind or both: "~97.8/s", "~10 in
/// flight", "~30.0/s and ~10 in flight"; `None` when it met none.
pub fn server_limit(rate: Option<f64>, in_flight: Option<u32>) -> Option<String> {
    match (rate, in_flight) {
        (None, None) => None,
        (Some(r), None) => Some(format!("~{r:.1}/s")),
        (None, Some(n)) => Some(format!("~{n} in flight")),
        (Some(r), Some(n)) => Some(format!("~{r:.1}/s and ~{n} in flight")),
    }
}

/// The requests ("3 in flight, 0 retries, 0 x 429") and the rate control ("rate 100.0/s,
/// server limit not met").
fn status(stats: &Stats, pacer: &Pacer) -> (String, String) {
    let snap = pacer.snapshot();
    let requests = format!(
        "{} in flight, {}, {} x 429",
        Stats::get(&stats.in_flight),
        super::output::count_as(Stats::get(&stats.retries), "retry", "retries"),
        Stats::get(&stats.rate_limited),
    );
    let control = format!(
        "rate {:.1}/s, server limit {}{}",
        snap.rate,
        server_limit(snap.limit, snap.in_flight_limit).unwrap_or_else(|| "not met".into()),
        if snap.cooling_down {
            " (pausing: Retry-After)"
        } else {
            ""
        },
    );
    (requests, control)
}

impl Progress {
    /// Starts showing progress of a run of `total` tokens. The total is the plan's, given here:
    /// the executor counts its items only once it runs, and a bar drawn before that would
    /// count toward 0 (it did: `227/0`, drawn full from the first second).
    pub fn start(mode: Mode, total: u64, stats: Arc<Stats>, pacer: Arc<Pacer>) -> Progress {
        Progress::start_labelled(mode, total, stats, pacer, ("created", "failed"))
    }

    /// [`Progress::start`] with other names for the two outcome counters (verify's
    /// `valid`/`not valid`).
    pub fn start_labelled(
        mode: Mode,
        total: u64,
        stats: Arc<Stats>,
        pacer: Arc<Pacer>,
        labels: Labels,
    ) -> Progress {
        let started = Instant::now();
        let task = match mode {
            Mode::Off => None,
            Mode::Lines => Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let l = line(&stats, &pacer, started, labels);
                    let _ = writeln!(std::io::stderr().lock(), "progress: {l}");
                }
            })),
            Mode::Bar => {
                let bar = ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::stderr_with_hz(8),
                );
                // The count and the line under the bar come from one reading of the counters,
                // drawn together: `{pos}` and `{msg}` set one after the other could be drawn
                // apart (`19/36 tokens` over `18 created`).
                let shown: Arc<Mutex<(u64, u64, String)>> =
                    Arc::new(Mutex::new((0, total, String::new())));
                let (for_count, for_detail) = (shown.clone(), shown.clone());
                // No colour in the template: the bar reads the same with NO_COLOR.
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {count} tokens, {rate}, ETA {eta}\n  {detail}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}/s", state.per_sec());
                    })
                    .with_key("count", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                        if let Ok(s) = for_count.lock() {
                            let _ = write!(w, "{}/{}", s.0, s.1);
                        }
                    })
                    .with_key("detail", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                        if let Ok(s) = for_detail.lock() {
                            let _ = w.write_str(&s.2);
                        }
                    }),
                );
                if let Ok(mut b) = BAR.lock() {
                    *b = Some(bar.clone());
                }
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        tick.tick().await;
                        let outcomes = (Stats::get(&stats.created), Stats::get(&stats.failed));
                        let done = outcomes.0 + outcomes.1;
                        let length = total.max(Stats::get(&stats.total));
                        let detail = bar_message(outcomes, &stats, &pacer, labels);
                        if let Ok(mut s) = shown.lock() {
                            *s = (done, length, detail);
                        }
                        bar.set_length(length);
                        bar.set_position(done);
                    }
                }))
            }
        };
        Progress { task }
    }

    /// Stops and clears the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Ok(mut b) = BAR.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(created: u64, failed: u64, total: u64) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = Stats::default();
        s.total.store(total, Relaxed);
        s.created.store(created, Relaxed);
        s.failed.store(failed, Relaxed);
        s.in_flight.store(32, Relaxed);
        s.retries.store(1234, Relaxed);
        s.rate_limited.store(56_789, Relaxed);
        s
    }

    #[tokio::test]
    async fn the_message_under_the_bar_fits_80_columns_and_names_every_figure() {
        // Small figures: everything fits, and the two that make the bar's count are named.
        let s = stats(90, 4, 360);
        let p = Pacer::with_learned(20.0, true, None);
        let m = bar_message((90, 4), &s, &p, ("created", "failed"));
        assert!(
            m.starts_with("90 created + 4 failed, 32 in flight, "),
            "{m}"
        );
        assert!(m.contains("limit not met"), "{m}");
        assert!(
            m.chars().count() + 2 <= 80,
            "{} columns: {m}",
            m.chars().count() + 2
        );
        // Large figures: still within 80 columns, the least useful parts left out.
        let s = stats(123_456, 12, 200_000);
        let p = Pacer::with_learned(1000.0, true, Some(987.6));
        let m = bar_message((123_456, 12), &s, &p, ("created", "failed"));
        assert!(
            m.starts_with("123456 created + 12 failed, 32 in flight, "),
            "{m}"
        );
        assert!(
            m.chars().count() + 2 <= 80,
            "{} columns: {m}",
            m.chars().count() + 2
        );
        let m = bar_message((123_456, 12), &s, &p, ("valid", "not valid"));
        assert!(m.starts_with("123456 valid + 12 not valid"), "{m}");
        assert!(m.chars().count() + 2 <= 80, "{m}");
    }

    #[tokio::test]
    async fn the_plain_line_says_everything_on_one_line() {
        let s = stats(300, 10, 400);
        let p = Pacer::new(100.0, true);
        // Three seconds ago: 100.0/s achieved (to a tenth), 90 left, about 1 s to go.
        let started = Instant::now() - Duration::from_secs(3);
        assert_eq!(
            line(&s, &p, started, ("created", "failed")),
            "310/400 done (300 created, 10 failed), 32 in flight, 1234 retries, 56789 x 429, \
             100.0/s achieved, rate 100.0/s, server limit not met, ETA 1s"
        );
    }
}
