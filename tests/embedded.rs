//! Embedded mode: no Redis at all; OurDB is the record of truth, so jobs that were new or
//! active when the process went away are run after a restart.

use herojobs::{embedded, EngineConfig, Job, JobRef, JobStatus, ParamsType, QueueName, Registry};
use std::time::Duration;

fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.workers = 2;
    c.recovery_interval = Duration::from_millis(300);
    c
}

fn queue(circle: &str, topic: &str) -> QueueName {
    QueueName::new(circle, topic).unwrap()
}

#[test]
fn jobs_survive_a_restart_of_an_embedded_program() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<JobRef> = {
        // First run: jobs are submitted, the engine never starts (the program "crashed").
        let (client, _engine) = embedded(dir.path(), Registry::with_builtins(), config()).unwrap();
        let ids = (0..20)
            .map(|i| {
                client
                    .submit(Job::new(
                        "c",
                        "t",
                        ParamsType::RhaiScript,
                        format!("{i} * 2"),
                    ))
                    .unwrap()
            })
            .collect();
        ids
    };
    // And one was active when it died: OurDB, the record of truth, says so (written as the
    // engine's dispatcher writes it).
    let first = &ids[0];
    let client = herojobs::WatchDog::builder()
        .embedded()
        .base(dir.path())
        .build()
        .unwrap()
        .client();
    let mut j = client.stored(first).unwrap().unwrap();
    drop(client);
    j.status = JobStatus::Active;
    j.attempts = 1;
    j.time_start = j.time_scheduled;
    let db = herojobs::ourdb::OurDb::open(
        herojobs::job_db_dir(dir.path(), first.queue()),
        herojobs::ourdb::Config::default(),
    )
    .unwrap();
    db.set(first.id(), &j.to_record()).unwrap();
    db.close().unwrap();
    let (client, mut engine) = embedded(dir.path(), Registry::with_builtins(), config()).unwrap();
    engine.start().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let j = client.wait(id, Duration::from_secs(30)).unwrap();
        assert_eq!(
            (j.status, j.result.clone()),
            (JobStatus::Done, (i * 2).to_string())
        );
    }
}

#[test]
fn fifo_fairness_and_timeouts_hold_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut engine) = embedded(dir.path(), Registry::with_builtins(), config()).unwrap();
    let big = client
        .submit_many(
            (0..2000)
                .map(|_| Job::new("c", "big", ParamsType::HeroScript, "!!fake.sleep ms:1"))
                .collect(),
        )
        .unwrap();
    let small: Vec<JobRef> = (0..5)
        .map(|_| {
            client
                .submit(Job::new(
                    "c",
                    "small",
                    ParamsType::HeroScript,
                    "!!fake.return_success",
                ))
                .unwrap()
        })
        .collect();
    let first_big: Vec<u32> = big[..3].iter().map(|r| r.id()).collect();
    assert_eq!(
        client.queue_ids(&queue("c", "big")).unwrap()[..3],
        first_big[..],
        "FIFO"
    );
    engine.start().unwrap();
    for id in &small {
        client.wait(id, Duration::from_secs(30)).unwrap();
    }
    assert!(
        client.queue_len(&queue("c", "big")).unwrap() > 1000,
        "the small queue was not starved"
    );
    let t = client
        .submit(
            Job::new("c", "x", ParamsType::HeroScript, "!!fake.sleep seconds:20").with_timeout(1),
        )
        .unwrap();
    assert_eq!(
        client.wait(&t, Duration::from_secs(10)).unwrap().error,
        "timeout after 1 s"
    );
}

/// The finisher records a batch of finished jobs in OurDB as one write per database (in
/// `strict` mode one fsync round for the lot): jobs of two topics finished together must all
/// end up in their own database as done, with their results.
#[test]
fn strict_durability_records_every_finished_job_in_its_own_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = herojobs::WatchDog::builder()
        .embedded()
        .base(dir.path())
        .durability(herojobs::Durability::Strict)
        .config(config())
        .workers(4)
        .registry(Registry::with_builtins())
        .build()
        .unwrap();
    let client = engine.client();
    let mut submitted = Vec::new();
    for topic in ["a", "b"] {
        let jobs = (0..150)
            .map(|i| Job::new("c", topic, ParamsType::RhaiScript, format!("{i} * 2")))
            .collect();
        let ids = client.submit_many(jobs).unwrap();
        submitted.extend(ids.into_iter().enumerate().map(|(i, id)| (topic, id, i)));
    }
    engine.start().unwrap();
    for (_, id, _) in &submitted {
        client.wait(id, Duration::from_secs(60)).unwrap();
    }
    engine.stop();
    drop(client);
    drop(engine);
    // Read OurDB afresh, not through the engine's handles.
    for (topic, id, i) in &submitted {
        let db = herojobs::ourdb::OurDb::open(
            herojobs::job_db_dir(dir.path(), id.queue()),
            herojobs::ourdb::Config::default(),
        )
        .unwrap();
        let job = Job::from_record(id.id(), &db.get(id.id()).unwrap()).expect("job in OurDB");
        assert_eq!(
            (job.status, job.result.clone()),
            (JobStatus::Done, (i * 2).to_string()),
            "{topic}/{id}"
        );
    }
}

/// While a job runs, OurDB (the record of truth) holds it active, with its attempt and start
/// time, so that a crash now is recovered from there; when it finishes, done.
#[test]
fn a_running_job_is_active_in_ourdb_then_done() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::new();
    let r = Arc::clone(&release);
    registry.register(ParamsType::HeroScript, move |_, ctx| {
        // Runs until the test has seen it active (or the job is cancelled).
        while !r.load(Ordering::Acquire) && !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok("released".to_string())
    });
    let (client, mut engine) = embedded(dir.path(), registry, config()).unwrap();
    let id = client
        .submit(Job::new("c", "t", ParamsType::HeroScript, "!!wait.here"))
        .unwrap();
    engine.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let active = loop {
        let job = client.stored(&id).unwrap().expect("job in OurDB");
        if job.status == JobStatus::Active {
            break job;
        }
        assert!(Instant::now() < deadline, "never active in OurDB: {job:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(active.attempts, 1);
    assert!(active.time_start > 0);
    release.store(true, Ordering::Release);
    let done = client.wait(&id, Duration::from_secs(60)).unwrap();
    assert_eq!(done.result, "released");
    engine.stop();
    let stored = client.stored(&id).unwrap().expect("job in OurDB");
    assert_eq!(
        (stored.status, stored.result.as_str()),
        (JobStatus::Done, "released")
    );
}

/// The compaction policy: with low thresholds the engine compacts the job database while it
/// runs jobs (online), counts it, and every finished job reads back whole afterwards.
#[test]
fn the_engine_compacts_its_job_database_past_the_dead_bytes_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.recovery_interval = Duration::from_millis(50);
    let mut policy = herojobs::Compaction::default();
    policy.min_dead_bytes = 1;
    policy.dead_ratio = 0.3;
    policy.check_every = Duration::from_millis(10);
    c.compaction = policy;
    let (client, mut engine) = embedded(dir.path(), Registry::with_builtins(), c).unwrap();
    engine.start().unwrap();
    let jobs: Vec<Job> = (0..300)
        .map(|i| Job::new("c", "compacted", ParamsType::RhaiScript, format!("{i} + 1")))
        .collect();
    let ids = client.submit_many(jobs).unwrap();
    for id in &ids {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!(j.status, JobStatus::Done);
    }
    // Every job wrote three versions: two thirds of the data are dead, past the 0.3 ratio.
    // The policy looks every recovery pass; wait (bounded) for a compaction to be counted.
    // (Two counters, read one after the other: wait for both.)
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = engine.stats();
        if stats.compactions > 0 && stats.compaction_reclaimed > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction that reclaimed bytes was counted: {} compactions, {} bytes",
            stats.compactions,
            stats.compaction_reclaimed
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(engine.stats().compaction_errors, 0);
    // The broker's verdict comes first and OurDB's record of it right after (the finisher
    // writes it once the broker said who won), so a job `wait` saw done may still be
    // `active` in OurDB for a moment: wait (bounded) for each record, then compare it whole.
    for (i, id) in ids.iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let j = loop {
            let j = client.stored(id).unwrap().unwrap();
            if j.status.is_finished() || std::time::Instant::now() > deadline {
                break j;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            (j.status, j.result.clone()),
            (JobStatus::Done, (i + 1).to_string())
        );
    }
    engine.stop();
    let db = herojobs::ourdb::OurDb::open(
        herojobs::job_db_dir(dir.path(), &queue("c", "compacted")),
        herojobs::ourdb::Config::default(),
    )
    .unwrap();
    assert!(db.check().unwrap().is_empty());
    assert!(db.space().unwrap().dead_ratio() < 0.9);
}
