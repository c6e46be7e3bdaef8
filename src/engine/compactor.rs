//! The compaction policy ([`Compaction`](super::config::Compaction)), checked by the recovery
//! thread: no thread of its own polls. A check reads each database's dead bytes (a counter
//! OurDB keeps: no scan) at most every `check_every`; the databases due are compacted by one
//! short-lived background thread, so a long copy never delays recovery passes, and at most
//! one such thread runs at a time. Online compaction lets writers (the finisher, submitters)
//! and readers go on meanwhile, and loses no acknowledged write.

use super::shared::Shared;
use super::stats::Stats;
use crate::names::QueueName;
use crate::ourdb::{CompactOptions, OurDb, OurDbError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// The policy's state, owned by the recovery thread.
pub(crate) struct Compactor {
    shared: Arc<Shared>,
    /// When the databases were last looked at.
    checked: Option<Instant>,
    /// Dead bytes of each database right after this engine last compacted it: bytes a
    /// compaction keeping history left dead are not counted again (see `Compaction`).
    dead_after: Arc<Mutex<HashMap<QueueName, u64>>>,
    /// The thread compacting the databases found due, while it runs.
    running: Option<JoinHandle<()>>,
}

impl Compactor {
    pub(crate) fn new(shared: Arc<Shared>) -> Compactor {
        Compactor {
            shared,
            checked: None,
            dead_after: Arc::default(),
            running: None,
        }
    }

    /// Looks at the databases if `check_every` has passed and no compaction is running, and
    /// starts one background thread for those due.
    pub(crate) fn tick(&mut self) {
        let policy = self.shared.config.compaction.clone();
        if !policy.enabled
            || self
                .checked
                .is_some_and(|t| t.elapsed() < policy.check_every)
        {
            return;
        }
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
        self.checked = Some(Instant::now());
        let mut due: Vec<(QueueName, Arc<OurDb>)> = Vec::new();
        for q in self.shared.store.topics() {
            let db = match self.shared.store.existing_db(&q) {
                Ok(Some(db)) => db,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("compaction: {q}: {e}");
                    continue;
                }
            };
            match db.space() {
                Ok(space) => {
                    let before = self.dead_after.lock().get(&q).copied().unwrap_or(0);
                    if policy.due(&space, before) {
                        log::info!(
                            "compaction: {q}: {} of {} data bytes dead ({} after the last \
                             compaction): compacting",
                            space.dead_bytes,
                            space.data_bytes,
                            before
                        );
                        due.push((q, db));
                    }
                }
                Err(e) => log::warn!("compaction: {q}: reading its dead bytes: {e}"),
            }
        }
        if due.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let dead_after = Arc::clone(&self.dead_after);
        let opts = CompactOptions::keep_history(policy.keep_history);
        let spawned = std::thread::Builder::new()
            .name("herojobs-compact".into())
            .spawn(move || {
                for (q, db) in due {
                    if shared.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    compact_one(&shared, &dead_after, &q, &db, opts);
                }
            });
        match spawned {
            Ok(h) => self.running = Some(h),
            Err(e) => log::error!("compaction: cannot start its thread: {e}"),
        }
    }

    /// Waits for a running compaction (engine stop: the database is left whole either way,
    /// but a compaction cut off by the process's exit only wastes its copy).
    pub(crate) fn finish(&mut self) {
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
    }
}

fn compact_one(
    shared: &Shared,
    dead_after: &Mutex<HashMap<QueueName, u64>>,
    q: &QueueName,
    db: &OurDb,
    opts: CompactOptions,
) {
    let started = Instant::now();
    match db.compact_with(opts) {
        Ok(r) => {
            // The bytes first: a reader that sees the compaction counted sees what it
            // reclaimed (a test read `compactions` 1 and `compaction_reclaimed` 0 between).
            shared
                .stats
                .compaction_reclaimed
                .fetch_add(r.reclaimed(), Ordering::Release);
            shared.stats.compactions.fetch_add(1, Ordering::Release);
            let dead = db.space().map(|s| s.dead_bytes).unwrap_or(0);
            dead_after.lock().insert(q.clone(), dead);
            log::info!(
                "compaction: {q}: {} records, {} -> {} data bytes ({} reclaimed) in {:.1?}; \
                 {} ids written meanwhile caught up ({} under the writer lock)",
                r.records,
                r.bytes_before,
                r.bytes_after,
                r.reclaimed(),
                started.elapsed(),
                r.caught_up,
                r.caught_up_locked
            );
        }
        // Another process compacts it now: nothing to do.
        Err(OurDbError::CompactionBusy { .. }) => {
            log::debug!("compaction: {q}: another compaction is running")
        }
        Err(e) => {
            Stats::inc(&shared.stats.compaction_errors);
            log::error!("compaction: {q}: {e} (the database is unchanged; tried again later)");
        }
    }
}
