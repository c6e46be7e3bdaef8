fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = herojobs::ourdb::OurDb::open(dir.path(), Default::default()).unwrap();
    let d = [1u8; 256];
    let t = std::time::Instant::now();
    for _ in 0..1_000_000 {
        db.add(&d).unwrap();
    }
    eprintln!("{:?}", t.elapsed());
}
