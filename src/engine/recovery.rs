//! Recovery: no job is lost. Two sources of lost jobs:
//!
//! 1. An engine died while running jobs: their leases expire. Any engine takes expired
//!    leases (atomically, so only one does) and queues those jobs again.
//! 2. The broker lost jobs (Redis restarted empty, FLUSHALL): OurDB still holds them as new
//!    or active. Recovery walks the *unfinished* jobs of every circle/topic and makes sure
//!    each is queued or running under a lease. A job that only *looks* lost must look lost
//!    twice, `recovery_grace` apart, before it is queued again, so a job another engine is
//!    just starting is not taken twice.
//!
//! Cost grows with unfinished jobs, not history: per circle/topic it remembers the ids it
//! has scanned and the ones still unfinished, and persists the lowest unfinished id in
//! `recovery.mark` beside the job database, so start-up scans from there, not from id 1.

use super::stats::Stats;
use super::Shared;
use crate::broker::{Ensure, QueueName};
use crate::error::Result;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What recovery knows about one circle/topic.
#[derive(Default)]
struct Tracker {
    /// Ids below this have been scanned.
    scanned_upto: u32,
    /// Scanned ids not yet finished.
    unfinished: BTreeSet<u32>,
    /// Mark last written.
    mark_written: u32,
}

/// Recovery's state between passes.
pub struct Recovery {
    shared: Arc<Shared>,
    trackers: HashMap<(String, String), Tracker>,
    suspects: HashMap<(QueueName, u32), Instant>,
}

/// The thread body.
pub fn run(shared: Arc<Shared>, mut rec: Recovery) {
    loop {
        let interval = shared.config.recovery_interval;
        let end = Instant::now() + interval;
        while Instant::now() < end {
            if shared.stopping.load(Ordering::Acquire) {
                return;
            }
            shared.nap(Duration::from_millis(100).min(interval));
        }
        if let Err(e) = rec.run_once() {
            log::warn!("recovery: {e}");
        }
    }
}

fn mark_path(shared: &Shared, circle: &str, topic: &str) -> std::path::PathBuf {
    shared
        .store
        .db_dir(circle, topic)
        .with_file_name("recovery.mark")
}

impl Recovery {
    /// Fresh recovery state.
    pub fn new(shared: Arc<Shared>) -> Recovery {
        Recovery {
            shared,
            trackers: HashMap::new(),
            suspects: HashMap::new(),
        }
    }

    fn running_here(&self, q: &QueueName, id: u32) -> bool {
        self.shared.running.lock().contains_key(&(q.clone(), id))
    }

    /// One pass: expired leases, then unfinished jobs of every circle/topic.
    pub fn run_once(&mut self) -> Result<()> {
        let s = Arc::clone(&self.shared);
        for (q, id) in s.broker.reclaim_expired(1000)? {
            if self.running_here(&q, id) {
                continue; // our renewal lapsed (broker outage); the next renewal restores it
            }
            let Some(job) = s.store.get(&q.circle, &q.topic, id)? else {
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
        for (c, t) in s.store.topics() {
            self.scan_topic(&c, &t)?;
        }
        Ok(())
    }

    fn scan_topic(&mut self, c: &str, t: &str) -> Result<()> {
        let s = Arc::clone(&self.shared);
        let db = s.store.db(c, t)?;
        let next = db.next_id().min(u32::MAX as u64) as u32;
        let key = (c.to_string(), t.to_string());
        let tracker = self.trackers.entry(key.clone()).or_insert_with(|| {
            let mark = std::fs::read_to_string(mark_path(&s, c, t))
                .ok()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(1u32)
                .max(1);
            Tracker {
                scanned_upto: mark,
                unfinished: BTreeSet::new(),
                mark_written: mark,
            }
        });
        for id in tracker.scanned_upto..next {
            match s.store.get(c, t, id) {
                Ok(Some(j)) if !j.status.is_finished() => {
                    tracker.unfinished.insert(id);
                }
                Ok(_) => {}
                Err(e) => log::warn!("recovery: {e}"),
            }
        }
        tracker.scanned_upto = tracker.scanned_upto.max(next);
        let q = QueueName::new(c, t);
        let ids: Vec<u32> = tracker.unfinished.iter().copied().collect();
        let mut finished = Vec::new();
        let mut check = Vec::new();
        for id in ids {
            let job = match s.store.get(c, t, id) {
                Ok(Some(j)) if !j.status.is_finished() => j,
                Ok(_) => {
                    finished.push(id);
                    continue;
                }
                Err(e) => {
                    log::warn!("recovery: {e}");
                    continue;
                }
            };
            if self.running_here(&q, id) {
                continue;
            }
            let requeue = self
                .suspects
                .get(&(q.clone(), id))
                .is_some_and(|seen| seen.elapsed() >= s.config.recovery_grace);
            check.push((job, requeue));
        }
        let results = s.broker.ensure_queued_many(&check)?;
        for ((job, _), r) in check.iter().zip(results) {
            let sk = (q.clone(), job.id);
            match r {
                Ensure::Fine => {
                    self.suspects.remove(&sk);
                }
                Ensure::Requeued => {
                    self.suspects.remove(&sk);
                    log::info!(
                        "recovery: job {q}/{} was lost by the broker; queued again",
                        job.id
                    );
                    Stats::inc(&s.stats.recovered);
                }
                Ensure::Suspect => {
                    self.suspects.entry(sk).or_insert_with(Instant::now);
                }
            }
        }
        let Some(tracker) = self.trackers.get_mut(&key) else {
            return Ok(());
        };
        for id in finished {
            tracker.unfinished.remove(&id);
        }
        let mark = tracker
            .unfinished
            .iter()
            .next()
            .copied()
            .unwrap_or(tracker.scanned_upto);
        if mark != tracker.mark_written {
            let path = mark_path(&s, c, t);
            let tmp = path.with_extension("mark.tmp");
            if std::fs::write(&tmp, mark.to_string())
                .and_then(|_| std::fs::rename(&tmp, &path))
                .is_ok()
            {
                tracker.mark_written = mark;
            }
        }
        Ok(())
    }
}
