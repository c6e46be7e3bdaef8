//! Measures what strict durability costs on this disk: an appending `fdatasync`, an in-place
//! one, and 8 threads adding in `strict` mode (group commit) with the number of fsync rounds.
//! Quoted in docs/performance.md. `cargo run --release --example strictprobe`
use std::os::unix::fs::FileExt;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("a")).unwrap();
    let t = std::time::Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[1u8; 268], i * 268).unwrap();
        f.sync_data().unwrap();
    }
    eprintln!("append+fdatasync: {:?}/op", t.elapsed() / 500);
    f.set_len(10 << 20).unwrap();
    let t = std::time::Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[1u8; 6], i * 6).unwrap();
        f.sync_data().unwrap();
    }
    eprintln!("overwrite in sparse+fdatasync: {:?}/op", t.elapsed() / 500);
    let t = std::time::Instant::now();
    for i in 0..500u64 {
        f.write_all_at(&[2u8; 6], i * 6).unwrap();
        f.sync_data().unwrap();
    }
    eprintln!("overwrite allocated+fdatasync: {:?}/op", t.elapsed() / 500);
    let db = herojobs::ourdb::OurDb::open(
        dir.path().join("db"),
        herojobs::ourdb::Config {
            durability: herojobs::ourdb::Durability::Strict,
            ..Default::default()
        },
    )
    .unwrap();
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    db.add(&[1u8; 256]).unwrap();
                }
            });
        }
    });
    eprintln!(
        "strict 8x500: {:?}, rounds {}",
        t.elapsed(),
        db.fsync_rounds()
    );
}
