//! Many stores, one Redis (the fleet): every submitter with its own base directory, watchdogs
//! with yet other bases, on one real redis-server. Ids are unique across all of them, no
//! acknowledged job is ever dropped or given another job's result, any watchdog runs any
//! job, and a watchdog leaves jobs it cannot run to one that can.
//!
//! Child watchdogs are this test binary re-run with `--exact child_watchdog`.

mod common;

use common::{base_dir, jref, queue, test_engine, test_registry, tjob, wait_until, RedisServer};
use herojobs::{Client, Job, JobRef, JobStatus, ParamsType, Registry};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn child_watchdog() {
    let (Ok(url), Ok(base)) = (std::env::var("FLEET_REDIS"), std::env::var("FLEET_BASE")) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("signal handler");
    let mut engine = test_engine(&url, Path::new(&base), 8)
        .build()
        .expect("engine");
    engine.start().expect("start");
    println!("READY");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    engine.stop();
}

fn spawn_watchdog(redis: &RedisServer, base: &Path) -> Child {
    common::spawn_ready_child(
        "child_watchdog",
        &[
            ("FLEET_REDIS", redis.url().into()),
            ("FLEET_BASE", base.into()),
        ],
    )
}

/// The reproduction of the issue: two bases submit into one circle; a watchdog with a third
/// base runs both; each submitter gets its own job's result, under its own id, and its own
/// OurDB learns the outcome.
#[test]
fn two_bases_never_share_an_id_and_a_third_runs_both() {
    let redis = RedisServer::start();
    let (_d1, b1) = base_dir();
    let (_d2, b2) = base_dir();
    let (_d3, b3) = base_dir();
    let c1 = Client::connect(&redis.url(), &b1).unwrap();
    let c2 = Client::connect(&redis.url(), &b2).unwrap();
    let id1 = c1.submit(tjob("calc", "", "ok two")).unwrap();
    let id2 = c2.submit(tjob("calc", "", "ok six")).unwrap();
    assert_ne!(id1.id(), id2.id(), "two stores handed out the same id");
    assert_ne!(c1.store_identity().unwrap(), c2.store_identity().unwrap());
    let mut engine = test_engine(&redis.url(), &b3, 2).build().unwrap();
    engine.start().unwrap();
    let j1 = c1.wait(&id1, Duration::from_secs(30)).unwrap();
    let j2 = c2.wait(&id2, Duration::from_secs(30)).unwrap();
    assert_eq!((j1.status, j1.result.as_str()), (JobStatus::Done, "two"));
    assert_eq!((j2.status, j2.result.as_str()), (JobStatus::Done, "six"));
    assert_eq!(j1.store, c1.store_identity().unwrap());
    assert_eq!(j2.store, c2.store_identity().unwrap());
    engine.stop();
    // The watchdog recorded what it ran in its own OurDB, at ids its store never handed out.
    let runner = Client::connect(&redis.url(), &b3).unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    for (id, result) in [(&id1, "two"), (&id2, "six")] {
        let j = runner
            .stored(&jref("calc", "default", id.id()))
            .unwrap()
            .unwrap();
        assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, result));
    }
    // Each submitter's OurDB learned its own job's outcome while it waited: after Redis
    // forgot everything, `get` still answers from there.
    let j1 = c1.get(&id1).unwrap();
    let j2 = c2.get(&id2).unwrap();
    assert_eq!((j1.status, j1.result.as_str()), (JobStatus::Done, "two"));
    assert_eq!((j2.status, j2.result.as_str()), (JobStatus::Done, "six"));
}

/// A base wiped and reused on a Redis that still holds its old jobs: the new ids never
/// collide with the old ones, and the old jobs are untouched.
#[test]
fn a_wiped_base_never_reuses_ids_redis_still_holds() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let old: Vec<JobRef> = {
        let c = Client::connect(&redis.url(), &base).unwrap();
        (0..5)
            .map(|i| c.submit(tjob("w", "t", &format!("ok old{i}"))).unwrap())
            .collect()
    };
    std::fs::remove_dir_all(&base).unwrap();
    let c = Client::connect(&redis.url(), &base).unwrap();
    let new: Vec<JobRef> = (0..5)
        .map(|i| c.submit(tjob("w", "t", &format!("ok new{i}"))).unwrap())
        .collect();
    let old_set: HashSet<&JobRef> = old.iter().collect();
    assert!(
        new.iter().all(|id| !old_set.contains(id)),
        "old {old:?} new {new:?}"
    );
    for (i, id) in old.iter().enumerate() {
        let j = c.get(id).unwrap();
        assert_eq!(j.params, format!("ok old{i}"));
    }
    for (i, id) in new.iter().enumerate() {
        let j = c.get(id).unwrap();
        assert_eq!(j.params, format!("ok new{i}"));
    }
}

/// Point 1 forced directly: another job planted under the id the next submit takes. The
/// submit is not acknowledged as that id, the planted job is untouched, and the job runs
/// under a fresh id.
#[test]
fn a_job_planted_under_the_next_id_is_never_overwritten_or_acknowledged() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut con = redis.conn();
    // A fresh store on a fresh Redis takes id 1 first.
    let planted = r#"{"jobid":1,"circleid":"p","topic":"t","params":"ok planted","params_type":"heroscript","status":"new"}"#;
    let _: () = redis::cmd("HSET")
        .arg("herojobs:p:t:1")
        .arg("job")
        .arg(planted)
        .query(&mut con)
        .unwrap();
    let c = Client::connect(&redis.url(), &base).unwrap();
    let id = c.submit(tjob("p", "t", "ok mine")).unwrap();
    assert_ne!(id.id(), 1, "acknowledged under the planted job's id");
    let raw: String = redis::cmd("HGET")
        .arg("herojobs:p:t:1")
        .arg("job")
        .query(&mut con)
        .unwrap();
    assert_eq!(raw, planted, "the planted job was overwritten");
    assert_eq!(c.get(&id).unwrap().params, "ok mine");
    // The store's record of the refused id is gone: nothing was acknowledged there.
    assert!(c.stored(&jref("p", "t", 1)).unwrap().is_none());
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    engine.start().unwrap();
    let j = c.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "mine"));
}

/// The same check guards recovery's re-queue: a job of this store lost by Redis, whose id
/// another job took meanwhile, is submitted again under a fresh id (its old record says
/// where), never written over the other job.
#[test]
fn recovery_never_requeues_over_another_job() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let c = Client::connect(&redis.url(), &base).unwrap();
    let id = c.submit(tjob("r", "t", "ok lost")).unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let other = format!(
        r#"{{"jobid":{},"circleid":"r","topic":"t","params":"ok other","params_type":"heroscript","status":"new"}}"#,
        id.id()
    );
    let mut con = redis.conn();
    let _: () = redis::cmd("HSET")
        .arg(format!("herojobs:r:t:{}", id.id()))
        .arg("job")
        .arg(&other)
        .arg("token")
        .arg("someone-else")
        .query(&mut con)
        .unwrap();
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    engine.start().unwrap();
    wait_until("recovery to move the job", Duration::from_secs(30), || {
        c.stored(&id)
            .unwrap()
            .is_some_and(|j| j.status == JobStatus::Error)
    });
    let old = c.stored(&id).unwrap().unwrap();
    let new_id: u32 = old
        .error
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no new id in {:?}", old.error));
    let j = c
        .wait(&jref("r", "t", new_id), Duration::from_secs(30))
        .unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "lost"));
    let raw: String = redis::cmd("HGET")
        .arg(format!("herojobs:r:t:{}", id.id()))
        .arg("job")
        .query(&mut con)
        .unwrap();
    assert_eq!(raw, other, "recovery wrote over another job");
}

/// Any watchdog runs any job it can run: one without a processor for a custom type hands
/// those jobs back (without spending an attempt) to one that has it.
#[test]
fn a_watchdog_without_a_processor_leaves_custom_jobs_to_one_that_has_it() {
    let redis = RedisServer::start();
    let (_d1, b1) = base_dir();
    let (_d2, b2) = base_dir();
    let (_d3, b3) = base_dir();
    let client = Client::connect(&redis.url(), &b3).unwrap();
    let mut plain = test_engine(&redis.url(), &b1, 2).build().unwrap();
    plain.start().unwrap();
    let wasm = ParamsType::Other("wasm".into());
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            client
                .submit(Job::new("x", "t", wasm.clone(), format!("w{i}")))
                .unwrap(),
        );
    }
    let ok = client.submit(tjob("x", "t", "ok plain")).unwrap();
    assert_eq!(
        client.wait(&ok, Duration::from_secs(30)).unwrap().result,
        "plain"
    );
    wait_until(
        "the plain engine to hand a job back",
        Duration::from_secs(30),
        || plain.stats().handed_back > 0,
    );
    let mut registry = test_registry();
    registry.register(wasm.clone(), |job, _ctx| Ok(format!("ran {}", job.params)));
    let mut capable = test_engine(&redis.url(), &b2, 2)
        .registry(registry)
        .build()
        .unwrap();
    capable.start().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (j.status, j.result.as_str()),
            (JobStatus::Done, format!("ran w{i}").as_str()),
            "{j:?}"
        );
        assert_eq!(j.attempts.saturating_sub(j.released), 1, "{j:?}");
    }
    assert_eq!(plain.stats().error, 0);
}

/// A graceful shutdown does not spend an attempt: a long job released by three rolling
/// restarts still runs to the end on the fourth engine.
#[test]
fn rolling_restarts_do_not_use_up_a_long_jobs_attempts() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let id = client.submit(tjob("roll", "t", "sleep 1500")).unwrap();
    for round in 0..3 {
        let mut e = test_engine(&redis.url(), &base, 1)
            .grace(Duration::ZERO)
            .build()
            .unwrap();
        e.start().unwrap();
        wait_until("the job to start", Duration::from_secs(30), || {
            e.stats().started > 0
        });
        e.stop();
        let j = client.get(&id).unwrap();
        assert_eq!(j.status, JobStatus::New, "round {round}: {j:?}");
        assert_eq!(j.released, round + 1);
    }
    let mut e = test_engine(&redis.url(), &base, 1).build().unwrap();
    e.start().unwrap();
    let j = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(
        (j.status, j.result.as_str()),
        (JobStatus::Done, "slept"),
        "{j:?}"
    );
}

/// A watchdog serving only some queues never takes from the others.
#[test]
fn a_watchdog_takes_only_the_queues_it_serves() {
    use herojobs::{QueuePattern, QueueSelection};
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mine = client.submit(tjob("mine", "a", "ok a")).unwrap();
    let mine_b = client.submit(tjob("mine", "b", "ok b")).unwrap();
    let theirs = client.submit(tjob("theirs", "a", "ok no")).unwrap();
    let mut e = test_engine(&redis.url(), &base, 2)
        .queues(QueueSelection::strict([
            QueuePattern::circle("mine").unwrap()
        ]))
        .build()
        .unwrap();
    e.start().unwrap();
    client.wait(&mine, Duration::from_secs(30)).unwrap();
    client.wait(&mine_b, Duration::from_secs(30)).unwrap();
    // Several dispatcher rounds later the other circle's job is still waiting.
    let rounds = e.stats().recovery_passes + 3;
    wait_until("three recovery passes", Duration::from_secs(30), || {
        e.stats().recovery_passes >= rounds
    });
    assert_eq!(client.get(&theirs).unwrap().status, JobStatus::New);
    assert_eq!(client.queue_len(&queue("theirs", "a")).unwrap(), 1);
    assert!(QueueSelection::parse("a/b:3,c/*", false).is_ok());
    assert!(QueueSelection::parse("a/b:0", false).is_err());
    assert!(QueueSelection::parse("nope", false).is_err());
}

/// The fleet under fire: three submitters with their own bases (three "hosts", each with a
/// reconcile-only engine for its base) and two watchdog processes with yet other bases, on
/// one redis-server; 30,000 jobs whose results are a function of their params; a FLUSHALL
/// mid-run and a `kill -9` of one watchdog. Every job finishes with its own result, no id
/// is shared by two jobs, every submitter's OurDB has each of its jobs done with its
/// result, and as many jobs are done as were acknowledged.
#[test]
fn three_hosts_two_watchdogs_a_flushall_and_a_kill() {
    const PER_HOST: usize = 10_000;
    const BATCH: usize = 100;
    let redis = RedisServer::start();
    let (_w1d, w1) = base_dir();
    let (_w2d, w2) = base_dir();
    let mut killed = spawn_watchdog(&redis, &w1);
    let mut other = spawn_watchdog(&redis, &w2);
    let hosts: Vec<(tempfile::TempDir, std::path::PathBuf)> = (0..3).map(|_| base_dir()).collect();
    let mut reconcilers = Vec::new();
    for (_, b) in &hosts {
        let mut r = test_engine(&redis.url(), b, 1)
            .reconcile_only(true)
            .build()
            .unwrap();
        r.start().unwrap();
        reconcilers.push(r);
    }
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for (h, (_, base)) in hosts.iter().enumerate() {
        let url = redis.url();
        let base = base.clone();
        let acked = Arc::clone(&acked);
        submitters.push(std::thread::spawn(move || {
            let c = Client::connect(&url, &base).unwrap();
            let mut mine: Vec<(JobRef, String)> = Vec::new();
            for b in 0..PER_HOST / BATCH {
                let jobs: Vec<Job> = (0..BATCH)
                    .map(|i| tjob("fleet", "t", &format!("ok h{h}-{}", b * BATCH + i)))
                    .collect();
                // A submit during a Redis wipe may fail (not acknowledged): try again.
                let ids = loop {
                    match c.submit_many(jobs.clone()) {
                        Ok(ids) => break ids,
                        Err(e) => {
                            eprintln!("submit retried: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                };
                acked.fetch_add(ids.len(), Ordering::SeqCst);
                for (i, id) in ids.into_iter().enumerate() {
                    mine.push((id, format!("h{h}-{}", b * BATCH + i)));
                }
            }
            mine
        }));
    }
    wait_until("a third acknowledged", Duration::from_secs(120), || {
        acked.load(Ordering::SeqCst) >= 10_000
    });
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    wait_until("two thirds acknowledged", Duration::from_secs(120), || {
        acked.load(Ordering::SeqCst) >= 20_000
    });
    let _ = killed.kill(); // SIGKILL
    let _ = killed.wait();
    let per_host: Vec<Vec<(JobRef, String)>> =
        submitters.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = per_host.iter().map(Vec::len).sum();
    assert_eq!(total, 3 * PER_HOST);
    assert_eq!(acked.load(Ordering::SeqCst), total);
    // No id shared by two jobs.
    let mut seen: HashMap<u32, &str> = HashMap::new();
    for mine in &per_host {
        for (id, expect) in mine {
            if let Some(prev) = seen.insert(id.id(), expect) {
                panic!("id {id} handed out twice: {prev} and {expect}");
            }
        }
    }
    // Every job done with its own result, seen from its submitter's host; then the
    // submitter's own OurDB has it too.
    for (h, mine) in per_host.iter().enumerate() {
        let c = Client::connect(&redis.url(), &hosts[h].1).unwrap();
        let mut left: Vec<&(JobRef, String)> = mine.iter().collect();
        wait_until(
            &format!("host {h}: all {} jobs done", mine.len()),
            Duration::from_secs(240),
            || {
                left.retain(|(id, expect)| match c.get(id) {
                    Ok(j) if j.status == JobStatus::Done => {
                        assert_eq!(&j.result, expect, "job {id} has another job's result");
                        false
                    }
                    Ok(j) if j.status == JobStatus::Error => panic!("job {id} failed: {j:?}"),
                    _ => true,
                });
                left.is_empty()
            },
        );
        let mut left: Vec<&(JobRef, String)> = mine.iter().collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        while !left.is_empty() {
            if std::time::Instant::now() > deadline {
                let mut con = redis.conn();
                for (id, _) in left.iter().take(5) {
                    let raw: Option<String> = redis::cmd("HGET")
                        .arg(format!("herojobs:fleet:t:{}", id.id()))
                        .arg("job")
                        .query(&mut con)
                        .unwrap();
                    eprintln!("missing {id}: OurDB {:?}\n  Redis {raw:?}", c.stored(id));
                }
                panic!("host {h}: {} outcomes missing from its OurDB", left.len());
            }
            std::thread::sleep(Duration::from_millis(20));
            {
                left.retain(|(id, expect)| match c.stored(id) {
                    Ok(Some(j)) if j.status == JobStatus::Done => {
                        assert_eq!(&j.result, expect, "job {id}: another job's result in OurDB");
                        false
                    }
                    _ => true,
                });
            }
        }
    }
    let _ = other.kill();
    let _ = other.wait();
    for mut r in reconcilers {
        r.stop();
    }
    // Registry with no processor at all keeps the compiler honest about the import.
    let _ = Registry::new();
}
