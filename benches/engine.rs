//! The queue-to-OurDB hot path: N no-op jobs queued, then C workers drain them (pop →
//! active → run → done in Redis and OurDB); and the idle round trip (submit → result
//! visible). Against a private redis-server on loopback. `cargo bench --bench engine`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herojobs::{Client, Job, ParamsType, Registry, WatchDog};
mod common;

use common::start_redis;
use std::time::{Duration, Instant};

fn noop_registry() -> Registry {
    let mut r = Registry::new();
    r.register(ParamsType::HeroScript, |_, _| Ok(String::new()));
    r
}

/// An 8-worker engine on `url` with job databases under `base`, running no-op jobs; its
/// client shares its job store.
fn noop_engine(url: &str, base: &std::path::Path) -> (WatchDog, Client) {
    let engine = WatchDog::builder()
        .redis_url(url)
        .base(base)
        .workers(8)
        .registry(noop_registry())
        .build()
        .expect("engine");
    let client = engine.client();
    (engine, client)
}

const N: u64 = 20_000;

fn bench(c: &mut Criterion) {
    let redis = start_redis();
    let url = format!("redis://127.0.0.1:{}", redis.1);
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(N));
    g.bench_function("drain_20000_noop_8_workers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = tempfile::tempdir().expect("tempdir");
                let (mut engine, client) = noop_engine(&url, base.path());
                let jobs: Vec<Job> = (0..N)
                    .map(|_| Job::new("bench", "drain", ParamsType::HeroScript, "noop"))
                    .collect();
                for chunk in jobs.chunks(2000) {
                    client.submit_many(chunk.to_vec()).expect("submit");
                }
                let start = Instant::now();
                engine.start().expect("start");
                while engine.stats().done < N {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += start.elapsed();
                engine.stop();
                let _: () = redis::cmd("FLUSHALL")
                    .query(
                        &mut redis::Client::open(url.as_str())
                            .and_then(|c| c.get_connection())
                            .expect("conn"),
                    )
                    .expect("flush");
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("engine");
    g.sample_size(50);
    g.throughput(Throughput::Elements(1));
    let base = tempfile::tempdir().expect("tempdir");
    let (mut engine, client) = noop_engine(&url, base.path());
    engine.start().expect("start");
    g.bench_function("roundtrip_submit_to_result", |b| {
        b.iter(|| {
            let job = client
                .submit(Job::new("bench", "rt", ParamsType::HeroScript, "noop"))
                .expect("submit");
            client.wait(&job, Duration::from_secs(10)).expect("wait")
        })
    });
    g.finish();
    engine.stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
