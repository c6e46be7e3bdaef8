//! Job versions OurDB could not store, and the databases they block.
//!
//! A job whose outcome the broker recorded but OurDB did not stays `active` in OurDB and runs
//! again once the broker forgets it (a Redis restart): work done, outcome lost. So a failed
//! OurDB write is retried a few times at once (a short, bounded backoff); if the database
//! still refuses, the versions are kept here, the database is *blocked* (the dispatcher takes
//! no more jobs of its circle/topic: running work it cannot record is pointless) and said so
//! in the log and the counters. The watchdog thread retries blocked databases periodically;
//! once every kept version is written the database is unblocked and its queue is served again.
//!
//! Kept versions are latest-wins per job: a job's `active` version (written when it is taken)
//! is replaced by its outcome, never written after it. Writes to a blocked database go
//! through this module under its lock, so a retry never races a newer version.

use crate::job::Job;
use crate::names::QueueName;
use crate::store::{Absent, JobStore, StoreError};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pauses between the immediate retries of a failed write (then the database is blocked).
const RETRIES: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
];
/// First pause before a blocked database is tried again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest pause between tries of a blocked database.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// One blocked database.
struct Blocked {
    /// The latest version of each job not yet stored, by id.
    jobs: BTreeMap<u32, Job>,
    /// The last failure.
    error: String,
    /// When it was blocked.
    since: Instant,
    /// When to try it again.
    next_try: Instant,
    /// The pause after the next failed try.
    pause: Duration,
}

/// The blocked databases of one engine.
#[derive(Default)]
pub(crate) struct Unrecorded {
    blocked: Mutex<HashMap<QueueName, Blocked>>,
    /// How many databases are blocked: the dispatcher's check costs one atomic load while
    /// none is.
    count: AtomicUsize,
    /// Times a database refused writes after the retries and was blocked.
    times_blocked: AtomicU64,
    /// Times a blocked database stored its kept versions and was unblocked.
    times_unblocked: AtomicU64,
}

/// Groups jobs by database, keeping their order.
/// Jobs whose names are not fixed cannot have a database (never: the engine's jobs were
/// taken under a fixed queue name); they are logged and left out.
fn by_queue<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<(QueueName, Vec<&'a Job>)> {
    let mut groups: Vec<(QueueName, Vec<&Job>)> = Vec::new();
    for j in jobs {
        // A batch is mostly one queue: a job of the last group's queue joins it without its
        // names being checked again (they equal names already checked).
        if let Some((g, v)) = groups.last_mut() {
            if g.circle() == j.circle && g.topic() == j.topic {
                v.push(j);
                continue;
            }
        }
        let Some(q) = QueueName::from_fixed(&j.circle, &j.topic) else {
            log::error!(
                "job {}/{}/{}: names not fixed; not recorded",
                j.circle,
                j.topic,
                j.id
            );
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == q) {
            Some((_, v)) => v.push(j),
            None => groups.push((q, vec![j])),
        }
    }
    groups
}

/// Writes one database's jobs (one OurDB batch).
fn write(store: &JobStore, jobs: &[&Job], absent: Absent) -> Result<(), StoreError> {
    store
        .update_many(jobs.iter().copied(), absent)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

/// Tries again after a failed write. A handle whose write or fsync failed refuses every later
/// write (the kernel may have dropped its dirty pages), so the database is opened afresh —
/// but only once its directory takes a probe file: opening maps the files, and on a full
/// tmpfs even reading a hole in a shared map needs a page the filesystem no longer has.
fn rewrite(store: &JobStore, q: &QueueName, jobs: &[&Job], absent: Absent) -> Result<(), String> {
    let dir = store.db_dir(q);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    super::probe_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    store.close(q);
    write(store, jobs, absent).map_err(|e| e.to_string())
}

impl Unrecorded {
    /// Whether the database of `q` is blocked (its queue is not to be taken from).
    pub(crate) fn is_blocked(&self, q: &QueueName) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.blocked.lock().contains_key(q)
    }

    /// The blocked databases as `circle/topic`, sorted, with how long each has been blocked.
    pub(crate) fn list(&self) -> Vec<(String, Duration)> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut v: Vec<(String, Duration)> = self
            .blocked
            .lock()
            .iter()
            .map(|(q, b)| (q.to_string(), b.since.elapsed()))
            .collect();
        v.sort();
        v
    }

    /// Times a database was blocked, and unblocked, since the engine started.
    pub(crate) fn times(&self) -> (u64, u64) {
        (
            self.times_blocked.load(Ordering::Relaxed),
            self.times_unblocked.load(Ordering::Relaxed),
        )
    }

    /// How many job versions wait for a blocked database.
    pub(crate) fn waiting(&self) -> usize {
        if self.count.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.blocked.lock().values().map(|b| b.jobs.len()).sum()
    }

    /// Stores `jobs` in OurDB (one batch per database). A database that refuses is retried
    /// a few times; if it still refuses, its jobs are kept and it is blocked. Jobs of an
    /// already blocked database are kept without a write (the periodic retry writes them in
    /// order). `what` names the write in the log.
    /// While the engine drains (`draining`), a refusing database is blocked after one
    /// retry, so shutdown is not held up.
    ///
    /// `absent`: what becomes of a job without a record (see [`Absent`]). Kept versions are
    /// always created when written later: a job's `active` version may be among them,
    /// never written, and an outcome replaces it there.
    pub(crate) fn store(
        &self,
        store: &JobStore,
        draining: bool,
        jobs: Vec<&Job>,
        absent: Absent,
        what: &str,
    ) {
        for (q, group) in by_queue(jobs) {
            if self.count.load(Ordering::Acquire) > 0 {
                let mut g = self.blocked.lock();
                if let Some(b) = g.get_mut(&q) {
                    for j in group {
                        b.jobs.insert(j.id, j.clone());
                    }
                    continue;
                }
            }
            let mut res = write(store, &group, absent).map_err(|e| e.to_string());
            for pause in RETRIES {
                let Err(e) = &res else { break };
                if draining && pause > RETRIES[0] {
                    break;
                }
                log::warn!("{what} in OurDB {q}: {e}; retrying in {pause:?}");
                std::thread::sleep(pause);
                res = rewrite(store, &q, &group, absent);
            }
            if let Err(e) = res {
                self.block(&q, group, e);
            }
        }
    }

    fn block(&self, q: &QueueName, jobs: Vec<&Job>, error: String) {
        let mut g = self.blocked.lock();
        let now = Instant::now();
        let b = g.entry(q.clone()).or_insert_with(|| {
            self.times_blocked.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "OurDB {q} refuses writes ({error}): taking no more jobs of {q} until it \
                 stores again (retried every {RETRY_FIRST:?} to {RETRY_MAX:?})"
            );
            Blocked {
                jobs: BTreeMap::new(),
                error: error.clone(),
                since: now,
                next_try: now + RETRY_FIRST,
                pause: RETRY_FIRST,
            }
        });
        b.error = error;
        for j in jobs {
            b.jobs.insert(j.id, j.clone());
        }
        self.count.store(g.len(), Ordering::Release);
    }

    /// Tries the blocked databases whose pause is over (`force`: all of them, now); unblocks
    /// those that store their kept versions. Returns how many stay blocked.
    pub(crate) fn retry(&self, store: &JobStore, force: bool) -> usize {
        if self.count.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut g = self.blocked.lock();
        let now = Instant::now();
        let mut done = Vec::new();
        for (q, b) in g.iter_mut() {
            if !force && now < b.next_try {
                continue;
            }
            let jobs: Vec<&Job> = b.jobs.values().collect();
            // A database blocked by a failed `active` write may hold only versions that a
            // later outcome replaced: either way, what is kept is the latest.
            match rewrite(store, q, &jobs, Absent::Create) {
                Ok(()) => {
                    log::warn!(
                        "OurDB {q} stores again after {:?}: {} kept version(s) written; its queue is served again",
                        b.since.elapsed(),
                        jobs.len()
                    );
                    done.push(q.clone());
                }
                Err(e) => {
                    b.error = e.clone();
                    b.pause = (b.pause * 2).min(RETRY_MAX);
                    b.next_try = Instant::now() + b.pause;
                    log::warn!(
                        "OurDB {q} still refuses writes ({e}); {} version(s) kept; next try in {:?}",
                        jobs.len(),
                        b.pause
                    );
                }
            }
        }
        for q in done {
            g.remove(&q);
            self.times_unblocked.fetch_add(1, Ordering::Relaxed);
        }
        self.count.store(g.len(), Ordering::Release);
        g.len()
    }

    /// At shutdown: one last try, then says in the log what OurDB does not have (the broker
    /// has those outcomes while it keeps its data; recovery copies them into OurDB once the
    /// database stores again).
    pub(crate) fn last_try(&self, store: &JobStore) {
        if self.retry(store, true) == 0 {
            return;
        }
        for (q, b) in self.blocked.lock().iter() {
            let ids: Vec<String> = b.jobs.keys().take(20).map(|i| i.to_string()).collect();
            log::error!(
                "stopping with {} job version(s) of {q} not in OurDB ({}): ids {}{}",
                b.jobs.len(),
                b.error,
                ids.join(","),
                if b.jobs.len() > 20 { ",..." } else { "" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::memory::MemoryBroker;
    use crate::broker::QueueName;
    use crate::job::{Job, JobStatus, ParamsType};
    use crate::store::Absent;
    use std::sync::Arc;

    fn job(circle: &str, id: u32, status: JobStatus) -> Job {
        Job {
            id,
            status,
            ..Job::new(circle, "t", ParamsType::HeroScript, "x")
        }
    }

    /// A database that cannot be opened (its circle directory is a file) blocks only its own
    /// queue, keeps the latest version of each job, and is unblocked once it stores them.
    #[test]
    fn a_refusing_database_is_blocked_keeps_the_latest_versions_and_unblocks() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("circles")).unwrap();
        std::fs::write(base.join("circles/bad"), b"not a directory").unwrap();
        let wd = crate::WatchDog::builder()
            .broker(Arc::new(MemoryBroker::new()))
            .base(base)
            .build()
            .unwrap();
        let s = Arc::clone(wd.shared());
        let (bad, good) = (
            QueueName::new("bad", "t").unwrap(),
            QueueName::new("good", "t").unwrap(),
        );
        let active = job("bad", 1, JobStatus::Active);
        let done = job("bad", 1, JobStatus::Done);
        let other = job("good", 1, JobStatus::Done);
        s.unrecorded.store(
            &s.store,
            false,
            vec![&active, &other],
            Absent::Create,
            "test",
        );
        assert!(s.unrecorded.is_blocked(&bad));
        assert!(!s.unrecorded.is_blocked(&good));
        assert_eq!(
            s.store.get(&good, 1).unwrap().unwrap().status,
            JobStatus::Done
        );
        // A blocked database's later version replaces the kept one, written to nobody.
        s.unrecorded
            .store(&s.store, false, vec![&done], Absent::Skip, "test");
        assert_eq!(s.unrecorded.waiting(), 1);
        assert_eq!(
            s.unrecorded.retry(&s.store, true),
            1,
            "unblocked while still broken"
        );
        assert_eq!(s.unrecorded.list().len(), 1);
        assert_eq!(s.unrecorded.times().0, 1);
        // Repaired: the kept version (the latest) is written and the queue is served again.
        std::fs::remove_file(base.join("circles/bad")).unwrap();
        assert_eq!(s.unrecorded.retry(&s.store, true), 0);
        assert!(!s.unrecorded.is_blocked(&bad));
        assert_eq!(s.unrecorded.waiting(), 0);
        assert_eq!(
            s.store.get(&bad, 1).unwrap().unwrap().status,
            JobStatus::Done
        );
    }
}
