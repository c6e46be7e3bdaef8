//! The dispatcher thread: takes as many jobs as workers are free (never more: backpressure,
//! not a backlog), rotating the queue order on every take so no queue starves another, and
//! hands them to the pool.

use super::{Ending, Outcome, Running, Shared, Work};
use crate::broker::QueueName;
use crate::job::{unix_now, Job, JobStatus};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the queue registry is re-read (new queues join within this).
const REFRESH: Duration = Duration::from_millis(500);

/// The dispatcher's own state.
pub struct Dispatcher {
    shared: Arc<Shared>,
    work: Sender<Work>,
    queues: Vec<QueueName>,
    refreshed: Option<Instant>,
    rotation: usize,
    backoff: Duration,
}

/// The thread body.
pub fn run(shared: Arc<Shared>, work: Sender<Work>) {
    let mut d = Dispatcher::new(shared, work);
    while !d.shared.stopping.load(Ordering::Acquire) {
        d.run_once();
    }
}

impl Dispatcher {
    /// A dispatcher feeding `work`.
    pub fn new(shared: Arc<Shared>, work: Sender<Work>) -> Dispatcher {
        Dispatcher {
            shared,
            work,
            queues: Vec::new(),
            refreshed: None,
            rotation: 0,
            backoff: Duration::from_millis(50),
        }
    }

    /// One step: wait for a free worker, take up to that many jobs, hand them out. Returns
    /// how many were handed out.
    pub fn run_once(&mut self) -> usize {
        let s = Arc::clone(&self.shared);
        let free = {
            let mut free = s.free.lock();
            if *free == 0 {
                s.free_cv.wait_for(&mut free, s.config.poll);
            }
            *free
        };
        if free == 0 || s.stopping.load(Ordering::Acquire) {
            return 0;
        }
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            match s.broker.queues() {
                Ok(q) => {
                    self.queues = q;
                    self.refreshed = Some(Instant::now());
                }
                Err(e) => return self.failed(&e.to_string()),
            }
        }
        if self.queues.is_empty() {
            std::thread::sleep(s.config.poll.min(Duration::from_millis(100)));
            self.refreshed = None;
            return 0;
        }
        let n = self.queues.len();
        self.rotation = (self.rotation + 1) % n;
        let order: Vec<QueueName> = (0..n)
            .map(|i| self.queues[(self.rotation + i) % n].clone())
            .collect();
        // Bound the blocking wait so new queues join within REFRESH.
        let wait = s.config.poll.min(REFRESH);
        let taken = match s.broker.take(&order, free, wait, s.config.lease) {
            Ok(t) => t,
            Err(e) => return self.failed(&e.to_string()),
        };
        self.backoff = Duration::from_millis(50);
        {
            let mut f = s.free.lock();
            *f = f.saturating_sub(taken.len());
        }
        let mut handed = 0;
        for t in taken {
            super::stats::Stats::inc(&s.stats.taken);
            let job = match t.job {
                Ok(job) => job,
                Err(reason) => match self.fallback(&t.queue, t.id, t.attempt, &reason) {
                    Some(job) => job,
                    None => {
                        s.release_worker();
                        continue;
                    }
                },
            };
            if self.hand_out(job, t.attempt) {
                handed += 1;
            }
        }
        handed
    }

    fn failed(&mut self, err: &str) -> usize {
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
            let job = stored.filter(|j| !j.status.is_finished());
            if job.is_none() {
                log::warn!("queue {q}: id {id} has no job in the broker or in OurDB; dropped");
            }
            return job.map(|mut j| {
                j.attempts = attempt.max(j.attempts + 1);
                j
            });
        }
        log::warn!("{reason}");
        let mut job = stored.unwrap_or_else(|| Job {
            id,
            circle: q.circle.clone(),
            topic: q.topic.clone(),
            ..Job::default()
        });
        job.status = JobStatus::Error;
        job.error = format!("invalid job data in the broker: {reason}");
        job.time_end = unix_now();
        let _ = s.outcomes.send(Outcome {
            job,
            attempt,
            ending: Ending::Finished,
        });
        None
    }

    /// Marks the job active in OurDB, registers its deadline and gives it to a worker.
    fn hand_out(&self, mut job: Job, attempt: u32) -> bool {
        let s = &self.shared;
        job.status = JobStatus::Active;
        job.attempts = attempt;
        if job.time_start == 0 {
            job.time_start = unix_now();
        }
        if attempt > s.config.max_attempts {
            job.status = JobStatus::Error;
            job.error = format!(
                "gave up after {} attempts (the engines running it stopped without finishing it)",
                attempt - 1
            );
            job.time_end = unix_now();
            let _ = s.outcomes.send(Outcome {
                job,
                attempt,
                ending: Ending::Finished,
            });
            s.release_worker();
            return false;
        }
        if let Err(e) = s.store.update(&job) {
            log::error!(
                "job {}/{}/{}: cannot record it active in OurDB: {e}",
                job.circle,
                job.topic,
                job.id
            );
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
        if let Err(e) = self.work.send(Work {
            job,
            attempt,
            cancel,
            deadline,
        }) {
            // Workers are gone (shutdown): give the job back.
            let w = e.into_inner();
            s.running
                .lock()
                .remove(&(QueueName::new(&w.job.circle, &w.job.topic), w.job.id));
            let _ = s.outcomes.send(Outcome {
                job: w.job,
                attempt: w.attempt,
                ending: Ending::Release,
            });
            return false;
        }
        true
    }
}
