//! The `herojobs` command as a new user runs it: the demo (embedded and on Redis), a daemon
//! (`run`) with `submit --wait`, `get --json`, `list`, `queues`, `stats`, SIGTERM, and bench.

mod common;

use common::{base_dir, wait_until, RedisServer};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn herojobs(args: &[&str], redis: &str, base: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(args)
        .env("HEROJOBS_REDIS_URL", redis)
        .env("HEROJOBS_BASE", base)
        .env_remove("HEROJOBS_AI_URL")
        .output()
        .expect("run herojobs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_runs_embedded_when_no_redis_answers_and_on_redis_when_one_does() {
    let (_d, base) = base_dir();
    // A port nothing listens on.
    let out = herojobs(&["demo"], "redis://127.0.0.1:1", &base);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("embedded in-process broker (no Redis answered"),
        "{}",
        text(&out.stderr)
    );
    let table = text(&out.stdout);
    for needle in [
        "Hello from HeroScript",
        "385",
        "42",
        "timeout after 1 s",
        "fails on purpose",
        "all 5 jobs ended as expected",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    let redis = RedisServer::start();
    let out = herojobs(&["demo"], &redis.url(), &base);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("using Redis at"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_daemon_runs_submitted_jobs_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(["run", "--workers", "2"])
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herojobs run");
    let out = herojobs(
        &[
            "submit",
            "--circle",
            "Team A",
            "--topic",
            "jobs",
            "--wait",
            "!!fake.return_success message:'via the cli'",
        ],
        &redis.url(),
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "via the cli");
    let out = herojobs(
        &[
            "submit",
            "--circle",
            "team_a",
            "--topic",
            "jobs",
            "--type",
            "rhaiscript",
            "--wait",
            "1 + ",
        ],
        &redis.url(),
        &base,
    );
    assert_eq!(out.status.code(), Some(1), "a failed job exits non-zero");
    assert!(
        text(&out.stderr).contains("rhai: "),
        "{}",
        text(&out.stderr)
    );
    let out = herojobs(
        &[
            "submit",
            "--circle",
            "team_a",
            "--topic",
            "jobs",
            "--type",
            "openrpc",
            r#"{"jsonrpc":"2.0","method":"echo","params":[1]}"#,
        ],
        &redis.url(),
        &base,
    );
    let id = text(&out.stdout).trim().to_string();
    let out = herojobs(
        &["wait", "--circle", "team_a", "--topic", "jobs", &id],
        &redis.url(),
        &base,
    );
    assert_eq!(text(&out.stdout).trim(), "[1]");
    let out = herojobs(
        &[
            "get", "--circle", "team_a", "--topic", "jobs", &id, "--json",
        ],
        &redis.url(),
        &base,
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("get --json prints the job JSON");
    assert_eq!(v["status"], "done");
    assert_eq!(v["params_type"], "openrpc");
    let out = herojobs(
        &["list", "--circle", "team_a", "--topic", "jobs"],
        &redis.url(),
        &base,
    );
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let out = herojobs(&["queues", "--json"], &redis.url(), &base);
    assert!(text(&out.stdout).contains("\"team_a\""));
    wait_until(
        "the daemon to publish its counters",
        Duration::from_secs(10),
        || {
            let out = herojobs(&["stats", "--json"], &redis.url(), &base);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v["engines"]
                .as_object()
                .is_some_and(|e| e.values().any(|f| f["done"].as_u64() == Some(2)))
        },
    );
    let out = herojobs(&["submit", "--type", "cobol", "x"], &redis.url(), &base);
    assert_eq!(out.status.code(), Some(2));
    let ok = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "the daemon exits cleanly on SIGTERM");
}

#[test]
fn bench_prints_one_json_line() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    for extra in [&[][..], &["--embedded"][..]] {
        let mut args = vec![
            "bench",
            "--jobs",
            "300",
            "--concurrency",
            "4",
            "--roundtrips",
            "20",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = herojobs(&args, &redis.url(), &base);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for key in [
            "system",
            "version",
            "n",
            "concurrency",
            "enqueue_per_s",
            "drain_per_s",
            "roundtrip_p50_ms",
            "roundtrip_p99_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["system"], "herojobs");
        assert_eq!(v["n"], 300);
        assert!(v["drain_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn waiting_without_a_watchdog_says_so() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let out = herojobs(
        &["submit", "--circle", "c", "!!fake.return_success"],
        &redis.url(),
        &base,
    );
    let id = text(&out.stdout).trim().to_string();
    let out = herojobs(
        &["wait", "--circle", "c", &id, "--timeout", "1"],
        &redis.url(),
        &base,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("did not finish") && err.contains("start one with `herojobs run`"),
        "{err}"
    );
    // The demo leaves the Redis it used as it found it (its jobs stay in OurDB).
    let out = herojobs(&["demo"], &redis.url(), &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg("heroqueues")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(queues, vec!["heroqueue:c:default".to_string()]);
    // It took nothing of the other users' jobs (the one above still waits) and left no key
    // of its own behind.
    let waiting: u64 = redis::cmd("LLEN")
        .arg("heroqueue:c:default")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(waiting, 1, "the demo took another user's job");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("*demo*")
        .query(&mut redis.conn())
        .unwrap();
    assert!(left.is_empty(), "the demo left {left:?}");
}

/// A job named as errors print it, `circle/topic/id`, is accepted back by `get`, `wait`,
/// `cancel` and `retry` (as is `--circle C --topic T ID`), and a malformed one is a usage
/// error that says what was expected.
#[test]
fn job_addresses_printed_by_errors_are_accepted_back() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let url = redis.url();
    // No watchdog: the job waits, and `wait` times out naming it.
    let out = herojobs(
        &[
            "submit",
            "--circle",
            "Ops",
            "--topic",
            "builds",
            "!!fake.return_success",
        ],
        &url,
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let out = herojobs(
        &[
            "wait",
            "--circle",
            "ops",
            "--topic",
            "builds",
            &id,
            "--timeout",
            "1",
        ],
        &url,
        &base,
    );
    assert_eq!(out.status.code(), Some(1));
    let named = format!("ops/builds/{id}");
    assert!(text(&out.stderr).contains(&named), "{}", text(&out.stderr));
    // That name, as it was printed, works everywhere a job is asked for.
    let out = herojobs(&["get", &named, "--json"], &url, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["circleid"].as_str(), v["jobid"].to_string()),
        (Some("ops"), id.clone())
    );
    let out = herojobs(&["cancel", &named], &url, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("cancelled {named}")));
    let out = herojobs(&["retry", &named], &url, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herojobs(
        &["get", "--circle", "ops", "--topic", "builds", &id, "--json"],
        &url,
        &base,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "new", "retried: waiting again");
    for bad in ["ops/builds", "ops/builds/0", "ops/builds/x", "x"] {
        let out = herojobs(&["get", bad], &url, &base);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("circle/topic"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
}
