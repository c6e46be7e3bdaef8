//! `herojobs run`: the watchdog as a daemon.

use crate::{Failure, Global};
use clap::Args;
use herojobs::engine::EngineConfig;
use herojobs::processor::Registry;
use herojobs::WatchDog;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Options of `run`.
#[derive(Args)]
pub struct RunArgs {
    /// Worker threads.
    #[arg(long, env = "HEROJOBS_WORKERS", default_value_t = 8)]
    workers: usize,
    /// Timeout (seconds) of jobs that give none.
    #[arg(long, env = "HEROJOBS_TIMEOUT", default_value_t = 60)]
    timeout: u64,
    /// Lease of a running job (seconds); another watchdog reclaims it after this.
    #[arg(long, env = "HEROJOBS_LEASE", default_value_t = 30)]
    lease: u64,
    /// On shutdown, seconds running jobs get to finish before they are cancelled and re-queued.
    #[arg(long, env = "HEROJOBS_GRACE", default_value_t = 10)]
    grace: u64,
    /// Use the in-process broker instead of Redis (recovers and runs what OurDB holds).
    #[arg(long)]
    embedded: bool,
    /// Serve only these queues: `circle/topic[:weight],...` (`circle/*`: every topic of a
    /// circle). Weights give Sidekiq-style weighted order; without weights the order is
    /// weighted equally unless --strict.
    #[arg(long, env = "HEROJOBS_QUEUES")]
    queues: Option<String>,
    /// With --queues: always try the queues in the order given (a later one only when the
    /// earlier ones are empty).
    #[arg(long, requires = "queues")]
    strict: bool,
    /// Run no jobs: only recovery of this base's jobs (re-queue what Redis lost, record the
    /// outcomes other hosts' watchdogs recorded). For a host that submits but does not run.
    #[arg(long)]
    reconcile_only: bool,
    /// Seconds a job whose params type no watchdog of the fleet runs waits before it fails.
    #[arg(long, default_value_t = 60)]
    unclaimed_timeout: u64,
    /// Also serve the web dashboard and /metrics on this address (e.g. 127.0.0.1:8088).
    #[cfg(feature = "web")]
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Token that allows the dashboard's actions (read-only without one).
    #[cfg(feature = "web")]
    #[arg(
        long,
        env = "HEROJOBS_WEB_TOKEN",
        hide_env_values = true,
        requires = "http"
    )]
    token: Option<String>,
}

pub fn run(g: &Global, a: RunArgs) -> Result<ExitCode, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))?;
    let config = EngineConfig {
        workers: a.workers.max(1),
        default_timeout: Duration::from_secs(a.timeout.max(1)),
        lease: Duration::from_secs(a.lease.max(1)),
        grace: Duration::from_secs(a.grace),
        queues: match &a.queues {
            Some(spec) => herojobs::engine::QueueSelection::parse(spec, a.strict)?,
            None => herojobs::engine::QueueSelection::All,
        },
        reconcile_only: a.reconcile_only,
        unclaimed_timeout: Duration::from_secs(a.unclaimed_timeout),
        ..EngineConfig::default()
    };
    let base = g.base();
    let (client, mut engine) = if a.embedded {
        herojobs::embedded(&base, Registry::with_builtins(), config)?
    } else {
        let engine = WatchDog::builder()
            .redis_url(&g.redis)
            .base(&base)
            .config(config)
            .registry(Registry::with_builtins())
            .build()?;
        // The dashboard shares the engine's broker and job store (one OurDB handle each).
        let s = engine.shared();
        (
            herojobs::Client::with_parts(s.broker.clone(), s.store.clone()),
            engine,
        )
    };
    engine.start()?;
    #[cfg(feature = "web")]
    let mut web = match &a.http {
        Some(addr) => Some(crate::web_cmd::start(client, addr, a.token.clone())?),
        None => None,
    };
    #[cfg(not(feature = "web"))]
    drop(client);
    eprintln!(
        "herojobs: watchdog running ({} workers, {}, jobs under {}); Ctrl-C to stop",
        a.workers,
        if a.embedded {
            "embedded broker".to_string()
        } else {
            format!("redis {}", g.redis)
        },
        base.display()
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "herojobs: stopping (running jobs get {} s to finish)",
        a.grace
    );
    #[cfg(feature = "web")]
    if let Some(w) = web.as_mut() {
        w.stop();
    }
    engine.stop();
    let s = engine.stats();
    eprintln!(
        "herojobs: stopped: {} done, {} error, {} released",
        s.done, s.error, s.released
    );
    Ok(ExitCode::SUCCESS)
}
