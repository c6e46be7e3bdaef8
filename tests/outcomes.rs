//! Every outcome is recorded (issue 12 item 9): a watchdog whose base cannot take a file does
//! not start; a database that stops storing mid-run (a full filesystem: a real tmpfs filled
//! up) blocks its queue while the others go on, and once it stores again every outcome is in
//! OurDB — no job left `active` there that Redis has done.
//!
//! Needs root (as the suite runs here) for `mount -t tmpfs`: as root, file modes do not stop
//! writes, so a read-only or full filesystem is the way to make one refuse them.

mod common;

use common::{base_dir, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::{Client, JobRef, JobStatus};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted by the test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, opts: &str) -> Mount {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run it as root): mount -o {opts} at {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn euid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A directory nobody can write: mode 0555, and, because root ignores modes, a read-only
/// tmpfs mounted on it when the test runs as root.
fn read_only_dir(at: &Path) -> Option<Mount> {
    std::fs::create_dir_all(at).expect("dir");
    let m = euid_is_root().then(|| Mount::tmpfs(at, "ro,size=1m"));
    let mut perm = std::fs::metadata(at).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
    if m.is_none() {
        std::fs::set_permissions(at, perm).expect("chmod");
    }
    m
}

#[test]
fn a_watchdog_whose_base_is_read_only_refuses_to_start() {
    let redis = RedisServer::start();
    let (_d, dir) = base_dir();
    let base = dir.join("ro");
    let _m = read_only_dir(&base);
    // The library: start fails, naming the base and the reason; nothing runs.
    let mut engine = test_engine(&redis.url(), &base, 1).build().unwrap();
    let err = engine.start().expect_err("started on a read-only base");
    let msg = err.to_string();
    assert!(
        msg.contains(&base.display().to_string()) && msg.contains("not writable"),
        "unclear error: {msg}"
    );
    assert!(
        msg.to_lowercase().contains("read-only") || msg.contains("ermission"),
        "the error does not say why: {msg}"
    );
    // The command: `herojobs run` exits non-zero with the same message, without a banner
    // that says it runs.
    let out = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(["run", "--workers", "1"])
        .env("HEROJOBS_REDIS_URL", redis.url())
        .env("HEROJOBS_BASE", &base)
        .output()
        .expect("run herojobs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "herojobs run started: {stderr}");
    assert!(stderr.contains("not writable"), "unclear error: {stderr}");
}

/// Fills the filesystem of `dir` with one file until it refuses more (ENOSPC).
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xa5u8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            assert_eq!(
                e.raw_os_error(),
                Some(28),
                "filling {}: expected ENOSPC, got {e}",
                dir.display()
            );
            return path;
        }
    }
}

#[test]
fn a_database_that_stops_storing_blocks_its_queue_and_resumes_once_repaired() {
    let _ = env_logger::builder().is_test(true).try_init();
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    // The database of `full/t` lives on its own small filesystem.
    let mount = base.join("circles").join("full");
    let _m = Mount::tmpfs(&mount, "size=4m");
    let mut engine = test_engine(&redis.url(), &base, 2)
        .durability(herojobs::Durability::Periodic)
        .build()
        .unwrap();
    engine.start().unwrap();
    // The engine's own broker and job store.
    let shared = engine.client();
    // The submitter has a base of its own: what the engine's OurDB holds, the engine wrote.
    let (_sd, sub_base) = base_dir();
    let client = Client::connect(&redis.url(), &sub_base).unwrap();
    // Both databases work: a few jobs each (this also allocates the pages OurDB maps).
    for c in ["full", "good"] {
        let ids: Vec<JobRef> = (0..3)
            .map(|i| client.submit(tjob(c, "t", &format!("ok {c}{i}"))).unwrap())
            .collect();
        for id in ids {
            let j = client.wait(&id, Duration::from_secs(30)).unwrap();
            assert_eq!(j.status, JobStatus::Done);
        }
    }
    // Queue enough short jobs that the filesystem fills while they run, then fill it.
    let queued: Vec<JobRef> = (0..40)
        .map(|_| client.submit(tjob("full", "t", "sleep 100")).unwrap())
        .collect();
    let filler = fill(&mount);
    wait_until(
        "full/t blocked and nothing of it running",
        Duration::from_secs(60),
        || {
            let s = engine.stats();
            s.blocked_dbs.iter().any(|(q, _)| q == "full/t") && s.running == 0
        },
    );
    let s = engine.stats();
    assert_eq!(s.dbs_blocked, 1, "{s:?}");
    assert!(
        s.unrecorded > 0,
        "no outcome kept for the full database: {s:?}"
    );
    let q = queue("full", "t");
    let waiting = shared.queue_len(&q).unwrap();
    assert!(waiting > 0, "every job ran before the database refused");
    // The counters in Redis (what `herojobs stats` shows) name the blocked database.
    wait_until(
        "the published counters list full/t as blocked",
        Duration::from_secs(10),
        || {
            let mut con = redis.conn();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("herojobs-stats:*")
                .query(&mut con)
                .unwrap();
            keys.iter().any(|k| {
                let f: Vec<(String, u64)> = redis::cmd("HGETALL").arg(k).query(&mut con).unwrap();
                f.iter().any(|(n, _)| n == "blocked:full/t")
            })
        },
    );
    // Other queues go on while full/t is blocked, and full/t is not taken from.
    let good: Vec<JobRef> = (0..20)
        .map(|i| {
            client
                .submit(tjob("good", "t", &format!("ok g{i}")))
                .unwrap()
        })
        .collect();
    for id in &good {
        let j = client.wait(id, Duration::from_secs(30)).unwrap();
        assert_eq!(j.status, JobStatus::Done);
    }
    assert_eq!(
        shared.queue_len(&q).unwrap(),
        waiting,
        "jobs of the blocked database were taken"
    );
    assert!(engine
        .stats()
        .blocked_dbs
        .iter()
        .any(|(q, _)| q == "full/t"));
    // Repair: room again. The database is unblocked and every job runs.
    std::fs::remove_file(&filler).unwrap();
    for id in &queued {
        let j = client.wait(id, Duration::from_secs(60)).unwrap();
        assert_eq!((j.status, j.result.as_str()), (JobStatus::Done, "slept"));
    }
    wait_until("full/t unblocked", Duration::from_secs(30), || {
        engine.stats().blocked_dbs.is_empty() && engine.stats().unrecorded == 0
    });
    assert_eq!(engine.stats().dbs_unblocked, 1);
    engine.stop();
    // No job is left active in OurDB that Redis has done: after Redis forgets everything,
    // OurDB alone says done for every one.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    for id in &queued {
        let j = shared.stored(id).unwrap().expect("record");
        assert_eq!(j.status, JobStatus::Done, "job {id} in OurDB: {j:?}");
    }
}
