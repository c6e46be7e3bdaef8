//! `herojobs ourdb ...` as a person runs it: the real binary on a real directory.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::{Command, Output, Stdio};

fn herojobs(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herojobs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herojobs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn add_get_dump_history_check_compact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let out = herojobs(&["ourdb", "add", db], b"first\x00bytes");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
    assert_eq!(
        text(&herojobs(&["ourdb", "add", db], b"second").stdout).trim(),
        "2"
    );

    let out = herojobs(&["ourdb", "get", db, "1"], b"");
    assert_eq!(out.stdout, b"first\x00bytes", "raw bytes on stdout");

    let out = herojobs(&["ourdb", "dump", db], b"");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["length"], 11);
    assert_eq!(lines[0]["file"], 0);
    assert_eq!(lines[0]["position"], 1);

    let out = herojobs(&["ourdb", "history", db, "2", "--depth", "3"], b"");
    assert_eq!(text(&out.stdout).trim(), "#0 (6 bytes): second");

    let out = herojobs(&["ourdb", "stats", db, "--json"], b"");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(stats["live_records"], 2);
    assert_eq!(stats["next_id"], 3);

    let out = herojobs(&["ourdb", "check", db], b"");
    assert!(out.status.success());
    let out = herojobs(&["ourdb", "compact", db], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(herojobs(&["ourdb", "get", db, "2"], b"").stdout, b"second");
}

#[test]
fn check_fails_on_damage_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let dbs = db.to_str().unwrap();
    herojobs(&["ourdb", "add", dbs], b"precious data");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db.join("0.db"))
        .unwrap();
    f.write_all_at(b"#", 15).unwrap();
    let out = herojobs(&["ourdb", "check", dbs], b"");
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("id 1 at 0.db@1") && report.contains("CRC mismatch"),
        "{report}"
    );

    let out = herojobs(&["ourdb", "get", dbs, "7"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "herojobs: record 7 not found");

    let out = herojobs(
        &[
            "ourdb",
            "stats",
            dir.path().join("nothing").to_str().unwrap(),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no OurDB database here"));

    let out = herojobs(&["ourdb", "stats", dbs, "--keysize", "5"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("must be 2, 3, 4 or 6"));
}

#[test]
fn herolib_database_opens_with_keysize_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut data = vec![0u8];
    data.extend([2, 0, 0xac, 0x2a, 0x93, 0xd8, 0, 0, 0, 0, 0, 0, b'h', b'i']);
    std::fs::write(d.join("0.db"), data).unwrap();
    std::fs::create_dir(d.join("lookup")).unwrap();
    // keysize 2: id 1's entry is bytes 2..4, the u16 BE position 1.
    std::fs::write(d.join("lookup/data"), [0, 0, 0, 1]).unwrap();
    std::fs::write(d.join("lookup/.inc"), "2").unwrap();
    let ds = d.to_str().unwrap();
    let out = herojobs(&["ourdb", "get", ds, "1"], b"");
    assert!(
        text(&out.stderr).contains("--keysize"),
        "{}",
        text(&out.stderr)
    );
    let out = herojobs(&["ourdb", "get", ds, "1", "--keysize", "2"], b"");
    assert_eq!(out.stdout, b"hi", "{}", text(&out.stderr));
}
