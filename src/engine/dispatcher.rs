//! The dispatcher thread: takes as many jobs as workers are free (never more: backpressure,
//! not a backlog), rotating the queue order on every take so no queue starves another, and
//! hands them to the pool.

use super::config::{QueuePattern, QueueSelection};
use super::finisher::Deferred;
use super::handoff::Handoff;
use super::shared::{Ending, Outcome, Running, Shared, Stored, Work};
use crate::broker::Taken;
use crate::job::{unix_now, Job, JobStatus};
use crate::names::{JobRef, QueueName};
use crate::store::Absent;
use parking_lot::MutexGuard;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the dispatcher waits for more free workers before taking a partial batch.
const GATHER: Duration = Duration::from_micros(200);
/// How often the queue registry is re-read (new queues join within this).
const REFRESH: Duration = Duration::from_millis(500);

/// The dispatcher's own state.
pub(crate) struct Dispatcher {
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
    /// Queues skipped until the given time: one just handed back a job this engine cannot
    /// run, so the engines that can get to it first.
    paused: Vec<(QueueName, Instant)>,
    /// State of the weighted order's random generator (xorshift).
    rng: u64,
    /// Outcomes recorded in the broker, to be written to OurDB during the next broker call
    /// (see [`finisher::record_and_take`](super::finisher::record_and_take)) or before any
    /// wait that can be long.
    deferred: Option<Deferred>,
    /// Per queue, the top of the window of recordable ids as last computed (see
    /// [`Dispatcher::issued`]).
    issued: HashMap<QueueName, u64>,
}

/// A job known only by its address (its broker copy is garbage and OurDB has none), to
/// record its failure under.
fn bare_job(q: &QueueName, id: u32) -> Job {
    Job {
        id,
        circle: q.circle().to_string(),
        topic: q.topic().to_string(),
        ..Job::default()
    }
}

/// How long a queue is skipped after a job of it was handed back.
const HANDBACK_PAUSE: Duration = Duration::from_millis(250);

/// The selected queues that exist: listed ones as given, `circle/*` expanded from the
/// registry.
fn expand<'a>(
    list: impl Iterator<Item = &'a QueuePattern>,
    registered: &[QueueName],
) -> Vec<QueueName> {
    let mut out: Vec<QueueName> = Vec::new();
    for sel in list {
        match sel.queue() {
            Some(q) => {
                if !out.contains(&q) {
                    out.push(q);
                }
            }
            None => {
                for q in registered.iter().filter(|q| sel.matches(q)) {
                    if !out.contains(q) {
                        out.push(q.clone());
                    }
                }
            }
        }
    }
    out
}

/// The thread body.
pub(crate) fn run(shared: Arc<Shared>, work: Arc<Handoff<Work>>) {
    let mut d = Dispatcher::new(shared, work);
    while !d.shared.stopping.load(Ordering::Acquire) {
        d.run_once();
    }
    d.write_deferred();
    // Whatever outcomes are left are the finisher's.
    d.shared.set_dispatcher_collects(false);
}

impl Dispatcher {
    /// A dispatcher feeding `work`.
    pub(crate) fn new(shared: Arc<Shared>, work: Arc<Handoff<Work>>) -> Dispatcher {
        Dispatcher {
            shared,
            work,
            queues: Vec::new(),
            refreshed: None,
            rotation: 0,
            backoff: Duration::from_millis(50),
            last_full: false,
            woken: false,
            paused: Vec::new(),
            rng: u64::from_str_radix(&crate::store::random_hex(8), 16).unwrap_or(0x9e37_79b9) | 1,
            deferred: None,
            issued: HashMap::new(),
        }
    }

    /// Whether job `id` of `q` may be recorded in OurDB. Its record makes the lookup table
    /// cover every id up to it (six bytes an id, allocated) and moves the database's next id
    /// past it: one job planted in the broker at id 4294967295 cost 24 GiB of disk and left
    /// the queue no id to hand out. So an id is recordable if it lies within OurDB's own
    /// window above the database's next id ([`MAX_ID_GAP`], the bound open puts on a next
    /// id beyond the table: 96 MiB of table at most), or the fleet's id counter issued it.
    /// Not the counter alone: it can be behind ids stores are using (Redis restored from
    /// an older snapshot, a promoted replica, an evicted key, a counter restarted after a
    /// loss), and a job failed for that would be a real job lost. The counter is read only
    /// for an id beyond the window (rare for real jobs: this database would have to be
    /// millions of ids behind the fleet), and what it says is not cached, so a counter raised
    /// for a moment does not open the way for later jobs. Returns the reason when not.
    ///
    /// [`MAX_ID_GAP`]: crate::ourdb::format::MAX_ID_GAP
    fn issued(&mut self, q: &QueueName, id: u32) -> Result<(), String> {
        use crate::ourdb::format::MAX_ID_GAP;
        let id = u64::from(id);
        // The window as last computed (it only moves up: the next id only grows). One map
        // lookup per job on the usual path.
        if self.issued.get(q).is_some_and(|w| id <= *w) {
            return Ok(());
        }
        let s = &self.shared;
        let next = match s.store.db(q) {
            Ok(db) => db.next_id(),
            // The active write will meet (and report) the same error.
            Err(_) => return Ok(()),
        };
        let window = next.max(1) - 1 + MAX_ID_GAP;
        let known = self.issued.entry(q.clone()).or_insert(0);
        *known = (*known).max(window);
        if id <= window {
            return Ok(());
        }
        let counter = match s.broker.ids_issued(q) {
            Ok(c) => c,
            Err(e) => {
                // Unverifiable now; the broker just answered the take, so this is rare.
                log::warn!("job {q}/{id}: reading the fleet's id counter: {e}; taken as issued");
                return Ok(());
            }
        };
        if counter.is_some_and(|c| id <= c) {
            return Ok(());
        }
        let counter = counter.map_or_else(|| "missing".to_string(), |c| format!("at {c}"));
        Err(format!(
            "id {id} was never issued: more than {MAX_ID_GAP} above this store's next id \
             ({next}) and above the fleet's id counter of {q} ({counter}); a job planted in \
             the broker, not recorded in OurDB"
        ))
    }

    /// Writes the deferred outcomes to OurDB now: before any wait that can be long (all
    /// workers busy, submits, a back-off), so that none waits longer than one busy round
    /// trip and the gather (at most [`GATHER`]).
    fn write_deferred(&mut self) {
        super::finisher::write_deferred(&self.shared, &mut self.deferred);
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// One step: wait for a free worker (or an outcome whose recording frees one), record
    /// the outcomes and take up to that many jobs in one broker call, hand them out. When
    /// the queues ran dry, block on the broker until a submit. Returns how many jobs were
    /// handed out.
    pub(crate) fn run_once(&mut self) -> usize {
        let s = Arc::clone(&self.shared);
        let (batch, reserved, budget) = {
            let mut g = s.slots.lock();
            g.dispatcher_collects = true;
            if g.available() == 0 && self.deferred.is_some() {
                MutexGuard::unlocked(&mut g, || self.write_deferred());
            }
            if g.available() == 0 {
                g.dispatcher_wants = 1;
                s.dispatch_cv.wait_for(&mut g, s.config.poll);
            }
            // Under load (the last take was full), wait briefly for more workers to finish:
            // a batch per round trip instead of a round trip per job. Bounded, so long jobs
            // lose at most GATHER of a worker's time.
            // (What waits for OurDB stays waiting through this wait: it is short, and the
            // next call, right after it, is where that work overlaps Redis.)
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
        let (taken, next_due) =
            match super::finisher::record_and_take(&s, batch, reserved, &order, &mut self.deferred)
            {
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
                // queue we do not know yet. Re-read the registry and take again at once
                // (the registry's reads come first: what waits is written now).
                self.write_deferred();
                self.refreshed = None;
                return handed;
            }
            // The queues ran dry: block until a submit (bounded, so new queues join within
            // REFRESH, and a scheduled job starts at its due time), leaving outcomes that
            // arrive meanwhile to the finisher.
            s.set_dispatcher_collects(false);
            self.write_deferred();
            let mut wait = s.config.poll.min(REFRESH);
            if let Some(due) = next_due {
                let left = due.saturating_sub(crate::job::unix_now_ms());
                wait = wait.min(Duration::from_millis(left.max(1)));
            }
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
    fn give_up(&mut self, batch: Vec<Outcome>, reserved: usize) {
        self.write_deferred();
        let s = &self.shared;
        s.slots.lock().free += reserved;
        s.dispatch_cv.notify_one();
        super::finisher::requeue(s, batch);
    }

    /// The queues in the order to take from this time, from the engine's selection: all
    /// registered queues rotated on every take (so no queue starves another), the strict
    /// list as given, or a weighted random order. `None` when no queue is there (the
    /// registry is read again next time); an error when the registry cannot be read.
    fn order(&mut self) -> Result<Option<Vec<QueueName>>, String> {
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            let selection = &self.shared.config.queues;
            let mut registered = self.shared.broker.queues().map_err(|e| e.to_string())?;
            // Paused queues are read with the registry: a pause holds within REFRESH.
            let paused = self.shared.broker.paused().map_err(|e| e.to_string())?;
            registered.retain(|q| !paused.contains(q));
            self.queues = match selection {
                QueueSelection::All => registered,
                QueueSelection::Strict(list) => expand(list.iter(), &registered),
                QueueSelection::Weighted(list) => expand(list.iter().map(|(q, _)| q), &registered),
            };
            self.queues.retain(|q| !paused.contains(q));
            self.refreshed = Some(Instant::now());
        }
        let now = Instant::now();
        self.paused.retain(|(_, until)| *until > now);
        let live: Vec<QueueName> = self
            .queues
            .iter()
            .filter(|q| !self.paused.iter().any(|(p, _)| p == *q))
            // A database that cannot store outcomes: its jobs wait in their queue.
            .filter(|q| !self.shared.unrecorded.is_blocked(q))
            .cloned()
            .collect();
        let n = live.len();
        if n == 0 {
            self.refreshed = None;
            return Ok(None);
        }
        match &self.shared.config.queues {
            QueueSelection::All => {
                self.rotation = (self.rotation + 1) % n;
                Ok(Some(
                    (0..n)
                        .map(|i| live[(self.rotation + i) % n].clone())
                        .collect(),
                ))
            }
            QueueSelection::Strict(_) => Ok(Some(live)),
            QueueSelection::Weighted(list) => {
                let weight = |q: &QueueName| {
                    list.iter()
                        .find(|(s, _)| s.matches(q))
                        .map_or(1, |(_, w)| *w as u64)
                };
                // Weighted sampling without replacement: each pick takes a queue with
                // probability proportional to its weight among those left.
                let mut left: Vec<(QueueName, u64)> = live
                    .into_iter()
                    .map(|q| {
                        let w = weight(&q);
                        (q, w)
                    })
                    .collect();
                let mut out = Vec::with_capacity(left.len());
                while !left.is_empty() {
                    let total: u64 = left.iter().map(|(_, w)| w).sum();
                    let mut r = self.next_random() % total.max(1);
                    let mut pick = 0;
                    for (i, (_, w)) in left.iter().enumerate() {
                        if r < *w {
                            pick = i;
                            break;
                        }
                        r -= w;
                    }
                    out.push(left.swap_remove(pick).0);
                }
                Ok(Some(out))
            }
        }
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
            let r = t.queue.job(t.id);
            if let Err(reason) = self.issued(&t.queue, t.id) {
                log::warn!("job {r}: {reason}");
                super::stats::Stats::inc(&s.stats.refused_ids);
                match t.job {
                    // Failed in the broker only: nothing of it goes to OurDB.
                    Ok(job) => self.fail(job, t.attempt, reason, Stored::Never),
                    Err(broker_reason) if !broker_reason.is_empty() => {
                        self.fail(bare_job(&t.queue, t.id), t.attempt, reason, Stored::Never)
                    }
                    // No hash in the broker either: nothing to fail (as `fallback` does).
                    Err(_) => s.release_worker(),
                }
                continue;
            }
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
            if let Some(w) = self.prepare(r, job, attempt) {
                batch.push(w);
            }
        }
        let handed = batch.len();
        // OurDB learns the batch is active in one write (in `strict` mode one fsync round
        // for the batch instead of one per worker).
        s.unrecorded.store(
            &s.store,
            s.draining.load(Ordering::Acquire),
            batch.iter().map(|w| &w.job).collect(),
            // Created if absent: the job may have been submitted through another store.
            Absent::Create,
            "recording taken jobs active",
        );
        if let Err(back) = self.work.send_all(batch) {
            // Workers are gone (shutdown): give the jobs back.
            for w in back {
                s.running.lock().remove(&w.job_ref);
                s.send_outcome(Outcome {
                    job: w.job,
                    attempt: w.attempt,
                    ending: Ending::Release,
                    frees_slot: false,
                    stored: Stored::Active,
                });
            }
            return 0;
        }
        handed
    }

    /// A job no processor here can run: handed back to its queue (not counted as an
    /// attempt) while some engine of the fleet claims its type, or failed with a clear error
    /// once it waited `unclaimed_timeout` and nobody does. `Some(work)` never: it does not
    /// run here.
    fn hand_back_or_fail(&mut self, r: JobRef, job: Job, attempt: u32) {
        let s = Arc::clone(&self.shared);
        let t = job.params_type.as_str().to_string();
        let within = s.config.unclaimed_timeout;
        let claimed = s.broker.type_claimed(&t, within).unwrap_or(true);
        let age = (unix_now() - job.time_scheduled).max(0) as u64;
        if claimed || age < within.as_secs() {
            let q = r.queue().clone();
            self.paused.retain(|(p, _)| *p != q);
            self.paused.push((q, Instant::now() + HANDBACK_PAUSE));
            s.send_outcome(Outcome {
                job,
                attempt,
                ending: Ending::HandBack,
                frees_slot: true,
                stored: Stored::Maybe,
            });
        } else {
            let error = format!(
                "no engine of the fleet runs params type {t:?} (none claimed it for {} s)",
                within.as_secs()
            );
            self.fail(job, attempt, error, Stored::Maybe);
        }
    }

    fn failed(&mut self, err: &str) -> usize {
        self.write_deferred();
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
        let stored = match s.store.get(q, id) {
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
        let job = stored.unwrap_or_else(|| bare_job(q, id));
        self.fail(
            job,
            attempt,
            format!("invalid job data in the broker: {reason}"),
            Stored::Maybe,
        );
        None
    }

    /// Records a taken job as failed without running it. Like any outcome, its slot comes
    /// back once the failure is recorded. `stored`: what OurDB holds of it — its `active`
    /// version was not written, so `Stored::Maybe` (created if absent), or `Stored::Never`.
    fn fail(&self, mut job: Job, attempt: u32, error: String, stored: Stored) {
        job.attempts = job.attempts.max(attempt);
        job.status = JobStatus::Error;
        job.error = error;
        job.time_end = unix_now();
        self.shared.send_outcome(Outcome {
            job,
            attempt,
            ending: Ending::Finished,
            frees_slot: true,
            stored,
        });
    }

    /// Registers the job's deadline and makes the work item for a worker (`hand_out` records
    /// the batch active in OurDB: the broker already has it active under a lease).
    fn prepare(&mut self, r: JobRef, mut job: Job, attempt: u32) -> Option<Work> {
        let s = Arc::clone(&self.shared);
        if s.registry.get(&job.params_type).is_none() {
            self.hand_back_or_fail(r, job, attempt);
            return None;
        }
        job.status = JobStatus::Active;
        job.attempts = attempt;
        if job.time_start == 0 {
            job.time_start = unix_now();
        }
        // Starts handed back without a verdict (shutdown, hand-back) do not count: only
        // runs that died do.
        let counted = attempt
            .saturating_sub(job.released)
            .saturating_sub(job.attempt_base);
        // A retry policy allows as many runs as it says; runs that died count against the
        // larger of the two limits.
        let limit = job
            .retry
            .as_ref()
            .or(s.config.retry.as_ref())
            .map_or(0, |p| p.max_attempts)
            .max(s.config.max_attempts);
        if counted > limit {
            let error = format!(
                "gave up after {} attempts (the engines running it stopped without finishing it)",
                counted - 1
            );
            self.fail(job, attempt, error, Stored::Maybe);
            return None;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = crate::processor::Progress::default();
        let deadline = Instant::now() + s.timeout_of(&job);
        s.running.lock().insert(
            r.clone(),
            Running {
                job: job.clone(),
                attempt,
                deadline,
                cancel: Arc::clone(&cancel),
                timed_out: false,
                progress: progress.clone(),
                progress_published: 0,
            },
        );
        Some(Work {
            job_ref: r,
            job,
            attempt,
            cancel,
            deadline,
            progress,
        })
    }
}
