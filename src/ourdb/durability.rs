//! When a write becomes durable: group commit for `Strict`, the background syncer for
//! `Periodic`.
//!
//! Every write gets a sequence number. `Strict` writers wait until the durable sequence
//! reaches theirs; the first waiter to find no fsync running becomes the leader, fsyncs for
//! everyone written so far, and wakes the rest. While it syncs, new writers keep appending (the
//! write lock is not held during fsync), so under load each fsync covers a whole batch.

use super::error::{OurDbError, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use std::time::Instant;

/// Longest a group-commit leader waits for in-flight writers before it fsyncs.
const GATHER_MAX: Duration = Duration::from_micros(100);

/// Decrements the in-flight writer count on drop.
pub struct InflightGuard<'a>(&'a SyncCtl);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct SyncState {
    durable: u64,
    syncing: bool,
    failed: Option<String>,
    stop: bool,
}

/// Sequence bookkeeping shared by writers, the group-commit leader and the periodic syncer.
#[derive(Default)]
pub struct SyncCtl {
    written: AtomicU64,
    /// Writers between entering `write` and noting their write: a group-commit leader waits
    /// briefly for them so that one fsync covers the whole group.
    inflight: AtomicUsize,
    /// Size of the last group committed: the next leader waits (bounded) for as many.
    last_group: AtomicU64,
    fsyncs: AtomicU64,
    state: Mutex<SyncState>,
    cv: Condvar,
}

impl SyncCtl {
    /// Marks a writer in flight until the guard drops.
    pub fn enter_write(&self) -> InflightGuard<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self)
    }

    /// Wakes the background thread (it recomputes how long to sleep).
    pub fn wake(&self) {
        self.cv.notify_all();
    }

    /// Called by a writer (under the write lock) after a write; returns its sequence number.
    pub fn note_write(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Number of fsync rounds run so far (each round syncs every file with pending writes).
    pub fn fsync_rounds(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Whether any write went through this handle.
    pub fn wrote_any(&self) -> bool {
        self.written.load(Ordering::Acquire) > 0
    }

    /// Whether writes are waiting for an fsync.
    pub fn dirty(&self) -> bool {
        self.written.load(Ordering::Acquire) > self.state.lock().durable
    }

    /// Fails if an earlier fsync failed: after that, the kernel may have dropped dirty pages
    /// and "durable" can no longer be promised.
    pub fn check_failed(&self) -> Result<()> {
        match &self.state.lock().failed {
            Some(msg) => Err(OurDbError::SyncFailed(msg.clone())),
            None => Ok(()),
        }
    }

    /// Blocks until write `seq` is durable, running `fsync` as leader when nobody else is.
    pub fn wait_durable(&self, seq: u64, fsync: impl Fn() -> Result<()>) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            if let Some(msg) = &st.failed {
                return Err(OurDbError::SyncFailed(msg.clone()));
            }
            if st.durable >= seq {
                return Ok(());
            }
            if !st.syncing {
                st.syncing = true;
                let durable_before = st.durable;
                drop(st);
                // Gather the group: writers already past the door, and as many as the last
                // group had (they are usually just being woken by it). Bounded, and the
                // expected size adapts when writers go away.
                let want = self.last_group.load(Ordering::Relaxed).max(1);
                let gather = Instant::now();
                loop {
                    let pending = self.written.load(Ordering::Acquire) - durable_before;
                    let inflight = self.inflight.load(Ordering::Acquire);
                    if (pending >= want && inflight == 0) || gather.elapsed() >= GATHER_MAX {
                        break;
                    }
                    std::thread::yield_now();
                }
                let target = self.written.load(Ordering::Acquire);
                self.last_group
                    .store(target - durable_before, Ordering::Relaxed);
                let outcome = fsync();
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                st = self.state.lock();
                st.syncing = false;
                match outcome {
                    Ok(()) => st.durable = st.durable.max(target),
                    Err(e) => {
                        st.failed = Some(e.to_string());
                        self.cv.notify_all();
                        return Err(e);
                    }
                }
                self.cv.notify_all();
                continue;
            }
            self.cv.wait(&mut st);
        }
    }

    /// Makes everything written so far durable (used by the periodic syncer, `sync()` and close).
    pub fn sync_all(&self, fsync: impl Fn() -> Result<()>) -> Result<()> {
        let seq = self.written.load(Ordering::Acquire);
        if seq == 0 {
            // Nothing written through this handle; still honour an explicit request.
            return fsync();
        }
        self.wait_durable(seq, fsync)
    }

    /// Waits up to `interval` for a stop request; returns `true` when asked to stop.
    pub fn sleep(&self, interval: Duration) -> bool {
        let mut st = self.state.lock();
        if !st.stop {
            self.cv.wait_for(&mut st, interval);
        }
        st.stop
    }

    /// Asks the periodic syncer to stop.
    pub fn request_stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_all();
    }
}
