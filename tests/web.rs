//! The dashboard over HTTP against a real redis-server and a running engine: every page and
//! `/api` endpoint, paging, the action endpoint's token, Origin and content-type guards, and
//! `/metrics` checked by `promtool check metrics` and against the jobs run.

mod common;

use common::{queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::web::{serve, WebConfig, WebHandle};
use herojobs::Client;
use serde_json::Value;
use std::time::Duration;

/// Status and body of a request (4xx/5xx are answers here, not errors).
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut req = ureq::request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    match res {
        Ok(r) => (r.status(), r.into_string().expect("body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().expect("body")),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn get(url: &str) -> (u16, String) {
    http("GET", url, &[], None)
}

fn get_json(url: &str) -> Value {
    let (code, body) = get(url);
    assert_eq!(code, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

fn web(client: Client, token: Option<&str>) -> (WebHandle, String) {
    let w = serve(client, {
        let mut c = WebConfig::new("127.0.0.1:0").token(token.map(String::from));
        c.sample_every = Duration::from_millis(200);
        c
    })
    .expect("start the dashboard");
    let base = format!("http://{}", w.addr());
    (w, base)
}

fn engine(redis: &RedisServer, base: &std::path::Path, name: &str) -> herojobs::WatchDog {
    let mut b = test_engine(&redis.url(), base, 2);
    let mut config = herojobs::EngineConfig::default();
    config.name = name.into();
    config.workers = 2;
    b = b.config(config);
    let mut e = b.build().expect("engine");
    e.start().expect("start engine");
    e
}

fn action(base: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let (code, text) = http("POST", &format!("{base}/api/action"), headers, Some(body));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn pages_api_actions_and_metrics_against_a_running_engine() {
    let redis = RedisServer::start();
    let (_d, dir) = common::base_dir();
    let mut eng = engine(&redis, &dir, "web-test-engine");
    let client = Client::connect(&redis.url(), &dir).expect("client");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            client
                .submit(tjob("c", "t", &format!("ok r{i}")))
                .expect("submit"),
        );
    }
    for i in 0..2 {
        ids.push(
            client
                .submit(tjob("c", "t", &format!("fail broken {i}")))
                .expect("submit"),
        );
    }
    for id in &ids {
        client
            .wait(id, Duration::from_secs(30))
            .expect("job finishes");
    }
    let (_w, base) = web(client.clone(), Some("s3cret"));

    // The page shells and assets.
    for page in ["/", "/queue/c/t", "/job/c/t/1"] {
        let (code, body) = get(&format!("{base}{page}"));
        assert_eq!(code, 200, "{page}");
        assert!(
            body.contains("/static/app.js"),
            "{page} is the dashboard shell"
        );
    }
    let (code, js) = get(&format!("{base}/static/app.js"));
    assert_eq!(code, 200);
    assert!(js.contains("X-Herojobs-Token"));
    let (code, css) = get(&format!("{base}/static/style.css"));
    assert_eq!(code, 200);
    assert!(css.contains("svg.chart"));
    assert_eq!(get(&format!("{base}/nope")).0, 404);

    // Fleet: the engine with its workers, the queue with its outcomes, the rate samples.
    wait_until(
        "the fleet shows the engine's counters and rate samples",
        Duration::from_secs(20),
        || {
            let f = get_json(&format!("{base}/api/fleet"));
            let engine_ok = f["engines"].as_array().is_some_and(|e| {
                e.iter().any(|e| {
                    e["name"] == "web-test-engine"
                        && e["counters"]["workers"] == 2
                        && e["counters"]["done"] == 5
                })
            });
            let queue_ok = f["queues"].as_array().is_some_and(|q| {
                q.iter().any(|q| {
                    q["circle"] == "c"
                        && q["topic"] == "t"
                        && q["done"] == 5
                        && q["failed"] == 2
                        && q["highest_id"] == 7
                        && q["waiting"] == 0
                })
            });
            engine_ok && queue_ok && f["rates"].as_array().is_some_and(|r| r.len() >= 2)
        },
    );
    assert_eq!(get_json(&format!("{base}/api/fleet"))["read_only"], false);

    // Queue: by status from OurDB, paging by `before`, search by id, bad input.
    let q = get_json(&format!("{base}/api/queue/c/t?status=done"));
    let done: Vec<u64> = q["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(done, vec![5, 4, 3, 2, 1], "done jobs, newest first");
    assert_eq!(q["summary"]["done"], 5);
    let q = get_json(&format!("{base}/api/queue/c/t?status=error"));
    assert_eq!(q["jobs"].as_array().map(Vec::len), Some(2));
    assert!(q["jobs"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("broken")));
    let p1 = get_json(&format!("{base}/api/queue/c/t?limit=3"));
    assert_eq!(p1["jobs"].as_array().map(Vec::len), Some(3));
    let before = p1["next"]["before"].as_u64().expect("a next page");
    let p2 = get_json(&format!("{base}/api/queue/c/t?limit=3&before={before}"));
    let p2_ids: Vec<u64> = p2["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(p2_ids, vec![4, 3, 2]);
    let one = get_json(&format!("{base}/api/queue/c/t?id=3"));
    assert_eq!(one["jobs"][0]["id"], 3);
    assert_eq!(one["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(get(&format!("{base}/api/queue/c/t?status=bogus")).0, 400);
    assert_eq!(get(&format!("{base}/api/queue/c/t?id=x")).0, 400);

    // Job: params, result, history of versions from OurDB.
    let j = get_json(&format!("{base}/api/job/c/t/1"));
    assert_eq!(j["job"]["params"], "ok r0");
    assert_eq!(j["job"]["result"], "r0");
    assert_eq!(j["job"]["status"], "done");
    let statuses: Vec<&str> = j["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|v| v["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, vec!["done", "active", "new"]);
    let j = get_json(&format!("{base}/api/job/c/t/6"));
    assert_eq!(j["job"]["error"], "broken 0");
    assert_eq!(get(&format!("{base}/api/job/c/t/999")).0, 404);
    assert_eq!(get(&format!("{base}/api/job/c/t/abc")).0, 400);

    // Metrics: valid for promtool, and the counters match the jobs run.
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    common_promtool(&metrics);
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
    };
    let labels = r#"{circle="c",engine="web-test-engine",topic="t"}"#;
    assert_eq!(sample(&format!("herojobs_jobs_done_total{labels}")), 5.0);
    assert_eq!(
        sample(r#"herojobs_jobs_submitted_total{circle="c",topic="t"}"#),
        7.0,
        "5 done and 2 failed were submitted"
    );
    assert_eq!(sample(&format!("herojobs_jobs_retried_total{labels}")), 0.0);
    assert_eq!(sample(&format!("herojobs_jobs_failed_total{labels}")), 2.0);
    assert_eq!(
        sample(&format!("herojobs_jobs_timed_out_total{labels}")),
        0.0
    );
    assert_eq!(
        sample(r#"herojobs_queue_highest_id{circle="c",topic="t"}"#),
        7.0
    );
    assert_eq!(
        sample(&format!("herojobs_job_run_seconds_count{labels}")),
        7.0
    );
    assert_eq!(
        sample(&format!("herojobs_job_wait_seconds_count{labels}")),
        7.0
    );
    assert_eq!(sample(r#"herojobs_queue_depth{circle="c",topic="t"}"#), 0.0);
    assert_eq!(sample("herojobs_engines_up"), 1.0);
    assert!(sample(r#"herojobs_ourdb_bytes{circle="c",topic="t"}"#) > 0.0);

    // Actions: refused without the token, with a wrong one, cross-site, or not as JSON.
    let del = r#"{"action":"delete","circle":"c","topic":"t","id":1}"#;
    let json = ("Content-Type", "application/json");
    let (code, v) = action(&base, &[json], del);
    assert_eq!(code, 403, "no token: {v}");
    let (code, _) = action(&base, &[json, ("X-Herojobs-Token", "wrong")], del);
    assert_eq!(code, 403);
    let (code, v) = action(
        &base,
        &[
            json,
            ("X-Herojobs-Token", "s3cret"),
            ("Origin", "http://evil.example"),
        ],
        del,
    );
    assert_eq!(code, 403, "cross-site: {v}");
    let (code, _) = action(
        &base,
        &[
            ("Content-Type", "text/plain"),
            ("X-Herojobs-Token", "s3cret"),
        ],
        del,
    );
    assert_eq!(code, 415, "a form post is not an action");
    let (code, _) = action(
        &base,
        &[json, ("X-Herojobs-Token", "s3cret")],
        r#"{"action":"explode","circle":"c","topic":"t"}"#,
    );
    assert_eq!(code, 400);
    let (code, _) = action(
        &base,
        &[json, ("X-Herojobs-Token", "s3cret")],
        r#"{"action":"delete","circle":"c","topic":"t"}"#,
    );
    assert_eq!(code, 400, "delete needs an id");
    assert_eq!(
        get_json(&format!("{base}/api/job/c/t/1"))["job"]["jobid"],
        1
    );
    // With the token (and the server's own Origin): done.
    let origin = base.clone();
    let (code, v) = action(
        &base,
        &[json, ("X-Herojobs-Token", "s3cret"), ("Origin", &origin)],
        del,
    );
    assert_eq!((code, &v["deleted"]), (200, &Value::Bool(true)), "{v}");
    assert_eq!(get(&format!("{base}/api/job/c/t/1")).0, 404);
    let (code, _) = http("PUT", &format!("{base}/api/action"), &[], Some("{}"));
    assert_eq!(code, 405);
    eng.stop();
    // A stopped engine's hash expires and it leaves the fleet (and the engine registry).
    wait_until(
        "the stopped engine to leave the fleet",
        Duration::from_secs(20),
        || get_json(&format!("{base}/api/fleet"))["engines"] == serde_json::json!([]),
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("herojobs-engines")
        .query(&mut redis.conn())
        .expect("smembers");
    assert!(members.is_empty(), "{members:?}");
}

/// Runs `promtool check metrics` on the text; fails the test if promtool is missing (it is
/// part of the test setup: `.ci/run` installs it) or finds a problem.
fn common_promtool(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn waiting_jobs_page_from_the_queue_and_empty_needs_the_token() {
    // No engine: the jobs stay waiting, so the queue's own order is what pages.
    let redis = RedisServer::start();
    let (_d, dir) = common::base_dir();
    let client = Client::connect(&redis.url(), &dir).expect("client");
    let jobs: Vec<_> = (0..120)
        .map(|i| tjob("w", "q", &format!("ok {i}")))
        .collect();
    client.submit_many(jobs).expect("submit");
    let (_ro, ro_base) = web(client.clone(), None);
    let (_w, base) = web(client.clone(), Some("tok"));

    let p = get_json(&format!("{base}/api/queue/w/q?status=new&limit=50"));
    let ids: Vec<u64> = p["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<u64>>(), "next to run first");
    assert_eq!(p["next"]["start"], 50);
    assert_eq!(p["summary"]["waiting"], 120);
    assert!(p["summary"]["oldest_wait_s"].as_i64().is_some());
    let p = get_json(&format!(
        "{base}/api/queue/w/q?status=new&limit=50&start=100"
    ));
    assert_eq!(p["jobs"].as_array().map(Vec::len), Some(20));
    assert_eq!(p["jobs"][0]["id"], 101);
    assert!(p["next"].is_null());
    assert_eq!(
        get_json(&format!("{base}/api/queue/w/q?status=active"))["jobs"],
        serde_json::json!([])
    );
    // No engine yet: the metrics still answer (queue gauges only) and stay valid.
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200, "{metrics}");
    common_promtool(&metrics);
    assert!(
        metrics.contains("herojobs_queue_depth{circle=\"w\",topic=\"q\"} 120"),
        "{metrics}"
    );
    assert!(metrics.contains("herojobs_engines_up 0"), "{metrics}");
    let f = get_json(&format!("{ro_base}/api/fleet"));
    assert_eq!(f["read_only"], true);
    assert_eq!(f["engines"], serde_json::json!([]));

    let empty = r#"{"action":"empty","circle":"w","topic":"q"}"#;
    let json = ("Content-Type", "application/json");
    let (code, v) = action(&ro_base, &[json, ("X-Herojobs-Token", "tok")], empty);
    assert_eq!(code, 403, "a read-only dashboard refuses every action: {v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("read-only")));
    assert_eq!(client.queue_len(&queue("w", "q")).expect("len"), 120);
    let (code, v) = action(&base, &[json, ("X-Herojobs-Token", "tok")], empty);
    assert_eq!((code, &v["removed"]), (200, &serde_json::json!(120)), "{v}");
    assert_eq!(client.queue_len(&queue("w", "q")).expect("len"), 0);
}

#[test]
fn pages_answer_from_ourdb_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let (_d, dir) = common::base_dir();
    let client = Client::connect(&redis.url(), &dir).expect("client");
    let id = client.submit(tjob("o", "t", "ok stored")).expect("submit");
    let (_w, base) = web(client, None);
    redis.kill();
    // `id` displays as its address, o/t/<n>.
    let j = get_json(&format!("{base}/api/job/{id}"));
    assert_eq!(j["job"]["params"], "ok stored");
    assert!(j["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("ourdb (broker unreachable")));
    let q = get_json(&format!("{base}/api/queue/o/t"));
    assert_eq!(q["jobs"][0]["id"], id.id());
    assert!(
        q["summary"]["error"].is_string(),
        "the live counts say why they are missing"
    );
    let (code, _) = get(&format!("{base}/metrics"));
    assert_eq!(code, 503, "no metrics without the broker");
    let f = get_json(&format!("{base}/api/fleet"));
    assert!(f["error"].is_string());
}
