//! The finisher thread: records outcomes in batches — one broker round trip for a batch of
//! finished jobs, then their OurDB versions — so that recording costs a fraction of a round
//! trip per job. The broker decides who wins (first finisher; the current attempt).

use super::stats::Stats;
use super::{Ending, Outcome, Shared};
use crate::broker::Transition;
use crate::job::JobStatus;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most outcomes recorded in one broker call.
const BATCH: usize = 512;
/// During shutdown, how long a broker outage may delay the last records before they are
/// written to OurDB only (recovery and `get` read them from there).
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(5);

/// The thread body.
pub fn run(shared: Arc<Shared>, rx: Receiver<Outcome>) {
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(first) => {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(o) => batch.push(o),
                        Err(_) => break,
                    }
                }
                record(&shared, batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.draining.load(Ordering::Acquire) && rx.is_empty() {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Retries `f` through broker outages (backoff up to 1 s); during shutdown gives up after
/// [`SHUTDOWN_PATIENCE`].
fn with_retry<T>(
    shared: &Shared,
    what: &str,
    mut f: impl FnMut() -> Result<T, crate::broker::BrokerError>,
) -> Option<T> {
    let mut delay = Duration::from_millis(20);
    let mut draining_since: Option<Instant> = None;
    loop {
        match f() {
            Ok(v) => return Some(v),
            Err(e) => {
                if shared.draining.load(Ordering::Acquire) {
                    let since = *draining_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > SHUTDOWN_PATIENCE {
                        log::error!("{what}: {e}; giving up on the broker at shutdown (OurDB has the record)");
                        return None;
                    }
                }
                log::warn!("{what}: {e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Records one batch.
pub fn record(shared: &Shared, batch: Vec<Outcome>) {
    let slots = batch.iter().filter(|o| o.frees_slot).count();
    record_batch(shared, batch);
    // Only now, recorded in the broker and OurDB, do the jobs stop counting against the
    // pool: jobs taken and not yet recorded never exceed the workers.
    for _ in 0..slots {
        shared.release_worker();
    }
}

fn record_batch(shared: &Shared, batch: Vec<Outcome>) {
    let (releases, finished): (Vec<Outcome>, Vec<Outcome>) =
        batch.into_iter().partition(|o| o.ending == Ending::Release);
    for o in releases {
        let mut job = o.job;
        job.status = JobStatus::New;
        let t = with_retry(shared, "release job", || {
            shared.broker.release(&job, o.attempt)
        });
        if matches!(t, Some(Transition::Applied) | None) {
            Stats::inc(&shared.stats.released);
            if let Err(e) = shared.store.update(&job) {
                log::error!("job {}/{}/{}: OurDB: {e}", job.circle, job.topic, job.id);
            }
        }
    }
    if finished.is_empty() {
        return;
    }
    let pairs: Vec<(crate::job::Job, u32)> = finished
        .iter()
        .map(|o| (o.job.clone(), o.attempt))
        .collect();
    Stats::inc(&shared.stats.finish_batches);
    let transitions = with_retry(shared, "record finished jobs", || {
        crate::client::record_finished(&*shared.broker, &shared.store, &pairs)
    });
    for (i, o) in finished.iter().enumerate() {
        let t = transitions
            .as_ref()
            .and_then(|t| t.get(i).copied())
            .unwrap_or(Transition::Applied);
        if t != Transition::Applied {
            Stats::inc(&shared.stats.superseded);
            continue;
        }
        match o.job.status {
            JobStatus::Done => Stats::inc(&shared.stats.done),
            _ => Stats::inc(&shared.stats.error),
        }
        if let Err(e) = shared.store.update(&o.job) {
            log::error!(
                "job {}/{}/{}: OurDB: {e}",
                o.job.circle,
                o.job.topic,
                o.job.id
            );
        }
    }
}
