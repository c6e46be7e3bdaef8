//! The worker pool: each worker runs one job at a time with the processor of its params
//! type. A processor that panics fails its job, not the worker.

use super::handoff::{Handoff, Recv};
use super::shared::{Ending, Outcome, Shared, Stored, Work};
use crate::job::{unix_now, Job, JobStatus};
use crate::names::JobRef;
use crate::processor::{JobContext, JobError, JobLog};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The thread body: runs jobs until the hand-off queue is closed and empty.
pub(crate) fn run(shared: Arc<Shared>, work: Arc<Handoff<Work>>) {
    loop {
        match work.recv_timeout(shared.config.poll) {
            Recv::Item(w) => run_one(&shared, w),
            Recv::Timeout => continue,
            Recv::Closed => return,
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Whether this engine may run `job`: its circle's signature (if the circle requires one),
/// then the authenticator hook. `Err` is the job's error; the processor never sees it.
fn admit(shared: &Shared, job: &Job) -> Result<(), String> {
    if let Some(secret) = shared.signing.get(&job.circle) {
        if let Err(e) = crate::signing::verify(job, secret) {
            super::stats::Stats::inc(&shared.stats.refused);
            log::warn!("{e}");
            return Err(e.to_string());
        }
    }
    if let Some(auth) = &shared.authenticator {
        let verdict =
            std::panic::catch_unwind(AssertUnwindSafe(|| auth(job))).unwrap_or_else(|p| {
                Err(format!(
                    "the authenticator panicked: {}",
                    panic_message(&*p)
                ))
            });
        if let Err(reason) = verdict {
            super::stats::Stats::inc(&shared.stats.refused);
            return Err(format!("refused by the authenticator: {reason}"));
        }
    }
    Ok(())
}

/// Cuts the finished job's result, error and log so its OurDB record fits the database's
/// `record_size_max` (the job's log says what was cut).
fn fit_record(shared: &Shared, r: &JobRef, job: &mut Job) {
    let max = match shared.store.db(r.queue()) {
        Ok(db) => db.stored_config().record_size_max,
        Err(_) => crate::ourdb::Config::default().record_size_max,
    };
    if crate::limits::fit_finished(job, max) {
        log::warn!("job {r}: outcome cut to fit the record limit of {max} bytes");
    }
}

/// Runs one job and hands its outcome to the finisher.
pub(crate) fn run_one(shared: &Shared, w: Work) {
    let Work {
        job_ref: key,
        mut job,
        attempt,
        cancel,
        deadline,
        progress,
    } = w;
    if shared.stopping.load(Ordering::Acquire) {
        // Taken but not started when shutdown began: give it back untouched.
        shared.running.lock().remove(&key);
        shared.send_outcome(Outcome {
            job,
            attempt,
            ending: Ending::Release,
            frees_slot: true,
            stored: Stored::Active,
        });
        return;
    }
    super::stats::Stats::inc(&shared.stats.started);
    let ctx = JobContext::with_log(
        deadline,
        shared.timeout_of(&job),
        Arc::clone(&cancel),
        JobLog::new(shared.config.log_limits),
    )
    .with_attempt(attempt.saturating_sub(job.released))
    .with_progress(progress);
    let result = match admit(shared, &job) {
        Err(refusal) => Err(JobError::permanent(refusal)),
        Ok(()) => match shared.registry.get(&job.params_type) {
            None => Err(JobError::permanent(format!(
                "unknown params type: {}",
                job.params_type
            ))),
            Some(p) => std::panic::catch_unwind(AssertUnwindSafe(|| p.process(&job, &ctx)))
                .unwrap_or_else(|panic| {
                    Err(format!("processor panicked: {}", panic_message(&*panic)).into())
                }),
        },
    };
    job.logs.extend(ctx.take_log());
    let entry = shared.running.lock().remove(&key);
    if entry.is_none() {
        // Shutdown gave up on this worker and already gave its job back: nothing to record.
        log::warn!("job {key} returned after the engine gave up on it; its outcome is dropped");
        return;
    }
    let timed_out = entry.as_ref().is_some_and(|r| r.timed_out);
    let ending = if timed_out {
        None // the watchdog recorded the timeout; first finisher wins
    } else if cancel.load(Ordering::Acquire) && shared.cancelling.load(Ordering::Acquire) {
        Some(Ending::Release) // cancelled by shutdown: run it again elsewhere
    } else if Instant::now() >= deadline {
        // The processor saw its deadline before the watchdog's next tick did: the outcome is
        // the same timeout the watchdog would have recorded.
        job.time_end = unix_now();
        job.status = JobStatus::Error;
        job.error = format!("timeout after {} s", shared.timeout_of(&job).as_secs());
        super::stats::Stats::inc(&shared.stats.timed_out);
        if shared.config.retry_timeouts {
            shared.schedule_retry(&mut job, attempt);
        }
        Some(Ending::TimedOut)
    } else {
        job.time_end = unix_now();
        match result {
            Ok(r) => {
                job.status = JobStatus::Done;
                job.result = r;
                job.error.clear();
            }
            Err(e) => {
                job.status = JobStatus::Error;
                job.error = e.to_string();
                if !e.is_permanent() && !ctx.is_permanent() && !cancel.load(Ordering::Acquire) {
                    shared.schedule_retry(&mut job, attempt);
                }
            }
        }
        Some(Ending::Finished)
    };
    if ending.is_some() {
        fit_record(shared, &key, &mut job);
    }
    match ending {
        // The finisher gives the slot back once the outcome is recorded.
        Some(ending) => {
            shared.send_outcome(Outcome {
                job,
                attempt,
                ending,
                frees_slot: true,
                stored: Stored::Active,
            });
        }
        // The watchdog already recorded the timeout: nothing more to record.
        None => shared.release_worker(),
    }
}
