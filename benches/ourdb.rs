//! OurDB benchmarks: adds in each durability mode and thread count, batched adds, random
//! gets, history, open of a 1,000,000-record database (+ one get), bytes on disk per record,
//! the cost of keeping herolib's sparse dump current, and how long a writer waits while a
//! compaction runs: online (the copy without the writer lock) against blocking (the lock
//! held for the whole copy, as compaction was before).
//!
//! Every add workload starts from an empty database: each criterion sample creates a new one
//! (outside the clock), as an outside harness measuring a fresh store would.
//!
//! `cargo bench --bench ourdb`. Figures and the machine are recorded in docs/performance.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herojobs::ourdb::{CompactOptions, Config, Durability, OurDb};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RECORD: usize = 256;

fn cfg(durability: Durability) -> Config {
    Config {
        durability,
        ..Config::default()
    }
}

/// Adds `total` records from `threads` threads, one call each; returns the elapsed time.
fn add_parallel(db: &OurDb, threads: usize, total: u64) -> Duration {
    let per = total / threads as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let data = [t as u8; RECORD];
                for _ in 0..per {
                    db.add(&data).expect("add");
                }
            });
        }
    });
    start.elapsed()
}

fn adds(c: &mut Criterion) {
    let mut g = c.benchmark_group("ourdb_add_256B");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for (mode, name) in [
        (Durability::Periodic, "periodic"),
        (Durability::Strict, "strict"),
        (Durability::None, "none"),
    ] {
        for threads in [1usize, 2, 8] {
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    // A new, empty database per sample; `iters` adds spread over the threads.
                    let dir = tempfile::tempdir().expect("tempdir");
                    let db = OurDb::open(dir.path(), cfg(mode)).expect("open");
                    let total = iters.max(threads as u64);
                    let t = add_parallel(&db, threads, total);
                    drop(db);
                    t
                })
            });
        }
    }
    g.finish();

    // Batches of 1,000 with one fsync each: `add_many` in `strict` mode.
    let mut g = c.benchmark_group("ourdb_add_many_1000x256B");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1000));
    let data = [5u8; RECORD];
    let batch: Vec<&[u8]> = vec![&data[..]; 1000];
    for (mode, name) in [
        (Durability::Strict, "strict"),
        (Durability::Periodic, "periodic"),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = OurDb::open(dir.path(), cfg(mode)).expect("open");
                let start = Instant::now();
                for _ in 0..iters {
                    db.add_many(batch.iter().copied()).expect("add_many");
                }
                let t = start.elapsed();
                drop(db);
                t
            })
        });
    }
    g.finish();
}

fn gets(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = OurDb::open(dir.path(), cfg(Durability::None)).expect("open");
    let n = 1_000_000u32;
    let data = [7u8; RECORD];
    let records: Vec<&[u8]> = (0..10_000).map(|_| &data[..]).collect();
    for _ in 0..n / 10_000 {
        db.add_many(records.iter().copied()).expect("add");
    }
    let mut g = c.benchmark_group("ourdb_get_256B");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        g.bench_with_input(
            BenchmarkId::new("random", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per = iters / threads as u64 + 1;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let db = &db;
                            s.spawn(move || {
                                let mut buf = Vec::with_capacity(RECORD);
                                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                                for _ in 0..per {
                                    x ^= x << 13;
                                    x ^= x >> 7;
                                    x ^= x << 17;
                                    let id = (x % n as u64) as u32 + 1;
                                    db.get_into(id, &mut buf).expect("get");
                                }
                            });
                        }
                    });
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * threads as u64) as f64)
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("ourdb_history");
    g.sample_size(10);
    let id = db.add(b"v0").expect("add");
    for v in 1..10 {
        db.set(id, format!("v{v}").as_bytes()).expect("set");
    }
    g.bench_function("depth_10", |b| {
        b.iter(|| db.history(id, 10).expect("history"))
    });
    g.finish();

    let mut g = c.benchmark_group("ourdb_open");
    g.sample_size(20);
    db.close().expect("close");
    g.bench_function("1m_records_and_one_get", |b| {
        let mut buf = Vec::with_capacity(RECORD);
        let mut id = 0u32;
        b.iter_custom(|iters| {
            // The open and one get of a record not read before are timed; the close happens
            // outside the clock.
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                id = id % n + 7919;
                let start = Instant::now();
                let db = OurDb::open(dir.path(), cfg(Durability::Periodic)).expect("open");
                db.get_into(id % n + 1, &mut buf).expect("get");
                total += start.elapsed();
                drop(db);
            }
            total
        })
    });
    g.finish();
    let db = OurDb::open(dir.path(), cfg(Durability::None)).expect("open");
    let stats = db.stats().expect("stats");
    let on_disk = disk_usage(dir.path());
    let raw = n as u64 * RECORD as u64;
    eprintln!(
        "ourdb_disk: {} records of {RECORD} B: {} bytes allocated on disk, {:.3}x the raw data ({} data bytes, lookup {} bytes logical)",
        stats.live_records, on_disk, on_disk as f64 / raw as f64, stats.data_bytes, stats.lookup_bytes
    );
}

/// Bytes actually allocated (st_blocks × 512) under `dir`.
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// What keeping herolib's sparse dump current costs: `sync()` after one `add` (the dump is
/// rewritten: O(ids)) and single-thread `periodic` adds into a large database (the background
/// thread rewrites it at a bounded rate), each with the dump on and off (off = the code path
/// before dumps were kept).
fn dumps(c: &mut Criterion) {
    let mut g = c.benchmark_group("ourdb_dump");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for n in [100_000u32, 1_000_000] {
        for on in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = Config {
                herolib_dump: on,
                ..cfg(Durability::Periodic)
            };
            let db = OurDb::open(dir.path(), config).expect("open");
            let data = [1u8; RECORD];
            let batch: Vec<&[u8]> = vec![&data[..]; 10_000];
            for _ in 0..n / 10_000 {
                db.add_many(batch.iter().copied()).expect("add_many");
            }
            db.sync().expect("sync");
            let name = if on {
                "sync_after_add/on"
            } else {
                "sync_after_add/off"
            };
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    db.add(&data).expect("add");
                    db.sync().expect("sync");
                })
            });
            if n == 1_000_000 {
                g.throughput(Throughput::Elements(1));
                let name = if on {
                    "add_periodic_1t/on"
                } else {
                    "add_periodic_1t/off"
                };
                g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                    b.iter_custom(|iters| add_parallel(&db, 1, iters))
                });
            }
        }
    }
    g.finish();
}

/// Records of a job database: three versions (new, active, done) per job.
const COMPACT_JOBS: u32 = 30_000;

/// One compaction of a database filled from empty with [`COMPACT_JOBS`] jobs of three
/// versions each, while a writer thread adds records as fast as it can. Returns the
/// longest single add the writer waited during the compaction, the adds it completed
/// meanwhile, the compaction's duration and its report.
fn compaction_with_writer(
    opts: CompactOptions,
) -> (Duration, u64, Duration, herojobs::CompactReport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = OurDb::open(dir.path(), cfg(Durability::Periodic)).expect("open");
    let data = [7u8; RECORD];
    for _ in 0..COMPACT_JOBS {
        let id = db.add(&data).expect("add");
        db.set(id, &data).expect("set");
        db.set(id, &data).expect("set");
    }
    let running = AtomicBool::new(true);
    let started = AtomicBool::new(false);
    let (worst, adds, took, report) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut worst, mut adds) = (Duration::ZERO, 0u64);
            started.store(true, Ordering::Release);
            while running.load(Ordering::Acquire) {
                let t = Instant::now();
                db.add(&data).expect("add");
                worst = worst.max(t.elapsed());
                adds += 1;
            }
            (worst, adds)
        });
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let t = Instant::now();
        let report = db.compact_with(opts).expect("compact");
        let took = t.elapsed();
        running.store(false, Ordering::Release);
        let (worst, adds) = writer.join().expect("writer");
        (worst, adds, took, report)
    });
    (worst, adds, took, report)
}

fn compaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("ourdb_compact_writer_wait_30k_jobs");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, opts) in [
        ("online", CompactOptions::default()),
        ("blocking", CompactOptions::default().blocking()),
    ] {
        // The figure criterion reports: the longest a writer's add waited during one
        // compaction (per iteration). Adds per second during it go to stderr.
        g.bench_function(BenchmarkId::new("longest_add", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (worst, adds, took, r) = compaction_with_writer(opts);
                    eprintln!(
                        "compaction {name}: {:.1} ms, {} rounds, {} ids caught up ({} under \
                         the lock); writer: {adds} adds ({:.0}/s), longest add {:.2} ms",
                        took.as_secs_f64() * 1e3,
                        r.rounds,
                        r.caught_up,
                        r.caught_up_locked,
                        adds as f64 / took.as_secs_f64(),
                        worst.as_secs_f64() * 1e3
                    );
                    total += worst;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, adds, gets, dumps, compaction);
criterion_main!(benches);
