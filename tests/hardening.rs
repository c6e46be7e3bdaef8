//! Hardening (issue 12 items 3, 4, 5, 6, 9-part, 13, 14): each defect as a test against real
//! processes, a real redis-server (its own port) and loopback HTTP stubs. Nothing leaves the
//! machine.

mod common;

use common::{base_dir, jref, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::processor::ai::{AiConfig, AiProcessor};
use herojobs::processor::{JobContext, Processor, Registry};
use herojobs::{Client, Job, JobStatus, ParamsType, WatchDog};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_herojobs");

/// A loopback HTTP server that records each request line (and its Authorization header) and
/// answers: `/v1/models/redirect` → 302 to `/admin/secret`; a body or path naming `slow` →
/// nothing for 120 s; anything else → 200 `{"ok":true}`.
fn http_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = Arc::clone(&seen2);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let mut auth = String::new();
                let mut len = 0usize;
                let mut first = true;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = line.trim().to_string();
                    }
                    if first {
                        request_line = line.trim().to_string();
                        first = false;
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).to_string();
                seen.lock()
                    .unwrap()
                    .push(format!("{request_line} | {auth}"));
                let mut s = stream;
                if request_line.contains("/v1/models/redirect") {
                    let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: /admin/secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                if body.contains("slow") || request_line.contains("slow") {
                    std::thread::sleep(Duration::from_secs(120));
                }
                let reply = r#"{"ok":true}"#;
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
            });
        }
    });
    (url, seen)
}

fn ai_job(params: &str) -> Job {
    Job::new("c", "t", ParamsType::Ai, params)
}

fn ctx(secs: u64) -> JobContext {
    JobContext::new(Duration::from_secs(secs), Arc::new(AtomicBool::new(false)))
}

#[test]
fn ai_values_stay_in_their_path_segment_and_the_key_follows_no_redirect() {
    let (url, seen) = http_stub();
    let p = AiProcessor::new(AiConfig {
        base_url: Some(url),
        api_key: Some("sk-operator-key".into()),
    });
    let r = p.process(
        &ai_job(r#"{"endpoint":"models.get","request":{"model":"../../admin/secret?x=1"}}"#),
        &ctx(10),
    );
    assert_eq!(r.unwrap(), r#"{"ok":true}"#);
    for bad in ["..", ".", ""] {
        let e = p
            .process(
                &ai_job(&format!(
                    r#"{{"endpoint":"models.get","request":{{"model":"{bad}"}}}}"#
                )),
                &ctx(10),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("models.get: request.model"), "{e}");
    }
    let e = p
        .process(
            &ai_job(r#"{"endpoint":"models.get","request":{"model":"redirect"}}"#),
            &ctx(10),
        )
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ai upstream 302"), "{e}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /v1/models/..%2F..%2Fadmin%2Fsecret%3Fx%3D1 HTTP/1.1"),
        "{seen:?}"
    );
    assert!(seen[1].starts_with("GET /v1/models/redirect "), "{seen:?}");
    for r in &seen {
        assert!(r.starts_with("GET /v1/"), "a request outside /v1/: {r}");
        assert!(!r.contains("/admin"), "the redirect was followed: {r}");
        assert!(r.ends_with("Bearer sk-operator-key"), "{r}");
    }
}

/// Output of the herojobs binary.
fn herojobs(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("HEROJOBS_AI_URL")
        .env_remove("HEROJOBS_REDIS_URL")
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run herojobs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `herojobs run` as a child process: its stderr collected by a thread; killed on drop.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Output pipes not read to their end yet.
    open_pipes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Daemon {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("HEROJOBS_AI_URL")
            .env_remove("HEROJOBS_REDIS_URL")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn herojobs run");
        let stderr = Arc::new(Mutex::new(String::new()));
        let open_pipes = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let sink = Arc::clone(&stderr);
            let open = Arc::clone(&open_pipes);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
                open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            });
        }
        Daemon {
            child,
            stderr,
            open_pipes,
        }
    }

    fn output(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for(&self, text: &str) {
        wait_until(
            &format!("{text:?} in the output"),
            Duration::from_secs(60),
            || self.output().contains(text),
        );
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit (and its output to be read to the end); its status
    /// code.
    fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let mut code = None;
        wait_until("herojobs run to exit", deadline, || {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    code = Some(st.code().unwrap_or(-1));
                    true
                }
                _ => false,
            }
        });
        wait_until("its output to be read to the end", deadline, || {
            self.open_pipes.load(std::sync::atomic::Ordering::Acquire) == 0
        });
        code
    }

    /// Peak resident memory (kB) so far, from /proc.
    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_redis_password_is_never_printed() {
    let (_d, base) = base_dir();
    let b = base.to_str().unwrap();
    // A port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("redis://:hunter2@127.0.0.1:{closed}"),
        format!("redis://admin:hunter2@127.0.0.1:{closed}/0"),
    ] {
        let url = url.as_str();
        for args in [
            vec!["--redis", url, "--base", b, "get", "1"],
            vec![
                "--redis",
                url,
                "--base",
                b,
                "submit",
                "!!fake.return_success",
            ],
            vec!["--redis", url, "--base", b, "stats"],
            vec!["--redis", url, "--base", b, "queues"],
        ] {
            let (ok, out) = herojobs(&args, &[]);
            assert!(!ok, "{args:?}: {out}");
            assert!(
                out.contains("***"),
                "{args:?}: the error names no URL: {out}"
            );
            assert!(
                !out.contains("hunter2"),
                "{args:?} printed the password: {out}"
            );
        }
        // An unreachable Redis stops `run` at start, with an error that names the URL
        // redacted (a Redis that goes away later is below: the running watchdog rides it out).
        let mut d = Daemon::start(&["--redis", url, "--base", b, "run", "--grace", "0"], &[]);
        let code = d.wait_exit(Duration::from_secs(60));
        let out = d.output();
        assert!(code.is_some_and(|c| c != 0), "{code:?}: {out}");
        assert!(out.contains(":***@127.0.0.1"), "{out}");
        assert!(!out.contains("hunter2"), "run printed the password: {out}");
    }

    // `--help` names the environment variable, never its value.
    let env_url = format!("redis://:hunter2@127.0.0.1:{closed}");
    let url = env_url.as_str();
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["bench", "--help"],
    ] {
        let (ok, out) = herojobs(&args, &[("HEROJOBS_REDIS_URL", url)]);
        assert!(ok, "{out}");
        assert!(out.contains("HEROJOBS_REDIS_URL"), "{out}");
        assert!(
            !out.contains("hunter2"),
            "{args:?} printed the password: {out}"
        );
    }
    // Nor does an error when the URL comes from the environment.
    let (ok, out) = herojobs(&["--base", b, "get", "1"], &[("HEROJOBS_REDIS_URL", url)]);
    assert!(!ok && !out.contains("hunter2"), "{out}");

    // A real server that requires the password.
    let mut redis = RedisServer::start();
    let mut con = redis.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("hunter2")
        .query(&mut con)
        .unwrap();
    let good = format!("redis://:hunter2@127.0.0.1:{}", redis.port);
    let wrong = format!("redis://:wrongpass99@127.0.0.1:{}", redis.port);
    let mut d = Daemon::start(&["--redis", &good, "--base", b, "run", "--grace", "1"], &[]);
    d.wait_for("watchdog running");
    let (ok, out) = herojobs(
        &[
            "--redis",
            &good,
            "--base",
            b,
            "submit",
            "--wait",
            "--type",
            "rhaiscript",
            "6 * 7",
        ],
        &[],
    );
    assert!(ok && out.contains("42"), "{out}");
    for args in [
        vec!["stats"],
        vec!["queues"],
        vec!["get", "1"],
        vec!["--json", "get", "1"],
    ] {
        let mut all = vec!["--redis", good.as_str(), "--base", b];
        all.extend(args);
        let (ok, out) = herojobs(&all, &[]);
        assert!(ok, "{all:?}: {out}");
        assert!(!out.contains("hunter2"), "{all:?}: {out}");
    }
    // With the wrong password `get` fails or answers from OurDB (saying Redis could not be
    // reached); either way the password is not shown.
    let (_, out) = herojobs(&["--redis", &wrong, "--base", b, "get", "1"], &[]);
    assert!(!out.contains("wrongpass99"), "{out}");
    // Redis goes away under the running watchdog: it retries (logging at debug level, the
    // URL redacted) and still stops on TERM.
    redis.kill();
    d.wait_for("Connection refused");
    d.signal("-TERM");
    d.wait_exit(Duration::from_secs(60));
    assert!(!d.output().contains("hunter2"), "{}", d.output());
}

const SECRET_A: &[u8] = b"circle-a-secret-0123456789";

#[test]
fn a_signed_circle_runs_only_jobs_signed_with_its_secret() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let ran = base.join("ran.txt");
    let record = format!("record {}", ran.display());
    let plain = Client::connect(&redis.url(), &base).unwrap();
    let signer = plain.clone().with_signing("a", SECRET_A).unwrap();
    let wrong_key = plain
        .clone()
        .with_signing("a", b"not-the-circle-secret!".to_vec())
        .unwrap();
    assert!(plain.clone().with_signing("a", b"short".to_vec()).is_err());
    // Submitted before any engine runs, so a planted job can be altered in Redis first.
    let signed = signer.submit(tjob("a", "t", &record)).unwrap();
    let unsigned = plain.submit(tjob("a", "t", &record)).unwrap();
    let other_key = wrong_key.submit(tjob("a", "t", &record)).unwrap();
    let altered = signer.submit(tjob("a", "t", "ok harmless")).unwrap();
    let other_circle = plain.submit(tjob("b", "t", "ok free")).unwrap();
    // Tamper: keep the valid signature, change the params to run the recorder.
    let mut con = redis.conn();
    let key = format!("herojobs:a:t:{}", altered.id());
    let json: String = redis::cmd("HGET")
        .arg(&key)
        .arg("job")
        .query(&mut con)
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["signature"].as_str().map(str::len), Some(64));
    v["params"] = serde_json::Value::String(record.clone());
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("job")
        .arg(v.to_string())
        .query(&mut con)
        .unwrap();
    // A job planted with plain Redis commands, no OurDB, no signature.
    let planted = serde_json::json!({"jobid": 99, "circleid": "a", "topic": "t",
        "params": record, "params_type": "heroscript", "status": "new"});
    let _: () = redis::cmd("HSET")
        .arg("herojobs:a:t:99")
        .arg("job")
        .arg(planted.to_string())
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("LPUSH")
        .arg("heroqueue:a:t")
        .arg(99)
        .query(&mut con)
        .unwrap();

    let mut engine = test_engine(&redis.url(), &base, 2)
        .require_signing("a", SECRET_A)
        .build()
        .unwrap();
    engine.start().unwrap();
    let wait = |id: &herojobs::JobRef| plain.wait(id, Duration::from_secs(60)).unwrap();
    assert_eq!(wait(&signed).status, JobStatus::Done);
    for (id, want) in [
        (&unsigned, "is not signed"),
        (&other_key, "bad signature"),
        (&altered, "bad signature"),
        (&jref("a", "t", 99), "is not signed"),
    ] {
        let j = wait(id);
        assert_eq!(j.status, JobStatus::Error, "job {id}");
        assert!(j.error.contains(want), "job {id}: {}", j.error);
        assert!(j.error.contains("refused") || j.error.contains("requires signed"));
    }
    let b = plain.wait(&other_circle, Duration::from_secs(60)).unwrap();
    assert_eq!((b.status, b.result.as_str()), (JobStatus::Done, "free"));
    // Only the signed job ran the recorder.
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec![signed.id().to_string()]
    );
    assert_eq!(engine.stats().refused, 4);
    // The signature lives in OurDB too (record v2), so a job recovery re-queues from there
    // after Redis lost everything still verifies.
    engine.stop();
    let again = signer.submit(tjob("a", "t", "ok after-flush")).unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .require_signing("a", SECRET_A)
        .build()
        .unwrap();
    engine.start().unwrap();
    let j = wait(&again);
    assert_eq!(
        (j.status, j.result.as_str()),
        (JobStatus::Done, "after-flush"),
        "{}",
        j.error
    );
    assert!(test_engine(&redis.url(), &base, 1)
        .require_signing("a", b"short".to_vec())
        .build()
        .is_err());
}

#[test]
fn the_authenticator_hook_refuses_jobs_before_they_run() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2)
        .authenticator(|job: &Job| {
            if job.session_key == "valid-session" {
                Ok(())
            } else {
                Err(format!("unknown session {:?}", job.session_key))
            }
        })
        .build()
        .unwrap();
    engine.start().unwrap();
    let good = client
        .submit(Job {
            session_key: "valid-session".into(),
            ..tjob("c", "t", "ok yes")
        })
        .unwrap();
    let bad = client
        .submit(Job {
            session_key: "stolen".into(),
            ..tjob("c", "t", "ok no")
        })
        .unwrap();
    let g = client.wait(&good, Duration::from_secs(60)).unwrap();
    assert_eq!((g.status, g.result.as_str()), (JobStatus::Done, "yes"));
    let b = client.wait(&bad, Duration::from_secs(60)).unwrap();
    assert_eq!(b.status, JobStatus::Error);
    assert_eq!(
        b.error,
        "refused by the authenticator: unknown session \"stolen\""
    );
    assert!(b.result.is_empty());
}

/// Runs a Redis command, `Err` with the server's message.
fn try_cmd(con: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).map_err(|e| e.to_string())
}

#[test]
fn a_redis_acl_confines_a_submitter_to_its_circle() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut admin = redis.conn();
    // The layout docs/security.md gives (the same lines).
    for rule in [
        "ACL SETUSER engine on >engine-pw-0123 ~herojobs* ~heroqueue* &* +@all",
        "ACL SETUSER submit-a on >submit-a-pw-0123 resetkeys ~herojobs:a:* ~heroqueue:a:* ~herojobs-ids:a:* ~herojobs-scheduled:a:* ~heroqueues ~herojobs-submitted ~herojobs-signal resetchannels -@all +evalsha +eval +script|load +hexists +hget +hmget +hset +lpush +sadd +ltrim +zadd +hincrby +get +set +blmove +ping +auth +hello",
    ] {
        let parts: Vec<&str> = rule.split(' ').collect();
        try_cmd(&mut admin, &parts).unwrap_or_else(|e| panic!("{rule}: {e}"));
    }
    let url = |user: &str, pw: &str| format!("redis://{user}:{pw}@127.0.0.1:{}", redis.port);
    let engine_url = url("engine", "engine-pw-0123");
    let sub_url = url("submit-a", "submit-a-pw-0123");
    let mut engine = test_engine(&engine_url, &base, 2).build().unwrap();
    engine.start().unwrap();
    let sub = Client::connect(&sub_url, &base).unwrap();
    // Circle a: submit, wait, get all work.
    let id = sub.submit(tjob("a", "t", "ok in-a")).unwrap();
    let j = sub.wait(&id, Duration::from_secs(60)).unwrap();
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "in-a"));
    assert_eq!(sub.get(&id).unwrap().result, "in-a");
    // Circle b: the enqueue is refused by Redis; nothing of b's is touched there.
    let e = sub
        .submit(tjob("b", "t", "ok in-b"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOPERM") || e.contains("no permissions"), "{e}");
    assert!(!e.contains("submit-a-pw"), "{e}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("herojobs:b:*")
        .query(&mut admin)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let q: i64 = redis::cmd("LLEN")
        .arg("heroqueue:b:t")
        .query(&mut admin)
        .unwrap();
    assert_eq!(q, 0);
    // Nor can it read or rewrite b's jobs, or the engine's leases.
    let planted = engine_client(&engine_url, &base)
        .submit(tjob("b", "t", "ok b-secret"))
        .unwrap();
    let mut sc = redis::Client::open(sub_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let b_key = format!("herojobs:b:t:{}", planted.id());
    for args in [
        vec!["HGET", b_key.as_str(), "job"],
        vec!["HSET", "herojobs:b:t:1", "job", "{}"],
        vec!["LPUSH", "heroqueue:b:t", "1"],
        vec!["ZADD", "herojobs-leases", "1", "b:t:1"],
        vec!["SMEMBERS", "heroqueues"],
        vec!["KEYS", "*"],
        vec!["FLUSHALL"],
    ] {
        let r = try_cmd(&mut sc, &args);
        assert!(r.is_err(), "{args:?} was allowed: {r:?}");
    }
}

fn engine_client(url: &str, base: &std::path::Path) -> Client {
    Client::connect(url, base).unwrap()
}

#[test]
fn wait_returns_soon_after_the_job_finishes_across_a_flushall() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut engine = test_engine(&redis.url(), &base, 2).build().unwrap();
    engine.start().unwrap();
    let id = client.submit(tjob("c", "w", "sleep 6000")).unwrap();
    let waiter = {
        let c = client.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let r = c.wait(&id, Duration::from_secs(60));
            (r, Instant::now())
        })
    };
    wait_until(
        "the job to run",
        Duration::from_secs(30),
        || matches!(client.get(&id), Ok(j) if j.status == JobStatus::Active),
    );
    // The waiter is registered (and so blocked on the completion signal) before the flush
    // erases its registration.
    let mut con = redis.conn();
    wait_until("the waiter to register", Duration::from_secs(30), || {
        redis::cmd("HEXISTS")
            .arg(format!("herojobs:c:w:{}", id.id()))
            .arg("waiting")
            .query::<bool>(&mut con)
            .unwrap_or(false)
    });
    // From its HSET to its BLMOVE is one round trip; this pause only makes the bug this test
    // guards against reproduce every time (the fixed wait passes either way).
    std::thread::sleep(Duration::from_millis(200));
    let flushed = Instant::now();
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let (r, returned) = waiter.join().unwrap();
    let job = r.expect("wait returned the job, not a timeout");
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    // The job ends at most 6 s after the flush; the waiter sees it within a re-check or two,
    // not at its 60 s timeout (before the fix it slept the whole 60 s).
    let after = returned.duration_since(flushed);
    println!("wait returned {after:?} after the FLUSHALL (job: 6 s)");
    assert!(
        after < Duration::from_secs(30),
        "the waiter returned {after:?} after the flush"
    );
}

#[test]
fn a_rhai_print_flood_leaves_a_bounded_log_and_a_small_watchdog() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let b = base.to_str().unwrap();
    let url = redis.url();
    let d = Daemon::start(
        &["--redis", &url, "--base", b, "run", "--workers", "2"],
        &[],
    );
    d.wait_for("watchdog running");
    let client = Client::connect(&url, &base).unwrap();
    let id = client
        .submit(
            Job::new(
                "c",
                "flood",
                ParamsType::RhaiScript,
                r#"let s = "x"; s.pad(1000000, 'x'); for i in 0..400 { print(s); } "finished""#,
            )
            .with_timeout(120),
        )
        .unwrap();
    let j = client.wait(&id, Duration::from_secs(120)).unwrap();
    assert_eq!(
        (j.status, j.result.as_str()),
        (JobStatus::Done, "finished"),
        "{}",
        j.error
    );
    let log_bytes: usize = j.logs.iter().map(String::len).sum();
    assert!(log_bytes <= 70 * 1024, "{log_bytes} bytes of log");
    assert!(j
        .logs
        .iter()
        .all(|l| l.len() <= 4096 || l.starts_with("… ")));
    let last = j.logs.last().unwrap();
    assert!(last.contains("bytes cut from this log"), "{last}");
    // Redis holds the bounded copy too.
    let json: String = redis::cmd("HGET")
        .arg(format!("herojobs:c:flood:{}", id.id()))
        .arg("job")
        .query(&mut redis.conn())
        .unwrap();
    assert!(json.len() < 200 * 1024, "{} bytes in Redis", json.len());
    let peak = d.peak_rss_kb();
    println!("watchdog peak RSS after a 400 MB print flood: {peak} kB");
    assert!(peak > 0 && peak < 300 * 1024, "peak RSS {peak} kB");
}

#[test]
fn outcomes_are_cut_to_fit_the_record_and_oversized_params_are_refused() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut registry = Registry::new();
    // Returns (or fails with) a 20 MB text, over OurDB's 16 MiB record limit.
    registry.register(ParamsType::HeroScript, |job: &Job, ctx: &JobContext| {
        ctx.log("about to answer big");
        let big = "z".repeat(20 * 1024 * 1024);
        if job.params == "fail" {
            Err(big.into())
        } else {
            Ok(big)
        }
    });
    let mut engine = WatchDog::builder()
        .redis_url(&redis.url())
        .base(&base)
        .registry(registry)
        .workers(1)
        .build()
        .unwrap();
    // Shares the engine's broker and job store.
    let client = engine.client();
    engine.start().unwrap();
    let ok = client
        .submit(tjob("c", "big", &"x".repeat(1024 * 1024)))
        .unwrap();
    let fail = client.submit(tjob("c", "big", "fail")).unwrap();
    let j = client.wait(&ok, Duration::from_secs(120)).unwrap();
    assert_eq!(j.status, JobStatus::Done, "{}", j.error);
    assert!(j.result.len() > 10 * 1024 * 1024 && j.result.len() < 16 * 1024 * 1024);
    assert!(
        j.logs.iter().any(|l| l.contains("result cut")),
        "{:?}",
        j.logs
    );
    let f = client.wait(&fail, Duration::from_secs(120)).unwrap();
    assert_eq!(f.status, JobStatus::Error);
    assert_eq!(f.error.len(), herojobs::limits::ERROR_CAP);
    // The finished versions are in OurDB (the record of truth), so the outcome survives
    // Redis losing it.
    engine.stop();
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let stored = client.get(&ok).unwrap();
    assert_eq!(
        (stored.status, stored.result.len()),
        (JobStatus::Done, j.result.len())
    );
    assert_eq!(client.get(&fail).unwrap().status, JobStatus::Error);
    // Params that leave no room for a result are refused, and nothing is stored.
    let before = client.list(&queue("c", "big")).unwrap().len();
    let e = client
        .submit(tjob("c", "big", &"y".repeat(16 * 1024 * 1024 - 1024)))
        .unwrap_err();
    assert!(e.to_string().contains("record_size_max"), "{e}");
    assert_eq!(client.list(&queue("c", "big")).unwrap().len(), before);
    let q: i64 = redis::cmd("LLEN")
        .arg("heroqueue:c:big")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(q, 0);
}

#[test]
fn shutdown_gives_up_on_a_slow_ai_call_after_the_grace() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let b = base.to_str().unwrap();
    let url = redis.url();
    let (ai_url, seen) = http_stub();
    let mut d = Daemon::start(
        &["--redis", &url, "--base", b, "run", "--grace", "1"],
        &[("HEROJOBS_AI_URL", &ai_url), ("OPENAI_API_KEY", "sk-x")],
    );
    d.wait_for("watchdog running");
    let client = Client::connect(&url, &base).unwrap();
    let id = client
        .submit(
            ai_job(r#"{"endpoint":"chat.completions","request":{"model":"slow"}}"#)
                .with_timeout(300),
        )
        .unwrap();
    wait_until("the stub to get the call", Duration::from_secs(30), || {
        !seen.lock().unwrap().is_empty()
    });
    let started = Instant::now();
    d.signal("-TERM");
    // The stub answers after 120 s and the job may run 300 s: an exit well before either
    // means the grace was enforced on the HTTP call.
    let code = d.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", d.output());
    assert!(started.elapsed() < Duration::from_secs(60));
    let out = d.output();
    assert!(out.contains("1 released"), "{out}");
    let j = client.get(&id).unwrap();
    assert_eq!(j.status, JobStatus::New, "given back to its queue: {j:?}");
    assert_eq!(client.queue_ids(&queue("c", "t")).unwrap(), vec![id.id()]);
}

#[test]
fn a_second_sigterm_forces_the_stop() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let b = base.to_str().unwrap();
    let url = redis.url();
    let mut d = Daemon::start(
        &["--redis", &url, "--base", b, "run", "--grace", "600"],
        &[],
    );
    d.wait_for("watchdog running");
    let client = Client::connect(&url, &base).unwrap();
    let id = client
        .submit(Job::new("c", "t", ParamsType::RhaiScript, "sleep(500000); 1").with_timeout(900))
        .unwrap();
    wait_until(
        "the job to run",
        Duration::from_secs(30),
        || matches!(client.get(&id), Ok(j) if j.status == JobStatus::Active),
    );
    d.signal("-TERM");
    d.wait_for("stopping (running jobs get 600 s");
    // Still waiting out its 600 s grace: it has not exited.
    assert!(d.child.try_wait().unwrap().is_none());
    d.signal("-TERM");
    let code = d.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{}", d.output());
    assert!(d.output().contains("second signal"), "{}", d.output());
}

#[test]
fn stop_gives_up_on_a_worker_that_ignores_its_cancel() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let mut registry = Registry::new();
    // Sleeps 60 s without ever looking at its cancel flag.
    registry.register(ParamsType::HeroScript, |_: &Job, _: &JobContext| {
        std::thread::sleep(Duration::from_secs(60));
        Ok("too late".to_string())
    });
    let mut config = herojobs::EngineConfig::default();
    config.workers = 1;
    config.grace = Duration::from_millis(500);
    config.give_up_after = Duration::from_secs(1);
    let mut engine = WatchDog::builder()
        .redis_url(&redis.url())
        .base(&base)
        .registry(registry)
        .config(config)
        .build()
        .unwrap();
    // Shares the engine's broker and job store.
    let client = engine.client();
    engine.start().unwrap();
    let id = client.submit(tjob("c", "stuck", "x")).unwrap();
    wait_until(
        "the job to run",
        Duration::from_secs(30),
        || matches!(client.get(&id), Ok(j) if j.status == JobStatus::Active),
    );
    let t = Instant::now();
    engine.stop();
    // Grace 0.5 s + give-up 1 s; the processor would have held it 60 s.
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(engine.stats().gave_up, 1);
    let j = client.get(&id).unwrap();
    assert_eq!(j.status, JobStatus::New, "{j:?}");
    assert_eq!(
        client.queue_ids(&queue("c", "stuck")).unwrap(),
        vec![id.id()]
    );
}

#[test]
fn the_cli_signs_and_requires_signatures_with_a_keys_file() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    let b = base.to_str().unwrap();
    let url = redis.url();
    let keys = base.join("signing.keys");
    std::fs::write(&keys, "# circle secret\na circle-a-secret-0123456789\n").unwrap();
    let k = keys.to_str().unwrap();
    let mut d = Daemon::start(
        &["--redis", &url, "--base", b, "--signing-keys", k, "run"],
        &[],
    );
    d.wait_for("watchdog running");
    let submit = |extra: &[&str], circle: &str| {
        let mut args = vec!["--redis", url.as_str(), "--base", b];
        args.extend_from_slice(extra);
        args.extend([
            "submit",
            "--circle",
            circle,
            "--wait",
            "--type",
            "rhaiscript",
            "6 * 7",
        ]);
        herojobs(&args, &[])
    };
    let (ok, out) = submit(&["--signing-keys", k], "a");
    assert!(ok && out.contains("42"), "{out}");
    let (ok, out) = submit(&[], "a");
    assert!(!ok, "{out}");
    assert!(out.contains("is not signed"), "{out}");
    // Another circle needs no signature.
    let (ok, out) = submit(&[], "b");
    assert!(ok && out.contains("42"), "{out}");
    // The secret is never printed.
    assert!(!d.output().contains("circle-a-secret"), "{}", d.output());
    std::fs::write(&keys, "a\n").unwrap();
    let (ok, out) = submit(&["--signing-keys", k], "a");
    assert!(!ok && out.contains("expected `circle secret`"), "{out}");
    d.signal("-TERM");
    d.wait_exit(Duration::from_secs(60));
}
