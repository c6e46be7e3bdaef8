//! The dispatcher thread: takes as many jobs as workers are free (never more: backpressure,
//! not a backlog), rotating the queue order on every take so no queue starves another, and
//! hands them to the pool.

use super::handoff::Handoff;
use super::{Ending, Outcome, Running, Shared, Work};
use crate::broker::{QueueName, Taken};
use crate::job::{unix_now, Job, JobStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the dispatcher waits for more free workers before taking a partial batch.
const GATHER: Duration = Duration::from_micros(200);
/// How often the queue registry is re-read (new queues join within this).
const REFRESH: Duration = Duration::from_millis(500);

/// The dispatcher's own state.
pub struct Dispatcher {
    shared: Arc<Shared>,
    work: Arc<Handoff<Work>>,
    queues: Vec<QueueName>,
    refreshed: Option<Instant>,
    rotation: usize,
    backoff: Duration,
    /// The last take returned as many jobs as asked for: more are probably waiting.
    last_full: bool,
    /// The last wait for submits returned: if the next take finds nothing, the submit went
    /// to a queue not yet in `queues`.
    woken: bool,
}

/// The thread body.
pub fn run(shared: Arc<Shared>, work: Arc<Handoff<Work>>) {
    let mut d = Dispatcher::new(shared, work);
    while !d.shared.stopping.load(Ordering::Acquire) {
        d.run_once();
    }
    // Whatever outcomes are left are the finisher's.
    d.shared.set_dispatcher_collects(false);
}

impl Dispatcher {
    /// A dispatcher feeding `work`.
    pub fn new(shared: Arc<Shared>, work: Arc<Handoff<Work>>) -> Dispatcher {
        Dispatcher {
            shared,
            work,
            queues: Vec::new(),
            refreshed: None,
            rotation: 0,
            backoff: Duration::from_millis(50),
            last_full: false,
            woken: false,
        }
    }

    /// One step: wait for a free worker (or an outcome whose recording frees one), record
    /// the outcomes and take up to that many jobs in one broker call, hand them out. When
    /// the queues ran dry, block on the broker until a submit. Returns how many jobs were
    /// handed out.
    pub fn run_once(&mut self) -> usize {
        let s = Arc::clone(&self.shared);
        let (batch, reserved, budget) = {
            let mut g = s.slots.lock();
            g.dispatcher_collects = true;
            if g.available() == 0 {
                g.dispatcher_wants = 1;
                s.dispatch_cv.wait_for(&mut g, s.config.poll);
            }
            // Under load (the last take was full), wait briefly for more workers to finish:
            // a batch per round trip instead of a round trip per job. Bounded, so long jobs
            // lose at most GATHER of a worker's time.
            if self.last_full && g.available() > 0 && g.available() < s.config.workers {
                g.dispatcher_wants = s.config.workers;
                let until = Instant::now() + GATHER;
                while g.available() < s.config.workers && Instant::now() < until {
                    s.dispatch_cv.wait_until(&mut g, until);
                }
            }
            g.dispatcher_wants = 1;
            let budget = g.available();
            // The free slots are reserved for this take; what it does not use comes back.
            let reserved = std::mem::take(&mut g.free);
            (g.drain(super::finisher::BATCH), reserved, budget)
        };
        if s.stopping.load(Ordering::Acquire) || budget == 0 {
            self.give_up(batch, reserved);
            return 0;
        }
        let order = match self.order() {
            Ok(Some(order)) => order,
            Ok(None) => {
                // No queue exists yet: wait for the first submit (it signals like any
                // other), then read the registry again.
                self.give_up(batch, reserved);
                s.set_dispatcher_collects(false);
                if let Err(e) = s.broker.wait_for_jobs(&[], s.config.poll.min(REFRESH)) {
                    return self.failed(&e.to_string());
                }
                return 0;
            }
            Err(e) => {
                self.give_up(batch, reserved);
                return self.failed(&e);
            }
        };
        let woken = std::mem::take(&mut self.woken);
        let taken = match super::finisher::record_and_take(&s, batch, reserved, &order) {
            Ok(t) => t,
            Err(e) => return self.failed(&e.to_string()),
        };
        self.backoff = Duration::from_millis(50);
        self.last_full = taken.len() == budget;
        let got = !taken.is_empty();
        let handed = self.hand_out(taken);
        if !self.last_full {
            if woken && !got {
                // Woken by a submit, yet none of the known queues had a job: it went to a
                // queue we do not know yet. Re-read the registry and take again at once.
                self.refreshed = None;
                return handed;
            }
            // The queues ran dry: block until a submit (bounded, so new queues join within
            // REFRESH), leaving outcomes that arrive meanwhile to the finisher.
            s.set_dispatcher_collects(false);
            let wait = s.config.poll.min(REFRESH);
            if let Err(e) = s.broker.wait_for_jobs(&order, wait) {
                return handed + self.failed(&e.to_string());
            }
            self.woken = true;
        }
        handed
    }

    /// Puts the reserved slots back and the outcomes in the outbox for the finisher. Never
    /// records them here: recording retries through a broker outage, and the dispatcher must
    /// stay free to notice a shutdown (the finisher is stopped after it, with a deadline).
    fn give_up(&self, batch: Vec<Outcome>, reserved: usize) {
        let s = &self.shared;
        s.slots.lock().free += reserved;
        s.dispatch_cv.notify_one();
        super::finisher::requeue(s, batch);
    }

    /// The queues in the order to take from this time: rotated on every take, so no queue
    /// starves another. `None` when no queue is registered (the registry is read again next
    /// time); an error when the registry cannot be read.
    fn order(&mut self) -> Result<Option<Vec<QueueName>>, String> {
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.queues = self.shared.broker.queues().map_err(|e| e.to_string())?;
            self.refreshed = Some(Instant::now());
        }
        let n = self.queues.len();
        if n == 0 {
            self.refreshed = None;
            return Ok(None);
        }
        self.rotation = (self.rotation + 1) % n;
        Ok(Some(
            (0..n)
                .map(|i| self.queues[(self.rotation + i) % n].clone())
                .collect(),
        ))
    }

    /// Prepares taken jobs and hands them to the workers; returns how many were handed out.
    fn hand_out(&mut self, taken: Vec<Taken>) -> usize {
        let s = Arc::clone(&self.shared);
        if taken.is_empty() {
            return 0;
        }
        super::stats::Stats::inc(&s.stats.batches);
        let mut batch = Vec::with_capacity(taken.len());
        for t in taken {
            super::stats::Stats::inc(&s.stats.taken);
            let (job, attempt) = match t.job {
                Ok(job) => (job, t.attempt),
                Err(reason) => match self.fallback(&t.queue, t.id, t.attempt, &reason) {
                    // The fallback restored it in the broker for the attempt it chose.
                    Some(job) => {
                        let a = job.attempts;
                        (job, a)
                    }
                    // Dropped, or failed with its slot coming back when recorded.
                    None => continue,
                },
            };
            if let Some(w) = self.prepare(job, attempt) {
                batch.push(w);
            }
        }
        let handed = batch.len();
        // OurDB learns the batch is active in one write (in `strict` mode one fsync round
        // for the batch instead of one per worker).
        for e in s.store.update_many(batch.iter().map(|w| &w.job)) {
            log::error!("cannot record taken jobs active in OurDB: {e}");
        }
        if let Err(back) = self.work.send_all(batch) {
            // Workers are gone (shutdown): give the jobs back.
            for w in back {
                s.running
                    .lock()
                    .remove(&(QueueName::new(&w.job.circle, &w.job.topic), w.job.id));
                s.send_outcome(Outcome {
                    job: w.job,
                    attempt: w.attempt,
                    ending: Ending::Release,
                    frees_slot: false,
                });
            }
            return 0;
        }
        handed
    }

    fn failed(&mut self, err: &str) -> usize {
        self.shared.set_dispatcher_collects(false);
        log::warn!("dispatcher: {err}; retrying in {:?}", self.backoff);
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        0
    }

    /// The broker had no usable copy of a taken job: use OurDB's. A job known nowhere is
    /// dropped with a warning; one whose broker copy was garbage is failed with the reason.
    fn fallback(&self, q: &QueueName, id: u32, attempt: u32, reason: &str) -> Option<Job> {
        let s = &self.shared;
        let stored = match s.store.get(&q.circle, &q.topic, id) {
            Ok(j) => j,
            Err(e) => {
                log::error!("job {q}/{id}: its OurDB record is unreadable: {e}");
                None
            }
        };
        if reason.is_empty() {
            // No hash in the broker (it was restarted, or the job was deleted).
            let Some(mut job) = stored.filter(|j| !j.status.is_finished()) else {
                log::warn!("queue {q}: id {id} has no job in the broker or in OurDB; dropped");
                s.release_worker();
                return None;
            };
            job.attempts = attempt.max(job.attempts + 1);
            job.status = JobStatus::Active;
            // Put it back in the broker, active under a lease, so recovery sees it running.
            match s.broker.start(&job, job.attempts, s.config.lease) {
                Ok(crate::broker::Transition::Applied) => {}
                Ok(_) => {
                    s.release_worker(); // finished meanwhile
                    return None;
                }
                Err(e) => log::warn!("job {q}/{id}: restoring it in the broker: {e}"),
            }
            return Some(job);
        }
        log::warn!("{reason}");
        let job = stored.unwrap_or_else(|| Job {
            id,
            circle: q.circle.clone(),
            topic: q.topic.clone(),
            ..Job::default()
        });
        self.fail(
            job,
            attempt,
            format!("invalid job data in the broker: {reason}"),
        );
        None
    }

    /// Records a taken job as failed without running it. Like any outcome, its slot comes
    /// back once the failure is recorded.
    fn fail(&self, mut job: Job, attempt: u32, error: String) {
        job.status = JobStatus::Error;
        job.error = error;
        job.time_end = unix_now();
        self.shared.send_outcome(Outcome {
            job,
            attempt,
            ending: Ending::Finished,
            frees_slot: true,
        });
    }

    /// Registers the job's deadline and makes the work item for a worker (`hand_out` records
    /// the batch active in OurDB: the broker already has it active under a lease).
    fn prepare(&self, mut job: Job, attempt: u32) -> Option<Work> {
        let s = &self.shared;
        job.status = JobStatus::Active;
        job.attempts = attempt;
        if job.time_start == 0 {
            job.time_start = unix_now();
        }
        if attempt > s.config.max_attempts {
            let error = format!(
                "gave up after {} attempts (the engines running it stopped without finishing it)",
                attempt - 1
            );
            self.fail(job, attempt, error);
            return None;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + s.timeout_of(&job);
        let key = (QueueName::new(&job.circle, &job.topic), job.id);
        s.running.lock().insert(
            key,
            Running {
                job: job.clone(),
                attempt,
                deadline,
                cancel: Arc::clone(&cancel),
                timed_out: false,
            },
        );
        Some(Work {
            job,
            attempt,
            cancel,
            deadline,
        })
    }
}
