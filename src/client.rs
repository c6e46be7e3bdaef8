//! The blocking `Client`: the library's front door for submitting jobs, reading them back,
//! waiting for them and managing queues. It writes OurDB (the record of truth, which assigns
//! ids) first, then the broker in one round trip.

use crate::broker::redis::{RedisBroker, RedisConfig};
use crate::broker::{Broker, QueueName, Transition, Wake};
use crate::error::{Error, Result};
use crate::job::{unix_now, Job, JobStatus};
use crate::ourdb::Durability;
use crate::store::{fix_names, JobStore};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a `wait` blocks on the completion signal before it reads the job again.
pub const WAIT_RECHECK: Duration = Duration::from_millis(1500);

/// A job id with its status, or why its record could not be read.
pub type ListedJob = (u32, std::result::Result<JobStatus, String>);

/// What [`Client::list_page`] looks for: jobs newest first, optionally of one status,
/// starting below `before`, at most `limit` of them, reading at most `budget` records.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// Only jobs with this status (`None`: all).
    pub status: Option<JobStatus>,
    /// Start below this id (`None`: from the newest job).
    pub before: Option<u32>,
    /// Jobs on the page at most.
    pub limit: usize,
    /// Records read at most: a page of a rare status in a long history stops here and says
    /// where to go on, so no request scans a whole database.
    pub budget: usize,
}

impl Default for PageQuery {
    fn default() -> Self {
        PageQuery {
            status: None,
            before: None,
            limit: 50,
            budget: 10_000,
        }
    }
}

/// One page of a circle/topic's jobs from OurDB, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    /// The jobs found.
    pub jobs: Vec<Job>,
    /// Ids whose record could not be read, with why.
    pub unreadable: Vec<(u32, String)>,
    /// Where the next page starts (pass it as `before`); `None` at the oldest job.
    pub next: Option<u32>,
    /// Records read for this page.
    pub scanned: usize,
    /// The highest id this base's OurDB holds for the circle/topic (ids come in blocks per
    /// store, so it bounds the jobs submitted here rather than counting them).
    pub highest_id: u64,
}

/// Submits, reads and waits for jobs. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Client {
    broker: Arc<dyn Broker>,
    store: Arc<JobStore>,
    /// Circles whose jobs this client signs, with their secrets.
    signers: Arc<HashMap<String, Vec<u8>>>,
}

impl Client {
    /// A client for the Redis at `redis_url` with job databases under `base`.
    ///
    /// ```no_run
    /// use herojobs::{Client, Job, ParamsType};
    /// let client = Client::connect("redis://127.0.0.1:6379", "/tmp/hero")?;
    /// let id = client.submit(Job::new("demo", "default", ParamsType::HeroScript,
    ///     "!!fake.return_success message:'hi'"))?;
    /// let job = client.wait("demo", "default", id, std::time::Duration::from_secs(10))?;
    /// println!("{}: {}", job.status, job.result);
    /// # Ok::<(), herojobs::Error>(())
    /// ```
    pub fn connect(redis_url: &str, base: impl Into<PathBuf>) -> Result<Client> {
        let broker = RedisBroker::new(RedisConfig::new(redis_url))?;
        Ok(Client::with_parts(
            Arc::new(broker),
            Arc::new(JobStore::new(base, Durability::Periodic)),
        ))
    }

    /// A client over an existing broker and job store (shared with an engine).
    pub fn with_parts(broker: Arc<dyn Broker>, store: Arc<JobStore>) -> Client {
        Client {
            broker,
            store,
            signers: Arc::new(HashMap::new()),
        }
    }

    /// Signs every job this client submits to `circle` with `secret` (HMAC-SHA256, see
    /// [`crate::signing`]), for engines that require signed jobs in that circle. Refuses
    /// secrets shorter than [`crate::signing::MIN_SECRET_LEN`].
    pub fn with_signing(mut self, circle: &str, secret: impl Into<Vec<u8>>) -> Result<Client> {
        // The same name fixing as submit's, so the secret is found for the job's circle.
        let circle = crate::names::path_name("circle", circle)?;
        let secret = secret.into();
        crate::signing::check_secret(&circle, &secret)?;
        Arc::make_mut(&mut self.signers).insert(circle, secret);
        Ok(self)
    }

    /// Refuses jobs whose record, as submitted, would leave no room under the database's
    /// `record_size_max` for their outcome (see [`crate::limits`]); nothing is stored.
    fn check_fit(&self, circle: &str, topic: &str, jobs: &[Job]) -> Result<()> {
        let max = self
            .store
            .db(circle, topic)?
            .stored_config()
            .record_size_max;
        for job in jobs {
            crate::limits::check_submit(job, max)?;
        }
        Ok(())
    }

    /// Signs the jobs of signing circles (their ids are assigned now) and writes the signed
    /// version to OurDB too, so a job recovery re-queues from OurDB still verifies. Called
    /// between the OurDB add and the enqueue.
    fn sign_prepared(&self, jobs: &mut [Job], which: &[usize]) -> Result<()> {
        if self.signers.is_empty() {
            return Ok(());
        }
        let mut signed = Vec::new();
        for &i in which {
            let job = &mut jobs[i];
            if let Some(secret) = self.signers.get(&job.circle) {
                job.signature = crate::signing::sign(job, secret);
                signed.push(i);
            }
        }
        if let Some(e) = self
            .store
            .update_many(signed.iter().map(|&i| &jobs[i]))
            .into_iter()
            .next()
        {
            return Err(e.into());
        }
        Ok(())
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The job store.
    pub fn store(&self) -> &Arc<JobStore> {
        &self.store
    }

    /// Submits one job and returns its id: saved to OurDB (which assigns the id), then
    /// stored, queued and its queue registered in one atomic round trip.
    pub fn submit(&self, job: Job) -> Result<u32> {
        Ok(self.submit_many(vec![job])?[0])
    }

    /// Submits many jobs: one OurDB batch per circle/topic and one broker round trip for
    /// all (plus one per [`ID_BLOCK`](crate::store::ID_BLOCK) ids, to reserve a block of
    /// ids fleet-wide). Ids are returned in input order; each is unique within its
    /// circle/topic across every store that shares the broker.
    ///
    /// A job is acknowledged only when the broker holds exactly it under its id: each carries
    /// a random submit token that the enqueue compares atomically. A job that meets another
    /// one under its id (possible only after Redis lost its id counters) is not acknowledged:
    /// its OurDB record is removed and it is submitted again under a fresh id.
    pub fn submit_many(&self, jobs: Vec<Job>) -> Result<Vec<u32>> {
        const ROUNDS: usize = 5;
        let now = unix_now();
        let identity = self.store.identity()?;
        let mut prepared = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let (c, t) = fix_names(&job.circle, &job.topic)?;
            job.circle = c;
            job.topic = t;
            job.status = JobStatus::New;
            job.time_scheduled = now;
            job.time_start = 0;
            job.time_end = 0;
            job.attempts = 0;
            job.released = 0;
            job.error.clear();
            job.result.clear();
            job.signature.clear();
            job.store = identity.clone();
            prepared.push(job);
        }
        // Indexes of the jobs still to be acknowledged.
        let mut todo: Vec<usize> = (0..prepared.len()).collect();
        for _ in 0..ROUNDS {
            let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
            for &i in &todo {
                let j = &mut prepared[i];
                j.token = crate::store::token();
                groups
                    .entry((j.circle.clone(), j.topic.clone()))
                    .or_default()
                    .push(i);
            }
            for ((c, t), idx) in &groups {
                let batch: Vec<Job> = idx.iter().map(|&i| prepared[i].clone()).collect();
                let q = QueueName::new(c, t);
                let broker = &self.broker;
                let mut reserve = |floor: u64, count: u64| {
                    broker
                        .reserve_ids(&q, floor, count)
                        .map_err(|e| e.to_string())
                };
                self.check_fit(c, t, &batch)?;
                let ids = self.store.add(c, t, &batch, &mut reserve)?;
                for (&i, id) in idx.iter().zip(ids) {
                    prepared[i].id = id;
                }
            }
            self.sign_prepared(&mut prepared, &todo)?;
            let batch: Vec<Job> = todo.iter().map(|&i| prepared[i].clone()).collect();
            let conflicts = match self.broker.enqueue(&batch) {
                Ok(c) => c,
                Err(source) => {
                    let first = &batch[0];
                    return Err(Error::NotQueued {
                        circle: first.circle.clone(),
                        topic: first.topic.clone(),
                        id: first.id,
                        source: Box::new(source),
                    });
                }
            };
            if conflicts.is_empty() {
                return Ok(prepared.iter().map(|j| j.id).collect());
            }
            let mut again = Vec::with_capacity(conflicts.len());
            for k in conflicts {
                let i = todo[k];
                let j = &prepared[i];
                log::warn!(
                    "job {}/{}/{}: the id is taken in Redis by another job; submitting again under a fresh id",
                    j.circle, j.topic, j.id
                );
                // Never acknowledged: the record goes, and so does the rest of its block.
                self.store.delete(&j.circle, &j.topic, j.id)?;
                self.store.end_block(&j.circle, &j.topic)?;
                again.push(i);
            }
            todo = again;
        }
        let first = &prepared[todo[0]];
        Err(Error::IdConflict {
            circle: first.circle.clone(),
            topic: first.topic.clone(),
            rounds: ROUNDS,
        })
    }

    fn queue(circle: &str, topic: &str) -> Result<QueueName> {
        let (c, t) = fix_names(circle, topic)?;
        Ok(QueueName {
            circle: c,
            topic: t,
        })
    }

    /// A job: from the broker while it holds it, else from OurDB. A finished job that this
    /// store submitted and still has unfinished (another engine, on any host, ran it) is
    /// recorded here as it is read, so this store keeps its outcome after the broker
    /// forgets it.
    pub fn get(&self, circle: &str, topic: &str, id: u32) -> Result<Job> {
        let q = Self::queue(circle, topic)?;
        if let Some(job) = self.broker.get(&q, id)? {
            if job.status.is_finished() {
                self.learn_outcome(&job);
            }
            return Ok(job);
        }
        self.store
            .get(&q.circle, &q.topic, id)?
            .ok_or(Error::NotFound {
                circle: q.circle,
                topic: q.topic,
                id,
            })
    }

    /// Records a finished job read from the broker in this store's OurDB when this store
    /// submitted it and has it still new (another engine ran it). Best effort: a failure only means recovery copies it later.
    fn learn_outcome(&self, job: &Job) {
        let identity = self.store.identity().unwrap_or_default();
        if job.store != identity {
            return; // not ours: its submitter's store learns it
        }
        match self.store.get(&job.circle, &job.topic, job.id) {
            // `new` here: this store never ran it (an engine on this base records `active`,
            // then the outcome itself, and would only be raced into a second version).
            Ok(Some(local)) if local.status == JobStatus::New && local.token == job.token => {
                if let Err(e) = self.store.update(job) {
                    log::debug!(
                        "job {}/{}/{}: recording its outcome: {e}",
                        job.circle,
                        job.topic,
                        job.id
                    );
                }
            }
            _ => {}
        }
    }

    /// Blocks until the job is done or error (or `timeout` passes) on the job's completion
    /// signal, reading the job again at least every [`WAIT_RECHECK`] (so a broker that lost
    /// its data, and with it the signal, costs a waiter at most that much).
    pub fn wait(&self, circle: &str, topic: &str, id: u32, timeout: Duration) -> Result<Job> {
        let q = Self::queue(circle, topic)?;
        let start = Instant::now();
        loop {
            let job = self.get(&q.circle, &q.topic, id)?;
            if job.status.is_finished() {
                return Ok(job);
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::WaitTimeout {
                    circle: q.circle,
                    topic: q.topic,
                    id,
                    waited: timeout,
                });
            }
            // A wake-up that carries the finished job ends the wait; any other, look again:
            // the job decides, the signal only wakes us. Each block is bounded by
            // WAIT_RECHECK: if the broker lost its data (a restart, FLUSHALL) it also lost our
            // waiter registration, so no signal would come; the next look reads the job
            // (from OurDB when the broker has no copy).
            if let Wake::Finished(job) = self.broker.wait_done(&q, id, left.min(WAIT_RECHECK))? {
                // The signal's JSON has no token or store (they live in hash fields): a job
                // this store still has new was run elsewhere, and a `get` reads them.
                if self
                    .store
                    .get(&q.circle, &q.topic, id)
                    .is_ok_and(|l| l.is_some_and(|l| l.status == JobStatus::New))
                {
                    let j = self.get(&q.circle, &q.topic, id)?;
                    if j.status.is_finished() {
                        return Ok(j);
                    }
                    continue;
                }
                return Ok(*job);
            }
        }
    }

    /// Number of waiting jobs in a queue.
    pub fn queue_len(&self, circle: &str, topic: &str) -> Result<u64> {
        Ok(self.broker.queue_len(&Self::queue(circle, topic)?)?)
    }

    /// Waiting job ids, next to run first.
    pub fn queue_ids(&self, circle: &str, topic: &str) -> Result<Vec<u32>> {
        Ok(self.broker.queue_ids(&Self::queue(circle, topic)?)?)
    }

    /// The next job to run from a queue, without taking it.
    pub fn peek(&self, circle: &str, topic: &str) -> Result<Option<Job>> {
        let q = Self::queue(circle, topic)?;
        match self.broker.peek(&q)? {
            Some(id) => self.get(&q.circle, &q.topic, id).map(Some),
            None => Ok(None),
        }
    }

    /// Removes every waiting job of a queue (and their live state); returns how many. Their
    /// OurDB records stay (history), marked error so recovery does not queue them again.
    pub fn empty_queue(&self, circle: &str, topic: &str) -> Result<u64> {
        let q = Self::queue(circle, topic)?;
        let ids = self.broker.queue_ids(&q)?;
        let n = self.broker.empty(&q)?;
        for id in ids {
            if let Some(mut job) = self.store.get(&q.circle, &q.topic, id)? {
                if !job.status.is_finished() {
                    job.status = JobStatus::Error;
                    job.error = "removed from its queue (queue emptied)".into();
                    job.time_end = unix_now();
                    self.store.update(&job)?;
                }
            }
        }
        Ok(n)
    }

    /// Registered queues.
    pub fn queues(&self) -> Result<Vec<QueueName>> {
        Ok(self.broker.queues()?)
    }

    /// Cancels a job that has not finished: a waiting, delayed or retry-waiting job leaves
    /// its queue, a running one (on any engine of the fleet) has its cancel flag set and its
    /// late result is dropped; either way it ends `error` with `cancelled`. `false` if it had
    /// finished already.
    pub fn cancel(&self, circle: &str, topic: &str, id: u32) -> Result<bool> {
        self.cancel_with(circle, topic, id, "cancelled")
    }

    fn cancel_with(&self, circle: &str, topic: &str, id: u32, why: &str) -> Result<bool> {
        let q = Self::queue(circle, topic)?;
        let mut job = self.get(&q.circle, &q.topic, id)?;
        if job.status.is_finished() {
            return Ok(false);
        }
        job.status = JobStatus::Error;
        job.error = why.to_string();
        job.time_end = unix_now();
        job.run_at_ms = 0;
        let outcome = self.broker.cancel(&job)?;
        if outcome == crate::broker::Cancel::AlreadyFinished {
            return Ok(false);
        }
        // OurDB records the cancel where this store has the job (the record of truth: a
        // recovery after Redis loses its data must not queue it again).
        if let Ok(Some(local)) = self.store.get(&q.circle, &q.topic, id) {
            if !local.status.is_finished() {
                self.store.update(&job)?;
            }
        }
        Ok(true)
    }

    /// Puts a job that ended in error (a dead job, or any failed one) back in its queue as
    /// new, with its attempts counted afresh. `false` if it had not failed.
    pub fn retry(&self, circle: &str, topic: &str, id: u32) -> Result<bool> {
        let q = Self::queue(circle, topic)?;
        let mut job = self.get(&q.circle, &q.topic, id)?;
        if job.status != JobStatus::Error {
            return Ok(false);
        }
        job.status = JobStatus::New;
        job.attempt_base = job.attempts.saturating_sub(job.released);
        job.error.clear();
        job.result.clear();
        job.time_start = 0;
        job.time_end = 0;
        job.run_at_ms = 0;
        let t = self.broker.retry_failed(&job)?;
        match t {
            Transition::Applied => {}
            Transition::Missing => {
                // Its hash expired (retention): queue it again from its record.
                if !self.broker.enqueue(std::slice::from_ref(&job))?.is_empty() {
                    return Err(Error::IdConflict {
                        circle: q.circle,
                        topic: q.topic,
                        rounds: 1,
                    });
                }
            }
            _ => return Ok(false),
        }
        if self.store.get(&q.circle, &q.topic, id)?.is_some() {
            self.store.update(&job)?;
        }
        Ok(true)
    }

    /// Dead jobs of a queue (ended in error after their last attempt), newest first, with
    /// when they died (unix ms): `limit` from `offset`.
    pub fn dead(
        &self,
        circle: &str,
        topic: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(u32, u64)>> {
        Ok(self
            .broker
            .dead(&Self::queue(circle, topic)?, offset, limit)?)
    }

    /// Empties the dead set of a queue (the jobs stay recorded as failed); returns how many.
    pub fn purge_dead(&self, circle: &str, topic: &str) -> Result<u64> {
        Ok(self.broker.purge_dead(&Self::queue(circle, topic)?)?)
    }

    /// Pauses a queue: no engine takes from it until [`resume`](Client::resume) (within
    /// half a second); jobs submitted meanwhile wait in it.
    pub fn pause(&self, circle: &str, topic: &str) -> Result<()> {
        Ok(self.broker.set_paused(&Self::queue(circle, topic)?, true)?)
    }

    /// Resumes a paused queue.
    pub fn resume(&self, circle: &str, topic: &str) -> Result<()> {
        Ok(self
            .broker
            .set_paused(&Self::queue(circle, topic)?, false)?)
    }

    /// The paused queues.
    pub fn paused(&self) -> Result<Vec<QueueName>> {
        Ok(self.broker.paused()?)
    }

    /// Jobs ever submitted per queue, as the broker counts them (since it last lost its data).
    pub fn submitted(&self) -> Result<Vec<(QueueName, u64)>> {
        Ok(self.broker.submitted()?)
    }

    /// Dead jobs and scheduled (delayed or retry-waiting) jobs of a queue: two counts.
    pub fn lifecycle_counts(&self, circle: &str, topic: &str) -> Result<(u64, u64)> {
        Ok(self.broker.lifecycle_counts(&Self::queue(circle, topic)?)?)
    }

    /// Delayed jobs and jobs waiting for a retry, next due first, with their due time (ms).
    pub fn scheduled(&self, circle: &str, topic: &str, limit: usize) -> Result<Vec<(u32, u64)>> {
        Ok(self.broker.scheduled(&Self::queue(circle, topic)?, limit)?)
    }

    /// Deletes a job everywhere; `false` if it existed nowhere. A running job is cancelled
    /// first and its Redis state stays as a tombstone until the finished TTL, so its late
    /// result can never bring it back.
    pub fn delete(&self, circle: &str, topic: &str, id: u32) -> Result<bool> {
        let q = Self::queue(circle, topic)?;
        if let Ok(Some(live)) = self.broker.get(&q, id) {
            if live.status == JobStatus::Active {
                self.cancel_with(&q.circle, &q.topic, id, "deleted")?;
                let stored = self.store.delete(&q.circle, &q.topic, id)?;
                let _ = stored;
                return Ok(true);
            }
        }
        let live = self.broker.delete(&q, id)?;
        let stored = self.store.delete(&q.circle, &q.topic, id)?;
        Ok(live || stored)
    }

    /// Jobs of a circle/topic from OurDB with their status (or why the record is unreadable).
    pub fn list(&self, circle: &str, topic: &str) -> Result<Vec<ListedJob>> {
        let q = Self::queue(circle, topic)?;
        Ok(self
            .store
            .list(&q.circle, &q.topic)?
            .into_iter()
            .map(|(id, s)| (id, s.map_err(|e| e.to_string())))
            .collect())
    }

    /// A page of a queue's waiting ids, next to run first (positions `start..start+count`;
    /// one bounded broker read).
    pub fn queue_page(
        &self,
        circle: &str,
        topic: &str,
        start: u64,
        count: u64,
    ) -> Result<Vec<u32>> {
        Ok(self
            .broker
            .queue_page(&Self::queue(circle, topic)?, start, count)?)
    }

    /// Ids of a queue's jobs running now on any engine.
    pub fn running_ids(&self, circle: &str, topic: &str) -> Result<Vec<u32>> {
        Ok(self.broker.running_ids(&Self::queue(circle, topic)?)?)
    }

    /// A job as OurDB holds it (no broker call): what `get` answers when the broker is
    /// unreachable. `None` if it has no record (or its circle/topic has no database).
    pub fn stored(&self, circle: &str, topic: &str, id: u32) -> Result<Option<Job>> {
        let q = Self::queue(circle, topic)?;
        if !self.store.db_dir(&q.circle, &q.topic).is_dir() {
            return Ok(None);
        }
        Ok(self.store.get(&q.circle, &q.topic, id)?)
    }

    /// Up to `depth` versions of a job from OurDB, newest first (each, or why it does not
    /// decode).
    pub fn history(
        &self,
        circle: &str,
        topic: &str,
        id: u32,
        depth: usize,
    ) -> Result<Vec<std::result::Result<Job, String>>> {
        let q = Self::queue(circle, topic)?;
        if !self.store.db_dir(&q.circle, &q.topic).is_dir() {
            return Ok(Vec::new());
        }
        let db = self.store.db(&q.circle, &q.topic)?;
        let versions = match db.history(id, depth) {
            Ok(v) => v,
            Err(crate::ourdb::OurDbError::NotFound { .. }) => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Store(crate::store::StoreError::Db {
                    path: self.store.db_dir(&q.circle, &q.topic),
                    source,
                }))
            }
        };
        Ok(versions
            .iter()
            .map(|v| crate::codec::from_record(id, v).map_err(|e| e.to_string()))
            .collect())
    }

    /// The highest id this base's OurDB holds for a circle/topic (0 without a database).
    pub fn highest_id(&self, circle: &str, topic: &str) -> Result<u64> {
        let q = Self::queue(circle, topic)?;
        if !self.store.db_dir(&q.circle, &q.topic).is_dir() {
            return Ok(0);
        }
        Ok(self
            .store
            .db(&q.circle, &q.topic)?
            .next_id()
            .saturating_sub(1))
    }

    /// One page of a circle/topic's jobs from OurDB, newest first: reads ids downwards from
    /// `before` and stops at `limit` matches or `budget` records, whichever comes first, so
    /// a page costs O(limit) reads for all statuses (and at most `budget` for a filter).
    pub fn list_page(&self, circle: &str, topic: &str, query: &PageQuery) -> Result<JobPage> {
        let q = Self::queue(circle, topic)?;
        let mut page = JobPage::default();
        if !self.store.db_dir(&q.circle, &q.topic).is_dir() {
            return Ok(page);
        }
        let db = self.store.db(&q.circle, &q.topic)?;
        page.highest_id = db.next_id().saturating_sub(1);
        let top = query.before.map_or(page.highest_id, |b| {
            (b as u64).saturating_sub(1).min(page.highest_id)
        });
        let mut id = top;
        while id > 0 {
            if page.jobs.len() >= query.limit.max(1) || page.scanned >= query.budget.max(1) {
                page.next = Some(id as u32 + 1);
                break;
            }
            page.scanned += 1;
            match self.store.get(&q.circle, &q.topic, id as u32) {
                Ok(Some(job)) => {
                    if query.status.is_none_or(|s| s == job.status) {
                        page.jobs.push(job);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if query.status.is_none() {
                        page.unreadable.push((id as u32, e.to_string()));
                    }
                }
            }
            id -= 1;
        }
        Ok(page)
    }

    /// Marks a job active for `attempt` (Redis, then OurDB). `AlreadyFinished` means the
    /// job must not run.
    pub fn set_active(&self, job: &mut Job, attempt: u32, lease: Duration) -> Result<Transition> {
        job.status = JobStatus::Active;
        job.time_start = unix_now();
        job.attempts = attempt;
        let t = self.broker.start(job, attempt, lease)?;
        if t == Transition::Applied {
            self.store.update(job)?;
        }
        Ok(t)
    }

    /// Records a job as done with `result` (first finisher wins; a fenced attempt loses).
    pub fn set_done(&self, job: &mut Job, result: String, attempt: u32) -> Result<Transition> {
        job.status = JobStatus::Done;
        job.result = result;
        self.finish(job, attempt)
    }

    /// Records a job as failed with `error` (first finisher wins; a fenced attempt loses).
    pub fn set_error(&self, job: &mut Job, error: String, attempt: u32) -> Result<Transition> {
        job.status = JobStatus::Error;
        job.error = error;
        self.finish(job, attempt)
    }

    fn finish(&self, job: &mut Job, attempt: u32) -> Result<Transition> {
        job.time_end = unix_now();
        // Like the engine: the outcome is cut so the finished record fits OurDB.
        if let Ok(db) = self.store.db(&job.circle, &job.topic) {
            crate::limits::fit_finished(job, db.stored_config().record_size_max);
        }
        let t = record_finished(&*self.broker, &self.store, &[(job.clone(), attempt)])?
            .pop()
            .unwrap_or(Transition::Missing);
        if t == Transition::Applied {
            self.store.update(job)?;
        }
        Ok(t)
    }
}

/// Records finished jobs in the broker, with OurDB as the judge for jobs the broker no longer
/// holds: one the record of truth already has finished (or a later attempt owns) is left
/// alone; the others are written back. Shared by [`Client`] and the engine's finisher, so the
/// first finisher wins even across a Redis restart. The caller then writes OurDB for the
/// `Applied` ones. An OurDB read that fails counts as "not finished there".
pub fn record_finished(
    broker: &dyn Broker,
    store: &JobStore,
    jobs: &[(Job, u32)],
) -> std::result::Result<Vec<Transition>, crate::broker::BrokerError> {
    let t = broker.finish_many(jobs, false)?;
    resolve_missing(broker, store, jobs, t)
}

/// Completes a finish whose broker answer was `t`: jobs the broker no longer holds are
/// checked against OurDB (already finished there, or a later attempt owns them: left alone)
/// and the rest written back to the broker (`restore`).
pub fn resolve_missing(
    broker: &dyn Broker,
    store: &JobStore,
    jobs: &[(Job, u32)],
    mut t: Vec<Transition>,
) -> std::result::Result<Vec<Transition>, crate::broker::BrokerError> {
    let mut restore = Vec::new();
    for (i, (job, attempt)) in jobs.iter().enumerate() {
        if t.get(i) != Some(&Transition::Missing) {
            continue;
        }
        match store.get(&job.circle, &job.topic, job.id) {
            Ok(Some(stored)) if stored.status.is_finished() => t[i] = Transition::AlreadyFinished,
            Ok(Some(stored)) if stored.attempts > *attempt => t[i] = Transition::Fenced,
            _ => restore.push(i),
        }
    }
    if !restore.is_empty() {
        let again: Vec<(Job, u32)> = restore.iter().map(|&i| jobs[i].clone()).collect();
        let r = broker.finish_many(&again, true)?;
        for (k, &i) in restore.iter().enumerate() {
            t[i] = r.get(k).copied().unwrap_or(Transition::Missing);
        }
    }
    Ok(t)
}
