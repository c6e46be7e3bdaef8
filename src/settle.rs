//! Settling finished jobs: recording a done or failed run so that exactly one verdict
//! stands. The broker decides who wins (the first finisher; the attempt that owns the job),
//! and OurDB, the record of truth, judges the jobs the broker no longer holds. Used by the
//! engine's finisher and dispatcher and by the client, below both: it knows the broker and
//! the job store, nothing of threads or of the public API.

use crate::broker::{Broker, BrokerError, Transition};
use crate::job::Job;
use crate::store::JobStore;

/// Records finished jobs in the broker, with OurDB as the judge for jobs the broker no longer
/// holds: one the record of truth already has finished (or a later attempt owns) is left
/// alone; the others are written back. The caller then writes OurDB for the `Applied` ones.
/// An OurDB read that fails counts as "not finished there".
pub(crate) fn record_finished(
    broker: &dyn Broker,
    store: &JobStore,
    jobs: &[(Job, u32)],
) -> Result<Vec<Transition>, BrokerError> {
    let t = broker.finish_many(jobs, false)?;
    resolve_missing(broker, store, jobs, t)
}

/// Completes a finish whose broker answer was `t`: jobs the broker no longer holds are
/// checked against OurDB (already finished there, or a later attempt owns them: left alone)
/// and the rest written back to the broker (`restore`).
pub(crate) fn resolve_missing(
    broker: &dyn Broker,
    store: &JobStore,
    jobs: &[(Job, u32)],
    mut t: Vec<Transition>,
) -> Result<Vec<Transition>, BrokerError> {
    let mut restore = Vec::new();
    for (i, (job, attempt)) in jobs.iter().enumerate() {
        if t.get(i) != Some(&Transition::Missing) {
            continue;
        }
        let stored = crate::broker::queue_of(job)
            .ok()
            .and_then(|q| store.get(&q, job.id).ok().flatten());
        match stored {
            Some(stored) if stored.status.is_finished() => t[i] = Transition::AlreadyFinished,
            Some(stored) if stored.attempts > *attempt => t[i] = Transition::Fenced,
            _ => restore.push(i),
        }
    }
    if !restore.is_empty() {
        let again: Vec<(Job, u32)> = restore.iter().map(|&i| jobs[i].clone()).collect();
        let r = broker.finish_many(&again, true)?;
        for (k, &i) in restore.iter().enumerate() {
            t[i] = r.get(k).copied().unwrap_or(Transition::Missing);
        }
    }
    Ok(t)
}
