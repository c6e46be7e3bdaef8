//! The engine: a [`WatchDog`] that takes jobs off the broker and runs them. This file
//! starts and stops its threads; [`shared`] holds what they share, [`builder`] puts an
//! engine together, [`config`] is what it is told.
//!
//! Threads (each a loop around a `run_once` step with bounded waits, so shutdown is prompt):
//! - `herojobs-dispatcher` ([`dispatcher`]): records the outcomes waiting in the outbox and
//!   takes as many jobs as that (and the free workers) allows, in one atomic broker call per
//!   batch (finished jobs recorded; new ones popped and marked active under a lease), and
//!   hands them to the pool. Never more than the pool has room for.
//! - `herojobs-worker-N` ([`pool`]): runs the processor of its params type (the dispatcher
//!   already recorded the job active in Redis and OurDB), puts the outcome in the outbox.
//! - `herojobs-finisher` ([`finisher`]): records the outcomes the dispatcher will not record
//!   soon (it is blocked waiting for submits; timeouts; anything older than 1 ms) in
//!   batches; first finisher wins, fenced attempts lose.
//! - `herojobs-watchdog` ([`deadlines`], the deadline keeper): times out jobs at their deadline (cancel flag +
//!   error "timeout after N s"), renews leases, publishes counters.
//! - `herojobs-cancel` (here): sets the cancel flag of a running job cancelled anywhere in
//!   the fleet (pub/sub), so its worker is free again within milliseconds.
//! - `herojobs-recovery` ([`recovery`]): re-queues jobs whose engine died (expired leases)
//!   and jobs the broker lost (OurDB says unfinished, the broker does not know them).
//!
//! Delivery is at-least-once: a job whose engine dies mid-run is run again (up to
//! `max_attempts`); a run whose lease was reclaimed cannot record its result over the new
//! run's (the attempt number is a fencing token checked atomically when finishing).

mod builder;
mod compactor;
mod config;
mod deadlines;
mod dispatcher;
mod finisher;
mod handoff;
mod pool;
mod recovery;
mod shared;
mod stats;
mod unrecorded;

pub use builder::WatchDogBuilder;
pub use config::{Authenticator, Compaction, EngineConfig, QueuePattern, QueueSelection};
pub use stats::EngineStats;

use crate::error::{Error, Result};
use shared::{Ending, Outcome, Running, Shared, Stored, Work};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an engine's health check found ([`WatchDog::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Whether the broker answered (the reason when it did not).
    pub broker: std::result::Result<(), String>,
    /// Whether the engine's threads are running (started and not stopped).
    pub running: bool,
    /// Job databases that refuse writes now (their queues are not taken from), with how
    /// long each has been blocked.
    pub blocked: Vec<(String, Duration)>,
}

impl Health {
    /// Everything fine: the broker answers, the engine runs, no database is blocked.
    pub fn is_ok(&self) -> bool {
        self.broker.is_ok() && self.running && self.blocked.is_empty()
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
        WatchDogBuilder::new()
    }

    fn from_shared(shared: Arc<Shared>) -> WatchDog {
        WatchDog {
            shared,
            threads: Vec::new(),
            work: None,
            started: false,
        }
    }

    /// A client sharing this engine's broker and job store (in embedded mode, the only way
    /// to reach its in-process queues).
    pub fn client(&self) -> crate::client::Client {
        crate::client::Client::with_parts(
            Arc::clone(&self.shared.broker),
            Arc::clone(&self.shared.store),
        )
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The counters.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats()
    }

    /// Whether the engine can do its work now: the broker answers (one round trip), its
    /// threads run, and no job database refuses writes.
    pub fn health(&self) -> Health {
        Health {
            broker: self.shared.broker.ping().map_err(|e| e.to_string()),
            running: self.started,
            blocked: self.shared.unrecorded.list(),
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Spawns the threads, after checking that the broker answers (an unreachable Redis is
    /// an `Err` here, not a log line) and that the base directory takes files. The recovery
    /// thread's first pass queues again, at once, the jobs the broker lost while no engine
    /// ran. Once running, the engine rides out broker outages (it retries with backoff).
    pub fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        self.shared.broker.ping()?;
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
                    .map_err(|source| Error::Spawn {
                        thread: name.clone(),
                        source,
                    })
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
                stored: Stored::Active,
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
        s.unrecorded.last_try(&s.store);
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
