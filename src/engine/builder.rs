//! [`WatchDogBuilder`]: how an engine is put together. Settings compose: each setter
//! changes one setting, [`config`](WatchDogBuilder::config) replaces the base they apply
//! to, and the individual setters win over it whatever the order, so
//! `.workers(4).config(c)` and `.config(c).workers(4)` both run 4 workers.

use super::config::{Authenticator, Compaction, EngineConfig, QueueSelection};
use super::shared::{Shared, Slots};
use super::stats::Stats;
use super::unrecorded::Unrecorded;
use super::WatchDog;
use crate::broker::redis::{RedisBroker, RedisConfig};
use crate::broker::{Broker, Retention};
use crate::error::{Error, Result};
use crate::job::{Job, RetryPolicy};
use crate::ourdb::Durability;
use crate::processor::Registry;
use crate::store::JobStore;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// One setting, applied over the base configuration at `build()`.
type Setting = Box<dyn FnOnce(&mut EngineConfig) + Send>;

/// Builds a [`WatchDog`]: `WatchDog::builder()`, setters, then `build()`.
///
/// ```
/// use herojobs::{EngineConfig, Registry, WatchDog};
/// let mut base = EngineConfig::default();
/// base.workers = 16;
/// let engine = WatchDog::builder()
///     .workers(4)
///     .config(base) // the base; `workers(4)` still wins
///     .registry(Registry::with_builtins())
///     .build()?;
/// assert_eq!(engine.config().workers, 4);
/// # Ok::<(), herojobs::Error>(())
/// ```
pub struct WatchDogBuilder {
    redis_url: String,
    base: PathBuf,
    broker: Option<Arc<dyn Broker>>,
    store: Option<Arc<JobStore>>,
    durability: Durability,
    registry: Registry,
    config: EngineConfig,
    settings: Vec<Setting>,
    signing: HashMap<String, Vec<u8>>,
    authenticator: Option<Authenticator>,
}

impl WatchDogBuilder {
    pub(super) fn new() -> WatchDogBuilder {
        WatchDogBuilder {
            redis_url: "redis://127.0.0.1:6379".into(),
            base: crate::store::default_base(),
            broker: None,
            store: None,
            durability: Durability::Periodic,
            registry: Registry::new(),
            config: EngineConfig::default(),
            settings: Vec::new(),
            signing: HashMap::new(),
            authenticator: None,
        }
    }

    fn set(mut self, f: impl FnOnce(&mut EngineConfig) + Send + 'static) -> Self {
        self.settings.push(Box::new(f));
        self
    }

    /// Requires every job of `circle` to be signed with `secret` (see [`crate::signing`]):
    /// an unsigned or badly signed job fails with a clear error and never runs. `build()`
    /// refuses secrets shorter than [`crate::signing::MIN_SECRET_LEN`].
    pub fn require_signing(mut self, circle: &str, secret: impl Into<Vec<u8>>) -> Self {
        // Name-fixed in `build()` (which can refuse a bad name).
        self.signing.insert(circle.to_string(), secret.into());
        self
    }

    /// Calls `f` with each job before it runs; `Err(reason)` fails the job with the reason
    /// (prefixed "refused by the authenticator: ") and it never runs. E.g. check the
    /// session key against your sessions.
    pub fn authenticator(
        mut self,
        f: impl Fn(&Job) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.authenticator = Some(Arc::new(f));
        self
    }

    /// Redis URL (default `redis://127.0.0.1:6379`).
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = url.to_string();
        self
    }

    /// Base directory of the job databases (default `~/hero/var`).
    pub fn base(mut self, base: impl Into<PathBuf>) -> Self {
        self.base = base.into();
        self
    }

    /// Runs on the in-process broker instead of Redis: one process, the same queue
    /// semantics, OurDB still the record of truth (jobs new or active at a crash are queued
    /// again at the next start). Reach its queues through [`WatchDog::client`].
    pub fn embedded(mut self) -> Self {
        self.broker = Some(Arc::new(crate::broker::memory::MemoryBroker::new()));
        self
    }

    /// Use this broker instead of connecting to Redis (tests).
    #[cfg(test)]
    pub(crate) fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// OurDB durability of the job databases (default `periodic`).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Number of workers (at least 1; default 8).
    pub fn workers(self, n: usize) -> Self {
        self.set(move |c| c.workers = n)
    }

    /// Timeout of jobs that say 0 (default 60 s).
    pub fn default_timeout(self, d: Duration) -> Self {
        self.set(move |c| c.default_timeout = d)
    }

    /// Lease length (default 30 s).
    pub fn lease(self, d: Duration) -> Self {
        self.set(move |c| c.lease = d)
    }

    /// Shutdown grace period (default 10 s).
    pub fn grace(self, d: Duration) -> Self {
        self.set(move |c| c.grace = d)
    }

    /// The base configuration the other setters apply to (they win over it, in any order).
    pub fn config(mut self, c: EngineConfig) -> Self {
        self.config = c;
        self
    }

    /// The queues this engine serves (default: all).
    pub fn queues(self, q: QueueSelection) -> Self {
        self.set(move |c| c.queues = q)
    }

    /// How long Redis keeps finished jobs and dead jobs (see [`Retention`]).
    pub fn retention(self, r: Retention) -> Self {
        self.set(move |c| c.retention = r)
    }

    /// The OurDB compaction policy (default [`Compaction::default`]; [`Compaction::disabled`]
    /// turns it off).
    pub fn compaction(self, p: Compaction) -> Self {
        self.set(move |c| c.compaction = p)
    }

    /// The retry policy of jobs that carry none (default: an error is final).
    pub fn retry(self, policy: Option<RetryPolicy>) -> Self {
        self.set(move |c| c.retry = policy)
    }

    /// Whether a timed-out run is retried like an error (default: no).
    pub fn retry_timeouts(self, on: bool) -> Self {
        self.set(move |c| c.retry_timeouts = on)
    }

    /// How long a job whose params type no engine claims waits before it fails (see
    /// [`EngineConfig::unclaimed_timeout`]).
    pub fn unclaimed_timeout(self, d: Duration) -> Self {
        self.set(move |c| c.unclaimed_timeout = d)
    }

    /// Run no jobs, only recovery and reconciliation of this store (see
    /// [`EngineConfig::reconcile_only`]).
    pub fn reconcile_only(self, on: bool) -> Self {
        self.set(move |c| c.reconcile_only = on)
    }

    /// The name the engine publishes its counters under (default `host-pid`).
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(move |c| c.name = name)
    }

    /// The processors (default: none; [`Registry::with_builtins`] has the four built-in
    /// ones).
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = r;
        self
    }

    /// Builds the engine (not started: [`WatchDog::start`]). Checks the settings; does not
    /// connect yet.
    pub fn build(self) -> Result<WatchDog> {
        let mut config = self.config;
        for set in self.settings {
            set(&mut config);
        }
        if config.workers == 0 {
            return Err(Error::config(
                "workers",
                "an engine needs at least one worker",
            ));
        }
        let broker: Arc<dyn Broker> = match self.broker {
            Some(b) => b,
            None => {
                let mut rc = RedisConfig::new(&self.redis_url);
                rc.retention = config.retention.clone();
                Arc::new(RedisBroker::new(rc)?)
            }
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(JobStore::new(self.base, self.durability)));
        let mut signing = HashMap::with_capacity(self.signing.len());
        for (circle, secret) in self.signing {
            // The same name fixing as submit's, so the job's circle finds its secret.
            let circle = crate::names::path_name("circle", &circle)?;
            crate::signing::check_secret(&circle, &secret)?;
            signing.insert(circle, secret);
        }
        let shared = Arc::new(Shared {
            broker,
            store,
            registry: self.registry,
            slots: Mutex::new(Slots {
                free: config.workers,
                ..Slots::default()
            }),
            config,
            stats: Stats::default(),
            stopping: AtomicBool::new(false),
            cancelling: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            dispatch_cv: Condvar::new(),
            finish_cv: Condvar::new(),
            stop_cv: Condvar::new(),
            stop_lock: Mutex::new(()),
            signing,
            authenticator: self.authenticator,
            unrecorded: Unrecorded::default(),
        });
        Ok(WatchDog::from_shared(shared))
    }
}
