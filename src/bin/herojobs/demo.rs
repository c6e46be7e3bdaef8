//! `herojobs demo`: the whole system in one command. Starts an engine (on Redis when one
//! answers at the configured URL, embedded otherwise), submits jobs of every params type —
//! including one that times out and one that fails on purpose — and prints a table.

use crate::{Failure, Global};
use clap::Args;
use herojobs::{
    Client, EngineConfig, Job, JobStatus, ParamsType, QueuePattern, QueueSelection, Registry,
    WatchDog,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Use the in-process broker even if Redis answers.
    #[arg(long)]
    embedded: bool,
}

struct Planned {
    label: &'static str,
    job: Job,
    /// The status this job should end in.
    expect: JobStatus,
}

fn plan(circle: &str) -> Vec<Planned> {
    let mut v = vec![
        Planned {
            label: "heroscript",
            job: Job::new(circle, "scripts", ParamsType::HeroScript, "!!fake.return_success message:'Hello from HeroScript'\n!!fake.return_json message:demo code:201"),
            expect: JobStatus::Done,
        },
        Planned {
            label: "rhai",
            job: Job::new(circle, "scripts", ParamsType::RhaiScript, "let s = 0; for i in 1..=10 { s += i * i; } print(`sum of squares: ${s}`); s"),
            expect: JobStatus::Done,
        },
        Planned {
            label: "openrpc",
            job: Job::new(circle, "rpc", ParamsType::OpenRpc, r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":20,"b":22},"id":1}"#),
            expect: JobStatus::Done,
        },
        Planned {
            label: "timeout",
            job: Job::new(circle, "scripts", ParamsType::HeroScript, "!!fake.sleep seconds:30").with_timeout(1),
            expect: JobStatus::Error,
        },
        Planned {
            label: "failure",
            job: Job::new(circle, "scripts", ParamsType::HeroScript, "!!fake.return_error message:'this job fails on purpose'"),
            expect: JobStatus::Error,
        },
    ];
    if std::env::var("HEROJOBS_AI_URL").is_ok_and(|u| !u.is_empty()) {
        v.push(Planned {
            label: "ai",
            job: Job::new(circle, "ai", ParamsType::Ai, r#"{"endpoint":"chat.completions","request":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}}"#).with_timeout(30),
            expect: JobStatus::Done,
        });
    }
    v
}

fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " | ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

pub fn run(g: &Global, a: DemoArgs) -> Result<ExitCode, Failure> {
    let base = match &g.base {
        Some(b) => b.clone(),
        None => std::env::temp_dir().join(format!("herojobs-demo-{}", std::process::id())),
    };
    let circle = format!("demo{}", std::process::id());
    // The demo's engine serves only the demo's own circle: on a Redis shared with other
    // users it never takes their jobs.
    let mut config = EngineConfig::default();
    config.workers = 4;
    config.queues = QueueSelection::strict([QueuePattern::circle(&circle)?]);
    let redis_ok = !a.embedded && Client::connect(&g.redis, &base)?.ping().is_ok();
    let (client, mut engine, mode) = if redis_ok {
        let engine = WatchDog::builder()
            .redis_url(&g.redis)
            .base(&base)
            .config(config)
            .registry(Registry::with_builtins())
            .build()?;
        let client = engine.client();
        (
            client,
            engine,
            format!("Redis at {}", herojobs::redact::redact_url(&g.redis)),
        )
    } else {
        let (client, engine) = herojobs::embedded(&base, Registry::with_builtins(), config)?;
        let why = if a.embedded {
            "as asked".to_string()
        } else {
            format!(
                "no Redis answered at {}",
                herojobs::redact::redact_url(&g.redis)
            )
        };
        (
            client,
            engine,
            format!("the embedded in-process broker ({why})"),
        )
    };
    eprintln!(
        "herojobs demo: using {mode}; job data under {}",
        base.display()
    );
    engine.start()?;
    let planned = plan(&circle);
    let mut submitted = Vec::new();
    for p in &planned {
        let start = Instant::now();
        let r = client.submit(p.job.clone())?;
        submitted.push((p, r, start));
    }
    let bar = indicatif::ProgressBar::new(submitted.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} jobs finished {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut unexpected = 0;
    for (p, r, start) in &submitted {
        let job = client.wait(r, Duration::from_secs(120))?;
        let took = start.elapsed();
        bar.inc(1);
        if job.status != p.expect {
            unexpected += 1;
        }
        rows.push((p.label, job, took));
    }
    bar.finish_and_clear();
    engine.stop();
    if redis_ok {
        // Leave the user's Redis as we found it; the jobs stay in OurDB under `base`.
        client.forget_circle(&circle)?;
    }
    println!(
        "{:<4} {:<11} {:<11} {:<7} {:>9}  result / error",
        "id", "job", "type", "status", "duration"
    );
    for (label, job, took) in &rows {
        let text = if job.status == JobStatus::Done {
            &job.result
        } else {
            &job.error
        };
        println!(
            "{:<4} {:<11} {:<11} {:<7} {:>7}ms  {}",
            job.id,
            label,
            job.params_type.as_str(),
            job.status.as_str(),
            took.as_millis(),
            cut(text, 70)
        );
    }
    if unexpected > 0 {
        return Err(Failure {
            message: format!("{unexpected} job(s) did not end as expected"),
            code: 1,
        });
    }
    println!(
        "\nall {} jobs ended as expected (the timeout and the failure are meant to fail).",
        rows.len()
    );
    println!(
        "look at one: herojobs ourdb dump {}",
        client
            .db_dir(&herojobs::QueueName::new(&circle, "scripts")?)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}
