//! The library's front door, used as a new user would from the README: only names
//! re-exported at the crate root, handlers whose `?` works on param errors, on
//! cancellation and on I/O, closures without type annotations, jobs addressed as
//! `circle/topic/id`, failures as errors, settings that compose.

mod common;

use herojobs::{
    Actors, Client, EngineConfig, Error, Job, JobError, JobRef, JobStatus, ParamsType, QueueName,
    Registry, WatchDog,
};
use std::time::Duration;

fn registry() -> Registry {
    let mut actors = Actors::with_builtins();
    // `?` on a ParamError (a missing or mistyped param) and on Cancelled.
    actors.register("greeter", "hello", |action, ctx| {
        let name = action.params.string("name")?;
        let times = action.params.int("times")?.unwrap_or(1);
        ctx.sleep(Duration::from_millis(1))?;
        Ok(vec![format!("hello, {name}!"); times.max(0) as usize].join(" "))
    });
    actors.register("greeter", "wait", |_action, ctx| {
        ctx.sleep(Duration::from_secs(120))?; // ends early, with Cancelled, on a cancel
        Ok("never".into())
    });
    let mut registry = Registry::with_actors(actors);
    // `?` on an I/O error; a permanent failure.
    registry.register(ParamsType::Other("read".into()), |job, _ctx| {
        let text = std::fs::read_to_string(job.params.trim())?;
        if text.is_empty() {
            return Err(JobError::permanent("the file is empty"));
        }
        Ok(text.trim().to_string())
    });
    registry
}

fn hs(topic: &str, script: &str) -> Job {
    Job::new("front", topic, ParamsType::HeroScript, script)
}

#[test]
fn handlers_use_question_mark_and_failures_become_errors() {
    let redis = common::RedisServer::start();
    let (_d, base) = common::base_dir();
    let mut engine = WatchDog::builder()
        .redis_url(&redis.url())
        .base(&base)
        .registry(registry())
        .build()
        .unwrap();
    engine.start().unwrap();
    let client = Client::connect(&redis.url(), &base).unwrap();

    let file = base.join("greeting.txt");
    std::fs::write(&file, "from a file\n").unwrap();
    let jobs = client
        .submit_many(vec![
            hs("t", "!!greeter.hello name:Ada times:2"),
            hs("t", "!!greeter.hello times:2"),
            hs("t", "!!greeter.hello name:Ada times:lots"),
            Job::new(
                "front",
                "t",
                ParamsType::Other("read".into()),
                file.display().to_string(),
            ),
            Job::new(
                "front",
                "t",
                ParamsType::Other("read".into()),
                "/no/such/file",
            ),
        ])
        .unwrap();
    let done = client.wait_many(&jobs, Duration::from_secs(60)).unwrap();
    assert_eq!(done[0].outcome().unwrap(), "hello, Ada! hello, Ada!");
    // The param errors name the action, the param and what was wrong, with the line.
    let missing = done[1].outcome().unwrap_err();
    assert!(missing.error().contains("greeter.hello"), "{missing}");
    assert!(missing.error().contains("name"), "{missing}");
    assert!(done[2].outcome().unwrap_err().error().contains("times"));
    assert_eq!(done[3].outcome().unwrap(), "from a file");
    let io = done[4].outcome().unwrap_err();
    assert!(io.error().contains("No such file"), "{io}");
    // Through `?` into the crate's error, and its text names the job.
    let err = (|| -> herojobs::Result<String> {
        Ok(client
            .wait(&jobs[4], Duration::from_secs(5))?
            .outcome()?
            .to_string())
    })()
    .unwrap_err();
    assert!(matches!(err, Error::Failed(_)));
    assert!(err.to_string().contains(&jobs[4].to_string()), "{err}");

    // Cancelled: the handler's `ctx.sleep(..)?` returns early and the job ends cancelled.
    let waiting = client.submit(hs("t", "!!greeter.wait")).unwrap();
    common::wait_until("the job to run", Duration::from_secs(30), || {
        client.get(&waiting).unwrap().status == JobStatus::Active
    });
    assert!(client.cancel(&waiting).unwrap());
    let failed = client
        .wait(&waiting, Duration::from_secs(30))
        .unwrap()
        .outcome()
        .unwrap_err();
    assert!(failed.is_cancelled(), "{failed}");
    common::wait_until("the worker to be free", Duration::from_secs(30), || {
        engine.stats().running == 0
    });
    engine.stop();
}

/// A job's address prints as `circle/topic/id`, which every error uses and which reads
/// back; names are fixed on the way in.
#[test]
fn job_addresses_round_trip_and_errors_name_them() {
    let (_d, base) = common::base_dir();
    let mut engine = WatchDog::builder()
        .embedded()
        .base(&base)
        .registry(registry())
        .build()
        .unwrap();
    engine.start().unwrap();
    let client = engine.client();
    let r = client
        .submit(hs("My Topic", "!!greeter.hello name:x"))
        .unwrap();
    assert_eq!(r.to_string(), "front/my_topic/1");
    let back: JobRef = r.to_string().parse().unwrap();
    assert_eq!(back, r);
    assert_eq!(back.queue(), &QueueName::new("front", "My Topic").unwrap());
    let not_there: JobRef = "front/my_topic/999".parse().unwrap();
    let err = client.get(&not_there).unwrap_err();
    assert_eq!(err.to_string(), "job front/my_topic/999 not found");
    for bad in [
        "front/my_topic",
        "front/my_topic/0",
        "../x/1",
        "front/t/abc",
    ] {
        let e = bad.parse::<JobRef>().unwrap_err();
        assert!(!e.to_string().is_empty(), "{bad}");
    }
    let e = client.wait(&r, Duration::from_secs(30)).unwrap();
    assert_eq!(e.outcome().unwrap(), "hello, x!");
    engine.stop();
}

/// Builder settings compose: a setter wins over `config()` in either order; a Redis that
/// does not answer is an error from `start()` (and from `health()`), not a log line.
#[test]
fn builder_settings_compose_and_start_reports_an_unreachable_redis() {
    let (_d, base) = common::base_dir();
    let mut config = EngineConfig::default();
    config.workers = 16;
    config.grace = Duration::from_secs(3);
    for engine in [
        WatchDog::builder().workers(4).config(config.clone()),
        WatchDog::builder().config(config.clone()).workers(4),
    ] {
        let engine = engine.embedded().base(&base).build().unwrap();
        assert_eq!(engine.config().workers, 4);
        assert_eq!(engine.config().grace, Duration::from_secs(3));
    }
    assert!(matches!(
        WatchDog::builder().workers(0).embedded().build(),
        Err(Error::Config { .. })
    ));
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut engine = WatchDog::builder()
        .redis_url(&url)
        .base(&base)
        .build()
        .unwrap();
    assert!(!engine.health().is_ok());
    let err = engine.start().unwrap_err();
    assert!(matches!(err, Error::Broker(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!engine.health().running);
    assert!(Client::connect(&url, &base).unwrap().ping().is_err());
}
