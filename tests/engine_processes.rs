//! The engine across real processes: a watchdog killed with SIGKILL mid-job, two watchdogs
//! sharing 10,000 jobs, and Ctrl-C (SIGINT) during a run.
//!
//! Child engines are this test binary re-run with `--exact child_engine` and environment
//! variables; without them the child test returns at once.

mod common;

use common::{base_dir, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::{Client, JobRef, JobStatus};
use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn child_engine() {
    let (Ok(url), Ok(base)) = (std::env::var("CHILD_REDIS"), std::env::var("CHILD_BASE")) else {
        return;
    };
    let workers: usize = std::env::var("CHILD_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(4);
    let grace: u64 = std::env::var("CHILD_GRACE_MS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(5000);
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("signal handler");
    let mut engine = test_engine(&url, std::path::Path::new(&base), workers)
        .grace(Duration::from_millis(grace))
        .build()
        .expect("engine");
    engine.start().expect("start");
    println!("READY");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    engine.stop();
    println!("STOPPED");
}

fn spawn_engine(
    redis: &RedisServer,
    base: &std::path::Path,
    workers: usize,
    grace_ms: u64,
) -> Child {
    common::spawn_ready_child(
        "child_engine",
        &[
            ("CHILD_REDIS", redis.url().into()),
            ("CHILD_BASE", base.into()),
            ("CHILD_WORKERS", workers.to_string().into()),
            ("CHILD_GRACE_MS", grace_ms.to_string().into()),
        ],
    )
}

fn sigint(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

fn statuses(client: &Client, ids: &[JobRef]) -> HashMap<JobStatus, usize> {
    let mut m = HashMap::new();
    for id in ids {
        *m.entry(client.get(id).expect("get").status).or_insert(0) += 1;
    }
    m
}

#[test]
fn a_killed_watchdog_s_jobs_are_finished_by_another() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let ids = client
        .submit_many((0..6).map(|_| tjob("c", "k", "sleep 3000")).collect())
        .unwrap();
    let mut child = spawn_engine(&redis, &base, 4, 5000);
    wait_until(
        "4 jobs running in the child",
        Duration::from_secs(30),
        || {
            statuses(&client, &ids)
                .get(&JobStatus::Active)
                .copied()
                .unwrap_or(0)
                == 4
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    let mut reruns = 0;
    for id in &ids {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
        if j.attempts == 2 {
            reruns += 1;
        }
    }
    assert_eq!(reruns, 4, "the four jobs the dead engine held ran again");
    assert!(engine.stats().recovered >= 4);
}

#[test]
fn two_watchdogs_share_10000_jobs_each_run_exactly_once() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let record = base.join("executions.log");
    let client = Client::connect(&redis.url(), &base).unwrap();
    let params = format!("record {}", record.display());
    let ids = client
        .submit_many((0..10_000).map(|_| tjob("c", "two", &params)).collect())
        .unwrap();
    let a = spawn_engine(&redis, &base, 4, 5000);
    let b = spawn_engine(&redis, &base, 4, 5000);
    let mut by_process: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let j = client.wait(id, Duration::from_secs(120)).unwrap();
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
        assert_eq!(j.attempts, 1);
        *by_process.entry(j.result).or_insert(0) += 1;
    }
    for mut c in [a, b] {
        sigint(&c);
        c.wait().unwrap();
    }
    let log = std::fs::read_to_string(&record).unwrap();
    let mut runs: HashMap<u32, usize> = HashMap::new();
    for line in log.lines() {
        *runs.entry(line.parse().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(runs.len(), 10_000);
    assert!(runs.values().all(|n| *n == 1), "some job ran twice");
    assert_eq!(
        by_process.len(),
        2,
        "both processes took part: {by_process:?}"
    );
}

#[test]
fn ctrl_c_during_a_run_loses_nothing_and_leaves_nothing_active() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    // Jobs that finish within the grace period, and jobs that never finish by themselves.
    let short = client
        .submit_many((0..12).map(|_| tjob("c", "int", "sleep 400")).collect())
        .unwrap();
    let child = spawn_engine(&redis, &base, 4, 3000);
    wait_until("jobs running", Duration::from_secs(30), || {
        statuses(&client, &short)
            .get(&JobStatus::Active)
            .copied()
            .unwrap_or(0)
            > 0
    });
    sigint(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let st = statuses(&client, &short);
    assert_eq!(st.get(&JobStatus::Active), None, "{st:?}");
    assert!(
        st.get(&JobStatus::Done).copied().unwrap_or(0) >= 1,
        "{st:?}"
    );
    let new = st.get(&JobStatus::New).copied().unwrap_or(0);
    assert_eq!(
        client.queue_len(&queue("c", "int")).unwrap() as usize,
        new,
        "every unfinished job is queued"
    );

    let forever = client
        .submit_many((0..3).map(|_| tjob("c", "int2", "forever")).collect())
        .unwrap();
    let child = spawn_engine(&redis, &base, 4, 300);
    wait_until("endless jobs running", Duration::from_secs(30), || {
        statuses(&client, &forever)
            .get(&JobStatus::Active)
            .copied()
            .unwrap_or(0)
            == 3
    });
    sigint(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    // Cancelled after the grace period and given back: new, queued, no lease; OurDB agrees.
    for id in &forever {
        assert_eq!(client.get(id).unwrap().status, JobStatus::New);
        assert_eq!(client.stored(id).unwrap().unwrap().status, JobStatus::New);
    }
    assert_eq!(client.queue_len(&queue("c", "int2")).unwrap(), 3);
    let leases: u64 = redis::cmd("ZCARD")
        .arg("herojobs-leases")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(leases, 0);
    // The rest completes on the next engine.
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    for id in &short {
        assert_eq!(
            client.wait(id, Duration::from_secs(60)).unwrap().status,
            JobStatus::Done
        );
    }
}
