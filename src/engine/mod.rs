//! The engine: a `WatchDog` that takes jobs off the broker and runs them.
//!
//! Threads (each a loop around a `run_once` step with bounded waits, so shutdown is prompt):
//! - `herojobs-dispatcher` ([`dispatcher`]): records the outcomes waiting in the outbox and
//!   takes as many jobs as that (and the free workers) allows, in one atomic broker call per
//!   batch (finished jobs recorded; new ones popped and marked active under a lease), and
//!   hands them to the pool. Never more than the pool has room for.
//! - `herojobs-worker-N` ([`pool`]): writes the job active to OurDB, runs the processor of
//!   its params type, puts the outcome in the outbox.
//! - `herojobs-finisher` ([`finisher`]): records the outcomes the dispatcher will not record
//!   soon (it is blocked waiting for submits; timeouts; anything older than 1 ms) in
//!   batches; first finisher wins, fenced attempts lose.
//! - `herojobs-watchdog` ([`deadlines`]): times out jobs at their deadline (cancel flag +
//!   error "timeout after N s"), renews leases, publishes counters.
//! - `herojobs-recovery` ([`recovery`]): re-queues jobs whose engine died (expired leases)
//!   and jobs the broker lost (OurDB says unfinished, the broker does not know them).
//!
//! Delivery is at-least-once: a job whose engine dies mid-run is run again (up to
//! `max_attempts`); a run whose lease was reclaimed cannot record its result over the new
//! run's (the attempt number is a fencing token checked atomically when finishing).

pub mod deadlines;
pub mod dispatcher;
pub mod finisher;
pub mod handoff;
pub mod pool;
pub mod recovery;
pub mod stats;
pub mod unrecorded;

use crate::broker::redis::{RedisBroker, RedisConfig};
use crate::broker::{Broker, QueueName};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::ourdb::Durability;
use crate::processor::Registry;
use crate::store::JobStore;
use parking_lot::{Condvar, Mutex};
use stats::Stats;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Timeout of jobs that say 0.
    pub default_timeout: Duration,
    /// How long a running job's lease lasts without renewal (renewed every third of it).
    pub lease: Duration,
    /// On shutdown, how long running jobs may finish before they are cancelled.
    pub grace: Duration,
    /// Runs of one job before it is failed for good (a run counts when its engine died).
    pub max_attempts: u32,
    /// How often recovery looks for lost jobs.
    pub recovery_interval: Duration,
    /// How long a job must look lost, seen twice, before recovery queues it again.
    pub recovery_grace: Duration,
    /// Longest a blocking broker call waits (bounds shutdown and queue-list refresh).
    pub poll: Duration,
    /// Name under which counters are published (default `hostname-pid`).
    pub name: String,
    /// Which queues this engine takes from, and in what order (default: every registered
    /// queue, rotated so none starves).
    pub queues: QueueSelection,
    /// A job whose params type no processor here runs is handed back to its queue (for an
    /// engine that runs it) while some engine of the fleet claimed that type within this;
    /// once the job is older than this and no engine claims its type, it fails.
    pub unclaimed_timeout: Duration,
    /// Run no jobs: only recovery (re-queue lost jobs of this store, copy outcomes other
    /// engines recorded) and lease reclaim. For a host that submits but does not execute.
    pub reconcile_only: bool,
    /// Retry policy of jobs that carry none (`None`, the default: an error is final).
    pub retry: Option<crate::job::RetryPolicy>,
    /// Whether a timed-out run is retried like an error (default: no, a timeout is final).
    pub retry_timeouts: bool,
    /// How much each job may log (64 KiB, 4 KiB per line by default).
    pub log_limits: crate::processor::LogLimits,
    /// After the grace period, how long cancelled jobs get to return before the engine gives
    /// up on their workers (their jobs go back to their queues; the threads are left to end
    /// on their own).
    pub give_up_after: Duration,
}

/// Which queues an engine serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum QueueSelection {
    /// Every registered queue, in rotating order.
    #[default]
    All,
    /// These queues, always tried in this order (Sidekiq's strict order: a later queue is
    /// served only when the earlier ones are empty). A `*` topic means every registered
    /// topic of that circle.
    Strict(Vec<QueueName>),
    /// These queues with weights: each take tries them in a random order in which a queue of
    /// weight 3 comes first three times as often as one of weight 1 (Sidekiq's weighted
    /// queues), so none starves.
    Weighted(Vec<(QueueName, u32)>),
}

impl QueueSelection {
    /// Parses `circle/topic[:weight],...` (`circle/*` for every topic of a circle). Any
    /// weight makes the selection weighted; without weights, `strict` orders it as listed
    /// and otherwise it is weighted equally. Names are name-fixed.
    pub fn parse(spec: &str, strict: bool) -> Result<QueueSelection> {
        let mut out = Vec::new();
        let mut weighted = false;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = match item.rsplit_once(':') {
                Some((n, w)) => {
                    let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                        Error::Invalid(format!(
                            "queue {item:?}: weight {w:?} is not a positive integer"
                        ))
                    })?;
                    weighted = true;
                    (n, w)
                }
                None => (item, 1),
            };
            let (c, t) = name.split_once('/').ok_or_else(|| {
                Error::Invalid(format!(
                    "queue {item:?}: expected circle/topic (or circle/*)"
                ))
            })?;
            let circle = crate::names::path_name("circle", c)?;
            let topic = if t.trim() == "*" {
                "*".to_string()
            } else {
                crate::names::topic_name(t)?
            };
            out.push((QueueName { circle, topic }, weight));
        }
        if out.is_empty() {
            return Err(Error::Invalid("no queue given".into()));
        }
        if weighted && strict {
            return Err(Error::Invalid(
                "strict order and weights exclude each other".into(),
            ));
        }
        Ok(if strict {
            QueueSelection::Strict(out.into_iter().map(|(q, _)| q).collect())
        } else {
            QueueSelection::Weighted(out)
        })
    }

    /// Whether `q` is one of the selected queues.
    pub fn selects(&self, q: &QueueName) -> bool {
        let hit = |s: &QueueName| s.circle == q.circle && (s.topic == "*" || s.topic == q.topic);
        match self {
            QueueSelection::All => true,
            QueueSelection::Strict(v) => v.iter().any(hit),
            QueueSelection::Weighted(v) => v.iter().any(|(s, _)| hit(s)),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 8,
            default_timeout: Duration::from_secs(crate::job::DEFAULT_TIMEOUT_SECS),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            max_attempts: 3,
            recovery_interval: Duration::from_secs(5),
            recovery_grace: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            name: format!(
                "{}-{}",
                std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "host".into()),
                std::process::id()
            ),
            queues: QueueSelection::All,
            unclaimed_timeout: Duration::from_secs(60),
            reconcile_only: false,
            retry: None,
            retry_timeouts: false,
            log_limits: crate::processor::LogLimits::default(),
            give_up_after: Duration::from_secs(2),
        }
    }
}

/// Called with each job (its session key, circle, params...) before it runs; `Err(reason)`
/// fails the job with that reason and it never runs.
pub type Authenticator = Arc<dyn Fn(&Job) -> std::result::Result<(), String> + Send + Sync>;

/// Identifies a running job.
pub type JobKey = (QueueName, u32);

/// A job being run by this engine.
pub struct Running {
    /// The job as started.
    pub job: Job,
    /// Its attempt number (fencing token).
    pub attempt: u32,
    /// When it times out.
    pub deadline: Instant,
    /// Set to stop it (timeout or shutdown).
    pub cancel: Arc<AtomicBool>,
    /// The watchdog recorded a timeout; the worker's result is dropped.
    pub timed_out: bool,
    /// What the processor reports (published to the broker when it changes).
    pub progress: crate::processor::Progress,
    /// The change count of `progress` last published.
    pub progress_published: u64,
}

/// Work for a worker.
pub struct Work {
    /// The job, already active.
    pub job: Job,
    /// Its attempt.
    pub attempt: u32,
    /// Its cancel flag (shared with the watchdog).
    pub cancel: Arc<AtomicBool>,
    /// Its deadline (the same one the watchdog enforces).
    pub deadline: Instant,
    /// Where its processor reports progress.
    pub progress: crate::processor::Progress,
}

/// How a run ended, for the finisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Done or error, as the job's status says.
    Finished,
    /// The watchdog's timeout record.
    TimedOut,
    /// Not run (or cancelled by shutdown): give it back to its queue.
    Release,
    /// Not run: no processor here runs its params type. Given back to its queue for an
    /// engine that does, without a record in this engine's OurDB (the job is not ours).
    HandBack,
}

/// A job for the finisher to record.
pub struct Outcome {
    /// The job with status, result/error, end time and log set.
    pub job: Job,
    /// The attempt it was.
    pub attempt: u32,
    /// How it ended.
    pub ending: Ending,
    /// The worker slot it held is given back once this is recorded (so jobs taken and not
    /// yet recorded never exceed the workers).
    pub frees_slot: bool,
}

/// The dispatcher's budget and the outcomes waiting to be recorded, under one lock so the
/// dispatcher can wait for either: an outcome that frees a slot is as good as a free worker,
/// because the dispatcher records it in the same round trip that takes the next job.
#[derive(Default)]
pub struct Slots {
    /// Workers free to take a job.
    pub free: usize,
    /// Outcomes not yet recorded, oldest first.
    pub outbox: Vec<Outcome>,
    /// How many of `outbox` give a worker slot back once recorded.
    pub outbox_frees: usize,
    /// When the oldest outcome in `outbox` arrived.
    pub oldest: Option<Instant>,
    /// The dispatcher records the outbox with its next take (it is not blocked on the
    /// broker): the finisher leaves the outbox alone unless it grows stale.
    pub dispatcher_collects: bool,
    /// Available slots the dispatcher waits for before it wants waking.
    pub dispatcher_wants: usize,
}

impl Slots {
    fn push(&mut self, o: Outcome) {
        if o.frees_slot {
            self.outbox_frees += 1;
        }
        if self.outbox.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.outbox.push(o);
    }

    /// Takes up to `max` outcomes, oldest first.
    pub fn drain(&mut self, max: usize) -> Vec<Outcome> {
        let n = self.outbox.len().min(max);
        let batch: Vec<Outcome> = self.outbox.drain(..n).collect();
        self.outbox_frees -= batch.iter().filter(|o| o.frees_slot).count();
        self.oldest = if self.outbox.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        batch
    }

    /// Jobs the dispatcher may take now: free workers plus the slots its next take frees.
    pub fn available(&self) -> usize {
        self.free + self.outbox_frees
    }
}

/// State every engine thread shares.
pub struct Shared {
    /// Queues and live state.
    pub broker: Arc<dyn Broker>,
    /// OurDB per circle/topic.
    pub store: Arc<JobStore>,
    /// Processors.
    pub registry: Registry,
    /// Settings.
    pub config: EngineConfig,
    /// Counters.
    pub stats: Stats,
    /// Set when shutting down: take no more jobs.
    pub stopping: AtomicBool,
    /// Set when the grace period is over: cancelled jobs go back to their queue.
    pub cancelling: AtomicBool,
    /// Set once the workers have exited: the watchdog, recovery and finisher threads finish
    /// their last round and exit.
    pub draining: AtomicBool,
    /// Jobs running here.
    pub running: Mutex<HashMap<JobKey, Running>>,
    /// Free workers and outcomes waiting to be recorded.
    pub slots: Mutex<Slots>,
    /// Wakes the dispatcher: a worker slot came free or an outcome that frees one arrived.
    pub dispatch_cv: Condvar,
    /// Wakes the finisher: an outcome the dispatcher will not record soon.
    pub finish_cv: Condvar,
    /// Wakes the watchdog and recovery threads early on shutdown.
    pub stop_cv: Condvar,
    /// Paired with `stop_cv`.
    pub stop_lock: Mutex<()>,
    /// Circles whose jobs must carry a valid signature, with their secrets.
    pub signing: HashMap<String, Vec<u8>>,
    /// Checks each job before it runs.
    pub authenticator: Option<Authenticator>,
    /// Job versions OurDB refused, and the databases (queues) blocked until it stores them.
    pub unrecorded: unrecorded::Unrecorded,
}

impl Shared {
    /// Sleeps up to `d` or until shutdown starts; `true` if shutting down.
    pub fn nap(&self, d: Duration) -> bool {
        let mut g = self.stop_lock.lock();
        if !self.stopping.load(Ordering::Acquire) {
            self.stop_cv.wait_for(&mut g, d);
        }
        self.stopping.load(Ordering::Acquire)
    }

    /// Gives a worker slot back to the dispatcher.
    pub fn release_worker(&self) {
        let mut g = self.slots.lock();
        g.free += 1;
        let wake = g.available() >= g.dispatcher_wants;
        drop(g);
        if wake {
            self.dispatch_cv.notify_one();
        }
    }

    /// Queues an outcome for recording: by the dispatcher with its next take when it is
    /// collecting (and the outcome frees a slot it can reuse), else by the finisher.
    pub fn send_outcome(&self, o: Outcome) {
        let mut g = self.slots.lock();
        let to_dispatcher = g.dispatcher_collects && o.frees_slot;
        g.push(o);
        // Wake the dispatcher only when it has what it waits for (one slot, or the whole
        // pool while it gathers a batch), not once per outcome.
        let wake = to_dispatcher && (g.available() >= g.dispatcher_wants);
        drop(g);
        if wake {
            self.dispatch_cv.notify_one();
        } else if !to_dispatcher {
            self.finish_cv.notify_one();
        }
    }

    /// Says whether the dispatcher will record outcomes with its next take; when it stops
    /// (it is about to block on the broker, sleep or exit), the finisher takes over.
    pub fn set_dispatcher_collects(&self, on: bool) {
        let mut g = self.slots.lock();
        g.dispatcher_collects = on;
        let hand_over = !on && !g.outbox.is_empty();
        drop(g);
        if hand_over {
            self.finish_cv.notify_one();
        }
    }

    /// If `job` (failed in run `attempt`) gets another run under its retry policy (or the
    /// engine's default), turns it into a job waiting for that run — status new, due after
    /// the backoff, the error kept for whoever looks meanwhile — and returns true.
    pub fn schedule_retry(&self, job: &mut Job, attempt: u32) -> bool {
        let Some(policy) = job.retry.clone().or_else(|| self.config.retry.clone()) else {
            return false;
        };
        let runs = attempt
            .saturating_sub(job.released)
            .saturating_sub(job.attempt_base);
        if runs >= policy.max_attempts {
            return false;
        }
        let random = (crate::job::unix_now_ms() as u32).wrapping_mul(2_654_435_761) ^ job.id;
        let wait = policy.delay_before(runs + 1, random);
        job.status = crate::job::JobStatus::New;
        job.run_at_ms = crate::job::unix_now_ms().saturating_add(wait.as_millis() as u64);
        job.time_end = 0;
        true
    }

    /// The timeout that applies to `job`.
    pub fn timeout_of(&self, job: &Job) -> Duration {
        if job.timeout == 0 {
            self.config.default_timeout
        } else {
            Duration::from_secs(job.timeout)
        }
    }
}

/// Builds a [`WatchDog`].
pub struct WatchDogBuilder {
    redis_url: String,
    retention: crate::broker::redis::Retention,
    base: PathBuf,
    broker: Option<Arc<dyn Broker>>,
    store: Option<Arc<JobStore>>,
    durability: Durability,
    registry: Registry,
    config: EngineConfig,
    signing: HashMap<String, Vec<u8>>,
    authenticator: Option<Authenticator>,
}

impl WatchDogBuilder {
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
    /// Use this broker instead of connecting to Redis.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }
    /// Share this job store (e.g. with a `Client` in the same process).
    pub fn store(mut self, store: Arc<JobStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// OurDB durability of the job databases.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Number of workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n.max(1);
        self
    }
    /// Timeout of jobs that say 0.
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.config.default_timeout = d;
        self
    }
    /// Lease length.
    pub fn lease(mut self, d: Duration) -> Self {
        self.config.lease = d;
        self
    }
    /// Shutdown grace period.
    pub fn grace(mut self, d: Duration) -> Self {
        self.config.grace = d;
        self
    }
    /// All settings at once.
    pub fn config(mut self, c: EngineConfig) -> Self {
        self.config = c;
        self
    }
    /// The queues this engine serves (default: all).
    pub fn queues(mut self, q: QueueSelection) -> Self {
        self.config.queues = q;
        self
    }
    /// How long Redis keeps finished jobs and dead jobs (when the engine connects to Redis
    /// itself; a broker given with [`broker`](WatchDogBuilder::broker) has its own).
    pub fn retention(mut self, r: crate::broker::redis::Retention) -> Self {
        self.retention = r;
        self
    }
    /// The retry policy of jobs that carry none (default: an error is final).
    pub fn retry(mut self, policy: Option<crate::job::RetryPolicy>) -> Self {
        self.config.retry = policy;
        self
    }
    /// How long a job whose params type no engine claims waits before it fails (see
    /// [`EngineConfig::unclaimed_timeout`]).
    pub fn unclaimed_timeout(mut self, d: Duration) -> Self {
        self.config.unclaimed_timeout = d;
        self
    }
    /// Run no jobs, only recovery and reconciliation of this store (see
    /// [`EngineConfig::reconcile_only`]).
    pub fn reconcile_only(mut self, on: bool) -> Self {
        self.config.reconcile_only = on;
        self
    }
    /// The processors.
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = r;
        self
    }

    /// Builds the engine (not started).
    pub fn build(self) -> Result<WatchDog> {
        let broker: Arc<dyn Broker> = match self.broker {
            Some(b) => b,
            None => {
                let mut rc = RedisConfig::new(&self.redis_url);
                rc.retention = self.retention;
                Arc::new(RedisBroker::new(rc)?)
            }
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(JobStore::new(self.base, self.durability)));
        if self.config.workers == 0 {
            return Err(Error::Invalid("an engine needs at least one worker".into()));
        }
        let mut signing = HashMap::with_capacity(self.signing.len());
        for (circle, secret) in self.signing {
            // The same name fixing as submit's, so the job's circle finds its secret.
            let circle = crate::names::path_name("circle", &circle)?;
            crate::signing::check_secret(&circle, &secret)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            signing.insert(circle, secret);
        }
        let shared = Arc::new(Shared {
            broker,
            store,
            registry: self.registry,
            slots: Mutex::new(Slots {
                free: self.config.workers,
                ..Slots::default()
            }),
            config: self.config,
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
            unrecorded: unrecorded::Unrecorded::default(),
        });
        Ok(WatchDog {
            shared,
            threads: Vec::new(),
            work: None,
            started: false,
        })
    }
}

/// The engine. `start()` spawns its threads; `stop()` (or drop) shuts it down gracefully.
pub struct WatchDog {
    shared: Arc<Shared>,
    threads: Vec<(String, JoinHandle<()>)>,
    work: Option<Arc<handoff::Handoff<Work>>>,
    started: bool,
}

impl WatchDog {
    /// A builder with defaults.
    pub fn builder() -> WatchDogBuilder {
        WatchDogBuilder {
            redis_url: "redis://127.0.0.1:6379".into(),
            retention: crate::broker::redis::Retention::default(),
            base: crate::store::default_base(),
            broker: None,
            store: None,
            durability: Durability::Periodic,
            registry: Registry::new(),
            config: EngineConfig::default(),
            signing: HashMap::new(),
            authenticator: None,
        }
    }

    /// The shared state (counters, broker, store).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The counters.
    pub fn stats(&self) -> stats::Snapshot {
        self.shared.stats.snapshot(&self.shared)
    }

    /// Spawns the threads. The recovery thread's first pass queues again, at once, the jobs
    /// the broker lost while no engine ran.
    pub fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(Error::Invalid("engine already started once".into()));
        }
        probe_base(self.shared.store.base())?;
        self.started = true;
        let shared = &self.shared;
        let rec = recovery::Recovery::new(Arc::clone(shared));
        // The hand-off holds no backlog: the dispatcher only takes what free workers can start.
        let work = Arc::new(handoff::Handoff::<Work>::new(shared.config.workers));
        let spawn =
            |name: String, f: Box<dyn FnOnce() + Send>| -> Result<(String, JoinHandle<()>)> {
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(f)
                    .map(|h| (name.clone(), h))
                    .map_err(|e| Error::Invalid(format!("cannot spawn thread {name}: {e}")))
            };
        let workers = if shared.config.reconcile_only {
            0
        } else {
            shared.config.workers
        };
        for i in 0..workers {
            let s = Arc::clone(shared);
            let rx = Arc::clone(&work);
            self.threads.push(spawn(
                format!("herojobs-worker-{i}"),
                Box::new(move || pool::run(s, rx)),
            )?);
        }
        {
            let s = Arc::clone(shared);
            self.threads.push(spawn(
                "herojobs-finisher".into(),
                Box::new(move || finisher::run(s)),
            )?);
        }
        if !shared.config.reconcile_only {
            let s = Arc::clone(shared);
            let tx = Arc::clone(&work);
            self.threads.push(spawn(
                "herojobs-dispatcher".into(),
                Box::new(move || dispatcher::run(s, tx)),
            )?);
        }
        {
            let s = Arc::clone(shared);
            self.threads.push(spawn(
                "herojobs-watchdog".into(),
                Box::new(move || deadlines::run(s)),
            )?);
        }
        if !shared.config.reconcile_only {
            let s = Arc::clone(shared);
            let feed = shared.broker.cancel_feed()?;
            self.threads.push(spawn(
                "herojobs-cancel".into(),
                Box::new(move || run_cancels(s, feed)),
            )?);
        }
        {
            let s = Arc::clone(shared);
            self.threads.push(spawn(
                "herojobs-recovery".into(),
                Box::new(move || recovery::run(s, rec)),
            )?);
        }
        self.work = Some(work);
        log::info!(
            "engine {} started: {} workers",
            shared.config.name,
            shared.config.workers
        );
        Ok(())
    }

    /// Graceful shutdown: take no more jobs, let running ones finish within the grace
    /// period, then cancel them and give them back to their queues; record everything that
    /// finished; stop all threads. Idempotent.
    pub fn stop(&mut self) {
        if !self.started {
            return;
        }
        let s = &self.shared;
        s.stopping.store(true, Ordering::Release);
        {
            let _g = s.stop_lock.lock();
            s.stop_cv.notify_all();
        }
        s.dispatch_cv.notify_all();
        let take = |name: &str, threads: &mut Vec<(String, JoinHandle<()>)>| {
            if let Some(i) = threads.iter().position(|(n, _)| n == name) {
                let (_, h) = threads.remove(i);
                let _ = h.join();
            }
        };
        take("herojobs-dispatcher", &mut self.threads);
        // Workers drain the hand-off queue (each job is run or released) and exit once it is
        // closed and empty.
        if let Some(w) = self.work.take() {
            w.close();
        }
        let deadline = Instant::now() + s.config.grace;
        while Instant::now() < deadline && !s.running.lock().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !s.running.lock().is_empty() {
            log::warn!(
                "grace period over: cancelling {} running job(s)",
                s.running.lock().len()
            );
            s.cancelling.store(true, Ordering::Release);
            for r in s.running.lock().values() {
                r.cancel.store(true, Ordering::Release);
            }
        }
        // Cancelled jobs get `give_up_after` to return. A worker still busy then (a processor
        // that ignores its cancel flag, a call that cannot be interrupted) is given up on: its
        // job goes back to its queue now and the thread is left to end on its own; whatever
        // it returns later is dropped (it no longer owns a `running` entry).
        let give_up_at = Instant::now() + s.config.give_up_after;
        let is_worker = |n: &str| n.starts_with("herojobs-worker-");
        while Instant::now() < give_up_at
            && self
                .threads
                .iter()
                .any(|(n, h)| is_worker(n) && !h.is_finished())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stuck: Vec<Running> = s.running.lock().drain().map(|(_, r)| r).collect();
        if !stuck.is_empty() {
            log::warn!(
                "giving up on {} worker(s) whose job did not return {:?} after being cancelled; their jobs go back to their queues",
                stuck.len(),
                s.config.give_up_after
            );
        }
        for r in stuck {
            stats::Stats::inc(&s.stats.gave_up);
            if r.timed_out {
                continue; // the watchdog recorded its timeout
            }
            s.send_outcome(Outcome {
                job: r.job,
                attempt: r.attempt,
                ending: Ending::Release,
                frees_slot: false,
            });
        }
        let mut i = 0;
        while i < self.threads.len() {
            if is_worker(&self.threads[i].0) {
                let (_, h) = self.threads.remove(i);
                if h.is_finished() {
                    let _ = h.join();
                } // else: detached (given up on above)
            } else {
                i += 1;
            }
        }
        // No worker runs any more: the watchdog and recovery stop, then the finisher records
        // what is left in its channel and stops.
        s.draining.store(true, Ordering::Release);
        take("herojobs-watchdog", &mut self.threads);
        take("herojobs-cancel", &mut self.threads);
        take("herojobs-recovery", &mut self.threads);
        take("herojobs-finisher", &mut self.threads);
        s.unrecorded.last_try(s);
        if let Err(e) = s.store.sync() {
            log::error!("final OurDB sync: {e}");
        }
        self.started = false;
        log::info!("engine {} stopped", s.config.name);
    }
}

/// The cancel thread: cancels of running jobs reach every engine through the broker; the
/// one running the job sets its cancel flag (the cancel is already recorded, so the run's
/// late result loses), and the worker is free again as soon as the processor notices.
fn run_cancels(shared: Arc<Shared>, mut feed: Box<dyn crate::broker::CancelFeed>) {
    while !shared.draining.load(Ordering::Acquire) {
        match feed.next(shared.config.poll) {
            Ok(Some(key)) => {
                if let Some(r) = shared.running.lock().get(&key) {
                    r.cancel.store(true, Ordering::Release);
                    stats::Stats::inc(&shared.stats.cancelled);
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("cancel feed: {e}");
                shared.nap(shared.config.poll);
            }
        }
    }
}

/// Checks that `base` takes a file: creates it if missing, then probes it ([`probe_dir`]).
/// A read-only or full base fails here, before any job is taken.
fn probe_base(base: &std::path::Path) -> Result<()> {
    let err = |reason: String| Error::BaseNotWritable {
        path: base.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(base).map_err(|e| err(format!("creating it: {e}")))?;
    probe_dir(base).map_err(err)
}

/// Creates, writes, fsyncs and removes a small file in `dir`: whether the directory takes
/// writes now (read-only, full, or gone directories fail), without touching any database.
pub(crate) fn probe_dir(dir: &std::path::Path) -> std::result::Result<(), String> {
    use std::io::Write;
    let probe = dir.join(format!(
        ".herojobs-probe-{}-{}",
        std::process::id(),
        crate::store::random_hex(4)
    ));
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("creating {}: {e}", probe.display()))
        .and_then(|mut f| {
            f.write_all(b"herojobs write probe\n")
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("writing {}: {e}", probe.display()))
        });
    let _ = std::fs::remove_file(&probe);
    res
}

impl Drop for WatchDog {
    fn drop(&mut self) {
        self.stop();
    }
}
