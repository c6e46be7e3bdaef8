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

#[cfg(test)]
mod tests {
    use crate::broker::Transition;
    use crate::job::JobStatus;
    use crate::test_common::{base_dir, tjob, RedisServer};
    use crate::Client;
    use std::time::Duration;

    /// The verdicts a finish can get, through the client's manual worker steps: the first
    /// finisher wins (also after Redis forgot the job: OurDB judges), and a reclaimed
    /// attempt fences off the old one.
    #[test]
    fn first_finisher_wins_and_a_reclaimed_attempt_fences_the_old_one() {
        let redis = RedisServer::start();
        let (_d, base) = base_dir();
        let client = Client::connect(&redis.url(), &base).unwrap();
        let lease = Duration::from_secs(30);
        let finish = |j: &mut crate::Job, status: JobStatus, text: &str, attempt: u32| {
            j.status = status;
            if status == JobStatus::Done {
                j.result = text.into();
            } else {
                j.error = text.into();
            }
            client.finish(j, attempt).unwrap()
        };

        // Two finishers of the same attempt: the first wins.
        let r = client.submit(tjob("c", "w", "ok")).unwrap();
        let mut a = client.get(&r).unwrap();
        assert_eq!(
            client.set_active(&mut a, 1, lease).unwrap(),
            Transition::Applied
        );
        let mut b = a.clone();
        assert_eq!(
            finish(&mut a, JobStatus::Done, "first", 1),
            Transition::Applied
        );
        assert_eq!(
            finish(&mut b, JobStatus::Error, "second", 1),
            Transition::AlreadyFinished
        );
        assert_eq!(client.get(&r).unwrap().result, "first");

        // Redis forgets everything: OurDB says it is done, so a late finish still loses
        // (and is not written back).
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        let mut late = client.get(&r).unwrap();
        assert_eq!(late.status, JobStatus::Done);
        assert_eq!(
            finish(&mut late, JobStatus::Error, "late", 1),
            Transition::AlreadyFinished
        );
        assert_eq!(client.get(&r).unwrap().result, "first");

        // A reclaimed attempt (2) fences off the old one (1).
        let r = client.submit(tjob("c", "w", "ok")).unwrap();
        let mut old = client.get(&r).unwrap();
        client.set_active(&mut old, 1, lease).unwrap();
        let mut new = old.clone();
        client.set_active(&mut new, 2, lease).unwrap();
        assert_eq!(
            finish(&mut old, JobStatus::Done, "stale", 1),
            Transition::Fenced
        );
        assert_eq!(
            finish(&mut new, JobStatus::Done, "fresh", 2),
            Transition::Applied
        );
        assert_eq!(client.get(&r).unwrap().result, "fresh");
        // The record of truth has the winner too, with its history of states.
        let stored = client.stored(&r).unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.result.as_str()),
            (JobStatus::Done, "fresh")
        );
    }
}
