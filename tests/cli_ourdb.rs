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

/// Every file and directory under `root`: relative path, mode, contents (directories: none).
fn snapshot(root: &std::path::Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.push((rel, mode, None));
                stack.push(path);
            } else {
                out.push((rel, mode, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

fn set_writable(root: &std::path::Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    let mut all = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            all.push(path);
        }
    }
    // Files first, directories last (deepest first), so every chmod can still reach its file.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        let dir = p.is_dir();
        let mode = match (dir, writable) {
            (true, true) => 0o755,
            (true, false) => 0o555,
            (false, true) => 0o644,
            (false, false) => 0o444,
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Inspection commands open read-only: on a read-only directory they work and leave every
/// byte (and every mode) as it was; nothing is created.
#[test]
fn inspection_leaves_a_read_only_database_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("db");
    let ds = d.to_str().unwrap();
    for i in 0..5 {
        let out = herojobs(&["ourdb", "add", ds], format!("record {i}").as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    set_writable(&d, false);
    let before = snapshot(&d);
    for args in [
        vec!["ourdb", "stats", ds],
        vec!["ourdb", "stats", ds, "--json"],
        vec!["ourdb", "get", ds, "3"],
        vec!["ourdb", "dump", ds],
        vec!["ourdb", "check", ds],
        vec!["ourdb", "history", ds, "2"],
    ] {
        let out = herojobs(&args, b"");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = herojobs(&["ourdb", "get", ds, "3"], b"");
    assert_eq!(out.stdout, b"record 2");
    assert_eq!(
        snapshot(&d),
        before,
        "an inspection command changed the database"
    );
    set_writable(&d, true);
}

/// A database as stock herolib leaves it (data file and sparse dump only): inspection reads
/// it through the dump and creates no ourdb.json, lookup/, state or lock files.
#[test]
fn inspection_creates_nothing_in_a_foreign_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut data = vec![0u8];
    data.extend([2, 0, 0xac, 0x2a, 0x93, 0xd8, 0, 0, 0, 0, 0, 0, b'h', b'i']);
    std::fs::write(d.join("0.db"), data).unwrap();
    std::fs::create_dir(d.join("lookup_dump.db")).unwrap();
    std::fs::write(
        d.join("lookup_dump.db/data"),
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    )
    .unwrap();
    std::fs::write(d.join("lookup_dump.db/.inc"), "2").unwrap();
    let before = snapshot(d);
    let ds = d.to_str().unwrap();
    let out = herojobs(&["ourdb", "get", ds, "1", "--keysize", "6"], b"");
    assert_eq!(out.stdout, b"hi", "{}", text(&out.stderr));
    for cmd in ["stats", "dump", "check"] {
        let out = herojobs(&["ourdb", cmd, ds, "--keysize", "6"], b"");
        assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
    }
    let out = herojobs(&["ourdb", "stats", ds, "--keysize", "6", "--json"], b"");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["live_records"], 1);
    assert_eq!(stats["next_id"], 2);
    assert_eq!(snapshot(d), before, "inspection created or changed files");
}
