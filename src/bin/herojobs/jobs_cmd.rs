//! `herojobs submit | get | wait | list | queues | stats`: the client side, for people and
//! scripts (`--json`).

use crate::{Failure, Global};
use clap::Args;
use herojobs::broker::redis::{RedisBroker, RedisConfig};
use herojobs::broker::Broker;
use herojobs::{Client, Job, JobStatus, ParamsType};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Which circle and topic.
#[derive(Args)]
pub struct TopicArgs {
    /// Circle.
    #[arg(long, default_value = "default")]
    pub circle: String,
    /// Topic.
    #[arg(long, default_value = "default")]
    pub topic: String,
}

/// A job by id.
#[derive(Args)]
pub struct JobRef {
    #[command(flatten)]
    t: TopicArgs,
    /// Job id.
    id: u32,
}

/// Options of `wait`.
#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    job: JobRef,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Options of `submit`.
#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Params type: heroscript, rhaiscript, openrpc or ai.
    #[arg(long = "type", default_value = "heroscript")]
    params_type: String,
    /// Job timeout in seconds (0: the watchdog's default).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Wait for the job and print its result; exit status 0 only if it is done.
    #[arg(long)]
    wait: bool,
    /// Read the params from a file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Retries after the first attempt if the job fails (0: an error is final, unless the
    /// watchdog has a default policy).
    #[arg(long)]
    retries: Option<u32>,
    /// First wait before a retry, seconds (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    backoff: f64,
    /// How the wait between retries grows: fixed or exponential.
    #[arg(long, default_value = "exponential")]
    backoff_kind: String,
    /// Run the job no earlier than this many seconds from now (fractions allowed).
    #[arg(long, conflicts_with = "at")]
    delay: Option<f64>,
    /// Run the job no earlier than this unix time (seconds).
    #[arg(long)]
    at: Option<i64>,
    /// The params (`-` reads stdin).
    params: Option<String>,
}

/// A retry policy from the command line's `--retries N --backoff S --backoff-kind K`
/// (`None` for 0 retries).
pub fn retry_policy(
    retries: u32,
    backoff: f64,
    kind: &str,
) -> Result<Option<herojobs::job::RetryPolicy>, Failure> {
    use herojobs::job::{Backoff, RetryPolicy};
    if retries == 0 {
        return Ok(None);
    }
    let kind = match kind {
        "fixed" => Backoff::Fixed,
        "exponential" => Backoff::Exponential,
        other => {
            return Err(Failure {
                message: format!("--backoff-kind {other:?}: expected fixed or exponential"),
                code: 2,
            })
        }
    };
    if !backoff.is_finite() || backoff < 0.0 {
        return Err(Failure {
            message: format!("--backoff {backoff}: expected seconds >= 0"),
            code: 2,
        });
    }
    let mut p = RetryPolicy::new(retries, kind, std::time::Duration::from_secs_f64(backoff));
    p.jitter = true;
    Ok(Some(p))
}

/// Options of `stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Refresh every second until Ctrl-C.
    #[arg(long)]
    watch: bool,
}

fn client(g: &Global) -> Result<Client, Failure> {
    let mut c = Client::connect(&g.redis, g.base())?;
    for (circle, secret) in g.signing_keys()? {
        c = c.with_signing(&circle, secret)?;
    }
    Ok(c)
}

fn print_job(g: &Global, job: &Job) {
    if g.json {
        println!("{}", herojobs::codec::to_json(job));
        return;
    }
    println!("job        {}/{}/{}", job.circle, job.topic, job.id);
    println!("status     {}", job.status);
    println!("type       {}", job.params_type);
    println!("attempts   {}", job.attempts);
    println!("timeout    {} s", job.timeout);
    println!(
        "scheduled  {}  start {}  end {}",
        job.time_scheduled, job.time_start, job.time_end
    );
    if !job.result.is_empty() {
        println!("result     {}", job.result);
    }
    if !job.error.is_empty() {
        println!("error      {}", job.error);
    }
    for l in &job.logs {
        println!("log        {l}");
    }
}

/// Exit status for a finished job: 0 done, 1 otherwise (the error on stderr).
fn outcome(g: &Global, job: &Job) -> ExitCode {
    if g.json {
        println!("{}", herojobs::codec::to_json(job));
    } else if job.status == JobStatus::Done {
        println!("{}", job.result);
    }
    if job.status == JobStatus::Done {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "herojobs: job {}/{}/{} {}: {}",
            job.circle, job.topic, job.id, job.status, job.error
        );
        ExitCode::from(1)
    }
}

pub fn submit(g: &Global, a: SubmitArgs) -> Result<ExitCode, Failure> {
    let params_type: ParamsType = a.params_type.parse().unwrap_or_default();
    if let ParamsType::Other(t) = &params_type {
        return Err(Failure {
            message: format!("--type {t:?}: expected heroscript, rhaiscript, openrpc or ai"),
            code: 2,
        });
    }
    let params = match (&a.file, a.params.as_deref()) {
        (Some(f), None) => {
            std::fs::read_to_string(f).map_err(|e| format!("--file {}: {e}", f.display()))?
        }
        (None, Some("-")) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        (None, Some(p)) => p.to_string(),
        (Some(_), Some(_)) => {
            return Err(Failure {
                message: "give the params or --file, not both".into(),
                code: 2,
            })
        }
        (None, None) => {
            return Err(Failure {
                message: "no params: give them as an argument, --file F, or - for stdin".into(),
                code: 2,
            })
        }
    };
    let c = client(g)?;
    let mut job = Job::new(&a.t.circle, &a.t.topic, params_type, params).with_timeout(a.timeout);
    if let Some(n) = a.retries {
        job.retry = retry_policy(n, a.backoff, &a.backoff_kind)?;
        if job.retry.is_none() {
            // --retries 0: final whatever the watchdog's default.
            job.retry = Some(herojobs::job::RetryPolicy::new(
                0,
                herojobs::job::Backoff::Fixed,
                std::time::Duration::ZERO,
            ));
        }
    }
    match (a.delay, a.at) {
        (Some(d), _) if d.is_finite() && d >= 0.0 => {
            job = job.with_delay(std::time::Duration::from_secs_f64(d))
        }
        (Some(d), _) => {
            return Err(Failure {
                message: format!("--delay {d}: expected seconds >= 0"),
                code: 2,
            })
        }
        (None, Some(at)) => job = job.with_run_at(at),
        (None, None) => {}
    }
    let id = c.submit(job)?;
    if !a.wait {
        if g.json {
            println!("{{\"jobid\":{id}}}");
        } else {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wait_for = Duration::from_secs(if a.timeout == 0 { 60 } else { a.timeout } + 30);
    match c.wait(&a.t.circle, &a.t.topic, id, wait_for) {
        Ok(job) => Ok(outcome(g, &job)),
        Err(e @ herojobs::Error::WaitTimeout { .. }) => {
            Err(format!("{e}{}", no_engine_hint(g)).into())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn get(g: &Global, a: JobRef) -> Result<ExitCode, Failure> {
    let job = client(g)?.get(&a.t.circle, &a.t.topic, a.id)?;
    print_job(g, &job);
    Ok(ExitCode::SUCCESS)
}

pub fn wait(g: &Global, a: WaitArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    match c.wait(
        &a.job.t.circle,
        &a.job.t.topic,
        a.job.id,
        Duration::from_secs(a.timeout),
    ) {
        Ok(job) => Ok(outcome(g, &job)),
        Err(e @ herojobs::Error::WaitTimeout { .. }) => {
            Err(format!("{e}{}", no_engine_hint(g)).into())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn list(g: &Global, a: TopicArgs) -> Result<ExitCode, Failure> {
    for (id, status) in client(g)?.list(&a.circle, &a.topic)? {
        match (g.json, status) {
            (true, Ok(s)) => println!("{}", serde_json::json!({"jobid": id, "status": s.as_str()})),
            (true, Err(e)) => println!("{}", serde_json::json!({"jobid": id, "error": e})),
            (false, Ok(s)) => println!("{id}\t{s}"),
            (false, Err(e)) => println!("{id}\tunreadable: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn queues(g: &Global) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    for q in c.queues()? {
        let n = c.broker().queue_len(&q)?;
        if g.json {
            println!(
                "{}",
                serde_json::json!({"circle": q.circle, "topic": q.topic, "waiting": n})
            );
        } else {
            println!("{q}\t{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(g: &Global, a: StatsArgs) -> Result<ExitCode, Failure> {
    let broker = RedisBroker::new(RedisConfig::new(&g.redis))?;
    loop {
        let engines = broker.read_stats()?;
        let mut queues = Vec::new();
        for q in broker.queues()? {
            let n = broker.queue_len(&q)?;
            queues.push((q, n));
        }
        if g.json {
            let e: serde_json::Map<String, serde_json::Value> = engines
                .iter()
                .map(|(name, f)| {
                    (
                        name.clone(),
                        serde_json::Value::Object(
                            f.iter().map(|(k, v)| (k.clone(), (*v).into())).collect(),
                        ),
                    )
                })
                .collect();
            let q: Vec<_> = queues.iter().map(|(q, n)| serde_json::json!({"circle": q.circle, "topic": q.topic, "waiting": n})).collect();
            println!("{}", serde_json::json!({"engines": e, "queues": q}));
        } else {
            if a.watch {
                print!("\x1b[2J\x1b[H");
            }
            println!("engines ({})", engines.len());
            for (name, fields) in &engines {
                let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("  {name}: {}", f.join(" "));
            }
            println!("queues ({})", queues.len());
            for (q, n) in &queues {
                println!("  {q}: {n} waiting");
            }
        }
        if !a.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Removes every Redis key of a circle (its job hashes, queues and registry entries): the
/// demo and the bench clean up after themselves. Not a hot path, so `KEYS` is fine here.
pub fn remove_circle_keys(url: &str, circle: &str) {
    let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    // Drained queue lists no longer exist as keys, so take the registry's own members.
    let prefix = format!("heroqueue:{circle}:");
    let registered: Vec<String> = redis::cmd("SMEMBERS")
        .arg("heroqueues")
        .query(&mut con)
        .unwrap_or_default();
    for q in registered.iter().filter(|q| q.starts_with(&prefix)) {
        let _: Result<i64, _> = redis::cmd("SREM").arg("heroqueues").arg(q).query(&mut con);
    }
    for pattern in [
        format!("herojobs:{circle}:*"),
        format!("heroqueue:{circle}:*"),
        format!("herojobs-ids:{circle}:*"),
    ] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut con)
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut con);
        }
    }
}

/// A hint for a wait that timed out: is any watchdog running at all?
fn no_engine_hint(g: &Global) -> String {
    match RedisBroker::new(RedisConfig::new(&g.redis)).and_then(|b| b.read_stats()) {
        Ok(engines) if engines.is_empty() => format!(
            " (no watchdog is publishing counters at {}: start one with `herojobs run`)",
            herojobs::redact::redact_url(&g.redis)
        ),
        _ => String::new(),
    }
}
