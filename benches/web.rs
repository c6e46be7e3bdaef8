//! How fast the dashboard answers with a big queue: fills one queue with `HEROJOBS_BENCH_JOBS`
//! jobs (default 1,000,000; no engine, so they all wait) on a private redis-server, then
//! times each page's JSON (median and worst of 20 requests, sequential). Run with
//! `cargo bench --bench web`; the figures are in docs/performance.md.

#[path = "../tests/common/mod.rs"]
mod common;

use herojobs::web::{serve, WebConfig};
use herojobs::{Client, Job, ParamsType};
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("HEROJOBS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let redis = common::RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::connect(&redis.url(), dir.path()).expect("client");
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let jobs: Vec<Job> = (0..k)
            .map(|i| {
                Job::new(
                    "bench",
                    "big",
                    ParamsType::RhaiScript,
                    format!("let x = {i}; x * 2"),
                )
            })
            .collect();
        client.submit_many(jobs).expect("submit");
        left -= k;
    }
    eprintln!(
        "filled bench/big with {n} jobs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let web = serve(client, WebConfig::new("127.0.0.1:0")).expect("dashboard");
    let base = format!("http://{}", web.addr());
    let mid = n / 2;
    let probe = (n * 7 / 9).max(1);
    let pages = [
        (
            "queue, newest 50 (OurDB)",
            "/api/queue/bench/big".to_string(),
        ),
        (
            "queue, 50 from the middle (OurDB, before=N/2)",
            format!("/api/queue/bench/big?before={mid}"),
        ),
        (
            "queue, waiting, next 50 (LRANGE)",
            "/api/queue/bench/big?status=new".to_string(),
        ),
        (
            "queue, waiting, 50 from the middle (LRANGE)",
            format!("/api/queue/bench/big?status=new&start={mid}"),
        ),
        (
            "queue, done: none among 10,000 read (the scan budget)",
            "/api/queue/bench/big?status=done".to_string(),
        ),
        (
            "queue, search by id",
            format!("/api/queue/bench/big?id={probe}"),
        ),
        ("job page", format!("/api/job/bench/big/{probe}")),
        ("fleet", "/api/fleet".to_string()),
        ("metrics", "/metrics".to_string()),
    ];
    println!("| page ({n} jobs in the queue) | median | worst of 20 |");
    println!("|---|---|---|");
    for (what, path) in pages {
        let url = format!("{base}{path}");
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                let r = ureq::get(&url).call().expect("request");
                let body = r.into_string().expect("body");
                assert!(!body.is_empty());
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "| {what} | {:.1} ms | {:.1} ms |",
            times[10].as_secs_f64() * 1000.0,
            times[19].as_secs_f64() * 1000.0
        );
    }
}
