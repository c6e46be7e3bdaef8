//! `/metrics`: the fleet in the Prometheus text format, encoded by `prometheus-client` from
//! what the engines publish (so any process that reaches Redis can serve it), the queues
//! and OurDB. Counters carry an `engine` label so an engine restart reads as a counter
//! reset of its own series, which `rate()` handles.

use super::fleet::FleetView;
use super::App;
use crate::broker::QueueName;
use crate::engine::stats::{Histogram, BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
/// A metric family: name, help, and its series.
type Family<V> = (&'static str, &'static str, Vec<(Labels, V)>);

/// Everything one scrape reports, read before encoding.
#[derive(Debug, Default)]
struct Scrape {
    counters: Vec<Family<u64>>,
    gauges: Vec<Family<i64>>,
    histograms: Vec<Family<Histogram>>,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, series) in &self.counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, v) in series {
                m.encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }
        for (name, help, series) in &self.gauges {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in series {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        for (name, help, series) in &self.histograms {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, h) in series {
                let mut buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (*b as f64, h.buckets.get(i).copied().unwrap_or(0)))
                    .collect();
                buckets.push((
                    f64::INFINITY,
                    h.buckets.get(BUCKETS.len()).copied().unwrap_or(0),
                ));
                m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
                    h.sum as f64,
                    h.count,
                    &buckets,
                    None,
                )?;
            }
        }
        Ok(())
    }
}

fn queue_labels(q: &QueueName) -> Labels {
    vec![
        ("circle".into(), q.circle.clone()),
        ("topic".into(), q.topic.clone()),
    ]
}

fn engine_queue_labels(engine: &str, q: &QueueName) -> Labels {
    let mut l = queue_labels(q);
    l.push(("engine".into(), engine.to_string()));
    l
}

/// Bytes of a directory's files (OurDB's data files and lookup table), from their metadata:
/// no record is read.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The scrape's text. Fails only when the broker cannot be read at all.
pub(crate) fn render(app: &App) -> crate::Result<String> {
    let fleet = FleetView::read(&app.client)?;
    let (queues, _) = super::api::all_queues(app, &fleet);
    let mut s = Scrape::default();

    let per_engine_queue = |f: &dyn Fn(&crate::engine::stats::QueueCounts) -> u64| {
        let mut out = Vec::new();
        for e in &fleet.engines {
            for (q, c) in &e.queues {
                out.push((engine_queue_labels(&e.name, q), f(c)));
            }
        }
        out
    };
    s.counters.push((
        "herojobs_jobs_done",
        "Jobs recorded done, per queue and engine (since the engine started).",
        per_engine_queue(&|c| c.done),
    ));
    s.counters.push((
        "herojobs_jobs_failed",
        "Jobs recorded failed (timeouts included), per queue and engine.",
        per_engine_queue(&|c| c.failed),
    ));
    s.counters.push((
        "herojobs_jobs_timed_out",
        "Jobs recorded as timed out, per queue and engine.",
        per_engine_queue(&|c| c.timed_out),
    ));
    let engine_counter = |k: &str| -> Vec<(Labels, u64)> {
        fleet
            .engines
            .iter()
            .map(|e| {
                (
                    vec![("engine".to_string(), e.name.clone())],
                    e.counters.get(k).copied().unwrap_or(0),
                )
            })
            .collect()
    };
    s.counters.push((
        "herojobs_jobs_recovered",
        "Jobs queued again by an engine's recovery (lost by the broker or by a dead engine).",
        engine_counter("recovered"),
    ));
    s.counters.push((
        "herojobs_jobs_started",
        "Runs started by an engine's workers.",
        engine_counter("started"),
    ));
    s.counters.push((
        "herojobs_jobs_submitted",
        "Jobs ever submitted to a queue (OurDB's highest id).",
        queues
            .iter()
            .map(|q| {
                (
                    queue_labels(q),
                    app.client.submitted(&q.circle, &q.topic).unwrap_or(0),
                )
            })
            .collect(),
    ));

    let mut depth = Vec::new();
    let mut running = Vec::new();
    let mut oldest = Vec::new();
    let mut bytes = Vec::new();
    for q in &queues {
        if let Ok(n) = app.client.queue_len(&q.circle, &q.topic) {
            depth.push((queue_labels(q), n as i64));
        }
        if let Ok(ids) = app.client.running_ids(&q.circle, &q.topic) {
            running.push((queue_labels(q), ids.len() as i64));
        }
        if let Ok(age) = super::api::oldest_wait(app, q) {
            oldest.push((queue_labels(q), age.unwrap_or(0)));
        }
        bytes.push((
            queue_labels(q),
            dir_bytes(&app.client.store().db_dir(&q.circle, &q.topic)) as i64,
        ));
    }
    s.gauges
        .push(("herojobs_queue_depth", "Jobs waiting in a queue.", depth));
    s.gauges.push((
        "herojobs_queue_running",
        "Jobs of a queue running now (leases held, fleet-wide).",
        running,
    ));
    s.gauges.push((
        "herojobs_queue_oldest_waiting_seconds",
        "How long the next job to run has waited (0 when none waits).",
        oldest,
    ));
    s.gauges.push((
        "herojobs_engines_up",
        "Engines whose published counters have not expired.",
        vec![(Vec::new(), fleet.engines.len() as i64)],
    ));
    let engine_gauge = |k: &str| -> Vec<(Labels, i64)> {
        engine_counter(k)
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect()
    };
    s.gauges.push((
        "herojobs_engine_workers",
        "Worker threads of an engine.",
        engine_gauge("workers"),
    ));
    s.gauges.push((
        "herojobs_engine_running",
        "Jobs an engine runs now.",
        engine_gauge("running"),
    ));
    s.gauges.push((
        "herojobs_ourdb_bytes",
        "Bytes on disk of a queue's OurDB (data files and lookup table).",
        bytes,
    ));

    let hist = |f: &dyn Fn(&crate::engine::stats::QueueCounts) -> Histogram| {
        let mut out = Vec::new();
        for e in &fleet.engines {
            for (q, c) in &e.queues {
                out.push((engine_queue_labels(&e.name, q), f(c)));
            }
        }
        out
    };
    s.histograms.push((
        "herojobs_job_wait_seconds",
        "Seconds from submit to start of recorded jobs (whole seconds: job times are unix seconds).",
        hist(&|c| c.wait.clone()),
    ));
    s.histograms.push((
        "herojobs_job_run_seconds",
        "Seconds from start to end of recorded jobs (whole seconds).",
        hist(&|c| c.run.clone()),
    ));

    let mut registry = Registry::default();
    registry.register_collector(Box::new(s));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|e| crate::Error::Invalid(format!("encoding metrics: {e}")))?;
    Ok(out)
}
