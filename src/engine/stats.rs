//! Engine counters: readable from the library and published in the broker for `herojobs
//! stats`, the dashboard and `/metrics` (per engine, and per queue with wait-time and
//! run-time histograms).

use crate::counters::QueueCounts;
use crate::job::{Job, JobStatus};
use crate::names::QueueName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The figures of an engine's counters that other parts of it keep (see
/// `Shared::stats`).
pub(crate) struct Now {
    pub(crate) dbs_blocked: u64,
    pub(crate) dbs_unblocked: u64,
    pub(crate) unrecorded: u64,
    pub(crate) running: u64,
    pub(crate) workers: u64,
    pub(crate) blocked_dbs: Vec<(String, u64)>,
}

/// Monotonic counters of one engine.
#[derive(Default)]
pub(crate) struct Stats {
    /// Jobs taken off the queues.
    pub taken: AtomicU64,
    /// Broker calls that took at least one job (taken / batches = average batch).
    pub batches: AtomicU64,
    /// Finisher round trips (outcomes recorded per broker call = done / finish_batches).
    pub finish_batches: AtomicU64,
    /// Runs started by a worker.
    pub started: AtomicU64,
    /// Recorded done.
    pub done: AtomicU64,
    /// Recorded error (timeouts included).
    pub error: AtomicU64,
    /// Recorded as timed out.
    pub timed_out: AtomicU64,
    /// Jobs queued again by recovery (lost by the broker or by a dead engine).
    pub recovered: AtomicU64,
    /// Jobs given back to their queue at shutdown.
    pub released: AtomicU64,
    /// Results dropped because another finisher or attempt won.
    pub superseded: AtomicU64,
    /// Job records recovery has read (its cost: grows with unfinished jobs, not history).
    pub recovery_reads: AtomicU64,
    /// Recovery passes completed (the first is the start-up pass, run beside the dispatcher).
    pub recovery_passes: AtomicU64,
    /// Databases recovery could not scan in a pass (it went on with the others).
    pub recovery_errors: AtomicU64,
    /// Outcomes of this store's jobs, run by other engines, copied from the broker.
    pub outcomes_copied: AtomicU64,
    /// Jobs handed back to their queue because no processor here runs their type.
    pub handed_back: AtomicU64,
    /// Failed runs put back to wait for their retry.
    pub retried: AtomicU64,
    /// Running jobs whose cancel reached this engine.
    pub cancelled: AtomicU64,
    /// Jobs refused before running (bad or missing signature, or the authenticator said no).
    pub refused: AtomicU64,
    /// Jobs taken at an id the fleet never issued (planted in the broker): failed there,
    /// never recorded in OurDB.
    pub refused_ids: AtomicU64,
    /// Workers given up on at shutdown (their job ignored its cancel past `give_up_after`).
    pub gave_up: AtomicU64,
    /// Outcomes per queue (one lock per recorded batch, not per job).
    pub queues: parking_lot::Mutex<HashMap<QueueName, QueueCounts>>,
    /// Queues found unregistered (pushed to by other clients) and registered by recovery.
    pub queues_discovered: AtomicU64,
    /// Idle queues taken out of the registry by recovery.
    pub queues_pruned: AtomicU64,
    /// OurDB compactions run by the compaction policy.
    pub compactions: AtomicU64,
    /// Data bytes those compactions gave back.
    pub compaction_reclaimed: AtomicU64,
    /// Compactions that failed (logged; the database is unchanged and tried again).
    pub compaction_errors: AtomicU64,
}

/// An engine's counters at one moment ([`WatchDog::stats`](crate::WatchDog::stats)): what
/// it has done since it started, and what it is doing now.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct EngineStats {
    /// Jobs taken off the queues.
    pub taken: u64,
    /// Broker calls that took at least one job (taken / batches = average batch).
    pub batches: u64,
    /// Finisher round trips (outcomes recorded per broker call = done / finish_batches).
    pub finish_batches: u64,
    /// Runs started by a worker.
    pub started: u64,
    /// Recorded done.
    pub done: u64,
    /// Recorded error (timeouts included).
    pub error: u64,
    /// Recorded as timed out.
    pub timed_out: u64,
    /// Jobs queued again by recovery (lost by the broker or by a dead engine).
    pub recovered: u64,
    /// Jobs given back to their queue at shutdown.
    pub released: u64,
    /// Results dropped because another finisher or attempt won.
    pub superseded: u64,
    /// Job records recovery has read (its cost: grows with unfinished jobs, not history).
    pub recovery_reads: u64,
    /// Recovery passes completed (the first is the start-up pass, run beside the dispatcher).
    pub recovery_passes: u64,
    /// Databases recovery could not scan in a pass (it went on with the others).
    pub recovery_errors: u64,
    /// Outcomes of this store's jobs, run by other engines, copied from the broker.
    pub outcomes_copied: u64,
    /// Jobs handed back to their queue because no processor here runs their type.
    pub handed_back: u64,
    /// Failed runs put back to wait for their retry.
    pub retried: u64,
    /// Running jobs whose cancel reached this engine.
    pub cancelled: u64,
    /// Jobs refused before running (bad or missing signature, or the authenticator said no).
    pub refused: u64,
    /// Jobs taken at an id the fleet never issued (planted in the broker): failed there,
    /// never recorded in OurDB.
    pub refused_ids: u64,
    /// Workers given up on at shutdown (their job ignored its cancel past `give_up_after`).
    pub gave_up: u64,
    /// Times an OurDB database refused writes after retries and was blocked (its queue not
    /// taken from until it stores again).
    pub dbs_blocked: u64,
    /// Times a blocked database stored its kept versions and was unblocked.
    pub dbs_unblocked: u64,
    /// Queues found unregistered (pushed to by other clients) and registered by recovery.
    pub queues_discovered: u64,
    /// Idle queues taken out of the registry by recovery.
    pub queues_pruned: u64,
    /// OurDB compactions run by the compaction policy ([`Compaction`](crate::Compaction)).
    pub compactions: u64,
    /// Data bytes those compactions gave back.
    pub compaction_reclaimed: u64,
    /// Compactions that failed (logged; the database is left as it was and tried again).
    pub compaction_errors: u64,
    /// Job versions kept for blocked databases now (outcomes OurDB does not have yet).
    pub unrecorded: u64,
    /// Jobs running now.
    pub running: u64,
    /// Worker threads of the engine.
    pub workers: u64,
    /// The databases blocked now (`circle/topic`) with the seconds each has been blocked.
    pub blocked_dbs: Vec<(String, u64)>,
}

impl Stats {
    /// Adds one to a counter.
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters, with the figures of now that live elsewhere in the engine.
    pub(crate) fn snapshot(&self, now: Now) -> EngineStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            taken: l(&self.taken),
            batches: l(&self.batches),
            finish_batches: l(&self.finish_batches),
            started: l(&self.started),
            done: l(&self.done),
            error: l(&self.error),
            timed_out: l(&self.timed_out),
            recovered: l(&self.recovered),
            released: l(&self.released),
            superseded: l(&self.superseded),
            recovery_reads: l(&self.recovery_reads),
            recovery_passes: l(&self.recovery_passes),
            recovery_errors: l(&self.recovery_errors),
            outcomes_copied: l(&self.outcomes_copied),
            handed_back: l(&self.handed_back),
            retried: l(&self.retried),
            cancelled: l(&self.cancelled),
            refused: l(&self.refused),
            refused_ids: l(&self.refused_ids),
            gave_up: l(&self.gave_up),
            dbs_blocked: now.dbs_blocked,
            dbs_unblocked: now.dbs_unblocked,
            queues_discovered: l(&self.queues_discovered),
            queues_pruned: l(&self.queues_pruned),
            compactions: l(&self.compactions),
            compaction_reclaimed: l(&self.compaction_reclaimed),
            compaction_errors: l(&self.compaction_errors),
            unrecorded: now.unrecorded,
            running: now.running,
            workers: now.workers,
            blocked_dbs: now.blocked_dbs,
        }
    }

    /// Counts recorded outcomes per queue: called once per batch where the finisher applies
    /// the broker's verdicts, with the winners only (`timed_out` says which of them the
    /// watchdog timed out).
    pub(crate) fn record_outcomes<'a>(&self, jobs: impl IntoIterator<Item = (&'a Job, bool)>) {
        let mut queues = self.queues.lock();
        for (job, timed_out) in jobs {
            let Some(key) = QueueName::from_fixed(&job.circle, &job.topic) else {
                continue; // never: recorded jobs were taken under a fixed queue name
            };
            let q = queues.entry(key).or_default();
            match job.status {
                JobStatus::Done => q.done += 1,
                JobStatus::Error => q.failed += 1,
                // Waiting for a retry: not an outcome yet.
                JobStatus::New | JobStatus::Active => q.retried += 1,
            }
            if timed_out {
                q.timed_out += 1;
            }
            if job.time_start > 0 {
                q.wait
                    .observe((job.time_start - job.time_scheduled).max(0) as u64);
                if job.time_end >= job.time_start {
                    q.run.observe((job.time_end - job.time_start) as u64);
                }
            }
        }
    }

    /// The per-queue counts, for publishing (see [`QueueCounts`] for the field names).
    pub(crate) fn queue_fields(&self) -> Vec<(String, u64)> {
        let queues = self.queues.lock();
        let mut out = Vec::with_capacity(queues.len() * 32);
        for (q, c) in queues.iter() {
            c.fields(q, &mut out);
        }
        out
    }
}

impl EngineStats {
    /// (name, value) pairs for publishing.
    pub(crate) fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("taken", self.taken),
            ("batches", self.batches),
            ("finish_batches", self.finish_batches),
            ("started", self.started),
            ("done", self.done),
            ("error", self.error),
            ("timed_out", self.timed_out),
            ("recovered", self.recovered),
            ("released", self.released),
            ("superseded", self.superseded),
            ("recovery_reads", self.recovery_reads),
            ("recovery_passes", self.recovery_passes),
            ("recovery_errors", self.recovery_errors),
            ("outcomes_copied", self.outcomes_copied),
            ("handed_back", self.handed_back),
            ("retried", self.retried),
            ("cancelled", self.cancelled),
            ("refused", self.refused),
            ("refused_ids", self.refused_ids),
            ("gave_up", self.gave_up),
            ("dbs_blocked", self.dbs_blocked),
            ("dbs_unblocked", self.dbs_unblocked),
            ("queues_discovered", self.queues_discovered),
            ("queues_pruned", self.queues_pruned),
            ("blocked", self.blocked_dbs.len() as u64),
            ("unrecorded", self.unrecorded),
            ("running", self.running),
            ("workers", self.workers),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counts_survive_publishing() {
        let stats = Stats::default();
        let mut a = Job::new("c", "t", crate::ParamsType::RhaiScript, "1");
        a.status = JobStatus::Done;
        a.time_scheduled = 100;
        a.time_start = 103;
        a.time_end = 104;
        let mut b = a.clone();
        b.status = JobStatus::Error;
        b.time_end = 4000;
        stats.record_outcomes([(&a, false), (&b, true)]);
        let mut fields = stats.queue_fields();
        fields.push(("done".into(), 2));
        let (engine, queues) = crate::counters::parse_fields(&fields);
        assert_eq!(engine.get("done"), Some(&2));
        let q = &queues[&QueueName::new("c", "t").unwrap()];
        assert_eq!((q.done, q.failed, q.timed_out), (1, 1, 1));
        assert_eq!(q.wait.count, 2);
        assert_eq!(q.wait.sum, 6);
        assert_eq!(q.wait.buckets[3], 2, "3 s waits fall in the <= 5 s bucket");
        assert_eq!(q.run.buckets[1], 1, "1 s run");
        assert_eq!(
            q.run.buckets[crate::counters::BUCKETS.len()],
            1,
            "3896 s run: the unbounded bucket"
        );
        assert_eq!(queues.len(), 1);
    }
}
