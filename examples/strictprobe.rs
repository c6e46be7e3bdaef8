//! Measures what strict durability costs on this disk: an appending `fdatasync`, an in-place
//! one, then OurDB in `strict` mode from an empty database: one thread adding one record per
//! call, 8 threads (group commit, with the number of fsync rounds), and batches of 1,000 with
//! `add_many` (one fsync each). Quoted in docs/performance.md.
//! `cargo run --release --example strictprobe`
use herojobs::ourdb::{Config, Durability, OurDb};
use std::os::unix::fs::FileExt;
use std::time::Instant;

fn strict() -> Config {
    Config {
        durability: Durability::Strict,
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let f = std::fs::File::create(dir.path().join("a"))?;
    let t = Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[1u8; 268], i * 268)?;
        f.sync_data()?;
    }
    eprintln!("append+fdatasync: {:?}/op", t.elapsed() / 500);
    f.set_len(10 << 20)?;
    let t = Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[1u8; 6], i * 6)?;
        f.sync_data()?;
    }
    eprintln!("overwrite in sparse+fdatasync: {:?}/op", t.elapsed() / 500);
    let t = Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[2u8; 6], i * 6)?;
        f.sync_data()?;
    }
    eprintln!("overwrite allocated+fdatasync: {:?}/op", t.elapsed() / 500);

    let db = OurDb::open(dir.path().join("one"), strict())?;
    let t = Instant::now();
    for _ in 0..2000 {
        db.add(&[1u8; 256])?;
    }
    eprintln!(
        "strict 1x2000: {:?}/add, {:.0} adds/s, rounds {}",
        t.elapsed() / 2000,
        2000.0 / t.elapsed().as_secs_f64(),
        db.fsync_rounds()
    );
    drop(db);

    let db = OurDb::open(dir.path().join("eight"), strict())?;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    db.add(&[1u8; 256]).expect("add");
                }
            });
        }
    });
    eprintln!(
        "strict 8x500: {:?}, {:.0} adds/s, rounds {}",
        t.elapsed(),
        4000.0 / t.elapsed().as_secs_f64(),
        db.fsync_rounds()
    );
    drop(db);

    let db = OurDb::open(dir.path().join("batches"), strict())?;
    let data = [3u8; 256];
    let batch: Vec<&[u8]> = vec![&data[..]; 1000];
    let t = Instant::now();
    for _ in 0..100 {
        db.add_many(batch.iter().copied())?;
    }
    eprintln!(
        "strict add_many 100x1000: {:?}/batch, {:.0} records/s, rounds {}",
        t.elapsed() / 100,
        100_000.0 / t.elapsed().as_secs_f64(),
        db.fsync_rounds()
    );
    Ok(())
}
