//! What sealing costs per created token: `cargo bench --bench sealing`.
//!
//! With recipients set, the recorder seals each received secret on its own (a one-token
//! secrets document, into the journal) and the run's secrets once more at the end (one sealed
//! file). This times both on this machine, in CPU microseconds per token, for one and for three
//! recipients.
// Tests and benchmarks drive the real binary on real files and clocks; the seams rule
// (clippy.toml) is for src/state and src/execution.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use logzio_tokens::key::TokenKey;
use logzio_tokens::secret::Secret;
use logzio_tokens::state::SecretsFile;
use logzio_tokens::state::sealed::Recipients;

fn cpu_now() -> f64 {
    // Process CPU time (user + system), so other load on the machine does not count.
    let t = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = t
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn key(i: usize) -> TokenKey {
    TokenKey {
        account_id: 160_000 + (i / 4) as u32,
        token_name: format!("token-{i}"),
    }
}

fn main() {
    const TOKENS: usize = 2_000;
    println!("sealing cost per created token ({TOKENS} tokens; CPU time of this process)");
    for n in [1usize, 3] {
        let recipients = Recipients::new(
            (0..n)
                .map(|_| age::x25519::Identity::generate().to_public())
                .collect(),
        )
        .unwrap();
        // Per token, as the recorder does for each journal record.
        let (cpu0, wall0) = (cpu_now(), Instant::now());
        let mut bytes = 0usize;
        for i in 0..TOKENS {
            let mut doc = SecretsFile::default();
            doc.insert(
                &key(i),
                i as i64 + 1,
                Secret::new(format!("{i:08}-a3ac-4676-ad09-689854b5cbbd")),
            );
            bytes += recipients.seal_secrets(&doc).unwrap().len();
        }
        let per_record_cpu = (cpu_now() - cpu0) * 1e6 / TOKENS as f64;
        let per_record_wall = wall0.elapsed().as_secs_f64() * 1e6 / TOKENS as f64;
        // Once per run, for the run's sealed file.
        let mut doc = SecretsFile::default();
        for i in 0..TOKENS {
            doc.insert(
                &key(i),
                i as i64 + 1,
                Secret::new(format!("{i:08}-a3ac-4676-ad09-689854b5cbbd")),
            );
        }
        let (cpu1, wall1) = (cpu_now(), Instant::now());
        let file = recipients.seal_secrets(&doc).unwrap();
        let run_cpu = (cpu_now() - cpu1) * 1e6 / TOKENS as f64;
        let run_wall = wall1.elapsed().as_secs_f64() * 1e6 / TOKENS as f64;
        println!(
            "  {n} recipient(s): journal record {per_record_wall:.0} µs wall / {per_record_cpu:.0} µs CPU, {} bytes; run file {run_wall:.1} µs wall / {run_cpu:.1} µs CPU per token ({} KiB for {TOKENS})",
            bytes / TOKENS,
            file.len() / 1024
        );
    }
}
