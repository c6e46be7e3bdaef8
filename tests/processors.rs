//! The four processors through a real engine and redis-server, with a loopback HTTP stub for
//! the AI API and a Unix-socket JSON-RPC server for OpenRPC forwarding. Nothing leaves the
//! machine.

mod common;

use common::{base_dir, jref, RedisServer};
use herojobs::processor::ai::{AiConfig, AiProcessor};
use herojobs::processor::openrpc::OpenRpcProcessor;
use herojobs::processor::Registry;
use herojobs::{Client, EngineConfig, Job, JobStatus, ParamsType, WatchDog};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tiny OpenAI-like HTTP server on loopback. Model "slow" answers after 5 s, "bad" with
/// 400, "down" with 503; anything else 200 with what it received.
fn ai_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = Arc::clone(&seen2);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8_lossy(&body).to_string();
                seen.lock().unwrap().push(format!("{head}{body}"));
                let request_line = head.lines().next().unwrap_or("").to_string();
                let (status, reply) = if body.contains("\"slow\"") {
                    std::thread::sleep(Duration::from_secs(5));
                    (200, "{}".to_string())
                } else if body.contains("\"bad\"") {
                    (400, r#"{"error":{"message":"bad model"}}"#.to_string())
                } else if body.contains("\"down\"") {
                    (503, "upstream overloaded".to_string())
                } else if request_line.starts_with("GET /v1/models/m1") {
                    (200, r#"{"id":"m1","object":"model"}"#.to_string())
                } else if request_line.starts_with("GET /v1/models") {
                    (200, r#"{"data":[{"id":"m1"}]}"#.to_string())
                } else {
                    let stream_flag = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("stream").cloned());
                    (200, serde_json::json!({"choices":[{"message":{"content":"hello"}}], "stream_seen": stream_flag, "path": request_line}).to_string())
                };
                let mut s = stream;
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
            });
        }
    });
    (url, seen)
}

/// A JSON-RPC server on a Unix socket: answers `add` and never answers `hang`.
fn rpc_socket_server(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::net::UnixListener;
    let path = dir.join("rpc.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let req: serde_json::Value = serde_json::from_str(&line).unwrap();
                let reply = match req["method"].as_str() {
                    Some("add") => {
                        serde_json::json!({"jsonrpc":"2.0","id":req["id"],"result": req["params"][0].as_i64().unwrap() + req["params"][1].as_i64().unwrap()})
                    }
                    Some("hang") => {
                        std::thread::sleep(Duration::from_secs(10));
                        return;
                    }
                    _ => {
                        serde_json::json!({"jsonrpc":"2.0","id":req["id"],"error":{"code":-32601,"message":"no such method"}})
                    }
                };
                let mut s = stream;
                let _ = writeln!(s, "{reply}");
            });
        }
    });
    path
}

struct Setup {
    _redis: RedisServer,
    _base: tempfile::TempDir,
    client: Client,
    engine: WatchDog,
    ai_seen: Arc<Mutex<Vec<String>>>,
    url: String,
}

fn setup() -> Setup {
    let redis = RedisServer::start();
    let (base_guard, base) = base_dir();
    let (ai_url, ai_seen) = ai_stub();
    let socket = rpc_socket_server(&base);
    let mut registry = Registry::with_builtins();
    let mut rpc = OpenRpcProcessor::with_builtins();
    rpc.forward("external", &socket);
    registry.register_processor(ParamsType::OpenRpc, rpc);
    registry.register_processor(
        ParamsType::Ai,
        AiProcessor::new(AiConfig {
            base_url: Some(ai_url),
            api_key: Some("sk-secret-key".into()),
        }),
    );
    let mut config = EngineConfig::default();
    config.workers = 2;
    let mut engine = WatchDog::builder()
        .redis_url(&redis.url())
        .base(&base)
        .config(config)
        .registry(registry)
        .build()
        .unwrap();
    // The engine's client shares its broker and job store.
    let client = engine.client();
    engine.start().unwrap();
    let url = redis.url();
    Setup {
        _redis: redis,
        _base: base_guard,
        client,
        engine,
        ai_seen,
        url,
    }
}

fn run(s: &Setup, topic: &str, t: ParamsType, params: &str, timeout: u64) -> Job {
    let job = s
        .client
        .submit(Job::new("p", topic, t, params).with_timeout(timeout))
        .unwrap();
    s.client.wait(&job, Duration::from_secs(60)).unwrap()
}

#[test]
fn heroscript_jobs_end_to_end() {
    let s = setup();
    let j = run(
        &s,
        "hs",
        ParamsType::HeroScript,
        "!!fake.return_success message:'Hello World'\n!!fake.return_json",
        10,
    );
    assert_eq!(j.status, JobStatus::Done);
    assert_eq!(
        j.result,
        "Hello World\n{\"code\":200,\"message\":\"JSON response\",\"status\":\"ok\"}"
    );
    let j = run(
        &s,
        "hs",
        ParamsType::HeroScript,
        "!!fake.return_error message:nope",
        10,
    );
    assert_eq!(
        (j.status, j.error.as_str()),
        (JobStatus::Error, "fake.return_error (line 1): nope")
    );
    let j = run(&s, "hs", ParamsType::HeroScript, "!!a.b.c x:1", 10);
    assert!(
        j.error.contains("line 1") && j.error.contains("3 parts"),
        "{}",
        j.error
    );
    let j = run(&s, "hs", ParamsType::HeroScript, "!!nobody.here", 10);
    assert_eq!(j.error, "no handler registered for actor: nobody");
    // Timeout: recorded at the deadline, long before the 30 s sleep would end (no timed
    // assertion: the error itself says which came first).
    let j = run(
        &s,
        "hs",
        ParamsType::HeroScript,
        "!!fake.sleep seconds:30",
        1,
    );
    assert_eq!(j.error, "timeout after 1 s");
    let j = run(
        &s,
        "hs",
        ParamsType::HeroScript,
        "!!fake.return_success",
        10,
    );
    assert_eq!(j.result, "Success message");
    drop(s.engine);
}

#[test]
fn rhai_jobs_end_to_end() {
    let s = setup();
    let j = run(
        &s,
        "rh",
        ParamsType::RhaiScript,
        "let x = 6; print(`computing ${JOB_ID}`); x * 7",
        10,
    );
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "42"));
    assert!(j.logs[0].starts_with("computing "), "{:?}", j.logs);
    let j = run(&s, "rh", ParamsType::RhaiScript, "let x = ;", 10);
    assert!(
        j.error.starts_with("rhai: ") && j.error.contains("line 1"),
        "{}",
        j.error
    );
    let j = run(&s, "rh", ParamsType::RhaiScript, "loop { sleep(10); }", 1);
    assert!(j.error.starts_with("timeout after 1 s"), "{}", j.error);
    let j = run(
        &s,
        "rh",
        ParamsType::RhaiScript,
        "heroscript(\"!!fake.return_success message:inner\")",
        10,
    );
    assert_eq!(j.result, "inner");
}

#[test]
fn openrpc_jobs_end_to_end_including_a_unix_socket_server() {
    let s = setup();
    let j = run(
        &s,
        "rpc",
        ParamsType::OpenRpc,
        r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":1,"b":2},"id":1}"#,
        10,
    );
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "3"));
    let j = run(
        &s,
        "rpc",
        ParamsType::OpenRpc,
        r#"{"jsonrpc":"2.0","method":"math.add","params":{"a":1}}"#,
        10,
    );
    assert!(j.error.starts_with("RPC error -32602"), "{}", j.error);
    let j = run(&s, "rpc", ParamsType::OpenRpc, "not json at all", 10);
    assert!(j.error.starts_with("RPC error -32700"), "{}", j.error);
    let j = run(
        &s,
        "external",
        ParamsType::OpenRpc,
        r#"{"jsonrpc":"2.0","method":"add","params":[20,22],"id":9}"#,
        10,
    );
    assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "42"));
    let j = run(
        &s,
        "external",
        ParamsType::OpenRpc,
        r#"{"jsonrpc":"2.0","method":"missing","id":9}"#,
        10,
    );
    assert_eq!(j.error, "RPC error -32601: no such method");
    // The server hangs for 10 s: the timeout is recorded first.
    let j = run(
        &s,
        "external",
        ParamsType::OpenRpc,
        r#"{"jsonrpc":"2.0","method":"hang","id":9}"#,
        1,
    );
    assert!(j.error.starts_with("timeout after 1 s"), "{}", j.error);
}

#[test]
fn ai_jobs_end_to_end_against_a_loopback_stub() {
    let s = setup();
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"chat.completions","request":{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}}"#,
        10,
    );
    assert_eq!(j.status, JobStatus::Done, "{}", j.error);
    let v: serde_json::Value = serde_json::from_str(&j.result).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello");
    assert_eq!(v["stream_seen"], false, "stream is forced off");
    assert!(v["path"]
        .as_str()
        .unwrap()
        .starts_with("POST /v1/chat/completions"));
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"models.list"}"#,
        10,
    );
    assert_eq!(j.result, r#"{"data":[{"id":"m1"}]}"#);
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"models.get","request":{"model":"m1"}}"#,
        10,
    );
    assert_eq!(j.result, r#"{"id":"m1","object":"model"}"#);
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"completions","request":{"model":"bad"}}"#,
        10,
    );
    assert_eq!(
        j.error,
        r#"ai upstream 400: {"error":{"message":"bad model"}}"#
    );
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"embeddings","request":{"model":"down"}}"#,
        10,
    );
    assert_eq!(j.error, "ai upstream 503: upstream overloaded");
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"images.generate"}"#,
        10,
    );
    assert_eq!(j.error, "unsupported ai endpoint: images.generate");
    // "slow" answers after 5 s: the timeout is recorded first.
    let j = run(
        &s,
        "ai",
        ParamsType::Ai,
        r#"{"endpoint":"chat.completions","request":{"model":"slow"}}"#,
        1,
    );
    assert!(j.error.starts_with("timeout after 1 s"), "{}", j.error);
    // The key went to the server as a bearer token, and nowhere into the job.
    assert!(s
        .ai_seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.contains("Bearer sk-secret-key")));
    let stored = s.client.get(&jref("p", "ai", j.id)).unwrap();
    assert!(!format!("{stored:?}").contains("sk-secret"));
}

#[test]
fn finished_jobs_are_readable_by_other_clients() {
    let s = setup();
    let j = run(
        &s,
        "x",
        ParamsType::HeroScript,
        "!!fake.return_success message:'from rust'",
        10,
    );
    // redis-cli reads the hash; Python's standard json module parses it.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &s.url,
            "HGET",
            &format!("herojobs:p:x:{}", j.id),
            "job",
        ])
        .output()
        .expect("redis-cli");
    assert!(out.status.success());
    let mut py = std::process::Command::new("python3")
        .args(["-c", "import json,sys; j=json.load(sys.stdin); print(j['status'], j['result'], j['jobid'], j['circleid'], j['params_type'])"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let res = py.wait_with_output().unwrap();
    assert!(res.status.success(), "python could not parse the job JSON");
    assert_eq!(
        String::from_utf8_lossy(&res.stdout).trim(),
        format!("done from rust {} p heroscript", j.id)
    );
}
