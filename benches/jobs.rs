//! Client benchmarks against a private redis-server on loopback: submit (one producer, one
//! call per job), submit_many, and get. `cargo bench --bench jobs`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herojobs::{Client, Job, ParamsType};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    // Owned by the guard from here on, so it is killed and reaped whatever happens.
    let mut guard = Redis(child, port);
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
        {
            return guard;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = guard.0.kill();
    panic!("redis-server did not start");
}

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
        let mut id = 0u32;
        b.iter(|| {
            id = id % 1000 + 1;
            client.get("bench", "submit", id).expect("get")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
