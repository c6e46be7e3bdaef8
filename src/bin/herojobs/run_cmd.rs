//! `herojobs run`: the watchdog as a daemon. The first SIGINT/SIGTERM stops it gracefully
//! (running jobs get `--grace` seconds, then are cancelled and given back); a second one
//! exits at once.

use crate::{Failure, Global};
use clap::Args;
use herojobs::{Compaction, EngineConfig, QueueSelection, Registry, Retention, WatchDog};
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
    /// Seconds Redis keeps a finished job (then `get` reads it from OurDB); 0 keeps it.
    #[arg(long, env = "HEROJOBS_FINISHED_TTL", default_value_t = 3600)]
    finished_ttl: u64,
    /// Seconds a queue with nothing waiting, delayed or running stays in the queue
    /// registry before it leaves it (its next submit registers it again; 0: never).
    #[arg(long, default_value_t = 24 * 3600)]
    queue_idle_ttl: u64,
    /// Compact a job database (online: submitters and readers go on) once the bytes that
    /// became dead since its last compaction reach this fraction of its data (0 < R <= 1).
    #[arg(long, value_name = "R", default_value_t = 0.5)]
    compact_dead_ratio: f64,
    /// ... and at least this many MiB (small databases are not worth the copy).
    #[arg(long, value_name = "N", default_value_t = 64)]
    compact_min_dead_mb: u64,
    /// Versions of each job a compaction keeps, newest first (0 or 1: the latest only).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_history: usize,
    /// Never compact the job databases (they grow by three or more versions per job; see
    /// `herojobs ourdb compact`).
    #[arg(long)]
    no_compaction: bool,
    /// Retries of a failed job that carries no retry policy of its own (0: an error is final).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// First wait before a retry, seconds (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    backoff: f64,
    /// How the wait grows: fixed or exponential.
    #[arg(long, default_value = "exponential")]
    backoff_kind: String,
    /// Retry timed-out runs too (by default a timeout is final).
    #[arg(long)]
    retry_timeouts: bool,
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
    // First SIGINT/SIGTERM: graceful stop (grace, then cancel and re-queue). A second one
    // while stopping: exit at once; running jobs' leases expire and another watchdog (or
    // this one's next start) runs them again.
    ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            eprintln!("herojobs: second signal: stopping now without waiting for running jobs");
            std::process::exit(130);
        }
    })?;
    let mut config = EngineConfig::default();
    config.workers = a.workers.max(1);
    config.default_timeout = Duration::from_secs(a.timeout.max(1));
    config.lease = Duration::from_secs(a.lease.max(1));
    config.grace = Duration::from_secs(a.grace);
    config.queues = match &a.queues {
        Some(spec) => QueueSelection::parse(spec, a.strict)?,
        None => QueueSelection::All,
    };
    config.reconcile_only = a.reconcile_only;
    config.unclaimed_timeout = Duration::from_secs(a.unclaimed_timeout);
    config.retry = crate::jobs_cmd::retry_policy(a.retries, a.backoff, &a.backoff_kind)?;
    config.retry_timeouts = a.retry_timeouts;
    let mut retention = Retention::default();
    retention.finished_ttl = Duration::from_secs(a.finished_ttl);
    retention.queue_idle = Duration::from_secs(a.queue_idle_ttl);
    config.retention = retention;
    config.compaction = compaction_policy(&a)?;
    let base = g.base();
    let keys = g.signing_keys()?;
    let (client, mut engine) = if a.embedded {
        if !keys.is_empty() {
            return Err("--signing-keys needs a Redis watchdog (not --embedded)".into());
        }
        herojobs::embedded(&base, Registry::with_builtins(), config)?
    } else {
        let mut b = WatchDog::builder()
            .redis_url(&g.redis)
            .base(&base)
            .config(config)
            .registry(Registry::with_builtins());
        for (circle, secret) in keys {
            b = b.require_signing(&circle, secret);
        }
        let engine = b.build()?;
        // The dashboard shares the engine's broker and job store (one OurDB handle each).
        (engine.client(), engine)
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
            format!("redis {}", herojobs::redact::redact_url(&g.redis))
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

/// The compaction policy the run flags describe.
fn compaction_policy(a: &RunArgs) -> Result<Compaction, Failure> {
    if a.no_compaction {
        return Ok(Compaction::disabled());
    }
    if !(a.compact_dead_ratio > 0.0 && a.compact_dead_ratio <= 1.0) {
        return Err(format!(
            "--compact-dead-ratio {}: expected a fraction above 0 and at most 1",
            a.compact_dead_ratio
        )
        .into());
    }
    let mut c = Compaction::default();
    c.dead_ratio = a.compact_dead_ratio;
    c.min_dead_bytes = a.compact_min_dead_mb.saturating_mul(1 << 20);
    c.keep_history = a.keep_history;
    Ok(c)
}
