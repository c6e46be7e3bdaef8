//! Recovery: no job is lost. Three sources of lost jobs:
//!
//! 1. An engine died while running jobs: their leases expire. Any engine takes expired
//!    leases (atomically, so only one does) and queues those jobs again.
//! 2. The broker lost its data (Redis restarted without persistence, `FLUSHALL`): detected
//!    cheaply through [`Broker::epoch`](crate::broker::Broker::epoch). Then (and at start-up)
//!    every unfinished job in OurDB is checked and queued again if the broker does not have
//!    it queued or running under a lease.
//! 3. A submit whose enqueue failed (Redis unreachable for a moment): every new id is checked
//!    once after it appears in OurDB.
//!
//! A job that only *looks* lost (active in OurDB, unknown to the broker, no lease) must look
//! lost twice, `recovery_grace` apart, before it is queued again, so a job another engine is
//! starting is not taken twice. Cost grows with unfinished jobs, not history: per circle/topic
//! recovery keeps a low-water mark (the oldest id that may be unfinished), persisted in
//! `recovery.mark` beside the job database and advanced as the oldest jobs finish.

use super::shared::Shared;
use super::stats::Stats;
use crate::broker::Ensure;
use crate::error::Result;
use crate::names::{JobRef, QueueName};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What recovery knows about one circle/topic.
struct Tracker {
    /// Ids below this are finished (or gone).
    mark: u32,
    /// Ids below this have been checked at least once since they appeared.
    checked_upto: u32,
    /// Mark last persisted.
    mark_written: u32,
}

/// How far the mark may advance in one pass (keeps passes short on huge histories).
const MARK_STEPS: u32 = 100_000;

/// Records a scan may read before their pages are dropped from the resident set: ≈ 1.3 MB
/// of 300-byte jobs.
const TRIM_EVERY: u32 = 4096;

/// Keeps a scan's reads out of this process's resident set. A pass can read up to
/// [`MARK_STEPS`] records in a burst; their mapped pages would stay resident until OurDB's
/// next trim (up to a second later): tens of MB on a busy engine. A scan's pages are not
/// worth keeping, so they are dropped as it goes (the page cache keeps the data; nothing
/// else in the engine reads old jobs).
struct ScanTrim<'a> {
    db: &'a crate::ourdb::OurDb,
    reads: u32,
}

impl ScanTrim<'_> {
    fn read(&mut self) {
        self.reads += 1;
        if self.reads >= TRIM_EVERY {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if self.reads > 0 {
            self.reads = 0;
            if let Err(e) = self.db.release_resident() {
                log::debug!("recovery: {e}");
            }
        }
    }
}

/// How often recovery looks for queues that other clients created without registering them.
const DISCOVER_EVERY: Duration = Duration::from_secs(10);
/// Keys one discovery step examines (a full pass over a large keyspace spans several steps).
const DISCOVER_KEYS: usize = 5000;

/// How often (at most) recovery looks for queues to take out of the registry (idle for
/// `Retention::queue_idle`; twice per that time when it is shorter).
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Recovery's state between passes.
pub(crate) struct Recovery {
    shared: Arc<Shared>,
    trackers: HashMap<QueueName, Tracker>,
    suspects: HashMap<JobRef, Instant>,
    epoch: Option<String>,
    /// When queue discovery last ran.
    discovered: Option<Instant>,
    /// When the registry was last looked at for idle queues.
    pruned: Option<Instant>,
    /// Registered queues seen with nothing to do, and since when.
    idle_since: HashMap<QueueName, Instant>,
    /// The OurDB compaction policy, looked at after each pass.
    compactor: super::compactor::Compactor,
}

/// The thread body. The first pass (a full check: nothing is known about the broker yet)
/// runs at once, beside the dispatcher rather than before it, so a restart with many queued
/// jobs starts working immediately; running it concurrently with takes is what every later
/// pass does anyway.
pub(crate) fn run(shared: Arc<Shared>, mut rec: Recovery) {
    if let Err(e) = rec.run_once() {
        log::warn!("startup recovery: {e}");
    }
    rec.compactor.tick();
    loop {
        let interval = shared.config.recovery_interval;
        let end = Instant::now() + interval;
        while Instant::now() < end {
            if shared.stopping.load(Ordering::Acquire) {
                rec.compactor.finish();
                return;
            }
            shared.nap(Duration::from_millis(100).min(interval));
        }
        if let Err(e) = rec.run_once() {
            log::warn!("recovery: {e}");
        }
        rec.compactor.tick();
    }
}

fn mark_path(shared: &Shared, q: &QueueName) -> std::path::PathBuf {
    shared.store.db_dir(q).with_file_name("recovery.mark")
}

impl Recovery {
    /// Fresh recovery state (its first pass is a full check).
    pub(crate) fn new(shared: Arc<Shared>) -> Recovery {
        Recovery {
            trackers: HashMap::new(),
            suspects: HashMap::new(),
            epoch: None,
            discovered: None,
            pruned: None,
            idle_since: HashMap::new(),
            compactor: super::compactor::Compactor::new(Arc::clone(&shared)),
            shared,
        }
    }

    fn running_here(&self, q: &QueueName, id: u32) -> bool {
        self.shared.running.lock().contains_key(&q.job(id))
    }

    /// One pass: expired leases; then new ids, or every unfinished job if the broker lost
    /// its data; then the suspects.
    pub(crate) fn run_once(&mut self) -> Result<()> {
        let s = Arc::clone(&self.shared);
        for r in s.broker.reclaim_expired(1000)? {
            let (q, id) = (r.queue().clone(), r.id());
            if self.running_here(&q, id) {
                continue; // our renewal lapsed (broker outage); the next renewal restores it
            }
            // The engine that died may have been on another host: this store may never have
            // seen the job. The broker's copy then stands in (it has the hash: only the
            // lease was lost).
            let job = match s.store.get(&q, id) {
                Ok(Some(job)) => Some(job),
                Ok(None) => s.broker.get(&q, id).unwrap_or_else(|e| {
                    log::warn!("recovery: job {q}/{id}: {e}");
                    None
                }),
                Err(e) => {
                    log::warn!("recovery: job {q}/{id}: {e}; using the broker's copy");
                    s.broker.get(&q, id).ok().flatten()
                }
            };
            let Some(job) = job else {
                continue;
            };
            if job.status.is_finished() {
                continue;
            }
            if s.broker.ensure_queued(&job, true)? == Ensure::Requeued {
                log::info!("recovery: job {q}/{id} lost its engine; queued again");
                Stats::inc(&s.stats.recovered);
            }
        }
        let epoch = s.broker.epoch()?;
        let full = self.epoch.as_ref() != Some(&epoch);
        if full && self.epoch.is_some() {
            log::warn!("recovery: the broker lost its data; checking every unfinished job");
        }
        let topics = s.store.topics();
        if full {
            // The fleet's id counters may be gone with the data: this store's high-water
            // marks go back before anyone reserves a new block from zero.
            for q in &topics {
                match s.store.next_id(q) {
                    Ok(next) => {
                        if let Err(e) = s.broker.reserve_ids(q, next, 0) {
                            log::warn!("recovery: re-asserting the id counter of {q}: {e}");
                        }
                    }
                    Err(e) => log::warn!("recovery: {e}"),
                }
            }
        }
        // One database that cannot be read must not stop recovery of the others: it is
        // reported and tried again next pass.
        for q in topics {
            if let Err(e) = self.scan_topic(&q, full) {
                log::error!(
                    "recovery: {q}: {e}; the other databases go on, this one is retried next pass"
                );
                Stats::inc(&s.stats.recovery_errors);
            }
        }
        self.epoch = Some(epoch);
        self.recheck_suspects()?;
        self.discover();
        self.prune_idle_queues();
        Stats::inc(&s.stats.recovery_passes);
        Ok(())
    }

    fn scan_topic(&mut self, q: &QueueName, full: bool) -> Result<()> {
        let s = Arc::clone(&self.shared);
        let db = s.store.db(q)?;
        let next = db.next_id().min(u32::MAX as u64) as u32;
        let tracker = self.trackers.entry(q.clone()).or_insert_with(|| {
            let mark = std::fs::read_to_string(mark_path(&s, q))
                .ok()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(1u32)
                .max(1);
            Tracker {
                mark,
                checked_upto: mark,
                mark_written: mark,
            }
        });
        // Advance the mark past the oldest jobs that finished.
        let mut steps = 0;
        let mut trim = ScanTrim { db: &db, reads: 0 };
        while tracker.mark < next && steps < MARK_STEPS {
            if s.stopping.load(Ordering::Acquire) {
                break;
            }
            Stats::inc(&s.stats.recovery_reads);
            trim.read();
            match s.store.get(q, tracker.mark) {
                Ok(Some(j)) if !j.status.is_finished() => {
                    // Another engine (on any host) may have run it: the broker's finished
                    // copy is then recorded here too, so this store knows the outcome of
                    // its own jobs after the broker forgets them.
                    // A job this engine ran records its own outcome just after Redis does:
                    // copy only what another engine ran (new here), or what has been
                    // finished for a while (this engine's run died before recording it).
                    let local_new = j.status == crate::job::JobStatus::New;
                    let here = s.running.lock().contains_key(&q.job(tracker.mark));
                    match s.broker.get(q, tracker.mark) {
                        Ok(Some(done))
                            if done.status.is_finished()
                                && !here
                                && (local_new || done.time_end + 5 < crate::job::unix_now()) =>
                        {
                            if let Err(e) = s.store.replace(&done) {
                                log::warn!(
                                    "recovery: recording the outcome of {q}/{}: {e}",
                                    done.id
                                );
                                break;
                            }
                            Stats::inc(&s.stats.outcomes_copied);
                            tracker.mark += 1;
                        }
                        _ => break,
                    }
                }
                Ok(_) => tracker.mark += 1,
                Err(e) => {
                    log::warn!("recovery: {e}; skipping it");
                    tracker.mark += 1;
                }
            }
            steps += 1;
        }
        let from = if full {
            tracker.mark
        } else {
            tracker.checked_upto.max(tracker.mark)
        };
        tracker.checked_upto = next;
        let (mark, written) = (tracker.mark, tracker.mark_written);
        let mut id = from;
        while id < next {
            if s.stopping.load(Ordering::Acquire) {
                break;
            }
            let end = next.min(id.saturating_add(500));
            let ids: Vec<u32> = (id..end).collect();
            // Outside a full check only jobs the broker does not hold can be lost: ask it
            // first (one pipelined round trip) and read OurDB only for those.
            let known = if full {
                vec![false; ids.len()]
            } else {
                s.broker.known(q, &ids)?
            };
            let mut check = Vec::new();
            for (i, _) in ids.iter().copied().zip(known).filter(|(_, k)| !k) {
                Stats::inc(&s.stats.recovery_reads);
                trim.read();
                match s.store.get(q, i) {
                    Ok(Some(j)) if !j.status.is_finished() && !self.running_here(q, i) => {
                        check.push((j, false))
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("recovery: {e}"),
                }
            }
            self.apply(q, &check, s.broker.ensure_queued_many(&check)?);
            id = end;
        }
        trim.finish();
        if mark != written {
            let path = mark_path(&s, q);
            let tmp = path.with_extension("mark.tmp");
            if std::fs::write(&tmp, mark.to_string())
                .and_then(|_| std::fs::rename(&tmp, &path))
                .is_ok()
            {
                if let Some(tr) = self.trackers.get_mut(q) {
                    tr.mark_written = mark;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, q: &QueueName, checked: &[(crate::job::Job, bool)], results: Vec<Ensure>) {
        for ((job, _), r) in checked.iter().zip(results) {
            let sk = q.job(job.id);
            match r {
                Ensure::Fine => {
                    self.suspects.remove(&sk);
                }
                Ensure::Requeued => {
                    self.suspects.remove(&sk);
                    log::info!("recovery: job {q}/{} was not queued; queued again", job.id);
                    Stats::inc(&self.shared.stats.recovered);
                }
                Ensure::Suspect => {
                    self.suspects.entry(sk).or_insert_with(Instant::now);
                }
                Ensure::Conflict => {
                    self.suspects.remove(&sk);
                    self.conflicted(q, job);
                }
                Ensure::FinishedElsewhere(status) => {
                    self.suspects.remove(&sk);
                    let mut j = job.clone();
                    j.status = status;
                    let note = "finished on another engine; its outcome expired from Redis before this store copied it (the engine that ran it has it in its OurDB)";
                    if status == crate::job::JobStatus::Done {
                        j.result = note.into();
                    } else {
                        j.error = note.into();
                    }
                    j.time_end = crate::job::unix_now();
                    if let Err(e) = self.shared.store.replace(&j) {
                        log::warn!("recovery: job {q}/{}: {e}", job.id);
                    }
                }
            }
        }
    }

    /// An unfinished job of this store whose id the broker holds for a different job
    /// (another store took the id after the broker lost its counters): it is submitted
    /// again under a fresh id, and its old record says where it went, so nothing is lost
    /// and nothing is overwritten.
    fn conflicted(&mut self, q: &QueueName, job: &crate::job::Job) {
        let s = &self.shared;
        let mut copy = job.clone();
        copy.id = 0;
        // Unsigned (no secrets here): an engine that requires signatures refuses it, as
        // it would any job whose signature no longer matches its id.
        let resubmitted =
            crate::submit::submit_many(&*s.broker, &s.store, &Default::default(), vec![copy]);
        match resubmitted.map(|mut r| r.pop()) {
            Ok(Some(new_ref)) => {
                let new_id = new_ref.id();
                let mut old = job.clone();
                old.status = crate::job::JobStatus::Error;
                old.error = format!(
                    "its id was taken in Redis by another job after Redis lost its data; submitted again as {q}/{new_id}"
                );
                old.time_end = crate::job::unix_now();
                if let Err(e) = s.store.replace(&old) {
                    log::error!("recovery: job {q}/{}: {e}", job.id);
                }
                log::warn!("recovery: job {q}/{} met another job under its id; submitted again as {new_id}", job.id);
                Stats::inc(&s.stats.recovered);
            }
            Ok(None) => {}
            Err(e) => log::warn!("recovery: job {q}/{} met another job under its id; submitting it again failed: {e}; retried next pass", job.id),
        }
    }

    /// Every [`PRUNE_EVERY`]: a registered queue seen with nothing waiting or delayed for
    /// `queue_idle` (seen so on every look since) leaves the registry, in one atomic step
    /// that also checks it runs nothing; its next submit registers it again. Off the hot
    /// path: the takes never pay for it.
    fn prune_idle_queues(&mut self) {
        let idle_for = self.shared.config.retention.queue_idle;
        let every = PRUNE_EVERY.min(idle_for / 2);
        if idle_for.is_zero() || self.pruned.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.pruned = Some(Instant::now());
        let s = Arc::clone(&self.shared);
        let queues = match s.broker.queues() {
            Ok(q) => q,
            Err(e) => {
                log::debug!("recovery: listing queues to prune: {e}");
                return;
            }
        };
        self.idle_since.retain(|q, _| queues.contains(q));
        for q in queues {
            let empty = matches!(
                (s.broker.queue_len(&q), s.broker.lifecycle_counts(&q)),
                (Ok(0), Ok((_, 0)))
            );
            if !empty {
                self.idle_since.remove(&q);
                continue;
            }
            let since = *self
                .idle_since
                .entry(q.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() < idle_for {
                continue;
            }
            match s.broker.prune_queue(&q) {
                Ok(true) => {
                    log::info!("recovery: queue {q} idle for {idle_for:?}: left the registry");
                    Stats::inc(&s.stats.queues_pruned);
                    self.idle_since.remove(&q);
                }
                Ok(false) => {
                    self.idle_since.remove(&q); // it had work after all
                }
                Err(e) => log::debug!("recovery: pruning {q}: {e}"),
            }
        }
    }

    /// Every [`DISCOVER_EVERY`], one bounded step of finding queues other clients (the Go
    /// original) push to without registering them; the dispatcher serves them from its next
    /// registry read.
    fn discover(&mut self) {
        if self
            .discovered
            .is_some_and(|t| t.elapsed() < DISCOVER_EVERY)
        {
            return;
        }
        self.discovered = Some(Instant::now());
        match self.shared.broker.discover_queues(DISCOVER_KEYS) {
            Ok(found) => {
                for q in found {
                    log::info!("recovery: found unregistered queue {q}; serving it");
                    Stats::inc(&self.shared.stats.queues_discovered);
                }
            }
            Err(e) => log::warn!("recovery: looking for unregistered queues: {e}"),
        }
    }

    /// Looks again at jobs that looked lost; queues those still lost after the grace period.
    fn recheck_suspects(&mut self) -> Result<()> {
        let s = Arc::clone(&self.shared);
        let keys: Vec<JobRef> = self.suspects.keys().cloned().collect();
        for r in keys {
            let (q, id) = (r.queue(), r.id());
            let job = match s.store.get(q, id)? {
                Some(j) if !j.status.is_finished() && !self.running_here(q, id) => j,
                _ => {
                    self.suspects.remove(&r);
                    continue;
                }
            };
            let requeue = self
                .suspects
                .get(&r)
                .is_some_and(|t| t.elapsed() >= s.config.recovery_grace);
            let verdict = s.broker.ensure_queued(&job, requeue)?;
            self.apply(q, &[(job, requeue)], vec![verdict]);
        }
        Ok(())
    }
}
