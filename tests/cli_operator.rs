//! The command line as an operator uses it: `list` filtered, limited and piped into
//! `head`, `get` with params, logs and history (and from OurDB when Redis is down), bulk
//! `submit --jsonl` and custom params types, `ourdb dump --circle`, `stats` per queue, and
//! the dashboard from `run --http` and `web`.

mod common;

use common::{base_dir, jref, queue, test_engine, tjob, wait_until, RedisServer};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn herojobs(args: &[&str], redis: &str, base: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(args)
        .env("HEROJOBS_REDIS_URL", redis)
        .env("HEROJOBS_BASE", base)
        .env_remove("HEROJOBS_WEB_TOKEN")
        .output()
        .expect("run herojobs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn list_piped_into_head_exits_zero() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = herojobs::Client::connect(&redis.url(), &base).expect("client");
    // Far more output than a pipe buffer holds, so the writes after `head` exits fail.
    let jobs: Vec<_> = (0..5000)
        .map(|i| tjob("p", "q", &format!("ok {i}")))
        .collect();
    client.submit_many(jobs).expect("submit");
    let out = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; \"$0\" list --circle p --topic q | head -1")
        .arg(env!("CARGO_BIN_EXE_herojobs"))
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .output()
        .expect("bash");
    assert_eq!(
        out.status.code(),
        Some(0),
        "herojobs list | head -1: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(text(&out.stdout).contains("5000"), "newest first");
    assert_eq!(text(&out.stderr), "", "quiet");
    // The JSON lines end quietly too.
    let out = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; \"$0\" list --circle p --topic q --json | head -2")
        .arg(env!("CARGO_BIN_EXE_herojobs"))
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .output()
        .expect("bash");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn list_get_stats_and_dump_for_people_and_scripts() {
    let mut redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut config = herojobs::EngineConfig::default();
    config.name = "cli-operator-engine".into();
    config.workers = 2;
    config.poll = Duration::from_millis(200);
    let mut engine = test_engine(&redis.url(), &base, 2)
        .config(config)
        .build()
        .expect("engine");
    engine.start().expect("start");
    let client = herojobs::Client::connect(&redis.url(), &base).expect("client");
    let mut ids = Vec::new();
    for p in ["ok a", "ok b", "fail nope 1", "ok c", "fail nope 2", "ok d"] {
        ids.push(client.submit(tjob("ops", "main", p)).expect("submit"));
    }
    for id in &ids {
        client.wait(id, Duration::from_secs(30)).expect("finish");
    }
    let r = redis.url();

    let out = herojobs(
        &[
            "list", "--circle", "ops", "--topic", "main", "--status", "error", "--json",
        ],
        &r,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["jobid"], 5, "newest first");
    assert_eq!(rows[0]["error"], "nope 2");
    assert!(
        rows[0]["time_end"]
            .as_i64()
            .is_some_and(|t| t > 1_000_000_000),
        "raw unix seconds in --json"
    );

    let out = herojobs(
        &["list", "--circle", "ops", "--topic", "main", "--limit", "3"],
        &r,
        &base,
    );
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains(" ago"), "human times: {lines:?}");
    assert!(lines[0].trim_start().starts_with('6'));
    let out = herojobs(
        &[
            "list", "--circle", "ops", "--topic", "main", "--status", "later",
        ],
        &r,
        &base,
    );
    assert_eq!(out.status.code(), Some(2));

    let out = herojobs(
        &["get", "--circle", "ops", "--topic", "main", "1"],
        &r,
        &base,
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for needle in [
        "params     ok a",
        "result     a",
        "UTC (",
        " ago)",
        "history",
        "done",
        "active",
        "new",
    ] {
        assert!(shown.contains(needle), "get shows {needle:?}:\n{shown}");
    }

    wait_until("per-queue counts in stats", Duration::from_secs(20), || {
        let out = herojobs(&["stats", "--json"], &r, &base);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["queues"].as_array().is_some_and(|q| {
            q.iter()
                .any(|q| q["circle"] == "ops" && q["done"] == 4 && q["failed"] == 2)
        })
    });
    let out = herojobs(&["stats"], &r, &base);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("done/s") && shown.contains("ops/main"),
        "{shown}"
    );
    assert!(shown.contains("cli-operator-engine: 2 workers"), "{shown}");

    let out = herojobs(
        &["ourdb", "dump", "--circle", "ops", "--topic", "main"],
        &r,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jobs: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("job JSON"))
        .collect();
    assert_eq!(jobs.len(), 6);
    assert_eq!(jobs[0]["params"], "ok a");
    assert_eq!(jobs[2]["status"], "error");
    let out = herojobs(&["ourdb", "dump", "--circle", "nosuch"], &r, &base);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no job database"));

    // Redis gone: `get` answers from OurDB, and says so.
    engine.stop();
    redis.kill();
    let out = herojobs(
        &["get", "--circle", "ops", "--topic", "main", "3"],
        &r,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("read from OurDB"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("error      nope 1"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bulk_submit_from_json_lines_with_custom_types() {
    let redis = RedisServer::start();
    let (d, base) = base_dir();
    let file = d.path().join("jobs.jsonl");
    let mut lines: Vec<String> = (0..250)
        .map(|i| serde_json::json!({"params": format!("ok {i}")}).to_string())
        .collect();
    lines.push(
        serde_json::json!({"params": "img.png", "params_type": "thumbnail", "topic": "images"})
            .to_string(),
    );
    std::fs::write(&file, lines.join("\n") + "\n").expect("write jsonl");
    let f = file.to_str().expect("utf-8 path");
    let r = redis.url();
    let out = herojobs(&["submit", "--circle", "bulk", "--jsonl", f], &r, &base);
    assert_eq!(out.status.code(), Some(2), "a custom type needs --custom");
    assert!(
        text(&out.stderr).contains("line 251"),
        "{}",
        text(&out.stderr)
    );
    let client = herojobs::Client::connect(&r, &base).expect("client");
    assert_eq!(
        client.queue_len(&queue("bulk", "default")).expect("len"),
        0,
        "nothing submitted"
    );

    let out = herojobs(
        &["submit", "--circle", "bulk", "--custom", "--jsonl", f],
        &r,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("submitted 251 jobs"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        client.queue_len(&queue("bulk", "default")).expect("len"),
        250
    );
    let img = client
        .get(&jref("bulk", "images", 1))
        .expect("the custom job");
    assert_eq!(img.params_type.as_str(), "thumbnail");

    std::fs::write(&file, "{\"params\": \"ok\"}\nnot json\n").expect("write");
    let out = herojobs(&["submit", "--circle", "bad", "--jsonl", f], &r, &base);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 2"));
    assert_eq!(client.queue_len(&queue("bad", "default")).expect("len"), 0);

    let out = herojobs(
        &["submit", "--type", "thumbnail", "--custom", "x.png"],
        &r,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn run_http_and_web_serve_the_dashboard() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let port = free_port();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args([
            "run",
            "--workers",
            "1",
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .env("HEROJOBS_WEB_TOKEN", "tok")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run --http");
    let fleet = |port: u16| -> Option<serde_json::Value> {
        ureq::get(&format!("http://127.0.0.1:{port}/api/fleet"))
            .call()
            .ok()
            .and_then(|r| r.into_json().ok())
    };
    wait_until(
        "run --http to show its own engine",
        Duration::from_secs(30),
        || {
            fleet(port).is_some_and(|f| {
                f["read_only"] == false && f["engines"].as_array().is_some_and(|e| e.len() == 1)
            })
        },
    );
    let web_port = free_port();
    let mut web = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(["web", "--addr", &format!("127.0.0.1:{web_port}")])
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .env_remove("HEROJOBS_WEB_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("web");
    wait_until(
        "herojobs web to show the other process's engine",
        Duration::from_secs(30),
        || {
            fleet(web_port).is_some_and(|f| {
                f["read_only"] == true && f["engines"].as_array().is_some_and(|e| e.len() == 1)
            })
        },
    );
    for child in [&mut web, &mut daemon] {
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
        assert!(
            child.wait().expect("wait").success(),
            "exits cleanly on SIGTERM"
        );
    }
}

#[test]
fn stats_watch_shows_rates_per_queue_and_embedded_run_serves_the_dashboard() {
    use std::io::BufRead;
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut config = herojobs::EngineConfig::default();
    config.name = "watch-engine".into();
    config.workers = 2;
    config.poll = Duration::from_millis(200);
    let mut engine = test_engine(&redis.url(), &base, 2)
        .config(config)
        .build()
        .expect("engine");
    engine.start().expect("start");
    let client = herojobs::Client::connect(&redis.url(), &base).expect("client");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(["stats", "--watch", "--json"])
        .env("HEROJOBS_REDIS_URL", redis.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stats --watch");
    let mut lines = std::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // Jobs keep finishing while the watch samples, so some period shows a rate above zero.
    let mut seen_rate = false;
    for round in 0..30 {
        for i in 0..20 {
            client
                .submit(tjob("rates", "q", &format!("ok {round}-{i}")))
                .expect("submit");
        }
        let Some(Ok(line)) = lines.next() else { break };
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line per refresh");
        if v["queues"].as_array().is_some_and(|q| {
            q.iter().any(|q| {
                q["circle"] == "rates" && q["done_per_s"].as_f64().is_some_and(|r| r > 0.0)
            })
        }) {
            seen_rate = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen_rate, "stats --watch reports done/s per queue");
    engine.stop();

    // The embedded broker: the dashboard of `run --embedded --http` sees its own engine.
    let port = free_port();
    let (_d2, base2) = base_dir();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args([
            "run",
            "--embedded",
            "--workers",
            "1",
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .env("HEROJOBS_BASE", &base2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run --embedded --http");
    wait_until(
        "the embedded engine on its dashboard",
        Duration::from_secs(30),
        || {
            ureq::get(&format!("http://127.0.0.1:{port}/api/fleet"))
                .call()
                .ok()
                .and_then(|r| r.into_json::<serde_json::Value>().ok())
                .is_some_and(|f| f["engines"].as_array().is_some_and(|e| e.len() == 1))
        },
    );
    let ok = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    assert!(daemon.wait().expect("wait").success());
}
