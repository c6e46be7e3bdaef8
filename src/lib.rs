//! herojobs: a job queue and processing engine for synchronous Rust programs.
//!
//! Programs submit jobs (HeroScript, Rhai scripts, OpenRPC calls, AI prompts) into Redis
//! queues per circle and topic; a [`WatchDog`] takes them off the queues and runs them on a
//! bounded worker pool under a timeout. Every job is also kept in [`ourdb`], a
//! memory-mapped append-only store that assigns its id and keeps its history after Redis
//! forgets it. No async runtime: threads, blocking I/O, locks and condition variables.
//!
//! # Example
//! ```
//! use herojobs::{Job, JobError, ParamsType, Registry, WatchDog};
//! use std::time::Duration;
//!
//! // Handlers: closures (or `Processor`s) per params type; `?` works on any error.
//! let mut registry = Registry::with_builtins();
//! registry.register(ParamsType::Other("double".into()), |job, _ctx| {
//!     let n: i64 = job.params.trim().parse()?;
//!     Ok((2 * n).to_string())
//! });
//!
//! // An engine (here embedded: no Redis; `.redis_url(..)` for a fleet) and its client.
//! let base = tempfile::tempdir()?;
//! let mut engine = WatchDog::builder().embedded().base(base.path()).registry(registry).build()?;
//! engine.start()?;
//! let client = engine.client();
//!
//! // Jobs are addressed as circle/topic/id; `outcome()` makes a failed job an `Err`.
//! let job = client.submit(Job::new("ops", "math", ParamsType::Other("double".into()), "21"))?;
//! assert_eq!(job.to_string(), "ops/math/1");
//! assert_eq!(client.wait(&job, Duration::from_secs(10))?.outcome()?, "42");
//! let bad = client.submit(Job::new("ops", "math", ParamsType::Other("double".into()), "x"))?;
//! let failed = client.wait(&bad, Duration::from_secs(10))?.outcome().unwrap_err();
//! assert!(failed.error().contains("invalid digit"));
//! engine.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The public surface
//! [`Client`] (submit, get, wait, cancel, retry, queue operations), [`WatchDog`] with its
//! [`WatchDogBuilder`] and [`EngineConfig`], [`Job`] and its addresses [`JobRef`] /
//! [`QueueName`], [`Registry`], [`Processor`], [`JobContext`] and [`JobError`] for handlers,
//! [`Error`]; the [`ourdb`] store; the [`processor`] implementations; the `web` dashboard
//! (feature `web`). `docs/api.md` lists every public item.
//!
//! # Features
//! `cli` (the `herojobs` binary's dependencies), `web` (dashboard and `/metrics`), `rhai`
//! (Rhai scripts), `ai` (the AI processor's HTTP client): all on by default.
//! `default-features = false` is the bare engine: Redis and embedded brokers, OurDB,
//! HeroScript and OpenRPC processors. `ai-tls` and `redis-tls` add rustls.
//!
//! # Layout
//! Dependencies point one way, each module below the ones that use it:
//! - [`ourdb`]: the record store (format, lookup table, data files, durability,
//!   compaction); knows nothing of jobs.
//! - `job`, [`names`]: the job and its statuses (pure data); name fixing, and the validated
//!   [`QueueName`] and [`JobRef`].
//! - `codec`: job ↔ JSON (Redis, other clients) and versioned bincode (OurDB records).
//! - [`limits`], [`redact`], [`signing`], `counters`: result caps, credential hiding, job
//!   signatures, the counter format engines publish.
//! - `store`: one OurDB per circle/topic under a base directory, opened once.
//! - `broker`: the broker trait; its Redis implementation (scripts in `broker/lua/`, every
//!   key built in `broker/keys.rs`) and the in-process one (embedded mode).
//! - `submit`, `settle`: how a job becomes acknowledged, and how a finished run is
//!   recorded (first finisher wins; fencing); used by both layers above.
//! - `client` ([`Client`]) and `engine` ([`WatchDog`]: dispatcher, workers, finisher,
//!   deadline keeper, recovery, cancel listener); [`processor`]: the `Processor` trait,
//!   the job context, the registry and the four processors.
//! - `web` (feature `web`): the dashboard, `/api` JSON and `/metrics`, over a [`Client`].
//! - `src/bin/herojobs/`: the command line, a thin layer over the public API.

#![warn(missing_docs)]
mod broker;
mod client;
mod codec;
mod counters;
mod engine;
mod error;
mod job;
pub mod limits;
pub mod names;
pub mod ourdb;
pub mod processor;
pub mod redact;
mod settle;
pub mod signing;
mod store;
mod submit;
#[cfg(feature = "web")]
pub mod web;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

// Unit tests that need a real redis-server share the integration tests' support module
// (it names the crate `herojobs`, as an outside user would).
#[cfg(test)]
extern crate self as herojobs;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

pub use broker::{BrokerError, Retention};
pub use client::{Client, EngineCounters, JobPage, LifecycleCounts, ListedJob, PageQuery};
pub use codec::CodecError;
pub use counters::{Histogram, QueueCounts};
pub use engine::{
    Authenticator, Compaction, EngineConfig, EngineStats, Health, QueuePattern, QueueSelection,
    WatchDog, WatchDogBuilder,
};
pub use error::{Error, Result};
pub use job::{Backoff, Job, JobFailed, JobStatus, ParamsType, RetryPolicy};
pub use names::{BadName, BadRef, JobRef, QueueName};
pub use ourdb::{CompactOptions, CompactReport, Durability, Space};
pub use processor::heroscript::{Actors, ParamError};
pub use processor::{Cancelled, JobContext, JobError, LogLimits, Processor, Registry};
pub use store::StoreError;

/// The default base directory of the job databases: `~/hero/var` (or `./hero/var` when
/// there is no home directory).
pub fn default_base() -> std::path::PathBuf {
    store::default_base()
}

/// The directory of a queue's job database under `base`:
/// `<base>/circles/<circle>/<topic>/jobsdb` (an OurDB; `herojobs ourdb` reads it).
pub fn job_db_dir(base: &std::path::Path, queue: &QueueName) -> std::path::PathBuf {
    store::db_dir(base, queue)
}

/// A single-process job queue with no Redis: an engine on the in-process broker and a
/// client sharing that broker and the job store under `base`. OurDB stays the record of
/// truth, so jobs submitted before a crash or restart are recovered (queued again) when the
/// engine starts. Call `start()` on the engine.
///
/// ```
/// use herojobs::{embedded, EngineConfig, Job, ParamsType, Registry};
/// let dir = tempfile::tempdir()?;
/// let (client, mut engine) = embedded(dir.path(), Registry::with_builtins(), EngineConfig::default())?;
/// engine.start()?;
/// let job = client.submit(Job::new("demo", "", ParamsType::RhaiScript, "6 * 7"))?;
/// let done = client.wait(&job, std::time::Duration::from_secs(10))?;
/// assert_eq!(done.outcome()?, "42");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn embedded(
    base: impl Into<std::path::PathBuf>,
    registry: Registry,
    config: EngineConfig,
) -> Result<(Client, WatchDog)> {
    let engine = WatchDog::builder()
        .embedded()
        .base(base)
        .config(config)
        .registry(registry)
        .build()?;
    Ok((engine.client(), engine))
}
