//! Redis content is untrusted: hashes, queue entries and registry members planted by anyone
//! who reaches Redis never become paths, never address another job, and never stop the
//! engine or recovery of the other circles. Each test plants its input with plain Redis
//! commands, as `redis-cli` would, against a real redis-server and a running engine.

mod common;

use common::{base_dir, jref, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::{Client, JobStatus};
use std::path::Path;
use std::time::Duration;

fn cmd(con: &mut redis::Connection, args: &[&str]) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let _: redis::Value = c.query(con).unwrap();
}

/// Every directory under `root`, for comparing what an engine created.
fn dirs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.push(e.path().display().to_string());
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_planted_job_with_traversing_names_creates_nothing_outside_its_base() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("a/b/c/base");
    let mut con = redis.conn();
    let json = r#"{"jobid":1,"circleid":"../../pwned","topic":"../../../pwned2","params":"ok owned","params_type":"heroscript","status":"new"}"#;
    cmd(&mut con, &["HSET", "herojobs:attacker:t:1", "job", json]);
    cmd(&mut con, &["LPUSH", "heroqueue:attacker:t", "1"]);
    cmd(&mut con, &["SADD", "heroqueues", "heroqueue:attacker:t"]);
    // A registry member and a lease whose names are not name-fixed are ignored outright.
    cmd(&mut con, &["HSET", "herojobs:..:t:1", "job", json]);
    cmd(&mut con, &["LPUSH", "heroqueue:..:t", "1"]);
    cmd(
        &mut con,
        &[
            "SADD",
            "heroqueues",
            "heroqueue:..:t",
            "heroqueue:../../x:t",
        ],
    );
    cmd(&mut con, &["ZADD", "herojobs-leases", "0", "../../y:t:1"]);
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    wait_until("the planted job to fail", Duration::from_secs(30), || {
        client
            .get(&jref("attacker", "t", 1))
            .is_ok_and(|j| j.status.is_finished())
    });
    let j = client.get(&jref("attacker", "t", 1)).unwrap();
    assert_eq!(j.status, JobStatus::Error);
    assert!(j.error.contains("another job"), "{}", j.error);
    assert_eq!((j.circle.as_str(), j.topic.as_str()), ("attacker", "t"));
    let passes = engine.stats().recovery_passes + 2;
    wait_until("two recovery passes", Duration::from_secs(30), || {
        engine.stats().recovery_passes >= passes
    });
    engine.stop();
    // Nothing outside <base>/circles/attacker/t/ was created, and no `pwned` anywhere.
    for d in dirs(root.path()) {
        assert!(
            d.starts_with(&base.display().to_string()) || base.starts_with(&d),
            "created outside the base: {d}"
        );
        assert!(!d.contains("pwned"), "created {d}");
    }
    assert!(!Path::new("/pwned2").exists());
    let topics = client.stored_queues();
    assert_eq!(topics, vec![queue("attacker", "t")]);
}

#[test]
fn a_job_whose_json_names_another_job_fails_under_its_own_key_and_touches_nothing_else() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let victim = client.submit(tjob("victim", "t", "ok precious")).unwrap();
    let done = client.wait(&victim, Duration::from_secs(30)).unwrap();
    assert_eq!(done.result, "precious");
    let mut con = redis.conn();
    let evil = format!(
        r#"{{"jobid":{},"circleid":"victim","topic":"t","params":"ok overwritten","params_type":"heroscript","status":"new"}}"#,
        victim.id()
    );
    cmd(&mut con, &["HSET", "herojobs:x:t:1", "job", &evil]);
    cmd(&mut con, &["LPUSH", "heroqueue:x:t", "1"]);
    cmd(&mut con, &["SADD", "heroqueues", "heroqueue:x:t"]);
    cmd(&mut con, &["LPUSH", "herojobs-signal", "1"]);
    wait_until("the forged job to fail", Duration::from_secs(30), || {
        client
            .get(&jref("x", "t", 1))
            .is_ok_and(|j| j.status.is_finished())
    });
    let j = client.get(&jref("x", "t", 1)).unwrap();
    assert_eq!(j.status, JobStatus::Error);
    assert!(j.error.contains("another job"), "{}", j.error);
    // The failure is final: not re-queued lease after lease.
    let passes = engine.stats().recovery_passes + 3;
    wait_until("three recovery passes", Duration::from_secs(30), || {
        engine.stats().recovery_passes >= passes
    });
    assert_eq!(client.queue_len(&queue("x", "t")).unwrap(), 0);
    assert_eq!(client.get(&jref("x", "t", 1)).unwrap().attempts, 1);
    engine.stop();
    // The victim is untouched in Redis and in its OurDB.
    let v = client.get(&victim).unwrap();
    assert_eq!(
        (v.status, v.result.as_str(), v.params.as_str()),
        (JobStatus::Done, "precious", "ok precious")
    );
    let stored = client.stored(&victim).unwrap().unwrap();
    assert_eq!(
        (stored.result.as_str(), stored.params.as_str()),
        ("precious", "ok precious")
    );
    assert_eq!(
        client.history(&victim, 10).unwrap().len(),
        3,
        "new, active, done: nothing more"
    );
}

#[test]
fn one_broken_database_does_not_stop_recovery_of_the_others() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let a = client.submit(tjob("a", "t", "ok a")).unwrap();
    let z = client.submit(tjob("z", "t", "ok z")).unwrap();
    // Redis forgets both; then a's database is damaged.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    drop(client);
    let a_dir = base.join("circles/a/t/jobsdb");
    let good = std::fs::read(a_dir.join("ourdb.json")).unwrap();
    std::fs::write(a_dir.join("ourdb.json"), b"{ not json").unwrap();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let j = client.wait(&z, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "z"));
    wait_until(
        "the broken database reported",
        Duration::from_secs(30),
        || engine.stats().recovery_errors > 0,
    );
    // Repaired: a later pass picks it up again.
    std::fs::write(a_dir.join("ourdb.json"), good).unwrap();
    let j = client.wait(&a, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "a"));
    engine.stop();
}

/// A job planted in Redis at an id no store was given (4294967295, the top of the id
/// space) fails there and never grows the database. Before, the engine recorded it: the
/// lookup table grew to cover that id (24 GiB, allocated) and the database's next id
/// passed the end of the id space, so every later submit to the queue failed. With the
/// fleet's id counter gone (as after Redis lost its data) an id far beyond the store's is
/// refused the same way; one above the counter but within OurDB's window above the
/// store's next id runs (the counter can lag ids in use: a Redis restored from an older
/// snapshot). The queue goes on working.
#[test]
fn a_job_planted_at_an_id_never_issued_fails_in_redis_and_never_grows_the_database() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let before = client.submit(tjob("x", "t", "ok before")).unwrap();
    client.wait(&before, Duration::from_secs(30)).unwrap();
    let table = client.db_dir(&queue("x", "t")).join("lookup/data");
    let table_len = || std::fs::metadata(&table).unwrap().len();
    let len_before = table_len();
    let mut con = redis.conn();
    let mut plant = |id: u32| {
        let evil = format!(
            r#"{{"jobid":{id},"circleid":"x","topic":"t","params":"ok planted","params_type":"heroscript","status":"new"}}"#
        );
        cmd(
            &mut con,
            &["HSET", &format!("herojobs:x:t:{id}"), "job", &evil],
        );
        cmd(&mut con, &["LPUSH", "heroqueue:x:t", &id.to_string()]);
        cmd(&mut con, &["SADD", "heroqueues", "heroqueue:x:t"]);
        cmd(&mut con, &["LPUSH", "herojobs-signal", "1"]);
    };
    let failed = |id: u32| {
        wait_until("the planted job to fail", Duration::from_secs(30), || {
            client
                .get(&jref("x", "t", id))
                .is_ok_and(|j| j.status.is_finished())
        });
        let j = client.get(&jref("x", "t", id)).unwrap();
        assert_eq!(j.status, JobStatus::Error, "{j:?}");
        j.error
    };
    plant(u32::MAX);
    let error = failed(u32::MAX);
    assert!(error.contains("never issued"), "{error}");
    assert!(client.stored(&jref("x", "t", u32::MAX)).unwrap().is_none());
    // Without the counter: refused as beyond the store's ids by more than OurDB allows.
    cmd(&mut redis.conn(), &["DEL", "herojobs-ids:x:t"]);
    plant(1 << 30);
    let error = failed(1 << 30);
    assert!(error.contains("missing"), "{error}");
    assert_eq!(engine.stats().refused_ids, 2);
    assert_eq!(table_len(), len_before, "the table grew for a refused id");
    // Above a counter that lags (here: 1), within the window: a real job, it runs.
    cmd(&mut redis.conn(), &["SET", "herojobs-ids:x:t", "1"]);
    plant(5000);
    wait_until(
        "the job above the counter to run",
        Duration::from_secs(30),
        || {
            client
                .get(&jref("x", "t", 5000))
                .is_ok_and(|j| j.status.is_finished())
        },
    );
    assert_eq!(client.get(&jref("x", "t", 5000)).unwrap().result, "planted");
    assert_eq!(engine.stats().refused_ids, 2);
    // The queue is unharmed: a submit gets an ordinary id and runs.
    let after = client.submit(tjob("x", "t", "ok after")).unwrap();
    assert!(after.id() > 5000 && after.id() < 1 << 20, "{after:?}");
    assert_eq!(
        client.wait(&after, Duration::from_secs(30)).unwrap().result,
        "after"
    );
    engine.stop();
    // The table covers ids up to about 5000: kilobytes, not gigabytes.
    assert!(table_len() < 1 << 20, "table of {} bytes", table_len());
}
