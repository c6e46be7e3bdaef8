//! The submit protocol: how a job becomes acknowledged. OurDB first (it assigns the id,
//! from a block reserved fleet-wide in the broker), then one atomic broker round trip that
//! stores the job, queues it and registers its queue. A job is acknowledged only when the
//! broker holds exactly it under its id (a random submit token, compared atomically). Used
//! by the client and by the engine's recovery (which resubmits a job whose id another store
//! took), below both.

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::job::{unix_now, Job, JobStatus};
use crate::names::{JobRef, QueueName};
use crate::store::{Absent, JobStore};
use std::collections::{BTreeMap, HashMap};

/// Fresh ids a job may take in a row when each meets another job under it in the broker
/// (possible only after Redis lost its id counters).
const ROUNDS: usize = 5;

/// Circles whose jobs are signed, with their secrets.
pub(crate) type Signers = HashMap<String, Vec<u8>>;

/// Submits `jobs`: one OurDB batch per circle/topic and one broker round trip for all (plus
/// one per [`ID_BLOCK`](crate::store::ID_BLOCK) ids, to reserve a block of ids fleet-wide).
/// Returns their addresses in input order.
///
/// A job that meets another one under its id is not acknowledged: its OurDB record is
/// removed, the rest of its id block given up, and it is submitted again under a fresh id.
pub(crate) fn submit_many(
    broker: &dyn Broker,
    store: &JobStore,
    signers: &Signers,
    jobs: Vec<Job>,
) -> Result<Vec<JobRef>> {
    let now = unix_now();
    let identity = store.identity()?;
    let mut prepared: Vec<(QueueName, Job)> = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        let q = QueueName::new(&job.circle, &job.topic)?;
        job.circle = q.circle().to_string();
        job.topic = q.topic().to_string();
        job.status = JobStatus::New;
        job.time_scheduled = now;
        job.time_start = 0;
        job.time_end = 0;
        job.attempts = 0;
        job.released = 0;
        job.error.clear();
        job.result.clear();
        job.signature.clear();
        job.store = identity.clone();
        prepared.push((q, job));
    }
    // Indexes of the jobs still to be acknowledged.
    let mut todo: Vec<usize> = (0..prepared.len()).collect();
    for _ in 0..ROUNDS {
        let mut groups: BTreeMap<QueueName, Vec<usize>> = BTreeMap::new();
        for &i in &todo {
            let (q, j) = &mut prepared[i];
            j.token = crate::store::token();
            groups.entry(q.clone()).or_default().push(i);
        }
        for (q, idx) in &groups {
            let batch = subset(&prepared, idx);
            let mut reserve = |floor: u64, count: u64| {
                broker
                    .reserve_ids(q, floor, count)
                    .map_err(|e| e.to_string())
            };
            check_fit(store, q, &batch)?;
            let ids = store.add(q, &batch, &mut reserve)?;
            for (&i, id) in idx.iter().zip(ids) {
                prepared[i].1.id = id;
            }
        }
        sign(store, signers, &mut prepared, &todo)?;
        let batch = subset(&prepared, &todo);
        let conflicts = match broker.enqueue(&batch) {
            Ok(c) => c,
            Err(source) => {
                let (q, first) = &prepared[todo[0]];
                return Err(Error::NotQueued {
                    job: q.job(first.id),
                    source: Box::new(source),
                });
            }
        };
        if conflicts.is_empty() {
            return Ok(prepared.iter().map(|(q, j)| q.job(j.id)).collect());
        }
        let mut again = Vec::with_capacity(conflicts.len());
        for k in conflicts {
            let i = todo[k];
            let (q, j) = &prepared[i];
            log::warn!(
                "job {}: the id is taken in Redis by another job; submitting again under a fresh id",
                q.job(j.id)
            );
            // Never acknowledged: the record goes, and so does the rest of its block.
            store.delete(q, j.id)?;
            store.end_block(q)?;
            again.push(i);
        }
        todo = again;
    }
    Err(Error::IdConflict {
        queue: prepared[todo[0]].0.clone(),
        rounds: ROUNDS,
    })
}

/// The jobs at `idx` as one slice: a copy, unless there is one job (the usual submit) —
/// the slice is then the job itself.
fn subset<'a>(prepared: &'a [(QueueName, Job)], idx: &[usize]) -> std::borrow::Cow<'a, [Job]> {
    match idx {
        [i] => std::borrow::Cow::Borrowed(std::slice::from_ref(&prepared[*i].1)),
        _ => std::borrow::Cow::Owned(idx.iter().map(|&i| prepared[i].1.clone()).collect()),
    }
}

/// Refuses jobs whose record, as submitted, would leave no room under the database's
/// `record_size_max` for their outcome (see [`crate::limits`]); nothing is stored.
fn check_fit(store: &JobStore, q: &QueueName, jobs: &[Job]) -> Result<()> {
    let max = store.db(q)?.stored_config().record_size_max;
    for job in jobs {
        crate::limits::check_submit(job, max)?;
    }
    Ok(())
}

/// Signs the jobs of signing circles (their ids are assigned now) and writes the signed
/// version to OurDB too, so a job recovery re-queues from OurDB still verifies. Called
/// between the OurDB add and the enqueue.
fn sign(
    store: &JobStore,
    signers: &Signers,
    jobs: &mut [(QueueName, Job)],
    which: &[usize],
) -> Result<()> {
    if signers.is_empty() {
        return Ok(());
    }
    let mut signed = Vec::new();
    for &i in which {
        let (_, job) = &mut jobs[i];
        if let Some(secret) = signers.get(&job.circle) {
            job.signature = crate::signing::sign(job, secret);
            signed.push(i);
        }
    }
    if let Some(e) = store
        .update_many(signed.iter().map(|&i| &jobs[i].1), Absent::Create)
        .into_iter()
        .next()
    {
        return Err(e.into());
    }
    Ok(())
}
