//! Using herojobs as a library: handlers of your own (a HeroScript actor and a params type),
//! a watchdog, jobs submitted and waited for by address, failures as errors.
//!
//! `cargo run --release --example library` runs on Redis at `$HEROJOBS_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) when one answers, else in embedded mode (no Redis at all).
//! `tests/examples.rs` runs it both ways.

use herojobs::processor::heroscript::{Actors, HeroScriptProcessor};
use herojobs::{Client, Job, JobError, JobRef, ParamsType, Registry, WatchDog};
use std::path::Path;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("HEROJOBS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis_up = Client::connect(&url, std::env::temp_dir())?.ping().is_ok();
    let base = tempfile::tempdir()?;
    for line in run(redis_up.then_some(url.as_str()), base.path())? {
        println!("{line}");
    }
    Ok(())
}

/// The whole tour on Redis at `redis_url` (or embedded with `None`), job databases under
/// `base`; returns what it would print.
pub fn run(
    redis_url: Option<&str>,
    base: &Path,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // 1. Processors: the built-ins, a HeroScript actor of our own, and a params type of our
    //    own. Handlers return `Result<String, JobError>`: `?` works on params, on
    //    cancellation and on any std error; closures need no type annotations.
    let mut actors = Actors::with_builtins();
    actors.register("greeter", "hello", |action, ctx| {
        let name = action.params.string("name")?; // a missing param fails the job, clearly
        ctx.sleep(Duration::from_millis(10))?; // returns early if the job is cancelled
        Ok(format!("hello, {name}!"))
    });
    let mut registry = Registry::with_builtins();
    registry.register_processor(ParamsType::HeroScript, HeroScriptProcessor::new(actors));
    registry.register(ParamsType::Other("wordcount".into()), |job, _ctx| {
        if job.params.trim().is_empty() {
            return Err(JobError::permanent("nothing to count")); // never retried
        }
        Ok(job.params.split_whitespace().count().to_string())
    });

    // 2. A watchdog; its client shares its broker and job store.
    let builder = WatchDog::builder().base(base).workers(4).registry(registry);
    let mut engine = match redis_url {
        Some(url) => builder.redis_url(url).build()?,
        None => builder.embedded().build()?,
    };
    engine.start()?; // an unreachable Redis is an error here, not a log line
    let client = engine.client();

    // 3. Submit; a job is addressed as circle/topic/id.
    let hello = client.submit(Job::new(
        "example",
        "greetings",
        ParamsType::HeroScript,
        "!!greeter.hello name:'Ada Lovelace'",
    ))?;
    let count = client.submit(Job::new(
        "example",
        "text",
        ParamsType::Other("wordcount".into()),
        "the quick brown fox",
    ))?;
    let broken = client.submit(Job::new(
        "example",
        "greetings",
        ParamsType::HeroScript,
        "!!greeter.hello",
    ))?;

    // 4. Wait for all of them; `outcome()` turns a failed job into an `Err`.
    let mut out = Vec::new();
    for job in client.wait_many(&[hello.clone(), count, broken], Duration::from_secs(30))? {
        match job.outcome() {
            Ok(result) => out.push(format!("{}: {result}", job.job_ref()?)),
            Err(failed) => out.push(format!("{failed}")),
        }
    }
    // The address prints as circle/topic/id and reads back from that text.
    let again: JobRef = hello.to_string().parse()?;
    out.push(format!("{again} again: {}", client.get(&again)?.outcome()?));

    // 5. Stop gracefully (also happens on drop).
    engine.stop();
    Ok(out)
}
