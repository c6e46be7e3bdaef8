//! The jobs layer against a real redis-server: JSON in the contract's keys, FIFO order,
//! atomic submit under concurrency, wait, bad data in Redis, and a Redis outage mid-burst.

mod common;

use common::{base_dir, wait_until, RedisServer};
use herojobs::broker::{QueueName, Transition};
use herojobs::{Client, Error, Job, JobStatus, ParamsType};
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
    assert_eq!(id, 1);

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
        client.get("my_circle", "default", 1).unwrap().params,
        "!!fake.return_success message:'job 1'"
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let from_disk = client.get("My Circle", "", 1).unwrap();
    assert_eq!(from_disk.status, JobStatus::New);
    assert_eq!(from_disk.session_key, "sk");
    assert!(matches!(
        client.get("my_circle", "default", 99),
        Err(Error::NotFound { id: 99, .. })
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
    let ids: Vec<u32> = (0..20)
        .map(|i| client.submit(job("c", "fifo", i)).unwrap())
        .collect();
    client.submit(job("c", "other", 0)).unwrap();
    assert_eq!(client.queue_len("c", "fifo").unwrap(), 20);
    assert_eq!(client.queue_ids("c", "fifo").unwrap(), ids);
    assert_eq!(client.peek("c", "fifo").unwrap().unwrap().id, ids[0]);
    let q = QueueName::new("c", "fifo");
    let (_, taken, _) = client
        .broker()
        .finish_and_take(&[], std::slice::from_ref(&q), 5, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        taken.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[..5],
        "taken in submit order"
    );
    assert_eq!(client.peek("c", "fifo").unwrap().unwrap().id, ids[5]);
    assert_eq!(
        client.queues().unwrap(),
        vec![QueueName::new("c", "fifo"), QueueName::new("c", "other")]
    );
    assert!(client.delete("c", "fifo", ids[5]).unwrap());
    assert_eq!(client.queue_len("c", "fifo").unwrap(), 14);
    assert!(matches!(
        client.get("c", "fifo", ids[5]),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(client.empty_queue("c", "fifo").unwrap(), 14);
    assert_eq!(client.queue_len("c", "fifo").unwrap(), 0);
    // Emptied jobs keep their history in OurDB, marked so recovery leaves them alone.
    let j = client.get("c", "fifo", ids[10]).unwrap();
    assert_eq!(j.status, JobStatus::Error);
    let listed = client.list("c", "fifo").unwrap();
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
    let ids = client.queue_ids("c", "t").unwrap();
    assert_eq!(ids.len(), 4 * (225 + 25 * 10));
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "an id was handed out twice");
}

#[test]
fn wait_returns_promptly_when_another_thread_finishes_the_job() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let id = client.submit(job("c", "w", 0)).unwrap();
    let finisher = {
        let client = client.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut j = client.get("c", "w", id).unwrap();
            assert_eq!(
                client
                    .set_active(&mut j, 1, Duration::from_secs(30))
                    .unwrap(),
                Transition::Applied
            );
            let done_at = Instant::now();
            assert_eq!(
                client.set_done(&mut j, "the result".into(), 1).unwrap(),
                Transition::Applied
            );
            done_at
        })
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                let j = client.wait("c", "w", id, Duration::from_secs(30)).unwrap();
                (Instant::now(), j)
            })
        })
        .collect();
    let done_at = finisher.join().unwrap();
    for w in waiters {
        let (woke, j) = w.join().unwrap();
        assert_eq!(j.status, JobStatus::Done);
        assert_eq!(j.result, "the result");
        // Woken by the signal, not by a poll interval (generous bound for a loaded machine).
        assert!(woke.duration_since(done_at) < Duration::from_secs(2));
    }
    // The finished state is in OurDB too, with its history of states.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let j = client.get("c", "w", id).unwrap();
    assert_eq!(j.status, JobStatus::Done);
    // First finisher wins, even after Redis forgot the job: OurDB says it is done.
    let mut late = j.clone();
    assert_eq!(
        client.set_error(&mut late, "late".into(), 1).unwrap(),
        Transition::AlreadyFinished
    );
    assert_eq!(client.get("c", "w", id).unwrap().result, "the result");
    let id2 = client.submit(job("c", "w", 1)).unwrap();
    let mut a = client.get("c", "w", id2).unwrap();
    client
        .set_active(&mut a, 1, Duration::from_secs(30))
        .unwrap();
    let mut b = a.clone();
    assert_eq!(
        client.set_done(&mut a, "first".into(), 1).unwrap(),
        Transition::Applied
    );
    assert_eq!(
        client.set_error(&mut b, "second".into(), 1).unwrap(),
        Transition::AlreadyFinished
    );
    assert_eq!(client.get("c", "w", id2).unwrap().result, "first");
    // A reclaimed attempt (2) fences off the old one (1).
    let id3 = client.submit(job("c", "w", 2)).unwrap();
    let mut old = client.get("c", "w", id3).unwrap();
    client
        .set_active(&mut old, 1, Duration::from_secs(30))
        .unwrap();
    let mut new = old.clone();
    client
        .set_active(&mut new, 2, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        client.set_done(&mut old, "stale".into(), 1).unwrap(),
        Transition::Fenced
    );
    assert_eq!(
        client.set_done(&mut new, "fresh".into(), 2).unwrap(),
        Transition::Applied
    );
    assert_eq!(client.get("c", "w", id3).unwrap().result, "fresh");
    // wait gives up with a clear error.
    let id4 = client.submit(job("c", "w", 3)).unwrap();
    let t = Instant::now();
    let err = client
        .wait("c", "w", id4, Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn garbage_in_redis_gives_clear_errors_and_stops_nothing() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let id = client.submit(job("c", "g", 0)).unwrap();
    let mut con = redis.conn();
    let _: () = redis::cmd("HSET")
        .arg(format!("herojobs:c:g:{id}"))
        .arg("job")
        .arg("{this is not json")
        .query(&mut con)
        .unwrap();
    let err = client.get("c", "g", id).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("herojobs:c:g:{id}")) && msg.contains("invalid job JSON"),
        "{msg}"
    );
    // An id in a queue whose hash is gone: the broker has nothing, OurDB does not know it.
    let _: () = redis::cmd("LPUSH")
        .arg("heroqueue:c:g")
        .arg("777")
        .query(&mut con)
        .unwrap();
    assert!(matches!(
        client.get("c", "g", 777),
        Err(Error::NotFound { id: 777, .. })
    ));
    // Everything else goes on.
    let id2 = client.submit(job("c", "g", 1)).unwrap();
    assert_eq!(client.get("c", "g", id2).unwrap().status, JobStatus::New);
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
            client
                .store()
                .db("c", "burst")
                .map(|d| d.next_id() > 200)
                .unwrap_or(false)
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
                    .store()
                    .get("c", "burst", *id)
                    .unwrap()
                    .expect("acknowledged id in OurDB");
                assert_eq!(j.id, *id);
            }
            Err(Error::NotQueued { id, .. }) => {
                failed += 1;
                // Saved in OurDB even though Redis was down: recovery will queue it.
                assert!(client.store().get("c", "burst", *id).unwrap().is_some());
            }
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert_eq!(ok + failed, 3000);
    assert!(ok > 200, "ok {ok}");
    // Redis came back empty; new submits work again.
    let id = client.submit(job("c", "burst", 99_999)).unwrap();
    assert_eq!(client.get("c", "burst", id).unwrap().status, JobStatus::New);
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
    assert_eq!(client.get("c", "unix", id).unwrap().status, JobStatus::New);
    assert_eq!(client.queue_len("c", "unix").unwrap(), 1);
    let _ = child.kill();
    let _ = child.wait();
    // A URL scheme the client cannot use is a clear error, not a panic.
    let err = Client::connect("ftp://nowhere", &base).err().unwrap();
    assert!(err.to_string().contains("redis URL"), "{err}");
}

/// The engine's one call per batch: finished jobs recorded and the next jobs taken, with the
/// leases, statuses and verdicts the contract needs, straight against Redis.
#[test]
fn finish_and_take_records_and_takes_in_one_step() {
    use herojobs::broker::redis::{RedisBroker, RedisConfig};
    use herojobs::broker::Broker;
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let broker = RedisBroker::new(RedisConfig::new(&redis.url())).unwrap();
    let q = QueueName::new("c", "ft");
    let ids: Vec<u32> = (0..5)
        .map(|n| client.submit(job("c", "ft", n)).unwrap())
        .collect();
    let lease = Duration::from_secs(30);
    let mut con = redis.conn();
    let leases = |con: &mut redis::Connection| -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg("herojobs-leases")
            .arg(0)
            .arg(-1)
            .query(con)
            .unwrap()
    };

    // Nothing finished yet: a plain take, FIFO, each active under a lease at attempt 1.
    let (t, first, _) = broker
        .finish_and_take(&[], std::slice::from_ref(&q), 3, lease)
        .unwrap();
    assert!(t.is_empty());
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..3]);
    for t in &first {
        assert_eq!(t.attempt, 1);
        assert_eq!(t.job.as_ref().unwrap().status, JobStatus::Active);
    }
    assert_eq!(leases(&mut con).len(), 3);

    // Two finish and their slots are refilled in the same call: the queue holds only two.
    let done: Vec<(Job, u32)> = first[..2]
        .iter()
        .map(|t| {
            let mut j = t.job.clone().unwrap();
            j.status = JobStatus::Done;
            j.result = format!("r{}", j.id);
            (j, t.attempt)
        })
        .collect();
    let (t, second, _) = broker
        .finish_and_take(&done, std::slice::from_ref(&q), 5, lease)
        .unwrap();
    assert_eq!(t, vec![Transition::Applied, Transition::Applied]);
    assert_eq!(second.iter().map(|t| t.id).collect::<Vec<_>>(), ids[3..]);
    let mut held = leases(&mut con);
    held.sort();
    let mut want: Vec<String> = ids[2..].iter().map(|id| format!("c:ft:{id}")).collect();
    want.sort();
    assert_eq!(
        held, want,
        "leases of the finished jobs go, the taken ones come"
    );
    let status: String = redis::cmd("HGET")
        .arg(format!("herojobs:c:ft:{}", ids[0]))
        .arg("status")
        .query(&mut con)
        .unwrap();
    assert_eq!(status, "done");

    // A retry of the same finish (its reply lost) is applied, not "someone else won"; a
    // different record loses; a stale attempt is fenced; nothing is taken without queues.
    let retry = broker.finish_many(&done[..1], false).unwrap();
    assert_eq!(retry, vec![Transition::Applied]);
    let mut other = done[0].0.clone();
    other.status = JobStatus::Error;
    other.error = "late".into();
    assert_eq!(
        broker.finish_many(&[(other, 1)], false).unwrap(),
        vec![Transition::AlreadyFinished]
    );
    let mut stale = first[2].job.clone().unwrap();
    stale.status = JobStatus::Done;
    assert_eq!(
        broker.finish_many(&[(stale.clone(), 7)], false).unwrap(),
        vec![Transition::Fenced]
    );
    assert_eq!(
        client.get("c", "ft", ids[0]).unwrap().result,
        format!("r{}", ids[0])
    );

    // Redis forgets everything: finishing reports Missing and writes nothing.
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let (t, none, _) = broker
        .finish_and_take(&[(stale, 1)], std::slice::from_ref(&q), 5, lease)
        .unwrap();
    assert_eq!(t, vec![Transition::Missing]);
    assert!(none.is_empty());
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("herojobs:c:ft:{}", ids[2]))
        .query(&mut con)
        .unwrap();
    assert!(!exists, "a missing job is not written back without restore");
}
