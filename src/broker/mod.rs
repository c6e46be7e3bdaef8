//! The broker: where queues and live job state are kept. The engine and the client talk to
//! the [`Broker`] trait, so neither knows whether it runs on Redis ([`redis`]) or in-process.
//! Key names live in [`keys`] only.

pub(crate) mod keys;
mod lua;
pub(crate) mod memory;
pub(crate) mod redis;

use crate::job::Job;
use std::time::Duration;

pub use crate::names::{JobRef, QueueName};

/// How long Redis keeps what finished (OurDB keeps everything).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// A finished job's hash expires this long after it finished (then `get` reads OurDB).
    /// Default 1 hour: long enough for the submitting store to copy the outcome, short
    /// enough that Redis memory stays flat under sustained load (jobs/s × TTL × ~500 B).
    pub finished_ttl: Duration,
    /// Most dead jobs kept per circle/topic (oldest dropped first). Default 10,000.
    pub dead_max: u64,
    /// Dead jobs older than this leave the dead set. Default 30 days.
    pub dead_age: Duration,
    /// A queue with nothing waiting, delayed or running for this long leaves the queue
    /// registry (`heroqueues`), so a fleet that creates short-lived queues does not make
    /// every engine's take longer forever; its next submit registers it again. Default 24
    /// hours; zero keeps every queue.
    pub queue_idle: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            finished_ttl: Duration::from_secs(3600),
            dead_max: 10_000,
            dead_age: Duration::from_secs(30 * 24 * 3600),
            queue_idle: Duration::from_secs(24 * 3600),
        }
    }
}

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Redis failed (or stayed unreachable through the retries).
    #[error("redis {op} at {url}: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// The server.
        url: String,
        /// The client's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// A job hash that holds no valid job.
    #[error("job hash {key}: {reason}")]
    BadJob {
        /// The Redis key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A bad URL or configuration.
    #[error("broker configuration: {0}")]
    Config(String),
}

/// A job read from the broker under `queue`/`id` keeps the identity of the key it was read
/// from: circle, topic and id come from the key, never from the JSON (Redis content is
/// untrusted). JSON that names another job (after name fixing: an empty topic is
/// `default`) is refused with the reason, so it can fail under its real key and touch
/// nothing else.
pub(crate) fn own_identity(
    mut job: Job,
    queue: &QueueName,
    id: u32,
    key: impl FnOnce() -> String,
) -> Result<Job, String> {
    // The JSON of a job submitted here names its queue exactly (submit fixes the names):
    // compared as is first, fixed (an allocation and a walk of each name) only otherwise.
    let same_queue = (job.circle == queue.circle() && job.topic == queue.topic())
        || QueueName::new(&job.circle, &job.topic).ok().as_ref() == Some(queue);
    if (job.id != id && job.id != 0) || !same_queue {
        return Err(format!(
            "job hash {} holds the JSON of another job ({:?}/{:?}/{}): refused",
            key(),
            job.circle,
            job.topic,
            job.id
        ));
    }
    job.id = id;
    if job.circle != queue.circle() {
        job.circle = queue.circle().to_string();
    }
    if job.topic != queue.topic() {
        job.topic = queue.topic().to_string();
    }
    Ok(job)
}

/// The queue of a job handed to the broker. Every job reaches the broker through a
/// [`QueueName`] (submit fixes its names, a take reads them from the key), so names that are
/// not fixed mean a bug or a planted record: refused here, before they become keys.
pub(crate) fn queue_of(job: &Job) -> Result<QueueName, BrokerError> {
    QueueName::from_fixed(&job.circle, &job.topic).ok_or_else(|| BrokerError::BadJob {
        key: format!("{}/{}/{}", job.circle, job.topic, job.id),
        reason: "circle or topic is not a name-fixed name".into(),
    })
}

/// Outcome of a guarded status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The change was applied.
    Applied,
    /// The job had already finished (done/error): first finisher wins, nothing was changed.
    AlreadyFinished,
    /// Another attempt owns the job now (its lease was reclaimed): nothing was changed.
    Fenced,
    /// The broker no longer holds the job (Redis restarted): nothing was changed; the caller
    /// checks OurDB and may finish again with `restore`.
    Missing,
}

/// What [`Broker::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// It was waiting (queued, delayed or waiting for a retry) and is now cancelled.
    Waiting,
    /// It was running; it is recorded cancelled and its engine was told.
    Running,
    /// It had finished already: nothing changed.
    AlreadyFinished,
    /// The broker does not hold it.
    Missing,
}

/// Cancels of running jobs, as an engine receives them.
pub(crate) trait CancelFeed: Send {
    /// The next cancelled job, waiting up to `timeout`; `None` when none came.
    fn next(&mut self, timeout: Duration) -> Result<Option<JobRef>, BrokerError>;
}

/// What [`Broker::finish_and_take`] returns: the verdicts of the finished jobs, the jobs
/// taken, and the earliest due time (unix ms) still waiting in the scheduled sets of the
/// queues taken from (an idle dispatcher wakes for it).
pub(crate) type TakeResult = (Vec<Transition>, Vec<Taken>, Option<u64>);

/// A job taken off a queue for one attempt (already marked active, under a lease).
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    /// Its queue.
    pub(crate) queue: QueueName,
    /// Its id.
    pub(crate) id: u32,
    /// The job, or why the broker's copy could not be read (`None` with an empty reason: the
    /// broker had no copy; the caller falls back to OurDB).
    pub(crate) job: Result<Job, String>,
    /// The attempt number this run is (1 for the first run); the fencing token.
    pub(crate) attempt: u32,
}

/// What [`Broker::wait_done`] saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wake {
    /// The job finished; here it is as recorded.
    Finished(Box<Job>),
    /// Something changed (a finish signal without a readable job, or the broker lost the
    /// job): the caller reads the job (OurDB decides when the broker has no copy).
    Signalled,
    /// Nothing happened within the timeout.
    TimedOut,
}

/// What [`Broker::ensure_queued`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ensure {
    /// Queued, running under a lease, or finished: nothing to do.
    Fine,
    /// It was missing and has been queued again.
    Requeued,
    /// It looks lost (new but in no queue, or active without a lease); `requeue` was not
    /// set, so nothing was changed. Look again after a grace period.
    Suspect,
    /// The broker holds a different job under this id (another store's, written after the
    /// broker lost its data): nothing was changed.
    Conflict,
    /// The job finished elsewhere with this status, and its state has since expired from
    /// the broker (retention): it must not be queued again.
    FinishedElsewhere(crate::job::JobStatus),
}

/// Queues and live job state. One implementation talks to Redis; another keeps everything in
/// process memory. All methods are blocking with bounded waits.
pub(crate) trait Broker: Send + Sync {
    /// For each job (id assigned): store it and push its id on its queue (or, due later,
    /// into its scheduled set), registering the queue when the push found it empty (a queue
    /// holding ids is registered already), atomically and in one round trip for the batch. A job already present
    /// with the same submit token is left alone (a retried submit never queues twice). Returns
    /// the indexes of the jobs that met a *different* job under their id: those were not
    /// stored and must not be acknowledged.
    fn enqueue(&self, jobs: &[Job]) -> Result<Vec<usize>, BrokerError>;

    /// Reserves `count` ids of `queue` fleet-wide: returns `start..end` with `start` at or
    /// above `floor` and above every id reserved before (one atomic counter per queue).
    /// `count` 0 only raises the counter to `floor - 1` (a store re-asserting its
    /// high-water mark after the broker lost its data). A counter the broker lost restarts
    /// [`LOSS_MARGIN`](crate::store::LOSS_MARGIN) above a floor greater than 1, past the
    /// blocks other stores may still be using.
    fn reserve_ids(
        &self,
        queue: &QueueName,
        floor: u64,
        count: u64,
    ) -> Result<(u64, u64), BrokerError>;

    /// The highest id the fleet's counter of `queue` has reserved (`None`: no counter, or
    /// not a number). Every id a store hands out was reserved from it, so a job at a higher
    /// id was never submitted by any store (it was planted in the broker).
    fn ids_issued(&self, queue: &QueueName) -> Result<Option<u64>, BrokerError>;

    /// The live job, `None` if the broker does not hold it.
    fn get(&self, queue: &QueueName, id: u32) -> Result<Option<Job>, BrokerError>;

    /// All registered queues.
    fn queues(&self) -> Result<Vec<QueueName>, BrokerError>;

    /// The id that runs next in `queue` (one small read, not the whole list).
    fn peek(&self, queue: &QueueName) -> Result<Option<u32>, BrokerError>;

    /// Number of waiting ids.
    fn queue_len(&self, queue: &QueueName) -> Result<u64, BrokerError>;

    /// Waiting ids, next to run first.
    fn queue_ids(&self, queue: &QueueName) -> Result<Vec<u32>, BrokerError>;

    /// Removes every waiting id of a queue and those jobs' state; returns how many.
    fn empty(&self, queue: &QueueName) -> Result<u64, BrokerError>;

    /// Removes a job's state and its queue entry; `true` if it was there.
    fn delete(&self, queue: &QueueName, id: u32) -> Result<bool, BrokerError>;

    /// Marks a job active for `attempt` under a lease ending `lease` from now, unless it
    /// already finished.
    fn start(&self, job: &Job, attempt: u32, lease: Duration) -> Result<Transition, BrokerError>;

    /// Blocks up to `timeout` until the job's completion is signalled (returns early if it
    /// already was). The signal carries the finished job when it can, so a waiter needs no
    /// further read.
    fn wait_done(&self, queue: &QueueName, id: u32, timeout: Duration)
        -> Result<Wake, BrokerError>;

    /// The engine's step, one atomic round trip: records `finished` exactly as
    /// [`finish_many`](Broker::finish_many) without `restore` does, then takes up to `max`
    /// jobs from `queues` (the first queue first, then the next), marking each active for
    /// its next attempt under a lease of `lease`. Finished jobs are skipped. Never blocks:
    /// when nothing was taken, the caller waits with [`wait_for_jobs`](Broker::wait_for_jobs).
    ///
    /// Why one call: a busy engine reuses the worker slots of the jobs it records for the
    /// jobs it takes, so each batch costs one round trip rather than two, and jobs taken and
    /// not yet recorded never exceed the workers.
    fn finish_and_take(
        &self,
        finished: &[(Job, u32)],
        queues: &[QueueName],
        max: usize,
        lease: Duration,
    ) -> Result<TakeResult, BrokerError>;

    /// [`finish_and_take`](Broker::finish_and_take), running `meanwhile` while the broker
    /// works on the call: after the request is sent, before the reply is read (first, for a
    /// broker that cannot split the two). At most once: if the call fails before its request
    /// is out, `meanwhile` has not run, and the caller does that work itself afterwards.
    ///
    /// Why: the engine's dispatcher writes the previous batch's outcomes to OurDB in
    /// `meanwhile`, so that work overlaps the server's instead of following it; the
    /// dispatcher's step and the server's alternate, and each one's time is the other's
    /// wait.
    fn finish_and_take_overlapped(
        &self,
        finished: &[(Job, u32)],
        queues: &[QueueName],
        max: usize,
        lease: Duration,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<TakeResult, BrokerError> {
        meanwhile();
        self.finish_and_take(finished, queues, max, lease)
    }

    /// Whether [`finish_and_take_overlapped`](Broker::finish_and_take_overlapped) really
    /// runs `meanwhile` while the broker works (a server across a socket). Where it cannot,
    /// the engine does not defer work into it: deferring would gain nothing and only let
    /// the work lag.
    fn overlaps(&self) -> bool {
        false
    }

    /// Blocks up to `timeout` until a job may have been submitted since the caller's last
    /// empty take from `queues` (a submit in between is not missed), to these queues or to
    /// one the caller does not know yet. Returning says nothing for sure: the caller takes
    /// again, and re-reads the registry if that finds nothing.
    fn wait_for_jobs(&self, queues: &[QueueName], timeout: Duration) -> Result<(), BrokerError>;

    /// Records finished jobs (done or error), one round trip for the batch: per job, first
    /// finisher wins, a reclaimed attempt is fenced off, waiters are woken and the lease is
    /// dropped. A job the broker no longer holds (Redis restarted; an in-process broker
    /// evicted it) is `Missing` and left alone, unless `restore` (then it is written back):
    /// the caller decides with OurDB first (`settle::record_finished`).
    fn finish_many(
        &self,
        jobs: &[(Job, u32)],
        restore: bool,
    ) -> Result<Vec<Transition>, BrokerError>;

    /// Gives a started job back: status new, lease dropped, id at the head of its queue. Only
    /// if `attempt` still owns it and it has not finished.
    /// `to_back` puts it at the back of the queue instead (a hand-back: the engine that
    /// could not run it goes on with the jobs behind it).
    fn release(&self, job: &Job, attempt: u32, to_back: bool) -> Result<Transition, BrokerError>;

    /// Extends (or re-creates, after a broker restart) the leases of running jobs.
    fn renew(&self, running: &[JobRef], lease: Duration) -> Result<(), BrokerError>;

    /// Takes up to `limit` leases that expired (their engine died), removing them atomically
    /// so only one engine reclaims each; returns the jobs to queue again.
    fn reclaim_expired(&self, limit: usize) -> Result<Vec<JobRef>, BrokerError>;

    /// Recovery: makes sure an unfinished job that OurDB holds is queued or running under a
    /// lease. `job` is OurDB's copy. A missing new job is queued at once; one that only looks
    /// lost is reported `Suspect` unless `requeue`.
    fn ensure_queued(&self, job: &Job, requeue: bool) -> Result<Ensure, BrokerError>;

    /// [`ensure_queued`](Broker::ensure_queued) for many jobs (one round trip per batch
    /// where the broker can, a second for the jobs it must write back).
    fn ensure_queued_many(&self, jobs: &[(Job, bool)]) -> Result<Vec<Ensure>, BrokerError> {
        jobs.iter()
            .map(|(j, r)| self.ensure_queued(j, *r))
            .collect()
    }

    /// For each id, whether the broker holds that job at all (a cheap existence check, so
    /// recovery reads OurDB only for the ones it does not).
    fn known(&self, queue: &QueueName, ids: &[u32]) -> Result<Vec<bool>, BrokerError>;

    /// An identifier of the broker's current data set: it changes when the broker loses its
    /// data (a Redis restart without persistence, `FLUSHALL`), which tells recovery to check
    /// every unfinished job again. Cheap: one round trip.
    fn epoch(&self) -> Result<String, BrokerError>;

    /// Cancels a job that has not finished: `job` is its cancelled record (status error,
    /// error `cancelled`). A waiting or scheduled job leaves its queue; a running one is
    /// recorded cancelled at once (its late result loses: first finisher wins) and every
    /// engine is told, so the one running it sets its cancel flag. The hash expires after
    /// the finished TTL like any finished job's.
    fn cancel(&self, job: &Job) -> Result<Cancel, BrokerError>;

    /// Puts a job that ended in error back in its queue as new (`job` is its new record),
    /// out of the dead set. `Missing` if the broker no longer holds it.
    fn retry_failed(&self, job: &Job) -> Result<Transition, BrokerError>;

    /// Dead jobs of a queue, newest first: (id, when it died in unix ms), from `offset`.
    fn dead(
        &self,
        queue: &QueueName,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(u32, u64)>, BrokerError>;

    /// Empties the dead set of a queue (the jobs stay finished); returns how many left it.
    fn purge_dead(&self, queue: &QueueName) -> Result<u64, BrokerError>;

    /// Ids of a queue's delayed jobs and jobs waiting for a retry, with their due times (ms).
    fn scheduled(&self, queue: &QueueName, limit: usize) -> Result<Vec<(u32, u64)>, BrokerError>;

    /// Pauses (`true`) or resumes a queue: engines stop taking from a paused queue within a
    /// registry refresh (half a second); submits go on queueing.
    fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), BrokerError>;

    /// The paused queues.
    fn paused(&self) -> Result<Vec<QueueName>, BrokerError>;

    /// Publishes the progress of running jobs (hash field `progress`; `get` returns it).
    fn set_progress(&self, jobs: &[(JobRef, String)]) -> Result<(), BrokerError>;

    /// Jobs ever submitted per queue (the broker's counter, since it last lost its data).
    fn submitted(&self) -> Result<Vec<(QueueName, u64)>, BrokerError> {
        Ok(Vec::new())
    }

    /// Number of dead jobs and of scheduled (delayed or retry-waiting) jobs of a queue.
    fn lifecycle_counts(&self, queue: &QueueName) -> Result<(u64, u64), BrokerError>;

    /// Takes `queue` out of the registry if it has nothing waiting, delayed or running, in
    /// one atomic step (a concurrent submit registers it again); `true` if it left.
    fn prune_queue(&self, queue: &QueueName) -> Result<bool, BrokerError>;

    /// Removes every key of `circle` (fixed name) and its entries in the registry, the
    /// paused set and the submitted counts; returns how many keys went. Off the hot path:
    /// it scans the keyspace (never `KEYS`).
    fn forget_circle(&self, circle: &str) -> Result<u64, BrokerError>;

    /// The server's URL as it may be shown (credentials redacted); `None` in process.
    fn url(&self) -> Option<&str> {
        None
    }

    /// Whether the broker answers now (one round trip; always fine in process).
    fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// A feed of cancels of running jobs, for an engine (see [`Broker::cancel`]).
    fn cancel_feed(&self) -> Result<Box<dyn CancelFeed>, BrokerError>;

    /// Says that this engine runs jobs of these params types (refreshed every second).
    fn claim_types(&self, types: &[String]) -> Result<(), BrokerError>;

    /// Whether some engine of the fleet claimed params type `t` within `within`.
    fn type_claimed(&self, t: &str, within: Duration) -> Result<bool, BrokerError>;

    /// A page of waiting ids, next to run first: positions `start .. start + count` of the
    /// queue, read in one bounded call (never the whole list), so the dashboard pages a
    /// queue of millions as cheaply as one of ten.
    fn queue_page(
        &self,
        queue: &QueueName,
        start: u64,
        count: u64,
    ) -> Result<Vec<u32>, BrokerError> {
        Ok(self
            .queue_ids(queue)?
            .into_iter()
            .skip(start as usize)
            .take(count as usize)
            .collect())
    }

    /// Ids of a queue's jobs that run under a lease now, on any engine (bounded by the
    /// fleet's workers, so reading them all is cheap).
    fn running_ids(&self, _queue: &QueueName) -> Result<Vec<u32>, BrokerError> {
        Ok(Vec::new())
    }

    /// Every engine's published counters (see [`publish_stats`](Broker::publish_stats)),
    /// for `herojobs stats` and the dashboard; empty where nobody publishes.
    fn read_stats(&self) -> Result<Vec<redis::EngineStats>, BrokerError> {
        Ok(Vec::new())
    }

    /// One bounded step of finding queues that other clients created without registering
    /// them (the Go original pushes to `heroqueue:<circle>:<topic>` and finds queues with
    /// `KEYS`): examines about `max_keys` keys, continuing where the previous step stopped,
    /// and registers the queues it finds whose names are name-fixed. Returns those newly
    /// registered. Off the hot path (recovery calls it every few seconds); never `KEYS`.
    /// Brokers where every queue is registered do nothing.
    fn discover_queues(&self, _max_keys: usize) -> Result<Vec<QueueName>, BrokerError> {
        Ok(Vec::new())
    }

    /// Publishes an engine's counters for `herojobs stats` (no-op where nobody can read them).
    fn publish_stats(
        &self,
        _name: &str,
        _fields: &[(&str, u64)],
        _ttl: Duration,
    ) -> Result<(), BrokerError> {
        Ok(())
    }
}
