//! The life of a job against a real redis-server: retries with backoff (through a rolling
//! restart of the engine process, and due at once on a busy engine), the dead set and
//! `retry`, permanent failures, delayed jobs (never early, on time, 10,000 at once, through
//! a FLUSHALL), cancel of waiting, delayed and running jobs (the running one in another
//! engine process), and retention (finished jobs leave Redis, OurDB answers).

mod common;

use common::{base_dir, queue, test_engine, test_registry, tjob, wait_until, RedisServer};
use herojobs::{Backoff, Client, Job, JobStatus, ParamsType, Registry, Retention, RetryPolicy};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Now, in unix milliseconds (the clock job due times are written in).
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Retention with a finished TTL of one second: finished hashes leave Redis quickly.
fn one_second_retention() -> Retention {
    let mut r = Retention::default();
    r.finished_ttl = Duration::from_secs(1);
    r
}

/// A registry whose `ai` params type records when each run of each job started and fails
/// its runs while the job's params say so: `fail N` fails the first N runs, `never`
/// fails permanently, `ok` succeeds.
fn recording(runs: Arc<Mutex<HashMap<u32, Vec<Instant>>>>) -> Registry {
    let mut r = test_registry();
    r.register(ParamsType::Ai, move |job, ctx| {
        let n = {
            let mut g = runs.lock();
            let v = g.entry(job.id).or_default();
            v.push(Instant::now());
            v.len() as u32
        };
        match job.params.split_once(' ') {
            Some(("fail", k)) if n <= k.parse::<u32>().unwrap_or(0) => {
                Err(format!("failing run {n}").into())
            }
            None if job.params == "never" => {
                ctx.fail_permanently();
                Err("bad input: no retry can fix this".into())
            }
            None if job.params == "progress" => {
                ctx.set_progress("half way");
                while !ctx.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err("cancelled".into())
            }
            _ => Ok(format!("ok after {n} run(s), attempt {}", ctx.attempt())),
        }
    });
    r
}

#[test]
fn a_job_failing_twice_succeeds_on_its_third_attempt_after_the_backoff() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    let policy = RetryPolicy::new(2, Backoff::Exponential, Duration::from_millis(300));
    let id = client
        .submit(Job::new("life", "r", ParamsType::Ai, "fail 2").with_retry(policy))
        .unwrap();
    // While it waits for a retry it is `new`, with its due time and last error.
    wait_until("the first failure", Duration::from_secs(30), || {
        runs.lock().get(&id.id()).is_some_and(|v| !v.is_empty())
            && client
                .get(&id)
                .is_ok_and(|j| j.status == JobStatus::New && j.run_at_ms > 0)
    });
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(j.status, JobStatus::Done, "{j:?}");
    assert_eq!(j.attempts, 3);
    assert_eq!(j.result, "ok after 3 run(s), attempt 3");
    assert!(j.error.is_empty());
    let times = runs.lock().get(&id.id()).cloned().unwrap();
    assert_eq!(times.len(), 3);
    // The gaps follow the exponential backoff: at least 300 ms, then at least 600 ms.
    assert!(
        times[1] - times[0] >= Duration::from_millis(300),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(600),
        "{times:?}"
    );
    assert_eq!(engine.stats().retried, 2);
    // OurDB agrees (it is written right after Redis, which the waiter saw first).
    wait_until(
        "OurDB to record the outcome",
        Duration::from_secs(30),
        || {
            client
                .stored(&id)
                .unwrap()
                .is_some_and(|j| (j.status, j.attempts) == (JobStatus::Done, 3))
        },
    );
}

/// OurDB holds a job's versions in the order they happened, also when a retry is due at
/// once on a busy engine: the script that records the failure can take the job again in the
/// same call, and its waiting version must still reach OurDB before the next attempt's
/// `active` one (the busy dispatcher writes a batch's outcomes during its next call).
#[test]
fn a_retry_due_at_once_on_a_busy_engine_keeps_its_versions_in_order() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let now = RetryPolicy::new(1, Backoff::Fixed, Duration::ZERO);
    let mut retried = Vec::new();
    let mut all = Vec::new();
    for i in 0..600 {
        let job = if i % 10 == 5 {
            Job::new("life", "order", ParamsType::Ai, "fail 1").with_retry(now.clone())
        } else {
            Job::new("life", "order", ParamsType::Ai, "ok")
        };
        let id = client.submit(job).unwrap();
        if i % 10 == 5 {
            retried.push(id.clone());
        }
        all.push(id);
    }
    // Started once everything waits: the dispatcher stays busy, recording with its takes.
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    for id in &all {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
    }
    for id in &retried {
        wait_until(
            "OurDB to record the retry's outcome",
            Duration::from_secs(30),
            || {
                client
                    .stored(id)
                    .unwrap()
                    .is_some_and(|j| (j.status, j.attempts) == (JobStatus::Done, 2))
            },
        );
        let mut versions: Vec<Job> = client
            .history(id, 20)
            .unwrap()
            .into_iter()
            .map(|v| v.unwrap())
            .collect();
        versions.reverse();
        let attempts: Vec<u32> = versions.iter().map(|j| j.attempts).collect();
        assert!(
            attempts.windows(2).all(|w| w[0] <= w[1]),
            "job {}: versions out of order: {:?}",
            id.id(),
            versions
                .iter()
                .map(|j| (j.status, j.attempts))
                .collect::<Vec<_>>()
        );
    }
    engine.stop();
}

#[test]
fn an_exhausted_job_is_dead_until_retried_and_a_permanent_failure_is_never_retried() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(recording(Arc::clone(&runs)))
        .retry(Some(RetryPolicy::new(
            1,
            Backoff::Fixed,
            Duration::from_millis(50),
        )))
        .build()
        .unwrap();
    engine.start().unwrap();
    // Engine default: one retry. "fail 5" exhausts it.
    let id = client
        .submit(Job::new("life", "d", ParamsType::Ai, "fail 3"))
        .unwrap();
    let never = client
        .submit(Job::new("life", "d", ParamsType::Ai, "never"))
        .unwrap();
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.attempts), (JobStatus::Error, 2), "{j:?}");
    let p = client.wait(&never, Duration::from_secs(30)).unwrap();
    assert_eq!((p.status, p.attempts), (JobStatus::Error, 1), "{p:?}");
    assert_eq!(
        runs.lock()[&never.id()].len(),
        1,
        "a permanent failure ran again"
    );
    let dead: Vec<u32> = client
        .dead(&queue("life", "d"), 0, 10)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert!(
        dead.contains(&id.id()) && dead.contains(&never.id()),
        "{dead:?}"
    );
    // Retried by hand, it gets its attempts afresh: two more runs, and the third run of
    // all succeeds... after one more failure.
    assert!(client.retry(&id).unwrap());
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(j.status, JobStatus::Done, "{j:?}");
    assert_eq!(runs.lock()[&id.id()].len(), 4);
    assert!(!client
        .dead(&queue("life", "d"), 0, 10)
        .unwrap()
        .iter()
        .any(|(i, _)| *i == id.id()));
    assert!(!client.retry(&id).unwrap(), "a done job is not retried");
    assert_eq!(client.purge_dead(&queue("life", "d")).unwrap(), 1);
    assert!(client.dead(&queue("life", "d"), 0, 10).unwrap().is_empty());
}

#[test]
fn a_running_job_reports_its_progress() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 1)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    let id = client
        .submit(Job::new("life", "prog", ParamsType::Ai, "progress"))
        .unwrap();
    wait_until("the progress in Redis", Duration::from_secs(30), || {
        client
            .get(&id)
            .is_ok_and(|j| j.progress == "half way" && j.status == JobStatus::Active)
    });
    assert!(client.cancel(&id).unwrap());
}

#[test]
fn delayed_jobs_never_start_early_and_start_on_time() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    let job =
        Job::new("life", "later", ParamsType::Ai, "ok").with_delay(Duration::from_millis(800));
    let due = job.run_at_ms;
    let id = client.submit(job).unwrap();
    assert_eq!(
        client.scheduled(&queue("life", "later"), 10).unwrap(),
        vec![(id.id(), due)]
    );
    assert_eq!(client.queue_len(&queue("life", "later")).unwrap(), 0);
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(j.status, JobStatus::Done);
    let started = unix_now_ms() - runs.lock()[&id.id()][0].elapsed().as_millis() as u64;
    assert!(started + 5 >= due, "started {} ms early", due - started);
    assert!(client
        .scheduled(&queue("life", "later"), 10)
        .unwrap()
        .is_empty());
}

#[test]
fn ten_thousand_jobs_delayed_to_one_second_all_run_once() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 8)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    let at = unix_now_ms() + 1000;
    let jobs: Vec<Job> = (0..10_000)
        .map(|_| {
            let mut j = Job::new("life", "burst", ParamsType::Ai, "ok");
            j.run_at_ms = at;
            j
        })
        .collect();
    let ids = client.submit_many(jobs).unwrap();
    wait_until("10,000 delayed jobs done", Duration::from_secs(120), || {
        engine.stats().done >= 10_000
    });
    let runs = runs.lock();
    assert_eq!(runs.len(), 10_000);
    for id in &ids {
        let v = &runs[&id.id()];
        assert_eq!(v.len(), 1, "job {id} ran {} times", v.len());
    }
}

#[test]
fn delayed_and_retry_waiting_jobs_survive_a_flushall_and_never_run_early() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(recording(Arc::clone(&runs)))
        .build()
        .unwrap();
    engine.start().unwrap();
    let delayed = Job::new("life", "f", ParamsType::Ai, "ok").with_delay(Duration::from_secs(3));
    let due = delayed.run_at_ms;
    let d = client.submit(delayed).unwrap();
    let r = client
        .submit(
            Job::new("life", "f", ParamsType::Ai, "fail 1").with_retry(RetryPolicy::new(
                1,
                Backoff::Fixed,
                Duration::from_secs(3),
            )),
        )
        .unwrap();
    wait_until("the retry to be waiting", Duration::from_secs(30), || {
        client
            .get(&r)
            .is_ok_and(|j| j.status == JobStatus::New && j.run_at_ms > 0)
    });
    let retry_due = client.get(&r).unwrap().run_at_ms;
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let j = client.wait(&d, Duration::from_secs(60)).unwrap();
    assert_eq!(j.status, JobStatus::Done);
    let j = client.wait(&r, Duration::from_secs(60)).unwrap();
    assert_eq!(j.status, JobStatus::Done, "{j:?}");
    let now = unix_now_ms();
    let runs = runs.lock();
    let started = |t: Instant| now - t.elapsed().as_millis() as u64;
    assert!(
        started(runs[&d.id()][0]) + 5 >= due,
        "delayed job ran early"
    );
    assert_eq!(runs[&d.id()].len(), 1);
    assert_eq!(runs[&r.id()].len(), 2);
    assert!(
        started(runs[&r.id()][1]) + 5 >= retry_due,
        "retry ran early"
    );
}

#[test]
fn child_engine() {
    let (Ok(url), Ok(base)) = (std::env::var("LIFE_REDIS"), std::env::var("LIFE_BASE")) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("signal handler");
    let mut engine = test_engine(&url, std::path::Path::new(&base), 1)
        .build()
        .expect("engine");
    engine.start().expect("start");
    println!("READY");
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Tell the parent when a job runs and when the worker is free again.
        println!(
            "STATS {} {}",
            engine.stats().started,
            engine.stats().running
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.stop();
}

/// Starts `child_engine` in a new process on `base` and waits until it runs.
fn start_child_engine(redis: &RedisServer, base: &std::path::Path) -> std::process::Child {
    common::spawn_ready_child(
        "child_engine",
        &[
            ("LIFE_REDIS", redis.url().into()),
            ("LIFE_BASE", base.into()),
        ],
    )
}

/// A rolling restart while a job waits for its retry: the engine that ran the failed
/// attempt stops (SIGINT, graceful) and a new process takes its place on the same base. The
/// retry is not lost, not run early, and runs once: two runs in all, attempts 1 and 2.
#[test]
fn a_rolling_restart_during_a_retry_wait_loses_nothing() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let (_e, engine_base) = base_dir();
    let (_l, logs) = base_dir();
    let log = logs.join("runs");
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut old = start_child_engine(&redis, &engine_base);
    let retry = RetryPolicy::new(1, Backoff::Fixed, Duration::from_secs(4));
    let id = client
        .submit(tjob("life", "roll", &format!("flaky 1 {}", log.display())).with_retry(retry))
        .unwrap();
    wait_until("the retry to be waiting", Duration::from_secs(30), || {
        client
            .get(&id)
            .is_ok_and(|j| j.status == JobStatus::New && j.run_at_ms > 0)
    });
    let due = client.get(&id).unwrap().run_at_ms;
    // The restart: the old process stops, then a new one starts on the same base.
    let status = Command::new("kill")
        .args(["-INT", &old.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        old.wait().unwrap().success(),
        "the old engine stops cleanly"
    );
    let old_gone_before_due = unix_now_ms() < due;
    let mut new = start_child_engine(&redis, &engine_base);
    let j = client.wait(&id, Duration::from_secs(60)).unwrap();
    assert_eq!(
        (j.status, j.attempts, j.result.as_str()),
        (JobStatus::Done, 2, "attempt 2"),
        "{j:?}"
    );
    // id, attempt, pid, start (unix ms) of each run.
    let runs: Vec<Vec<u64>> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(runs.len(), 2, "two runs in all: {runs:?}");
    assert_eq!((runs[0][1], runs[1][1]), (1, 2), "{runs:?}");
    assert!(
        runs[1][3] + 5 >= due,
        "the retry ran early: {runs:?}, due {due}"
    );
    assert_eq!(
        runs[0][2],
        u64::from(old.id()),
        "the old engine ran the first attempt"
    );
    if old_gone_before_due {
        assert_eq!(
            runs[1][2],
            u64::from(new.id()),
            "the new engine ran the retry"
        );
    }
    let _ = Command::new("kill")
        .args(["-INT", &new.id().to_string()])
        .status();
    let _ = new.wait();
}

#[test]
fn cancel_of_a_waiting_a_delayed_and_a_running_job_on_another_engine() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let (_e, engine_base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let delayed = client
        .submit(tjob("life", "c", "ok late").with_delay(Duration::from_secs(60)))
        .unwrap();
    let running = client.submit(tjob("life", "c", "forever")).unwrap();
    let waiting = client.submit(tjob("life", "c", "ok never")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_engine", "--nocapture", "--test-threads=1"])
        .env("LIFE_REDIS", redis.url())
        .env("LIFE_BASE", &engine_base)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let stats = Arc::new(Mutex::new((0u64, 0u64)));
    let s2 = Arc::clone(&stats);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("STATS ") {
                let mut it = rest.split(' ').filter_map(|x| x.parse().ok());
                if let (Some(a), Some(b)) = (it.next(), it.next()) {
                    *s2.lock() = (a, b);
                }
            }
        }
    });
    // One worker: the endless job runs, the next one waits behind it.
    wait_until("the endless job to run", Duration::from_secs(30), || {
        client
            .get(&running)
            .is_ok_and(|j| j.status == JobStatus::Active)
    });
    assert!(client.cancel(&waiting).unwrap());
    assert!(client.cancel(&delayed).unwrap());
    assert!(client.cancel(&running).unwrap());
    for id in [&waiting, &delayed, &running] {
        let j = client.wait(id, Duration::from_secs(30)).unwrap();
        assert_eq!(
            (j.status, j.error.as_str()),
            (JobStatus::Error, "cancelled"),
            "{j:?}"
        );
    }
    // The other process's worker is free again (its run stopped), and the late result of
    // the cancelled run did not overwrite the cancel.
    wait_until("the worker to be free", Duration::from_secs(30), || {
        stats.lock().1 == 0
    });
    let next = client.submit(tjob("life", "c", "ok after")).unwrap();
    let j = client.wait(&next, Duration::from_secs(30)).unwrap();
    assert_eq!(j.result, "after");
    assert_eq!(client.get(&running).unwrap().error, "cancelled");
    assert!(client
        .scheduled(&queue("life", "c"), 10)
        .unwrap()
        .is_empty());
    assert!(
        !client.cancel(&running).unwrap(),
        "cancel of a finished job"
    );
    // Stored as cancelled in this store's OurDB too.
    let stored = client.stored(&waiting).unwrap().unwrap();
    assert_eq!(stored.error, "cancelled");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn finished_jobs_leave_redis_after_their_ttl_and_get_answers_from_ourdb() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .retention(one_second_retention())
        .build()
        .unwrap();
    engine.start().unwrap();
    let ids: Vec<herojobs::JobRef> = (0..20)
        .map(|i| {
            client
                .submit(tjob("life", "ttl", &format!("ok r{i}")))
                .unwrap()
        })
        .collect();
    for id in &ids {
        client.wait(id, Duration::from_secs(30)).unwrap();
    }
    let mut con = redis.conn();
    wait_until(
        "finished job hashes to expire",
        Duration::from_secs(30),
        || {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("herojobs:life:ttl:*")
                .query(&mut con)
                .unwrap();
            keys.is_empty()
        },
    );
    for (i, id) in ids.iter().enumerate() {
        let j = client.get(id).unwrap();
        assert_eq!(
            (j.status, j.result.clone()),
            (JobStatus::Done, format!("r{i}"))
        );
    }
    // A later recovery pass does not queue them again: they stay done, run once.
    let passes = engine.stats().recovery_passes + 3;
    wait_until("three recovery passes", Duration::from_secs(30), || {
        engine.stats().recovery_passes >= passes
    });
    assert_eq!(engine.stats().done, 20);
}

/// A job deleted from OurDB after the engine took it — as a client's `delete` of a job it
/// saw done lands between the broker's verdict and the engine's OurDB write — stays
/// deleted: the engine writes an outcome only over a record that exists. (Before, the done
/// version re-created the record.) Here the delete comes while the job runs, which puts it
/// before the outcome's write for sure.
#[test]
fn a_job_deleted_before_its_outcome_is_written_stays_deleted() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    engine.start().unwrap();
    let q = queue("life", "del");
    let gone = client.submit(tjob("life", "del", "sleep 1500")).unwrap();
    wait_until(
        "the job to be active in OurDB",
        Duration::from_secs(30),
        || {
            client
                .stored(&gone)
                .unwrap()
                .is_some_and(|j| j.status == JobStatus::Active)
        },
    );
    let db = herojobs::ourdb::OurDb::open(client.db_dir(&q), herojobs::ourdb::Config::default())
        .unwrap();
    db.delete(gone.id()).unwrap();
    db.close().unwrap();
    // The broker's verdict: done (Redis answers).
    let j = client.wait(&gone, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "slept"));
    // One worker: the next job runs after the first's outcome was handled, and its own
    // outcome is written after the first's.
    let next = client.submit(tjob("life", "del", "ok next")).unwrap();
    client.wait(&next, Duration::from_secs(30)).unwrap();
    wait_until(
        "the next job done in OurDB",
        Duration::from_secs(30),
        || {
            client
                .stored(&next)
                .unwrap()
                .is_some_and(|j| j.status == JobStatus::Done)
        },
    );
    engine.stop();
    assert!(
        client.stored(&gone).unwrap().is_none(),
        "the deleted job came back: {:?}",
        client.stored(&gone).unwrap()
    );
    assert_eq!(engine.stats().done, 2);
}

/// Retention gives a finished hash its TTL; a retry makes the job live again, and its hash
/// must not go with its failed run's expiry while it runs again.
#[test]
fn a_retried_job_outlives_the_retention_of_its_failed_run() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let mut registry = test_registry();
    let (runs, hold) = (Arc::new(Mutex::new(0u32)), Arc::clone(&release));
    registry.register(ParamsType::Ai, move |_, _| {
        let n = {
            let mut g = runs.lock();
            *g += 1;
            *g
        };
        if n == 1 {
            return Err("the first run fails".into());
        }
        while !hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok("second run".into())
    });
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(registry)
        .retention(one_second_retention())
        .build()
        .unwrap();
    engine.start().unwrap();
    let id = client
        .submit(Job::new("life", "rs", ParamsType::Ai, "x"))
        .unwrap();
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(j.status, JobStatus::Error, "{j:?}");
    let failed = Instant::now();
    assert!(client.retry(&id).unwrap());
    wait_until("the second run to start", Duration::from_secs(30), || {
        client.get(&id).unwrap().status == JobStatus::Active
    });
    // Past the failed run's expiry, a job of another queue goes through the engine: its
    // finish runs the retention sweep.
    while failed.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let other = client.submit(tjob("life", "rs-other", "ok")).unwrap();
    assert_eq!(
        client.wait(&other, Duration::from_secs(30)).unwrap().status,
        JobStatus::Done
    );
    let mut con = redis.conn();
    let key = format!("herojobs:life:rs:{}", id.id());
    let exists: bool = redis::cmd("EXISTS").arg(&key).query(&mut con).unwrap();
    assert!(
        exists,
        "the running job's hash went with its failed run's retention"
    );
    release.store(true, Ordering::Release);
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(
        (j.status, j.result.as_str()),
        (JobStatus::Done, "second run")
    );
}

#[test]
fn a_paused_queue_is_not_taken_until_resumed_and_the_cli_drives_the_lifecycle() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_herojobs"))
            .args(["--redis", &redis.url(), "--base"])
            .arg(&base)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(
        cli(&["pause", "--circle", "life", "--topic", "p"]).0,
        Some(0)
    );
    let other = client.submit(tjob("life", "q", "ok other")).unwrap();
    client.wait(&other, Duration::from_secs(30)).unwrap();
    let id = client.submit(tjob("life", "p", "ok paused")).unwrap();
    let passes = engine.stats().recovery_passes + 3;
    wait_until("three recovery passes", Duration::from_secs(30), || {
        engine.stats().recovery_passes >= passes
    });
    assert_eq!(client.get(&id).unwrap().status, JobStatus::New);
    assert_eq!(
        cli(&["resume", "--circle", "life", "--topic", "p"]).0,
        Some(0)
    );
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(j.result, "paused");
    // A failing job through the CLI: dead, listed, retried, cancelled when delayed.
    let fail = client.submit(tjob("life", "p", "fail nope")).unwrap();
    client.wait(&fail, Duration::from_secs(30)).unwrap();
    let (code, out) = cli(&["--json", "dead", "--circle", "life", "--topic", "p"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("\"jobid\":{}", fail.id())), "{out}");
    assert_eq!(
        cli(&["retry", "--circle", "life", "--topic", "p", "--all-dead"]).0,
        Some(0)
    );
    let (code, out) = cli(&[
        "submit", "--circle", "life", "--topic", "p", "--delay", "60", "ok later",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let later = queue("life", "p").job(out.trim().parse().unwrap());
    assert_eq!(client.scheduled(&queue("life", "p"), 10).unwrap().len(), 1);
    assert_eq!(
        cli(&[
            "cancel",
            "--circle",
            "life",
            "--topic",
            "p",
            &later.id().to_string()
        ])
        .0,
        Some(0)
    );
    assert_eq!(client.get(&later).unwrap().error, "cancelled");
}

/// A queue with nothing waiting, delayed or running leaves the registry after the idle
/// time (so short-lived queues do not lengthen every take forever); a submit brings it
/// back at once, and a queue with a delayed or a running job stays.
#[test]
fn idle_queues_leave_the_registry_and_a_submit_brings_them_back() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut retention = Retention::default();
    retention.queue_idle = Duration::from_secs(1);
    let mut engine = test_engine(&redis.url(), &base, 2)
        .retention(retention)
        .build()
        .unwrap();
    engine.start().unwrap();
    let client = engine.client();
    let registered = |q: &str| -> bool {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg("heroqueues")
            .query(&mut redis.conn())
            .unwrap();
        members.iter().any(|m| m == &format!("heroqueue:life:{q}"))
    };
    let done = client.submit(tjob("life", "brief", "ok once")).unwrap();
    client.wait(&done, Duration::from_secs(30)).unwrap();
    let later = client
        .submit(tjob("life", "later", "ok later").with_delay(Duration::from_secs(600)))
        .unwrap();
    let running = client.submit(tjob("life", "busy", "sleep 6000")).unwrap();
    wait_until("the long job to run", Duration::from_secs(30), || {
        client.get(&running).unwrap().status == JobStatus::Active
    });
    assert!(registered("brief") && registered("later") && registered("busy"));
    wait_until(
        "the idle queue to leave the registry",
        Duration::from_secs(60),
        || !registered("brief"),
    );
    assert!(engine.stats().queues_pruned >= 1);
    // Well past the idle time, the queues with work stay.
    let pruned = engine.stats().queues_pruned;
    let passes = engine.stats().recovery_passes;
    let since = Instant::now();
    wait_until(
        "recovery passes past the idle time",
        Duration::from_secs(60),
        || engine.stats().recovery_passes > passes + 2 && since.elapsed() > Duration::from_secs(2),
    );
    assert!(
        registered("later") && registered("busy"),
        "queues with work stay"
    );
    assert_eq!(engine.stats().queues_pruned, pruned);
    // A submit registers the pruned queue again, and its job runs.
    let again = client.submit(tjob("life", "brief", "ok again")).unwrap();
    assert!(registered("brief"));
    assert_eq!(
        client
            .wait(&again, Duration::from_secs(30))
            .unwrap()
            .outcome()
            .unwrap(),
        "again"
    );
    assert!(client.cancel(&later).unwrap());
    engine.stop();
}
