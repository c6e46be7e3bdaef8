//! compare-stores: one measurement of one store on one workload, in this process, on an
//! empty database in a fresh directory; prints one JSON line. See README.md.
//!
//! ```text
//! compare-stores <store> <workload> [--n N] [--dir D] [options]
//! compare-stores table <results.jsonl>
//! ```

mod stores;
mod table;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use stores::{FjallSync, Kind, Mode, Options, ReadTxn, Store};

/// Size of every record's value.
const RECORD: usize = 256;
/// Records per batch in `add-batch-1000` and in the (untimed) builds.
const BATCH: usize = 1000;
/// Distinct values cycled through (a prime, so neighbouring keys never share one and a
/// compressor finds nothing to compress inside a block).
const POOL: usize = 1021;

const USAGE: &str = "\
usage: compare-stores <store> <workload> [--n N] [--dir D] [options]
       compare-stores table <results.jsonl>

stores:    ourdb fjall lmdb redb sled
workloads: add-periodic    N adds (default 1,000,000), one call each, 1 thread, one sync at the end
           add-strict-8    N adds (default 20,000) from 8 threads, each acked after a sync
           add-strict-1    N adds (default 5,000), 1 thread, each acked after a sync
           add-batch-1000  N adds (default 1,000,000) in batches of 1,000, one sync per batch
           get-random-2    random gets from 2 threads on an N-record database (default 1,000,000)
           get-random-1    the same from 1 thread
           open-get        open of an N-record database built and closed by this process,
                           plus one get, each timed in a fresh child process
           footprint       bytes on disk after N adds (batches of 1,000) and a clean close
options:   --dir D         parent of the fresh database directory (default: $TMPDIR or /tmp)
           --threads T     override the workload's thread count
           --gets G        gets per thread in get-random-* (default 2,000,000)
           --opens R       child processes in open-get (default 5)
           --read-txn get|thread   LMDB/redb: one read transaction per get (default) or per thread
           --fjall-sync data|all   fjall's sync: PersistMode::SyncData (default) or SyncAll";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    AddPeriodic,
    AddStrict8,
    AddStrict1,
    AddBatch1000,
    GetRandom2,
    GetRandom1,
    OpenGet,
    Footprint,
    /// Internal: the child process of `open-get`.
    OpenOnce,
}

impl Workload {
    fn parse(s: &str) -> Result<Workload> {
        Ok(match s {
            "add-periodic" => Workload::AddPeriodic,
            "add-strict-8" => Workload::AddStrict8,
            "add-strict-1" => Workload::AddStrict1,
            "add-batch-1000" => Workload::AddBatch1000,
            "get-random-2" => Workload::GetRandom2,
            "get-random-1" => Workload::GetRandom1,
            "open-get" => Workload::OpenGet,
            "footprint" => Workload::Footprint,
            "open-once" => Workload::OpenOnce,
            other => bail!("unknown workload {other:?}\n\n{USAGE}"),
        })
    }

    fn default_n(self) -> u32 {
        match self {
            Workload::AddStrict8 => 20_000,
            Workload::AddStrict1 => 5_000,
            _ => 1_000_000,
        }
    }

    fn default_threads(self) -> usize {
        match self {
            Workload::AddStrict8 => 8,
            Workload::GetRandom2 => 2,
            _ => 1,
        }
    }
}

struct Args {
    kind: Kind,
    workload: Workload,
    workload_name: String,
    n: u32,
    dir: PathBuf,
    threads: usize,
    gets: u64,
    opens: usize,
    opts: Options,
    /// open-once: the database to open and the key to get.
    path: Option<PathBuf>,
    key: u32,
}

fn parse_args(argv: &[String]) -> Result<Args> {
    let [store, workload, rest @ ..] = argv else {
        bail!("{USAGE}");
    };
    let kind = Kind::parse(store)?;
    let workload_kind = Workload::parse(workload)?;
    let mut args = Args {
        kind,
        workload: workload_kind,
        workload_name: workload.clone(),
        n: workload_kind.default_n(),
        dir: std::env::temp_dir(),
        threads: workload_kind.default_threads(),
        gets: 2_000_000,
        opens: 5,
        opts: Options {
            read_txn: ReadTxn::PerGet,
            fjall_sync: FjallSync::Data,
        },
        path: None,
        key: 1,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))?;
        let num = |what: &str| -> Result<u64> {
            value
                .replace(['_', ','], "")
                .parse::<u64>()
                .with_context(|| format!("{what} {value:?} is not a number"))
        };
        match flag.as_str() {
            "--n" => {
                args.n = u32::try_from(num("--n")?).context("--n must fit in a u32")?;
                if args.n == 0 {
                    bail!("--n must be at least 1");
                }
            }
            "--dir" => args.dir = PathBuf::from(value),
            "--threads" => {
                args.threads = usize::try_from(num("--threads")?)?.max(1);
            }
            "--gets" => args.gets = num("--gets")?.max(1),
            "--opens" => args.opens = usize::try_from(num("--opens")?)?.max(1),
            "--key" => {
                args.key = u32::try_from(num("--key")?).context("--key must fit in a u32")?
            }
            "--path" => args.path = Some(PathBuf::from(value)),
            "--read-txn" => {
                args.opts.read_txn = match value.as_str() {
                    "get" => ReadTxn::PerGet,
                    "thread" => ReadTxn::PerThread,
                    other => bail!("--read-txn {other:?}: expected get or thread"),
                }
            }
            "--fjall-sync" => {
                args.opts.fjall_sync = match value.as_str() {
                    "data" => FjallSync::Data,
                    "all" => FjallSync::All,
                    other => bail!("--fjall-sync {other:?}: expected data or all"),
                }
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = if argv.first().map(String::as_str) == Some("table") {
        match argv.get(1) {
            Some(path) => table::print(Path::new(path)),
            None => Err(anyhow!("usage: compare-stores table <results.jsonl>")),
        }
    } else {
        parse_args(&argv).and_then(|args| run(&args))
    };
    if let Err(e) = result {
        eprintln!("compare-stores: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    if args.workload == Workload::OpenOnce {
        return open_once(args);
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("cmp-{}-{}-", args.kind.name(), args.workload_name))
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a temporary directory in {}", args.dir.display()))?;
    // COMPARE_KEEP=1 leaves the database behind (for tracing an open-once child by hand).
    let tmp_path = tmp.path().to_path_buf();
    let keep = if std::env::var_os("COMPARE_KEEP").is_some() {
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let dir = tmp_path.as_path();
    let probe = fsync_probe_us(dir)?;
    let started = Instant::now();
    let mut out = match args.workload {
        Workload::AddPeriodic => add_single(args, dir, Mode::Periodic)?,
        Workload::AddStrict8 | Workload::AddStrict1 => add_single(args, dir, Mode::Strict)?,
        Workload::AddBatch1000 => add_batch(args, dir)?,
        Workload::GetRandom2 | Workload::GetRandom1 => get_random(args, dir)?,
        Workload::OpenGet => open_get(args, dir)?,
        Workload::Footprint => footprint(args, dir)?,
        Workload::OpenOnce => unreachable!("handled above"),
    };
    let mut line = json!({
        "store": args.kind.name(),
        "version": args.kind.version(),
        "workload": args.workload_name,
        "n": args.n,
        "threads": args.threads,
        "record_bytes": RECORD,
        "settings": settings(args),
        "variant": variant(args),
    });
    merge(&mut line, &mut out);
    let mut env = json!({
        "total_s": round(started.elapsed().as_secs_f64(), 1),
        "max_rss_mib": max_rss_mib(),
        "loadavg": std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default(),
        "host_busy_before": std::env::var("COMPARE_BUSY").ok(),
        "fsync_probe_us": probe,
        "dir": args.dir.display().to_string(),
        "fs_magic": fs_magic(&args.dir),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    merge(&mut line, &mut env);
    println!("{line}");
    drop(keep);
    Ok(())
}

/// The label of a non-default setting that changes what is measured (a separate table row).
fn variant(args: &Args) -> &'static str {
    let reads = matches!(
        args.workload,
        Workload::GetRandom1 | Workload::GetRandom2 | Workload::OpenGet
    );
    match (args.kind, args.opts.read_txn, args.opts.fjall_sync) {
        (Kind::Lmdb | Kind::Redb, ReadTxn::PerThread, _) if reads => "read txn per thread",
        (Kind::Fjall, _, FjallSync::All) if !reads => "fjall SyncAll",
        _ => "",
    }
}

/// What the store was asked to promise, in words, for the JSON line.
fn settings(args: &Args) -> String {
    let w = args.workload;
    let strict = matches!(
        w,
        Workload::AddStrict8 | Workload::AddStrict1 | Workload::AddBatch1000
    );
    let reads = matches!(
        w,
        Workload::GetRandom1 | Workload::GetRandom2 | Workload::OpenGet
    );
    let per_get = args.opts.read_txn == ReadTxn::PerGet;
    let fjall_sync = match args.opts.fjall_sync {
        FjallSync::Data => "PersistMode::SyncData (fdatasync)",
        FjallSync::All => "PersistMode::SyncAll (fsync)",
    };
    let s = match (args.kind, strict, reads) {
        (Kind::OurDb, true, _) => "Durability::Strict (ack after fdatasync of data + table, group commit)".to_string(),
        (Kind::OurDb, false, false) => "Durability::Periodic (write in the OS before ack, fsync every 50 ms), sync() at the end".to_string(),
        (Kind::OurDb, false, true) => "default Config; get_into copies out and checks the record's CRC".to_string(),
        (Kind::Fjall, true, _) => format!("{fjall_sync} after each insert/batch"),
        (Kind::Fjall, false, false) => format!("default builder (each insert written to the OS), {fjall_sync} at the end"),
        (Kind::Fjall, false, true) => "default builder (32 MiB block cache)".to_string(),
        (Kind::Lmdb, true, _) => "default env flags: every commit syncs (fdatasync + O_DSYNC meta page)".to_string(),
        (Kind::Lmdb, false, false) => "MDB_NOSYNC, one write txn per add, mdb_env_sync(force) at the end".to_string(),
        (Kind::Lmdb, false, true) if per_get => "one read txn per get".to_string(),
        (Kind::Lmdb, false, true) => "one read txn per thread (snapshot)".to_string(),
        (Kind::Redb, true, _) => "Durability::Immediate on every commit".to_string(),
        (Kind::Redb, false, false) => "Durability::None per add, one Immediate commit at the end".to_string(),
        (Kind::Redb, false, true) if per_get => "one read txn + open_table per get (1 GiB cache)".to_string(),
        (Kind::Redb, false, true) => "one read txn per thread (snapshot, 1 GiB cache)".to_string(),
        (Kind::Sled, true, _) => "flush() after each insert/batch: sync_file_range, NOT fsync".to_string(),
        (Kind::Sled, false, false) => "default config (flush every 500 ms), flush() at the end: sync_file_range, NOT fsync".to_string(),
        (Kind::Sled, false, true) => "default config (1 GiB cache)".to_string(),
    };
    s
}

/// Value of record `key`.
struct Values(Vec<u8>);

impl Values {
    fn new() -> Values {
        let mut rng = SplitMix(0x5EED_F0DB);
        let mut pool = vec![0u8; POOL * RECORD];
        for chunk in pool.chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        Values(pool)
    }
    fn get(&self, key: u32) -> &[u8] {
        let i = key as usize % POOL;
        &self.0[i * RECORD..(i + 1) * RECORD]
    }
}

/// splitmix64: fast, good enough for test data and random keys.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A key in 1..=n.
    fn key(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32 + 1
    }
}

/// add-periodic, add-strict-8, add-strict-1: one record per call from `threads` threads;
/// in Periodic one sync at the end (timed), in Strict every call is synced.
fn add_single(args: &Args, dir: &Path, mode: Mode) -> Result<Value> {
    let values = Values::new();
    let n = args.n;
    let threads = args.threads;
    let (res, close) = stores::with_store(args.kind, dir, mode, args.opts, |s| {
        let next = AtomicU32::new(1);
        let cpu = process_cpu_s();
        let t = Instant::now();
        if threads == 1 {
            for key in 1..=n {
                let id = s.add(key, values.get(key))?;
                if id != key {
                    bail!("{}: add of key {key} returned id {id}", args.kind.name());
                }
            }
        } else {
            run_threads(threads, |_| loop {
                let key = next.fetch_add(1, Ordering::Relaxed);
                if key > n {
                    return Ok(());
                }
                s.add(key, values.get(key))?;
            })?;
        }
        let adds = t.elapsed();
        let t_sync = Instant::now();
        if mode == Mode::Periodic {
            s.sync()?;
        }
        Ok((adds, t_sync.elapsed(), process_cpu_s() - cpu))
    })?;
    let (adds, sync, cpu) = res;
    let total = adds + sync;
    // Every record is there after a reopen (single thread: with the right value).
    verify(args, dir, threads == 1)?;
    let (alloc, apparent) = disk_usage(dir)?;
    Ok(json!({
        "ops_per_s": round(f64::from(n) / total.as_secs_f64(), 0),
        "elapsed_ms": ms(total),
        "adds_ms": ms(adds),
        "final_sync_ms": ms(sync),
        "cpu_s": round(cpu, 3),
        "close_ms": ms(close),
        "real_fsync": args.kind.real_fsync(),
        "bytes_allocated": alloc,
        "bytes_apparent": apparent,
    }))
}

/// add-batch-1000: batches of 1,000 records, each one transaction with one sync.
fn add_batch(args: &Args, dir: &Path) -> Result<Value> {
    let values = Values::new();
    let n = args.n;
    let ((elapsed, cpu), close) =
        stores::with_store(args.kind, dir, Mode::Strict, args.opts, |s| {
            let cpu = process_cpu_s();
            let t = Instant::now();
            write_batches(s, &values, n)?;
            Ok((t.elapsed(), process_cpu_s() - cpu))
        })?;
    verify(args, dir, true)?;
    let (alloc, apparent) = disk_usage(dir)?;
    Ok(json!({
        "ops_per_s": round(f64::from(n) / elapsed.as_secs_f64(), 0),
        "elapsed_ms": ms(elapsed),
        "batch": BATCH,
        "cpu_s": round(cpu, 3),
        "close_ms": ms(close),
        "real_fsync": args.kind.real_fsync(),
        "bytes_allocated": alloc,
        "bytes_apparent": apparent,
    }))
}

fn write_batches(s: &dyn Store, values: &Values, n: u32) -> Result<()> {
    let mut refs: Vec<&[u8]> = Vec::with_capacity(BATCH);
    let mut first = 1u32;
    while first <= n {
        let last = n.min(first.saturating_add(BATCH as u32 - 1));
        refs.clear();
        refs.extend((first..=last).map(|k| values.get(k)));
        s.add_batch(first, &refs)?;
        first = last + 1;
    }
    Ok(())
}

/// Builds an N-record database (batches of 1,000, one sync at the end: not timed), waits
/// for the store's background work, and closes it cleanly.
fn build(args: &Args, dir: &Path) -> Result<Duration> {
    let values = Values::new();
    let t = Instant::now();
    stores::with_store(args.kind, dir, Mode::Periodic, args.opts, |s| {
        write_batches(s, &values, args.n)?;
        s.sync()?;
        s.settle()
    })?;
    Ok(t.elapsed())
}

/// Reopens the database and checks records: the first, the last and 1,000 random ones are
/// present (and, when `values` is set, hold the value written for their key).
fn verify(args: &Args, dir: &Path, values: bool) -> Result<()> {
    let expected = Values::new();
    let n = args.n;
    stores::with_store(args.kind, dir, Mode::Periodic, args.opts, |s| {
        let mut r = s.reader()?;
        let mut buf = Vec::new();
        let mut rng = SplitMix(7);
        let keys = [1, n].into_iter().chain((0..1000).map(|_| rng.key(n)));
        for key in keys {
            r.get_into(key, &mut buf)
                .with_context(|| format!("verifying after reopen, key {key}"))?;
            if buf.len() != RECORD || (values && buf != expected.get(key)) {
                bail!(
                    "{}: key {key} reads back {} bytes, not the value written",
                    args.kind.name(),
                    buf.len()
                );
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// get-random-2, get-random-1: build (untimed), reopen, read every key once in order
/// (warm-up, untimed), then `gets` random gets per thread, each copying the value out.
fn get_random(args: &Args, dir: &Path) -> Result<Value> {
    let build_time = build(args, dir)?;
    let n = args.n;
    let gets = args.gets;
    let expected = Values::new();
    let ((warm, timed), close) =
        stores::with_store(args.kind, dir, Mode::Periodic, args.opts, |s| {
            let t = Instant::now();
            {
                let mut r = s.reader()?;
                let mut buf = Vec::new();
                for key in 1..=n {
                    r.get_into(key, &mut buf)?;
                    if buf != expected.get(key) {
                        bail!("{}: key {key} holds a wrong value", args.kind.name());
                    }
                }
            }
            let warm = t.elapsed();
            let barrier = Barrier::new(args.threads + 1);
            let mut start = Instant::now();
            let timed = std::thread::scope(|scope| -> Result<(Duration, Vec<f64>)> {
                let handles: Vec<_> = (0..args.threads)
                    .map(|t| {
                        let barrier = &barrier;
                        scope.spawn(move || -> Result<(u64, f64)> {
                            let mut rng = SplitMix(0xC0FFEE + t as u64);
                            let keys: Vec<u32> = (0..gets).map(|_| rng.key(n)).collect();
                            let reader = s.reader();
                            barrier.wait();
                            let mut r = reader?;
                            let mut buf = Vec::with_capacity(RECORD);
                            let mut check = 0u64;
                            let cpu = thread_cpu_s();
                            for &key in &keys {
                                r.get_into(key, &mut buf)?;
                                check = check.wrapping_add(u64::from(buf[0]));
                            }
                            Ok((std::hint::black_box(check), thread_cpu_s() - cpu))
                        })
                    })
                    .collect();
                barrier.wait();
                start = Instant::now();
                let mut cpu = Vec::with_capacity(handles.len());
                for h in handles {
                    cpu.push(join(h)??.1);
                }
                Ok((start.elapsed(), cpu))
            })?;
            Ok((warm, timed))
        })?;
    let (elapsed, cpu) = timed;
    let total = gets * args.threads as u64;
    // What the threads would do with a core each: less sensitive to other processes on a
    // shared machine than the wall-clock rate (but not to their cache pollution).
    let per_cpu_s: f64 = cpu.iter().map(|c| gets as f64 / c.max(1e-9)).sum();
    Ok(json!({
        "ops_per_s": round(total as f64 / elapsed.as_secs_f64(), 0),
        "ops_per_cpu_s": round(per_cpu_s, 0),
        "cpu_share": round(cpu.iter().sum::<f64>() / (elapsed.as_secs_f64() * args.threads as f64), 3),
        "gets": total,
        "elapsed_ms": ms(elapsed),
        "warmup_ms": ms(warm),
        "build_ms": ms(build_time),
        "close_ms": ms(close),
    }))
}

/// open-get: build and close (untimed), then `opens` child processes each time an open of
/// the database plus one get of a random key; reports their median, min and max.
fn open_get(args: &Args, dir: &Path) -> Result<Value> {
    let build_time = build(args, dir)?;
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut rng = SplitMix(0x0BE7);
    let mut times = Vec::with_capacity(args.opens);
    for _ in 0..args.opens {
        let key = rng.key(args.n);
        let mut cmd = Command::new(&exe);
        cmd.args([args.kind.name(), "open-once", "--n"])
            .arg(args.n.to_string())
            .arg("--key")
            .arg(key.to_string())
            .arg("--path")
            .arg(dir)
            .arg("--read-txn")
            .arg(match args.opts.read_txn {
                ReadTxn::PerGet => "get",
                ReadTxn::PerThread => "thread",
            });
        let output = cmd.output().context("running the open-once child")?;
        if !output.status.success() {
            bail!(
                "open-once child failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let line: Value = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "open-once child printed no JSON: {:?}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        let t = line["open_get_ms"]
            .as_f64()
            .ok_or_else(|| anyhow!("open-once child printed no open_get_ms: {line}"))?;
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    let (alloc, apparent) = disk_usage(dir)?;
    Ok(json!({
        "open_get_ms": times[times.len() / 2],
        "open_get_ms_min": times[0],
        "open_get_ms_max": times[times.len() - 1],
        "open_get_ms_all": times,
        "opens": args.opens,
        "build_ms": ms(build_time),
        "bytes_allocated": alloc,
        "bytes_apparent": apparent,
    }))
}

/// The child of open-get: open, get one key (copied out), stop the clock; close untimed.
fn open_once(args: &Args) -> Result<()> {
    let path = args
        .path
        .as_deref()
        .ok_or_else(|| anyhow!("open-once needs --path"))?;
    let expected = Values::new();
    let t = Instant::now();
    let (elapsed, _close) = stores::with_store(args.kind, path, Mode::Periodic, args.opts, |s| {
        let mut buf = Vec::with_capacity(RECORD);
        s.reader()?.get_into(args.key, &mut buf)?;
        let elapsed = t.elapsed();
        if buf != expected.get(args.key) {
            bail!("{}: key {} holds a wrong value", args.kind.name(), args.key);
        }
        Ok(elapsed)
    })?;
    println!(
        "{}",
        json!({ "open_get_ms": round(elapsed.as_secs_f64() * 1e3, 4) })
    );
    Ok(())
}

/// footprint: bytes on disk after N adds (batches of 1,000, one sync) and a clean close.
fn footprint(args: &Args, dir: &Path) -> Result<Value> {
    let build_time = build(args, dir)?;
    let (alloc, apparent) = disk_usage(dir)?;
    let raw256 = u64::from(args.n) * RECORD as u64;
    let raw260 = u64::from(args.n) * (RECORD as u64 + 4);
    Ok(json!({
        "bytes_allocated": alloc,
        "bytes_apparent": apparent,
        "raw_values_bytes": raw256,
        "raw_keys_values_bytes": raw260,
        "ratio_allocated": round(alloc as f64 / raw256 as f64, 4),
        "ratio_apparent": round(apparent as f64 / raw256 as f64, 4),
        "ratio_allocated_with_keys": round(alloc as f64 / raw260 as f64, 4),
        "build_ms": ms(build_time),
        "files": list_files(dir)?,
    }))
}

/// Runs `f(thread_index)` on `n` threads at once; the first error wins.
fn run_threads(n: usize, f: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                scope.spawn({
                    let f = &f;
                    move || f(i)
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| join(h)?)
    })
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> Result<T> {
    h.join().map_err(|_| anyhow!("a worker thread panicked"))
}

/// (allocated = st_blocks × 512, apparent = st_size), summed over every file under `dir`.
fn disk_usage(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut alloc = 0;
    let mut apparent = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path())?;
            alloc += a;
            apparent += b;
        } else {
            alloc += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    Ok((alloc, apparent))
}

/// Every file under `dir` with its allocated bytes (where the footprint goes).
fn list_files(dir: &Path) -> Result<Value> {
    use std::os::unix::fs::MetadataExt;
    fn walk(base: &Path, dir: &Path, out: &mut serde_json::Map<String, Value>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else {
                let name = path
                    .strip_prefix(base)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.insert(name, json!(meta.blocks() * 512));
            }
        }
        Ok(())
    }
    let mut out = serde_json::Map::new();
    walk(dir, dir, &mut out)?;
    Ok(Value::Object(out))
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// User + system CPU time of this process (all threads), in seconds.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The disk's state just before a measurement: 20 appends of 4 KiB to a fresh file in the
/// database's directory, each followed by `fdatasync`; the median and max in µs. On a shared
/// machine this moves by 10× with the neighbours' I/O, and the strict rows move with it.
fn fsync_probe_us(dir: &Path) -> Result<Value> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0xA5u8; 4096];
    let mut times = Vec::with_capacity(20);
    for _ in 0..20 {
        let t = Instant::now();
        f.write_all(&block)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("fsync probe on {}", path.display()))?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    times.sort_by(f64::total_cmp);
    Ok(json!({ "median": round(times[10], 0), "max": round(times[19], 0) }))
}

fn max_rss_mib() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    round(usage.ru_maxrss as f64 / 1024.0, 1)
}

/// statfs f_type of `dir` in hex (0xef53: ext4/ext3/ext2; 0x1021994: tmpfs), so a result
/// from the wrong filesystem is visible.
fn fs_magic(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs writes only the struct it is given; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    format!("{:#x}", st.f_type)
}

fn merge(into: &mut Value, from: &mut Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object_mut()) {
        a.append(b);
    }
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 3)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}
