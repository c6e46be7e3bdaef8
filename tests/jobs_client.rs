//! The jobs layer against a real redis-server: JSON in the contract's keys, FIFO order,
//! atomic submit under concurrency, wait, bad data in Redis, and a Redis outage mid-burst.

mod common;

use common::{base_dir, jref, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::{Client, Error, Job, JobRef, JobStatus, ParamsType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn job(circle: &str, topic: &str, n: usize) -> Job {
    Job::new(
        circle,
        topic,
        ParamsType::HeroScript,
        format!("!!fake.return_success message:'job {n}'"),
    )
}

#[test]
fn submit_writes_the_contract_keys_and_ourdb() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut j = job("My Circle", "", 1);
    j.session_key = "sk".into();
    j.timeout = 30;
    let id = client.submit(j).unwrap();
    assert_eq!(id.to_string(), "my_circle/default/1");

    let mut con = redis.conn();
    let raw: String = redis::cmd("HGET")
        .arg("herojobs:my_circle:default:1")
        .arg("job")
        .query(&mut con)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["jobid"], 1);
    assert_eq!(v["circleid"], "my_circle");
    assert_eq!(v["topic"], "default");
    assert_eq!(v["status"], "new");
    assert_eq!(v["params_type"], "heroscript");
    assert_eq!(v["sessionkey"], "sk");
    assert_eq!(v["timeout"], 30);
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg("heroqueue:my_circle:default")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, vec!["1"]);
    let registry: Vec<String> = redis::cmd("SMEMBERS")
        .arg("heroqueues")
        .query(&mut con)
        .unwrap();
    assert_eq!(registry, vec!["heroqueue:my_circle:default"]);
    assert!(base.join("circles/my_circle/default/jobsdb/0.db").exists());

    // get: from Redis, and from OurDB once Redis forgot it.
    assert_eq!(
        client.get(&id).unwrap().params,
        "!!fake.return_success message:'job 1'"
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let from_disk = client.get(&id).unwrap();
    assert_eq!(from_disk.status, JobStatus::New);
    assert_eq!(from_disk.session_key, "sk");
    let missing = jref("my circle", "", 99);
    assert!(matches!(
        client.get(&missing),
        Err(Error::NotFound { job }) if job == missing
    ));
    // Names that cannot be a path are refused.
    assert!(matches!(
        client.submit(job("..", "x", 0)),
        Err(Error::Name(_))
    ));
}

#[test]
fn queues_are_fifo_and_queue_operations_work() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let refs: Vec<JobRef> = (0..20)
        .map(|i| client.submit(job("c", "fifo", i)).unwrap())
        .collect();
    let ids: Vec<u32> = refs.iter().map(|r| r.id()).collect();
    client.submit(job("c", "other", 0)).unwrap();
    assert_eq!(client.queue_len(&queue("c", "fifo")).unwrap(), 20);
    assert_eq!(client.queue_ids(&queue("c", "fifo")).unwrap(), ids);
    assert_eq!(
        client.peek(&queue("c", "fifo")).unwrap().unwrap().id,
        ids[0]
    );
    // Consumers pop on the right (the contract every client keeps): submit order.
    let taken: Vec<u32> = redis::cmd("RPOP")
        .arg("heroqueue:c:fifo")
        .arg(5)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(taken, ids[..5], "taken in submit order");
    assert_eq!(
        client.peek(&queue("c", "fifo")).unwrap().unwrap().id,
        ids[5]
    );
    assert_eq!(
        client.queues().unwrap(),
        vec![queue("c", "fifo"), queue("c", "other")]
    );
    assert!(client.delete(&refs[5]).unwrap());
    assert_eq!(client.queue_len(&queue("c", "fifo")).unwrap(), 14);
    assert!(matches!(client.get(&refs[5]), Err(Error::NotFound { .. })));
    assert_eq!(client.empty_queue(&queue("c", "fifo")).unwrap(), 14);
    assert_eq!(client.queue_len(&queue("c", "fifo")).unwrap(), 0);
    // Emptied jobs keep their history in OurDB, marked so recovery leaves them alone.
    let j = client.get(&refs[10]).unwrap();
    assert_eq!(j.status, JobStatus::Error);
    let listed = client.list(&queue("c", "fifo")).unwrap();
    assert_eq!(listed.len(), 19);
}

#[test]
fn concurrent_submitters_never_leave_a_queue_entry_without_its_hash() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let url = redis.url();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                // One atomic look at the queue and every hash it names.
                let script = redis::Script::new(
                    "local ids = redis.call('LRANGE', KEYS[1], 0, -1)
                     local missing = 0
                     for _, id in ipairs(ids) do
                       if redis.call('EXISTS', ARGV[1] .. id) == 0 then missing = missing + 1 end
                     end
                     return missing",
                );
                let missing: i64 = script
                    .key("heroqueue:c:t")
                    .arg("herojobs:c:t:")
                    .invoke(&mut con)
                    .unwrap();
                assert_eq!(missing, 0, "a queued id had no job hash");
                checks += 1;
            }
            checks
        })
    };
    std::thread::scope(|s| {
        for t in 0..4 {
            let client = &client;
            s.spawn(move || {
                for i in 0..250 {
                    if i % 10 == 0 {
                        client
                            .submit_many(
                                (0..10)
                                    .map(|k| job("c", "t", t * 10_000 + i * 10 + k))
                                    .collect(),
                            )
                            .unwrap();
                    } else {
                        client.submit(job("c", "t", t * 10_000 + i)).unwrap();
                    }
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    assert!(checker.join().unwrap() > 0);
    let ids = client.queue_ids(&queue("c", "t")).unwrap();
    assert_eq!(ids.len(), 4 * (225 + 25 * 10));
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "an id was handed out twice");
}

#[test]
fn wait_returns_promptly_when_an_engine_finishes_the_job() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let r = client.submit(tjob("c", "w", "sleep 300")).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (client, r) = (client.clone(), r.clone());
            std::thread::spawn(move || {
                let j = client.wait(&r, Duration::from_secs(30)).unwrap();
                (Instant::now(), j)
            })
        })
        .collect();
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    engine.start().unwrap();
    // When Redis records the job done (polled from outside, every millisecond).
    let mut con = redis.conn();
    let key = format!("herojobs:c:w:{}", r.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let done_at = loop {
        let status: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("status")
            .query(&mut con)
            .unwrap();
        if status.as_deref() == Some("done") {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "the job never finished");
        std::thread::sleep(Duration::from_millis(1));
    };
    for w in waiters {
        let (woke, j) = w.join().unwrap();
        assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "slept"));
        // Woken by the signal, not by a poll interval (generous bound for a loaded machine).
        assert!(woke.saturating_duration_since(done_at) < Duration::from_secs(2));
    }
    engine.stop();
    // The finished state is in OurDB too: `get` answers from there once Redis forgot it.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let j = client.get(&r).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "slept"));
    // wait gives up with a clear error that names the job.
    let r4 = client.submit(job("c", "w", 3)).unwrap();
    let t = Instant::now();
    let err = client.wait(&r4, Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(&err, Error::WaitTimeout { job, .. } if *job == r4),
        "{err}"
    );
    assert!(err.to_string().contains(&r4.to_string()), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));
}

/// `wait_many` returns every job finished, in the order asked, failed ones included (their
/// `outcome()` is the `Err`); one deadline covers them all.
#[test]
fn wait_many_returns_every_job_in_order_and_outcome_makes_failures_errors() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    let refs = client
        .submit_many(vec![
            tjob("c", "many", "sleep 200"),
            tjob("c", "many", "fail on purpose"),
            tjob("c", "other", "ok three"),
        ])
        .unwrap();
    let jobs = client.wait_many(&refs, Duration::from_secs(30)).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        refs.iter().map(|r| r.id()).collect::<Vec<_>>()
    );
    assert_eq!(jobs[0].outcome().unwrap(), "slept");
    let failed = jobs[1].outcome().unwrap_err();
    assert_eq!(failed.error(), "on purpose");
    assert_eq!(failed.job(), refs[1].to_string());
    assert_eq!(jobs[2].outcome().unwrap(), "three");
    // As an `Error`, through `?`.
    let as_error = (|| -> herojobs::Result<String> {
        Ok(client
            .wait(&refs[1], Duration::from_secs(5))?
            .outcome()?
            .to_string())
    })()
    .unwrap_err();
    assert!(matches!(as_error, Error::Failed(_)), "{as_error}");
    assert!(
        as_error.to_string().contains("failed: on purpose"),
        "{as_error}"
    );
    // One deadline for all: a job that never runs makes the whole wait time out.
    engine.stop();
    let never = client.submit(tjob("c", "many", "ok")).unwrap();
    let err = client
        .wait_many(
            &[refs[0].clone(), never.clone()],
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::WaitTimeout { job, .. } if *job == never),
        "{err}"
    );
}

#[test]
fn garbage_in_redis_gives_clear_errors_and_stops_nothing() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let id = client.submit(job("c", "g", 0)).unwrap();
    let mut con = redis.conn();
    let _: () = redis::cmd("HSET")
        .arg(format!("herojobs:c:g:{}", id.id()))
        .arg("job")
        .arg("{this is not json")
        .query(&mut con)
        .unwrap();
    let err = client.get(&id).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("herojobs:c:g:{}", id.id())) && msg.contains("invalid job JSON"),
        "{msg}"
    );
    // An id in a queue whose hash is gone: the broker has nothing, OurDB does not know it.
    let _: () = redis::cmd("LPUSH")
        .arg("heroqueue:c:g")
        .arg("777")
        .query(&mut con)
        .unwrap();
    assert!(matches!(
        client.get(&jref("c", "g", 777)),
        Err(Error::NotFound { job }) if job.id() == 777
    ));
    // Everything else goes on.
    let id2 = client.submit(job("c", "g", 1)).unwrap();
    assert_eq!(client.get(&id2).unwrap().status, JobStatus::New);
}

#[test]
fn redis_killed_and_restarted_during_a_burst_loses_no_acknowledged_submit() {
    let mut redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let outcomes = std::thread::scope(|s| {
        let burst = s.spawn(|| {
            let mut outcomes = Vec::new();
            for i in 0..3000 {
                outcomes.push(client.submit(job("c", "burst", i)));
            }
            outcomes
        });
        wait_until("some submits", Duration::from_secs(30), || {
            client.highest_id(&queue("c", "burst")).unwrap_or(0) >= 200
        });
        redis.kill();
        std::thread::sleep(Duration::from_millis(700));
        redis.restart();
        burst.join().unwrap()
    });
    let mut ok = 0;
    let mut failed = 0;
    for o in &outcomes {
        match o {
            Ok(id) => {
                ok += 1;
                let j = client
                    .stored(id)
                    .unwrap()
                    .expect("acknowledged id in OurDB");
                assert_eq!(j.id, id.id());
            }
            Err(Error::NotQueued { job, .. }) => {
                failed += 1;
                // Saved in OurDB even though Redis was down: recovery will queue it.
                assert!(client.stored(job).unwrap().is_some());
            }
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert_eq!(ok + failed, 3000);
    assert!(ok > 200, "ok {ok}");
    // Redis came back empty; new submits work again.
    let id = client.submit(job("c", "burst", 99_999)).unwrap();
    assert_eq!(client.get(&id).unwrap().status, JobStatus::New);
}

#[test]
fn unix_socket_urls_work() {
    // A redis-server listening on a Unix socket only.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    let mut child = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let url = format!("unix://{}", sock.display());
    wait_until("redis on the socket", Duration::from_secs(20), || {
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    });
    let (_d, base) = base_dir();
    let client = Client::connect(&url, &base).unwrap();
    let id = client.submit(job("c", "unix", 0)).unwrap();
    assert_eq!(client.get(&id).unwrap().status, JobStatus::New);
    assert_eq!(client.queue_len(&queue("c", "unix")).unwrap(), 1);
    let _ = child.kill();
    let _ = child.wait();
    // A URL scheme the client cannot use is a clear error, not a panic.
    let err = Client::connect("ftp://nowhere", &base).err().unwrap();
    assert!(err.to_string().contains("redis URL"), "{err}");
}
