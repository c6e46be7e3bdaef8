//! herojobs: a job queue and processing engine for synchronous Rust programs.
//!
//! Programs submit jobs (HeroScript, Rhai scripts, OpenRPC calls, AI prompts) into Redis
//! queues per circle and topic; every job is persisted in [`ourdb`], a memory-mapped
//! append-only store that assigns its id and keeps its history after Redis forgets it.
//! No async runtime: threads, blocking I/O, crossbeam channels, parking_lot locks.
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
//! - [`broker`]: the broker trait; [`broker::redis`]; [`broker::keys`] builds every Redis key.
//! - [`client`]: the blocking `Client`: submit, get, wait, queue operations.
//! - [`processor`]: the `Processor` trait, the job context and the registry.
//! - [`engine`]: the `WatchDog`: dispatcher, worker pool, finisher, watchdog, recovery.
//! - [`error`]: the crate-level error every module error converts into.
//! - `src/bin/herojobs/`: the command line (`herojobs ourdb ...`).

pub mod broker;
pub mod client;
pub mod codec;
pub mod engine;
pub mod error;
pub mod job;
pub mod names;
pub mod ourdb;
pub mod processor;
pub mod store;

pub use client::Client;
pub use engine::{WatchDog, WatchDogBuilder};
pub use error::{Error, Result};
pub use job::{Job, JobStatus, ParamsType};
