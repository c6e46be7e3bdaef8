//! The deadline keeper, the engine's `herojobs-watchdog` thread: enforces deadlines (sets the job's cancel flag and records error
//! "timeout after N s"; a result that arrives later is dropped), renews the leases of running
//! jobs, and publishes the counters.

use super::shared::{Ending, Outcome, Shared, Stored};
use super::stats::Stats;
use crate::job::{unix_now, JobStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(20);

/// The deadline keeper's own state.
pub(crate) struct Deadlines {
    shared: Arc<Shared>,
    last_renew: Instant,
    last_publish: Option<Instant>,
}

/// The thread body: runs until the engine drains (so timeouts hold during the grace period).
pub(crate) fn run(shared: Arc<Shared>) {
    let mut w = Deadlines {
        shared,
        last_renew: Instant::now(),
        last_publish: None,
    };
    while !w.shared.draining.load(Ordering::Acquire) {
        w.run_once();
        std::thread::sleep(TICK);
    }
    w.publish();
}

impl Deadlines {
    /// One step: time out expired jobs, renew leases when due, publish counters when due.
    pub(crate) fn run_once(&mut self) {
        let s = Arc::clone(&self.shared);
        let now = Instant::now();
        {
            let mut running = s.running.lock();
            for r in running.values_mut() {
                if r.timed_out || now < r.deadline {
                    continue;
                }
                r.timed_out = true;
                r.cancel.store(true, Ordering::Release);
                let mut job = r.job.clone();
                job.status = JobStatus::Error;
                job.error = format!("timeout after {} s", s.timeout_of(&job).as_secs());
                job.time_end = unix_now();
                Stats::inc(&s.stats.timed_out);
                if s.config.retry_timeouts {
                    s.schedule_retry(&mut job, r.attempt);
                }
                s.send_outcome(Outcome {
                    job,
                    attempt: r.attempt,
                    ending: Ending::TimedOut,
                    frees_slot: false,
                    stored: Stored::Active,
                });
            }
        }
        // Progress reports that changed since the last tick: one pipelined write for all.
        let changed: Vec<(crate::names::JobRef, String)> = {
            let mut running = s.running.lock();
            running
                .iter_mut()
                .filter_map(|(k, r)| {
                    let (seq, text) = r.progress.get();
                    (seq != r.progress_published).then(|| {
                        r.progress_published = seq;
                        (k.clone(), text)
                    })
                })
                .collect()
        };
        if !changed.is_empty() {
            if let Err(e) = s.broker.set_progress(&changed) {
                log::debug!("publishing progress of {} job(s): {e}", changed.len());
            }
        }
        if self.last_renew.elapsed() >= s.config.lease / 3 {
            self.last_renew = Instant::now();
            let keys: Vec<_> = s.running.lock().keys().cloned().collect();
            if let Err(e) = s.broker.renew(&keys, s.config.lease) {
                log::warn!("renewing {} lease(s): {e}", keys.len());
            }
        }
        // Blocked OurDB databases, each when its pause is over.
        s.unrecorded.retry(&s.store, false);
        if self
            .last_publish
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.last_publish = Some(Instant::now());
        let s = &self.shared;
        let snap = s.stats();
        let queue_fields = s.stats.queue_fields();
        let mut fields: Vec<(&str, u64)> = snap.fields();
        fields.extend(queue_fields.iter().map(|(k, v)| (k.as_str(), *v)));
        // Each blocked database as a field of its own (`blocked:circle/topic` = seconds).
        let blocked: Vec<(String, u64)> = snap
            .blocked_dbs
            .iter()
            .map(|(q, secs)| (format!("blocked:{q}"), *secs))
            .collect();
        fields.extend(blocked.iter().map(|(k, v)| (k.as_str(), *v)));
        if let Err(e) = s
            .broker
            .publish_stats(&s.config.name, &fields, Duration::from_secs(5))
        {
            log::debug!("publishing counters: {e}");
        }
        if !s.config.reconcile_only {
            if let Err(e) = s.broker.claim_types(&s.registry.types()) {
                log::debug!("claiming params types: {e}");
            }
        }
    }
}
