//! The fleet as the dashboard sees it: the engines' published counters parsed back into
//! per-engine and per-queue figures, and the done/failed rates sampled over the last
//! minutes for the chart.

use super::App;
use crate::counters::QueueCounts;
use crate::job::unix_now;
use crate::names::QueueName;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

/// Samples kept for the chart (10 minutes at the default 2 s period).
const KEEP: usize = 300;

/// One engine alive (its stats hash has not expired).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EngineView {
    /// Its name (`host-pid` by default).
    pub(crate) name: String,
    /// Its own counters (`done`, `error`, `running`, `workers`, ...).
    pub(crate) counters: BTreeMap<String, u64>,
    /// Its outcomes per queue.
    #[serde(skip)]
    pub(crate) queues: BTreeMap<QueueName, QueueCounts>,
}

/// Every engine alive, read in one pass over the stats hashes.
#[derive(Debug, Clone, Default)]
pub(crate) struct FleetView {
    /// The engines.
    pub(crate) engines: Vec<EngineView>,
}

impl FleetView {
    /// Reads the published counters through the client's broker.
    pub(crate) fn read(client: &crate::Client) -> crate::Result<FleetView> {
        Ok(FleetView {
            engines: client
                .engines()?
                .into_iter()
                .map(|e| EngineView {
                    counters: e.counters(),
                    queues: e.queues(),
                    name: e.name,
                })
                .collect(),
        })
    }

    /// A queue's outcomes summed over the engines alive.
    pub(crate) fn queue(&self, q: &QueueName) -> QueueCounts {
        let mut sum = QueueCounts::default();
        for e in &self.engines {
            if let Some(c) = e.queues.get(q) {
                sum.merge(c);
            }
        }
        sum
    }

    /// Every queue some engine has recorded outcomes for.
    pub(crate) fn queue_names(&self) -> Vec<QueueName> {
        let mut out: Vec<QueueName> = self
            .engines
            .iter()
            .flat_map(|e| e.queues.keys().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// One point of the chart: jobs per second done and failed over the period ending at `t`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct RateSample {
    /// Unix milliseconds.
    pub(crate) t: u64,
    /// Jobs done per second.
    pub(crate) done: f64,
    /// Jobs failed per second.
    pub(crate) failed: f64,
}

/// (done, failed) per engine.
type Totals = BTreeMap<String, (u64, u64)>;
/// (done, failed) per engine and queue.
type QueueTotals = BTreeMap<(String, QueueName), (u64, u64)>;

/// The sampled history, and the last totals seen per engine and per queue.
#[derive(Default)]
pub(crate) struct Rates {
    /// Oldest first.
    pub(crate) samples: VecDeque<RateSample>,
    /// Per queue, done/s and failed/s over the last period.
    pub(crate) queues: BTreeMap<QueueName, (f64, f64)>,
    last: Option<(Instant, Totals, QueueTotals)>,
}

/// Reads the fleet once and appends a sample. A counter that went down (its engine
/// restarted under the same name) counts from zero; an engine seen for the first time adds
/// nothing (its earlier work is not in this period).
pub(crate) fn sample(app: &App) {
    let fleet = match FleetView::read(&app.client) {
        Ok(f) => f,
        Err(e) => {
            log::debug!("web dashboard: reading the fleet's counters: {e}");
            return;
        }
    };
    let now = Instant::now();
    let mut engines = BTreeMap::new();
    let mut queues = BTreeMap::new();
    for e in &fleet.engines {
        let c = |k: &str| e.counters.get(k).copied().unwrap_or(0);
        engines.insert(e.name.clone(), (c("done"), c("error")));
        for (q, qc) in &e.queues {
            queues.insert((e.name.clone(), q.clone()), (qc.done, qc.failed));
        }
    }
    let mut rates = app.rates.lock();
    if let Some((then, last_e, last_q)) = &rates.last {
        let secs = now.duration_since(*then).as_secs_f64().max(0.001);
        let delta = |new: u64, old: Option<u64>| match old {
            Some(o) if new >= o => new - o,
            Some(_) => new,
            None => 0,
        };
        let (mut d, mut f) = (0u64, 0u64);
        for (name, (done, failed)) in &engines {
            let old = last_e.get(name);
            d += delta(*done, old.map(|o| o.0));
            f += delta(*failed, old.map(|o| o.1));
        }
        let mut per_q: BTreeMap<QueueName, (f64, f64)> = BTreeMap::new();
        for (k, (done, failed)) in &queues {
            let old = last_q.get(k);
            let e = per_q.entry(k.1.clone()).or_default();
            e.0 += delta(*done, old.map(|o| o.0)) as f64 / secs;
            e.1 += delta(*failed, old.map(|o| o.1)) as f64 / secs;
        }
        rates.queues = per_q;
        rates.samples.push_back(RateSample {
            t: unix_ms(),
            done: d as f64 / secs,
            failed: f as f64 / secs,
        });
        while rates.samples.len() > KEEP {
            rates.samples.pop_front();
        }
    }
    rates.last = Some((now, engines, queues));
}

/// Now in unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every queue known to the registry, to OurDB or to an engine's counters.
pub(crate) fn all_queues(app: &App, fleet: &FleetView) -> (Vec<QueueName>, Option<String>) {
    let mut set: BTreeSet<QueueName> = fleet.queue_names().into_iter().collect();
    let mut err = None;
    match app.client.queues() {
        Ok(qs) => set.extend(qs),
        Err(e) => err = Some(e.to_string()),
    }
    set.extend(app.client.stored_queues());
    (set.into_iter().collect(), err)
}

/// Seconds the next job to run of `q` has waited (`None`: nothing waits).
pub(crate) fn oldest_wait(app: &App, q: &QueueName) -> crate::Result<Option<i64>> {
    Ok(app
        .client
        .peek(q)?
        .map(|j| (unix_now() - j.time_scheduled).max(0)))
}
