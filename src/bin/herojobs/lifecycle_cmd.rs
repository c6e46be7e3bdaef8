//! `cancel`, `retry`, `dead`, `purge`: the life of a job after its submit.

use crate::jobs_cmd::TopicArgs;
use crate::{Failure, Global};
use clap::Args;
use herojobs::Client;
use std::process::ExitCode;

/// Options of `cancel`.
#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Job id.
    id: u32,
}

/// Options of `retry`.
#[derive(Args)]
pub struct RetryArgs {
    #[command(flatten)]
    t: TopicArgs,
    /// Job id (a failed job).
    #[arg(required_unless_present = "all_dead")]
    id: Option<u32>,
    /// Every job in the dead set of the circle/topic.
    #[arg(long)]
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
    if client(g)?.cancel(&a.t.circle, &a.t.topic, a.id)? {
        println!("cancelled {}/{}/{}", a.t.circle, a.t.topic, a.id);
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure {
            message: format!(
                "job {}/{}/{} had already finished",
                a.t.circle, a.t.topic, a.id
            ),
            code: 1,
        })
    }
}

/// `herojobs retry`: one failed job, or every dead one.
pub fn retry(g: &Global, a: RetryArgs) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    let ids: Vec<u32> = if a.all_dead {
        let mut all = Vec::new();
        loop {
            let page = c.dead(&a.t.circle, &a.t.topic, all.len(), 1000)?;
            if page.is_empty() {
                break;
            }
            all.extend(page.into_iter().map(|(id, _)| id));
        }
        all
    } else {
        a.id.into_iter().collect()
    };
    let mut n = 0;
    for id in &ids {
        if c.retry(&a.t.circle, &a.t.topic, *id)? {
            n += 1;
        } else if !a.all_dead {
            return Err(Failure {
                message: format!("job {}/{}/{id} has not failed", a.t.circle, a.t.topic),
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
    let page = c.dead(&a.t.circle, &a.t.topic, a.offset, a.limit)?;
    let mut rows = Vec::new();
    for (id, at) in page {
        let job = c.get(&a.t.circle, &a.t.topic, id).ok();
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
    let n = client(g)?.purge_dead(&a.circle, &a.topic)?;
    println!("{n} dead job(s) purged");
    Ok(ExitCode::SUCCESS)
}

/// `herojobs pause` / `resume`: engines stop or start taking from a queue.
pub fn pause(g: &Global, a: TopicArgs, paused: bool) -> Result<ExitCode, Failure> {
    let c = client(g)?;
    if paused {
        c.pause(&a.circle, &a.topic)?;
        println!("paused {}/{}", a.circle, a.topic);
    } else {
        c.resume(&a.circle, &a.topic)?;
        println!("resumed {}/{}", a.circle, a.topic);
    }
    Ok(ExitCode::SUCCESS)
}
