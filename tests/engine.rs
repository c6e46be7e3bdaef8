//! The engine against a real redis-server: results, timeouts, fairness, backpressure,
//! panics, unknown types and garbage, and a Redis restart that empties Redis.

mod common;

use common::{base_dir, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::{Client, JobRef, JobStatus, ParamsType};
use std::time::{Duration, Instant};

fn finished(client: &Client, ids: &[JobRef]) -> usize {
    ids.iter()
        .filter(|id| {
            client
                .get(id)
                .map(|j| j.status.is_finished())
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn jobs_run_and_results_land_in_redis_and_ourdb() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    let ids: Vec<JobRef> = (0..200)
        .map(|i| client.submit(tjob("c", "t", &format!("ok r{i}"))).unwrap())
        .collect();
    let fail = client.submit(tjob("c", "t", "fail it broke")).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let j = client.wait(id, Duration::from_secs(30)).unwrap();
        assert_eq!(j.status, JobStatus::Done);
        assert_eq!(j.result, format!("r{i}"));
        assert_eq!(j.attempts, 1);
        assert!(j.time_start > 0 && j.time_end >= j.time_start);
    }
    let j = client.wait(&fail, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.error.as_str()), (JobStatus::Error, "it broke"));
    engine.stop();
    // OurDB holds the finished state and the history of states.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let j = client.get(&ids[7]).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "r7"));
    assert_eq!(
        client.history(&ids[7], 10).unwrap().len(),
        3,
        "new, active, done"
    );
    let stats = engine.stats();
    assert_eq!(stats.done, 200);
    assert_eq!(stats.error, 1);
}

#[test]
fn an_endless_job_times_out_and_frees_its_worker() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    engine.start().unwrap();
    let endless = client
        .submit(tjob("c", "t", "forever").with_timeout(1))
        .unwrap();
    let after = client.submit(tjob("c", "t", "ok next")).unwrap();
    let j = client.wait(&endless, Duration::from_secs(30)).unwrap();
    assert_eq!(j.status, JobStatus::Error);
    assert_eq!(j.error, "timeout after 1 s");
    // The only worker is free again: the next job runs.
    let j = client.wait(&after, Duration::from_secs(10)).unwrap();
    assert_eq!(j.result, "next");
    // The late "cancelled" result did not overwrite the timeout.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(client.get(&endless).unwrap().error, "timeout after 1 s");
    assert_eq!(engine.stats().timed_out, 1);
}

#[test]
fn a_small_queue_is_not_starved_by_a_big_one() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let big: Vec<_> = (0..10_000).map(|_| tjob("c", "big", "sleep 1")).collect();
    let big_ids = client.submit_many(big).unwrap();
    let small_ids: Vec<JobRef> = (0..10)
        .map(|_| client.submit(tjob("c", "small", "ok")).unwrap())
        .collect();
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    for id in &small_ids {
        client.wait(id, Duration::from_secs(60)).unwrap();
    }
    let big_done = 10_000 - client.queue_len(&common::queue("c", "big")).unwrap() as usize;
    assert!(
        big_done < 2_000,
        "the small queue waited for {big_done} big jobs"
    );
    let _ = big_ids;
}

#[test]
fn never_more_jobs_taken_than_workers() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let ids = client
        .submit_many((0..40).map(|_| tjob("c", "bp", "sleep 50")).collect())
        .unwrap();
    let mut engine = test_engine(&redis.url(), &base, 3).build().unwrap();
    engine.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut samples = 0;
    while finished(&client, &ids) < ids.len() {
        assert!(Instant::now() < deadline, "jobs did not finish");
        let queued = client.queue_len(&common::queue("c", "bp")).unwrap() as usize;
        let done = finished(&client, &ids);
        // Taken but unfinished ≤ workers (sampled; `done` read after `queued` can only help).
        assert!(
            ids.len() - queued - done <= 3,
            "taken {} with 3 workers",
            ids.len() - queued - done
        );
        samples += 1;
    }
    assert!(samples > 5);
}

#[test]
fn panics_unknown_types_and_garbage_fail_cleanly_and_the_engine_goes_on() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .unclaimed_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut con = redis.conn();
    let mut bad = Vec::new();
    // Queued before the engine starts: a running engine could take a job between its
    // submit and the garbage written over its hash below.
    for i in 0..50 {
        bad.push(client.submit(tjob("c", "g", "panic")).unwrap());
        let mut other = tjob("c", "g", "ok");
        other.params_type = ParamsType::Other(format!("wasm{i}"));
        bad.push(client.submit(other).unwrap());
        // An id whose hash holds garbage, and one with no hash at all.
        let id = client.submit(tjob("c", "g2", "ok")).unwrap();
        let _: () = redis::cmd("HSET")
            .arg(format!("herojobs:c:g2:{}", id.id()))
            .arg("job")
            .arg("{garbage")
            .query(&mut con)
            .unwrap();
        bad.push(id);
        let _: () = redis::cmd("LPUSH")
            .arg("heroqueue:c:g2")
            .arg(100_000 + i)
            .query(&mut con)
            .unwrap();
    }
    engine.start().unwrap();
    let good = client.submit(tjob("c", "g", "ok fine")).unwrap();
    for (i, id) in bad.iter().enumerate() {
        // Until the engine replaces it, a garbage hash makes `get` fail (clearly): wait for that.
        wait_until(
            "the engine to record the job",
            Duration::from_secs(30),
            || {
                client
                    .get(id)
                    .map(|j| j.status.is_finished())
                    .unwrap_or(false)
            },
        );
        let j = client.get(id).unwrap();
        assert_eq!(j.status, JobStatus::Error, "{j:?}");
        match i % 3 {
            0 => assert!(
                j.error
                    .starts_with("processor panicked: the test processor was told to panic"),
                "{}",
                j.error
            ),
            1 => assert!(
                j.error
                    .starts_with("no engine of the fleet runs params type \"wasm"),
                "{}",
                j.error
            ),
            _ => assert!(j.error.contains("invalid job JSON"), "{}", j.error),
        }
    }
    assert_eq!(
        client.wait(&good, Duration::from_secs(30)).unwrap().result,
        "fine"
    );
    wait_until("ids without jobs dropped", Duration::from_secs(30), || {
        client.queue_len(&common::queue("c", "g2")).unwrap() == 0
    });
}

#[test]
fn redis_restarted_empty_with_pending_jobs_all_complete() {
    let mut redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let ids = client
        .submit_many(
            (0..1000)
                .map(|i| tjob("c", "r", &format!("ok {i}")))
                .collect(),
        )
        .unwrap();
    let active = client.submit(tjob("c", "r", "ok was-active")).unwrap();
    // One job was active when Redis died (its engine gone too): OurDB, the record of
    // truth, says so (written as the engine's dispatcher writes it).
    let mut j = client.get(&active).unwrap();
    j.status = JobStatus::Active;
    j.attempts = 1;
    j.time_start = j.time_scheduled;
    let db = herojobs::ourdb::OurDb::open(
        client.db_dir(active.queue()),
        herojobs::ourdb::Config::default(),
    )
    .unwrap();
    db.set(active.id(), &j.to_record()).unwrap();
    db.close().unwrap();
    assert_eq!(
        client.stored(&active).unwrap().unwrap().status,
        JobStatus::Active
    );
    redis.kill();
    redis.restart();
    assert_eq!(
        client.queue_len(&common::queue("c", "r")).unwrap(),
        0,
        "redis came back empty"
    );
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(j.result, i.to_string());
    }
    let j = client.wait(&active, Duration::from_secs(60)).unwrap();
    assert_eq!(j.result, "was-active");
    assert!(engine.stats().recovered >= 1001);
    // And with the engine running: Redis dies and comes back empty mid-stream.
    let more = client
        .submit_many((0..300).map(|_| tjob("c", "r", "sleep 5")).collect())
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    for id in &more {
        let j = client.wait(id, Duration::from_secs(90)).unwrap();
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
    }
}

#[test]
fn a_job_saved_but_never_queued_is_queued_by_recovery() {
    // As when Redis refused the enqueue for a moment: OurDB has the job, Redis never saw it,
    // and Redis did not lose any data (so only the check of new ids can find it).
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let first = client.submit(tjob("c", "nq", "ok first")).unwrap();
    let first_done = client.wait(&first, Duration::from_secs(30)).unwrap();
    // The job goes into OurDB the way a submit puts it there (an id from the store's id
    // block), and no further: the enqueue never happens.
    let mut orphan = tjob("c", "nq", "ok orphan");
    orphan.time_scheduled = first_done.time_scheduled;
    let q = queue("c", "nq");
    let db = herojobs::ourdb::OurDb::open(client.db_dir(&q), herojobs::ourdb::Config::default())
        .unwrap();
    let id = q.job(db.add(&orphan.to_record()).unwrap());
    db.close().unwrap();
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "orphan"));
}

#[test]
fn start_up_recovery_does_not_reread_finished_history() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let ids = client
        .submit_many((0..3000).map(|_| tjob("c", "hist", "ok")).collect())
        .unwrap();
    {
        let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
        engine.start().unwrap();
        for id in &ids {
            client.wait(id, Duration::from_secs(60)).unwrap();
        }
        // Let one more recovery pass move the mark past the finished jobs and persist it.
        let before = engine.stats().recovery_passes;
        wait_until("a recovery pass", Duration::from_secs(30), || {
            engine.stats().recovery_passes > before
        });
        wait_until(
            "the mark to pass the history",
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(base.join("circles/c/hist/recovery.mark"))
                    .map(|m| m.trim() == "3001")
                    .unwrap_or(false)
            },
        );
    }
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    wait_until(
        "the start-up recovery pass",
        Duration::from_secs(30),
        || engine.stats().recovery_passes >= 1,
    );
    // The start-up pass read (almost) nothing: 3,000 finished jobs are behind the mark.
    assert!(
        engine.stats().recovery_reads < 10,
        "read {}",
        engine.stats().recovery_reads
    );
}

/// An idle engine picks up jobs from queues (and circles) that did not exist when it went
/// idle, one after another, and records every result.
#[test]
fn queues_created_while_the_engine_is_idle_are_served() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    for n in 0..6 {
        let (circle, topic) = (format!("circle{}", n % 2), format!("fresh{n}"));
        let id = client
            .submit(tjob(&circle, &topic, &format!("ok from {n}")))
            .unwrap();
        let j = client.wait(&id, Duration::from_secs(30)).unwrap();
        assert_eq!(
            (j.status, j.result.as_str()),
            (JobStatus::Done, format!("from {n}").as_str())
        );
    }
    // The waiter is woken by Redis before the engine has its reply and counts the job.
    wait_until("six jobs counted done", Duration::from_secs(30), || {
        engine.stats().done == 6
    });
}

/// Redis dies while jobs run, then the engine is stopped: `stop` still returns (the
/// finisher gives up on Redis after its shutdown patience and writes OurDB), and once Redis
/// is back, empty, a new engine finishes every job from OurDB.
#[test]
fn stopping_during_a_redis_outage_returns_and_loses_nothing() {
    let mut redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let ids: Vec<JobRef> = (0..20)
        .map(|_| client.submit(tjob("c", "outage", "sleep 300")).unwrap())
        .collect();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    wait_until("jobs running", Duration::from_secs(30), || {
        engine.stats().started >= 2
    });
    redis.kill();
    let stopper = std::thread::spawn(move || {
        engine.stop();
        engine
    });
    wait_until("stop() to return", Duration::from_secs(90), || {
        stopper.is_finished()
    });
    let engine = stopper.join().unwrap();
    assert_eq!(engine.stats().running, 0);

    redis.restart();
    let mut engine = test_engine(&redis.url(), &base, 4).build().unwrap();
    engine.start().unwrap();
    wait_until("every job done in OurDB", Duration::from_secs(120), || {
        ids.iter().all(|id| {
            client
                .stored(id)
                .ok()
                .flatten()
                .is_some_and(|j| j.status == JobStatus::Done)
        })
    });
    engine.stop();
}
