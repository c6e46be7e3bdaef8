//! The hand-off from the dispatcher to the workers: a bounded FIFO behind a mutex and a
//! condition variable.
//!
//! Why not a crossbeam channel here: its receivers spin and `sched_yield` before parking.
//! With eight idle workers on a two-core machine that spinning was the largest single cost
//! of a no-op job (about a sixth of all CPU in `cargo bench --bench engine`); a parked
//! worker costs nothing until it is given a job. (The way back, outcomes to the dispatcher
//! and the finisher, is the outbox in `Slots`, under the same kind of lock.)

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A closable multi-consumer queue.
pub(crate) struct Handoff<T> {
    inner: Mutex<Inner<T>>,
    cv: Condvar,
}

/// What [`Handoff::recv_timeout`] got.
pub(crate) enum Recv<T> {
    /// An item.
    Item(T),
    /// Nothing arrived in time.
    Timeout,
    /// Closed and empty: the consumer should exit.
    Closed,
}

impl<T> Handoff<T> {
    /// An empty, open queue with room for `capacity` items before it reallocates.
    pub(crate) fn new(capacity: usize) -> Handoff<T> {
        Handoff {
            inner: Mutex::new(Inner {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Adds a batch under one lock, then wakes one consumer per item (after unlocking, so a
    /// woken consumer does not immediately block on the lock, or preempt the producer while
    /// it still holds it). Gives the batch back if the queue is closed.
    pub(crate) fn send_all(&self, items: Vec<T>) -> Result<(), Vec<T>> {
        let n = items.len();
        let mut g = self.inner.lock();
        if g.closed {
            return Err(items);
        }
        g.items.extend(items);
        drop(g);
        for _ in 0..n {
            self.cv.notify_one();
        }
        Ok(())
    }

    /// Takes the next item, waiting up to `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Recv<T> {
        let mut g = self.inner.lock();
        if g.items.is_empty() && !g.closed {
            self.cv.wait_for(&mut g, timeout);
        }
        match g.items.pop_front() {
            Some(item) => Recv::Item(item),
            None if g.closed => Recv::Closed,
            None => Recv::Timeout,
        }
    }

    /// Closes the queue: consumers drain what is left, then see `Closed`.
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
        self.cv.notify_all();
    }
}
