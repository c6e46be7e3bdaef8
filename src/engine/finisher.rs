//! Recording outcomes: one broker round trip for a batch of finished jobs, then their OurDB
//! versions. The broker decides who wins (first finisher; the current attempt).
//!
//! Two callers. A busy dispatcher records the outbox in the same round trip that takes the
//! next jobs ([`record_and_take`]), so a batch of jobs costs one round trip, not two. The
//! finisher thread ([`run`]) records what the dispatcher will not record soon: outcomes that
//! arrive while it blocks waiting for submits, or that free no slot (timeouts), or that sat
//! in the outbox longer than [`STALE`].

use super::shared::{Ending, Outcome, Shared, Stored};
use super::stats::Stats;
use crate::broker::{BrokerError, QueueName, Taken, Transition};
use crate::job::JobStatus;
use crate::store::Absent;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most outcomes recorded in one broker call.
pub(crate) const BATCH: usize = 512;
/// How long an outcome may wait for the dispatcher's next take before the finisher records
/// it on its own.
const STALE: Duration = Duration::from_millis(1);
/// During shutdown, how long a broker outage may delay the last records before they are
/// written to OurDB only (recovery and `get` read them from there).
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(5);

/// The finisher thread's body: runs until the engine drains and the outbox is empty.
pub(crate) fn run(shared: Arc<Shared>) {
    loop {
        let batch = {
            let mut g = shared.slots.lock();
            loop {
                let draining = shared.draining.load(Ordering::Acquire);
                if !g.outbox.is_empty() {
                    let stale = g.oldest.is_some_and(|t| t.elapsed() >= STALE);
                    if !g.dispatcher_collects || stale || draining {
                        break g.drain(BATCH);
                    }
                } else if draining {
                    return;
                }
                let wait = if g.outbox.is_empty() {
                    Duration::from_millis(50)
                } else {
                    STALE
                };
                shared.finish_cv.wait_for(&mut g, wait);
            }
        };
        record(&shared, batch);
    }
}

/// Records one batch (retrying through broker outages) and gives its workers' slots back.
fn record(shared: &Shared, batch: Vec<Outcome>) {
    let freed = batch.iter().filter(|o| o.frees_slot).count();
    let (releases, finished): (Vec<Outcome>, Vec<Outcome>) = batch
        .into_iter()
        .partition(|o| matches!(o.ending, Ending::Release | Ending::HandBack));
    record_releases(shared, releases);
    if !finished.is_empty() {
        Stats::inc(&shared.stats.finish_batches);
        let pairs = pairs_of(&finished);
        let t = with_retry(shared, "record finished jobs", false, || {
            crate::settle::record_finished(&*shared.broker, &shared.store, &pairs)
        });
        apply(shared, &finished, t.as_deref());
    }
    give_back(shared, freed, 0);
}

/// Outcomes the broker has recorded whose OurDB versions are not written yet: the
/// dispatcher writes them while its next broker call is out (see [`record_and_take`]).
pub(crate) struct Deferred {
    finished: Vec<Outcome>,
    transitions: Vec<Transition>,
}

/// Writes the deferred outcomes, if any, to OurDB.
pub(crate) fn write_deferred(shared: &Shared, deferred: &mut Option<Deferred>) {
    if let Some(d) = deferred.take() {
        apply(shared, &d.finished, Some(&d.transitions));
    }
}

/// Records `batch` and, in the same broker round trip, takes jobs from `queues` (the first
/// queue first): as many as the `reserved` free slots plus the slots the batch's jobs free.
/// Once recorded in the broker the batch's jobs stop counting against the pool and the taken
/// ones start counting — in one step, so jobs taken and not yet recorded never exceed the
/// workers. The caller took `reserved` out of the free count; what is not used goes back.
///
/// The ones left in `deferred` by the previous call are written while this call's request
/// is at the broker, and this batch's OurDB versions are left there when the broker
/// overlaps and every job of it is done: the dispatcher's OurDB work overlaps the server's
/// instead of adding to each round trip. Errors and retries are written at once (others may
/// act on them at once, see below); a job's `active` version, written before it is handed
/// out, comes before any outcome. The dispatcher writes `deferred` before any wait that can
/// be long (all workers busy, submits, a back-off), so versions wait at most one busy round
/// trip and the 200 µs it may wait to gather a batch.
///
/// If the call fails, the batch goes back to the outbox for the finisher (which retries
/// through outages) and the error is returned: the caller stops collecting and backs off.
/// Jobs a failed call may have taken are under leases that expire; lease recovery queues
/// them again. Releases (only at shutdown) are left to the finisher too.
pub(crate) fn record_and_take(
    shared: &Shared,
    batch: Vec<Outcome>,
    reserved: usize,
    queues: &[QueueName],
    deferred: &mut Option<Deferred>,
) -> Result<(Vec<Taken>, Option<u64>), BrokerError> {
    let (releases, finished): (Vec<Outcome>, Vec<Outcome>) = batch
        .into_iter()
        .partition(|o| matches!(o.ending, Ending::Release | Ending::HandBack));
    requeue(shared, releases);
    let freed = finished.iter().filter(|o| o.frees_slot).count();
    let pairs = pairs_of(&finished);
    let max = reserved + freed;
    let result = shared.broker.finish_and_take_overlapped(
        &pairs,
        queues,
        max,
        shared.config.lease,
        &mut || write_deferred(shared, deferred),
    );
    // Not written yet if the call failed before its request went out.
    write_deferred(shared, deferred);
    let (t, taken, next_due) = match result {
        Ok(r) => r,
        Err(e) => {
            requeue(shared, finished);
            give_back(shared, reserved, 0);
            return Err(e);
        }
    };
    if finished.is_empty() {
        give_back(shared, reserved, taken.len());
        return Ok((taken, next_due));
    }
    Stats::inc(&shared.stats.finish_batches);
    // Jobs Redis lost (it restarted): OurDB decides, and they are written back. Rare; done
    // here so the slot count stays exact. Given up only at shutdown, when the finisher
    // takes over.
    let t = if t.contains(&Transition::Missing) {
        match with_retry(shared, "record finished jobs", true, || {
            crate::settle::resolve_missing(&*shared.broker, &shared.store, &pairs, t.clone())
        }) {
            Some(t) => t,
            None => {
                requeue(shared, finished);
                give_back(shared, reserved, taken.len());
                return Ok((taken, next_due));
            }
        }
    } else {
        t
    };
    // Only a batch of jobs done may wait, and only for a broker that overlaps: nothing acts
    // on a done job but `delete`. A final error can be retried by a client at once
    // (`Client::retry` writes its new version to OurDB), and a retry due at once can be
    // taken again — by this very call (the script promotes due jobs before it takes) or by
    // another engine — whose new versions must not be overtaken by this older one. Such a
    // batch is written now, as before the overlap.
    if !shared.broker.overlaps() || finished.iter().any(|o| o.job.status != JobStatus::Done) {
        apply(shared, &finished, Some(&t));
    } else {
        *deferred = Some(Deferred {
            finished,
            transitions: t,
        });
    }
    give_back(shared, reserved + freed, taken.len());
    Ok((taken, next_due))
}

fn pairs_of(finished: &[Outcome]) -> Vec<(crate::job::Job, u32)> {
    finished
        .iter()
        .map(|o| (o.job.clone(), o.attempt))
        .collect()
}

/// Counts the broker's verdicts and writes the winners to OurDB. No verdict (shutdown gave up
/// on the broker): OurDB gets the record anyway.
fn apply(shared: &Shared, finished: &[Outcome], transitions: Option<&[Transition]>) {
    let mut winners = Vec::with_capacity(finished.len());
    for (i, o) in finished.iter().enumerate() {
        let t = transitions
            .and_then(|t| t.get(i).copied())
            .unwrap_or(Transition::Applied);
        if t != Transition::Applied {
            Stats::inc(&shared.stats.superseded);
            continue;
        }
        match o.job.status {
            JobStatus::Done => Stats::inc(&shared.stats.done),
            JobStatus::Error => Stats::inc(&shared.stats.error),
            JobStatus::New | JobStatus::Active => Stats::inc(&shared.stats.retried),
        }
        winners.push(o);
    }
    // Per-queue counts and wait/run histograms, for the dashboard and /metrics.
    shared.stats.record_outcomes(
        winners
            .iter()
            .map(|o| (&o.job, o.ending == Ending::TimedOut)),
    );
    // One OurDB batch for the lot: in `strict` mode one fsync round instead of one per job.
    // A database that keeps refusing is blocked, its outcomes kept until it stores again.
    // A job that ran is written only over a record that exists: its `active` version was
    // written (or is kept, with the database blocked) before it ran, so a job without a
    // record was deleted meanwhile — by a client that saw it done, between the broker's
    // verdict and this write — and stays deleted. One failed before it ran may have no
    // record here (submitted through another store): created. An id the fleet never issued
    // is not written at all (see `Stored::Never`).
    let draining = shared.draining.load(Ordering::Acquire);
    for (stored, absent) in [
        (Stored::Active, Absent::Skip),
        (Stored::Maybe, Absent::Create),
    ] {
        let jobs: Vec<&crate::job::Job> = winners
            .iter()
            .filter(|o| o.stored == stored)
            .map(|o| &o.job)
            .collect();
        if !jobs.is_empty() {
            shared.unrecorded.store(
                &shared.store,
                draining,
                jobs,
                absent,
                "recording finished jobs",
            );
        }
    }
}

/// Slot accounting after a record: `freed` slots come back, `taken` are in use.
fn give_back(shared: &Shared, freed: usize, taken: usize) {
    if freed == 0 && taken == 0 {
        return;
    }
    {
        let mut g = shared.slots.lock();
        g.free = (g.free + freed).saturating_sub(taken);
    }
    if freed > taken {
        shared.dispatch_cv.notify_one();
    }
}

/// Puts outcomes back in the outbox for the finisher.
pub(crate) fn requeue(shared: &Shared, outcomes: Vec<Outcome>) {
    if outcomes.is_empty() {
        return;
    }
    let mut g = shared.slots.lock();
    for o in outcomes {
        g.push(o);
    }
    drop(g);
    shared.finish_cv.notify_one();
}

fn record_releases(shared: &Shared, releases: Vec<Outcome>) {
    for o in releases {
        let mut job = o.job;
        job.status = JobStatus::New;
        let t = with_retry(shared, "release job", false, || {
            shared
                .broker
                .release(&job, o.attempt, o.ending == Ending::HandBack)
        });
        if o.ending == Ending::HandBack {
            Stats::inc(&shared.stats.handed_back);
        } else if matches!(t, Some(Transition::Applied) | None) {
            Stats::inc(&shared.stats.released);
            // The broker counted the start as released; OurDB's copy says so too.
            job.released = job.released.saturating_add(1);
            if let Err(e) = shared.store.update(&job) {
                log::error!("job {}/{}/{}: OurDB: {e}", job.circle, job.topic, job.id);
            }
        }
    }
}

/// Retries `f` through broker outages (backoff up to 1 s); during shutdown gives up after
/// [`SHUTDOWN_PATIENCE`], or at once when `until_stopping` and the engine is stopping.
fn with_retry<T>(
    shared: &Shared,
    what: &str,
    until_stopping: bool,
    mut f: impl FnMut() -> Result<T, BrokerError>,
) -> Option<T> {
    let mut delay = Duration::from_millis(20);
    let mut draining_since: Option<Instant> = None;
    loop {
        match f() {
            Ok(v) => return Some(v),
            Err(e) => {
                if until_stopping && shared.stopping.load(Ordering::Acquire) {
                    log::warn!("{what}: {e}; left to the finisher (stopping)");
                    return None;
                }
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
