//! `cancel`, `retry`, `dead`, `purge`: the life of a job after its submit.

use crate::jobs_cmd::{JobArgs, TopicArgs};
use crate::{Failure, Global};
use clap::Args;
use herojobs::Client;
use std::process::ExitCode;

/// Options of `cancel`.
#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    job: JobArgs,
}

/// Options of `retry`.
#[derive(Args)]
pub struct RetryArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Job id or circle/topic/id (a failed job).
    #[arg(
        value_name = "ID|CIRCLE/TOPIC/ID",
        required_unless_present = "all_dead"
    )]
    job: Option<String>,
    /// Every job in the dead set of the circle/topic.
    #[arg(long, conflicts_with = "job")]
    all_dead: bool,
}

/// Options of `dead`.
#[derive(Args)]
pub struct DeadArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Most jobs shown.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Skip this many (newest first).
    #[arg(long, default_value_t = 0)]
    offset: usize,
}

fn client(g: &Global) -> Result<Client, Failure> {
    Ok(Client::connect(&g.redis, g.base())?)
}

/// `herojobs cancel`: exit 0 if cancelled, 1 if it had finished.
pub fn cancel(g: &Global, a: CancelArgs) -> Result<ExitCode, Failure> {
    let r = a.job.job_ref()?;
    if client(g)?.cancel(&r)? {
        println!("cancelled {r}");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure {
            message: format!("job {r} had already finished"),
            code: 1,
        })
    }
}

/// `herojobs retry`: one failed job, or every dead one.
pub fn retry(g: &Global, a: RetryArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    let refs: Vec<herojobs::JobRef> = match a.job {
        Some(job) => vec![JobArgs { t: a.t, job }.job_ref()?],
        None => {
            let q = a.t.queue()?;
            let mut all = Vec::new();
            loop {
                let page = c.dead(&q, all.len(), 1000)?;
                if page.is_empty() {
                    break;
                }
                all.extend(page.into_iter().map(|(id, _)| q.job(id)));
            }
            all
        }
    };
    let mut n = 0;
    for r in &refs {
        if c.retry(r)? {
            n += 1;
        } else if !a.all_dead {
            return Err(Failure {
                message: format!("job {r} has not failed"),
                code: 1,
            });
        }
    }
    if g.json {
        println!("{{\"retried\":{n}}}");
    } else {
        println!("{n} job(s) queued again");
    }
    Ok(ExitCode::SUCCESS)
}

/// `herojobs dead`: the dead set, newest first.
pub fn dead(g: &Global, a: DeadArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    let q = a.t.queue()?;
    let page = c.dead(&q, a.offset, a.limit)?;
    let mut rows = Vec::new();
    for (id, at) in page {
        let job = c.get(&q.job(id)).ok();
        rows.push((id, at, job));
    }
    if g.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, at, job)| {
                serde_json::json!({
                    "jobid": id,
                    "died_ms": at,
                    "attempts": job.as_ref().map(|j| j.attempts),
                    "error": job.as_ref().map(|j| j.error.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for (id, at, job) in rows {
            let err = job.map(|j| j.error).unwrap_or_default();
            println!("{id}\t{}\t{}", at / 1000, err.lines().next().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `herojobs purge`: empties the dead set (the jobs stay recorded as failed).
pub fn purge(g: &Global, a: TopicArgs) -> Result<ExitCode, Failure> {
    let n = client(g)?.purge_dead(&a.queue()?)?;
    println!("{n} dead job(s) purged");
    Ok(ExitCode::SUCCESS)
}

/// `herojobs pause` / `resume`: engines stop or start taking from a queue.
pub fn pause(g: &Global, a: TopicArgs, paused: bool) -> Result<ExitCode, Failure> {
    let (c, q) = (client(g)?, a.queue()?);
    if paused {
        c.pause(&q)?;
        println!("paused {q}");
    } else {
        c.resume(&q)?;
        println!("resumed {q}");
    }
    Ok(ExitCode::SUCCESS)
}
