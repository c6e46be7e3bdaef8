//! The blocking `Client`: the library's front door for submitting jobs, reading them back,
//! waiting for them and managing queues. Jobs are addressed by [`JobRef`]
//! (`circle/topic/id`), queues by [`QueueName`]; both are name-fixed by construction.

use crate::broker::redis::{RedisBroker, RedisConfig};
use crate::broker::{Broker, Transition, Wake};
use crate::error::{Error, Result};
use crate::job::{unix_now, Job, JobStatus};
use crate::names::{JobRef, QueueName};
use crate::ourdb::Durability;
use crate::store::JobStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a `wait` blocks on the completion signal before it reads the job again.
const WAIT_RECHECK: Duration = Duration::from_millis(1500);

/// A job id with its status, or why its record could not be read.
pub type ListedJob = (u32, std::result::Result<JobStatus, String>);

/// What [`Client::list_page`] looks for: jobs newest first, optionally of one status,
/// starting below `before`, at most `limit` of them, reading at most `budget` records.
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl PageQuery {
    /// The newest `limit` jobs (any status).
    pub fn newest(limit: usize) -> PageQuery {
        PageQuery {
            limit,
            ..PageQuery::default()
        }
    }

    /// Only jobs with `status`.
    pub fn status(mut self, status: Option<JobStatus>) -> PageQuery {
        self.status = status;
        self
    }

    /// Starting below id `before` (the `next` of the previous page).
    pub fn before(mut self, before: Option<u32>) -> PageQuery {
        self.before = before;
        self
    }

    /// Reading at most `budget` records.
    pub fn budget(mut self, budget: usize) -> PageQuery {
        self.budget = budget;
        self
    }
}

/// One page of a queue's jobs from OurDB, newest first.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JobPage {
    /// The jobs found.
    pub jobs: Vec<Job>,
    /// Ids whose record could not be read, with why.
    pub unreadable: Vec<(u32, String)>,
    /// Where the next page starts (pass it as `before`); `None` at the oldest job.
    pub next: Option<u32>,
    /// Records read for this page.
    pub scanned: usize,
    /// The highest id this base's OurDB holds for the queue (ids come in blocks per store,
    /// so it bounds the jobs submitted here rather than counting them).
    pub highest_id: u64,
}

/// Dead and scheduled jobs of a queue, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LifecycleCounts {
    /// Jobs in the dead set (failed after their last attempt).
    pub dead: u64,
    /// Delayed jobs and jobs waiting for a retry.
    pub scheduled: u64,
}

/// One engine's published counters, as `herojobs stats` and the dashboard read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineCounters {
    /// The engine's name (`host-pid` unless configured).
    pub name: String,
    /// Counter name and value, as the engine published them (engine-wide counters and,
    /// prefixed `q:<circle>:<topic>:`, per-queue ones).
    pub fields: Vec<(String, u64)>,
}

impl EngineCounters {
    /// The engine's own counters (`done`, `error`, `running`, `workers`, ...).
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        crate::counters::parse_fields(&self.fields).0
    }

    /// The engine's outcomes per queue (done, failed, timed out, retried; wait and run
    /// histograms).
    pub fn queues(&self) -> std::collections::BTreeMap<QueueName, crate::counters::QueueCounts> {
        crate::counters::parse_fields(&self.fields).1
    }
}

/// Submits, reads and waits for jobs. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Client {
    broker: Arc<dyn Broker>,
    store: Arc<JobStore>,
    /// Circles whose jobs this client signs, with their secrets.
    signers: Arc<crate::submit::Signers>,
}

impl Client {
    /// A client for the Redis at `redis_url` with job databases under `base`. Connects
    /// lazily: [`ping`](Client::ping) says whether Redis answers.
    ///
    /// ```no_run
    /// use herojobs::{Client, Job, ParamsType};
    /// let client = Client::connect("redis://127.0.0.1:6379", "/tmp/hero")?;
    /// let job = client.submit(Job::new("demo", "default", ParamsType::HeroScript,
    ///     "!!fake.return_success message:'hi'"))?;
    /// let done = client.wait(&job, std::time::Duration::from_secs(10))?;
    /// println!("{job}: {}", done.outcome()?);
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
    pub(crate) fn with_parts(broker: Arc<dyn Broker>, store: Arc<JobStore>) -> Client {
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

    /// The broker (the dashboard says whether a job came from Redis or OurDB).
    #[cfg(feature = "web")]
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The Redis URL this client talks to, credentials redacted (`None` in embedded mode).
    pub fn redis_url(&self) -> Option<&str> {
        self.broker.url()
    }

    /// Whether the broker answers now (one round trip; always `Ok` in embedded mode).
    pub fn ping(&self) -> Result<()> {
        Ok(self.broker.ping()?)
    }

    /// The identity of this client's job store (`<base>/store.id`, created on first use):
    /// written into every job it submits (`Job::store`), so a reader can tell where a job's
    /// history lives.
    pub fn store_identity(&self) -> Result<String> {
        Ok(self.store.identity()?)
    }

    /// The base directory of this client's job databases.
    pub fn base(&self) -> &std::path::Path {
        self.store.base()
    }

    /// Submits one job and returns its address: saved to OurDB (which assigns the id),
    /// then stored, queued and its queue registered in one atomic round trip.
    pub fn submit(&self, job: Job) -> Result<JobRef> {
        let mut refs = self.submit_many(vec![job])?;
        refs.pop()
            .ok_or(Error::Internal("submit_many returned no address"))
    }

    /// Submits many jobs: one OurDB batch per circle/topic and one broker round trip for
    /// all (plus one per 1000 ids, to reserve a block of ids fleet-wide). Addresses are
    /// returned in input order; each id is unique within its circle/topic across every
    /// store that shares the broker.
    ///
    /// A job is acknowledged only when the broker holds exactly it under its id: each carries
    /// a random submit token that the enqueue compares atomically. A job that meets another
    /// one under its id (possible only after Redis lost its id counters) is not acknowledged:
    /// its OurDB record is removed and it is submitted again under a fresh id.
    pub fn submit_many(&self, jobs: Vec<Job>) -> Result<Vec<JobRef>> {
        crate::submit::submit_many(&*self.broker, &self.store, &self.signers, jobs)
    }

    /// A job: from the broker while it holds it, else from OurDB. A finished job that this
    /// store submitted and still has unfinished (another engine, on any host, ran it) is
    /// recorded here as it is read, so this store keeps its outcome after the broker
    /// forgets it.
    pub fn get(&self, job: &JobRef) -> Result<Job> {
        let q = job.queue();
        if let Some(live) = self.broker.get(q, job.id())? {
            if live.status.is_finished() {
                self.learn_outcome(q, &live);
            }
            return Ok(live);
        }
        self.store
            .get(q, job.id())?
            .ok_or_else(|| Error::NotFound { job: job.clone() })
    }

    /// Records a finished job read from the broker in this store's OurDB when this store
    /// submitted it and has it still new (another engine ran it). Best effort: a failure
    /// only means recovery copies it later.
    fn learn_outcome(&self, q: &QueueName, job: &Job) {
        let identity = self.store.identity().unwrap_or_default();
        if job.store != identity {
            return; // not ours: its submitter's store learns it
        }
        match self.store.get(q, job.id) {
            // `new` here: this store never ran it (an engine on this base records `active`,
            // then the outcome itself, and would only be raced into a second version).
            Ok(Some(local)) if local.status == JobStatus::New && local.token == job.token => {
                if let Err(e) = self.store.update(job) {
                    log::debug!("job {}: recording its outcome: {e}", q.job(job.id));
                }
            }
            _ => {}
        }
    }

    /// Blocks until the job is done or error (or `timeout` passes) and returns it, finished:
    /// a job that failed is returned too (`Ok`), so use [`Job::outcome`] to turn a failure
    /// into an `Err`. Waits on the job's completion signal, reading the job again at least
    /// every 1.5 s (so a broker that lost its data, and with it the signal, costs a waiter
    /// at most that much).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut engine = herojobs::WatchDog::builder().embedded().base(dir.path())
    /// #     .registry(herojobs::Registry::with_builtins()).build()?;
    /// # engine.start()?;
    /// # let client = engine.client();
    /// # client.submit(herojobs::Job::new("ops", "builds", herojobs::ParamsType::RhaiScript, "6 * 7"))?;
    /// let job: herojobs::JobRef = "ops/builds/1".parse()?;
    /// let result = client.wait(&job, std::time::Duration::from_secs(30))?.outcome()?.to_string();
    /// assert_eq!(result, "42");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, job: &JobRef, timeout: Duration) -> Result<Job> {
        let deadline = Instant::now() + timeout;
        self.wait_until(job, deadline, timeout)
    }

    fn wait_until(&self, r: &JobRef, deadline: Instant, timeout: Duration) -> Result<Job> {
        let q = r.queue();
        let id = r.id();
        loop {
            let job = self.get(r)?;
            if job.status.is_finished() {
                return Ok(job);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::WaitTimeout {
                    job: r.clone(),
                    waited: timeout,
                });
            }
            // A wake-up that carries the finished job ends the wait; any other, look again:
            // the job decides, the signal only wakes us. Each block is bounded by
            // WAIT_RECHECK: if the broker lost its data (a restart, FLUSHALL) it also lost our
            // waiter registration, so no signal would come; the next look reads the job
            // (from OurDB when the broker has no copy).
            if let Wake::Finished(job) = self.broker.wait_done(q, id, left.min(WAIT_RECHECK))? {
                // The signal's JSON has no token or store (they live in hash fields): a job
                // this store still has new was run elsewhere, and a `get` reads them.
                if self
                    .store
                    .get(q, id)
                    .is_ok_and(|l| l.is_some_and(|l| l.status == JobStatus::New))
                {
                    let j = self.get(r)?;
                    if j.status.is_finished() {
                        return Ok(j);
                    }
                    continue;
                }
                return Ok(*job);
            }
        }
    }

    /// Waits for every job in `jobs` (or until `timeout` passes, for all of them together)
    /// and returns them finished, in the order given. A failed job is returned too; see
    /// [`Job::outcome`].
    pub fn wait_many(&self, jobs: &[JobRef], timeout: Duration) -> Result<Vec<Job>> {
        let deadline = Instant::now() + timeout;
        jobs.iter()
            .map(|r| self.wait_until(r, deadline, timeout))
            .collect()
    }

    /// Number of waiting jobs in a queue.
    pub fn queue_len(&self, queue: &QueueName) -> Result<u64> {
        Ok(self.broker.queue_len(queue)?)
    }

    /// Waiting job ids, next to run first.
    pub fn queue_ids(&self, queue: &QueueName) -> Result<Vec<u32>> {
        Ok(self.broker.queue_ids(queue)?)
    }

    /// The next job to run from a queue, without taking it.
    pub fn peek(&self, queue: &QueueName) -> Result<Option<Job>> {
        match self.broker.peek(queue)? {
            Some(id) => self.get(&queue.job(id)).map(Some),
            None => Ok(None),
        }
    }

    /// Removes every waiting job of a queue (and their live state); returns how many. Their
    /// OurDB records stay (history), marked error so recovery does not queue them again.
    pub fn empty_queue(&self, queue: &QueueName) -> Result<u64> {
        let ids = self.broker.queue_ids(queue)?;
        let n = self.broker.empty(queue)?;
        for id in ids {
            if let Some(mut job) = self.store.get(queue, id)? {
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

    /// The queues that have a job database under this client's base directory (jobs
    /// submitted or run here), whether or not Redis still registers them.
    pub fn stored_queues(&self) -> Vec<QueueName> {
        self.store.topics()
    }

    /// Cancels a job that has not finished: a waiting, delayed or retry-waiting job leaves
    /// its queue, a running one (on any engine of the fleet) has its cancel flag set and its
    /// late result is dropped; either way it ends `error` with `cancelled`. `false` if it had
    /// finished already.
    pub fn cancel(&self, job: &JobRef) -> Result<bool> {
        self.cancel_with(job, "cancelled")
    }

    fn cancel_with(&self, r: &JobRef, why: &str) -> Result<bool> {
        let mut job = self.get(r)?;
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
        if let Ok(Some(local)) = self.store.get(r.queue(), r.id()) {
            if !local.status.is_finished() {
                self.store.update(&job)?;
            }
        }
        Ok(true)
    }

    /// Puts a job that ended in error (a dead job, or any failed one) back in its queue as
    /// new, with its attempts counted afresh. `false` if it had not failed.
    pub fn retry(&self, r: &JobRef) -> Result<bool> {
        let mut job = self.get(r)?;
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
        match self.broker.retry_failed(&job)? {
            Transition::Applied => {}
            Transition::Missing => {
                // Its hash expired (retention): queue it again from its record.
                if !self.broker.enqueue(std::slice::from_ref(&job))?.is_empty() {
                    return Err(Error::IdConflict {
                        queue: r.queue().clone(),
                        rounds: 1,
                    });
                }
            }
            _ => return Ok(false),
        }
        if self.store.get(r.queue(), r.id())?.is_some() {
            self.store.update(&job)?;
        }
        Ok(true)
    }

    /// Dead jobs of a queue (ended in error after their last attempt), newest first, with
    /// when they died (unix ms): `limit` from `offset`.
    pub fn dead(&self, queue: &QueueName, offset: usize, limit: usize) -> Result<Vec<(u32, u64)>> {
        Ok(self.broker.dead(queue, offset, limit)?)
    }

    /// Empties the dead set of a queue (the jobs stay recorded as failed); returns how many.
    pub fn purge_dead(&self, queue: &QueueName) -> Result<u64> {
        Ok(self.broker.purge_dead(queue)?)
    }

    /// Pauses a queue: no engine takes from it until [`resume`](Client::resume) (within
    /// half a second); jobs submitted meanwhile wait in it.
    pub fn pause(&self, queue: &QueueName) -> Result<()> {
        Ok(self.broker.set_paused(queue, true)?)
    }

    /// Resumes a paused queue.
    pub fn resume(&self, queue: &QueueName) -> Result<()> {
        Ok(self.broker.set_paused(queue, false)?)
    }

    /// The paused queues.
    pub fn paused(&self) -> Result<Vec<QueueName>> {
        Ok(self.broker.paused()?)
    }

    /// Jobs ever submitted per queue, as the broker counts them (since it last lost its data).
    pub fn submitted(&self) -> Result<Vec<(QueueName, u64)>> {
        Ok(self.broker.submitted()?)
    }

    /// Dead jobs and scheduled (delayed or retry-waiting) jobs of a queue.
    pub fn lifecycle_counts(&self, queue: &QueueName) -> Result<LifecycleCounts> {
        let (dead, scheduled) = self.broker.lifecycle_counts(queue)?;
        Ok(LifecycleCounts { dead, scheduled })
    }

    /// Delayed jobs and jobs waiting for a retry, next due first, with their due time (ms).
    pub fn scheduled(&self, queue: &QueueName, limit: usize) -> Result<Vec<(u32, u64)>> {
        Ok(self.broker.scheduled(queue, limit)?)
    }

    /// Deletes a job everywhere; `false` if it existed nowhere. A running job is cancelled
    /// first and its Redis state stays as a tombstone until the finished TTL, so its late
    /// result can never bring it back.
    pub fn delete(&self, job: &JobRef) -> Result<bool> {
        let (q, id) = (job.queue(), job.id());
        if let Ok(Some(live)) = self.broker.get(q, id) {
            if live.status == JobStatus::Active {
                self.cancel_with(job, "deleted")?;
                self.store.delete(q, id)?;
                return Ok(true);
            }
        }
        let live = self.broker.delete(q, id)?;
        let stored = self.store.delete(q, id)?;
        Ok(live || stored)
    }

    /// Jobs of a queue from OurDB with their status (or why the record is unreadable).
    /// Reads every record: for long histories use [`list_page`](Client::list_page).
    pub fn list(&self, queue: &QueueName) -> Result<Vec<ListedJob>> {
        Ok(self
            .store
            .list(queue)?
            .into_iter()
            .map(|(id, s)| (id, s.map_err(|e| e.to_string())))
            .collect())
    }

    /// A page of a queue's waiting ids, next to run first (positions `start..start+count`;
    /// one bounded broker read).
    pub fn queue_page(&self, queue: &QueueName, start: u64, count: u64) -> Result<Vec<u32>> {
        Ok(self.broker.queue_page(queue, start, count)?)
    }

    /// Ids of a queue's jobs running now on any engine.
    pub fn running_ids(&self, queue: &QueueName) -> Result<Vec<u32>> {
        Ok(self.broker.running_ids(queue)?)
    }

    /// A job as OurDB holds it (no broker call): what `get` answers when the broker is
    /// unreachable. `None` if it has no record (or its queue has no database).
    pub fn stored(&self, job: &JobRef) -> Result<Option<Job>> {
        Ok(self.store.get(job.queue(), job.id())?)
    }

    /// Up to `depth` versions of a job from OurDB, newest first (each, or why it does not
    /// decode).
    pub fn history(
        &self,
        job: &JobRef,
        depth: usize,
    ) -> Result<Vec<std::result::Result<Job, String>>> {
        let q = job.queue();
        let Some(db) = self.store.existing_db(q)? else {
            return Ok(Vec::new());
        };
        let versions = match db.history(job.id(), depth) {
            Ok(v) => v,
            Err(crate::ourdb::OurDbError::NotFound { .. }) => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Store(crate::store::StoreError::Db {
                    path: self.store.db_dir(q),
                    source,
                }))
            }
        };
        Ok(versions
            .iter()
            .map(|v| crate::codec::from_record(job.id(), v).map_err(|e| e.to_string()))
            .collect())
    }

    /// The highest id this base's OurDB holds for a queue (0 without a database).
    pub fn highest_id(&self, queue: &QueueName) -> Result<u64> {
        Ok(self
            .store
            .existing_db(queue)?
            .map_or(0, |db| db.next_id().saturating_sub(1)))
    }

    /// The directory of a queue's job database under this client's base (it may not exist).
    pub fn db_dir(&self, queue: &QueueName) -> PathBuf {
        self.store.db_dir(queue)
    }

    /// One page of a queue's jobs from OurDB, newest first: reads ids downwards from
    /// `before` and stops at `limit` matches or `budget` records, whichever comes first, so
    /// a page costs O(limit) reads for all statuses (and at most `budget` for a filter).
    pub fn list_page(&self, queue: &QueueName, query: &PageQuery) -> Result<JobPage> {
        let mut page = JobPage::default();
        let Some(db) = self.store.existing_db(queue)? else {
            return Ok(page);
        };
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
            match self.store.get(queue, id as u32) {
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

    /// Removes everything Redis holds of `circle` — its job hashes, queues, delayed, dead
    /// and outcome sets, id counters, and its entries in the queue registry — and returns
    /// how many keys went. OurDB keeps the jobs. For cleaning up after a demo, a benchmark
    /// or a test: it scans the keyspace, and it does not stop jobs of the circle that are
    /// running.
    pub fn forget_circle(&self, circle: &str) -> Result<u64> {
        let circle = crate::names::path_name("circle", circle)?;
        Ok(self.broker.forget_circle(&circle)?)
    }

    /// Every engine's published counters (engines publish every second; an engine that
    /// stopped drops out within 5 s). Empty in embedded mode.
    pub fn engines(&self) -> Result<Vec<EngineCounters>> {
        Ok(self
            .broker
            .read_stats()?
            .into_iter()
            .map(|(name, fields)| EngineCounters { name, fields })
            .collect())
    }

    /// Marks a job active for `attempt` (Redis, then OurDB). `AlreadyFinished` means the
    /// job must not run.
    #[cfg(test)]
    pub(crate) fn set_active(
        &self,
        job: &mut Job,
        attempt: u32,
        lease: Duration,
    ) -> Result<Transition> {
        job.status = JobStatus::Active;
        job.time_start = unix_now();
        job.attempts = attempt;
        let t = self.broker.start(job, attempt, lease)?;
        if t == Transition::Applied {
            self.store.update(job)?;
        }
        Ok(t)
    }

    /// Records a job as finished (done or error, as its status says) for `attempt`: first
    /// finisher wins; a fenced attempt loses.
    #[cfg(test)]
    pub(crate) fn finish(&self, job: &mut Job, attempt: u32) -> Result<Transition> {
        job.time_end = unix_now();
        let q = crate::broker::queue_of(job)?;
        // Like the engine: the outcome is cut so the finished record fits OurDB.
        if let Ok(db) = self.store.db(&q) {
            crate::limits::fit_finished(job, db.stored_config().record_size_max);
        }
        let t =
            crate::settle::record_finished(&*self.broker, &self.store, &[(job.clone(), attempt)])?
                .pop()
                .unwrap_or(Transition::Missing);
        if t == Transition::Applied {
            self.store.update(job)?;
        }
        Ok(t)
    }
}
