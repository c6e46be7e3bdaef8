//! `herojobs submit | get | wait | list | queues | stats`: the client side, for people
//! (human times and durations, a spinner and progress bar on a terminal) and scripts
//! (`--json` keeps the raw values).

use crate::human::{ago, duration, snippet, when};
use crate::outln;
use crate::{Failure, Global};
use clap::Args;
use herojobs::{Client, Job, JobRef, JobStatus, PageQuery, ParamsType, QueueName};
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

impl TopicArgs {
    /// The queue (names fixed).
    pub fn queue(&self) -> Result<QueueName, Failure> {
        Ok(QueueName::new(&self.circle, &self.topic)?)
    }
}

/// A job: `ID` with `--circle`/`--topic`, or `CIRCLE/TOPIC/ID` (how errors and logs name
/// a job, so a name copied from a message works as it is).
#[derive(Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub t: TopicArgs,
    /// Job id, or circle/topic/id.
    #[arg(value_name = "ID|CIRCLE/TOPIC/ID")]
    pub job: String,
}

impl JobArgs {
    /// The job's address.
    pub fn job_ref(&self) -> Result<JobRef, Failure> {
        if self.job.contains('/') {
            return self.job.parse::<JobRef>().map_err(|e| Failure {
                message: e.to_string(),
                code: 2,
            });
        }
        let id = self
            .job
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| Failure {
                message: format!(
                    "{:?}: expected a job id (a number from 1) or circle/topic/id",
                    self.job
                ),
                code: 2,
            })?;
        Ok(self.t.queue()?.job(id))
    }
}

/// Options of `get`.
#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Versions of the job's history (from OurDB) to show.
    #[arg(long, default_value_t = 10)]
    history: usize,
}

/// Options of `list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Only jobs with this status: new, active, done or error.
    #[arg(long)]
    status: Option<String>,
    /// At most this many jobs, newest first (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// Options of `wait`.
#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Options of `submit`.
#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Params type: heroscript, rhaiscript, openrpc or ai (another name with --custom).
    #[arg(long = "type", default_value = "heroscript")]
    params_type: String,
    /// Allow a params type that is not built in: one a program's own processor handles
    /// (registered with `Registry::register` in the engine that runs it).
    #[arg(long)]
    custom: bool,
    /// Submit many jobs from a JSON-lines file (`-`: stdin), one job object per line:
    /// `{"params": "...", "params_type": "rhaiscript", "circleid": "c", "topic": "t",
    /// "timeout": 10}`; missing fields take the command line's values.
    #[arg(long, conflicts_with_all = ["file", "params", "wait"])]
    jsonl: Option<PathBuf>,
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
) -> Result<Option<herojobs::RetryPolicy>, Failure> {
    use herojobs::{Backoff, RetryPolicy};
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
    /// Refresh every second until Ctrl-C, with done and failed jobs per second per queue.
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
        outln!("{}", job.to_json());
        return;
    }
    outln!("job        {}/{}/{}", job.circle, job.topic, job.id);
    outln!("status     {}", job.status);
    outln!("type       {}", job.params_type);
    outln!("attempts   {}", job.attempts);
    if job.timeout == 0 {
        outln!("timeout    engine default");
    } else {
        outln!("timeout    {}", duration(job.timeout as i64));
    }
    outln!("submitted  {}", when(job.time_scheduled));
    outln!("started    {}", when(job.time_start));
    outln!("ended      {}", when(job.time_end));
    if job.time_start > 0 {
        outln!(
            "waited     {}",
            duration(job.time_start - job.time_scheduled)
        );
    }
    if job.time_end > 0 && job.time_start > 0 {
        outln!("ran        {}", duration(job.time_end - job.time_start));
    }
    outln!("params     {}", indent(&job.params));
    if !job.result.is_empty() {
        outln!("result     {}", indent(&job.result));
    }
    if !job.error.is_empty() {
        outln!("error      {}", indent(&job.error));
    }
    for l in &job.logs {
        outln!("log        {l}");
    }
}

/// Continuation lines of a multi-line value, aligned under its first line.
fn indent(s: &str) -> String {
    s.trim_end().replace('\n', "\n           ")
}

/// Exit status for a finished job: 0 done, 1 otherwise (the error on stderr).
fn outcome(g: &Global, job: &Job) -> ExitCode {
    if g.json {
        outln!("{}", job.to_json());
    } else if job.status == JobStatus::Done {
        outln!("{}", job.result);
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

fn parse_type(name: &str, custom: bool) -> Result<ParamsType, Failure> {
    let params_type: ParamsType = name.parse().unwrap_or_default();
    match &params_type {
        ParamsType::Other(t) if !custom => Err(Failure {
            message: format!(
                "--type {t:?}: expected heroscript, rhaiscript, openrpc or ai (add --custom for a type your own processor handles)"
            ),
            code: 2,
        }),
        ParamsType::Other(t) if t.is_empty() => Err(Failure {
            message: "--type: empty".into(),
            code: 2,
        }),
        _ => Ok(params_type),
    }
}

pub fn submit(g: &Global, a: SubmitArgs) -> Result<ExitCode, Failure> {
    let params_type = parse_type(&a.params_type, a.custom)?;
    if let Some(path) = &a.jsonl {
        return submit_jsonl(g, &a, params_type, path);
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
                message: "no params: give them as an argument, --file F, - for stdin, or --jsonl F"
                    .into(),
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
            job.retry = Some(herojobs::RetryPolicy::new(
                0,
                herojobs::Backoff::Fixed,
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
    let r = c.submit(job)?;
    if !a.wait {
        if g.json {
            outln!(
                "{}",
                serde_json::json!({"jobid": r.id(), "job": r.to_string()})
            );
        } else {
            outln!("{}", r.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wait_for = Duration::from_secs(if a.timeout == 0 { 60 } else { a.timeout } + 30);
    wait_for_job(g, &c, &r, wait_for)
}

/// One line of a `--jsonl` file: every field optional but the params.
#[derive(serde::Deserialize)]
struct JsonlJob {
    params: String,
    #[serde(default)]
    params_type: Option<String>,
    #[serde(default, alias = "circle")]
    circleid: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// Jobs submitted per call of a bulk submit (one OurDB batch and one broker round trip).
const BULK_BATCH: usize = 1000;

/// `submit --jsonl FILE`: reads every line first (so a bad line fails the whole file before
/// anything is submitted), then submits in batches with a progress bar on a terminal.
fn submit_jsonl(
    g: &Global,
    a: &SubmitArgs,
    default_type: ParamsType,
    path: &std::path::Path,
) -> Result<ExitCode, Failure> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| format!("--jsonl {}: {e}", path.display()))?,
        ))
    };
    let mut jobs = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("--jsonl {} line {}: {e}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let j: JsonlJob = serde_json::from_str(&line).map_err(|e| Failure {
            message: format!("--jsonl {} line {}: {e}", path.display(), n + 1),
            code: 2,
        })?;
        let params_type = match &j.params_type {
            Some(t) => parse_type(t, a.custom).map_err(|f| Failure {
                message: format!("--jsonl {} line {}: {}", path.display(), n + 1, f.message),
                code: 2,
            })?,
            None => default_type.clone(),
        };
        jobs.push(
            Job::new(
                j.circleid.as_deref().unwrap_or(&a.t.circle),
                j.topic.as_deref().unwrap_or(&a.t.topic),
                params_type,
                j.params,
            )
            .with_timeout(j.timeout.unwrap_or(a.timeout)),
        );
    }
    let c = client(g)?;
    let bar = if crate::human::stderr_is_terminal() {
        indicatif::ProgressBar::new(jobs.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} submitting [{bar:40}] {pos}/{len} jobs  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let total = jobs.len();
    let mut rest = jobs;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(BULK_BATCH));
        let n = rest.len() as u64;
        let refs = c.submit_many(std::mem::replace(&mut rest, tail))?;
        bar.inc(n);
        if g.json {
            for r in refs {
                outln!(
                    "{}",
                    serde_json::json!({"jobid": r.id(), "job": r.to_string()})
                );
            }
        }
    }
    bar.finish_and_clear();
    if !g.json {
        let secs = start.elapsed().as_secs_f64();
        outln!(
            "submitted {total} jobs in {secs:.2} s ({:.0} jobs/s)",
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for a job, with a spinner on a terminal saying how long and what the job is doing.
fn wait_for_job(
    g: &Global,
    c: &Client,
    r: &JobRef,
    timeout: Duration,
) -> Result<ExitCode, Failure> {
    let spinner = if crate::human::stderr_is_terminal() && !g.json {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(100));
        Some(s)
    } else {
        None
    };
    let start = Instant::now();
    let result = loop {
        // With a spinner, wait in short slices to show the job's status as it changes;
        // without one, one blocking wait (no polling).
        let left = timeout.saturating_sub(start.elapsed());
        let slice = if spinner.is_some() {
            left.min(Duration::from_millis(500))
        } else {
            left
        };
        match c.wait(r, slice) {
            Err(herojobs::Error::WaitTimeout { .. }) if !left.is_zero() && slice < left => {
                if let Some(s) = &spinner {
                    let status = c
                        .get(r)
                        .map(|j| j.status.to_string())
                        .unwrap_or_else(|e| format!("? ({e})"));
                    s.set_message(format!(
                        "job {r}: {status}, waiting {}",
                        duration(start.elapsed().as_secs() as i64)
                    ));
                }
            }
            other => break other,
        }
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    match result {
        Ok(job) => Ok(outcome(g, &job)),
        Err(herojobs::Error::WaitTimeout { .. }) => Err(format!(
            "job {r} did not finish within {}{}",
            duration(timeout.as_secs() as i64),
            no_engine_hint(c)
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

pub fn get(g: &Global, a: GetArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    let r = a.job.job_ref()?;
    // Redis first; when it cannot be reached, OurDB (the record of truth) answers.
    let (job, note) = match c.get(&r) {
        Ok(j) => (j, None),
        Err(herojobs::Error::Broker(e)) => match c.stored(&r)? {
            Some(j) => (j, Some(format!("Redis unreachable ({e}); read from OurDB"))),
            None => return Err(herojobs::Error::Broker(e).into()),
        },
        Err(e) => return Err(e.into()),
    };
    if let Some(n) = &note {
        eprintln!("herojobs: {n}");
    }
    print_job(g, &job);
    if a.history > 0 && !g.json {
        let versions = c.history(&r, a.history)?;
        if !versions.is_empty() {
            outln!("history    (OurDB, newest first)");
        }
        for (i, v) in versions.iter().enumerate() {
            match v {
                Ok(j) => outln!(
                    "  #{i:<3} {:<6} attempt {}  {}{}",
                    j.status.as_str(),
                    j.attempts,
                    if j.time_end > 0 {
                        format!("ended {}", ago(j.time_end))
                    } else if j.time_start > 0 {
                        format!("started {}", ago(j.time_start))
                    } else {
                        format!("submitted {}", ago(j.time_scheduled))
                    },
                    if j.error.is_empty() {
                        String::new()
                    } else {
                        format!("  error: {}", snippet(&j.error, 60))
                    }
                ),
                Err(e) => outln!("  #{i:<3} unreadable: {e}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn wait(g: &Global, a: WaitArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    wait_for_job(g, &c, &a.job.job_ref()?, Duration::from_secs(a.timeout))
}

pub fn list(g: &Global, a: ListArgs) -> Result<ExitCode, Failure> {
    let status = match a.status.as_deref() {
        None | Some("all") => None,
        Some("new") => Some(JobStatus::New),
        Some("active") => Some(JobStatus::Active),
        Some("done") => Some(JobStatus::Done),
        Some("error") => Some(JobStatus::Error),
        Some(s) => {
            return Err(Failure {
                message: format!("--status {s:?}: expected new, active, done or error"),
                code: 2,
            })
        }
    };
    let c = client(g)?;
    // The command line reads as far as it must: a person asked for these jobs.
    let mut query = PageQuery::newest(if a.limit == 0 { usize::MAX } else { a.limit })
        .status(status)
        .budget(usize::MAX);
    let q = a.t.queue()?;
    let human = !g.json;
    if human && crate::human::stdout_is_terminal() {
        outln!(
            "{:>8}  {:<6}  {:<10}  {:>14}  {:>10}  result / error",
            "id",
            "status",
            "type",
            "submitted",
            "ran"
        );
    }
    // Pages of 1000, so output starts at once and memory stays small for a long history.
    let mut left = query.limit;
    loop {
        query.limit = left.min(1000);
        let page = c.list_page(&q, &query)?;
        for job in &page.jobs {
            if g.json {
                outln!(
                    "{}",
                    serde_json::json!({"jobid": job.id, "status": job.status.as_str(),
                        "params_type": job.params_type.as_str(), "attempts": job.attempts,
                        "time_scheduled": job.time_scheduled, "time_start": job.time_start,
                        "time_end": job.time_end, "result": job.result, "error": job.error})
                );
            } else {
                let ran = if job.time_end > 0 && job.time_start > 0 {
                    duration(job.time_end - job.time_start)
                } else {
                    "—".into()
                };
                let what = if job.error.is_empty() {
                    &job.result
                } else {
                    &job.error
                };
                outln!(
                    "{:>8}  {:<6}  {:<10}  {:>14}  {:>10}  {}",
                    job.id,
                    job.status.as_str(),
                    job.params_type.as_str(),
                    ago(job.time_scheduled),
                    ran,
                    snippet(what, 60)
                );
            }
        }
        for (id, why) in &page.unreadable {
            if g.json {
                outln!("{}", serde_json::json!({"jobid": id, "error": why}));
            } else {
                outln!("{id:>8}  unreadable: {why}");
            }
        }
        left = left.saturating_sub(page.jobs.len());
        match page.next {
            Some(next) if left > 0 => query.before = Some(next),
            _ => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn queues(g: &Global) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    for q in c.queues()? {
        let n = c.queue_len(&q)?;
        if g.json {
            outln!(
                "{}",
                serde_json::json!({"circle": q.circle(), "topic": q.topic(), "waiting": n})
            );
        } else {
            outln!("{q}\t{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(g: &Global, a: StatsArgs) -> Result<ExitCode, Failure> {
    let c = Client::connect(&g.redis, g.base())?;
    // Per engine and queue, the last (done, failed) seen and when: rates are their change.
    type Seen = std::collections::BTreeMap<(String, String), (u64, u64)>;
    let mut last: Option<(Instant, Seen)> = None;
    loop {
        let engines = c.engines()?;
        let mut queues = Vec::new();
        for q in c.queues()? {
            let n = c.queue_len(&q)?;
            let oldest = c
                .peek(&q)?
                .map(|j| crate::human::unix_now() - j.time_scheduled);
            queues.push((q, n, oldest));
        }
        let now = Instant::now();
        let mut seen: Seen = Seen::new();
        let mut per_queue: std::collections::BTreeMap<String, herojobs::QueueCounts> =
            Default::default();
        for e in &engines {
            for (q, counts) in e.queues() {
                seen.insert(
                    (e.name.clone(), q.to_string()),
                    (counts.done, counts.failed),
                );
                per_queue.entry(q.to_string()).or_default().merge(&counts);
            }
        }
        let mut rates: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        if let Some((then, prev)) = &last {
            let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
            for ((engine, q), (d, f)) in &seen {
                let (pd, pf) = prev
                    .get(&(engine.clone(), q.clone()))
                    .copied()
                    .unwrap_or((*d, *f));
                let r = rates.entry(q.clone()).or_default();
                r.0 += d.saturating_sub(pd) as f64 / secs;
                r.1 += f.saturating_sub(pf) as f64 / secs;
            }
        }
        last = Some((now, seen));
        if g.json {
            let e: serde_json::Map<String, serde_json::Value> = engines
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        serde_json::Value::Object(
                            e.fields
                                .iter()
                                .map(|(k, v)| (k.clone(), (*v).into()))
                                .collect(),
                        ),
                    )
                })
                .collect();
            let q: Vec<_> = queues
                .iter()
                .map(|(q, n, oldest)| {
                    let key = q.to_string();
                    let c = per_queue.get(&key).cloned().unwrap_or_default();
                    let r = rates.get(&key).copied();
                    serde_json::json!({"circle": q.circle(), "topic": q.topic(), "waiting": n,
                        "oldest_wait_s": oldest, "done": c.done, "failed": c.failed,
                        "done_per_s": r.map(|r| r.0), "failed_per_s": r.map(|r| r.1)})
                })
                .collect();
            outln!("{}", serde_json::json!({"engines": e, "queues": q}));
        } else {
            if a.watch {
                print!("\x1b[2J\x1b[H");
            }
            outln!("engines ({})", engines.len());
            for e in &engines {
                let (name, f) = (&e.name, e.counters());
                let c = |k: &str| f.get(k).copied().unwrap_or(0);
                outln!(
                    "  {name}: {} workers, {} running, {} done, {} failed ({} timed out), {} recovered",
                    c("workers"),
                    c("running"),
                    c("done"),
                    c("error"),
                    c("timed_out"),
                    c("recovered")
                );
            }
            outln!("queues ({})", queues.len());
            outln!(
                "  {:<32} {:>9} {:>10} {:>10} {:>9} {:>9}  oldest waiting",
                "queue",
                "waiting",
                "done",
                "failed",
                "done/s",
                "failed/s"
            );
            for (q, n, oldest) in &queues {
                let key = q.to_string();
                let c = per_queue.get(&key).cloned().unwrap_or_default();
                let (dr, fr) = match rates.get(&key) {
                    Some(r) => (format!("{:.1}", r.0), format!("{:.1}", r.1)),
                    None => ("—".into(), "—".into()),
                };
                outln!(
                    "  {:<32} {:>9} {:>10} {:>10} {:>9} {:>9}  {}",
                    key,
                    n,
                    c.done,
                    c.failed,
                    dr,
                    fr,
                    oldest.map_or("—".into(), duration)
                );
            }
        }
        if !a.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A hint for a wait that timed out: is any watchdog running at all?
fn no_engine_hint(c: &Client) -> String {
    match c.engines() {
        Ok(engines) if engines.is_empty() => format!(
            " (no watchdog is publishing counters at {}: start one with `herojobs run`)",
            c.redis_url().unwrap_or("the embedded broker")
        ),
        _ => String::new(),
    }
}
