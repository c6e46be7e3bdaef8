//! Compaction: rewrite the live records into fresh data files and switch to them atomically.
//!
//! herolib never implemented this. The protocol is a small redo log made of the staging
//! directory itself:
//!
//! 1. Build `.compact/` holding new `N.db` files and `lookup/data`; fsync them.
//! 2. Write `.compact/COMMIT` (the number of new data files) through a temporary name, fsync
//!    it, rename it into place, fsync the directories. The rename is the commit point.
//!    The new table's mark (`lookup/mark`: the end of the new data) is staged with it.
//! 3. Rename each staged file over its live counterpart, remove data files past the new
//!    count, update `ourdb.state` (bumping the generation), remove `COMMIT`, then `.compact/`.
//!
//! On open, `recover` finishes step 3 if `COMMIT` exists and discards `.compact/` if not.
//! A crash before the commit point leaves the old database; after it, the new one.
//! History (older versions) is dropped: new records have no previous location.

use super::datafile::DataFile;
use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::Inner;
use super::mark::{self, Mark};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Name of the staging directory.
pub const STAGING: &str = ".compact";
/// Name of the commit marker inside it.
pub const COMMIT: &str = "COMMIT";

/// What a compaction did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompactReport {
    /// Live records copied.
    pub records: u64,
    /// Data bytes before.
    pub bytes_before: u64,
    /// Data bytes after.
    pub bytes_after: u64,
    /// Data files after.
    pub files_after: usize,
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OurDbError::io("fsync directory", dir, e))
}

/// Runs a compaction. The caller holds the write lock (mutex and file lock).
pub(super) fn compact(inner: &Inner) -> Result<CompactReport> {
    let dir = &inner.dir;
    let staging = dir.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| OurDbError::io("remove", &staging, e))?;
    }
    std::fs::create_dir_all(staging.join("lookup"))
        .map_err(|e| OurDbError::io("create directory", &staging, e))?;
    let maps = inner.current_maps()?;
    let old_lookup = &maps.lookup;
    let mut bytes_before = 0;
    for f in &maps.files {
        bytes_before += f.refresh_len()?;
    }
    let keysize = inner.stored.keysize;
    let lookup_path = staging.join("lookup/data");
    let new_lookup =
        File::create(&lookup_path).map_err(|e| OurDbError::io("create", &lookup_path, e))?;
    new_lookup
        .set_len(old_lookup.known_len())
        .map_err(|e| OurDbError::io("grow", &lookup_path, e))?;

    let mut files: Vec<(File, u64)> = Vec::new();
    let open_new = |nr: u16| -> Result<(File, u64)> {
        let p = staging.join(format::data_file_name(nr));
        let mut f = File::create(&p).map_err(|e| OurDbError::io("create", &p, e))?;
        // Through the file cursor: the buffered writer below shares it (dup'd descriptor).
        f.write_all(&[0])
            .map_err(|e| OurDbError::io("write", &p, e))?;
        Ok((f, format::DATA_FILE_PREAMBLE))
    };
    files.push(open_new(0)?);
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        files[0]
            .0
            .try_clone()
            .map_err(|e| OurDbError::io("dup", &staging, e))?,
    );
    let mut records = 0u64;
    let mut buf = Vec::new();
    let mut header = Vec::new();
    let published = inner.state.lookup_len();
    for id in 1..old_lookup.entries().min(u32::MAX as u64 + 1) {
        let id = id as u32;
        let loc = match old_lookup.get(id, published)? {
            Some(l) if !l.is_none() => l,
            _ => continue,
        };
        inner.data_file(loc.file_nr)?.read_record(
            loc.position,
            inner.stored.record_size_max,
            &mut buf,
        )?;
        let total = (format::encode_header(&buf, Location::NONE, &mut header) + buf.len()) as u64;
        let mut nr = files.len() as u16 - 1;
        if keysize == 6 && files[nr as usize].1 >= inner.stored.file_size {
            out.flush()
                .map_err(|e| OurDbError::io("write", &staging, e))?;
            nr += 1;
            files.push(open_new(nr)?);
            out = std::io::BufWriter::with_capacity(
                1 << 20,
                files[nr as usize]
                    .0
                    .try_clone()
                    .map_err(|e| OurDbError::io("dup", &staging, e))?,
            );
        }
        let pos = files[nr as usize].1;
        let new_loc = Location {
            file_nr: nr,
            position: u32::try_from(pos).map_err(|_| OurDbError::LocationOverflow {
                keysize,
                location: Location {
                    file_nr: nr,
                    position: u32::MAX,
                },
            })?,
        };
        let mut entry = [0u8; 6];
        let n = new_loc
            .encode_entry(keysize, &mut entry)
            .ok_or(OurDbError::LocationOverflow {
                keysize,
                location: new_loc,
            })?;
        out.write_all(&header)
            .and_then(|_| out.write_all(&buf))
            .map_err(|e| OurDbError::io("write", &staging, e))?;
        files[nr as usize].1 = pos + total;
        new_lookup
            .write_all_at(&entry[..n], id as u64 * keysize as u64)
            .map_err(|e| OurDbError::io("write", &lookup_path, e))?;
        records += 1;
    }
    out.flush()
        .map_err(|e| OurDbError::io("write", &staging, e))?;
    drop(out);
    for (f, _) in &files {
        f.sync_all()
            .map_err(|e| OurDbError::io("fsync", &staging, e))?;
    }
    new_lookup
        .sync_all()
        .map_err(|e| OurDbError::io("fsync", &lookup_path, e))?;
    let bytes_after: u64 = files.iter().map(|(_, len)| *len).sum();
    let count = files.len();
    // The new table is complete: its mark is the end of the new data, staged with it and
    // renamed in with it (a mark of the old files would name positions the new ones do not
    // have).
    let seq = match mark::read(dir)? {
        mark::Found::Valid(m) => m.seq,
        _ => 0,
    }
    .max(inner.mark.lock().last.map_or(0, |m| m.seq));
    let new_mark = Mark {
        seq: seq + 1,
        file_nr: count as u16 - 1,
        position: files[count - 1].1,
        next_id: inner.state.next_id().max(1),
    };
    mark::create(&staging, &new_mark)?;
    drop(files);
    drop(new_lookup);

    // The marker appears atomically (temporary name, fsync, rename): a crash while writing
    // it must leave no marker rather than an empty one.
    let commit = staging.join(COMMIT);
    let commit_tmp = staging.join("COMMIT.tmp");
    let mut c = File::create(&commit_tmp).map_err(|e| OurDbError::io("create", &commit_tmp, e))?;
    c.write_all(count.to_string().as_bytes())
        .and_then(|_| c.sync_all())
        .map_err(|e| OurDbError::io("write", &commit_tmp, e))?;
    drop(c);
    std::fs::rename(&commit_tmp, &commit).map_err(|e| OurDbError::io("rename", &commit, e))?;
    fsync_dir(&staging)?;
    fsync_dir(dir)?;
    // Commit point passed.
    apply(dir)?;
    let last = DataFile::open(dir, count as u16 - 1, false)?;
    inner.state.set_file_nr(count as u16 - 1);
    inner.state.set_append_pos(last.known_len());
    inner.state.set_lookup_len(old_lookup.known_len());
    inner.state.set_generation(inner.state.generation() + 1);
    inner.state.sync()?;
    inner.note_mark(&mut inner.mark.lock(), new_mark);
    finish(dir)?;
    inner.current_maps()?;
    Ok(CompactReport {
        records,
        bytes_before,
        bytes_after,
        files_after: count,
    })
}

/// Renames staged files into place (idempotent) and removes data files past the new count.
fn apply(dir: &Path) -> Result<()> {
    let staging = dir.join(STAGING);
    let commit = staging.join(COMMIT);
    let text = std::fs::read_to_string(&commit).map_err(|e| OurDbError::io("read", &commit, e))?;
    let count: u16 = text
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            OurDbError::corrupt(&commit, 0, format!("expected a file count, found {text:?}"))
        })?;
    for nr in 0..count {
        let name = format::data_file_name(nr);
        let from = staging.join(&name);
        if from.exists() {
            std::fs::rename(&from, dir.join(&name))
                .map_err(|e| OurDbError::io("rename", &from, e))?;
        }
    }
    let from = staging.join("lookup/data");
    if from.exists() {
        std::fs::rename(&from, dir.join("lookup/data"))
            .map_err(|e| OurDbError::io("rename", &from, e))?;
    }
    let from = mark::path(&staging);
    if from.exists() {
        std::fs::rename(&from, mark::path(dir)).map_err(|e| OurDbError::io("rename", &from, e))?;
    }
    let mut nr = count;
    loop {
        let p = dir.join(format::data_file_name(nr));
        if !p.exists() {
            break;
        }
        std::fs::remove_file(&p).map_err(|e| OurDbError::io("remove", &p, e))?;
        if nr == u16::MAX {
            break;
        }
        nr += 1;
    }
    fsync_dir(dir)?;
    fsync_dir(&dir.join("lookup"))
}

fn finish(dir: &Path) -> Result<()> {
    let staging = dir.join(STAGING);
    let commit = staging.join(COMMIT);
    std::fs::remove_file(&commit).map_err(|e| OurDbError::io("remove", &commit, e))?;
    std::fs::remove_dir_all(&staging).map_err(|e| OurDbError::io("remove", &staging, e))?;
    fsync_dir(dir)
}

/// Completes or discards an interrupted compaction. Returns `true` if one was completed
/// (the caller must then rebuild the shared state from the files). Runs under the file lock.
pub(super) fn recover(dir: &Path) -> Result<bool> {
    let staging = dir.join(STAGING);
    if !staging.exists() {
        return Ok(false);
    }
    if staging.join(COMMIT).exists() {
        apply(dir)?;
        finish(dir)?;
        Ok(true)
    } else {
        std::fs::remove_dir_all(&staging).map_err(|e| OurDbError::io("remove", &staging, e))?;
        Ok(false)
    }
}
