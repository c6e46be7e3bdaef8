//! Client benchmarks against a private redis-server on loopback: submit (one producer, one
//! call per job), submit_many, and get. `cargo bench --bench jobs`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herojobs::{Client, Job, ParamsType, QueueName};
mod common;

use common::start_redis;
use std::time::Duration;

fn noop(i: u64) -> Job {
    Job::new(
        "bench",
        "submit",
        ParamsType::HeroScript,
        format!("!!fake.return_success message:'{i}'"),
    )
}

fn bench(c: &mut Criterion) {
    let redis = start_redis();
    let base = tempfile::tempdir().expect("tempdir");
    let client =
        Client::connect(&format!("redis://127.0.0.1:{}", redis.1), base.path()).expect("client");
    let mut g = c.benchmark_group("jobs");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("submit_one_call_each", |b| {
        b.iter(|| {
            n += 1;
            client.submit(noop(n)).expect("submit")
        })
    });
    const BATCH: u64 = 1000;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("submit_many_1000", |b| {
        b.iter(|| {
            let jobs: Vec<Job> = (0..BATCH).map(noop).collect();
            client.submit_many(jobs).expect("submit_many")
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("get", |b| {
        let q = QueueName::new("bench", "submit").expect("queue");
        let mut id = 0u32;
        b.iter(|| {
            id = id % 1000 + 1;
            client.get(&q.job(id)).expect("get")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
