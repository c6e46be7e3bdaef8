//! herojobs: a job queue and processing engine for synchronous Rust programs.
//!
//! Programs submit jobs (HeroScript, Rhai scripts, OpenRPC calls, AI prompts) into Redis
//! queues per circle and topic; every job is persisted in [`ourdb`], a memory-mapped
//! append-only store that assigns its id and keeps its history after Redis forgets it.
//! No async runtime: threads, blocking I/O, parking_lot locks and condition variables.
//!
//! # Example: the store at the bottom
//! ```
//! use herojobs::ourdb::{Config, OurDb};
//! let dir = tempfile::tempdir()?;
//! let db = OurDb::open(dir.path(), Config::default())?;
//! let id = db.add(b"{\"params\":\"!!fake.return_success\"}")?;
//! assert_eq!(id, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! Dependencies point one way: storage at the bottom, the CLI on top.
//! - [`ourdb`]: the record store (format, lookup table, data files, durability, compaction).
//! - [`job`]: the job, its statuses and params types (pure data).
//! - [`codec`]: job ↔ JSON (Redis) and versioned bincode (OurDB).
//! - [`names`]: name fixing of circles, topics, actors.
//! - [`store`]: one OurDB per circle/topic, opened once.
//! - [`broker`]: the broker trait; [`broker::redis`], [`broker::memory`] (embedded mode);
//!   [`broker::keys`] builds every Redis key.
//! - [`client`]: the blocking `Client`: submit, get, wait, queue operations.
//! - [`processor`]: the `Processor` trait, the job context and the registry.
//! - [`engine`]: the `WatchDog`: dispatcher, worker pool, finisher, watchdog, recovery.
//! - [`error`]: the crate-level error every module error converts into.
//! - [`limits`]: result/error caps so a finished job always fits its OurDB record.
//! - [`redact`]: hides credentials in URLs before they are shown.
//! - [`signing`]: per-circle HMAC-SHA256 job signatures (submitter and engine share a secret).
//! - `web` (feature `web`, on by default): the dashboard, `/api` JSON and `/metrics`.
//! - `src/bin/herojobs/`: the command line: `run`, `web`, `submit`, `get`, `wait`, `list`,
//!   `queues`, `stats`, `demo`, `bench`, `ourdb ...`.

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

// Unit tests that need a real redis-server share the integration tests' support module
// (it names the crate `herojobs`, as an outside user would).
#[cfg(test)]
extern crate self as herojobs;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

pub use broker::Retention;
pub use codec::CodecError;
pub use client::{Client, EngineCounters, JobPage, LifecycleCounts, ListedJob, PageQuery};
pub use counters::{Histogram, QueueCounts};
pub use engine::{
    Authenticator, EngineConfig, EngineStats, Health, QueuePattern, QueueSelection, WatchDog,
    WatchDogBuilder,
};
pub use error::{Error, Result};
pub use job::{Backoff, Job, JobFailed, JobStatus, ParamsType, RetryPolicy};
pub use names::{BadName, BadRef, JobRef, QueueName};
pub use ourdb::Durability;
pub use processor::{Cancelled, JobContext, JobError, Processor, Registry};

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
