//! The standing chaos test (issue 12, "Tests"): 3,000 jobs submitted while watchdog processes
//! are killed with SIGKILL (5 times) and Redis loses everything (`FLUSHALL`, twice). Prints
//! jobs lost, stuck and run twice; fails on any loss, any wrong result (a result is a
//! function of the params), or a job run twice without a kill or a wipe between its runs.
//!
//! Child watchdogs are this test binary re-run with `--exact child_watchdog`; each run of a
//! job appends `topic id n start_ms` to a shared file, so the test can tell whether a kill or
//! a wipe happened between two runs of one job.

mod common;

use common::{base_dir, jref, RedisServer};
use herojobs::{EngineConfig, Job, JobStatus, ParamsType, Registry, WatchDog};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JOBS: u64 = 3000;
const KILLS: usize = 5;
const WIPES: usize = 2;
const TOPICS: [&str; 3] = ["a", "b", "c"];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The result a job of params `chaos N` must have.
fn expected(n: u64) -> String {
    (n.wrapping_mul(7919) % 1_000_003).to_string()
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.workers = 8;
    // Long enough that a loaded machine never lets a live engine's lease lapse (that
    // would be a duplicate without a kill), short enough that kills recover quickly.
    c.lease = Duration::from_secs(4);
    c.grace = Duration::from_secs(2);
    c.recovery_interval = Duration::from_millis(500);
    c.recovery_grace = Duration::from_secs(1);
    c.poll = Duration::from_millis(200);
    c
}

/// `chaos N`: records the run, sleeps N % 20 ms (so kills find jobs mid-run), returns
/// [`expected`].
fn chaos_registry(log: String) -> Registry {
    let mut r = Registry::new();
    r.register(ParamsType::HeroScript, move |job, ctx| {
        let n: u64 = job
            .params
            .strip_prefix("chaos ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad params {:?}", job.params))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        // One write per line: O_APPEND keeps lines whole between processes.
        f.write_all(format!("{} {} {} {}\n", job.topic, job.id, n, now_ms()).as_bytes())
            .map_err(|e| e.to_string())?;
        ctx.sleep(Duration::from_millis(n % 20))
            .map_err(|_| "cancelled".to_string())?;
        Ok(expected(n))
    });
    r
}

#[test]
fn child_watchdog() {
    let (Ok(url), Ok(base), Ok(log)) = (
        std::env::var("CHAOS_REDIS"),
        std::env::var("CHAOS_BASE"),
        std::env::var("CHAOS_LOG"),
    ) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("signal handler");
    let mut engine = WatchDog::builder()
        .redis_url(&url)
        .base(base)
        .config(config())
        .registry(chaos_registry(log))
        .build()
        .expect("engine");
    engine.start().expect("start");
    println!("READY");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    engine.stop();
}

fn spawn_watchdog(redis: &RedisServer, base: &Path, log: &Path) -> Child {
    common::spawn_ready_child(
        "child_watchdog",
        &[
            ("CHAOS_REDIS", redis.url().into()),
            ("CHAOS_BASE", base.into()),
            ("CHAOS_LOG", log.into()),
        ],
    )
}

/// A chaos event: what, and the interval of wall-clock ms in which it happened.
struct Event {
    kind: &'static str,
    before: u64,
    after: u64,
}

#[test]
fn chaos_kills_and_wipes_lose_nothing_and_duplicate_only_across_them() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let (_d, sub_base) = base_dir();
    let (_wd, wbase) = base_dir();
    let log = wbase.join("runs.log");
    std::fs::write(&log, "").unwrap();
    // The submitting host: its store, and a reconcile-only engine on it (re-queues its jobs
    // after a wipe, learns their outcomes), as a submitting host of a fleet runs; the client
    // shares the reconciler's broker and job store.
    let mut reconciler = WatchDog::builder()
        .redis_url(&redis.url())
        .base(&sub_base)
        .durability(herojobs::Durability::Periodic)
        .config(config())
        .reconcile_only(true)
        .build()
        .unwrap();
    let client = Arc::new(reconciler.client());
    reconciler.start().unwrap();
    // Two watchdogs, each with a base of its own (kept across its restarts).
    let bases = [wbase.join("w0"), wbase.join("w1")];
    let mut children: Vec<Child> = bases
        .iter()
        .map(|b| spawn_watchdog(&redis, b, &log))
        .collect();
    // The submitter: 3,000 jobs at a steady pace over ~15 s, beside the chaos.
    let submitted: Arc<Mutex<Vec<(String, u32, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sub = {
        let client = Arc::clone(&client);
        let submitted = Arc::clone(&submitted);
        std::thread::spawn(move || {
            for n in 0..JOBS {
                let topic = TOPICS[(n % 3) as usize];
                let job = Job::new("chaos", topic, ParamsType::HeroScript, format!("chaos {n}"));
                let mut tries = 0;
                let id = loop {
                    match client.submit(job.clone()) {
                        Ok(r) => break r.id(),
                        // Saved in OurDB, not queued: recovery queues it; it counts.
                        Err(herojobs::Error::NotQueued { job, .. }) => break job.id(),
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 200, "submit kept failing: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                };
                submitted.lock().unwrap().push((topic.to_string(), id, n));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // The chaos: a kill or a wipe every ~2 s while jobs flow.
    let plan = ["kill", "kill", "wipe", "kill", "kill", "wipe", "kill"];
    assert_eq!(plan.iter().filter(|p| **p == "kill").count(), KILLS);
    assert_eq!(plan.iter().filter(|p| **p == "wipe").count(), WIPES);
    let mut events: Vec<Event> = Vec::new();
    for (i, what) in plan.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(2000));
        let before = now_ms();
        if *what == "kill" {
            let slot = i % 2;
            let _ = children[slot].kill(); // SIGKILL
            let _ = children[slot].wait();
            events.push(Event {
                kind: "kill",
                before,
                after: now_ms(),
            });
            children[slot] = spawn_watchdog(&redis, &bases[slot], &log);
        } else {
            let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
            events.push(Event {
                kind: "wipe",
                before,
                after: now_ms(),
            });
        }
    }
    sub.join().expect("submitter");
    let jobs = submitted.lock().unwrap().clone();
    assert_eq!(jobs.len() as u64, JOBS);
    // Every job ends; give recovery (leases of killed engines, wiped queues) time.
    let mut unfinished: Vec<(String, u32)>;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        unfinished = jobs
            .iter()
            .filter(|(t, id, _)| {
                !client
                    .get(&jref("chaos", t, *id))
                    .is_ok_and(|j| j.status.is_finished())
            })
            .map(|(t, id, _)| (t.clone(), *id))
            .collect();
        if unfinished.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The verdict.
    let mut runs: HashMap<(String, u32), Vec<u64>> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if let [t, id, _n, ms] = f[..] {
            runs.entry((t.to_string(), id.parse().unwrap()))
                .or_default()
                .push(ms.parse().unwrap());
        }
    }
    let mut lost = Vec::new();
    let mut stuck = Vec::new();
    let mut wrong = Vec::new();
    for (t, id, n) in &jobs {
        match client.get(&jref("chaos", t, *id)) {
            Err(e) => lost.push(format!("{t}/{id}: {e}")),
            Ok(j) if !j.status.is_finished() => {
                if runs.contains_key(&(t.clone(), *id)) {
                    stuck.push(format!("{t}/{id}: {}", j.status));
                } else {
                    lost.push(format!("{t}/{id}: {} and never ran", j.status));
                }
            }
            Ok(j) if j.status != JobStatus::Done || j.result != expected(*n) => {
                wrong.push(format!(
                    "{t}/{id} (n={n}): {} {:?} {:?}",
                    j.status, j.result, j.error
                ))
            }
            Ok(_) => {}
        }
    }
    let mut twice = 0;
    let mut unexplained = Vec::new();
    for ((t, id), times) in &runs {
        if times.len() < 2 {
            continue;
        }
        twice += 1;
        let mut times = times.clone();
        times.sort();
        for w in times.windows(2) {
            // The event's interval overlaps the time between the two runs' starts.
            let explained = events.iter().any(|e| e.after >= w[0] && e.before <= w[1]);
            if !explained {
                unexplained.push(format!("{t}/{id}: runs at {} and {} ms", w[0], w[1]));
            }
        }
    }
    println!(
        "chaos: {} jobs, {} kills, {} wipes in {:?}: lost {}, stuck {}, wrong {}, run twice {} ({} without a kill or wipe between), unfinished at the deadline {}",
        jobs.len(),
        events.iter().filter(|e| e.kind == "kill").count(),
        events.iter().filter(|e| e.kind == "wipe").count(),
        started.elapsed(),
        lost.len(),
        stuck.len(),
        wrong.len(),
        twice,
        unexplained.len(),
        unfinished.len()
    );
    for c in children.iter_mut() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
    reconciler.stop();
    assert!(
        lost.is_empty(),
        "lost jobs: {:?}",
        &lost[..lost.len().min(20)]
    );
    assert!(
        stuck.is_empty(),
        "stuck jobs: {:?}",
        &stuck[..stuck.len().min(20)]
    );
    assert!(
        wrong.is_empty(),
        "wrong results: {:?}",
        &wrong[..wrong.len().min(20)]
    );
    assert!(
        unexplained.is_empty(),
        "duplicate runs without a kill or wipe between: {:?}",
        &unexplained[..unexplained.len().min(20)]
    );
}
