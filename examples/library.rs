//! Using herojobs as a library: register your own handlers, run a watchdog, submit jobs and
//! wait for them. Runs on Redis at $HEROJOBS_REDIS_URL (default 127.0.0.1:6379) when one
//! answers, else in embedded mode.
//!
//! `cargo run --release --example library`

use herojobs::broker::redis::{RedisBroker, RedisConfig};
use herojobs::engine::EngineConfig;
use herojobs::processor::heroscript::{Actors, HeroScriptProcessor};
use herojobs::processor::{JobContext, Registry};
use herojobs::{Client, Job, ParamsType, WatchDog};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Processors: the built-ins, plus a HeroScript actor of our own.
    let mut actors = Actors::with_builtins();
    actors.register("greeter", "hello", |action, _ctx: &JobContext| {
        let name = action.params.string_or("name", "world");
        Ok(format!("hello, {name}!"))
    });
    let mut registry = Registry::with_builtins();
    registry.register(ParamsType::HeroScript, HeroScriptProcessor::new(actors));

    // 2. A watchdog and a client sharing one job store.
    let url =
        std::env::var("HEROJOBS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let base = tempfile::tempdir()?;
    let config = EngineConfig {
        workers: 4,
        ..EngineConfig::default()
    };
    let redis_up = RedisBroker::new(RedisConfig::new(&url))
        .and_then(|b| b.ping())
        .is_ok();
    let (client, mut engine) = if redis_up {
        let client = Client::connect(&url, base.path())?;
        let engine = WatchDog::builder()
            .redis_url(&url)
            .store(client.store().clone())
            .config(config)
            .registry(registry)
            .build()?;
        (client, engine)
    } else {
        herojobs::embedded(base.path(), registry, config)?
    };
    engine.start()?;

    // 3. Submit and wait.
    let id = client.submit(Job::new(
        "example",
        "greetings",
        ParamsType::HeroScript,
        "!!greeter.hello name:'Ada Lovelace'",
    ))?;
    let job = client.wait("example", "greetings", id, Duration::from_secs(10))?;
    println!("job {id}: {} -> {}", job.status, job.result);

    // 4. Stop gracefully (also happens on drop).
    engine.stop();
    Ok(())
}
