//! The in-process broker: the same queue semantics as Redis (FIFO per queue, the first
//! non-empty queue in the caller's order first, blocking pop with a timeout, first finisher
//! wins, attempt fencing, leases) in one mutex-guarded map. For a single-process program that
//! wants a durable job queue without Redis: OurDB stays the record of truth, and on restart
//! the engine's recovery queues again what was new or active. Only the last 10,000 finished
//! jobs stay in memory (OurDB has them all), so memory is bounded by the unfinished jobs.

use super::{Broker, BrokerError, Ensure, JobRef, QueueName, Taken, Transition, Wake};
use crate::job::{Job, JobStatus};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

struct Entry {
    job: Job,
    attempt: u32,
    waiting: bool,
}

/// Finished jobs kept in memory (for `get`, waiters and first-finisher-wins) before their
/// state is left to OurDB alone: bounds memory in a long-running program.
const KEEP_FINISHED: usize = 10_000;
/// Dead jobs kept per queue.
const DEAD_MAX: usize = 10_000;

/// An engine's published counters and when they expire.
type Published = (Instant, Vec<(String, u64)>);

#[derive(Default)]
struct State {
    /// Highest id reserved per queue (see `Broker::reserve_ids`).
    counters: HashMap<QueueName, u64>,
    /// Params types engines claimed, and when.
    claims: HashMap<String, Instant>,
    /// Delayed jobs and jobs waiting for their retry, by (due unix ms, id), per queue.
    scheduled: HashMap<QueueName, BTreeSet<(u64, u32)>>,
    /// Jobs that ended in error, oldest first (unix ms, id), per queue; capped.
    dead: HashMap<QueueName, VecDeque<(u64, u32)>>,
    /// Paused queues.
    paused: BTreeSet<QueueName>,
    /// Engines listening for cancels of running jobs.
    cancel_subs: Vec<std::sync::mpsc::Sender<JobRef>>,
    /// Finished jobs in the order they finished (oldest first), for eviction.
    finished: VecDeque<JobRef>,
    registry: BTreeSet<QueueName>,
    queues: HashMap<QueueName, VecDeque<u32>>,
    jobs: HashMap<JobRef, Entry>,
    leases: HashMap<JobRef, Instant>,
}

/// Queues and live job state in process memory.
#[derive(Default)]
pub struct MemoryBroker {
    state: Mutex<State>,
    /// Signalled on enqueue (pops wait on it) and on finish (waiters wait on it).
    changed: Condvar,
    /// Published engine counters with the moment they expire (the embedded dashboard reads
    /// them as it reads Redis's stats hashes).
    stats: Mutex<HashMap<String, Published>>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    fn finish_one(
        &self,
        job: &Job,
        attempt: u32,
        restore: bool,
    ) -> Result<Transition, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        let t = match st.jobs.get(&k) {
            None if !restore => return Ok(Transition::Missing),
            None => Transition::Applied,
            Some(e) if e.job.status.is_finished() => Transition::AlreadyFinished,
            Some(e) if e.attempt != attempt => Transition::Fenced,
            Some(_) => Transition::Applied,
        };
        if t == Transition::Applied && !job.status.is_finished() {
            // Waiting for its retry: back in the scheduled set, not finished.
            st.leases.remove(&k);
            st.put(&k, job, attempt);
            if let Some(e) = st.jobs.get_mut(&k) {
                e.job.status = JobStatus::New;
            }
            st.scheduled
                .entry(k.queue().clone())
                .or_default()
                .insert((job.run_at_ms, k.id()));
            return Ok(t);
        }
        if t == Transition::Applied {
            st.leases.remove(&k);
            st.put(&k, job, attempt);
            if job.status == JobStatus::Error {
                let dead = st.dead.entry(k.queue().clone()).or_default();
                dead.push_back((crate::job::unix_now_ms(), k.id()));
                while dead.len() > DEAD_MAX {
                    dead.pop_front();
                }
            }
            st.finished.push_back(k);
            // Older finished jobs leave memory (OurDB has them); callers that find one
            // missing ask OurDB.
            while st.finished.len() > KEEP_FINISHED {
                if let Some(old) = st.finished.pop_front() {
                    if st
                        .jobs
                        .get(&old)
                        .is_some_and(|e| e.job.status.is_finished())
                    {
                        st.jobs.remove(&old);
                    }
                }
            }
            drop(st);
            self.changed.notify_all();
        }
        Ok(t)
    }
}

/// The state key of a job the broker is given (see `broker::queue_of`).
fn key(job: &Job) -> Result<JobRef, BrokerError> {
    Ok(super::queue_of(job)?.job(job.id))
}

impl State {
    /// Writes a job's entry for `attempt`, keeping a waiter's registration.
    fn put(&mut self, k: &JobRef, job: &Job, attempt: u32) {
        let waiting = self.jobs.get(k).is_some_and(|e| e.waiting);
        self.jobs.insert(
            k.clone(),
            Entry {
                job: job.clone(),
                attempt,
                waiting,
            },
        );
    }

    /// Moves the due jobs of `q` from its scheduled set to the head of its queue (earliest
    /// first); returns the earliest due time left.
    fn promote(&mut self, q: &QueueName) -> Option<u64> {
        let now = crate::job::unix_now_ms();
        let set = self.scheduled.get_mut(q)?;
        let mut due = Vec::new();
        while let Some(&(t, id)) = set.first() {
            if t > now {
                break;
            }
            set.pop_first();
            due.push(id);
        }
        let next = set.first().map(|(t, _)| *t);
        let list = self.queues.entry(q.clone()).or_default();
        for id in due.into_iter().rev() {
            list.push_front(id);
        }
        next
    }

    fn take_now(&mut self, queues: &[QueueName], max: usize, lease: Duration) -> Vec<Taken> {
        let mut out = Vec::new();
        for q in queues {
            while out.len() < max {
                let Some(id) = self.queues.get_mut(q).and_then(|l| l.pop_front()) else {
                    break;
                };
                let k = q.job(id);
                match self.jobs.get_mut(&k) {
                    None => out.push(Taken {
                        queue: q.clone(),
                        id,
                        job: Err(String::new()),
                        attempt: 0,
                    }),
                    Some(e) if e.job.status.is_finished() => {}
                    Some(e) => {
                        e.attempt += 1;
                        e.job.status = JobStatus::Active;
                        e.job.attempts = e.attempt;
                        self.leases.insert(k, Instant::now() + lease);
                        out.push(Taken {
                            queue: q.clone(),
                            id,
                            job: Ok(e.job.clone()),
                            attempt: e.attempt,
                        });
                    }
                }
            }
        }
        out
    }

    fn push(&mut self, q: &QueueName, id: u32) {
        self.registry.insert(q.clone());
        self.queues.entry(q.clone()).or_default().push_back(id);
    }
}

/// An engine's end of the in-process cancel broadcast.
struct MemoryCancelFeed(std::sync::mpsc::Receiver<JobRef>);

impl super::CancelFeed for MemoryCancelFeed {
    fn next(&mut self, timeout: Duration) -> Result<Option<JobRef>, BrokerError> {
        Ok(self.0.recv_timeout(timeout).ok())
    }
}

impl Broker for MemoryBroker {
    fn cancel(&self, job: &Job) -> Result<super::Cancel, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        let status = match st.jobs.get(&k) {
            None => return Ok(super::Cancel::Missing),
            Some(e) if e.job.status.is_finished() => return Ok(super::Cancel::AlreadyFinished),
            Some(e) => e.job.status,
        };
        if let Some(q) = st.queues.get_mut(k.queue()) {
            q.retain(|id| *id != k.id());
        }
        if let Some(s) = st.scheduled.get_mut(k.queue()) {
            s.retain(|(_, id)| *id != k.id());
        }
        st.leases.remove(&k);
        if let Some(e) = st.jobs.get_mut(&k) {
            e.job = job.clone();
            e.job.status = JobStatus::Error;
        }
        st.finished.push_back(k.clone());
        let running = status == JobStatus::Active;
        if running {
            st.cancel_subs.retain(|tx| tx.send(k.clone()).is_ok());
        }
        drop(st);
        self.changed.notify_all();
        Ok(if running {
            super::Cancel::Running
        } else {
            super::Cancel::Waiting
        })
    }

    fn retry_failed(&self, job: &Job) -> Result<Transition, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        match st.jobs.get_mut(&k) {
            None => return Ok(Transition::Missing),
            Some(e) if e.job.status != JobStatus::Error => return Ok(Transition::AlreadyFinished),
            Some(e) => {
                e.job = job.clone();
                e.job.status = JobStatus::New;
            }
        }
        if let Some(d) = st.dead.get_mut(k.queue()) {
            d.retain(|(_, id)| *id != k.id());
        }
        st.push(k.queue(), k.id());
        drop(st);
        self.changed.notify_all();
        Ok(Transition::Applied)
    }

    fn dead(
        &self,
        q: &QueueName,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        let st = self.state.lock();
        Ok(st
            .dead
            .get(q)
            .map(|d| {
                d.iter()
                    .rev()
                    .skip(offset)
                    .take(limit)
                    .map(|(at, id)| (*id, *at))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn purge_dead(&self, q: &QueueName) -> Result<u64, BrokerError> {
        Ok(self
            .state
            .lock()
            .dead
            .remove(q)
            .map_or(0, |d| d.len() as u64))
    }

    fn scheduled(&self, q: &QueueName, limit: usize) -> Result<Vec<(u32, u64)>, BrokerError> {
        let st = self.state.lock();
        Ok(st
            .scheduled
            .get(q)
            .map(|s| s.iter().take(limit).map(|(at, id)| (*id, *at)).collect())
            .unwrap_or_default())
    }

    fn set_progress(&self, jobs: &[(JobRef, String)]) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        for (r, text) in jobs {
            if let Some(e) = st.jobs.get_mut(r) {
                e.job.progress = text.clone();
            }
        }
        Ok(())
    }

    fn set_paused(&self, q: &QueueName, paused: bool) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        if paused {
            st.paused.insert(q.clone());
        } else {
            st.paused.remove(q);
        }
        Ok(())
    }

    fn paused(&self) -> Result<Vec<QueueName>, BrokerError> {
        Ok(self.state.lock().paused.iter().cloned().collect())
    }

    fn prune_queue(&self, q: &QueueName) -> Result<bool, BrokerError> {
        let mut st = self.state.lock();
        let idle = st.queues.get(q).is_none_or(|l| l.is_empty())
            && st.scheduled.get(q).is_none_or(|s| s.is_empty())
            && !st.leases.keys().any(|r| r.queue() == q);
        Ok(idle && st.registry.remove(q))
    }

    fn forget_circle(&self, circle: &str) -> Result<u64, BrokerError> {
        let mut st = self.state.lock();
        let ours = |q: &QueueName| q.circle() == circle;
        let before = st.jobs.len() + st.queues.len() + st.scheduled.len() + st.dead.len();
        st.counters.retain(|q, _| !ours(q));
        st.scheduled.retain(|q, _| !ours(q));
        st.dead.retain(|q, _| !ours(q));
        st.paused.retain(|q| !ours(q));
        st.registry.retain(|q| !ours(q));
        st.queues.retain(|q, _| !ours(q));
        st.jobs.retain(|r, _| !ours(r.queue()));
        st.leases.retain(|r, _| !ours(r.queue()));
        st.finished.retain(|r| !ours(r.queue()));
        let after = st.jobs.len() + st.queues.len() + st.scheduled.len() + st.dead.len();
        Ok((before - after) as u64)
    }

    fn lifecycle_counts(&self, q: &QueueName) -> Result<(u64, u64), BrokerError> {
        let st = self.state.lock();
        Ok((
            st.dead.get(q).map_or(0, |d| d.len() as u64),
            st.scheduled.get(q).map_or(0, |s| s.len() as u64),
        ))
    }

    fn cancel_feed(&self) -> Result<Box<dyn super::CancelFeed>, BrokerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.state.lock().cancel_subs.push(tx);
        Ok(Box::new(MemoryCancelFeed(rx)))
    }

    fn enqueue(&self, jobs: &[Job]) -> Result<Vec<usize>, BrokerError> {
        let mut st = self.state.lock();
        let mut conflicts = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let k = key(j)?;
            if let Some(e) = st.jobs.get(&k) {
                if e.job.token != j.token {
                    conflicts.push(i);
                }
                continue;
            }
            st.jobs.insert(
                k.clone(),
                Entry {
                    job: j.clone(),
                    attempt: j.attempts,
                    waiting: false,
                },
            );
            if j.run_at_ms > crate::job::unix_now_ms() {
                st.registry.insert(k.queue().clone());
                st.scheduled
                    .entry(k.queue().clone())
                    .or_default()
                    .insert((j.run_at_ms, j.id));
            } else {
                st.push(k.queue(), j.id);
            }
        }
        drop(st);
        self.changed.notify_all();
        Ok(conflicts)
    }

    fn claim_types(&self, types: &[String]) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        let now = Instant::now();
        for t in types {
            st.claims.insert(t.clone(), now);
        }
        Ok(())
    }

    fn type_claimed(&self, t: &str, within: Duration) -> Result<bool, BrokerError> {
        Ok(self
            .state
            .lock()
            .claims
            .get(t)
            .is_some_and(|at| at.elapsed() <= within))
    }

    fn reserve_ids(
        &self,
        q: &QueueName,
        floor: u64,
        count: u64,
    ) -> Result<(u64, u64), BrokerError> {
        let mut st = self.state.lock();
        let cur = st.counters.get(q).copied().unwrap_or(0);
        let start = (cur + 1).max(floor.max(1));
        let end = start + count;
        if end - 1 > u32::MAX as u64 {
            return Err(BrokerError::Config(format!("id space of {q} exhausted")));
        }
        if end - 1 > cur {
            st.counters.insert(q.clone(), end - 1);
        }
        Ok((start, end))
    }

    fn ids_issued(&self, q: &QueueName) -> Result<Option<u64>, BrokerError> {
        Ok(self.state.lock().counters.get(q).copied())
    }

    fn get(&self, q: &QueueName, id: u32) -> Result<Option<Job>, BrokerError> {
        Ok(self
            .state
            .lock()
            .jobs
            .get(&q.job(id))
            .map(|e| e.job.clone()))
    }

    fn queues(&self) -> Result<Vec<QueueName>, BrokerError> {
        Ok(self.state.lock().registry.iter().cloned().collect())
    }

    fn peek(&self, q: &QueueName) -> Result<Option<u32>, BrokerError> {
        Ok(self
            .state
            .lock()
            .queues
            .get(q)
            .and_then(|l| l.front().copied()))
    }

    fn queue_len(&self, q: &QueueName) -> Result<u64, BrokerError> {
        Ok(self
            .state
            .lock()
            .queues
            .get(q)
            .map_or(0, |l| l.len() as u64))
    }

    fn queue_ids(&self, q: &QueueName) -> Result<Vec<u32>, BrokerError> {
        Ok(self
            .state
            .lock()
            .queues
            .get(q)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default())
    }

    fn empty(&self, q: &QueueName) -> Result<u64, BrokerError> {
        let mut st = self.state.lock();
        let ids: Vec<u32> = st
            .queues
            .remove(q)
            .map(|l| l.into_iter().collect())
            .unwrap_or_default();
        for id in &ids {
            st.jobs.remove(&q.job(*id));
        }
        Ok(ids.len() as u64)
    }

    fn delete(&self, q: &QueueName, id: u32) -> Result<bool, BrokerError> {
        let mut st = self.state.lock();
        if let Some(l) = st.queues.get_mut(q) {
            l.retain(|x| *x != id);
        }
        st.leases.remove(&q.job(id));
        Ok(st.jobs.remove(&q.job(id)).is_some())
    }

    fn start(&self, job: &Job, attempt: u32, lease: Duration) -> Result<Transition, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        if st.jobs.get(&k).is_some_and(|e| e.job.status.is_finished()) {
            return Ok(Transition::AlreadyFinished);
        }
        st.put(&k, job, attempt);
        st.leases.insert(k, Instant::now() + lease);
        Ok(Transition::Applied)
    }

    fn wait_done(&self, q: &QueueName, id: u32, timeout: Duration) -> Result<Wake, BrokerError> {
        let end = Instant::now() + timeout;
        let k = q.job(id);
        let mut st = self.state.lock();
        let mut woken = false;
        loop {
            match st.jobs.get_mut(&k) {
                Some(e) if e.job.status.is_finished() => {
                    return Ok(Wake::Finished(Box::new(e.job.clone())))
                }
                Some(e) => e.waiting = true,
                // Finished jobs leave the broker: after any change, let the caller look in
                // OurDB again.
                None if woken => return Ok(Wake::Signalled),
                None => {}
            }
            if Instant::now() >= end {
                return Ok(Wake::TimedOut);
            }
            woken = !self.changed.wait_until(&mut st, end).timed_out();
        }
    }

    fn finish_and_take(
        &self,
        finished: &[(Job, u32)],
        queues: &[QueueName],
        max: usize,
        lease: Duration,
    ) -> Result<super::TakeResult, BrokerError> {
        let t = self.finish_many(finished, false)?;
        let mut st = self.state.lock();
        let mut next_due: Option<u64> = None;
        for q in queues {
            if let Some(d) = st.promote(q) {
                next_due = Some(next_due.map_or(d, |n| n.min(d)));
            }
        }
        let taken = st.take_now(queues, max, lease);
        Ok((t, taken, next_due))
    }

    fn wait_for_jobs(&self, _queues: &[QueueName], timeout: Duration) -> Result<(), BrokerError> {
        let end = Instant::now() + timeout;
        let mut st = self.state.lock();
        // Checked under the lock the submitters take, so a submit cannot slip in between.
        // Any queue counts, like Redis's wake-up list: a submit to a queue the caller does
        // not know yet must wake it too (it re-reads the registry when its take is empty).
        let waiting = |st: &State| st.queues.values().any(|l| !l.is_empty());
        while !waiting(&st) {
            if self.changed.wait_until(&mut st, end).timed_out() {
                break;
            }
        }
        Ok(())
    }

    fn finish_many(
        &self,
        jobs: &[(Job, u32)],
        restore: bool,
    ) -> Result<Vec<Transition>, BrokerError> {
        jobs.iter()
            .map(|(j, a)| self.finish_one(j, *a, restore))
            .collect()
    }

    fn release(&self, job: &Job, attempt: u32, to_back: bool) -> Result<Transition, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        match st.jobs.get_mut(&k) {
            Some(e) if e.job.status.is_finished() => return Ok(Transition::AlreadyFinished),
            Some(e) if e.attempt != attempt => return Ok(Transition::Fenced),
            Some(e) => {
                e.job = job.clone();
                e.job.status = JobStatus::New;
                e.job.released = e.job.released.saturating_add(1);
            }
            None => return Ok(Transition::Missing),
        }
        st.leases.remove(&k);
        st.registry.insert(k.queue().clone());
        let q = st.queues.entry(k.queue().clone()).or_default();
        if to_back {
            q.push_back(k.id());
        } else {
            q.push_front(k.id());
        }
        drop(st);
        self.changed.notify_all();
        Ok(Transition::Applied)
    }

    fn renew(&self, running: &[JobRef], lease: Duration) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        let until = Instant::now() + lease;
        for k in running {
            st.leases.insert(k.clone(), until);
        }
        Ok(())
    }

    fn reclaim_expired(&self, limit: usize) -> Result<Vec<JobRef>, BrokerError> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let expired: Vec<JobRef> = st
            .leases
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect();
        for k in &expired {
            st.leases.remove(k);
        }
        Ok(expired)
    }

    fn known(&self, q: &QueueName, ids: &[u32]) -> Result<Vec<bool>, BrokerError> {
        let st = self.state.lock();
        Ok(ids
            .iter()
            .map(|id| st.jobs.contains_key(&q.job(*id)))
            .collect())
    }

    fn queue_page(&self, q: &QueueName, start: u64, count: u64) -> Result<Vec<u32>, BrokerError> {
        Ok(self
            .state
            .lock()
            .queues
            .get(q)
            .map(|l| {
                l.iter()
                    .skip(start as usize)
                    .take(count as usize)
                    .copied()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn running_ids(&self, q: &QueueName) -> Result<Vec<u32>, BrokerError> {
        let st = self.state.lock();
        let mut ids: Vec<u32> = st
            .leases
            .keys()
            .filter(|r| r.queue() == q)
            .map(|r| r.id())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn publish_stats(
        &self,
        name: &str,
        fields: &[(&str, u64)],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.stats
            .lock()
            .insert(name.to_string(), (Instant::now() + ttl, fields));
        Ok(())
    }

    fn read_stats(&self) -> Result<Vec<super::redis::EngineStats>, BrokerError> {
        let mut stats = self.stats.lock();
        let now = Instant::now();
        stats.retain(|_, (until, _)| *until > now);
        let mut out: Vec<_> = stats
            .iter()
            .map(|(name, (_, f))| (name.clone(), f.clone()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn epoch(&self) -> Result<String, BrokerError> {
        // In-process state lives exactly as long as this broker.
        Ok(format!("memory-{:p}", self))
    }

    fn ensure_queued(&self, job: &Job, requeue: bool) -> Result<Ensure, BrokerError> {
        let mut st = self.state.lock();
        let k = key(job)?;
        let lease = st.leases.contains_key(&k);
        let r = match st.jobs.get(&k) {
            None if job.status == JobStatus::Active && !requeue && !lease => Ensure::Suspect,
            None if job.status == JobStatus::Active && lease => Ensure::Fine,
            None => {
                let mut j = job.clone();
                j.status = JobStatus::New;
                st.jobs.insert(
                    k.clone(),
                    Entry {
                        job: j,
                        attempt: job.attempts,
                        waiting: false,
                    },
                );
                if job.run_at_ms > crate::job::unix_now_ms() {
                    st.registry.insert(k.queue().clone());
                    st.scheduled
                        .entry(k.queue().clone())
                        .or_default()
                        .insert((job.run_at_ms, k.id()));
                } else {
                    st.push(k.queue(), k.id());
                }
                Ensure::Requeued
            }
            Some(e) if !job.token.is_empty() && e.job.token != job.token => Ensure::Conflict,
            Some(e) if e.job.status == JobStatus::Active && !lease => {
                if requeue {
                    if let Some(e) = st.jobs.get_mut(&k) {
                        e.job.status = JobStatus::New;
                    }
                    st.push(k.queue(), k.id());
                    Ensure::Requeued
                } else {
                    Ensure::Suspect
                }
            }
            Some(_) => Ensure::Fine,
        };
        drop(st);
        if r == Ensure::Requeued {
            self.changed.notify_all();
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u32) -> Job {
        Job {
            id,
            circle: "c".into(),
            topic: "t".into(),
            ..Job::default()
        }
    }

    #[test]
    fn finished_jobs_leave_memory_but_first_finisher_still_wins() {
        let b = MemoryBroker::new();
        let n = KEEP_FINISHED as u32 + 50;
        b.enqueue(&(1..=n).map(job).collect::<Vec<_>>()).unwrap();
        let q = QueueName::new("c", "t").unwrap();
        let (_, taken, _) = b
            .finish_and_take(
                &[],
                std::slice::from_ref(&q),
                n as usize,
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(taken.len(), n as usize, "FIFO take of everything");
        assert_eq!(taken[0].id, 1);
        for t in &taken {
            let mut j = t.job.clone().unwrap();
            j.status = JobStatus::Done;
            assert_eq!(
                b.finish_many(&[(j.clone(), t.attempt)], false)
                    .map(|mut t| t.remove(0))
                    .unwrap(),
                Transition::Applied
            );
        }
        assert_eq!(b.state.lock().jobs.len(), KEEP_FINISHED);
        // A recent one: a second finisher loses. An evicted one: the broker says Missing and
        // the caller asks OurDB.
        let mut late = job(n);
        late.status = JobStatus::Error;
        assert_eq!(
            b.finish_many(&[(late.clone(), 1)], false)
                .map(|mut t| t.remove(0))
                .unwrap(),
            Transition::AlreadyFinished
        );
        assert_eq!(
            b.finish_many(&[(job(1).clone(), 1)], false)
                .map(|mut t| t.remove(0))
                .unwrap(),
            Transition::Missing
        );
        assert!(matches!(
            b.wait_done(&q, n, Duration::from_millis(10)).unwrap(),
            Wake::Finished(_)
        ));
    }
}
