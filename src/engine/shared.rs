//! The state every engine thread shares: the worker slots and the outbox of outcomes
//! (under one lock, so the dispatcher can wait for either), the running jobs with their
//! deadlines and cancel flags, the shutdown flags and the condition variables that wake each
//! thread. The orchestration that starts and stops the threads is in `engine/mod.rs`.

use super::config::{Authenticator, EngineConfig};
use super::stats::Stats;
use super::unrecorded::Unrecorded;
use crate::broker::Broker;
use crate::job::Job;
use crate::names::JobRef;
use crate::processor::Registry;
use crate::store::JobStore;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job being run by this engine.
pub(crate) struct Running {
    /// The job as started.
    pub(crate) job: Job,
    /// Its attempt number (fencing token).
    pub(crate) attempt: u32,
    /// When it times out.
    pub(crate) deadline: Instant,
    /// Set to stop it (timeout, cancel or shutdown).
    pub(crate) cancel: Arc<AtomicBool>,
    /// The watchdog recorded a timeout; the worker's result is dropped.
    pub(crate) timed_out: bool,
    /// What the processor reports (published to the broker when it changes).
    pub(crate) progress: crate::processor::Progress,
    /// The change count of `progress` last published.
    pub(crate) progress_published: u64,
}

/// Work for a worker.
pub(crate) struct Work {
    /// Its address (from the key it was taken from: the names are fixed).
    pub(crate) job_ref: JobRef,
    /// The job, already active.
    pub(crate) job: Job,
    /// Its attempt.
    pub(crate) attempt: u32,
    /// Its cancel flag (shared with the watchdog).
    pub(crate) cancel: Arc<AtomicBool>,
    /// Its deadline (the same one the watchdog enforces).
    pub(crate) deadline: Instant,
    /// Where its processor reports progress.
    pub(crate) progress: crate::processor::Progress,
}

/// How a run ended, for the finisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
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
pub(crate) struct Outcome {
    /// The job with status, result/error, end time and log set.
    pub(crate) job: Job,
    /// The attempt it was.
    pub(crate) attempt: u32,
    /// How it ended.
    pub(crate) ending: Ending,
    /// The worker slot it held is given back once this is recorded (so jobs taken and not
    /// yet recorded never exceed the workers).
    pub(crate) frees_slot: bool,
    /// What this engine's OurDB holds of the job, which says how the outcome is written.
    pub(crate) stored: Stored,
}

/// What an engine's OurDB holds of a job when its outcome comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Its `active` version, written before it ran (or kept while the database refused
    /// writes): the outcome replaces it, and a job whose record is gone by then was deleted
    /// meanwhile and stays deleted.
    Active,
    /// Maybe nothing: it failed before it ran, and it may come from another store. The
    /// outcome creates the record if there is none.
    Maybe,
    /// Nothing, and nothing is to be written: an id the fleet never issued (planted in the
    /// broker), whose record would grow the table up to that id. The broker has the outcome.
    Never,
}

/// The dispatcher's budget and the outcomes waiting to be recorded, under one lock so the
/// dispatcher can wait for either: an outcome that frees a slot is as good as a free worker,
/// because the dispatcher records it in the same round trip that takes the next job.
#[derive(Default)]
pub(crate) struct Slots {
    /// Workers free to take a job.
    pub(crate) free: usize,
    /// Outcomes not yet recorded, oldest first.
    pub(crate) outbox: Vec<Outcome>,
    /// How many of `outbox` give a worker slot back once recorded.
    pub(crate) outbox_frees: usize,
    /// When the oldest outcome in `outbox` arrived.
    pub(crate) oldest: Option<Instant>,
    /// The dispatcher records the outbox with its next take (it is not blocked on the
    /// broker): the finisher leaves the outbox alone unless it grows stale.
    pub(crate) dispatcher_collects: bool,
    /// Available slots the dispatcher waits for before it wants waking.
    pub(crate) dispatcher_wants: usize,
}

impl Slots {
    pub(crate) fn push(&mut self, o: Outcome) {
        if o.frees_slot {
            self.outbox_frees += 1;
        }
        if self.outbox.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.outbox.push(o);
    }

    /// Takes up to `max` outcomes, oldest first.
    pub(crate) fn drain(&mut self, max: usize) -> Vec<Outcome> {
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
    pub(crate) fn available(&self) -> usize {
        self.free + self.outbox_frees
    }
}

/// State every engine thread shares.
pub(crate) struct Shared {
    /// Queues and live state.
    pub(crate) broker: Arc<dyn Broker>,
    /// OurDB per circle/topic.
    pub(crate) store: Arc<JobStore>,
    /// Processors.
    pub(crate) registry: Registry,
    /// Settings.
    pub(crate) config: EngineConfig,
    /// Counters.
    pub(crate) stats: Stats,
    /// Set when shutting down: take no more jobs.
    pub(crate) stopping: AtomicBool,
    /// Set when the grace period is over: cancelled jobs go back to their queue.
    pub(crate) cancelling: AtomicBool,
    /// Set once the workers have exited: the watchdog, recovery and finisher threads finish
    /// their last round and exit.
    pub(crate) draining: AtomicBool,
    /// Jobs running here.
    pub(crate) running: Mutex<HashMap<JobRef, Running>>,
    /// Free workers and outcomes waiting to be recorded.
    pub(crate) slots: Mutex<Slots>,
    /// Wakes the dispatcher: a worker slot came free or an outcome that frees one arrived.
    pub(crate) dispatch_cv: Condvar,
    /// Wakes the finisher: an outcome the dispatcher will not record soon.
    pub(crate) finish_cv: Condvar,
    /// Wakes the watchdog and recovery threads early on shutdown.
    pub(crate) stop_cv: Condvar,
    /// Paired with `stop_cv`.
    pub(crate) stop_lock: Mutex<()>,
    /// Circles whose jobs must carry a valid signature, with their secrets.
    pub(crate) signing: HashMap<String, Vec<u8>>,
    /// Checks each job before it runs.
    pub(crate) authenticator: Option<Authenticator>,
    /// Job versions OurDB refused, and the databases (queues) blocked until it stores them.
    pub(crate) unrecorded: Unrecorded,
}

impl Shared {
    /// Sleeps up to `d` or until shutdown starts; `true` if shutting down.
    pub(crate) fn nap(&self, d: Duration) -> bool {
        let mut g = self.stop_lock.lock();
        if !self.stopping.load(Ordering::Acquire) {
            self.stop_cv.wait_for(&mut g, d);
        }
        self.stopping.load(Ordering::Acquire)
    }

    /// Gives a worker slot back to the dispatcher.
    pub(crate) fn release_worker(&self) {
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
    pub(crate) fn send_outcome(&self, o: Outcome) {
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
    pub(crate) fn set_dispatcher_collects(&self, on: bool) {
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
    pub(crate) fn schedule_retry(&self, job: &mut Job, attempt: u32) -> bool {
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

    /// The engine's counters now, with the figures its parts keep.
    pub(crate) fn stats(&self) -> super::EngineStats {
        let (dbs_blocked, dbs_unblocked) = self.unrecorded.times();
        self.stats.snapshot(super::stats::Now {
            dbs_blocked,
            dbs_unblocked,
            unrecorded: self.unrecorded.waiting() as u64,
            running: self.running.lock().len() as u64,
            workers: self.config.workers as u64,
            blocked_dbs: self
                .unrecorded
                .list()
                .into_iter()
                .map(|(q, d)| (q, d.as_secs()))
                .collect(),
        })
    }

    /// The timeout that applies to `job`.
    pub(crate) fn timeout_of(&self, job: &Job) -> Duration {
        if job.timeout == 0 {
            self.config.default_timeout
        } else {
            Duration::from_secs(job.timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobStatus, ParamsType};
    use std::sync::atomic::AtomicBool;

    fn outcome(frees_slot: bool) -> Outcome {
        Outcome {
            job: Job::new("c", "t", ParamsType::HeroScript, "x"),
            attempt: 1,
            ending: Ending::Finished,
            frees_slot,
            stored: Stored::Active,
        }
    }

    /// The dispatcher's budget is the free workers plus the outcomes whose recording frees
    /// one (a timeout's outcome does not: its worker is freed when the run returns).
    #[test]
    fn available_counts_free_workers_and_outcomes_that_free_a_slot() {
        let mut s = Slots {
            free: 2,
            ..Slots::default()
        };
        assert_eq!(s.available(), 2);
        s.push(outcome(true));
        s.push(outcome(false));
        s.push(outcome(true));
        assert_eq!((s.outbox.len(), s.outbox_frees, s.available()), (3, 2, 4));
        assert!(s.oldest.is_some());
        let first = s.drain(2);
        assert_eq!(first.len(), 2);
        assert!(first[0].frees_slot && !first[1].frees_slot, "oldest first");
        assert_eq!((s.outbox_frees, s.available()), (1, 3));
        assert!(s.oldest.is_some(), "one outcome is still waiting");
        assert_eq!(s.drain(10).len(), 1);
        assert_eq!((s.outbox_frees, s.available(), s.oldest), (0, 2, None));
        assert!(s.drain(10).is_empty());
    }

    fn engine(workers: usize, registry: Registry) -> (crate::WatchDog, tempfile::TempDir) {
        let base = tempfile::tempdir().unwrap();
        let wd = crate::WatchDog::builder()
            .embedded()
            .base(base.path())
            .workers(workers)
            .registry(registry)
            .build()
            .unwrap();
        (wd, base)
    }

    /// Where an outcome goes: to the dispatcher's next take while it collects (and only if
    /// the outcome frees a slot it can reuse), else it waits for the finisher; a worker
    /// freed without an outcome is a free slot at once.
    #[test]
    fn outcomes_and_freed_workers_are_counted_where_the_dispatcher_sees_them() {
        let (wd, _base) = engine(4, Registry::new());
        let s = wd.shared();
        s.slots.lock().free = 0;
        s.set_dispatcher_collects(true);
        s.send_outcome(outcome(true));
        s.send_outcome(outcome(false));
        {
            let g = s.slots.lock();
            assert_eq!((g.outbox.len(), g.outbox_frees, g.available()), (2, 1, 1));
        }
        s.set_dispatcher_collects(false);
        assert!(!s.slots.lock().dispatcher_collects);
        s.release_worker();
        assert_eq!(s.slots.lock().available(), 2);
    }

    /// A running engine never holds more jobs than it has workers: with every worker
    /// blocked, the rest wait in their queue, and the slots all come back when the runs end.
    #[test]
    fn an_engine_never_takes_more_jobs_than_workers() {
        let release = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::new();
        let r = Arc::clone(&release);
        registry.register(ParamsType::HeroScript, move |_, ctx| {
            while !r.load(Ordering::Acquire) {
                ctx.sleep(Duration::from_millis(2))?;
            }
            Ok("ran".into())
        });
        let (mut wd, _base) = engine(3, registry);
        let client = wd.client();
        let jobs: Vec<Job> = (0..30)
            .map(|_| Job::new("c", "slots", ParamsType::HeroScript, "block"))
            .collect();
        let refs = client.submit_many(jobs).unwrap();
        wd.start().unwrap();
        let q = refs[0].queue().clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        while wd.stats().running < 3 {
            assert!(Instant::now() < deadline, "three jobs never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        for _ in 0..200 {
            let s = wd.shared();
            let running = s.running.lock().len();
            let available = s.slots.lock().available();
            assert!(running <= 3, "{running} running with 3 workers");
            assert!(
                running + available <= 3,
                "{running} running, {available} free"
            );
            assert!(
                client.queue_len(&q).unwrap() >= 27,
                "more taken than workers"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        release.store(true, Ordering::Release);
        for job in client.wait_many(&refs, Duration::from_secs(60)).unwrap() {
            assert_eq!(job.status, JobStatus::Done);
        }
        wd.stop();
        let g = wd.shared().slots.lock();
        assert_eq!((g.free, g.outbox.len()), (3, 0), "every slot came back");
    }
}
