//! The counters engines publish in the broker and readers parse back (`herojobs stats`,
//! the dashboard, `/metrics`): one format, written by the engine's watchdog thread, read by
//! the client. Per queue, outcomes and wait-time and run-time histograms.

use crate::names::QueueName;
use std::collections::BTreeMap;

/// Upper bounds, in seconds, of the wait-time and run-time histogram buckets (a last,
/// unbounded bucket follows). Job times are whole unix seconds, so a duration is a whole
/// number of seconds and `0` means "within the same second".
pub(crate) const BUCKETS: [u64; 10] = [0, 1, 2, 5, 10, 30, 60, 300, 900, 3600];

/// A histogram of whole seconds: per-bucket (not cumulative) counts, their sum and count.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Histogram {
    /// Count per bucket of [`Histogram::BOUNDS`], then the unbounded one (`BUCKETS.len() + 1` entries).
    pub buckets: Vec<u64>,
    /// Sum of the observed seconds.
    pub sum: u64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Upper bounds, in whole seconds, of the buckets (a last, unbounded bucket follows).
    pub const BOUNDS: [u64; 10] = BUCKETS;

    /// Records one duration in seconds.
    pub fn observe(&mut self, secs: u64) {
        if self.buckets.len() != BUCKETS.len() + 1 {
            self.buckets.resize(BUCKETS.len() + 1, 0);
        }
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// Adds another histogram's counts (summing engines).
    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Outcomes of one queue recorded by one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct QueueCounts {
    /// Recorded done.
    pub done: u64,
    /// Recorded error (timeouts included).
    pub failed: u64,
    /// Recorded as timed out.
    pub timed_out: u64,
    /// Failed runs put back to wait for a retry (not counted in `failed`).
    pub retried: u64,
    /// Seconds from submit to start, of the recorded jobs.
    pub wait: Histogram,
    /// Seconds from start to end, of the recorded jobs.
    pub run: Histogram,
}

impl QueueCounts {
    /// Adds another engine's counts.
    pub fn merge(&mut self, other: &QueueCounts) {
        self.done += other.done;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.retried += other.retried;
        self.wait.merge(&other.wait);
        self.run.merge(&other.run);
    }

    /// The published fields of queue `q`: `q:<circle>:<topic>:<name>` (names are
    /// name-fixed, so they hold no `:`), histograms as `wait:b<i>`, `wait:sum`, `wait:count`.
    pub(crate) fn fields(&self, q: &QueueName, out: &mut Vec<(String, u64)>) {
        let p = format!("q:{}:{}:", q.circle(), q.topic());
        out.push((format!("{p}done"), self.done));
        out.push((format!("{p}failed"), self.failed));
        out.push((format!("{p}timed_out"), self.timed_out));
        out.push((format!("{p}retried"), self.retried));
        for (name, h) in [("wait", &self.wait), ("run", &self.run)] {
            for (i, n) in h.buckets.iter().enumerate() {
                out.push((format!("{p}{name}:b{i}"), *n));
            }
            out.push((format!("{p}{name}:sum"), h.sum));
            out.push((format!("{p}{name}:count"), h.count));
        }
    }
}

/// Splits an engine's published fields into its own counters and its per-queue counts (the
/// reverse of what the watchdog publishes). Fields it does not know are ignored.
pub(crate) fn parse_fields(
    fields: &[(String, u64)],
) -> (BTreeMap<String, u64>, BTreeMap<QueueName, QueueCounts>) {
    let mut engine = BTreeMap::new();
    let mut queues: BTreeMap<QueueName, QueueCounts> = BTreeMap::new();
    for (k, v) in fields {
        let Some(rest) = k.strip_prefix("q:") else {
            engine.insert(k.clone(), *v);
            continue;
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(c), Some(t), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // Untrusted (Redis): only fixed names make a queue.
        let Some(q) = QueueName::from_fixed(c, t) else {
            continue;
        };
        let qc = queues.entry(q).or_default();
        let (hist, field) = match name.split_once(':') {
            Some(("wait", f)) => (Some(&mut qc.wait), f),
            Some(("run", f)) => (Some(&mut qc.run), f),
            _ => (None, name),
        };
        match (hist, field) {
            (None, "done") => qc.done = *v,
            (None, "failed") => qc.failed = *v,
            (None, "timed_out") => qc.timed_out = *v,
            (None, "retried") => qc.retried = *v,
            (Some(h), "sum") => h.sum = *v,
            (Some(h), "count") => h.count = *v,
            (Some(h), b) => {
                if let Some(i) = b.strip_prefix('b').and_then(|i| i.parse::<usize>().ok()) {
                    if i <= BUCKETS.len() {
                        if h.buckets.len() != BUCKETS.len() + 1 {
                            h.buckets.resize(BUCKETS.len() + 1, 0);
                        }
                        h.buckets[i] = *v;
                    }
                }
            }
            _ => {}
        }
    }
    (engine, queues)
}
