//! `/metrics`: the fleet in the Prometheus text format, encoded by the `prometheus` crate
//! from what the engines publish (so any process that reaches Redis can serve it), the
//! queues and OurDB. Per-queue counters carry an `engine` label so an engine restart reads
//! as a counter reset of its own series, which `rate()` handles.

use super::fleet::FleetView;
use super::App;
use crate::counters::{Histogram, QueueCounts, BUCKETS};
use crate::names::QueueName;
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::Encoder;

type Labels = Vec<(String, String)>;

/// One scrape's families, built from values read before encoding (nothing is kept between
/// scrapes: the engines own the counts).
#[derive(Default)]
struct Scrape {
    families: Vec<MetricFamily>,
}

/// A sample with its labels, sorted by name (one canonical order for every series).
fn metric(labels: &Labels) -> proto::Metric {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let mut m = proto::Metric::default();
    m.set_label(
        sorted
            .into_iter()
            .map(|(k, v)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.clone());
                l.set_value(v.clone());
                l
            })
            .collect(),
    );
    m
}

impl Scrape {
    fn family(&mut self, name: &str, help: &str, t: MetricType, metrics: Vec<proto::Metric>) {
        // The encoder refuses a family without samples (no engine yet, no queue yet).
        if metrics.is_empty() {
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(t);
        f.set_metric(metrics);
        self.families.push(f);
    }

    fn counter(&mut self, name: &str, help: &str, series: Vec<(Labels, u64)>) {
        let metrics = series
            .iter()
            .map(|(l, v)| {
                let mut m = metric(l);
                let mut c = proto::Counter::default();
                c.set_value(*v as f64);
                m.set_counter(c);
                m
            })
            .collect();
        self.family(name, help, MetricType::COUNTER, metrics);
    }

    fn gauge(&mut self, name: &str, help: &str, series: Vec<(Labels, i64)>) {
        let metrics = series
            .iter()
            .map(|(l, v)| {
                let mut m = metric(l);
                let mut g = proto::Gauge::default();
                g.set_value(*v as f64);
                m.set_gauge(g);
                m
            })
            .collect();
        self.family(name, help, MetricType::GAUGE, metrics);
    }

    fn histogram(&mut self, name: &str, help: &str, series: Vec<(Labels, Histogram)>) {
        let metrics = series
            .iter()
            .map(|(l, h)| {
                let mut m = metric(l);
                let mut p = proto::Histogram::default();
                let mut cumulative = 0;
                p.set_bucket(
                    BUCKETS
                        .iter()
                        .enumerate()
                        .map(|(i, upper)| {
                            cumulative += h.buckets.get(i).copied().unwrap_or(0);
                            let mut b = proto::Bucket::default();
                            b.set_upper_bound(*upper as f64);
                            b.set_cumulative_count(cumulative);
                            b
                        })
                        .collect(),
                );
                p.set_sample_count(h.count);
                p.set_sample_sum(h.sum as f64);
                m.set_histogram(p);
                m
            })
            .collect();
        self.family(name, help, MetricType::HISTOGRAM, metrics);
    }
}

fn queue_labels(q: &QueueName) -> Labels {
    vec![
        ("circle".into(), q.circle().to_string()),
        ("topic".into(), q.topic().to_string()),
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
pub(crate) fn render(app: &App) -> Result<String, String> {
    let fleet = FleetView::read(&app.client).map_err(|e| e.to_string())?;
    let (queues, _) = super::fleet::all_queues(app, &fleet);
    let mut s = Scrape::default();

    let per_engine_queue = |f: &dyn Fn(&QueueCounts) -> u64| {
        let mut out = Vec::new();
        for e in &fleet.engines {
            for (q, c) in &e.queues {
                out.push((engine_queue_labels(&e.name, q), f(c)));
            }
        }
        out
    };
    s.counter(
        "herojobs_jobs_done_total",
        "Jobs recorded done, per queue and engine (since the engine started).",
        per_engine_queue(&|c| c.done),
    );
    s.counter(
        "herojobs_jobs_failed_total",
        "Jobs recorded failed (timeouts included), per queue and engine.",
        per_engine_queue(&|c| c.failed),
    );
    s.counter(
        "herojobs_jobs_timed_out_total",
        "Jobs recorded as timed out, per queue and engine.",
        per_engine_queue(&|c| c.timed_out),
    );
    s.counter(
        "herojobs_jobs_retried_total",
        "Failed runs put back to wait for a retry, per queue and engine.",
        per_engine_queue(&|c| c.retried),
    );
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
    s.counter(
        "herojobs_jobs_recovered_total",
        "Jobs queued again by an engine's recovery (lost by the broker or by a dead engine).",
        engine_counter("recovered"),
    );
    s.counter(
        "herojobs_jobs_refused_ids_total",
        "Jobs an engine took at an id the fleet's id counter never issued (planted in Redis): failed there, never written to OurDB.",
        engine_counter("refused_ids"),
    );
    s.counter(
        "herojobs_jobs_started_total",
        "Runs started by an engine's workers.",
        engine_counter("started"),
    );
    s.counter(
        "herojobs_jobs_submitted_total",
        "Jobs submitted per queue, fleet-wide (counted in Redis by the submit script, since Redis last lost its data).",
        app.client
            .submitted()
            .unwrap_or_default()
            .iter()
            .map(|(q, n)| (queue_labels(q), *n))
            .collect(),
    );
    s.gauge(
        "herojobs_queue_highest_id",
        "The highest job id this base's OurDB holds for a queue (ids come in blocks per store).",
        queues
            .iter()
            .map(|q| {
                (
                    queue_labels(q),
                    app.client.highest_id(q).unwrap_or(0) as i64,
                )
            })
            .collect(),
    );

    let mut depth = Vec::new();
    let mut running = Vec::new();
    let mut oldest = Vec::new();
    let mut bytes = Vec::new();
    for q in &queues {
        if let Ok(n) = app.client.queue_len(q) {
            depth.push((queue_labels(q), n as i64));
        }
        if let Ok(ids) = app.client.running_ids(q) {
            running.push((queue_labels(q), ids.len() as i64));
        }
        if let Ok(age) = super::fleet::oldest_wait(app, q) {
            oldest.push((queue_labels(q), age.unwrap_or(0)));
        }
        bytes.push((queue_labels(q), dir_bytes(&app.client.db_dir(q)) as i64));
    }
    s.gauge("herojobs_queue_depth", "Jobs waiting in a queue.", depth);
    s.gauge(
        "herojobs_queue_running",
        "Jobs of a queue running now (leases held, fleet-wide).",
        running,
    );
    s.gauge(
        "herojobs_queue_oldest_waiting_seconds",
        "How long the next job to run has waited (0 when none waits).",
        oldest,
    );
    s.gauge(
        "herojobs_engines_up",
        "Engines whose published counters have not expired.",
        vec![(Vec::new(), fleet.engines.len() as i64)],
    );
    let engine_gauge = |k: &str| -> Vec<(Labels, i64)> {
        engine_counter(k)
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect()
    };
    s.gauge(
        "herojobs_engine_workers",
        "Worker threads of an engine.",
        engine_gauge("workers"),
    );
    s.gauge(
        "herojobs_engine_running",
        "Jobs an engine runs now.",
        engine_gauge("running"),
    );
    s.gauge(
        "herojobs_ourdb_bytes",
        "Bytes on disk of a queue's OurDB (data files and lookup table).",
        bytes,
    );

    let hist = |f: &dyn Fn(&QueueCounts) -> Histogram| {
        let mut out = Vec::new();
        for e in &fleet.engines {
            for (q, c) in &e.queues {
                out.push((engine_queue_labels(&e.name, q), f(c)));
            }
        }
        out
    };
    s.histogram(
        "herojobs_job_wait_seconds",
        "Seconds from submit to start of recorded jobs (whole seconds: job times are unix seconds).",
        hist(&|c| c.wait.clone()),
    );
    s.histogram(
        "herojobs_job_run_seconds",
        "Seconds from start to end of recorded jobs (whole seconds).",
        hist(&|c| c.run.clone()),
    );

    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&s.families, &mut out)
        .map_err(|e| format!("encoding metrics: {e}"))?;
    String::from_utf8(out).map_err(|e| format!("encoding metrics: {e}"))
}
