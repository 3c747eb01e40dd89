//! `simulate`: the built-in API simulator, standalone, until Ctrl-C or SIGTERM.

use std::time::Duration;

use crate::cli::args::{RetryAfterArg, SimulateArgs};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Printer, count, count_as};
use crate::fs::{FileKind, write_atomic};
use crate::simulator::{
    FaultRates, RegionMismatch, RetryAfterMode, SimConfig, Simulator, SubAccount,
};

/// Runs the simulator; prints its URL as the first stdout line.
pub async fn run(args: &SimulateArgs, printer: &Printer) -> Result<Exit, CliError> {
    if !args.listen.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "--listen {}: the simulator only listens on loopback addresses (127.0.0.1, ::1)",
            args.listen
        )));
    }
    let mut config = SimConfig {
        listen: args.listen,
        owner_token: args.owner_token.clone(),
        max_requests_per_second: args.max_rps,
        max_in_flight: args.max_in_flight,
        retry_after: match args.retry_after {
            RetryAfterArg::None => RetryAfterMode::None,
            RetryAfterArg::Seconds => RetryAfterMode::Seconds,
            RetryAfterArg::HttpDate => RetryAfterMode::HttpDate,
        },
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        account_list_lag: Duration::from_millis(args.account_list_lag_ms),
        faults: FaultRates {
            rate_limited: args.fault_429,
            unavailable: args.fault_503,
            error_after_create: args.fault_500_after_create,
            drop_before_create: args.fault_drop_before,
            drop_after_create: args.fault_drop_after,
            truncate_after_create: args.fault_truncate,
            slow_after_create: args.fault_slow,
        },
        slow_delay: Duration::from_secs_f64(args.slow_seconds.max(0.0)),
        seed: args.seed,
        ..SimConfig::default()
    };
    if let Some(path) = &args.accounts {
        let text = std::fs::read(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        #[derive(serde::Deserialize)]
        struct Acc {
            id: i64,
            name: String,
        }
        // Where and what kind of problem, never serde's message: it quotes the file.
        let list: Vec<Acc> = crate::state::parse_strict(&text).map_err(|detail| {
            CliError::usage(format!(
                "{}: {detail}; expected [{{\"id\": 1, \"name\": \"a\"}}, ...]",
                path.display()
            ))
        })?;
        config.sub_accounts = list
            .into_iter()
            .map(|a| SubAccount::new(a.id, a.name))
            .collect();
    }
    if let Some(rm) = &args.region_mismatch {
        let (a, s) = rm
            .split_once(':')
            .ok_or_else(|| CliError::usage("--region-mismatch takes ACCOUNT:SERVER, e.g. eu:us"))?;
        config.region_mismatch = Some(RegionMismatch {
            account_region: a.into(),
            server_region: s.into(),
        });
    }
    let sim = Simulator::start(config)
        .await
        .map_err(|e| CliError::usage(format!("cannot start the simulator: {e}")))?;
    printer.out(&sim.url());
    printer.info(&format!(
        "Simulating the Logz.io API at {url}. Owner token: {token}\n  export LOGZIO_API_URL={url} LOGZIO_API_TOKEN={token}\n  ground truth: curl {url}/__sim/ground-truth (see `simulate --help`). Ctrl-C stops it.",
        url = sim.url(),
        token = crate::cli::output::shell_quote(&args.owner_token),
    ));
    wait_for_stop().await;
    let truth = sim.ground_truth();
    let counters = sim.counters();
    sim.shutdown().await;
    printer.info(&format!(
        "Stopped. {}, {} created.",
        count_as(counters.requests, "request", "requests"),
        count(truth.len(), "token")
    ));
    if let Some(path) = &args.dump_on_exit {
        let mut bytes = serde_json::to_vec_pretty(&serde_json::json!({
            "tokens": truth,
            "counters": counters,
        }))
        .unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(path, &bytes, FileKind::Secret, "ground truth")?;
    }
    Ok(Exit::Success)
}

async fn wait_for_stop() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
