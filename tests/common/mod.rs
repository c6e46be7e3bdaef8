//! Test support: a private `redis-server` per test on a free port, started and killed by the
//! test, and condition waits with generous deadlines (never sleep-and-hope).
#![allow(dead_code)]
// `EngineConfig` is `#[non_exhaustive]`: outside the crate (the tests) it cannot be written
// as a struct literal; inside it (this file is shared with the unit tests) clippy would ask for one.
#![allow(clippy::field_reassign_with_default)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts this test binary again running only the test `name` — a child that sets itself
/// up from `envs` and prints `READY` once it runs — and returns once it has. The child's
/// stdout is then drained by a thread, so it never blocks on a full pipe.
pub fn spawn_ready_child(name: &str, envs: &[(&str, std::ffi::OsString)]) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    loop {
        match lines.next() {
            // The harness may print the test's name on the same line first.
            Some(Ok(l)) if l.ends_with("READY") => break,
            Some(_) => continue,
            None => panic!("child {name} exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

/// A redis-server owned by one test. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl RedisServer {
    /// Starts a fresh, empty server (no persistence) and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let mut s = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server is not installed or not on PATH ({e}); install it (apt-get install redis-server)"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("redis-server exited at start: {status}"));
                }
            }
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer within 20 s".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// A plain connection for inspecting or tampering with state.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to test redis")
    }

    /// SIGKILL: an outage that loses everything (it keeps nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart redis-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `cond` holds, polling every 10 ms, panicking with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {deadline:?} waiting for: {what}");
}

/// A fresh base directory for job databases.
pub fn base_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// A processor for engine tests, on the heroscript params type. Params:
/// `ok [text]` → done with `text` (or the job id); `sleep MS` → sleeps (cancellable) then
/// done; `forever` → runs until cancelled; `fail MSG` → error; `panic` → panics;
/// `record PATH` → appends the job id to PATH, then done.
pub fn test_registry() -> herojobs::Registry {
    use herojobs::{ParamsType, Registry};
    let mut r = Registry::new();
    r.register(ParamsType::HeroScript, |job, ctx| {
        let (cmd, arg) = job
            .params
            .split_once(' ')
            .unwrap_or((job.params.as_str(), ""));
        match cmd {
            "ok" => Ok(if arg.is_empty() {
                job.id.to_string()
            } else {
                arg.to_string()
            }),
            "sleep" => {
                let ms: u64 = arg.parse()?;
                ctx.sleep(Duration::from_millis(ms))?;
                Ok("slept".into())
            }
            "forever" => {
                while !ctx.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err("cancelled".into())
            }
            "fail" => Err(arg.into()),
            // `flaky N FILE`: appends `id attempt pid unix_ms` to FILE, then fails attempts
            // up to N.
            "flaky" => {
                use std::io::Write;
                let (n, file) = arg.split_once(' ').ok_or("flaky N FILE")?;
                let attempt = ctx.attempt();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)?;
                f.write_all(
                    format!(
                        "{} {attempt} {} {}\n",
                        job.id,
                        std::process::id(),
                        now.as_millis()
                    )
                    .as_bytes(),
                )?;
                if attempt <= n.parse::<u32>()? {
                    Err(format!("flaky attempt {attempt}").into())
                } else {
                    Ok(format!("attempt {attempt}"))
                }
            }
            "panic" => panic!("the test processor was told to panic"),
            "record" => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(arg)?;
                // One write per line: O_APPEND makes each write atomic between processes.
                f.write_all(format!("{}\n", job.id).as_bytes())?;
                Ok(std::process::id().to_string())
            }
            other => Err(format!("unknown test command {other:?}").into()),
        }
    });
    r
}

/// An engine builder for tests: Redis at `url`, jobs under `base`, short lease and recovery
/// intervals so that crash recovery happens within seconds.
pub fn test_engine(url: &str, base: &std::path::Path, workers: usize) -> herojobs::WatchDogBuilder {
    let mut config = herojobs::EngineConfig::default();
    config.workers = workers;
    config.lease = Duration::from_secs(2);
    config.grace = Duration::from_secs(5);
    config.recovery_interval = Duration::from_millis(500);
    config.recovery_grace = Duration::from_secs(1);
    config.poll = Duration::from_millis(200);
    herojobs::WatchDog::builder()
        .redis_url(url)
        .base(base)
        .config(config)
        .registry(test_registry())
}

/// The address of job `id` of `circle`/`topic` (names fixed).
pub fn jref(circle: &str, topic: &str, id: u32) -> herojobs::JobRef {
    herojobs::QueueName::new(circle, topic)
        .expect("a usable circle/topic")
        .job(id)
}

/// The queue `circle`/`topic` (names fixed).
pub fn queue(circle: &str, topic: &str) -> herojobs::QueueName {
    herojobs::QueueName::new(circle, topic).expect("a usable circle/topic")
}

/// A heroscript job with test-processor params.
pub fn tjob(circle: &str, topic: &str, params: &str) -> herojobs::Job {
    herojobs::Job::new(circle, topic, herojobs::ParamsType::HeroScript, params)
}
