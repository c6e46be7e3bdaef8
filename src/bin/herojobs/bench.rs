//! `herojobs bench`: the standard protocol, so figures compare with other queues. N no-op
//! jobs submitted one call at a time by one producer (enqueue/s); then C workers drain them
//! (drain/s, from worker start to the last job done in the broker and OurDB); then 500
//! sequential submit → result round trips on the idle engine (p50, p99). The resident set is
//! reported before the drain, once the engine is warm (a tenth of the jobs done), at its peak
//! after that, and after the drain.

use crate::{Failure, Global};
use clap::Args;
use herojobs::{Durability, Job, ParamsType, Registry, Retention, WatchDog};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Jobs to enqueue and drain.
    #[arg(long = "jobs", default_value_t = 20_000)]
    jobs: u64,
    /// Workers draining them.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// OurDB durability: periodic, strict or none.
    #[arg(long, default_value = "periodic")]
    durability: String,
    /// Use the in-process broker instead of Redis.
    #[arg(long)]
    embedded: bool,
    /// Bytes of params per job.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Sequential round trips to time.
    #[arg(long, default_value_t = 500)]
    roundtrips: usize,
    /// Seconds Redis keeps a finished job (the engine's retention; default 1 hour).
    #[arg(long, default_value_t = 3600)]
    finished_ttl: u64,
    /// After the drain, submit this many jobs delayed to one moment and time how fast the
    /// dispatcher promotes and runs them (0: skip).
    #[arg(long, default_value_t = 0)]
    delayed: u64,
    /// After the drain, compact every job database (online, while the engine runs) and
    /// report OurDB bytes per finished job before and after. The engine's own compaction
    /// policy is off during a bench either way, so drain figures never include one.
    #[arg(long)]
    compact: bool,
    /// With --compact: versions of each job the compaction keeps (0 or 1: the latest only).
    #[arg(long, default_value_t = 0)]
    keep_history: usize,
}

/// Redis `used_memory` in bytes (0 when unknown or embedded).
fn redis_used_memory(url: &str) -> u64 {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("INFO").arg("memory").query::<String>(&mut c))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The OurDB databases under `dir` (recursively: directories holding `ourdb.json`).
fn ourdb_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join(herojobs::ourdb::CONFIG_FILE).is_file() {
            out.push(d);
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    out.sort();
    out
}

/// Data and live bytes of every OurDB database under `dir`. Data bytes are the records up
/// to each database's append point (`OurDb::space`): the file length would also count a
/// `strict` writer's preallocated fill (up to 256 KiB per database, not data).
fn ourdb_space(dir: &std::path::Path) -> Result<herojobs::ourdb::Space, Failure> {
    let mut total = herojobs::ourdb::Space::default();
    for d in ourdb_dirs(dir) {
        let db = herojobs::ourdb::OurDb::open(&d, herojobs::ourdb::Config::default())?;
        let s = db.space()?;
        total.data_bytes += s.data_bytes;
        total.live_bytes += s.live_bytes;
        total.dead_bytes += s.dead_bytes;
    }
    Ok(total)
}

/// Compacts every OurDB database under `dir` (online); returns the seconds it took and the
/// writes that landed while it copied (ids caught up).
fn compact_all(dir: &std::path::Path, keep_history: usize) -> Result<(f64, u64), Failure> {
    let start = Instant::now();
    let mut caught_up = 0;
    for d in ourdb_dirs(dir) {
        let db = herojobs::ourdb::OurDb::open(&d, herojobs::ourdb::Config::default())?;
        let r = db.compact_with(herojobs::CompactOptions::keep_history(keep_history))?;
        caught_up += r.caught_up;
    }
    Ok((start.elapsed().as_secs_f64(), caught_up))
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn bar(n: u64, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(n);
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!("{what:<9} {{bar:30}} {{pos}}/{{len}}"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

pub fn run(g: &Global, a: BenchArgs) -> Result<ExitCode, Failure> {
    let durability: Durability = a.durability.parse().map_err(|e: String| Failure {
        message: e,
        code: 2,
    })?;
    let base = tempfile::tempdir()?;
    let mut registry = Registry::new();
    registry.register(ParamsType::HeroScript, |_, _| Ok(String::new()));
    let mut retention = Retention::default();
    retention.finished_ttl = Duration::from_secs(a.finished_ttl);
    let mut builder = WatchDog::builder()
        .redis_url(&g.redis)
        .base(base.path())
        .durability(durability)
        .workers(a.concurrency.max(1))
        .retention(retention)
        .compaction(herojobs::Compaction::disabled())
        .registry(registry);
    if a.embedded {
        builder = builder.embedded();
    }
    let mut engine = builder.build()?;
    let client = engine.client();
    let circle = format!("bench{}", std::process::id());
    let params = "x".repeat(a.payload);

    let redis_before = if a.embedded {
        0
    } else {
        redis_used_memory(&g.redis)
    };
    let b = bar(a.jobs, "enqueue");
    let start = Instant::now();
    for i in 0..a.jobs {
        client.submit(Job::new(
            &circle,
            "drain",
            ParamsType::HeroScript,
            params.clone(),
        ))?;
        if i % 256 == 0 {
            b.set_position(i);
        }
    }
    let enqueue_s = start.elapsed().as_secs_f64();
    b.finish_and_clear();

    let rss_before = rss_kb();
    let b = bar(a.jobs, "drain");
    let start = Instant::now();
    engine.start()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Memory over the drain: the resident set once the engine is warm (a tenth of the jobs
    // done: threads, connections and buffers exist by then) and the peak after that. "Flat"
    // compares the end and the peak with the warm figure, not with a process that had no
    // engine running yet.
    let mut rss_warm = None;
    let mut rss_peak = 0;
    let mut next_sample = Instant::now();
    loop {
        let done = engine.stats().done;
        b.set_position(done);
        if rss_warm.is_some() && Instant::now() >= next_sample {
            rss_peak = rss_peak.max(rss_kb());
            next_sample = Instant::now() + Duration::from_millis(100);
        }
        if rss_warm.is_none() && done >= a.jobs / 10 {
            let warm = rss_kb();
            rss_warm = Some(warm);
            rss_peak = warm;
        }
        if done >= a.jobs {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure {
                message: format!("drain did not finish in 600 s ({done} of {} done)", a.jobs),
                code: 1,
            });
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let drain_s = start.elapsed().as_secs_f64();
    b.finish_and_clear();
    let rss_after = rss_kb();
    let rss_warm = rss_warm.unwrap_or(rss_after);
    let rss_peak = rss_peak.max(rss_after);
    let redis_after = if a.embedded {
        0
    } else {
        redis_used_memory(&g.redis)
    };
    // Disk per finished job: every version (new, active, done) of every drained job, as
    // data bytes on disk over the jobs the engine finished.
    let finished = engine.stats().done.max(1) as f64;
    let space = ourdb_space(base.path())?;
    let per_job = |bytes: u64| (bytes as f64 / finished * 10.0).round() / 10.0;
    let mut compaction = serde_json::Value::Null;
    if a.compact {
        let (secs, caught_up) = compact_all(base.path(), a.keep_history)?;
        let after = ourdb_space(base.path())?;
        compaction = serde_json::json!({
            "keep_history": a.keep_history,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "ourdb_bytes_per_job_before": per_job(space.data_bytes),
            "ourdb_bytes_per_job_after": per_job(after.data_bytes),
            "reclaimed_bytes": space.data_bytes.saturating_sub(after.data_bytes),
            "ids_caught_up": caught_up,
        });
    }

    // Promotion: jobs delayed to one moment, all due together; from that moment to the last
    // one done (the dispatcher moves them into the queue inside its takes).
    // Once the TTL has passed the finished jobs' hashes are gone: memory back to flat. Only
    // waited for when the TTL is short enough for a bench.
    let redis_after_ttl = if !a.embedded && a.finished_ttl > 0 && a.finished_ttl <= 60 {
        std::thread::sleep(Duration::from_secs(a.finished_ttl + 1));
        serde_json::json!(redis_used_memory(&g.redis))
    } else {
        serde_json::Value::Null
    };
    let mut promoted_per_s = serde_json::Value::Null;
    if a.delayed > 0 {
        let done_before = engine.stats().done;
        let due = unix_now_ms() + 2000;
        let jobs: Vec<Job> = (0..a.delayed)
            .map(|_| {
                let mut j = Job::new(&circle, "delayed", ParamsType::HeroScript, params.clone());
                j.run_at_ms = due;
                j
            })
            .collect();
        for chunk in jobs.chunks(1000) {
            client.submit_many(chunk.to_vec())?;
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while engine.stats().done < done_before + a.delayed && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(500));
        }
        let took_ms = unix_now_ms().saturating_sub(due).max(1);
        promoted_per_s = serde_json::json!((a.delayed as f64 * 1000.0 / took_ms as f64).round());
    }

    let b = bar(a.roundtrips as u64, "roundtrip");
    let mut rtts = Vec::with_capacity(a.roundtrips);
    for _ in 0..a.roundtrips {
        let t = Instant::now();
        let r = client.submit(Job::new(
            &circle,
            "rt",
            ParamsType::HeroScript,
            params.clone(),
        ))?;
        client.wait(&r, Duration::from_secs(30))?;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        b.inc(1);
    }
    b.finish_and_clear();
    engine.stop();
    rtts.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        if rtts.is_empty() {
            0.0
        } else {
            rtts[((rtts.len() - 1) as f64 * p).round() as usize]
        }
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let out = serde_json::json!({
        "system": "herojobs",
        "version": env!("CARGO_PKG_VERSION"),
        "n": a.jobs,
        "concurrency": a.concurrency,
        "enqueue_per_s": round(a.jobs as f64 / enqueue_s),
        "drain_per_s": round(a.jobs as f64 / drain_s),
        "roundtrip_p50_ms": round(pct(0.50)),
        "roundtrip_p99_ms": round(pct(0.99)),
        "broker": if a.embedded { "embedded" } else { "redis" },
        "durability": a.durability,
        "rss_kb_before_drain": rss_before,
        "rss_kb_after_drain": rss_after,
        "rss_kb_warm": rss_warm,
        "rss_kb_peak_after_warm": rss_peak,
        "redis_used_memory_before": redis_before,
        "redis_used_memory_after_drain": redis_after,
        "redis_used_memory_after_ttl": redis_after_ttl,
        "finished_ttl_s": a.finished_ttl,
        "ourdb_bytes_per_job": per_job(space.data_bytes),
        "ourdb_live_bytes_per_job": per_job(space.live_bytes),
        "compaction": compaction,
        "delayed_promoted_and_run_per_s": promoted_per_s,
    });
    if g.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if !a.embedded {
        client.forget_circle(&circle)?;
    }
    Ok(ExitCode::SUCCESS)
}
