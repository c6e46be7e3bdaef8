//! Engine counters: readable from the library and published in the broker for `herojobs
//! stats`.

use super::Shared;
use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one engine.
#[derive(Default)]
pub struct Stats {
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
    /// Workers given up on at shutdown (their job ignored its cancel past `give_up_after`).
    pub gave_up: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    /// See [`Stats::taken`].
    pub taken: u64,
    /// See [`Stats::batches`].
    pub batches: u64,
    /// See [`Stats::finish_batches`].
    pub finish_batches: u64,
    /// See [`Stats::started`].
    pub started: u64,
    /// See [`Stats::done`].
    pub done: u64,
    /// See [`Stats::error`].
    pub error: u64,
    /// See [`Stats::timed_out`].
    pub timed_out: u64,
    /// See [`Stats::recovered`].
    pub recovered: u64,
    /// See [`Stats::released`].
    pub released: u64,
    /// See [`Stats::superseded`].
    pub superseded: u64,
    /// See [`Stats::recovery_reads`].
    pub recovery_reads: u64,
    /// See [`Stats::recovery_passes`].
    pub recovery_passes: u64,
    /// See [`Stats::recovery_errors`].
    pub recovery_errors: u64,
    /// See [`Stats::outcomes_copied`].
    pub outcomes_copied: u64,
    /// See [`Stats::handed_back`].
    pub handed_back: u64,
    /// See [`Stats::retried`].
    pub retried: u64,
    /// See [`Stats::cancelled`].
    pub cancelled: u64,
    /// See [`Stats::refused`].
    pub refused: u64,
    /// See [`Stats::gave_up`].
    pub gave_up: u64,
    /// Jobs running now.
    pub running: u64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self, shared: &Shared) -> Snapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
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
            gave_up: l(&self.gave_up),
            running: shared.running.lock().len() as u64,
        }
    }
}

impl Snapshot {
    /// (name, value) pairs for publishing.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
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
            ("gave_up", self.gave_up),
            ("running", self.running),
        ]
    }
}
