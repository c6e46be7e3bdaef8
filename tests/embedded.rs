//! Embedded mode: no Redis at all; OurDB is the record of truth, so jobs that were new or
//! active when the process went away are run after a restart.

use herojobs::engine::EngineConfig;
use herojobs::processor::Registry;
use herojobs::{embedded, Job, JobStatus, ParamsType};
use std::time::Duration;

fn config() -> EngineConfig {
    EngineConfig {
        workers: 2,
        recovery_interval: Duration::from_millis(300),
        ..EngineConfig::default()
    }
}

#[test]
fn jobs_survive_a_restart_of_an_embedded_program() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = {
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
        // And one was active when it died.
        let mut j = client.get("c", "t", 1).unwrap();
        client
            .set_active(&mut j, 1, Duration::from_secs(1))
            .unwrap();
        ids
    };
    let (client, mut engine) = embedded(dir.path(), Registry::with_builtins(), config()).unwrap();
    engine.start().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let j = client.wait("c", "t", *id, Duration::from_secs(30)).unwrap();
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
    let small: Vec<u32> = (0..5)
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
    assert_eq!(client.queue_ids("c", "big").unwrap()[..3], big[..3], "FIFO");
    engine.start().unwrap();
    for id in &small {
        client
            .wait("c", "small", *id, Duration::from_secs(30))
            .unwrap();
    }
    assert!(
        client.queue_len("c", "big").unwrap() > 1000,
        "the small queue was not starved"
    );
    let t = client
        .submit(
            Job::new("c", "x", ParamsType::HeroScript, "!!fake.sleep seconds:20").with_timeout(1),
        )
        .unwrap();
    assert_eq!(
        client
            .wait("c", "x", t, Duration::from_secs(10))
            .unwrap()
            .error,
        "timeout after 1 s"
    );
}

/// The finisher records a batch of finished jobs in OurDB as one write per database (in
/// `strict` mode one fsync round for the lot): jobs of two topics finished together must all
/// end up in their own database as done, with their results.
#[test]
fn strict_durability_records_every_finished_job_in_its_own_database() {
    use herojobs::broker::memory::MemoryBroker;
    use herojobs::ourdb::Durability;
    use herojobs::store::JobStore;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let broker: Arc<dyn herojobs::broker::Broker> = Arc::new(MemoryBroker::new());
    let store = Arc::new(JobStore::new(dir.path(), Durability::Strict));
    let mut engine = herojobs::WatchDog::builder()
        .broker(broker.clone())
        .store(store.clone())
        .config(EngineConfig {
            workers: 4,
            ..config()
        })
        .registry(Registry::with_builtins())
        .build()
        .unwrap();
    let client = herojobs::Client::with_parts(broker, store);
    let mut submitted = Vec::new();
    for topic in ["a", "b"] {
        let jobs = (0..150)
            .map(|i| Job::new("c", topic, ParamsType::RhaiScript, format!("{i} * 2")))
            .collect();
        let ids = client.submit_many(jobs).unwrap();
        submitted.extend(ids.into_iter().enumerate().map(|(i, id)| (topic, id, i)));
    }
    engine.start().unwrap();
    for &(topic, id, _) in &submitted {
        client
            .wait("c", topic, id, Duration::from_secs(60))
            .unwrap();
    }
    engine.stop();
    drop(client);
    // Read OurDB afresh, not through the engine's handles.
    let store = JobStore::new(dir.path(), Durability::Periodic);
    for &(topic, id, i) in &submitted {
        let job = store.get("c", topic, id).unwrap().expect("job in OurDB");
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
    use herojobs::ourdb::Durability;
    use herojobs::processor::JobContext;
    use herojobs::store::JobStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::new();
    let r = Arc::clone(&release);
    registry.register(ParamsType::HeroScript, move |_: &Job, ctx: &JobContext| {
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
    let store = JobStore::new(dir.path(), Durability::Periodic);
    let deadline = Instant::now() + Duration::from_secs(60);
    let active = loop {
        let job = store.get("c", "t", id).unwrap().expect("job in OurDB");
        if job.status == JobStatus::Active {
            break job;
        }
        assert!(Instant::now() < deadline, "never active in OurDB: {job:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(active.attempts, 1);
    assert!(active.time_start > 0);
    release.store(true, Ordering::Release);
    let done = client.wait("c", "t", id, Duration::from_secs(60)).unwrap();
    assert_eq!(done.result, "released");
    engine.stop();
    let stored = store.get("c", "t", id).unwrap().expect("job in OurDB");
    assert_eq!(
        (stored.status, stored.result.as_str()),
        (JobStatus::Done, "released")
    );
}
